"""The one boxes file of the pose tools: people boxes per video frame or per image, for ``predict --boxes`` and
``video --boxes`` alike, read and checked whole before any work.

A boxes file is JSON in one of these layouts (every box ``[x, y, w, h]`` in pixels, ``w`` and ``h`` positive, a
missing score 1.0):

1. per frame or image, as the video tool writes its ``--json`` (so a run's output is the next run's input)::

       {"frames": [{"frame": 0, "boxes": [[x, y, w, h], [x, y, w, h, score], ...]},
                   {"frame": 1, "file": "0001.jpg", "people": [{"box": [x, y, w, h], "score": s, ...}, ...]}]}

   (``"file"`` instead of ``"frame"`` keys the entry by image name; beside it, ``"frame"`` is the key);
2. a flat list of detections, as COCO results and ``predict``'s ``results.json`` are::

       [{"frame": 0, "bbox": [x, y, w, h], "score": 0.9}, {"image": "a/b.jpg", "box": [...], ...}, ...]

   keyed by ``"frame"`` (or COCO's ``"image_id"``) or by ``"image"``/``"file"`` (a relative path);
3. a mapping from relative image path to boxes::

       {"relative/path.jpg": [[x, y, w, h, score], ...]}

A frame or image that is not listed has no people. A frame index is 0-based; an image key matches the image's
path relative to its input folder, or else its file name.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path, PurePosixPath
from typing import Optional, Union

import numpy as np

from densevision.data.io import IMAGE_EXTENSIONS
from densevision.errors import UsageError

Key = Union[int, str]
"""A frame index (int) or an image's relative path (str)."""


class BoxesFileError(UsageError):
    """A boxes file that cannot be used: names the file, the entry and what was expected."""


def empty_boxes() -> tuple[np.ndarray, np.ndarray]:
    """No people: ``(boxes float32 (0, 4), scores float32 (0,))``."""
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)


