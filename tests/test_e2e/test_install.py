"""A non-editable ``pip install .`` in a fresh virtual environment gives a working ``densevision`` command, used from
an empty folder as a new user would: train a built-in recipe by name, then predict, evaluate and export its run
folder. The redirected training log holds no carriage return and no TensorFlow start-up notice.

To take seconds rather than a full dependency install, the fresh environment sees this interpreter's
site-packages through a ``.pth`` line (paths only: the editable checkout's own ``.pth`` finder is not run), and
densevision itself is installed from a wheel (``--no-deps --no-build-isolation``); the test checks that the
installed copy, not this checkout, is what runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def run(command: list, cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_fresh_venv_wheel_trains_predicts_evaluates_and_exports_a_run_folder(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "host_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", DENSEVISION_CACHE=str(tmp_path / "cache"),
               WANDB_MODE="disabled", PYTHONUNBUFFERED="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", ROOT], tmp_path, env)

    work = tmp_path / "empty"
    work.mkdir()
    where = run([python, "-c", "import densevision; print(densevision.__file__)"], work, env).stdout.strip()
    assert Path(where).is_relative_to(purelib), where  # the wheel's copy, not the checkout
    densevision = venv / "bin" / "densevision"

    # a short demo run; redirected (the log is a file), as a batch job writes it
    with open(tmp_path / "train.log", "w") as log:
        done = subprocess.run([densevision, "train", "tiramisu56_camvid", "--demo", "--set", "train.epochs=1",
                               "train.steps_per_epoch=2", "train.val_steps=1", "data.eval_batch_size=2"],
                              cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=900)
    text = (tmp_path / "train.log").read_text()
    assert done.returncode == 0, text[-3000:]
    assert "\r" not in text and "epoch 1/1  loss=" in text
    assert "oneDNN" not in text and "absl::InitializeLog" not in text
    [run_dir] = [path for path in (work / "runs" / "tiramisu56_camvid").iterdir() if path.is_dir()]
    assert (run_dir / "checkpoints" / "best.keras").is_file() and (run_dir / "recipe.yaml").is_file()

    photos = work / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index, size in enumerate(((50, 70), (96, 128))):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(photos / f"p{index}.png")
    run([densevision, "predict", run_dir, photos, "--output", "pred"], work, env)
    for index, size in enumerate(((50, 70), (96, 128))):
        mask = np.asarray(Image.open(work / "pred" / f"p{index}.png"))
        assert mask.shape == size and mask.max() < 11  # one class id per pixel, of the input's size

    run([densevision, "evaluate", run_dir, "--json", "m.json"], work, env)
    metrics = json.loads((work / "m.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0 and len(metrics["per_class_iou"]) == 11

    run([densevision, "export", run_dir, "--format", "saved_model", "--output", "sm"], work, env)
    assert (work / "sm" / "saved_model.pb").is_file()
