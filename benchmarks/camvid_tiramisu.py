#!/usr/bin/env python
"""FC-DenseNet on real CamVid for a fixed CPU budget, then mIoU on CamVid val at full resolution (360x480).

    python benchmarks/camvid_tiramisu.py --minutes 20

Trains ``recipes/tiramisu56_camvid.yaml`` (the paper's optimiser and 224x224 crops + flips) for the time budget,
re-estimates batch-norm statistics over training batches ("precise BN"), evaluates every val image at full
resolution and prints the mIoU beside the paper's test figure. A short CPU run, not a reproduction of the paper:
the paper trains for hundreds of epochs on a GPU.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import densevision  # noqa: E402
from densevision.data.paths import dataset_dir, missing_reason  # noqa: E402
from densevision.engine.trainer import Trainer  # noqa: E402

PAPER_TEST_MIOU = {"fc_densenet56": 58.9, "fc_densenet67": 60.1, "fc_densenet103": 66.9}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="CamVid folder (default: DENSEVISION_DATA or ../shared/data)/CamVid")
    parser.add_argument("--recipe", default="recipes/tiramisu56_camvid.yaml")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget")
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--precise-bn", type=int, default=100, help="batches for batch-norm re-estimation")
    parser.add_argument("--output", default="runs/benchmarks")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[])
    args = parser.parse_args()

    root = Path(args.data) if args.data else dataset_dir("CamVid")
    if root is None or not root.is_dir():
        print(f"skipped: {missing_reason('CamVid')}", file=sys.stderr)
        return 2
    recipe = densevision.load_recipe(args.recipe, [
        f"data.root={root}", f"train.steps_per_epoch={args.steps_per_epoch}", "train.epochs=100000",
        f"train.max_minutes={args.minutes}", "train.val_every=100000", f"train.precise_bn_batches={args.precise_bn}",
        "train.pictures_every=0", "tracking.wandb.mode=disabled", *args.overrides])
    started = time.perf_counter()
    result = Trainer(recipe, output_dir=args.output).fit()
    final = result.history[-1]
    steps = result.epochs_done * args.steps_per_epoch
    report = {
        "model": recipe.model.name, "train_steps": steps, "batch_size": recipe.data.batch_size,
        "train_minutes": round((time.perf_counter() - started) / 60, 1),
        "val_miou": final.get("val_miou"), "val_global_accuracy": final.get("val_global_accuracy"),
        "paper_test_miou": PAPER_TEST_MIOU.get(recipe.model.name), "run_dir": str(result.run_dir),
    }
    (Path(result.run_dir) / "benchmark.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"val mIoU {100 * report['val_miou']:.1f} after {steps} steps on CPU "
          f"(paper, test split, full training: {report['paper_test_miou']}); "
          f"ratio {report['val_miou'] * 100 / report['paper_test_miou']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
