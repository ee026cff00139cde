"""densevision.inference.predictor against hostile inputs (issue 15): each case here failed before its fix.

Outputs never read back as inputs, resumed runs that keep every earlier record, and existing outputs named once.
Data is generated in pytest's temporary folders. (The other hostile-input cases of issue 15 are tested with their
modules: ``--set`` over ``--demo`` in tests/test_commands/test_init.py, calibration folders in
tests/test_serving/test_inputs.py, sliding windows in tests/test_inference/test_sliding.py and
tests/test_commands/test_sliding.py, messages in tests/test_files.py, tests/test_data/ and tests/test_engine/.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import densevision  # noqa: F401  (environment first)
import keras

from image_utils import noise, write_image

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("private_cache")  # verdicts and logs in a fresh folder (tests/conftest.py)


# ------------------------------------------------------------------------------------------- messages


def test_existing_outputs_name_each_way_out_once(tmp_path):
    """The hint repeated itself: "pass --overwrite to replace them or pass --overwrite to replace them or ..."."""
    from densevision.engine.predictor import PredictOptions, plan_jobs
    from densevision.errors import OutputError

    class Writes:  # the planning interface of a task: one PNG per input
        def prediction_files(self, stem, options):
            return [f"{stem}.png"]

        def prediction_summary_files(self, options):
            return []

    image = write_image(tmp_path / "in" / "a.jpg", noise())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"earlier")
    with pytest.raises(OutputError) as caught:
        plan_jobs(Writes(), [(image, "a.jpg")], tmp_path / "out", PredictOptions(), overwrite=False, resume=False)
    message = str(caught.value)
    assert message.count("--overwrite") == 1 and message.endswith(
        "pass --overwrite to replace them or --resume to skip them"), message


# ------------------------------------------------------------------------------- outputs are never inputs


def _predict(recipe, weights, inputs, output, **kwargs):
    from densevision.engine.predictor import PredictOptions, predict_command

    return predict_command(str(recipe), str(weights), [str(i) for i in inputs], str(output), progress=False,
                           options=PredictOptions(color=True, overlay=True), **kwargs)


def test_predicting_into_a_folder_inside_the_input_never_reads_the_outputs(tmp_path, segmenter, capsys):
    """``--input DIR --output DIR/out --overwrite`` after a first run predicted the first run's outputs
    ("predicted 6 image(s)", DIR/out/out/..., DIR/out/color/out/color/...)."""
    recipe, weights = segmenter
    photos = tmp_path / "photos"
    for name in ("a.png", "sub/b.jpg"):
        write_image(photos / name, noise(32, 32))
    out = photos / "out"
    assert _predict(recipe, weights, [photos], out) == 0
    first = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert _predict(recipe, weights, [photos], out, overwrite=True) == 0
    assert "predicted 2 image(s)" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == first
    assert not (out / "out").exists() and not (out / "color" / "out").exists()
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["ok"]) == [str(photos / "a.png"), str(photos / "sub" / "b.jpg")]
    # the output folder given as an input is skipped, saying why, and nothing else is left: one clear error
    from densevision.data.errors import DatasetError

    with pytest.raises(DatasetError, match="no image files found"):
        _predict(recipe, weights, [out], out, overwrite=True)
    assert "it is in the output folder, whose files are never read as inputs" in capsys.readouterr().err


def test_resume_keeps_every_record_of_the_earlier_run(tmp_path, segmenter):
    """``--resume`` into an earlier run's folder replaced report.json: its ok and failed inputs were gone."""
    recipe, weights = segmenter
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "out"
    write_image(first / "a.png", noise(32, 32))
    (first / "broken.png").write_bytes(b"not an image")
    write_image(second / "c.png", noise(32, 32))
    assert _predict(recipe, weights, [first], out) == 1
    earlier = json.loads((out / "report.json").read_text())
    assert earlier["ok"] == [str(first / "a.png")] and [f["path"] for f in earlier["failed"]] == [
        str(first / "broken.png")]
    assert _predict(recipe, weights, [second], out, resume=True) == 0  # exit status: this run's inputs
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["ok"]) == [str(first / "a.png"), str(second / "c.png")]
    assert report["failed"] == earlier["failed"]
    # an input seen again keeps only its newest verdict
    write_image(first / "broken.png", noise(32, 32))
    assert _predict(recipe, weights, [first], out, resume=True) == 0
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["ok"]) == sorted(str(p) for p in (first / "a.png", first / "broken.png", second / "c.png"))
    assert report["failed"] == []


def test_classification_resume_keeps_the_earlier_predictions(tmp_path):
    from densevision.engine.predictor import PredictOptions, predict_command

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Rescaling(1 / 255.0),
                              keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5)])
    weights = tmp_path / "classifier.keras"
    model.save(weights)
    recipe = ROOT / "recipes" / "resnet50_classify.yaml"
    overrides = ["model.input_shape=[28,28,3]", "model.num_classes=5", f"data.root={tmp_path / 'absent'}"]
    write_image(tmp_path / "one" / "a.png", noise(28, 28))
    write_image(tmp_path / "two" / "b.png", noise(28, 28))
    out = tmp_path / "out"
    for folder, resume in (("one", False), ("two", True)):
        assert predict_command(str(recipe), str(weights), [str(tmp_path / folder)], str(out), overrides=overrides,
                               progress=False, resume=resume, options=PredictOptions(top_k=2)) == 0
    predictions = json.loads((out / "predictions.json").read_text())["predictions"]
    assert [record["path"] for record in predictions] == ["a.png", "b.png"]
    rows = (out / "predictions.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["a.png", "a.png", "b.png", "b.png"]
