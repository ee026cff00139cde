"""densevision.engine.checkpoints: stale temporary files and truncated .keras files are named."""

from __future__ import annotations

import pytest

import densevision  # noqa: F401  (environment first)
import keras

from densevision.engine import checkpoints
from densevision.engine.checkpoints import CheckpointError


@pytest.mark.usefixtures("private_cache")
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


@pytest.mark.usefixtures("private_cache")
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
    from densevision.commands.sliding_run import load_classifier

    with pytest.raises(CheckpointError, match=expected):
        load_classifier(None, str(cut))
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoints.check_keras_file(tmp_path / "gone.keras")


@pytest.mark.usefixtures("private_cache")
def test_a_saved_lambda_layer_is_refused_naming_it(tmp_path):
    """Keras' refusal names no layer; the message ended "may be corrupt or need a newer densevision"."""
    from densevision.engine.checkpoints import CheckpointError, load_checkpoint

    inner_input = keras.Input((None, None, 3))
    inner = keras.Model(inner_input, keras.layers.Lambda(lambda x: x * 2.0, name="double")(inner_input), name="inner")
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inner(inputs)), name="outer")
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="Lambda"):  # what Keras says, without the layer's name
        keras.saving.load_model(path, safe_mode=True, compile=False)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "outer/inner/double (Lambda layer)" in message and "safe_mode=True" in message, message
    assert "corrupt" not in message and "newer densevision" not in message
