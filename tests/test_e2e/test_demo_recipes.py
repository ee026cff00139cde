"""`--demo` works with every shipped recipe: generated data, one short epoch, checkpoints written (slow)."""

from pathlib import Path

import pytest

from engine_utils import ROOT, only_run_dir, run_train

RECIPES = sorted(p for p in (ROOT / "recipes").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_trains_in_demo_mode(path, tmp_path):
    result = run_train([str(path), "--demo", "--output", str(tmp_path / "out"), "--set", "train.epochs=1",
                        "train.steps_per_epoch=1", "train.val_steps=1", "tracking.wandb.mode=disabled"],
                       timeout=900, DENSEVISION_CACHE=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "out")
    assert (run_dir / "checkpoints" / "last.keras").is_file()
    assert Path(run_dir / "history.csv").read_text().count("\n") == 2
