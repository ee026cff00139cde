#!/usr/bin/env python
"""Short CPU run of the shipped LSP recipe on real LSP, PCK@0.2 next to two mean-pose baselines measured in the
same run.

    python benchmarks/pose_lsp.py [--steps 600] [--size 128] [--set KEY=VALUE ...] [--output runs/bench_pose]

Trains ``recipes/hourglass_lsp.yaml`` for ``--steps`` steps of batch 6 at ``--size`` x ``--size`` on LSP images
1-900 and evaluates on the last 100 training images (901-1000, the recipe's ``val`` split), then prints:

- the model's PCK@0.2 (torso = right shoulder to left hip of the ground truth), with and without flip test;
- baseline "mean pose in the crop": the mean training pose in crop coordinates placed in every crop;
- baseline "mean pose in the true box": the mean training pose relative to the tight box of each person's
  labelled joints, stretched into that box (it knows each person's extent and aspect ratio).

Data: ``$DENSEVISION_DATA/LSP`` or ``../shared/data/LSP`` (``images/im0001.jpg`` ..., ``joints.mat``); pass
``--set data.root=/path/to/lsp`` otherwise. Use ``--set`` to measure variants (e.g. ``model.zero_init_heads=false
optimizer.name=rmsprop optimizer.lr=2.5e-4 codec.sigma=1 train.precise_bn_batches=0``: the paper's settings).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import densevision  # noqa: E402,F401
from densevision.data.paths import dataset_dir  # noqa: E402


def crop_examples(recipe, split: str):
    """Prepared (cropped, unaugmented) examples of a split: keypoints in crop pixels and normalizers."""
    from densevision.data.sources import open_source
    from densevision.registry import TASKS

    source = open_source(recipe, split)
    task = TASKS.get(recipe.task)(recipe, source.info)
    prepare = task.preparer([], training=False)
    examples = [prepare(source.load(index), 0) for index in range(len(source))]
    return task, examples


def mean_pose_baselines(recipe) -> dict[str, float]:
    """PCK of the two mean-pose baselines on the val split (means from the train split)."""
    from densevision.tasks.pose_metrics import pck_counts

    task, train = crop_examples(recipe, recipe.data.train_split)
    _, val = crop_examples(recipe, recipe.data.val_split)
    keypoints = np.stack([e["keypoints"] for e in train])
    labelled = keypoints[..., 2] > 0
    # Baseline 1: the mean position of each joint in crop pixels (over labelled joints).
    mean_crop = np.nansum(np.where(labelled[..., None], keypoints[..., :2], 0), 0) / labelled.sum(0)[:, None]

    def tight_box(points):
        visible = points[points[:, 2] > 0, :2]
        low, high = visible.min(0), visible.max(0)
        return low, np.maximum(high - low, 1e-3)

    # Baseline 2: the mean joint position relative to the tight box of the labelled joints.
    relative = []
    for points in keypoints:
        low, size = tight_box(points)
        relative.append(np.where(points[:, 2:3] > 0, (points[:, :2] - low) / size, np.nan))
    mean_relative = np.nanmean(np.stack(relative), axis=0)

    truth = np.stack([e["keypoints"] for e in val])
    normalizer = np.array([e["normalizer"] for e in val])
    mask = truth[..., 2] > 0
    in_crop = np.broadcast_to(mean_crop, truth[..., :2].shape)
    in_box = np.stack([tight_box(points)[0] + mean_relative * tight_box(points)[1] for points in truth])
    results = {}
    for name, predicted in (("mean pose in the crop", in_crop), ("mean pose in the true box", in_box)):
        hits, counts = pck_counts(predicted, truth[..., :2], mask, normalizer, task.threshold)
        results[name] = float(hits.sum() / max(counts.sum(), 1))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--size", type=int, default=128, help="crop size (heatmaps at a quarter of it)")
    parser.add_argument("--recipe", default=str(Path(__file__).resolve().parents[1] / "recipes/hourglass_lsp.yaml"))
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output", default="runs/bench_pose")
    args = parser.parse_args(argv)

    from densevision.engine.evaluator import run_evaluation
    from densevision.engine.trainer import Trainer
    from densevision.recipes import load_recipe

    root = dataset_dir("LSP")
    overrides = [f"data.input_size=[{args.size},{args.size}]", "data.batch_size=6", "train.steps_per_epoch=100",
                 f"train.epochs={max(1, args.steps // 100)}", "train.pictures_every=0", "train.val_every=3",
                 "tracking.wandb.mode=disabled", "tracking.tensorboard=false"]
    if root is not None:
        overrides.insert(0, f"data.root={root}")
    recipe = load_recipe(args.recipe, overrides + list(args.overrides))
    if not Path(recipe.data.root).exists():
        print(f"LSP not found at {recipe.data.root}: set DENSEVISION_DATA or pass --set data.root=...",
              file=sys.stderr)
        return 2
    baselines = mean_pose_baselines(recipe)
    started = time.perf_counter()
    result = Trainer(recipe, output_dir=args.output).fit()
    seconds = time.perf_counter() - started
    last = result.run_dir / "checkpoints" / "last.keras"
    plain = run_evaluation(recipe, last, split="val", progress=False)
    flipped = run_evaluation(recipe.model_copy(update={"test": recipe.test.model_copy(update={"flip_test": True})}),
                             last, split="val", progress=False)
    steps = recipe.train.epochs * recipe.train.steps_per_epoch
    print()
    print(f"LSP PCK@0.2 on images 901-1000 after {steps} steps of batch {recipe.data.batch_size} at "
          f"{args.size}x{args.size} ({seconds / 60:.1f} min, {seconds / steps:.2f} s/step incl. validation)")
    print(f"  {'model (last checkpoint)':<34} {plain['pck']:.3f}")
    print(f"  {'model + flip test':<34} {flipped['pck']:.3f}")
    for name, value in baselines.items():
        print(f"  {'baseline: ' + name:<34} {value:.3f}")
    best = max(baselines.values())
    print(f"  ratio model / best baseline        {plain['pck'] / best:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
