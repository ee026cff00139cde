"""densevision.data.io, the one image reader: broken files found at open (by the reader, the verification cache and
every dataset), symlink loops reported, not raised.

Every case is made on generated files: images cut short after an intact header, empty files, text with an
image name, symlink loops. (Safe outputs, checkpoints, recipes and the cli wrapper of the same robustness work are
tested with their modules: tests/test_files.py, tests/test_engine/, tests/test_recipes.py, tests/test_cli.py.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import densevision  # noqa: F401  (environment first)

from densevision.data import io
from densevision.data.camvid import CAMVID_PALETTE, CamVid
from densevision.data.errors import DatasetError, ImageReadError
from densevision.data.image_folder import ImageFolder
from densevision.data.mask_folder import MaskFolder

from image_utils import RNG, noise, truncate, write_image

pytestmark = pytest.mark.usefixtures("private_cache")  # verdicts and logs in a fresh folder (tests/conftest.py)


# ------------------------------------------------------------------------------------------- the one reader


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image_raises_naming_the_file(tmp_path, suffix):
    path = truncate(write_image(tmp_path / f"cut{suffix}", noise(64, 64)))
    with Image.open(path) as header:
        assert header.size == (64, 64), "the header is intact: a header check passes"
    if suffix == ".jpg":  # what OpenCV does with it: a half-grey image and only a warning on stderr
        assert cv2.imread(str(path)) is not None
    with pytest.raises(ImageReadError, match=f"{path.name}: truncated") as caught:
        io.read_image(path)
    assert caught.value.path == str(path) and isinstance(caught.value, DatasetError)


@pytest.mark.parametrize("content, reason", [(b"", "empty file (0 bytes)"),
                                             (b"just some text\n" * 20, "not an image")])
def test_empty_and_non_image_files_are_named(tmp_path, content, reason):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=re.escape(f"x.png: {reason}")):
        io.read_image(path)


def test_missing_file_and_folder_are_named(tmp_path):
    with pytest.raises(ImageReadError, match="nope.png: file not found"):
        io.read_image(tmp_path / "nope.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageReadError, match="is a folder"):
        io.read_image(tmp_path / "dir.png")


def test_reader_matches_opencv_for_grey_16bit_rgba_and_palette(tmp_path):
    """OpenCV's IMREAD_COLOR (the previous reader) is the reference for every lossless kind."""
    grey = RNG.integers(0, 256, (9, 11), dtype=np.uint8)
    deep = RNG.integers(0, 65536, (9, 11), dtype=np.uint16)
    deep_rgb = RNG.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    rgba = RNG.integers(0, 256, (9, 11, 4), dtype=np.uint8)
    cases = {"grey.png": grey, "deep.png": deep, "deep_rgb.png": deep_rgb, "rgba.png": rgba}
    for name, array in cases.items():
        assert cv2.imwrite(str(tmp_path / name), array)
    indices = RNG.integers(0, 4, (9, 11), dtype=np.uint8)
    palette = np.array([[255, 0, 0], [0, 128, 0], [0, 0, 255], [9, 9, 9]], np.uint8)
    indexed = Image.fromarray(indices, mode="P")
    indexed.putpalette(palette.ravel().tolist() + [0] * (256 * 3 - 12))
    indexed.save(tmp_path / "palette.png", transparency=0)  # a transparent index: colours are still kept
    for name in [*cases, "palette.png"]:
        ours = io.read_image(tmp_path / name)
        reference = cv2.cvtColor(cv2.imread(str(tmp_path / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert ours.dtype == np.uint8 and ours.shape == (9, 11, 3), name
        np.testing.assert_array_equal(ours, reference, err_msg=name)
    np.testing.assert_array_equal(io.read_image(tmp_path / "deep.png")[..., 0], deep >> 8)
    np.testing.assert_array_equal(io.read_image(tmp_path / "palette.png"), palette[indices])
    np.testing.assert_array_equal(io.read_image(tmp_path / "rgba.png"), rgba[..., [2, 1, 0]])  # alpha dropped


def test_exif_orientation_is_applied_as_a_viewer_shows_it(tmp_path):
    stored = np.full((40, 60, 3), 200, np.uint8)
    stored[:10, :10] = (255, 0, 0)  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = io.read_image(tmp_path / "phone.jpg")
    assert upright.shape == (60, 40, 3)
    assert upright[:8, -8:, 0].mean() > 230 and upright[:8, -8:, 1].mean() < 40  # now top-right
    assert io.image_size(tmp_path / "phone.jpg") == (60, 40)
    reference = cv2.cvtColor(cv2.imread(str(tmp_path / "phone.jpg")), cv2.COLOR_BGR2RGB)  # OpenCV applies EXIF too
    assert reference.shape == upright.shape and np.abs(reference.astype(int) - upright).mean() < 2


def test_read_mask_keeps_stored_values(tmp_path):
    labels16 = RNG.integers(0, 3000, (7, 5), dtype=np.uint16)
    assert cv2.imwrite(str(tmp_path / "deep.png"), labels16)
    np.testing.assert_array_equal(io.read_mask(tmp_path / "deep.png"), labels16)
    indices = RNG.integers(0, 30, (7, 5), dtype=np.uint8)
    indexed = Image.fromarray(indices, mode="P")
    indexed.putpalette((np.arange(768) % 256).astype(np.uint8).tolist())
    indexed.save(tmp_path / "voc.png")
    np.testing.assert_array_equal(io.read_mask(tmp_path / "voc.png"), indices)
    truncate(write_image(tmp_path / "cut.png", RNG.integers(0, 256, (64, 64), dtype=np.uint8)))
    with pytest.raises(ImageReadError, match="cut.png: truncated"):
        io.read_mask(tmp_path / "cut.png")


# ---------------------------------------------------------------------------------------- verify and cache


def test_verify_images_decodes_once_and_rechecks_changed_files(tmp_path, private_cache):
    good = [write_image(tmp_path / f"g{i}.png", noise()) for i in range(3)]
    bad = truncate(write_image(tmp_path / "bad.png", noise(64, 64)))
    calls = []

    def counting_reader(path):
        calls.append(Path(path).name)
        return io.read_image(path)

    errors = io.verify_images([*good, bad], reader=counting_reader, progress=False)
    assert errors == {bad: io._TRUNCATED}
    assert sorted(calls) == ["bad.png", "g0.png", "g1.png", "g2.png"]
    assert list((private_cache / "verified").glob("*.json")), "verdicts are cached under DENSEVISION_CACHE"
    calls.clear()
    assert io.verify_images([*good, bad], reader=counting_reader, progress=False) == {bad: io._TRUNCATED}
    assert calls == ["bad.png"], "only the failure is decoded again (failures are never cached)"
    calls.clear()
    truncate(good[1])  # changed size and time: decoded again, and now fails
    assert set(io.verify_images(good, reader=counting_reader, progress=False)) == {good[1]}
    assert calls == ["g1.png"]
    calls.clear()
    io.verify_images(good[:1], reader=counting_reader, progress=False, cache_dir=False)
    assert calls == ["g0.png"], "cache_dir=False decodes everything"


def test_mask_folder_finds_a_truncated_image_at_open(tmp_path):
    for name in ("a", "b", "c"):
        write_image(tmp_path / "images" / "train" / f"{name}.jpg", noise(64, 64))
        write_image(tmp_path / "masks" / "train" / f"{name}.png", RNG.integers(0, 3, (64, 64), dtype=np.uint8))
    MaskFolder(str(tmp_path), "train", num_classes=3)  # all good, and now cached
    truncate(tmp_path / "images" / "train" / "b.jpg")
    truncate(tmp_path / "masks" / "train" / "c.png")
    with pytest.raises(DatasetError) as caught:
        MaskFolder(str(tmp_path), "train", num_classes=3)
    message = str(caught.value)
    assert "2 files that cannot be read completely" in message
    assert "b.jpg (truncated" in message and "c.png (truncated" in message


def test_camvid_names_a_truncated_image_and_gives_its_own_colour_mask_advice(tmp_path):
    for name in ("a", "b"):
        write_image(tmp_path / "train" / f"{name}.png", noise(64, 64))
    write_image(tmp_path / "trainannot" / "a.png", RNG.integers(0, 12, (64, 64), dtype=np.uint8))
    colour = CAMVID_PALETTE[RNG.integers(0, 11, (64, 64))]
    write_image(tmp_path / "trainannot" / "b.png", colour)
    truncate(tmp_path / "train" / "a.png")
    with pytest.raises(DatasetError) as caught:
        CamVid(str(tmp_path), "train")
    message = str(caught.value)
    assert "a.png (truncated" in message
    assert "holding colour masks" in message and "b.png" in message
    assert "set data.palette" not in message, "camvid takes no palette option: that advice would fail"
    assert "mask_folder" in message and "{split}annot" in message
    with pytest.raises(Exception, match="unknown key|palette"):  # indeed: camvid rejects data.palette
        from densevision.recipes import validate_recipe

        validate_recipe({"name": "x", "task": "segmentation", "model": {"name": "fc_densenet"},
                         "data": {"name": "camvid", "root": str(tmp_path), "palette": [[0, 0, 0]]}})


def test_image_folder_names_truncated_empty_and_fake_images(tmp_path):
    write_image(tmp_path / "train" / "cat" / "ok.png", noise())
    truncate(write_image(tmp_path / "train" / "cat" / "cut.jpg", noise(64, 64)))
    (tmp_path / "train" / "dog").mkdir(parents=True)
    (tmp_path / "train" / "dog" / "empty.png").write_bytes(b"")
    (tmp_path / "train" / "dog" / "notes.jpg").write_text("not a picture")
    with pytest.raises(DatasetError) as caught:
        ImageFolder(str(tmp_path), "train")
    message = str(caught.value)
    assert "3 files that cannot be read completely" in message
    assert "cut.jpg (truncated" in message and "empty.png (empty file (0 bytes))" in message
    assert "notes.jpg (not an image" in message


# ------------------------------------------------------------------------------------------ symlink loops


def test_symlink_loops_in_datasets_are_reported_not_raised(tmp_path):
    make = lambda folder: [write_image(folder / "images" / "train" / "a.png", noise()),  # noqa: E731
                           write_image(folder / "masks" / "train" / "a.png", np.zeros((24, 32), np.uint8))]
    make(tmp_path / "seg")
    os.symlink("loop.png", tmp_path / "seg" / "images" / "train" / "loop.png")  # a link to itself: ELOOP
    with pytest.raises(DatasetError, match=r"loop.png \(too many levels of symbolic links"):
        MaskFolder(str(tmp_path / "seg"), "train", num_classes=2)
    write_image(tmp_path / "cls" / "train" / "cat" / "a.png", noise())
    os.symlink("me", tmp_path / "cls" / "train" / "cat" / "me")
    os.symlink("..", tmp_path / "cls" / "train" / "cat" / "up")  # a folder loop: never walked (not recursive)
    with pytest.raises(DatasetError, match=r"cat/me \(too many levels of symbolic links"):
        ImageFolder(str(tmp_path / "cls"), "train")


def test_list_images_walks_links_but_reports_loops(tmp_path):
    write_image(tmp_path / "in" / "a.jpg", noise())
    write_image(tmp_path / "in" / "sub" / "b.png", noise())
    (tmp_path / "in" / "readme.txt").write_text("skip me")
    write_image(tmp_path / "elsewhere" / "c.png", noise())
    os.symlink(tmp_path / "elsewhere", tmp_path / "in" / "linked")
    found = io.list_images([tmp_path / "in"])
    assert [rel for _, rel in found] == ["a.jpg", "linked/c.png", "sub/b.png"]
    assert [rel for _, rel in io.list_images([tmp_path / "in"], recursive=False)] == ["a.jpg"]
    assert [rel for _, rel in io.list_images([str(tmp_path / "in" / "*.jpg"), tmp_path / "in" / "sub" / "b.png"])] \
        == ["a.jpg", "b.png"]
    os.symlink("..", tmp_path / "in" / "sub" / "up")
    with pytest.raises(DatasetError, match=r"sub/up \(symbolic link loop"):
        io.list_images([tmp_path / "in"])
    with pytest.raises(DatasetError, match="nope.png \\(no such file"):
        io.list_images([tmp_path / "nope.png"])
    with pytest.raises(DatasetError, match="readme.txt \\(not an image file name"):
        io.list_images([tmp_path / "in" / "readme.txt"])
