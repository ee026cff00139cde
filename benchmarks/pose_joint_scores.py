#!/usr/bin/env python
"""How far a pose model's joint scores can be trusted: which drawing threshold (``--kpt-thr``) suits its scores.

    python benchmarks/pose_joint_scores.py RUN_OR_RECIPE --weights CKPT [--split val] [--thresholds 0.1 0.2 ...]

A joint's score is its heatmap peak. The video and prediction tools draw a joint only when its score reaches
``--kpt-thr``, so the threshold should separate joints the model placed well from joints it guessed. This script
runs the model on every person crop of a split, as evaluation does (the recipe's val preparation), and for each
threshold prints, over the labelled joints: the share drawn, the share of drawn joints that are correct (within
PCK's ``threshold x normalizer``, e.g. 0.2 torso for LSP), and the share of correct joints that are drawn. Its
baseline is the model's PCK itself: the precision of drawing every joint (threshold 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import densevision  # noqa: E402,F401
from densevision.data.pipeline import build_dataset  # noqa: E402
from densevision.data.sources import open_source, resolve_split  # noqa: E402
from densevision.engine.checkpoints import load_matching_checkpoint  # noqa: E402
from densevision.errors import DensevisionError  # noqa: E402
from densevision.registry import TASKS  # noqa: E402
from densevision.tasks.base import final_output  # noqa: E402
from densevision.runs import resolve_model_source  # noqa: E402
from densevision.recipes import load_recipe  # noqa: E402


def joint_scores(recipe, weights, split: str = "val") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scores (N, J), correct (N, J) bool, labelled (N, J) bool)`` over every person crop of ``split``."""
    source = open_source(recipe, resolve_split(recipe, split))
    task = TASKS.get(recipe.task)(recipe, source.info)
    model = load_matching_checkpoint(weights, recipe, source.info, task=task)
    dataset = build_dataset(source, task.preparer(recipe.augmentation.val, training=False), task.example_spec,
                            recipe.data.eval_batch_size, training=False, num_parallel_calls=recipe.data.num_parallel_calls)
    scores, correct, labelled = [], [], []
    for batch in dataset:
        heatmaps = np.asarray(final_output(task.forward(model, batch["image"], training=False)), np.float32)
        points, peak = task.codec.decode(heatmaps)
        truth = batch["keypoints"].numpy()
        distance = np.linalg.norm(points[..., :2] - truth[..., :2], axis=-1)
        normalizer = batch["normalizer"].numpy()[:, None]
        scores.append(peak)
        correct.append(distance <= task.threshold * normalizer)
        labelled.append((truth[..., 2] > 0) & (normalizer > 0))
    return np.concatenate(scores), np.concatenate(correct), np.concatenate(labelled)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="RUN_OR_RECIPE")
    parser.add_argument("--weights", help="checkpoint (default: a run folder's best)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4,
                                                                        0.5])
    args = parser.parse_args(argv)
    model_source = resolve_model_source(args.source, args.weights)  # a run folder, or a recipe and --weights
    recipe = load_recipe(model_source.recipe, args.overrides)
    scores, correct, labelled = joint_scores(recipe, model_source.weights, args.split)
    scores, correct = scores[labelled], correct[labelled]
    print(f"{len(scores)} labelled joints of the {args.split} split; PCK (every joint drawn) {correct.mean():.3f}; "
          f"joint score quartiles {np.percentile(scores, [25, 50, 75]).round(3).tolist()}")
    print(f"  {'--kpt-thr':>9} {'drawn':>7} {'correct of drawn':>17} {'drawn of correct':>17}")
    for threshold in args.thresholds:
        drawn = scores >= threshold
        precision = correct[drawn].mean() if drawn.any() else float("nan")
        recall = drawn[correct].mean() if correct.any() else float("nan")
        print(f"  {threshold:>9.2f} {drawn.mean():>7.3f} {precision:>17.3f} {recall:>17.3f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DensevisionError as error:  # a wrong checkpoint, a missing dataset: one line, as the tools print it
        sys.exit(f"error: {error}")
