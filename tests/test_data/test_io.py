"""Nothing silently wrong, nothing lost: broken files found at open, clear errors, safe outputs, exit codes.

Every case is made on generated files: images cut short after an intact header, empty files, text with an
image name, symlink loops, unwritable places (root ignores permissions, so a file in the way or a patched
writer stands in), a full disk (a patched writer).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

import densevision  # noqa: F401  (environment first)
import keras

from densevision import files
from densevision.cli import run_tool, tool_main
from densevision.data import io
from densevision.data.camvid import CAMVID_PALETTE, CamVid
from densevision.data.errors import DatasetError, ImageReadError
from densevision.data.image_folder import ImageFolder
from densevision.data.mask_folder import MaskFolder
from densevision.engine import checkpoints
from densevision.engine.checkpoints import CheckpointError
from densevision.engine.compat import check_checkpoint_matches, check_model_matches_data, checkpoint_summary
from densevision.errors import DensevisionError, OutputError, UsageError
from densevision.recipes import RecipeError, load_recipe

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Verification verdicts and error logs of these tests go to a fresh folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DENSEVISION_CACHE", str(cache))
    monkeypatch.delenv("DENSEVISION_DEBUG", raising=False)
    return cache


def noise(height=24, width=32) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)
    return path


def truncate(path: Path, keep: float = 0.6) -> Path:
    """Cut a file short, keeping its header: the kind of file a full disk or a broken copy leaves."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


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


# -------------------------------------------------------------------------------------------- safe writing


def test_atomic_write_leaves_nothing_behind_on_any_exception(tmp_path):
    target = tmp_path / "out" / "results.json"
    files.write_json(target, {"old": True})

    def fails_half_way(exception):
        def write(tmp):
            Path(tmp).write_text('{"half": ')
            raise exception
        return write

    for exception in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exception)):
            files.atomic_write(target, fails_half_way(exception))
        assert json.loads(target.read_text()) == {"old": True}
        assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]


