"""Shared helpers for engine tests: a tiny segmentation recipe on generated street scenes."""

from __future__ import annotations

import os
import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TRAIN_TOOL = str(ROOT / "tools" / "train.py")

# A two-block FC-DenseNet: a real model of the library, small enough to train in seconds. No dropout, so
# runs under different strategies see identical forward passes.
TINY_MODEL = {"name": "fc_densenet", "num_classes": 11, "blocks_down": [1, 1], "bottleneck": 1,
              "growth_rate": 4, "first_filters": 8, "dropout": 0.0}


def make_street_data(directory: Path, num_val: int = 2) -> Path:
    from densevision.data.demo_streets import make_demo_camvid

    make_demo_camvid(str(directory), num_train=8, num_val=num_val, num_test=2, height=32, width=32, seed=0)
    return directory


def _dump_recipe(path: Path, recipe: dict, sections: dict) -> Path:
    """Write ``recipe`` with ``sections`` merged in (a dict updates that section, anything else replaces it)."""
    for key, value in sections.items():
        recipe.setdefault(key, {}).update(value) if isinstance(value, dict) else recipe.__setitem__(key, value)
    path.write_text(yaml.safe_dump(recipe))
    return path


def write_recipe(path: Path, data_root: Path, **sections) -> Path:
    recipe = {
        "task": "segmentation",
        "model": dict(TINY_MODEL),
        "data": {"name": "camvid", "root": str(data_root), "batch_size": 4, "eval_batch_size": 2,
                 "num_parallel_calls": 1},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 2, "steps_per_epoch": 2, "seed": 0, "pictures_every": 0, "monitor": "val_miou",
                  "monitor_mode": "max"},
        "distribute": {"strategy": "default"},
        "tracking": {"wandb": {"mode": "disabled"}, "tensorboard": True},
    }
    return _dump_recipe(path, recipe, sections)


def write_classification_recipe(path: Path, data_root: Path, **sections) -> Path:
    """A VGG16-trunk classifier (global pooling head, frozen trunk: only the predictions layer trains, so steps are
    fast) on the 32x32 demo shapes of ``make_demo_image_folder(..., size=32)``; ``sections`` update the recipe."""
    from densevision.data.image_folder import DEMO_CLASSES

    recipe = {
        "task": "classification",
        "model": {"name": "classifier", "backbone": "vgg16", "num_classes": len(DEMO_CLASSES),
                  "input_shape": [32, 32, 3], "head": "gap", "freeze": "all"},
        "data": {"name": "image_folder", "root": str(data_root), "image_size": [32, 32], "batch_size": 5,
                 "eval_batch_size": 4, "num_parallel_calls": 1},
        "augmentation": {"train": [], "val": []},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 2, "steps_per_epoch": 2, "seed": 0, "pictures_every": 0, "monitor": "val_top1",
                  "monitor_mode": "max"},
        "distribute": {"strategy": "default"},
        "tracking": {"wandb": {"mode": "disabled"}, "tensorboard": False},
    }
    return _dump_recipe(path, recipe, sections)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool_env(**extra) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_SILENT="true", TF_CPP_MIN_LOG_LEVEL="2")
    env.update(extra)
    return env


def run_train(args: list[str], timeout: int = 300, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TRAIN_TOOL, *args], capture_output=True, text=True, timeout=timeout,
                          env=tool_env(**env))


def only_run_dir(output: Path) -> Path:
    runs = [p for p in output.glob("*/*") if p.is_dir()]
    assert len(runs) == 1, f"expected one run folder under {output}, found {runs}"
    return runs[0]


def load_tool_main(name: str):
    """The ``main`` of tools/NAME.py (tools/ is not a package), to run a command in this process."""
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main
