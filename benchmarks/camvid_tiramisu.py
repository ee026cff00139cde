#!/usr/bin/env python
"""FC-DenseNet on real CamVid in a fixed budget: the fast recipe against the paper recipe, val mIoU at 360x480.

    python benchmarks/camvid_tiramisu.py                     # fast vs paper recipe, 240 steps each
    python benchmarks/camvid_tiramisu.py --minutes 18        # the same, in a time budget per recipe
    python benchmarks/camvid_tiramisu.py --recipe recipes/tiramisu56_camvid.yaml --steps 240   # one recipe

Each recipe trains from scratch for the same budget (``--steps`` training steps in epochs of ``--steps-per-epoch``,
or ``train.max_minutes``), then re-estimates batch-norm statistics over ``--precise-bn`` training batches
("precise BN": dropout off, no weight change) and evaluates every val image at full resolution (360x480, padded
inside the model and cropped back). The fast recipe keeps its own precise-BN setting; the paper recipe gets the same
count, so both are scored alike. Prints one JSON line per recipe, then the ratio of the last recipe's mIoU to the
first's and each beside the paper's test figure. A few hundred CPU steps, not a reproduction of the paper (hundreds
of epochs on a GPU): about 15 CPU-minutes per recipe at 240 steps on 2 cores.
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
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECIPES = [ROOT / "recipes/tiramisu56_camvid.yaml", ROOT / "recipes/tiramisu56_camvid_fast.yaml"]


def run_recipe(args, root: Path, path: Path) -> dict:
    """Train ``path`` for the budget on ``root``, precise BN, validate once; the report row."""
    budget = ([f"train.epochs={args.steps // args.steps_per_epoch}"] if not args.minutes
              else ["train.epochs=100000", f"train.max_minutes={args.minutes}"])
    recipe = densevision.load_recipe(str(path), [
        f"data.root={root}", f"train.steps_per_epoch={args.steps_per_epoch}", *budget, "train.val_every=100000",
        f"train.precise_bn_batches={args.precise_bn}", "train.pictures_every=0", "tracking.wandb.mode=disabled",
        "tracking.tensorboard=false", f"train.seed={args.seed}", *args.overrides])
    started = time.perf_counter()
    result = Trainer(recipe, output_dir=args.output, progress=False).fit()
    final = result.history[-1]
    report = {
        "recipe": path.name, "model": recipe.model.name, "train_steps": result.epochs_done * args.steps_per_epoch,
        "batch_size": recipe.data.batch_size, "seed": args.seed,
        "minutes": round((time.perf_counter() - started) / 60, 1),  # training, precise BN and validation
        "val_miou": round(final["val_miou"], 4), "val_global_accuracy": round(final["val_global_accuracy"], 4),
        "paper_test_miou": PAPER_TEST_MIOU.get(recipe.model.name), "run_dir": str(result.run_dir),
    }
    (Path(result.run_dir) / "benchmark.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report), flush=True)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="CamVid folder (default: DENSEVISION_DATA or ../shared/data)/CamVid")
    parser.add_argument("--recipe", action="append", type=Path,
                        help="a recipe to train (repeatable; default: the paper recipe, then the fast one)")
    parser.add_argument("--steps", type=int, default=240, help="training steps per recipe (unless --minutes)")
    parser.add_argument("--minutes", type=float, default=0.0, help="a time budget per recipe instead of --steps")
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--precise-bn", type=int, default=100, help="batches for batch-norm re-estimation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/benchmarks")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                        help="KEY=VALUE overrides applied to every recipe")
    args = parser.parse_args()
    if not args.minutes and args.steps % args.steps_per_epoch:
        parser.error(f"--steps {args.steps} is not a multiple of --steps-per-epoch {args.steps_per_epoch}")

    root = Path(args.data) if args.data else dataset_dir("CamVid")
    if root is None or not root.is_dir():
        print(f"skipped: {missing_reason('CamVid')}", file=sys.stderr)
        return 2
    rows = [run_recipe(args, root, path) for path in (args.recipe or DEFAULT_RECIPES)]
    budget = f"{args.minutes} min" if args.minutes else f"{args.steps} steps"
    print(f"\nFC-DenseNet on CamVid val (101 images, 360x480), {budget} each, precise BN over {args.precise_bn} batches:")
    for row in rows:
        paper = row["paper_test_miou"]
        print(f"  {row['recipe']}: mIoU {100 * row['val_miou']:.1f} after {row['train_steps']} steps"
              + (f" (paper, test split, full training: {paper})" if paper else ""))
    if len(rows) > 1:
        print(f"ratio {rows[-1]['recipe']} / {rows[0]['recipe']}: {rows[-1]['val_miou'] / rows[0]['val_miou']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
