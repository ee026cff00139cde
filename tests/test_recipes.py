"""Recipes: _base_ merging, typed --set overrides, schema errors that name file, key and expectation."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import densevision
from densevision import RecipeError, load_recipe
from densevision.engine.trainer import Trainer
from densevision.recipes import builtin_recipe_names, find_recipe
from densevision.registry import MODELS, Registry, UnknownNameError
from engine_utils import make_street_data

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "recipes").glob("*.yaml"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def base_recipe(tmp_path):
    write(tmp_path / "_base_" / "data.yaml", "task: segmentation\ndata: {name: camvid, root: here, batch_size: 3}\n")
    return write(tmp_path / "exp.yaml", "_base_: _base_/data.yaml\nmodel: {name: fc_densenet56, num_classes: 11}\n"
                                        "data: {batch_size: 5}\noptimizer: {name: rmsprop, lr: 0.001}\n")


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.model.name in MODELS


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_validates_in_demo_mode(path):
    recipe = load_recipe(path, demo=True)
    assert recipe.train.epochs <= 20, "demo schedules must stay short"


def test_base_merging_later_keys_win(base_recipe):
    recipe = load_recipe(base_recipe)
    assert recipe.data.batch_size == 5  # the recipe overrides its base
    assert recipe.data.root == "here"  # kept from the base
    assert recipe.task == "segmentation"


def test_overrides_are_typed(base_recipe):
    recipe = load_recipe(base_recipe, ["optimizer.lr=1e-4", "data.batch_size=8", "train.seed=3",
                                       "tracking.wandb.tags=[a,b]", "jit_compile=true"])
    assert recipe.optimizer.lr == pytest.approx(1e-4) and isinstance(recipe.optimizer.lr, float)
    assert recipe.data.batch_size == 8 and isinstance(recipe.data.batch_size, int)
    assert recipe.tracking.wandb.tags == ["a", "b"]
    assert recipe.jit_compile is True


def test_misspelt_key_names_file_path_and_suggestion(base_recipe):
    with pytest.raises(RecipeError) as err:
        load_recipe(base_recipe, ["optimizer.lrr=0.1"])
    message = str(err.value)
    assert str(base_recipe) in message
    assert "optimizer.lrr" in message
    assert "did you mean 'lr'" in message


def test_misspelt_builder_option_is_checked_against_the_signature(base_recipe):
    with pytest.raises(RecipeError) as err:
        load_recipe(base_recipe, ["model.num_clases=3"])
    assert "model.num_clases" in str(err.value) and "did you mean 'num_classes'" in str(err.value)


def test_wrong_type_names_key_and_expectation(base_recipe):
    with pytest.raises(RecipeError) as err:
        load_recipe(base_recipe, ["data.batch_size=many"])
    assert "data.batch_size" in str(err.value) and "integer" in str(err.value)


def test_bad_value_and_unknown_name(base_recipe):
    with pytest.raises(RecipeError) as err:
        load_recipe(base_recipe, ["precision=float8", "model.name=fc_densenet_56"])
    message = str(err.value)
    assert "precision" in message and "mixed_bfloat16" in message  # lists the allowed values
    assert "did you mean 'fc_densenet56'" in message


def test_missing_required_field(tmp_path):
    path = write(tmp_path / "r.yaml", "task: segmentation\nmodel: {name: fc_densenet56, num_classes: 11}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert "key 'data': required but missing" in str(err.value)


def test_missing_file_and_missing_base(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    path = write(tmp_path / "r.yaml", "_base_: gone.yaml\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert "gone.yaml" in str(err.value) and "named in _base_" in str(err.value)


def test_bad_override_syntax(base_recipe):
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load_recipe(base_recipe, ["optimizer.lr"])


def test_registry_did_you_mean():
    registry = Registry("widget")
    registry.register("resnet50")(object)
    with pytest.raises(UnknownNameError, match="did you mean 'resnet50'"):
        registry.get("resnet5O")


def test_resolved_recipe_roundtrips(base_recipe, tmp_path):
    recipe = load_recipe(base_recipe, ["optimizer.lr=0.01"])
    saved = write(tmp_path / "saved" / "recipe.yaml", recipe.to_yaml())
    again = load_recipe(saved)
    assert again.to_dict() | {"source": None} == recipe.to_dict() | {"source": None}


def test_dry_run_cli_exit_codes(base_recipe):
    tool = [sys.executable, str(ROOT / "tools" / "train.py")]
    bad = subprocess.run(tool + [str(base_recipe), "--dry-run", "--set", "optimizer.lrr=1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "did you mean 'lr'" in bad.stderr
    good = subprocess.run(tool + [str(base_recipe), "--dry-run"], capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    assert "valid" in good.stdout


def test_public_api_contract():
    for name in ["load_recipe", "build_model", "build_backbone", "to_fully_convolutional"]:
        assert callable(getattr(densevision, name))


def test_misspelt_augmentation_fails_at_load_time(base_recipe):
    with pytest.raises(RecipeError) as err:
        load_recipe(base_recipe, ["augmentation.train=[{HorizontalFlp: {p: 0.5}}]"])
    assert "augmentation.train" in str(err.value) and "HorizontalFlip" in str(err.value)


@pytest.mark.usefixtures("private_cache")
def test_set_with_broken_yaml_names_the_override():
    with pytest.raises(RecipeError, match=r"--set 'optimizer.lr=\[1,': the value '\[1,' is not valid YAML"):
        load_recipe(ROOT / "recipes" / "vgg16_sliding.yaml", ["optimizer.lr=[1,"])


@pytest.mark.usefixtures("private_cache")
def test_missing_interpolation_names_the_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"_base_: {ROOT / 'recipes' / 'vgg16_sliding.yaml'}\ndata:\n  root: ${{paths.data}}\n")
    with pytest.raises(RecipeError, match=r"r.yaml: key 'data.root': cannot resolve an interpolation: "
                                          r"Interpolation key 'paths.data' not found"):
        load_recipe(recipe)
    with pytest.raises(RecipeError, match="--set: key 'train.epochs': cannot resolve"):
        load_recipe(ROOT / "recipes" / "vgg16_sliding.yaml", ["train.epochs=${nope}"])


@pytest.mark.usefixtures("private_cache")
def test_demo_schedule_never_hides_a_command_line_value():
    path = ROOT / "recipes" / "vgg16_sliding.yaml"
    assert load_recipe(path, demo=True).train.epochs == 2
    assert load_recipe(path, ["train.epochs=7"], demo=True).train.epochs == 7, "--set wins over demo"
    with pytest.raises(RecipeError, match="key 'train.epochs': Input should be greater than 0"):
        load_recipe(path, ["train.epochs=0"], demo=True)


def test_builtin_recipe_by_name_is_the_file():
    names = builtin_recipe_names()
    assert names == sorted(path.stem for path in (ROOT / "recipes").glob("*.yaml"))
    by_name = load_recipe("tiramisu56_camvid").to_dict()
    by_path = load_recipe(ROOT / "recipes" / "tiramisu56_camvid.yaml").to_dict()
    by_name.pop("source"), by_path.pop("source")
    assert by_name == by_path
    assert find_recipe("tiramisu56_camvid.yaml") == find_recipe("tiramisu56_camvid")


def test_unknown_recipe_name_lists_the_builtins():
    with pytest.raises(RecipeError) as info:
        find_recipe("tiramisu56_camvd")
    message = str(info.value)
    assert "did you mean 'tiramisu56_camvid'?" in message and "hourglass_lsp" in message
    assert find_recipe("some/where/missing.yaml") == Path("some/where/missing.yaml")  # a path stays a path


# ------------------------------------------------------------------------------- the calibrated fast recipe

FAST, PAPER = ROOT / "recipes" / "tiramisu56_camvid_fast.yaml", ROOT / "recipes" / "tiramisu56_camvid.yaml"


def test_fast_recipe_is_the_paper_recipe_with_adam_and_precise_bn():
    fast, paper = densevision.load_recipe(FAST).to_dict(), densevision.load_recipe(PAPER).to_dict()
    changed = {(section, key) for section in paper for key in set(paper[section] or {}) | set(fast[section] or {})
               if isinstance(paper[section], dict) and paper[section].get(key) != fast[section].get(key)}
    assert changed == {("optimizer", "name"), ("train", "precise_bn_batches"), ("augmentation", "precise_bn")}
    assert (fast["optimizer"]["name"], fast["optimizer"]["lr"]) == ("adam", 1e-3)
    assert fast["augmentation"]["precise_bn"] == [{"HorizontalFlip": {"p": 0.5}}]  # whole frames, as evaluated
    assert fast["model"] == paper["model"] and fast["augmentation"]["train"] == paper["augmentation"]["train"]


def test_fast_recipe_trains_two_steps(tmp_path):
    data = make_street_data(tmp_path / "streets")
    recipe = densevision.load_recipe(FAST, [
        f"data.root={data}", "data.batch_size=2", "data.num_parallel_calls=1", "train.epochs=1",
        "train.steps_per_epoch=2", "train.precise_bn_batches=2", "train.pictures_every=0",
        "augmentation.train=[{RandomCrop: {height: 32, width: 32}}]", "tracking.wandb.mode=disabled",
        "tracking.tensorboard=false", "distribute.strategy=default"])
    trainer = Trainer(recipe, output_dir=str(tmp_path / "runs"), progress=False)
    result = trainer.fit()
    assert int(trainer.optimizer.iterations) == 2
    assert type(trainer.optimizer).__name__ in ("Adam", "AdamW")
    row = result.history[-1]
    assert np.isfinite(row["loss"]) and 0.0 <= row["val_miou"] <= 1.0
    assert (Path(result.run_dir) / "checkpoints" / "last.keras").is_file()


# -------------------------------------------------------------------- the LSP recipe's CPU schedule

def test_lsp_cpu_recipe_changes_only_the_schedule():
    cpu = densevision.load_recipe(ROOT / "recipes" / "hourglass_lsp_cpu.yaml").to_dict()
    shipped = densevision.load_recipe(ROOT / "recipes" / "hourglass_lsp.yaml").to_dict()
    changed = {(section, key) for section in shipped for key in set(shipped[section] or {}) | set(cpu[section] or {})
               if isinstance(shipped[section], dict) and shipped[section].get(key) != cpu[section].get(key)}
    assert changed == {("data", "input_size"), ("optimizer", "schedule"), ("train", "epochs"),
                       ("train", "steps_per_epoch"), ("train", "val_every"), ("demo", "train.val_every")}
    assert cpu["train"]["epochs"] * cpu["train"]["steps_per_epoch"] == 4800
    assert cpu["optimizer"]["schedule"]["name"] == "cosine" and cpu["model"] == shipped["model"]
