"""densevision sliding (tools/sliding_classify.py): outputs named by extension, partial results kept, one-line
errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import densevision  # noqa: F401  (environment first)
import densevision.data.image_folder as image_folder
import keras

from densevision import files
from densevision.data import io

from engine_utils import load_tool_main
from image_utils import noise, truncate, write_image

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.usefixtures("private_cache")
def test_sliding_names_outputs_by_extension_and_keeps_partial_results(tmp_path, sliding_setup, capsys):
    recipe, weights = sliding_setup
    images = tmp_path / "images"
    write_image(images / "a.jpg", noise(40, 40))
    write_image(images / "a.png", noise(40, 40))
    truncate(write_image(images / "b.png", noise(64, 64)))
    out = tmp_path / "out"
    main = load_tool_main("sliding_classify")
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


@pytest.mark.usefixtures("private_cache")
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
    assert load_tool_main("sliding_classify")([str(recipe), str(tmp_path / "images"), "--weights", str(weights),
                                      "--output", str(out), "--no-progress"]) == 130
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is False and [e["relative"] for e in results["images"]] == ["a.png"]


@pytest.mark.usefixtures("private_cache")
@pytest.mark.parametrize("option, expected", [(["--top-k", "0"], "--top-k 0: expected a positive number"),
                                              (["--top-k", "-2"], "--top-k -2"),
                                              (["--scales", "0"], "--scales 0.0: expected positive")])
def test_sliding_bad_numbers_are_one_line_errors(tmp_path, option, expected, capsys):
    main = load_tool_main("sliding_classify")
    assert main(["recipe.yaml", "x.png", "--weights", "w.keras", "--output", str(tmp_path / "o"), *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


@pytest.mark.usefixtures("private_cache")
def test_sliding_skips_a_symlink_loop_like_predict_and_never_reads_its_outputs(tmp_path, sliding_setup, capsys):
    """sliding_classify refused the whole folder for one symbolic-link loop (predict skips the entry); and with
    --output inside the input folder a second run read the first run's heat maps."""
    from densevision.commands.sliding_run import sliding_classify_command

    recipe, weights = sliding_setup
    images = tmp_path / "images"
    write_image(images / "a.png", noise(40, 40))
    (images / "loop").symlink_to(images, target_is_directory=True)
    out = images / "out"

    def run(**kwargs):
        return sliding_classify_command(str(recipe), str(weights), [str(images)], output=str(out), progress=False,
                                        **kwargs)

    assert run() == 1  # one entry skipped, the rest done
    assert f"warning: skipped {images / 'loop'}: symbolic link loop" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert [entry["relative"] for entry in results["images"]] == ["a.png"]
    assert [failure["image"] for failure in results["failures"]] == [str(images / "loop")]
    assert run(overwrite=True) == 1
    results = json.loads((out / "results.json").read_text())
    assert [entry["relative"] for entry in results["images"]] == ["a.png"], "the first run's heat map was read"


@pytest.mark.usefixtures("private_cache")
def test_sliding_classify_tiles_large_images_by_default(tmp_path, sliding_setup, monkeypatch):
    """sliding_classify scored a whole 4000x3000 photo in one pass (about 9 GB through VGG16): every forward pass
    must now stay within the pixel budget."""
    from densevision.commands.sliding_run import sliding_classify_command
    from densevision.inference import sliding

    recipe, weights = sliding_setup
    seen = []
    real = sliding.window_scores

    def spy(fc_model, images, *args, **kwargs):
        seen.append(np.asarray(images).shape[-3] * np.asarray(images).shape[-2])
        return real(fc_model, images, *args, **kwargs)

    monkeypatch.setattr(sliding, "window_scores", spy)
    write_image(tmp_path / "big.png", noise(160, 240))
    assert sliding_classify_command(str(recipe), str(weights), [str(tmp_path / "big.png")],
                                    output=str(tmp_path / "out"), progress=False, max_pixels=100 * 100) == 0
    assert seen and max(seen[1:]) <= 100 * 100, seen  # the first call is the whole image, handed to the tiles


def test_sliding_tool_scores_equal_crop_by_crop_mean(demo_root, tmp_path, capsys):
    """The tool's image-level scores = mean softmax of the original model over the stride-s crops."""
    keras.utils.set_random_seed(5)
    model = keras.Sequential([  # valid convolutions: sliding is exact on crops; window 28, stride 4
        keras.Input((28, 28, 3)), keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(5),
    ])
    weights = tmp_path / "tiny.keras"
    model.save(weights)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((ROOT / "recipes" / "resnet50_classify.yaml").read_text().replace(
        "_base_: [_base_/default_runtime.yaml]", f"_base_: [{ROOT / 'recipes/_base_/default_runtime.yaml'}]"))
    scene = sorted((demo_root / "scenes").glob("*.png"))[0]
    spec = importlib.util.spec_from_file_location("sliding_classify", ROOT / "tools" / "sliding_classify.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "out"
    code = tool.main([str(recipe), str(scene), "--weights", str(weights), "--stride", "2", "--class", "square",
                      "--output", str(out), "--top-k", "3", "--no-progress", "--set", f"data.root={demo_root}"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    [entry] = results["images"]
    image = cv2.cvtColor(cv2.imread(str(scene)), cv2.COLOR_BGR2RGB).astype("float32")  # 192 x 192
    rows = (192 - 28) // 2 + 1
    crops = np.stack([image[i * 2 : i * 2 + 28, j * 2 : j * 2 + 28] for i in range(rows) for j in range(rows)])
    expected = keras.activations.softmax(model.predict(crops, verbose=0)).numpy().mean(0)
    assert entry["maps"] == [[rows, rows]]
    got = {item["class"]: item["score"] for item in entry["top_k"]}
    names = sorted(image_folder.DEMO_CLASSES)
    for name, score in got.items():
        assert score == pytest.approx(expected[names.index(name)], abs=1e-5)
    assert list(got) == [names[i] for i in np.argsort(-expected)[:3]]
    assert (out / f"{scene.name}_square.png").is_file() and entry["heatmap_class"] == "square"
    printed = capsys.readouterr().out
    assert f"{scene}: {list(got)[0]} " in printed
    # a bad class name is an error naming it, exit code 2
    assert tool.main([str(recipe), str(scene), "--weights", str(weights), "--class", "sqare", "--no-progress",
                      "--output", str(out), "--set", f"data.root={demo_root}"]) == 2
