"""benchmarks/camvid_calibrate.py: every built-in variant is a valid recipe that changes what it names."""

import importlib.util
from pathlib import Path

import pytest

from densevision.recipes import load_recipe

ROOT = Path(__file__).resolve().parents[2]


def load_harness():
    spec = importlib.util.spec_from_file_location("camvid_calibrate", ROOT / "benchmarks" / "camvid_calibrate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(load_harness().DEFAULT_VARIANTS))
def test_default_variants_are_valid_recipes(name):
    overrides = load_harness().DEFAULT_VARIANTS[name]
    base = load_recipe(ROOT / "recipes/tiramisu56_camvid.yaml").model_dump()
    changed = load_recipe(ROOT / "recipes/tiramisu56_camvid.yaml", overrides).model_dump()
    changes = []
    for override in overrides:
        key, _ = override.split("=", 1)
        section, *path = key.split(".")
        before, after = base.get(section, {}), changed[section]
        for part in path:
            before, after = (before or {}).get(part), after[part]
        changes.append(after != before)
    # every variant but the recipe itself changes something (Adam at the recipe's lr keeps the lr)
    assert any(changes) or name == "recipe", f"{name}: {overrides} changed nothing"


def test_subset_root_links_the_first_pairs(tmp_path):
    source = tmp_path / "CamVid"
    for split in ("train", "val"):
        for folder in (split, f"{split}annot"):
            (source / folder).mkdir(parents=True)
            for stem in ("b", "a", "c"):
                (source / folder / f"{stem}.png").write_bytes(b"x")
    subset = load_harness().subset_root(source, 2, tmp_path / "subset")
    for folder in ("train", "trainannot", "val", "valannot"):
        assert sorted(p.name for p in (subset / folder).iterdir()) == ["a.png", "b.png"]
        assert (subset / folder / "a.png").resolve() == (source / folder / "a.png").resolve()


def test_rescore_without_precise_bn_reproduces_the_runs_own_validation(tmp_path):
    """--rescore loads a finished run's last.keras: with no precise BN it must score val exactly as the run did."""
    import argparse
    import csv

    import densevision
    from densevision.engine.trainer import Trainer
    from engine_utils import make_street_data, write_recipe

    data = make_street_data(tmp_path / "streets")
    recipe = write_recipe(tmp_path / "r.yaml", data, train={"epochs": 1, "steps_per_epoch": 2},
                          tracking={"wandb": {"mode": "disabled"}, "tensorboard": False})
    result = Trainer(densevision.load_recipe(recipe), output_dir=str(tmp_path / "runs"), progress=False).fit()
    with open(result.run_dir / "history.csv") as file:
        logged = float(list(csv.DictReader(file))[-1]["val_miou"])
    args = argparse.Namespace(precise_bn=0, output=str(tmp_path / "rescored"))
    row = load_harness().rescore(args, data, Path(result.run_dir), [])
    assert row["val_miou_precise_bn"] == pytest.approx(logged, abs=1e-4)
    assert not (tmp_path / "rescored").exists(), "re-scoring creates no run folder"
