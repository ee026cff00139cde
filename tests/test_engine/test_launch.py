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
