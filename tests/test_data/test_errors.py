"""densevision.data.errors: a data root that is a file is called a file by every dataset."""

from __future__ import annotations

import pytest

import densevision  # noqa: F401  (environment first)


@pytest.mark.usefixtures("private_cache")
@pytest.mark.parametrize("dataset", ["camvid", "mask_folder", "image_folder", "coco_keypoints", "lsp", "mpii"])
def test_a_data_root_that_is_a_file_is_called_a_file(tmp_path, dataset):
    from densevision.data.errors import DatasetError
    from densevision.registry import DATASETS, load_builtin_parts

    load_builtin_parts()
    root = tmp_path / "data.zip"
    root.write_bytes(b"PK\x03\x04 a zip archive, not a folder")
    options = {"num_classes": 2} if dataset == "mask_folder" else {}
    with pytest.raises(DatasetError) as caught:
        DATASETS.get(dataset)(root=str(root), split="train", **options)
    message = str(caught.value)
    assert f"{root} is a file, not a folder" in message and "does not exist" not in message, message
    with pytest.raises(DatasetError, match="does not exist"):  # and a missing root still says so
        DATASETS.get(dataset)(root=str(tmp_path / "gone"), split="train", **options)
