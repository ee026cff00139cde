"""Segmentation sources made of image files paired with label masks, checked when opened.

:class:`SegmentationSource` holds the pairing, the check and the loading shared by every segmentation dataset;
:class:`MaskFolder` (``mask_folder`` in recipes) opens any dataset laid out as::

    root/images/<split>/<stem>.jpg|png|...     root/masks/<split>/<stem>.png

with masks as index PNGs (one label per pixel, palette-mode PNGs included) or colour PNGs decoded with the
recipe's ``palette``.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from densevision.data.errors import DatasetError, ImageReadError, not_a_folder, summarize_items
from densevision.data.io import (IMAGE_EXTENSIONS, MASK_EXTENSIONS, image_size, read_image, read_mask, scan_folder,
                                 verify_images)
from densevision.registry import DATASETS
from densevision.visualization.segmentation import default_palette

#: the raw mask reader (:func:`densevision.data.io.read_mask`), under its former name

# Problems are reported in this order, each with what was expected.
_PROBLEM_KINDS = {
    "missing": "listed in the split file but not found",
    "no_mask": "without a mask (pairs are matched by file stem)",
    "no_image": "without an image (pairs are matched by file stem)",
    "duplicate": "sharing a stem with another file in the same folder (which one to use is ambiguous)",
    "unreadable": "that cannot be read completely (truncated, corrupt, empty or not images)",
    "size": "whose image and mask sizes differ",
    "labels": "with label values outside {expected}",
    "colours": "with colours not in the palette",
    "colour_without_palette": "holding colour masks, which this source cannot decode ({colour_hint})",
}


class ColorCoder:
    """Colour masks -> label indices through a palette; colours outside it are reported, never guessed.

    Args:
        palette: ``(K, 3)`` RGB, row ``k`` is the colour of label ``k``.
        ignore_color: RGB of pixels to ignore (e.g. CamVid's black void), mapped to ``ignore_label``.
        ignore_label: the label those pixels get.
    """

    def __init__(self, palette: np.ndarray, ignore_color: Optional[Sequence[int]], ignore_label: int):
        colors = [tuple(int(c) for c in row) for row in np.asarray(palette).reshape(-1, 3)]
        labels = list(range(len(colors)))
        if ignore_color is not None:
            colors.append(tuple(int(c) for c in ignore_color))
            labels.append(ignore_label)
        keys = np.array([_pack_rgb(np.array(c, np.int64)) for c in colors], np.int64)
        if len(set(keys.tolist())) != len(keys):
            raise DatasetError(f"palette has repeated colours: {colors}; each label needs its own colour")
        order = np.argsort(keys)
        self._keys = keys[order]
        self._labels = np.array(labels, np.int32)[order]

    def encode(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(H, W, 3)`` RGB -> ``((H, W) int32 labels, (U, 3) unknown colours)``."""
        keys = _pack_rgb(rgb.astype(np.int64))
        unique, inverse = np.unique(keys, return_inverse=True)
        slots = np.clip(np.searchsorted(self._keys, unique), 0, len(self._keys) - 1)
        known = self._keys[slots] == unique
        labels = np.where(known, self._labels[slots], -1)[inverse.reshape(keys.shape)].astype(np.int32)
        unknown = unique[~known]
        return labels, np.stack([(unknown >> 16) & 255, (unknown >> 8) & 255, unknown & 255], axis=1)


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def list_files(directory: Path, extensions: Sequence[str], suffix: str = "",
               problems: Optional[dict[str, list[str]]] = None) -> tuple[dict[str, Path], list[Path]]:
    """``{stem (without suffix): path}`` of the files in ``directory`` and the files whose stem repeats.

    Entries that cannot be resolved (a symbolic link loop, a broken link) go to ``problems["unreadable"]``.
    """
    by_stem: dict[str, Path] = {}
    duplicates: list[Path] = []
    files, _, bad = scan_folder(directory, extensions)
    if problems is not None:
        problems.setdefault("unreadable", []).extend(bad)
    for path in files:
        stem = path.stem
        if suffix:
            if not stem.endswith(suffix):
                continue
            stem = stem[: -len(suffix)]
        if stem in by_stem:
            duplicates.append(path)
        else:
            by_stem[stem] = path
    return by_stem, duplicates


def resolve_listed_path(text: str, root: Path) -> Path:
    """A path from a split list file: as is if it exists, else under ``root``, else its last two parts under
    ``root`` (maps SegNet's absolute ``/SegNet/CamVid/train/x.png`` onto ``root/train/x.png``)."""
    path = Path(text)
    for candidate in (path, root / text.lstrip("/"), root.joinpath(*path.parts[-2:])):
        if candidate.is_file():
            return candidate
    return root.joinpath(*path.parts[-2:])


class SegmentationSource:
    """Images paired with label masks; the whole dataset is checked when opened.

    Subclasses find the pairs and call :meth:`_open`. The check decodes every image completely once (a truncated
    file is found at open, not mid-epoch; verdicts are cached by file size and time) and every mask (labels),
    and raises ONE :class:`DatasetError` listing every problem with the first few offending files.

    Attributes:
        names: file stems, in file order.
        paths: ``(image path, mask path)`` per example.
        info: ``{"class_names", "num_classes", "ignore_label", "palette" (K, 3) uint8, "ignore_color"}``.
        stats: what the check saw: ``{"sizes": Counter{(H, W): n}, "labels": Counter{label: pixels}}``.
    """

    root: Path
    split: str

    def _open(self, pairs: list[tuple[str, Path, Path]], class_names: Sequence[str], ignore_label: int,
              palette: Optional[np.ndarray], decode_colors: bool, ignore_color: Optional[Sequence[int]] = None,
              problems: Optional[dict[str, list[str]]] = None, where: str = "") -> None:
        """Store the pairs and info, then check everything (``problems`` holds pairing problems found earlier)."""
        num_classes = len(class_names)
        self.names = [name for name, _, _ in pairs]
        self.paths = [(image, mask) for _, image, mask in pairs]
        self.info = {
            "class_names": list(class_names),
            "num_classes": num_classes,
            "ignore_label": int(ignore_label),
            "palette": (np.asarray(palette, np.uint8).reshape(num_classes, 3) if palette is not None
                        else default_palette(num_classes)),
            "ignore_color": tuple(int(c) for c in ignore_color) if ignore_color is not None else (0, 0, 0),
        }
        self._coder = ColorCoder(self.info["palette"], ignore_color, ignore_label) if decode_colors else None
        self._where = where or f"{type(self).__name__} {self.split!r} at {self.root}"
        self._check(problems or {})

    # ------------------------------------------------------------------------------------------------ access
    def _split_list(self, source: str, split: str, list_file: Optional[str],
                    problems: dict[str, list[str]]) -> tuple[Optional[list[str]], list[tuple[str, Path, Path]]]:
        """``data.list_file`` of ``split`` (:func:`read_split_list`): ``(stems, pairs)``, ``(None, [])`` without one.

        Raises:
            DatasetError: the list file does not exist (``source`` names the dataset in the message).
        """
        if list_file is None:
            return None, []
        list_path = self.root / list_file.format(split=split)
        if not list_path.is_file():
            raise DatasetError(f"{source}: split list {list_path} not found (data.list_file={list_file!r})")
        return read_split_list(list_path, self.root, problems)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, examples={len(self)})"

    def load_image(self, index: int) -> np.ndarray:
        """uint8 ``(H, W, 3)`` RGB image of example ``index``."""
        return read_image(self.paths[index][0])

    def load_mask(self, index: int) -> np.ndarray:
        """int32 ``(H, W)`` labels of example ``index`` (``ignore_label`` where unlabelled)."""
        path = self.paths[index][1]
        labels, unknown = self._decode(read_mask(path), path)
        if len(unknown):
            raise DatasetError(f"{path}: colours not in the palette: {unknown[:5].tolist()}")
        return labels

    def load(self, index: int) -> dict:
        """``{"image": uint8 (H, W, 3) RGB, "mask": int32 (H, W), "meta": {"name", "index"}}`` of example ``index``."""
        image, mask = self.load_image(index), self.load_mask(index)
        if image.shape[:2] != mask.shape:
            raise DatasetError(f"{self.paths[index][0]}: image {image.shape[:2]} but mask {mask.shape} "
                               f"({self.paths[index][1]}); they must match")
        return {"image": image, "mask": mask, "meta": {"name": str(self.names[index]), "index": index}}

    def _decode(self, raw: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Raw mask -> ``(int32 labels, unknown colours (U, 3))``; raises on colour masks without a palette."""
        if raw.ndim == 3:
            if self._coder is not None:
                return self._coder.encode(raw)
            if np.array_equal(raw[..., 0], raw[..., 1]) and np.array_equal(raw[..., 0], raw[..., 2]):
                return raw[..., 0].astype(np.int32), np.empty((0, 3), np.int64)  # grey RGB: labels in each channel
            raise _ColourWithoutPalette(path)
        return raw.astype(np.int32, copy=False), np.empty((0, 3), np.int64)

    # ------------------------------------------------------------------------------------------------- check
    def _check_one(self, index: int) -> tuple[list[tuple[str, str]], Optional[tuple[int, int]], Optional[Counter]]:
        """``(problems as (kind, item) pairs, image size or None, label histogram or None)`` of one pair."""
        image_path, mask_path = self.paths[index]
        found: list[tuple[str, str]] = []
        size = None
        reason = self._bad_images.get(image_path)
        if reason is None:
            try:
                size = image_size(image_path)  # header only: the pixels were verified whole already
            except ImageReadError as error:
                reason = error.reason
        if reason is not None:
            found.append(("unreadable", f"{image_path} ({reason})"))
        try:
            raw = read_mask(mask_path)
            labels, unknown = self._decode(raw, mask_path)
        except ImageReadError as error:
            return found + [("unreadable", f"{mask_path} ({error.reason})")], None, None
        except _ColourWithoutPalette:
            return found + [("colour_without_palette", str(mask_path))], None, None
        if size is not None and labels.shape != size:
            found.append(("size", f"{self.names[index]} (image {size[0]}x{size[1]}, mask "
                                  f"{labels.shape[0]}x{labels.shape[1]}, as HxW)"))
        if len(unknown):
            shown = ", ".join(str(c) for c in unknown[:3].tolist()) + (" ..." if len(unknown) > 3 else "")
            found.append(("colours", f"{mask_path} ({shown})"))
        histogram = _label_histogram(raw if raw.ndim == 2 else labels)
        num_classes, ignore = self.info["num_classes"], self.info["ignore_label"]
        bad = sorted(v for v in histogram if not (0 <= v < num_classes or v == ignore or (len(unknown) and v == -1)))
        if bad:
            shown = ", ".join(map(str, bad[:6])) + (" ..." if len(bad) > 6 else "")
            found.append(("labels", f"{mask_path} (values {shown})"))
        return found, size, histogram

    def _check(self, problems: dict[str, list[str]]) -> None:
        """Decode every image whole (cached verdicts, see :func:`densevision.data.io.verify_images`) and every mask
        (labels counted each time), then raise one error listing every problem."""
        self._bad_images = verify_images([image for image, _ in self.paths], desc=f"checking {self._where}")
        sizes: Counter = Counter()
        labels: Counter = Counter()
        workers = min(8, os.cpu_count() or 1)  # Pillow and zlib decode outside the GIL
        with ThreadPoolExecutor(workers) as pool:
            for found, size, histogram in pool.map(self._check_one, range(len(self))):
                for kind, item in found:
                    problems.setdefault(kind, []).append(item)
                if size is not None:
                    sizes[size] += 1
                if histogram is not None:
                    labels.update(histogram)
        self.stats = {"sizes": sizes, "labels": labels}
        problems = {kind: items for kind, items in problems.items() if items}
        if not len(self) and not problems:
            problems["empty"] = []
        if problems:
            raise DatasetError(self._problem_report(problems))

    def _problem_report(self, problems: dict[str, list[str]]) -> str:
        num_classes, ignore = self.info["num_classes"], self.info["ignore_label"]
        expected_labels = f"[0, {num_classes}) and the ignore label {ignore}"
        lines = [f"{self._where}: the dataset cannot be used as it is:"]
        if "empty" in problems:
            lines.append(f"  - no image/mask pairs found; {self.layout_hint()}")
        for kind, what in _PROBLEM_KINDS.items():
            if problems.get(kind):
                what = what.format(expected=expected_labels, colour_hint=self.colour_mask_hint())
                lines.append("  - " + summarize_items(problems[kind], what))
        if problems.get("colours"):
            palette = [tuple(int(c) for c in row) for row in self.info["palette"]]
            lines.append(f"    palette (label: colour): {dict(enumerate(palette))}")
        return "\n".join(lines)

    def layout_hint(self) -> str:
        """One line on the expected folder layout (shown with pairing errors)."""
        return "expected images and masks with matching file stems"

    def colour_mask_hint(self) -> str:
        """How to use colour masks with this source (shown when a colour mask is found and cannot be decoded)."""
        return "set data.palette: [[r, g, b], ...], one colour per class, to decode them"


class _ColourWithoutPalette(Exception):
    """Internal: a 3-channel mask with different channels and no palette to decode it."""


def _label_histogram(mask: np.ndarray) -> Counter:
    """``Counter{label: pixels}`` of an integer mask (bincount for small unsigned types: fast)."""
    if mask.dtype in (np.uint8, np.uint16):
        counts = np.bincount(mask.ravel(), minlength=1)
        present = np.flatnonzero(counts)
        return Counter(dict(zip(present.tolist(), counts[present].tolist())))
    values, counts = np.unique(mask, return_counts=True)
    return Counter(dict(zip(values.tolist(), counts.tolist())))


def _split_parts(split: str) -> list[str]:
    """``"train+val"`` -> ``["train", "val"]`` (several splits opened as one)."""
    parts = [part.strip() for part in split.split("+")]
    if not split or any(not part for part in parts):
        raise DatasetError(f"split {split!r}: expected a split name like 'train' or several joined as 'train+val'")
    return parts


def pair_by_stem(image_dir: Path, mask_dir: Path, mask_suffix: str, problems: dict[str, list[str]],
                 stems: Optional[list[str]] = None) -> list[tuple[str, Path, Path]]:
    """Pair ``image_dir/<stem>.*`` with ``mask_dir/<stem><mask_suffix>.*``; record unpaired files in ``problems``.

    With ``stems`` (from a split list), only those stems are paired and any that is missing is a problem.
    """
    images, image_duplicates = list_files(image_dir, IMAGE_EXTENSIONS, problems=problems)
    masks, mask_duplicates = list_files(mask_dir, MASK_EXTENSIONS, mask_suffix, problems=problems)
    problems.setdefault("duplicate", []).extend(map(str, image_duplicates + mask_duplicates))
    if stems is None:
        problems.setdefault("no_mask", []).extend(str(images[s]) for s in images if s not in masks)
        problems.setdefault("no_image", []).extend(str(masks[s]) for s in masks if s not in images)
        stems = [s for s in images if s in masks]
    else:
        problems.setdefault("missing", []).extend(
            f"{s} (in {image_dir} / {mask_dir})" for s in stems if s not in images or s not in masks)
        stems = [s for s in stems if s in images and s in masks]
    return [(s, images[s], masks[s]) for s in stems]


def read_split_list(list_path: Path, root: Path, problems: dict[str, list[str]]) -> tuple[list[str], list[tuple[str, Path, Path]]]:
    """A split list file: lines of ``<stem>`` or ``<image path> <mask path>``.

    Returns:
        ``(stems, pairs)``: stems for one-column lines (paired by folder later), pairs for two-column lines
        (absolute paths are mapped onto ``root`` by their last two parts when they do not exist).
    """
    stems: list[str] = []
    pairs: list[tuple[str, Path, Path]] = []
    for number, line in enumerate(list_path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or line.lstrip().startswith("#"):
            continue
        if len(fields) == 1:
            stems.append(Path(fields[0]).stem)
        elif len(fields) == 2:
            image, mask = (resolve_listed_path(f, root) for f in fields)
            missing = [str(p) for p in (image, mask) if not p.is_file()]
            if missing:
                problems.setdefault("missing", []).append(f"{' and '.join(missing)} ({list_path.name}:{number})")
            else:
                pairs.append((image.stem, image, mask))
        else:
            raise DatasetError(f"{list_path}:{number}: expected '<stem>' or '<image path> <mask path>', got {line!r}")
    return stems, pairs


@DATASETS.register("mask_folder")
class MaskFolder(SegmentationSource):
    """Any segmentation dataset of images and masks paired by file stem (``mask_folder`` in recipes).

    Layout (folders configurable; ``{split}`` is replaced by the split name)::

        root/images/<split>/<stem>.jpg     root/masks/<split>/<stem><mask_suffix>.png

    or a split list file (``list_file: "{split}.txt"``) of stems or ``<image> <mask>`` path pairs.

    Args:
        root: dataset folder.
        split: ``"train"``, ``"val"``, ... or several joined with ``+`` (``"train+val"``).
        num_classes: number of classes; taken from ``palette`` or ``class_names`` when omitted.
        class_names: one name per label (default ``class_0``, ``class_1``, ...).
        palette: ``[[r, g, b], ...]`` colour of each label: decodes colour masks and colours pictures.
        ignore_label: label ignored by loss and metrics; allowed in masks besides ``[0, num_classes)``.
        ignore_color: ``[r, g, b]`` of colour-mask pixels to ignore (e.g. ``[0, 0, 0]``).
        images_dir: image folder under ``root``.
        masks_dir: mask folder under ``root``.
        mask_suffix: text after the stem in mask file names (e.g. ``"_labelIds"``).
        list_file: split list file under ``root`` (overrides folder listing).

    Raises:
        DatasetError: missing folders, unpaired or unreadable files, size mismatches, labels outside
            ``[0, num_classes) ∪ {ignore_label}``, unknown colours; one message listing them all.
    """

    def __init__(self, root: str, split: str = "train", num_classes: Optional[int] = None,
                 class_names: Optional[list[str]] = None, palette: Optional[list[list[int]]] = None,
                 ignore_label: int = 255, ignore_color: Optional[list[int]] = None,
                 images_dir: str = "images/{split}", masks_dir: str = "masks/{split}", mask_suffix: str = "",
                 list_file: Optional[str] = None):
        if root is None:
            raise DatasetError("mask_folder: data.root is not set; " + self._layout(images_dir, masks_dir))
        self.root, self.split = Path(root).expanduser(), split
        self.images_dir, self.masks_dir = images_dir, masks_dir
        palette_array = _check_palette(palette, ignore_color)
        if num_classes is None:
            num_classes = (len(palette_array) if palette_array is not None
                           else len(class_names) if class_names else None)
        if num_classes is None or num_classes < 1:
            raise DatasetError("mask_folder: set data.num_classes (or data.palette / data.class_names), "
                               f"got num_classes={num_classes!r}")
        for option, value in (("palette", palette_array), ("class_names", class_names)):
            if value is not None and len(value) != num_classes:
                raise DatasetError(f"mask_folder: data.{option} has {len(value)} entries but num_classes is "
                                   f"{num_classes}; give one per class")
        if 0 <= ignore_label < num_classes:
            raise DatasetError(f"mask_folder: ignore_label {ignore_label} is a real class in [0, {num_classes}); "
                               f"use a value outside, e.g. 255")
        if not self.root.is_dir():
            raise DatasetError(f"mask_folder: {not_a_folder(self.root)}; "
                               + self._layout(images_dir, masks_dir))
        problems: dict[str, list[str]] = {}
        pairs: list[tuple[str, Path, Path]] = []
        for part in _split_parts(split):
            pairs += self._find_pairs(part, list_file, mask_suffix, problems)
        names = class_names or [f"class_{k}" for k in range(num_classes)]
        self._open(pairs, names, ignore_label, palette_array, decode_colors=palette_array is not None,
                   ignore_color=ignore_color, problems=problems, where=f"mask_folder {split!r} at {self.root}")

    def _find_pairs(self, split: str, list_file: Optional[str], mask_suffix: str,
                    problems: dict[str, list[str]]) -> list[tuple[str, Path, Path]]:
        image_dir = self.root / self.images_dir.format(split=split)
        mask_dir = self.root / self.masks_dir.format(split=split)
        stems, pairs = self._split_list("mask_folder", split, list_file, problems)
        if stems == []:  # a list of image and mask paths: nothing left to pair by folder
            return pairs
        missing = [str(d) for d in (image_dir, mask_dir) if not d.is_dir()]
        if missing:
            raise DatasetError(f"mask_folder split {split!r}: folder(s) {', '.join(missing)} not found; "
                               + self._layout(self.images_dir, self.masks_dir))
        return pair_by_stem(image_dir, mask_dir, mask_suffix, problems, stems)

    @staticmethod
    def _layout(images_dir: str, masks_dir: str) -> str:
        return (f"expected root/{images_dir}/<stem>.jpg|png and root/{masks_dir}/<stem>.png with matching stems "
                f"(folders set by data.images_dir / data.masks_dir), or try the pipeline first with --demo")

    def layout_hint(self) -> str:
        return self._layout(self.images_dir, self.masks_dir)


def _check_palette(palette: Optional[list[list[int]]], ignore_color: Optional[list[int]]) -> Optional[np.ndarray]:
    """Recipe palette -> ``(K, 3)`` uint8, with a clear error for anything but ``[[r, g, b], ...]`` in 0..255."""
    for option, colors in (("palette", palette), ("ignore_color", [ignore_color] if ignore_color is not None else None)):
        if colors is None:
            continue
        for index, color in enumerate(colors):
            if len(color) != 3 or not all(0 <= int(c) <= 255 for c in color):
                raise DatasetError(f"mask_folder: data.{option} entry {index} is {color!r}; expected [r, g, b] "
                                   f"with values in 0..255")
    return None if palette is None else np.asarray(palette, np.uint8).reshape(-1, 3)
