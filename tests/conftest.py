"""Shared by every test folder: puts tests/ on ``sys.path`` so ``from engine_utils import ...`` works from any
tests/test_<package>/ file.

The test folders are packages (an ``__init__.py`` in each): the layout mirrors densevision/, so module names repeat
(tests/test_serving/test_export.py and a commands export test would both be ``test_export``), and pytest's default
``prepend`` import mode needs unique basenames unless the folders are packages.

Fixtures used by test files in several folders live here.
"""

import sys
from pathlib import Path

import pytest
import yaml

import densevision  # noqa: F401  (environment first)
import densevision.data.image_folder as image_folder
import keras

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """Verification verdicts and error logs of the tests that use this go to a fresh folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DENSEVISION_CACHE", str(cache))
    monkeypatch.delenv("DENSEVISION_DEBUG", raising=False)
    return cache


@pytest.fixture(scope="module")
def sliding_setup(tmp_path_factory):
    """A window-28 classifier of 5 classes, a recipe whose dataset is absent (class names become indices)."""
    root = tmp_path_factory.mktemp("sliding")
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Rescaling(1 / 255.0),
                              keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.MaxPooling2D(2),
                              keras.layers.Flatten(), keras.layers.Dense(5)])
    weights = root / "tiny.keras"
    model.save(weights)
    recipe = root / "recipe.yaml"
    config = yaml.safe_load((ROOT / "recipes" / "resnet50_classify.yaml").read_text())
    config["_base_"] = [str(ROOT / "recipes" / "_base_" / "default_runtime.yaml")]
    config["data"]["root"] = str(root / "no_dataset_here")
    recipe.write_text(yaml.safe_dump(config))
    return recipe, weights


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    """A tiny random FC-DenseNet (11 classes, CamVid's) saved as .keras, and a recipe for it (CamVid's class
    names come from the source's describe(): no data needed)."""
    from densevision.models.tiramisu import fc_densenet
    from engine_utils import TINY_MODEL, write_recipe

    folder = tmp_path_factory.mktemp("segmenter")
    keras.utils.set_random_seed(0)
    options = {key: value for key, value in TINY_MODEL.items() if key != "name"}
    weights = folder / "tiny.keras"
    fc_densenet(**options).save(weights)
    return write_recipe(folder / "tiny.yaml", folder / "no_data_here"), weights


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    image_folder.make_demo_image_folder(root, per_class={"train": 5, "val": 2}, num_scenes=2)
    return root
