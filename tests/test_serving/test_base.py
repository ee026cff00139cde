"""densevision.serving: the old import path keeps every name, the format checks are written once, and an export's
temporary files are the atomic writers'."""

from __future__ import annotations

import numpy as np
import pytest

import densevision  # noqa: F401  (backend and environment)
import keras
from densevision import files, serving
from densevision.commands import predict_run
from densevision.engine import checkpoints
from densevision.engine import export as old_export
from densevision.engine import predictor as old_predictor
from densevision.inference import predictor
from densevision.tasks.segmentation import SegmentationTask

#: the public names densevision.engine.export had before deployment moved to densevision.serving
OLD_EXPORT_NAMES = """FORMATS PARITY_TOLERANCE METADATA_FILE EXIT_USAGE_ERROR EXIT_PARITY_FAILED
MIN_CALIBRATION_IMAGES ExportError serving_decoder raw_output_name make_serving_function model_input_size
image_spec ServingModule find_lambda_layers check_keras_safe list_images read_resized read_resized_array calibration_paths load_calibration_images
synthetic_images recipe_input_size write_saved_model write_keras convert_tflite write_tflite load_exported
compare_outputs check_parity format_parity export_model resolve_input_size export_command""".split()
OLD_PREDICTOR_NAMES = """REPORT DEFAULT_MAX_PIXELS PROGRESS_EVERY PredictionError PredictOptions validate_options
plan_jobs make_forward merge_report read_json predict_folder prediction_info summary predict_command""".split()


def test_the_old_engine_paths_re_export_every_name_they_had():
    assert [name for name in OLD_EXPORT_NAMES if getattr(old_export, name, None) is not getattr(serving, name)] == []
    homes = {"prediction_info": checkpoints, "load_for_prediction": checkpoints, "predict_command": predict_run}
    assert [name for name in OLD_PREDICTOR_NAMES
            if getattr(old_predictor, name, None) is not getattr(homes.get(name, predictor), name)] == []


def test_format_checks_are_one_function_naming_the_option():
    serving.check_format("tflite", int8=True)
    with pytest.raises(serving.ExportError, match="unknown format 'onnx'; expected one of saved_model, keras, tf"):
        serving.check_format("onnx")
    with pytest.raises(serving.ExportError, match=r"int8 quantisation \(--int8\) is for the tflite format, not 'k"):
        serving.check_format("keras", int8=True)
    with pytest.raises(serving.ExportError, match="is for the tflite format"):  # the library call checks the same
        serving.export_model(keras.Sequential([keras.Input((4, 4, 3))]), "unused", "saved_model", None,
                             calibration_images=np.zeros((1, 4, 4, 3), np.uint8))


def test_replacing_a_saved_model_leaves_no_temporary_folder(tmp_path, monkeypatch):
    """The SavedModel goes through files.atomic_write_dir: its temporary folder carries atomic_write's marker (so
    remove_stale_temp_files sees one a kill left), and the old export is replaced whole."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(keras.layers.Rescaling(1 / 255)(inputs)))
    task = SegmentationTask(None, {"class_names": ["a", "b"]})
    seen = []
    real = files.atomic_write_dir

    def spy(path, write_fn):
        return real(path, lambda tmp: (seen.append(tmp), write_fn(tmp)))

    monkeypatch.setattr(serving.base, "atomic_write_dir", spy)
    output = tmp_path / "exported"
    output.mkdir()
    (output / "stale.txt").write_text("an older export")
    report = serving.export_model(model, output, "saved_model", task, overwrite=True)
    assert report["passed"]
    assert len(seen) == 1 and files.is_temp_file(seen[0])
    assert not (output / "stale.txt").exists() and (output / serving.METADATA_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]