class BoxesTable:
    """People boxes read from a boxes file: :meth:`lookup` answers ``(boxes (N, 4) xywh, scores (N,))``.

    Attributes:
        path: the file.
        entries: ``{key: (boxes, scores)}``; keys are frame indices (int) or relative image paths (str).
    """

    def __init__(self, path: Path, entries: dict[Key, tuple[np.ndarray, np.ndarray]]):
        self.path, self.entries = path, entries

    def lookup(self, frame: Optional[int] = None, name: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
        """The boxes of frame ``frame`` or image ``name`` (a relative path, or else its file name alone, as the
        file lists it), copies; none when neither is listed."""
        for key in (frame, name, None if name is None else PurePosixPath(name).name):
            if key is not None and key in self.entries:
                boxes, scores = self.entries[key]
                return boxes.copy(), scores.copy()
        return empty_boxes()

    def frames(self) -> list[int]:
        """The frame indices listed, in order."""
        return sorted(key for key in self.entries if isinstance(key, int))

    def __len__(self) -> int:
        return len(self.entries)


def _box(values, where: str) -> tuple[list[float], Optional[float]]:
    if not isinstance(values, (list, tuple)) or len(values) not in (4, 5):
        raise BoxesFileError(f"{where}: expected [x, y, w, h] or [x, y, w, h, score], got {values!r:.120}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise BoxesFileError(f"{where}: box values must be numbers, got {values!r:.120}")
    numbers = [float(v) for v in values]
    if not all(math.isfinite(v) for v in numbers) or numbers[2] <= 0 or numbers[3] <= 0:
        raise BoxesFileError(f"{where}: box {values!r:.120} needs finite values and positive width and height")
    return numbers[:4], (numbers[4] if len(numbers) == 5 else None)


def _score(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BoxesFileError(f"{where}: score must be a number, got {value!r:.60}")
    return float(value)


def _frame(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
        raise BoxesFileError(f"{where}: frame index must be a non-negative integer, got {value!r:.60}")
    return int(value)


def _name(value, where: str) -> str:
    if not isinstance(value, str) or PurePosixPath(value).suffix.lower() not in IMAGE_EXTENSIONS:
        raise BoxesFileError(f"{where}: expected an image path relative to the input folder (ending in "
                             f"{', '.join(IMAGE_EXTENSIONS)}), got {value!r:.60}")
    return PurePosixPath(value.replace("\\", "/")).as_posix()


def _person(entry, where: str) -> tuple[list[float], float]:
    """One detection: a dict with ``box``/``bbox`` and maybe ``box_score``/``score``, or a bare list."""
    if isinstance(entry, dict):
        key = "box" if "box" in entry else "bbox"
        if key not in entry:
            raise BoxesFileError(f"{where}: expected a \"box\" (or \"bbox\") [x, y, w, h], got keys {sorted(entry)}")
        box, inline = _box(entry[key], f"{where}, {key}")
        # A person record's "score" mixes in its pose; the finder's own score is "box_score" (see tasks/pose.py).
        for score_key in ("box_score", "score"):
            if score_key in entry:
                return box, _score(entry[score_key], f"{where}, {score_key}")
        return box, 1.0 if inline is None else inline
    box, inline = _box(entry, where)
    return box, 1.0 if inline is None else inline


def _label(key: Key) -> str:
    return f"frame {key}" if isinstance(key, int) else f"image {key!r}"


def _key(entry: dict, where: str, keys=("frame", "image", "file", "image_id")) -> Key:
    for name in keys:
        if name in entry:
            if name in ("frame", "image_id"):
                return _frame(entry[name], f"{where}, {name}")
            return _name(entry[name], f"{where}, {name}")
    raise BoxesFileError(f"{where}: expected one of {', '.join(repr(k) for k in keys)} to say which frame or "
                         f"image it belongs to, got keys {sorted(entry)}")


LAYOUTS = ('{"frames": [{"frame": i, "boxes": [[x, y, w, h(, score)], ...]}]}, a list of '
           '{"frame": i (or "image": path), "bbox": [x, y, w, h], "score": s}, or '
           '{"relative/path.jpg": [[x, y, w, h(, score)], ...]}')


def parse_boxes(data, path: Path) -> dict[Key, tuple[np.ndarray, np.ndarray]]:
    """The entries of a decoded boxes file (layouts in the module docstring).

    Raises:
        BoxesFileError: naming ``path`` and the entry.
    """
    collected: dict[Key, tuple[list, list]] = {}

    def add(key: Key, box: list[float], score: float) -> None:
        boxes, scores = collected.setdefault(key, ([], []))
        boxes.append(box)
        scores.append(score)

    if isinstance(data, dict) and isinstance(data.get("frames"), list):
        for position, entry in enumerate(data["frames"]):
            where = f"boxes file {path}, frames[{position}]"
            if not isinstance(entry, dict):
                raise BoxesFileError(f"{where}: expected {{\"frame\": i, \"boxes\": [...]}}, got {entry!r:.120}")
            key = _key(entry, where, ("frame", "file"))
            if key in collected:
                raise BoxesFileError(f"{where}: {_label(key)} is listed twice")
            collected[key] = ([], [])
            if "error" in entry and not entry.get("people") and not entry.get("boxes"):
                continue  # a frame the video tool could not decode: no people
            people = entry.get("boxes", entry.get("people"))
            if not isinstance(people, list):
                raise BoxesFileError(f"{where}: expected \"boxes\": [[x, y, w, h(, score)], ...] or \"people\": "
                                     f"[{{\"box\": [...], \"score\": s}}, ...], got keys {sorted(entry)}")
            for number, person in enumerate(people):
                add(key, *_person(person, f"{where} ({_label(key)}), box {number}"))
    elif isinstance(data, list):
        for position, entry in enumerate(data):
            where = f"boxes file {path}, entry {position}"
            if not isinstance(entry, dict):
                raise BoxesFileError(f"{where}: expected {{\"frame\": i, \"bbox\": [x, y, w, h], \"score\": s}}, "
                                     f"got {entry!r:.120}")
            key = _key(entry, where)
            add(key, *_person(entry, f"{where} ({_label(key)})"))
    elif isinstance(data, dict) and "frames" not in data:
        for name, people in data.items():
            where = f"boxes file {path}, image {name!r}"
            key = _name(name, where)
            if not isinstance(people, list):
                raise BoxesFileError(f"{where}: expected a list of boxes [x, y, w, h(, score)], got {people!r:.120}")
            collected[key] = ([], [])
            for number, person in enumerate(people):
                add(key, *_person(person, f"{where}, box {number}"))
    else:
        raise BoxesFileError(f"boxes file {path}: expected {LAYOUTS}; got {type(data).__name__}"
                             + (" with a \"frames\" that is not a list" if isinstance(data, dict) else ""))
    return {key: (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32))
            for key, (boxes, scores) in collected.items()}


def load_boxes_file(path: str | os.PathLike) -> BoxesTable:
    """Read and check a whole boxes file (module docstring) before any work.

    Raises:
        BoxesFileError: missing or unreadable file, not JSON, an unknown layout, a bad key, box or score, a frame
            listed twice; the message names the file and the entry.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BoxesFileError(f"boxes file {path} does not exist") from None
    except IsADirectoryError:
        raise BoxesFileError(f"boxes file {path} is a folder; expected a JSON file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BoxesFileError(f"boxes file {path}: cannot read it as JSON ({error})") from None
    return BoxesTable(path, parse_boxes(data, path))
