"""densevision.data.image_folder: the demo folder opens and loads, labels follow the class folders of all splits,
problems are named."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import densevision  # noqa: F401  (environment first)
import densevision.data.image_folder as image_folder

from densevision.data.errors import DatasetError


def test_demo_image_folder_opens_and_loads(demo_root):
    source = image_folder.ImageFolder(str(demo_root), "train")
    assert len(source) == 25
    assert source.info == {"class_names": sorted(image_folder.DEMO_CLASSES), "num_classes": 5}
    sample = source.load(7)
    image, label = sample["image"], sample["label"]
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    assert source.info["class_names"][label] == source.names[7].split("/")[0]
    assert sample["meta"] == {"name": source.names[7], "index": 7}
    resized = image_folder.ImageFolder(str(demo_root), "val", image_size=[40, 50])
    assert resized.load(0)["image"].shape == (40, 50, 3)
    assert len(list((demo_root / "scenes").glob("*.png"))) == 2
    # a second call with the same settings finds the marker and writes nothing
    before = (demo_root / "train" / "circle" / "0000.png").stat().st_mtime_ns
    image_folder.make_demo_image_folder(demo_root, per_class={"train": 5, "val": 2}, num_scenes=2)
    assert (demo_root / "train" / "circle" / "0000.png").stat().st_mtime_ns == before


def write_png(path: Path, value: int = 128):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def test_labels_follow_all_splits_class_folders(tmp_path):
    for name in ("a", "b", "c"):
        write_png(tmp_path / "train" / name / "x.png")
    write_png(tmp_path / "val" / "c" / "y.png")  # val lacks a and b: c must still be label 2
    val = image_folder.ImageFolder(str(tmp_path), "val")
    assert val.info["class_names"] == ["a", "b", "c"] and val.load(0)["label"] == 2


def test_image_folder_problems_are_named(tmp_path):
    with pytest.raises(DatasetError, match="root folder .* does not exist"):
        image_folder.ImageFolder(str(tmp_path / "nowhere"), "train")
    write_png(tmp_path / "train" / "cat" / "1.png")
    with pytest.raises(DatasetError, match="split folder .*val.* not found; folders in root: \\['train'\\]"):
        image_folder.ImageFolder(str(tmp_path), "val")
    (tmp_path / "train" / "dog").mkdir()
    (tmp_path / "train" / "bird").mkdir()
    (tmp_path / "train" / "bird" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError) as error:
        image_folder.ImageFolder(str(tmp_path), "train")
    message = str(error.value)
    assert "empty class folder" in message and "dog" in message
    assert "cannot be read" in message and "broken.jpg" in message
    with pytest.raises(DatasetError, match="image_size"):
        image_folder.ImageFolder(str(tmp_path), "train", image_size=[10])
