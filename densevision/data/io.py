"""The one image reader, the one image lister and the whole-file verifier, for every tool and data source.

Reading (:func:`read_image`) decodes the *whole* file with Pillow: a PNG or JPEG cut short after an intact header
raises :class:`~densevision.data.errors.ImageReadError` instead of coming back half grey (OpenCV returns such a
JPEG with only a warning on stderr; so does Pillow if something sets its global ``ImageFile.LOAD_TRUNCATED_IMAGES``,
which densevision never does). What comes back is what an image viewer shows:

- EXIF orientation is applied (a phone photo stored sideways comes back upright);
- greyscale, 1-bit and palette images become RGB;
- 16-bit images are reduced to 8 bits by their high byte (``value >> 8``, as OpenCV and Pillow do);
- an alpha channel is dropped (the stored colours are kept, not composited over a background), as OpenCV and
  every earlier densevision reader did, so a model sees the same pixels as before.

Masks (:func:`read_mask`) come back as stored: palette indices for palette PNGs, the integer values of grey
masks (8 or 16 bit), RGB for colour masks (alpha dropped), with the same EXIF rule as images.

:func:`verify_images` decodes many files once, on a thread pool with a progress bar, and remembers the files
that decoded (by real path, size and modification time) in a small JSON cache, so datasets are checked whole at
open time and reopening them costs only a ``stat`` per file. :func:`list_images` expands files, folders and
glob patterns, follows symbolic links, and reports a symlink loop instead of walking it forever.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from densevision.data.errors import DatasetError, ImageReadError, summarize_items
from densevision.errors import OutputError
from densevision.files import cache_root, describe_os_error, write_json
from densevision.progress import progress_bar

PathLike = Union[str, os.PathLike]

#: file name extensions read as images, everywhere (sources, tools, predictor)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: file name extensions read as label masks (lossless formats only)
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")

#: part of the verification cache key: a change in what the readers accept invalidates old verdicts
READER_VERSION = "1"

_TRUNCATED = "truncated (the file ends before its image data does)"


# ------------------------------------------------------------------------------------------------ decoding


def _read_bytes(path: Path) -> bytes:
    try:
        if path.is_dir():
            raise ImageReadError(path, "is a folder, not an image file")
        with open(path, "rb") as handle:
            data = handle.read()
    except ImageReadError:
        raise
    except FileNotFoundError:
        reason = "broken symbolic link" if path.is_symlink() else "file not found"
        raise ImageReadError(path, reason) from None
    except OSError as error:
        raise ImageReadError(path, f"cannot be read: {describe_os_error(error)}") from None
    if not data:
        raise ImageReadError(path, "empty file (0 bytes)")
    return data


def _decode(path: PathLike) -> Union[Image.Image, np.ndarray]:
    """The fully decoded file: a loaded Pillow image, or (formats Pillow does not know) an OpenCV array."""
    path = Path(path)
    data = _read_bytes(path)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decodes every pixel; raises on a truncated file (Pillow's LOAD_TRUNCATED_IMAGES is off)
        return image
    except Image.DecompressionBombError as error:
        raise ImageReadError(path, f"too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        pass  # not a format Pillow reads: let OpenCV try below
    except EOFError:
        raise ImageReadError(path, _TRUNCATED) from None
    except Exception as error:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, zlib.error ...
        if "truncat" in str(error).lower():
            raise ImageReadError(path, _TRUNCATED) from None
        raise ImageReadError(path, f"corrupt ({type(error).__name__}: {error})") from None
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ImageReadError(path, f"not an image (the contents are not {_format_names()} data)")
    if array.ndim == 3:  # OpenCV's BGR(A) -> RGB(A)
        array = array[..., [2, 1, 0, *range(3, array.shape[2])]] if array.shape[2] >= 3 else array[..., 0]
    return array


def _format_names() -> str:
    return "/".join(sorted({ext.lstrip(".").upper().replace("JPEG", "JPG") for ext in IMAGE_EXTENSIONS}))


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (a broken EXIF block is ignored, not fatal)."""
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:  # noqa: BLE001 - malformed EXIF must not make a readable image unreadable
        return image


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """8-bit from 8 or 16-bit integers (high byte), as OpenCV and Pillow reduce 16-bit images."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        return (np.clip(array, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
    raise ValueError(f"{array.dtype} pixels")


def read_image(path: PathLike) -> np.ndarray:
    """A whole image file as uint8 ``(H, W, 3)`` RGB, as a viewer shows it (see the module docstring).

    Raises:
        ImageReadError: naming the file and the reason: not found, empty (0 bytes), not an image, truncated,
            corrupt, unreadable (permissions), or a pixel format with no RGB meaning (floating point).
    """
    decoded = _decode(path)
    try:
        if isinstance(decoded, np.ndarray):
            array = _to_uint8(decoded)
        else:
            image = _upright(decoded)
            mode = image.mode
            if mode == "RGB":
                array = np.asarray(image)
            elif mode in ("P", "PA", "RGBA", "RGBa", "RGBX", "LA", "La"):
                array = np.asarray(image.convert("RGBA"))[..., :3]  # alpha dropped, colours kept
            elif mode.startswith("I") or mode == "1":
                array = _to_uint8(np.asarray(image))
            elif mode == "F":
                raise ValueError("32-bit floating-point pixels")
            else:  # L, CMYK, YCbCr, HSV, ...
                array = np.asarray(image.convert("RGB"))
    except ValueError as error:
        raise ImageReadError(path, f"unsupported pixel format ({error}); convert it to 8-bit RGB") from None
    return as_rgb_uint8(array)


def as_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Decoded pixels as uint8 ``(H, W, 3)`` RGB, by the reader's rules: grey ``(H, W)`` or ``(H, W, 1)``
    repeated, alpha ``(H, W, 4)`` dropped, 16-bit reduced to the high byte. The in-memory half of
    :func:`read_image` (``densevision.load(...).predict`` takes arrays through it).

    Raises:
        ValueError: floating-point pixels (``"float32 pixels"``).
    """
    array = _to_uint8(np.asarray(array))
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.shape[2] == 4:
        array = array[..., :3]
    elif array.shape[2] != 3:
        array = np.repeat(array[..., :1], 3, axis=2)
    return np.ascontiguousarray(array, np.uint8)


