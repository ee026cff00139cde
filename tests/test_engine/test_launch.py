"""densevision.engine.launch: training refuses bad outputs before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

import densevision  # noqa: F401  (environment first)

from densevision.errors import OutputError


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.usefixtures("private_cache")
def test_training_output_that_is_a_file_fails_before_any_work(tmp_path):
    from densevision.engine.launch import run_training

    blocker = tmp_path / "runs"
    blocker.write_text("")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"_base_: {ROOT / 'recipes' / 'vgg16_sliding.yaml'}\ndata:\n  root: {tmp_path / 'none'}\n")
    with pytest.raises(OutputError, match=f"--output folder {blocker} is a file"):
        run_training(str(recipe), output=str(blocker))


@pytest.mark.usefixtures("private_cache")
def test_resuming_a_finished_run_says_it_finished_and_how_to_train_longer(tmp_path, capsys):
    """It printed "Resuming ... at epoch 2/1" and trained nothing."""
    from densevision.engine.checkpoints import CheckpointError
    from densevision.engine.launch import run_training
    from engine_utils import make_street_data, only_run_dir, write_recipe

    recipe = write_recipe(tmp_path / "tiny.yaml", make_street_data(tmp_path / "streets"),
                          train={"epochs": 1, "steps_per_epoch": 1},
                          tracking={"wandb": {"mode": "disabled"}, "tensorboard": False})
    assert run_training(str(recipe), output=str(tmp_path / "runs")) == 0
    run = only_run_dir(tmp_path / "runs")
    capsys.readouterr()
    with pytest.raises(CheckpointError) as caught:
        run_training(None, resume=str(run))
    message = str(caught.value)
    assert message == (f"cannot resume {run}: the run already finished its 1 epoch(s) (train.epochs is 1); to train "
                       f"longer, resume with more epochs: densevision train --resume {run} --set train.epochs=2")
    assert "epoch 2/1" not in capsys.readouterr().out
