"""Evaluate a checkpoint on a split of its dataset: densevision evaluate RUN_DIR|RECIPE [--weights W] [--split val|test].

Data are prepared as validation inside training is. A run folder brings its recipe (as trained: --demo and --set
applied) and checkpoints/best.keras (--weights last or a file picks another); a recipe needs --weights.

Prints the task's table. --json writes, per task:
  segmentation    {"miou", "global_accuracy", "mean_class_accuracy", "per_class_iou": {class: iou}} (null for a
                  class neither present nor predicted)
  classification  {"top1", "top5"}
  pose            {"pck" (LSP, PCK@0.2) | "pckh" (MPII, PCKh@0.5), "per_joint": {joint: value}}; COCO keypoints
                  add {"ap", "ap50", "ap75", "ar"} (pycocotools' OKS AP)
--output adds report files (per-class or per-joint table, confusion matrix, overlays). An existing --json file or
a non-empty --output folder is replaced only with --overwrite. A recipe, dataset, checkpoint (another task, class
or joint count) or output problem exits 2 before any work.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from densevision.commands import options
from densevision.errors import OutputError
from densevision.runs import resolve_model_source


def build_parser() -> argparse.ArgumentParser:
    parser = options.new_parser("evaluate", __doc__)
    options.add_model(parser)
    parser.add_argument("--split", default="val", help="val, test, train (the recipe's split names) or a split name")
    parser.add_argument("--json", dest="json_path", metavar="OUT.json", help="write the results as JSON")
    parser.add_argument("--output", metavar="DIR", help="write the report (table, confusion matrix, overlays)")
    options.add_flip_test(parser, "pose: average with the mirrored crop's heatmaps (test.flip_test)")
    options.add_overwrite(parser, "an existing --json file and --output folder")
    options.add_run_options(parser)
    return parser


def check_outputs(json_path: str | None, output_dir: str | None, overwrite: bool) -> None:
    """Refuse outputs that exist (before any work) unless ``overwrite``.

    Raises:
        OutputError: naming the file or folder.
    """
    if overwrite:
        return
    if json_path and Path(json_path).exists():
        raise OutputError(f"--json {json_path} already exists; pass --overwrite to replace it or choose another file")
    if output_dir and Path(output_dir).is_dir() and any(Path(output_dir).iterdir()):
        raise OutputError(f"--output {output_dir} already holds files; pass --overwrite to replace them or choose "
                          f"another folder")


def run(args: argparse.Namespace) -> int:
    source = resolve_model_source(args.target, args.weights, demo=args.demo)
    check_outputs(args.json_path, args.output, args.overwrite)
    from densevision.engine.evaluator import evaluate_command  # after parsing: it imports TensorFlow

    return evaluate_command(source.recipe, source.weights, split=args.split, overrides=args.overrides,
                            demo=args.demo, json_path=args.json_path, output_dir=args.output,
                            progress=not args.no_progress, flip_test=args.flip_test)