def read_mask(path: PathLike) -> np.ndarray:
    """A whole label-mask file as stored: ``(H, W)`` integers (palette indices for palette PNGs, 8/16-bit grey
    values) or ``(H, W, 3)`` uint8 RGB for colour masks (alpha dropped). EXIF orientation is applied.

    Raises:
        ImageReadError: as :func:`read_image`.
    """
    decoded = _decode(path)
    if isinstance(decoded, np.ndarray):
        return decoded[..., :3] if decoded.ndim == 3 else decoded
    image = _upright(decoded)
    mode = image.mode
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(image.convert("RGBA"))[..., :3]
    if mode in ("LA", "La", "PA"):
        return np.asarray(image)[..., 0]
    if mode == "1":
        return np.asarray(image).astype(np.uint8)
    if mode in ("P", "L", "RGB") or mode.startswith("I"):
        return np.asarray(image)
    if mode == "F":
        raise ImageReadError(path, "unsupported pixel format (32-bit floating point) for a label mask")
    return np.asarray(image.convert("RGB"))


def image_size(path: PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image as :func:`read_image` returns it (EXIF orientation included), from the header only.

    Raises:
        ImageReadError: the header cannot be read.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = 1
            # Pillow's PNG getexif() decodes the whole image to look for an eXIf chunk after the pixels: read
            # only the EXIF found in the header (PNGs with an orientation tag are rare)
            if image.format != "PNG" or "exif" in image.info:
                try:
                    orientation = image.getexif().get(0x0112, 1)
                except Exception:  # noqa: BLE001 - malformed EXIF: as read_image, ignored
                    orientation = 1
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        _read_bytes(path)  # raises the precise reason
        raise
    except UnidentifiedImageError:
        return read_image(path).shape[:2]  # formats only OpenCV reads: decode (raises if it cannot)
    except Exception as error:  # noqa: BLE001
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            raise ImageReadError(path, "empty file (0 bytes)") from None
        raise ImageReadError(path, f"unreadable header ({type(error).__name__}: {error})") from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


# ------------------------------------------------------------------------------------------------ listing


def scan_folder(folder: PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS
                ) -> tuple[list[Path], list[Path], list[str]]:
    """One folder's entries, never raising for a bad entry: ``(files, folders, problems)``.

    Hidden entries (``.name``) are skipped. ``files`` are the files with one of ``extensions`` (symbolic links
    followed), ``folders`` the sub-folders, ``problems`` one ``"<path> (<reason>)"`` per entry that cannot be
    resolved (a symlink loop, a broken link with an image name, no permission). Sorted by name.

    Raises:
        DatasetError: ``folder`` itself cannot be listed.
    """
    folder = Path(folder)
    try:
        with os.scandir(folder) as entries:
            entries = sorted(entries, key=lambda entry: entry.name)
    except OSError as error:
        raise DatasetError(f"{folder}: cannot be listed: {describe_os_error(error)}") from None
    files, folders, problems = [], [], []
    extensions = tuple(ext.lower() for ext in extensions)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir()
            is_file = not is_dir and entry.is_file()
        except OSError as error:  # ELOOP: a link that points to itself
            problems.append(f"{path} ({describe_os_error(error)})")
            continue
        if is_dir:
            folders.append(path)
        elif is_file:
            if path.suffix.lower() in extensions:
                files.append(path)
        elif entry.is_symlink() and path.suffix.lower() in extensions:
            problems.append(f"{path} (broken symbolic link to {os.readlink(path)})")
    return files, folders, problems


def _inside(real: str, folders: Sequence[str]) -> bool:
    """Whether the real path ``real`` is one of ``folders`` (real paths) or lies below one."""
    return any(real == folder or real.startswith(folder.rstrip(os.sep) + os.sep) for folder in folders)


def _walk(top: Path, recursive: bool, extensions: Sequence[str], problems: list[str],
          skip: Sequence[str] = ()) -> list[Path]:
    """Image files under ``top``; follows links but never re-enters a folder it is already inside, and never
    enters a folder of ``skip`` (real paths: the tool's output folder)."""
    found: list[Path] = []

    def visit(folder: Path, ancestors: frozenset) -> None:
        try:
            files, folders, bad = scan_folder(folder, extensions)
        except DatasetError as error:
            problems.append(str(error))
            return
        found.extend(files)
        problems.extend(bad)
        if not recursive:
            return
        for sub in folders:
            real = os.path.realpath(sub)
            if real in ancestors:
                problems.append(f"{sub} (symbolic link loop: it leads back to {real}, a folder it is inside)")
                continue
            if _inside(real, skip):  # the output folder: what this tool writes is never read back as input
                continue
            visit(sub, ancestors | {real})

    visit(top, frozenset({os.path.realpath(top)}))
    return found


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard (relative paths are taken from there)."""
    parts = Path(pattern).parts
    base = []
    for part in parts:
        if glob.has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def list_images(inputs: Iterable[PathLike], recursive: bool = True,
                extensions: Sequence[str] = IMAGE_EXTENSIONS, problems: Optional[list[str]] = None,
                exclude: Sequence[PathLike] = ()) -> list[tuple[Path, str]]:
    """Image files from files, folders and glob patterns: ``[(path, relative path), ...]``.

    The relative path (``/``-separated) is the file's path below the folder it was found in (a folder input,
    or a glob pattern's folder part); a file given directly has its own name. Folders are walked in name
    order (recursively by default), hidden entries are skipped, symbolic links are followed.

    Args:
        problems: if given, unusable inputs are appended to it (``"path (reason)"``) instead of raising, so a
            caller can skip them with a warning and go on with the rest.
        exclude: folders never read (the tool's output folder, which may lie inside an input folder: a second run
            would otherwise predict the first run's outputs); an input inside one is a problem.

    Raises:
        DatasetError: one message listing every input that does not exist, is not an image file name, matches
            nothing, and every symbolic link loop, broken link or unlistable folder met on the way (unless
            ``problems`` collects them); no image found at all (unless ``problems`` is given: then ``[]``).
    """
    extensions = tuple(ext.lower() for ext in extensions)
    found: list[tuple[Path, str]] = []
    collect = problems is not None
    problems = problems if collect else []
    skip = [os.path.realpath(folder) for folder in exclude]
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if skip and os.path.lexists(text) and _inside(os.path.realpath(text), skip):
            problems.append(f"{path} (it is in the output folder, whose files are never read as inputs)")
            continue
        if glob.has_magic(text) and not os.path.lexists(text):
            base = _glob_base(text)
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            before = len(found)
            for match in matches:
                if skip and _inside(os.path.realpath(match), skip):
                    continue
                if match.is_dir():
                    found += [(f, f.relative_to(base).as_posix()) for f in _walk(match, recursive, extensions,
                                                                                 problems, skip)]
                elif match.is_file() and match.suffix.lower() in extensions:
                    found.append((match, match.relative_to(base).as_posix()))
            if len(found) == before:
                problems.append(f"{text} (matches no image file)")
        elif path.is_dir():
            found += [(f, f.relative_to(path).as_posix())
                      for f in _walk(path, recursive, extensions, problems, skip)]
        elif path.is_file():
            if path.suffix.lower() in extensions:
                found.append((path, path.name))
            else:
                problems.append(f"{path} (not an image file name; expected {'/'.join(extensions)})")
        elif path.is_symlink():
            try:
                os.stat(path)
                reason = "cannot be resolved"
            except OSError as error:
                        reason = ("broken symbolic link to " + os.readlink(path) if isinstance(error, FileNotFoundError)
                          else describe_os_error(error))
            problems.append(f"{path} ({reason})")
        else:
            problems.append(f"{path} (no such file or folder)")
    if problems and not collect:
        raise DatasetError(summarize_items(problems, "that cannot be used as image inputs", show=8))
    if not found and not collect:
        raise DatasetError(f"no image files ({'/'.join(extensions)}) in: {', '.join(map(os.fspath, inputs))}")
    return found


def split_problem(problem: str) -> tuple[str, str]:
    """``"path (reason)"`` as :func:`list_images` reports it -> ``(path, reason)``; the reason is the last
    balanced parenthesis, so a name such as ``IMG (1).jpg`` stays whole. Anything else -> ``(problem, "")``."""
    if problem.endswith(")"):
        depth = 0
        for index in range(len(problem) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(problem[index], 0)
            if depth == 0:
                if index > 1 and problem[index - 1] == " ":
                    return problem[:index - 1], problem[index + 1:-1]
                break
    return problem, ""


def find_inputs(inputs: Sequence[PathLike], recursive: bool = True, exclude: Sequence[PathLike] = ()
                ) -> tuple[list[tuple[Path, str]], list[dict[str, str]]]:
    """The input walker of every tool that reads images (predict, sliding classification): :func:`list_images`,
    with each unusable entry (a symbolic link loop, a broken link, a missing file) skipped with a warning on
    stderr rather than refusing the whole folder.

    Args:
        inputs: files, folders (walked recursively unless ``recursive`` is false) and glob patterns.
        exclude: folders never read (the tool's output folder).

    Returns:
        ``([(path, relative path)], [{"path", "error"}] of the skipped entries)``.

    Raises:
        DatasetError: no image file at all.
    """
    problems: list[str] = []
    images = list_images(inputs, recursive=recursive, problems=problems, exclude=exclude)
    skipped = []
    for problem in problems:
        path, reason = split_problem(problem)
        print(f"warning: skipped {path}: {reason or 'cannot be used as an input'}", file=sys.stderr)
        skipped.append({"path": path, "error": reason or "cannot be used as an input"})
    if not images:
        raise DatasetError(f"no image files found in: {', '.join(map(os.fspath, inputs))}")
    return images, skipped


# ------------------------------------------------------------------------------------------------ verifying


def _stat_key(path: Path) -> Optional[tuple[str, int, int]]:
    try:
        stat = path.stat()
    except OSError:
        return None
    return os.path.realpath(path), stat.st_size, stat.st_mtime_ns


class _VerifiedCache:
    """Files that decoded, one small JSON file per real folder: ``{"files": {name: [size, mtime_ns]}}``."""

    def __init__(self, directory: Path, kind: str):
        self.directory, self.kind = directory, kind
        self.folders: dict[str, dict[str, list[int]]] = {}
        self.added: set[str] = set()

    def _file(self, folder: str) -> Path:
        digest = hashlib.sha1(f"{self.kind} {READER_VERSION} {folder}".encode()).hexdigest()[:20]
        return self.directory / f"{digest}.json"

    def _load(self, folder: str) -> dict[str, list[int]]:
        if folder not in self.folders:
            try:
                data = json.loads(self._file(folder).read_text())
                entries = data["files"] if data.get("folder") == folder else {}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                entries = {}  # missing or damaged: verify again
            self.folders[folder] = entries if isinstance(entries, dict) else {}
        return self.folders[folder]

    def passed(self, key: tuple[str, int, int]) -> bool:
        real, size, mtime = key
        return self._load(os.path.dirname(real)).get(os.path.basename(real)) == [size, mtime]

    def add(self, key: tuple[str, int, int]) -> None:
        real, size, mtime = key
        folder = os.path.dirname(real)
        self._load(folder)[os.path.basename(real)] = [size, mtime]
        self.added.add(folder)

    def save(self) -> None:
        for folder in self.added:
            entries = self.folders[folder]
            self.folders.pop(folder)
            merged = {**self._load(folder), **entries}  # keep what another process added meanwhile
            try:
                write_json(self._file(folder), {"folder": folder, "kind": self.kind, "files": merged}, indent=None)
            except (OutputError, OSError):
                return  # a read-only cache only costs time next open
        self.added.clear()


def verify_images(paths: Iterable[PathLike], cache_dir: Union[PathLike, None, bool] = None, progress: bool = True,
                  reader: Callable[[PathLike], np.ndarray] = read_image, workers: Optional[int] = None,
                  desc: str = "checking images") -> dict[Path, str]:
    """Decode every file completely once; return ``{path: reason}`` for those that fail (empty: all good).

    Files that decoded are remembered by (real path, size, modification time) under ``cache_dir`` (default
    ``$DENSEVISION_CACHE/verified`` or ``~/.cache/densevision/verified``; ``False``: no cache), so a second
    open only ``stat``s them; a changed file is decoded again. Failures are never cached.

    Args:
        paths: the files.
        cache_dir: where verdicts are kept (see above).
        progress: show a progress bar when there are many files to decode.
        reader: the decoder (:func:`read_image`; :func:`read_mask` for masks).
        workers: threads (Pillow decodes outside the GIL); default ``min(8, cpu count)``.
        desc: the progress bar's label.
    """
    paths = [Path(p) for p in paths]
    cache = None
    if cache_dir is not False:
        directory = Path(cache_dir) if cache_dir not in (None, True) else cache_root() / "verified"
        cache = _VerifiedCache(directory, getattr(reader, "__name__", "reader"))
    todo: list[tuple[Path, Optional[tuple[str, int, int]]]] = []
    for path in paths:
        key = _stat_key(path)
        if key is not None and cache is not None and cache.passed(key):
            continue
        todo.append((path, key))

    def check(item):
        path, _ = item
        try:
            reader(path)
        except ImageReadError as error:
            return error.reason
        except DatasetError as error:
            return str(error)
        return None

    errors: dict[Path, str] = {}
    if todo:
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool, progress_bar(total=len(todo), desc=desc, unit="file", leave=False,
                                                                enabled=progress and len(todo) >= 64) as bar:
            for (path, key), reason in zip(todo, pool.map(check, todo)):
                bar.update()
                if reason is not None:
                    errors[path] = reason
                elif key is not None and cache is not None:
                    cache.add(key)
        if cache is not None:
            cache.save()
    return errors
