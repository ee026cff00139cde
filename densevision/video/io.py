"""Frame sources (video file, camera, image folder) that survive corrupt frames, and an atomic video writer.

``open_frames(input)`` picks the source from the input string: digits are a camera index (``"0"``; write ``./0``
for a file of that name), a folder is an image sequence (its images in natural name order: ``2.png`` before
``10.png``), anything else is a video file. Iterating a source yields ``(index, frame, error)``: ``frame`` uint8
``(H, W, 3)`` RGB and ``error`` None, or ``frame`` None and ``error`` a message when that frame cannot be decoded.

Corrupt frames, as OpenCV 4.14's FFmpeg backend behaves (measured on MJPG .avi clips with damaged JPEG frames):
``VideoCapture.read()`` (and ``grab()``) returns False for a frame whose packet fails to decode, *consumes* that
packet, and the next ``read()`` returns the next frame; ``CAP_PROP_POS_FRAMES`` does not advance on the failure.
At the end of the stream ``read()`` keeps returning False. So a False read cannot tell a bad frame from the end:
the source keeps reading while its frame index is below ``CAP_PROP_FRAME_COUNT`` and reports each failed read as a
bad frame (after ``max_consecutive_errors`` failures in a row it stops and says the video ended early: a truncated
file). Damage inside inter-coded streams (mp4v, H.264) is usually concealed by the decoder instead: ``read()``
succeeds with a smeared picture and nothing can be reported.

The writer encodes to a temporary file beside the target and renames it only when closed normally, so an error or
Ctrl-C never leaves a half-written video. .mp4/.m4v/.mov get H.264 (yuv420p, ``+faststart``: plays in browsers)
through the ffmpeg that the ``imageio-ffmpeg`` wheel ships (with libx264); without that package they fall back
to OpenCV's ``mp4v`` (headless OpenCV has no H.264 encoder: ``avc1`` fails to open), with a one-line warning.
.avi gets MJPG (or XVID) from OpenCV.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Iterator, Optional, Tuple

import cv2
import numpy as np

from densevision.data.io import IMAGE_EXTENSIONS
from densevision.errors import UsageError
from densevision.sizes import resize
from densevision.video.threads import prefetch

DEFAULT_FPS = 25.0
"""Frame rate of an image folder, and of a camera or video that reports none, unless ``fps`` is given."""

WRITER_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
"""Output suffix -> FourCC that headless OpenCV 4.14 can write (``XVID`` also works for .avi): the fallback when
H.264 is not available, and .avi's codec."""

H264_SUFFIXES = (".mp4", ".m4v", ".mov")
H264_OPTIONS = ["-crf", "23", "-preset", "veryfast", "-movflags", "+faststart"]
"""libx264 settings: visually clean overlays at a few hundred kB/s, fast enough to keep up on two cores; the
``moov`` atom first so a browser starts playing before the whole file arrived."""

try:  # optional at import: without it .mp4 falls back to OpenCV's mp4v (see h264_available)
    import imageio_ffmpeg
except ImportError:  # pragma: no cover - depends on the environment
    imageio_ffmpeg = None


def h264_available() -> bool:
    """Whether the imageio-ffmpeg wheel (an ffmpeg with libx264) is installed."""
    return imageio_ffmpeg is not None


H264_MISSING = ("warning: imageio-ffmpeg is not installed, so {path} is written as mp4v, which browsers do not "
                "play; pip install 'imageio-ffmpeg==0.8.1' for H.264")

FrameItem = Tuple[int, Optional[np.ndarray], Optional[str]]


class VideoError(UsageError):
    """An input or output video that cannot be used; the message names it and says what was expected."""


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _fourcc_text(code: float) -> str:
    code = int(code)
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if code > 0 and text.isprintable() else "unknown"


