"""densevision.runs: a run folder stands for its recipe and best checkpoint; mistakes are one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from densevision.errors import UsageError
from densevision.runs import CHECKPOINTS, RECIPE_FILE, resolve_model_source


def make_run(tmp_path: Path, *checkpoints: str) -> Path:
    run = tmp_path / "runs" / "tiny" / "20261204-000000"
    (run / "checkpoints").mkdir(parents=True)
    (run / RECIPE_FILE).write_text("task: segmentation\n")
    for name in checkpoints:
        (run / CHECKPOINTS[name]).write_bytes(b"PK")
    return run


def test_run_folder_brings_its_recipe_and_best_checkpoint(tmp_path):
    run = make_run(tmp_path, "best", "last")
    source = resolve_model_source(str(run))
    assert (source.recipe, source.weights, source.run_dir) == (str(run / RECIPE_FILE), str(run / CHECKPOINTS["best"]),
                                                               run)
    assert resolve_model_source(str(run), "last").weights == str(run / CHECKPOINTS["last"])
    assert resolve_model_source(str(run), "other.keras").weights == "other.keras"
    assert resolve_model_source("recipe.yaml", "w.keras").recipe == "recipe.yaml"


@pytest.mark.parametrize("target, weights, demo, expected", [
    ("run_last_only", None, False, "best.keras does not exist; --weights last picks"),
    ("run_empty", None, False, "no epoch of this run finished yet"),
    ("plain_folder", None, False, "is not a run folder"),
    ("run_last_only", "last", True, "drop --demo"),
    ("recipe.yaml", None, False, "--weights is required with a recipe"),
    ("recipe.yaml", "best", False, "picks a checkpoint of a run folder"),
])
def test_run_folder_mistakes_are_one_clear_error(tmp_path, target, weights, demo, expected):
    make_run(tmp_path / "run_last_only", "last")
    make_run(tmp_path / "run_empty")
    (tmp_path / "plain_folder").mkdir()
    paths = {"run_last_only": tmp_path / "run_last_only/runs/tiny/20261204-000000",
             "run_empty": tmp_path / "run_empty/runs/tiny/20261204-000000", "plain_folder": tmp_path / "plain_folder"}
    with pytest.raises(UsageError, match=expected.replace("-", r"\-").replace(".", r"\.")):
        resolve_model_source(str(paths.get(target, target)), weights, demo=demo)
