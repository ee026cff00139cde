#!/usr/bin/env python
"""Evaluate a checkpoint on a split of the recipe's dataset, prepared as validation inside training is:
``python tools/evaluate.py RECIPE --weights CKPT [--split val|test] [--set KEY=VALUE ...] [--demo] [--flip-test]
--json OUT.json [--output DIR]``.

Prints the task's table. ``--json`` writes, per task:
  segmentation    {"miou", "global_accuracy", "mean_class_accuracy", "per_class_iou": {class: iou}} (null for a
                  class neither present nor predicted)
  classification  {"top1", "top5"}
  pose            {"pck" (LSP, PCK@0.2) | "pckh" (MPII, PCKh@0.5), "per_joint": {joint: value}}; COCO keypoints
                  add {"ap", "ap50", "ap75", "ar"} (pycocotools' OKS AP)
``--output`` adds report files (per-class or per-joint table, confusion matrix, overlays). A recipe, dataset,
checkpoint (another task, class or joint count) or output problem exits 2 before any work.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import densevision  # noqa: E402,F401
from densevision.cli import add_common_arguments, tool_main  # noqa: E402
from densevision.engine.evaluator import evaluate_command  # noqa: E402


@tool_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="recipe YAML")
    parser.add_argument("--weights", required=True, help="checkpoint: .keras model or .weights.h5")
    parser.add_argument("--split", default="val", help="val, test, train (the recipe's split names) or a split name")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override recipe keys, e.g. --set data.root=/data/camvid")
    parser.add_argument("--demo", action="store_true", help="evaluate on the task's generated demo data")
    parser.add_argument("--json", dest="json_path", metavar="OUT.json", help="write the results as JSON")
    parser.add_argument("--output", metavar="DIR", help="write the report (table, confusion matrix, overlays)")
    parser.add_argument("--flip-test", action="store_true",
                        help="pose: average with the mirrored crop's heatmaps (test.flip_test)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return evaluate_command(args.recipe, args.weights, split=args.split, overrides=args.overrides, demo=args.demo,
                            json_path=args.json_path, output_dir=args.output, progress=not args.no_progress,
                            flip_test=args.flip_test)


if __name__ == "__main__":
    sys.exit(main())