class FrameSource:
    """Frames of one input, read once in order.

    Attributes:
        name: the input as given (for messages and the JSON's ``"input"``).
        fps: frames per second (the container's, ``fps`` when given, else :data:`DEFAULT_FPS`).
        width, height: frame size in pixels (of the first decodable frame).
        frame_count: frames the input declares, or None when unknown (cameras).
        frame_names: per-frame file names for an image folder, else None.
        ended_early: None, or why reading stopped before ``frame_count`` (a truncated video, a camera that stopped).
        fitted: ``{index: (width, height)}`` of frames of another size fitted into ``width x height`` (image folders).

    Iterating yields ``(index, frame uint8 (H, W, 3) RGB or None, error message or None)`` for every frame index
    from 0, in order; :meth:`read_ahead` does the same from a background thread.
    """

    kind = "input"

    def __init__(self, name: str, fps: Optional[float], max_frames: Optional[int]):
        self.name = name
        self.requested_fps = fps
        self.max_frames = max_frames
        self.fps = DEFAULT_FPS
        self.width = self.height = 0
        self.frame_count: Optional[int] = None
        self.frame_names: Optional[list[str]] = None
        self.ended_early: Optional[str] = None
        self.fitted: dict[int, tuple[int, int]] = {}  # frames letterboxed into the frame size: index -> their size
        self._buffer: list[FrameItem] = []
        self._items: Optional[Iterator[FrameItem]] = None
        self._started = False

    def _set_fps(self, reported: float) -> None:
        if self.requested_fps is not None:
            if not (self.requested_fps > 0 and math.isfinite(self.requested_fps)):
                raise VideoError(f"{self.kind} {self.name}: fps must be a positive number, got {self.requested_fps}")
            self.fps = float(self.requested_fps)
        elif reported and math.isfinite(reported) and 0 < reported <= 1000:
            self.fps = float(reported)
        else:
            self.fps = DEFAULT_FPS

    def _generate(self) -> Iterator[FrameItem]:
        raise NotImplementedError

    def _probe(self) -> None:
        """Read ahead to the first decodable frame: its size is the source's, and no frame at all is an error."""
        self._items = self._generate()
        for item in self._items:
            self._buffer.append(item)
            if item[1] is not None:
                self.height, self.width = item[1].shape[:2]
                return
        self.close()
        tried = f"{len(self._buffer)} frame(s) tried" if self._buffer else "no frame delivered"
        raise VideoError(f"{self.kind} {self.name}: no frame could be decoded ({tried}){self._no_frame_hint()}")

    def _no_frame_hint(self) -> str:
        return ""

    def __iter__(self) -> Iterator[FrameItem]:
        if self._started:
            raise RuntimeError(f"{self.kind} {self.name} was already read; open it again to read it twice")
        self._started = True
        return self._iterate()

    def _iterate(self) -> Iterator[FrameItem]:
        try:
            while self._buffer:
                yield self._buffer.pop(0)
            if self._items is not None:
                yield from self._items
        finally:
            self.close()

    def read_ahead(self, max_queued: int = 8) -> Iterator[FrameItem]:
        """Iterate on a background thread (decoding overlaps the consumer), at most ``max_queued`` frames ahead."""
        return prefetch(iter(self), max_queued, name=f"read {self.name}")

    def close(self) -> None:
        """Stop reading and release the input (a no-op when iteration already ended)."""
        if self._items is not None and not self._items.gi_running:
            # A generator still running on a stuck reader thread cannot be closed from here; it releases its input
            # itself when the read returns.
            self._items.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        count = "?" if self.frame_count is None else self.frame_count
        return f"<{type(self).__name__} {self.name!r} {self.width}x{self.height} {self.fps:g} fps, {count} frames>"


