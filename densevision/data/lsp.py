"""Leeds Sports Pose (``lsp`` in recipes): 2000 images, one person each, 14 joints; and LSP-extended.

Layout::

    root/joints.mat        ``joints``: 3 x 14 x N (LSP: x, y, flag) or 14 x 3 x N (LSP-extended)
    root/images/im0001.jpg ...                      (LSP-extended: im00001.jpg ...)

Splits (1-based image numbers, as published): ``train`` 1-900, ``val`` 901-1000 (the last 100 training images,
held out), ``trainval`` 1-1000 (the published training half), ``test`` 1001-2000, ``all`` every column.
``data.splits`` replaces them (``{name: [first, last]}``).

The third value is a flag, and its meaning differs between the two releases (the readme only says "a binary
value specifying joint visibility"):

- original LSP (3 x 14 x N): 1 marks an OCCLUDED joint, 0 a visible one. Checked on the images: 7% of the joints
  carry 1, mostly the far arm, shoulder or hip of side-on bodies and single hidden wrists (e.g. im0011's crouching
  man seen from behind: left shoulder, elbow, wrist and knee; im0023: the far hip and shoulder); the CPM and
  pytorch-pose loaders invert it for LSP too. See datasets/lsp/README.md.
- LSP-extended (14 x 3 x N): 1 marks a VISIBLE joint.

``visibility_flag`` ("occluded" | "visible" | "auto", default auto: by orientation as above) says what 1 means;
it becomes ``v`` = 1 (occluded) or 2 (visible). Every joint is labelled in LSP (occluded ones are estimated).
Coordinates are 1-based (MATLAB) and are made 0-based. The person box is the labelled joints' extent grown by
``box_margin`` on every side (joints are joint centres: feet, hands and hair reach further), then turned into
``center``/``scale`` by :func:`~densevision.data.topdown.box_to_center_scale`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy.io import loadmat

from densevision.data.errors import DatasetError
from densevision.data.keypoint_source import (
    KeypointSource,
    PersonRecord,
    Problems,
    labelled_extent,
    resolve,
)
from densevision.data.topdown import DEFAULT_PADDING
from densevision.registry import DATASETS

#: 1-based inclusive image ranges of the standard splits.
LSP_SPLITS = {"train": (1, 900), "val": (901, 1000), "trainval": (1, 1000), "test": (1001, 2000)}
LSP_URL = "http://sam.johnson.io/research/lsp.html"

_LAYOUT = ("expected root/joints.mat (variable 'joints', 3 x 14 x N) and root/images/im0001.jpg ...; "
           f"download from {LSP_URL} (see datasets/lsp/README.md)")


def read_lsp_joints(path: Path) -> tuple[np.ndarray, str]:
    """``(joints float64 (N, 14, 3) as x, y, flag, layout)`` from ``joints.mat``; ``layout`` is ``"lsp"``
    (3 x 14 x N) or ``"lsp_extended"`` (14 x 3 x N)."""
    def malformed(reason: str) -> DatasetError:
        return DatasetError(f"lsp: the dataset cannot be used as it is:\n  - 1 file that cannot be read as "
                            f"annotations: {path} ({reason})")

    if not path.is_file():
        raise DatasetError(f"lsp: {path} not found; {_LAYOUT}")
    try:
        contents = loadmat(str(path))
    except Exception as error:  # noqa: BLE001 - scipy raises many types (even IndexError) for broken files
        raise malformed(f"not a MATLAB v5 file: {type(error).__name__}: {error}") from None
    if "joints" not in contents:
        raise malformed(f"no 'joints' variable; it holds {sorted(k for k in contents if not k.startswith('__'))}")
    joints = contents["joints"]
    if not np.issubdtype(joints.dtype, np.number) or joints.ndim != 3:
        raise malformed(f"'joints' is {joints.dtype} with shape {joints.shape}; expected numbers, 3 x 14 x N")
    joints = joints.astype(np.float64)
    if joints.shape[:2] == (3, 14):
        return joints.transpose(2, 1, 0), "lsp"
    if joints.shape[:2] == (14, 3):
        return joints.transpose(2, 0, 1), "lsp_extended"
    raise malformed(f"'joints' has shape {joints.shape}; expected 3 x 14 x N (LSP) or 14 x 3 x N (LSP-extended) "
                    f"with 14 joints")


def flags_to_visibility(flags: np.ndarray, flag_means: str) -> np.ndarray:
    """LSP flags -> COCO ``v`` (1 occluded, 2 visible); ``flag_means`` is what a flag of 1 marks."""
    marked = np.asarray(flags) > 0.5
    if flag_means == "occluded":
        return np.where(marked, 1.0, 2.0).astype(np.float32)
    if flag_means == "visible":
        return np.where(marked, 2.0, 1.0).astype(np.float32)
    raise ValueError(f"visibility_flag {flag_means!r}; expected 'occluded', 'visible' or 'auto'")


@DATASETS.register("lsp")
class LSP(KeypointSource):
    """Leeds Sports Pose, one person per image (14 joints), with the standard split by image number.

    Args:
        root: the folder holding ``joints.mat`` and ``images/``.
        split: ``train`` (1-900), ``val`` (901-1000), ``trainval`` (1-1000), ``test`` (1001-2000), ``all``.
        visibility_flag: what a flag of 1 means: ``"occluded"`` (original LSP), ``"visible"`` (LSP-extended),
            or ``"auto"``: by ``joints.mat``'s orientation (3 x 14 x N is LSP, 14 x 3 x N is LSP-extended).
        image_pattern: image file name for a 1-based number (default ``im{:04d}.jpg``, ``im{:05d}.jpg`` for
            more than 9999 columns).
        joints_file: the MAT file, relative to ``root`` unless absolute.
        image_dir: image folder, relative to ``root`` unless absolute.
        splits: ``{name: [first, last]}`` 1-based inclusive ranges replacing :data:`LSP_SPLITS`.
        box_margin: the joints' extent is grown by this fraction of its size on every side.
        input_size: ``[H, W]`` of the crop: the aspect ratio of ``scale``.
        padding: region = the box grown to that aspect ratio times ``padding``.
        outside_tolerance: joints more than this fraction of the image size outside it are an error.
        check_images: read every image header (needed for the outside check); existence is always checked.
        skip_bad_records: drop bad records with a warning instead of stopping.

    Raises:
        DatasetError: a missing or malformed ``joints.mat``, a split beyond its columns (the test half is not in
            the 1000-column training release), missing or unreadable images, joints far outside the image,
            zero-size boxes: one message.
    """

    dataset = "lsp"
    source_name = "lsp"
    layout = _LAYOUT

    def __init__(self, root: str, split: str = "train", visibility_flag: str = "auto",
                 image_pattern: Optional[str] = None, joints_file: str = "joints.mat", image_dir: str = "images",
                 splits: Optional[dict] = None, box_margin: float = 0.1, input_size: Sequence[int] = (256, 256),
                 padding: float = DEFAULT_PADDING, outside_tolerance: float = 0.1, check_images: bool = True,
                 skip_bad_records: bool = False):
        where, input_size = self._open_root(root, split, input_size)
        self.joints_path = resolve(self.root, joints_file, split)
        joints, layout = read_lsp_joints(self.joints_path)
        count = len(joints)
        flag_means = visibility_flag
        if flag_means == "auto":
            flag_means = "occluded" if layout == "lsp" else "visible"
        if flag_means not in ("occluded", "visible"):
            raise DatasetError(f"{where}: data.visibility_flag={visibility_flag!r}; expected 'occluded' (original "
                               f"LSP), 'visible' (LSP-extended) or 'auto'")
        self.layout, self.flag_means = layout, flag_means
        first, last = self._split_range(split, splits, count, where)
        pattern = image_pattern or ("im{:04d}.jpg" if count <= 9999 else "im{:05d}.jpg")
        image_dir_path = resolve(self.root, image_dir, split)
        numbers = range(first, last + 1)
        missing = [n for n in numbers if not (image_dir_path / pattern.format(n)).is_file()]
        if len(missing) == len(numbers) and split == "test":
            raise DatasetError(f"{where}: the test half (images 1001-2000) is not present: none of its images is in "
                               f"{image_dir_path}; {_LAYOUT}")
        self.info["visibility_flag"] = flag_means
        records = []
        for number in numbers:
            values = joints[number - 1]
            keypoints = np.zeros((14, 3), np.float32)
            keypoints[:, :2] = values[:, :2] - 1.0  # 1-based MATLAB -> 0-based
            keypoints[:, 2] = flags_to_visibility(values[:, 2], flag_means)
            extent = labelled_extent(keypoints) or [0.0, 0.0, 0.0, 0.0]
            x, y, w, h = extent
            box = [x - box_margin * w, y - box_margin * h, w * (1 + 2 * box_margin), h * (1 + 2 * box_margin)]
            file_name = pattern.format(number)
            records.append(PersonRecord(
                name=Path(file_name).stem, image_path=image_dir_path / file_name, keypoints=keypoints, box=box,
                where=f"{self.joints_path.name} column {number} ({file_name})",
                meta={"name": Path(file_name).stem, "image_id": number, "box": box, "image_file": file_name},
            ))
        self._finish(records, Problems(), where=where, input_size=input_size, padding=padding,
                     outside_tolerance=outside_tolerance, check_images=check_images,
                     skip_bad_records=skip_bad_records)

    def _split_range(self, split: str, splits: Optional[dict], count: int, where: str) -> tuple[int, int]:
        ranges = dict(LSP_SPLITS) if splits is None else {k: tuple(v) for k, v in splits.items()}
        ranges.setdefault("all", (1, count))
        if split not in ranges:
            raise DatasetError(f"{where}: unknown split {split!r}; choose one of {', '.join(ranges)} "
                               f"(or define it with data.splits: {{name: [first, last]}})")
        first, last = (int(v) for v in ranges[split])
        if not 1 <= first <= last:
            raise DatasetError(f"{where}: split {split!r} = [{first}, {last}]; expected 1 <= first <= last")
        if last > count:
            half = (" The test half is not present: this copy is the 1000-image training release; the full "
                    "2000-image LSP is needed for it." if split == "test" and count == 1000 else "")
            raise DatasetError(f"{where}: split {split!r} needs images {first}-{last} but {self.joints_path} has "
                               f"annotations for {count} images only.{half} {_LAYOUT}")
        return first, last

    def layout_hint(self) -> str:
        return _LAYOUT
