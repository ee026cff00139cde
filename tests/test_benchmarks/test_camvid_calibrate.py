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