class CaptureSource(FrameSource):
    """A video file or camera read through ``cv2.VideoCapture``, continuing past frames that fail to decode."""

    def __init__(self, name: str, target, kind: str, fps: Optional[float] = None, max_frames: Optional[int] = None,
                 max_consecutive_errors: int = 50):
        super().__init__(name, fps, max_frames)
        self.kind = kind
        self.max_consecutive_errors = max_consecutive_errors
        self._capture = cv2.VideoCapture(target)
        if not self._capture.isOpened():
            self._capture.release()
            if kind == "camera":
                raise VideoError(f"camera {name} cannot be opened (no such device, in use, or no camera support "
                                 f"in this OpenCV build)")
            raise VideoError(f"video {name} cannot be opened: not a video file, an unknown container or codec, or "
                             f"damaged headers")
        self._set_fps(self._capture.get(cv2.CAP_PROP_FPS))
        declared = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(declared) if kind == "video" and declared and declared > 0 else None
        self.fourcc = _fourcc_text(self._capture.get(cv2.CAP_PROP_FOURCC))
        self._probe()

    def _no_frame_hint(self) -> str:
        if self.kind == "camera":
            return ""
        return f"; codec {self.fourcc!r} may not be supported by this OpenCV build, or the file is damaged"

    def _generate(self) -> Iterator[FrameItem]:
        capture = self._capture
        try:
            index = 0
            failed: list[int] = []  # indices whose read failed, reported once a later frame proves they were frames
            while self.max_frames is None or index < self.max_frames:
                ok, frame = capture.read()
                if ok and frame is not None:
                    for bad in failed:
                        yield bad, None, f"frame {bad} of {self.kind} {self.name} could not be decoded"
                    failed = []
                    yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), None
                    index += 1
                    continue
                if self.frame_count is not None and index >= self.frame_count:
                    break  # the normal end
                failed.append(index)
                index += 1
                if len(failed) >= self.max_consecutive_errors:
                    if self.frame_count is not None:
                        self.ended_early = (f"{self.kind} {self.name}: stopped at frame {failed[0]} of "
                                            f"{self.frame_count} declared after {len(failed)} unreadable frames in "
                                            f"a row (truncated or damaged file)")
                    elif self.kind == "camera":
                        self.ended_early = f"camera {self.name} stopped delivering frames"
                    failed = []
                    break
            # Failures up to the declared count were frames of the video (a damaged last frame); without a declared
            # count they were the end of the stream.
            if self.frame_count is not None:
                for bad in failed:
                    yield bad, None, f"frame {bad} of {self.kind} {self.name} could not be decoded"
        finally:
            capture.release()

    def close(self) -> None:
        super().close()
        if self._items is None or not self._items.gi_running:
            self._capture.release()


