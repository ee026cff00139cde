"""What every top-down pose source shares: one person instance per sample, the checks made when a dataset is opened,
and the problem report.

A source collects one :class:`PersonRecord` per person instance, then :meth:`KeypointSource._finish` checks them
all (image files present and readable, sizes, joints far outside the image, empty boxes) and raises ONE
:class:`~densevision.data.errors.DatasetError` listing every bad file and record (or, with
``skip_bad_records=True``, drops the bad records with a warning). ``load(index)`` returns the sample dict::

    {"image": uint8 (H, W, 3) RGB, "keypoints": float32 (J, 3) [x, y, v], "center": float32 (2,),
     "scale": float32 (2,), "meta": {"name", "image_id", "box", ...}}

Keypoints are in original-image pixels with pixel centres at integers; ``v`` follows COCO: 0 not labelled
(x = y = 0), 1 labelled but occluded, 2 labelled and visible.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from densevision.data.errors import DatasetError, not_a_folder, summarize_items
from densevision.data.io import read_image, verify_images
from densevision.data.skeletons import keypoint_info
from densevision.data.topdown import DEFAULT_PADDING, box_to_center_scale

#: Problems in report order: (noun, what is wrong). ``{joints}`` and ``{tolerance}`` are filled in.
PROBLEM_KINDS = {
    "unreadable_annotations": ("file", "that cannot be read as annotations"),
    "fields": ("record", "with missing or malformed fields"),
    "joint_count": ("record", "with the wrong number of joints (expected {joints})"),
    "unknown_image": ("record", "naming an image that is not in the annotation file's image list"),
    "missing_image": ("image file", "missing (named by the records shown)"),
    "unreadable_image": ("image file", "that cannot be read as images"),
    "image_size": ("image file", "whose size differs from the annotation's width and height"),
    "outside": ("record", "with labelled joints far outside the image (more than {tolerance} of its size beyond "
                          "the border: wrong coordinates or the wrong image?)"),
    "zero_box": ("record", "with a zero-size person box"),
    "no_headbox": ("record", "without a head box (data.require_headbox is set)"),
}


@dataclass
class PersonRecord:
    """One person instance: where its image is, its joints and its box (``where`` names it in error messages)."""

    name: str
    image_path: Path
    keypoints: np.ndarray  # float32 (J, 3)
    box: list  # [x, y, w, h] the person box (for LSP made from the joints)
    where: str
    meta: dict = field(default_factory=dict)
    expected_size: Optional[tuple[int, int]] = None  # (H, W) stated by the annotations
    center: Optional[np.ndarray] = None  # set by the source when it has its own (MPII), else from the box
    scale: Optional[np.ndarray] = None


class Problems:
    """Problems found while opening a dataset, by kind, and the records they make unusable.

    ``add(kind, item, records)`` ties a problem to the records it spoils (those ``skip_bad_records`` may drop);
    a problem without records (a whole annotation file) is fatal.
    """

    def __init__(self):
        self.items: dict[str, list[str]] = {}
        self.bad_records: set[int] = set()
        self.fatal = False

    def add(self, kind: str, item: str, records: int | Sequence[int] | None = None) -> None:
        if kind not in PROBLEM_KINDS:
            raise KeyError(f"unknown problem kind {kind!r}")
        self.items.setdefault(kind, []).append(item)
        if records is None:
            self.fatal = True
        else:
            self.bad_records.update([records] if isinstance(records, (int, np.integer)) else records)

    def __bool__(self) -> bool:
        return any(self.items.values())

    def report(self, where: str, num_joints: int, tolerance: float) -> str:
        lines = [f"{where}: the dataset cannot be used as it is:"]
        for kind, (noun, what) in PROBLEM_KINDS.items():
            if self.items.get(kind):
                text = what.format(joints=num_joints, tolerance=f"{tolerance:.0%}")
                lines.append("  - " + summarize_items(self.items[kind], text, noun=noun))
        return "\n".join(lines)


def check_input_size(input_size, where: str) -> tuple[int, int]:
    """``[H, W]`` -> ``(H, W)`` positive ints, or a DatasetError naming the option."""
    try:
        height, width = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: data.input_size={input_size!r}; expected [height, width]") from None
    if height < 1 or width < 1:
        raise DatasetError(f"{where}: data.input_size={input_size!r}; expected positive [height, width]")
    return height, width


def resolve(root: Path, path: str | os.PathLike, split: str) -> Path:
    """``path`` with ``{split}`` filled in; relative paths are under ``root``."""
    path = Path(str(path).format(split=split)).expanduser()
    return path if path.is_absolute() else root / path


def far_outside(keypoints: np.ndarray, height: int, width: int, tolerance: float) -> np.ndarray:
    """Indices of labelled joints more than ``tolerance`` x the image side beyond the image
    (which spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``)."""
    x, y, v = keypoints[:, 0], keypoints[:, 1], keypoints[:, 2]
    margin_x, margin_y = tolerance * width, tolerance * height
    outside = ((x < -0.5 - margin_x) | (x > width - 0.5 + margin_x)
               | (y < -0.5 - margin_y) | (y > height - 0.5 + margin_y) | ~np.isfinite(x) | ~np.isfinite(y))
    return np.flatnonzero(outside & (v > 0))


def _probe(path: Path, read_header: bool) -> tuple[Path, Optional[str], Optional[tuple[int, int]]]:
    """``(path, problem kind or None, (H, W) or None)``: reads the header only (no pixel decoding)."""
    if not path.is_file():
        return path, "missing_image", None
    if not read_header:
        return path, None, None
    try:
        with Image.open(path) as header:
            width, height = header.size
    except (OSError, ValueError) as error:
        return path, f"unreadable_image:{type(error).__name__}", None
    return path, None, (height, width)


class KeypointSource:
    """Base of the top-down pose sources: ``len``, ``names``, ``info``, ``load(index) -> dict``.

    Subclasses build :class:`PersonRecord` s and call :meth:`_finish`.
    """

    #: the dataset definition in :mod:`densevision.data.skeletons` ("coco", "mpii", "lsp")
    dataset: str
    #: the name the source is registered under (``data.name``), for messages
    source_name: str
    #: the expected layout, ending every "not found" message
    layout: str
    root: Path
    split: str
    info: dict
    names: list[str]

    @classmethod
    def describe(cls, **options) -> dict:
        """The dataset's ``info`` (joints, skeleton, flip pairs, colours, metric) without opening any data."""
        return keypoint_info(cls.dataset)

    def _open_root(self, root, split: str, input_size) -> tuple[str, tuple[int, int]]:
        """Set ``root``, ``split`` and ``info``; return ``(where, input_size)`` after checking both exist / make sense.

        Raises:
            DatasetError: no ``data.root``, a root that is not a folder, a bad ``input_size``.
        """
        if root is None:
            raise DatasetError(f"{self.source_name}: data.root is not set; {self.layout}")
        self.root, self.split = Path(root).expanduser(), split
        self.info = keypoint_info(self.dataset)
        where = f"{self.source_name} {split!r} at {self.root}"
        input_size = check_input_size(input_size, where)
        if not self.root.is_dir():
            raise DatasetError(f"{where}: {not_a_folder(self.root)}; {self.layout}")
        return where, input_size

    def _finish(self, records: list[PersonRecord], problems: Problems, *, where: str, input_size,
                padding: float = DEFAULT_PADDING, outside_tolerance: float = 0.1, check_images: bool = True,
                skip_bad_records: bool = False) -> None:
        """Check every record, compute centres and scales, keep the good records or raise one DatasetError.

        Args:
            records: every person instance found.
            problems: problems found while parsing (file-level ones have no record index).
            where: the source, split and root, opening the error message.
            input_size: ``(H, W)`` of the crop: the aspect ratio of the region ``scale`` describes.
            padding: the region is the box grown to that aspect ratio, times ``padding``.
            outside_tolerance: a labelled joint more than this fraction of the image size beyond its border is
                a problem (an image of the wrong size or coordinates of another image).
            check_images: read each image's header (size) and decode it once (a file cut short is found here;
                verdicts cached); existence is always checked.
            skip_bad_records: drop bad records with a warning instead of raising (file-level problems still
                raise).
        """
        self.input_size = tuple(input_size)
        self.padding = float(padding)
        self._where = where
        self.image_sizes: dict[Path, tuple[int, int]] = {}
        self._check_images(records, problems, check_images)
        for number, record in enumerate(records):
            x, y, w, h = record.box
            if not all(math.isfinite(float(v)) for v in record.box) or w <= 0 or h <= 0:
                problems.add("zero_box", f"{record.where} (box {_rounded(record.box)})", number)
            size = self.image_sizes.get(record.image_path) or record.expected_size
            if size is not None:
                bad = far_outside(record.keypoints, size[0], size[1], outside_tolerance)
                if len(bad):
                    joints = self.info["joint_names"]
                    shown = ", ".join(f"{joints[j]} at ({record.keypoints[j, 0]:.0f}, {record.keypoints[j, 1]:.0f})"
                                      for j in bad[:3]) + (" ..." if len(bad) > 3 else "")
                    problems.add("outside", f"{record.where} ({shown}; image {size[1]}x{size[0]} WxH)", number)

        if problems and (not skip_bad_records or problems.fatal):
            raise DatasetError(problems.report(where, self.info["num_joints"], outside_tolerance))
        if problems:
            warnings.warn(f"{problems.report(where, self.info['num_joints'], outside_tolerance)}\n"
                          f"  skipping these {len(problems.bad_records)} records (data.skip_bad_records is set)",
                          stacklevel=3)
            records = [r for i, r in enumerate(records) if i not in problems.bad_records]
        if not records:
            raise DatasetError(f"{where}: no person instances found; {self.layout_hint()}")

        for record in records:
            if record.center is None or record.scale is None:
                record.center, record.scale = box_to_center_scale(record.box, self.input_size, self.padding)
            record.center = np.asarray(record.center, np.float32)
            record.scale = np.asarray(record.scale, np.float32)
        self.records = records
        self.names = [r.name for r in records]

    def _check_images(self, records: list[PersonRecord], problems: Problems, read_headers: bool) -> None:
        by_path: dict[Path, list[int]] = {}
        for number, record in enumerate(records):
            by_path.setdefault(record.image_path, []).append(number)
        workers = min(8, os.cpu_count() or 1)  # file system waits release the GIL
        with ThreadPoolExecutor(workers) as pool:
            found = list(pool.map(lambda p: _probe(p, read_headers), sorted(by_path)))
        for path, kind, size in found:
            numbers = by_path[path]
            first = records[numbers[0]]
            named_by = first.where + (f" and {len(numbers) - 1} more" if len(numbers) > 1 else "")
            if kind == "missing_image":
                problems.add("missing_image", f"{path} ({named_by})", numbers)
            elif kind is not None:
                problems.add("unreadable_image", f"{path} ({kind.split(':', 1)[1]})", numbers)
            elif size is not None:
                self.image_sizes[path] = size
                expected = first.expected_size
                if expected is not None and tuple(expected) != size:
                    problems.add("image_size", f"{path} (file {size[1]}x{size[0]}, annotation "
                                               f"{expected[1]}x{expected[0]}, as WxH)", numbers)
        if read_headers:
            # A file cut short after an intact header passes the header read: decode every image once (verdicts
            # cached by size and modification time), so it is named here and not hours into training.
            for path, reason in verify_images(sorted(self.image_sizes)).items():
                text = str(reason)
                text = text[len(f"{path}: "):] if text.startswith(f"{path}: ") else text
                problems.add("unreadable_image", f"{path} ({text})", by_path[Path(path)])

    # ------------------------------------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, instances={len(self)})"

    def load(self, index: int) -> dict:
        """The sample dict of person instance ``index`` (the whole original image; the task crops)."""
        record = self.records[index]
        return {
            "image": read_image(record.image_path),
            "keypoints": record.keypoints.copy(),
            "center": record.center.copy(),
            "scale": record.scale.copy(),
            "meta": copy.deepcopy(record.meta),
        }

    def layout_hint(self) -> str:
        """One line on the expected layout (shown when nothing is found)."""
        return "see the dataset's README under datasets/"


def _rounded(values: Sequence[float]) -> list:
    return [round(float(v), 1) if math.isfinite(float(v)) else float(v) for v in values]


def labelled_extent(keypoints: np.ndarray) -> Optional[list[float]]:
    """``[x, y, w, h]`` spanned by the labelled joints (``v > 0``), or None when none is labelled."""
    labelled = keypoints[keypoints[:, 2] > 0, :2]
    if not len(labelled):
        return None
    low, high = labelled.min(axis=0), labelled.max(axis=0)
    return [float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])]