def test_full_disk_names_the_file_and_leaves_no_temp(tmp_path):
    def disk_full(tmp):
        Path(tmp).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=r"scores\.npz: the disk is full"):
        files.atomic_write(tmp_path / "scores.npz", disk_full)
    assert list(tmp_path.iterdir()) == []
    # the checkpoint writer says the same through CheckpointError
    with pytest.raises(CheckpointError, match=r"last\.keras: the disk is full"):
        checkpoints._atomic_write(tmp_path / "checkpoints" / "last.keras", disk_full)
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_temporary_names_keep_the_suffix_writers_need(tmp_path):
    seen = []
    files.atomic_write(tmp_path / "last.weights.h5", lambda tmp: (seen.append(tmp), Path(tmp).write_bytes(b"x")))
    files.write_npz(tmp_path / "a.jpg_scores.npz", scale_1=np.zeros(3))
    assert seen[0].endswith(".weights.h5") and files.is_temp_file(seen[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg_scores.npz", "last.weights.h5"]
    np.testing.assert_array_equal(np.load(tmp_path / "a.jpg_scores.npz")["scale_1"], np.zeros(3))
    assert oct(os.stat(tmp_path / "last.weights.h5").st_mode & 0o777) != oct(0o600), "not mkstemp's private mode"


def test_write_json_is_strict(tmp_path):
    files.write_json(tmp_path / "m.json", {"miou": np.float32("nan"), "iou": np.array([0.5, np.inf]),
                                           "n": np.int64(3), "where": tmp_path})
    assert json.loads((tmp_path / "m.json").read_text()) == {"miou": None, "iou": [0.5, None], "n": 3,
                                                              "where": str(tmp_path)}


def test_unwritable_outputs_are_refused_with_the_path(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="output folder .*a_file is a file, not a folder"):
        files.check_writable_dir(blocker)
    with pytest.raises(OutputError, match="cannot be created: .*a_file is a file"):
        files.check_writable_dir(blocker / "sub")
    with pytest.raises(OutputError, match="a_file is a file, not a folder"):
        files.write_text(blocker / "sub" / "x.json", "{}")
    with pytest.raises(OutputError, match="is a folder"):
        files.check_writable_file(tmp_path, what="--json")
    # a read-only folder (root ignores permission bits, so the probe is made to fail as it would)
    monkeypatch.setattr(files.tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied")))
    with pytest.raises(OutputError, match=r"--json .*out\.json.* is not writable.*permission denied"):
        files.check_writable_file(tmp_path / "out.json", what="--json")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_for_real(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            files.check_writable_dir(locked)
    finally:
        locked.chmod(0o700)


def test_plan_outputs_refuses_clashes_and_existing_files(tmp_path):
    with pytest.raises(OutputError, match="a.jpg and b/a.jpg would both write .*a_scores.npz"):
        files.plan_outputs([("a.jpg", tmp_path / "a_scores.npz"), ("b/a.jpg", tmp_path / "a_scores.npz")])
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(OutputError, match="1 output file.* already exist: .*results.json; pass --overwrite"):
        files.plan_outputs({tmp_path / "results.json": "results"})
    plan = files.plan_outputs({tmp_path / "results.json": "results", tmp_path / "new" / "x.png": "x"},
                              overwrite=True)
    plan.make_folders()
    assert (tmp_path / "new").is_dir() and plan.paths == [tmp_path / "results.json", tmp_path / "new" / "x.png"]


def test_stale_checkpoint_temp_files_are_cleaned_on_resume(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    keep = [run / "checkpoints" / "last.keras", run / "checkpoints" / ".gitkeep", run / "history.csv",
            run / "checkpoints" / ".model-20240101.keras"]  # hidden, dated, but no temporary file of ours
    stale = [run / "checkpoints" / ".last.keras.tmp-ab12cd34.keras",  # this writer's, killed by kill -9
             run / "checkpoints" / ".last-k3j4h5g6.keras",  # the earlier writer's
             run / ".history.csv.tmp-zz99yy88.csv"]
    for path in keep + stale:
        path.write_bytes(b"x")
    removed = checkpoints.clean_stale_temp_files(run)
    assert sorted(removed) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


# ------------------------------------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.keras"
    model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    model.save(path)
    return path, model


def test_truncated_keras_file_is_called_truncated_not_missing(tmp_path, tiny_keras):
    path, model = tiny_keras
    cut = tmp_path / "cut.keras"
    cut.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ValueError, match="File not found"):  # what Keras itself says
        keras.saving.load_model(cut)
    expected = f"{cut} is not a valid .keras file \\(truncated or corrupt\\)"
    with pytest.raises(CheckpointError, match=expected):
        checkpoints.check_keras_file(cut)
    with pytest.raises(CheckpointError, match=expected):
        checkpoints.restore_training_state(model, cut)
    with pytest.raises(CheckpointError, match=expected):
        checkpoints.load_model_weights(model, cut)
    from densevision.inference.sliding import load_classifier

    with pytest.raises(CheckpointError, match=expected):
        load_classifier(None, str(cut))
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoints.check_keras_file(tmp_path / "gone.keras")


def _recipe(**model):
    return load_recipe(ROOT / "recipes" / "tiramisu56_camvid.yaml",
                       [f"model.{key}={value}" for key, value in model.items()])


def test_model_must_predict_every_label_of_the_data():
    info = {"class_names": [f"c{i}" for i in range(11)], "num_classes": 11}
    check_model_matches_data(_recipe(num_classes=11), info)
    with pytest.raises(RecipeError, match="model.num_classes is 5 but dataset 'camvid' has 11 classes.*labels "
                                          "5..10 would have no output.*set model.num_classes: 11"):
        check_model_matches_data(_recipe(num_classes=5), info)
    with pytest.raises(RecipeError, match="would predict 1 classes the dataset never has"):
        check_model_matches_data(_recipe(num_classes=12), info)


def test_checkpoint_outputs_and_input_are_compared_with_recipe_and_data(tiny_keras):
    path, model = tiny_keras
    assert checkpoint_summary(model) == {"input_shape": [28, 28, 3], "output_channels": 5, "output_rank": 2,
                                         "num_outputs": 1}
    recipe = load_recipe(ROOT / "recipes" / "vgg16_sliding.yaml", ["model.input_shape=[28, 28, 3]"])
    check_checkpoint_matches(model, recipe, {"class_names": list("abcde"), "num_classes": 5}, path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} predicts 5 classes, dataset 'image_folder' has 11"):
        check_checkpoint_matches(model, recipe, {"class_names": list("abcdefghijk")}, path)
    other = load_recipe(ROOT / "recipes" / "vgg16_sliding.yaml", ["model.num_classes=7"])
    with pytest.raises(CheckpointError, match=r"predicts 5 classes, the recipe \(model.num_classes\) has 7; it takes "
                                              r"28x28x3 inputs, the recipe's model.input_shape is 224x224x3"):
        check_checkpoint_matches(model, other, None, path)
    # several outputs (one per hourglass stack): the last one counts
    inputs = keras.Input((8, 8, 3))
    stacked = keras.Model(inputs, [keras.layers.Conv2D(3, 1)(inputs), keras.layers.Conv2D(16, 1)(inputs)])
    assert checkpoint_summary(stacked)["output_channels"] == 16 and checkpoint_summary(stacked)["num_outputs"] == 2


# ----------------------------------------------------------------------------------------------------- recipes


def test_set_with_broken_yaml_names_the_override():
    with pytest.raises(RecipeError, match=r"--set 'optimizer.lr=\[1,': the value '\[1,' is not valid YAML"):
        load_recipe(ROOT / "recipes" / "vgg16_sliding.yaml", ["optimizer.lr=[1,"])


def test_missing_interpolation_names_the_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"_base_: {ROOT / 'recipes' / 'vgg16_sliding.yaml'}\ndata:\n  root: ${{paths.data}}\n")
    with pytest.raises(RecipeError, match=r"r.yaml: key 'data.root': cannot resolve an interpolation: "
                                          r"Interpolation key 'paths.data' not found"):
        load_recipe(recipe)
    with pytest.raises(RecipeError, match="--set: key 'train.epochs': cannot resolve"):
        load_recipe(ROOT / "recipes" / "vgg16_sliding.yaml", ["train.epochs=${nope}"])


def test_demo_schedule_never_hides_a_command_line_value():
    path = ROOT / "recipes" / "vgg16_sliding.yaml"
    assert load_recipe(path, demo=True).train.epochs == 2
    assert load_recipe(path, ["train.epochs=7"], demo=True).train.epochs == 7, "--set wins over demo"
    with pytest.raises(RecipeError, match="key 'train.epochs': Input should be greater than 0"):
        load_recipe(path, ["train.epochs=0"], demo=True)


def test_training_output_that_is_a_file_fails_before_any_work(tmp_path):
    from densevision.engine.launch import run_training

    blocker = tmp_path / "runs"
    blocker.write_text("")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"_base_: {ROOT / 'recipes' / 'vgg16_sliding.yaml'}\ndata:\n  root: {tmp_path / 'none'}\n")
    with pytest.raises(OutputError, match=f"--output folder {blocker} is a file"):
        run_training(str(recipe), output=str(blocker))


# --------------------------------------------------------------------------------------------- the cli wrapper


def test_cli_exit_codes_messages_and_log(tmp_path, capsys, private_cache):
    def fine(argv):
        print("done")

    def expected(argv):
        raise DatasetError("data/x.png: truncated")

    def disk(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "out/big.npz")

    def bug(argv):
        return {}["missing"]

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_tool(fine, []) == 0
    assert run_tool(lambda argv: 3, []) == 3
    assert run_tool(expected, []) == 2
    assert capsys.readouterr().err == "error: data/x.png: truncated\n"
    assert run_tool(disk, []) == 2
    assert capsys.readouterr().err == "error: out/big.npz: the disk is full\n"
    assert run_tool(interrupted, []) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert run_tool(bug, ["--flag"], tool="mytool") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected KeyError: 'missing' (full traceback in ")
    assert err.rstrip().endswith("rerun with --debug to see it)") and "Traceback" not in err
    [log] = (private_cache / "logs").glob("mytool-*.log")
    assert str(log) in err
    text = log.read_text()
    assert "command: mytool --flag" in text and "Traceback" in text and "{}[\"missing\"]" in text
    with pytest.raises(KeyError):
        run_tool(bug, ["--debug"])
    with pytest.raises(DatasetError):
        run_tool(expected, ["--debug"])


def test_every_tool_uses_the_wrapper():
    """tools/X.py are aliases of ``densevision X``, which runs every command through run_tool with --debug."""
    from densevision.commands import COMMANDS, command_module

    for name in ("train", "summarize", "plot_history", "sliding_classify"):
        text = (ROOT / "tools" / f"{name}.py").read_text()
        assert "from densevision.commands import alias" in text, name
    for name in COMMANDS:
        flags = {flag for action in command_module(name).build_parser()._actions for flag in action.option_strings}
        assert "--debug" in flags, name
    assert "run_tool(" in (ROOT / "densevision" / "commands" / "__init__.py").read_text()


def test_plot_history_refuses_to_replace_without_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text("epoch,loss,val_loss,lr\n0,1.0,1.1,0.001\n1,0.8,0.9,0.001\n")
    (run / "history.png").write_bytes(b"keep me")
    main = _tool("plot_history")
    assert main([str(run)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (run / "history.png").read_bytes() == b"keep me"
    assert main([str(run), "--overwrite"]) == 0
    assert (run / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert main([str(tmp_path)]) == 2 and "is " in capsys.readouterr().err


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


# ---------------------------------------------------------------------------------------------- sliding tool


@pytest.fixture(scope="module")
def sliding_setup(tmp_path_factory):
    """A window-28 classifier of 5 classes, a recipe whose dataset is absent (class names become indices)."""
    root = tmp_path_factory.mktemp("sliding")
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Rescaling(1 / 255.0),
                              keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.MaxPooling2D(2),
                              keras.layers.Flatten(), keras.layers.Dense(5)])
    weights = root / "tiny.keras"
    model.save(weights)
    recipe = root / "recipe.yaml"
    config = yaml.safe_load((ROOT / "recipes" / "resnet50_classify.yaml").read_text())
    config["_base_"] = [str(ROOT / "recipes" / "_base_" / "default_runtime.yaml")]
    config["data"]["root"] = str(root / "no_dataset_here")
    recipe.write_text(yaml.safe_dump(config))
    return recipe, weights


def test_sliding_names_outputs_by_extension_and_keeps_partial_results(tmp_path, sliding_setup, capsys):
    recipe, weights = sliding_setup
    images = tmp_path / "images"
    write_image(images / "a.jpg", noise(40, 40))
    write_image(images / "a.png", noise(40, 40))
    truncate(write_image(images / "b.png", noise(64, 64)))
    out = tmp_path / "out"
    main = _tool("sliding_classify")
    args = [str(recipe), str(images), "--weights", str(weights), "--output", str(out), "--no-progress"]
    assert main(args) == 1, "one image was skipped"
    err = capsys.readouterr().err
    assert "warning: " in err and "b.png: skipped: truncated" in err
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is True
    assert [entry["relative"] for entry in results["images"]] == ["a.jpg", "a.png"]
    assert [(f["relative"], f["error"]) for f in results["failures"]] == [("b.png", io._TRUNCATED)]
    assert (out / "a.jpg_scores.npz").is_file() and (out / "a.png_scores.npz").is_file()
    assert not [p for p in out.iterdir() if files.is_temp_file(p)]
    before = (out / "results.json").read_bytes()
    # a rerun without --overwrite refuses before touching anything
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "pass --overwrite" in err
    assert (out / "results.json").read_bytes() == before
    # two folders holding the same name would write the same files: refused, nothing written
    other = tmp_path / "other"
    write_image(other / "a.png", noise(40, 40))
    assert main([str(recipe), str(images / "a.png"), str(other / "a.png"), "--weights", str(weights),
                 "--output", str(tmp_path / "clash"), "--no-progress"]) == 2
    assert "would both write" in capsys.readouterr().err
    assert not (tmp_path / "clash").exists()


def test_sliding_writes_results_when_interrupted(tmp_path, sliding_setup, monkeypatch, capsys):
    from densevision.inference import sliding

    recipe, weights = sliding_setup
    for name in ("a", "b", "c"):
        write_image(tmp_path / "images" / f"{name}.png", noise(40, 40))
    real = sliding.multiscale_scores
    calls = []

    def stop_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sliding, "multiscale_scores", stop_at_the_second)
    out = tmp_path / "out"
    assert _tool("sliding_classify")([str(recipe), str(tmp_path / "images"), "--weights", str(weights),
                                      "--output", str(out), "--no-progress"]) == 130
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is False and [e["relative"] for e in results["images"]] == ["a.png"]


@pytest.mark.parametrize("option, expected", [(["--top-k", "0"], "--top-k 0: expected a positive number"),
                                              (["--top-k", "-2"], "--top-k -2"),
                                              (["--scales", "0"], "--scales 0.0: expected positive")])
def test_sliding_bad_numbers_are_one_line_errors(tmp_path, option, expected, capsys):
    main = _tool("sliding_classify")
    assert main(["recipe.yaml", "x.png", "--weights", "w.keras", "--output", str(tmp_path / "o"), *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_densevision_errors_share_one_base():
    from densevision.data.errors import AugmentationError
    from densevision.engine.distribute import DistributeError
    from densevision.registry import UnknownNameError

    for error in (RecipeError, DatasetError, ImageReadError, CheckpointError, OutputError, UsageError,
                  AugmentationError, DistributeError, UnknownNameError):
        assert issubclass(error, DensevisionError), error
    assert issubclass(DatasetError, ValueError) and issubclass(CheckpointError, RuntimeError), "old bases kept"
    assert tool_main(lambda argv: 0)([]) == 0