class ImageFolderSource(FrameSource):
    """Images of one folder, in natural name order, as frames at ``fps`` (default :data:`DEFAULT_FPS`).

    An image that cannot be decoded is reported as a bad frame. An image whose size differs from the first
    image's is fitted into that size (:func:`letterbox`: scaled to fit, aspect kept, black borders) and used;
    ``fitted`` lists those frames, ``{index: (width, height)}`` of the original.
    """

    kind = "image folder"

    def __init__(self, folder: Path, fps: Optional[float] = None, max_frames: Optional[int] = None):
        super().__init__(str(folder), fps, max_frames)
        self.folder = folder
        self.paths = sorted(
            (Path(entry.path) for entry in os.scandir(folder)
             if entry.is_file() and not entry.name.startswith(".") and Path(entry.name).suffix.lower() in
             IMAGE_EXTENSIONS),
            key=lambda path: _natural_key(path.name),
        )
        if not self.paths:
            raise VideoError(f"image folder {folder} holds no images (expected files ending in "
                             f"{', '.join(IMAGE_EXTENSIONS)})")
        if max_frames is not None:
            self.paths = self.paths[:max_frames]
        self._set_fps(0.0)
        self.frame_count = len(self.paths)
        self.frame_names = [path.name for path in self.paths]
        self._probe()

    def _generate(self) -> Iterator[FrameItem]:
        first_size = None
        for index, path in enumerate(self.paths):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                yield index, None, f"{path}: cannot be read as an image (truncated, corrupt or not an image)"
                continue
            size = image.shape[1], image.shape[0]
            first_size = first_size or size
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            if size != first_size:  # a video has one frame size: fit it in, as the model would see it anyway
                self.fitted[index] = size
                image = letterbox(image, first_size)
            yield index, image, None


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` uint8 ``(h, w, 3)`` scaled to fit inside ``size`` = ``(width, height)`` with its aspect ratio kept,
    centred on black: ``(height, width, 3)``."""
    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    new_w, new_h = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    resized = resize(image, (new_h, new_w))
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas


def open_frames(input: str, fps: Optional[float] = None, max_frames: Optional[int] = None,
                max_consecutive_errors: int = 50) -> FrameSource:
    """Open a video file, a camera index (digits) or an image folder as a :class:`FrameSource`.

    Args:
        input: a video file path, a camera index such as ``"0"``, or a folder of images.
        fps: frame rate of an image folder (default :data:`DEFAULT_FPS`), or an override of a video's/camera's.
        max_frames: read at most this many frames (a camera otherwise runs until it stops).
        max_consecutive_errors: unreadable frames in a row after which a video is taken to be truncated.

    Raises:
        VideoError: naming the input: missing, a single image, an empty folder, a video that cannot be opened or
            whose frames none decode (unknown codec), a camera that cannot be opened.
    """
    text = str(input).strip()
    if max_frames is not None and max_frames < 1:
        raise VideoError(f"input {text}: max_frames must be at least 1, got {max_frames}")
    if text.isdigit():
        return CaptureSource(text, int(text), "camera", fps, max_frames, max_consecutive_errors)
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, fps, max_frames)
    if not path.exists():
        raise VideoError(f"input {text} does not exist (expected a video file, a camera index or an image folder)")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise VideoError(f"input {text} is a single image; pass the folder holding the image sequence")
    return CaptureSource(text, str(path), "video", fps, max_frames, max_consecutive_errors)


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """The output path, checked before any work: a known video suffix, and no existing file unless ``overwrite``.

    Raises:
        VideoError: unknown suffix, an existing file (without ``overwrite``), or a folder in the way.
    """
    path = Path(path)
    if path.suffix.lower() not in WRITER_CODECS:
        raise VideoError(f"output {path}: unknown video suffix {path.suffix!r}; expected one of "
                         f"{', '.join(WRITER_CODECS)} (mp4v for .mp4/.m4v/.mov, MJPG or XVID for .avi)")
    if path.is_dir():
        raise VideoError(f"output {path} is a folder; expected a video file name")
    if path.exists() and not overwrite:
        raise VideoError(f"output {path} already exists; pass --overwrite to replace it")
    return path


class VideoWriter:
    """Writes RGB frames to a video file atomically: to a temporary file beside it, renamed on :meth:`close`.

    Args:
        path: .mp4/.m4v/.mov (H.264 when imageio-ffmpeg is installed, else ``mp4v``) or .avi (``MJPG``); parent
            folders are created.
        fps: frames per second (the input's, so timing is kept).
        width, height: frame size; every frame must have it (OpenCV would otherwise drop it silently).
        fourcc: force an OpenCV codec, e.g. ``"mp4v"`` for .mp4 or ``"XVID"`` for .avi (no H.264 then).
        overwrite: replace an existing file (when closing).

    Attributes:
        codec: what is written: ``"h264"`` or the OpenCV FourCC.
        fallback: None, or the one-line warning to show when .mp4 had to fall back to ``mp4v``.

    Use as a context manager: leaving the block by an exception (or Ctrl-C) deletes the temporary file and leaves
    any existing ``path`` untouched.

    Odd sizes: 4:2:0 chroma needs even widths and heights. OpenCV 4.14's FFmpeg writer silently drops the last
    column/row of an odd-sized frame (measured: 129x97 in, 128x96 out, not rescaled); the H.264 path does the
    same on purpose, so pixel coordinates stay valid either way. ``written_size`` says what the file will hold.

    Raises:
        VideoError: a bad suffix, an existing output, or a writer that cannot be opened.
    """

    def __init__(self, path: str | os.PathLike, fps: float, width: int, height: int, fourcc: Optional[str] = None,
                 overwrite: bool = False):
        self.path = check_output_path(path, overwrite)
        suffix = self.path.suffix.lower()
        self.fallback: Optional[str] = None
        if fourcc is None and suffix in H264_SUFFIXES and h264_available():
            self.codec = "h264"
        else:
            self.codec = fourcc or WRITER_CODECS[suffix]
            if fourcc is None and suffix in H264_SUFFIXES:
                self.fallback = H264_MISSING.format(path=self.path)
        self.fourcc = self.codec if self.codec != "h264" else "avc1"
        if len(self.fourcc) != 4:
            raise VideoError(f"output {self.path}: fourcc must be 4 characters, got {self.fourcc!r}")
        if not (fps > 0 and math.isfinite(fps)) or width < 1 or height < 1:
            raise VideoError(f"output {self.path}: bad stream settings fps={fps}, size {width}x{height}")
        self.fps, self.width, self.height = float(fps), int(width), int(height)
        self.written_size = (self.width & ~1, self.height & ~1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The suffix stays last: OpenCV and ffmpeg pick the container from it.
        self.temporary = self.path.with_name(f".{self.path.stem}.partial-{os.getpid()}{self.path.suffix}")
        self.frames_written = 0
        self._writer = self._pipe = None
        if self.codec == "h264":
            self._open_h264()
        else:
            self._writer = cv2.VideoWriter(str(self.temporary), cv2.VideoWriter_fourcc(*self.fourcc), self.fps,
                                           (self.width, self.height))
            if not self._writer.isOpened():
                self._writer.release()
                self.temporary.unlink(missing_ok=True)
                raise VideoError(f"output {self.path}: OpenCV cannot open a {self.fourcc!r} writer for "
                                 f"{self.path.suffix} (headless OpenCV writes mp4v to .mp4 and MJPG/XVID to .avi)")
        self._open = True

    def _open_h264(self) -> None:
        width, height = self.written_size
        if width < 2 or height < 2:
            raise VideoError(f"output {self.path}: H.264 needs frames at least 2x2, got {self.width}x{self.height}")
        # macro_block_size 1: frames are cropped to even sizes here, never rescaled by imageio.
        self._pipe = imageio_ffmpeg.write_frames(
            str(self.temporary), (width, height), pix_fmt_in="rgb24", pix_fmt_out="yuv420p", fps=self.fps,
            codec="libx264", quality=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=list(H264_OPTIONS))
        self._pipe.send(None)  # starts ffmpeg

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 ``(height, width, 3)`` RGB frame."""
        if not self._open:
            raise RuntimeError(f"video writer for {self.path} is closed")
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"output {self.path}: frame {self.frames_written} is {frame.dtype} {frame.shape}; "
                             f"expected uint8 ({self.height}, {self.width}, 3)")
        if self._pipe is not None:
            width, height = self.written_size
            self._pipe.send(np.ascontiguousarray(frame[:height, :width]))
        else:
            self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def _release(self) -> None:
        if self._pipe is not None:
            self._pipe.close()  # flushes and waits for ffmpeg
        if self._writer is not None:
            self._writer.release()

    def close(self) -> Path:
        """Finish the file and move it into place; returns the final path."""
        if self._open:
            self._open = False
            self._release()
            os.replace(self.temporary, self.path)
        return self.path

    def abort(self) -> None:
        """Stop writing and delete the temporary file (the target is left as it was)."""
        if self._open:
            self._open = False
            try:
                self._release()
            except Exception:  # noqa: BLE001 - already failing: the partial file is removed whatever ffmpeg says
                pass
        self.temporary.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.close()
        else:
            self.abort()
