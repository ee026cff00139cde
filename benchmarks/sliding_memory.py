#!/usr/bin/env python
"""Peak memory of ``tools/sliding_classify.py`` on one large photo: one pass over the whole image against the
default tiles (``sliding.DEFAULT_MAX_PIXELS``), same model, same image, measured in one run.

Each variant runs in its own subprocess (peak RSS from ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at its end,
so one cannot inherit the other's peak), on the ``vgg16_sliding.yaml`` recipe's ``--demo`` classifier (VGG16 with
64x64 windows, random weights: memory does not depend on the weights). Prints both peaks and their ratio, and the
largest score difference between the two maps (tiles keep half the receptive field as context: float rounding).

Usage:  python benchmarks/sliding_memory.py [--height 3000 --width 4000]
Other processes on the machine do not change a process's own peak RSS, but they can make the one-pass run fail
for lack of memory: it needs about 9 GB at 4000x3000.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "vgg16_sliding.yaml"

CHILD = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {root!r})
import densevision  # noqa: F401
from densevision.commands.sliding_run import sliding_classify_command
started = time.perf_counter()
code = sliding_classify_command({recipe!r}, {weights!r}, [{image!r}], output={output!r}, demo=True, progress=False,
                                max_pixels={max_pixels!r}, k=1)
print(json.dumps({{"code": code, "seconds": time.perf_counter() - started,
                   "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""


def run_child(work: Path, weights: Path, image: Path, name: str, max_pixels) -> dict:
    output = work / name
    code = CHILD.format(root=str(ROOT), recipe=str(RECIPE), weights=str(weights), image=str(image),
                        output=str(output), max_pixels=max_pixels)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    import numpy as np

    result["scores"] = np.load(output / f"{image.name}_scores.npz")["scale_1"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--tiles-only", action="store_true", help="skip the one-pass run (no ratio)")
    args = parser.parse_args()

    import cv2
    import numpy as np

    sys.path.insert(0, str(ROOT))
    import densevision  # noqa: F401
    from densevision.engine.demo import load_tool_recipe
    from densevision.inference.sliding import DEFAULT_MAX_PIXELS
    from densevision.models import build_model

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        weights = work / "vgg16_demo.keras"
        build_model(load_tool_recipe(RECIPE, demo=True)).save(weights)
        rng = np.random.default_rng(0)
        coarse = rng.uniform(0, 255, (args.height // 100, args.width // 100, 3)).astype(np.float32)
        photo = cv2.resize(coarse, (args.width, args.height), interpolation=cv2.INTER_CUBIC)
        image = work / "photo.jpg"
        cv2.imwrite(str(image), np.clip(photo, 0, 255).astype(np.uint8))
        tiles = run_child(work, weights, image, "tiles", DEFAULT_MAX_PIXELS)
        if args.tiles_only:
            print(f"tiles: peak RSS {tiles['peak_gb']:.2f} GB, {tiles['seconds']:.0f} s")
            return 0
        whole = run_child(work, weights, image, "one_pass", None)
    difference = float(np.abs(whole["scores"] - tiles["scores"]).max())
    print(f"{args.width}x{args.height} photo, vgg16_sliding --demo classifier (64x64 windows), stride 32")
    print(f"one pass : peak RSS {whole['peak_gb']:.2f} GB, {whole['seconds']:.0f} s")
    print(f"tiles    : peak RSS {tiles['peak_gb']:.2f} GB, {tiles['seconds']:.0f} s "
          f"(budget {DEFAULT_MAX_PIXELS:,} pixels per tile)")
    print(f"ratio one pass / tiles: memory {whole['peak_gb'] / tiles['peak_gb']:.2f}x, "
          f"time {whole['seconds'] / tiles['seconds']:.2f}x; max score difference {difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
