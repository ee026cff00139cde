#!/usr/bin/env python
"""Predict a folder of images with any recipe's model:
``python tools/predict.py RECIPE --weights W --input DIR|GLOB|FILE... --output DIR [--demo]``.

Folders are walked recursively and their structure is kept under DIR. Per task:
  segmentation    <relative path without extension>.png index masks (values = class ids) of the input's
                  displayed size; --color adds color/..., --overlay adds overlays/...
  classification  predictions.csv and predictions.json with the --top-k classes of every image
  pose            overlays/<relative path>.png skeletons and results.json in COCO's results format; people found
                  with OpenCV's HOG detector, --boxes FILE.json, or --single (the whole image is one person)
Broken inputs (corrupt, empty, not an image, unreadable) are skipped with a warning; DIR/report.json lists
{"ok": [...], "failed": [{"path", "error"}]}. Exit status: 0 all predicted, 1 some inputs failed, 2 usage error
(bad recipe or weights, no input found, outputs that exist without --overwrite/--resume).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import densevision  # noqa: E402,F401
from densevision.cli import add_common_arguments, tool_main  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="recipe YAML (model, task and the dataset's names and colours)")
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("--input", dest="more_inputs", nargs="+", action="extend", default=[], metavar="PATH",
                        help="image files, folders (walked recursively) or glob patterns")
    parser.add_argument("--weights", required=True, help="checkpoint: .keras model or .weights.h5")
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--resume", action="store_true", help="skip inputs whose outputs already exist")
    parser.add_argument("--no-recursive", action="store_true", help="do not walk into subfolders")
    parser.add_argument("--overlay", action="store_true", help="segmentation: also write colour overlays")
    parser.add_argument("--color", action="store_true", help="segmentation: also write colour masks")
    parser.add_argument("--flip", action="store_true",
                        help="test-time augmentation: average with the mirrored image (pose: joints swapped)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="segmentation: average over these image scales, e.g. 0.75 1.0 1.25")
    parser.add_argument("--tile", type=int, default=512, help="tile size for images above --max-pixels")
    parser.add_argument("--max-pixels", type=int, default=2048 * 2048,
                        help="images with more pixels are predicted tile by tile (memory bounded by the tile)")
    parser.add_argument("--top-k", type=int, default=5, help="classification: classes listed per image")
    parser.add_argument("--single", action="store_true", help="pose: the whole image is one person")
    parser.add_argument("--boxes", metavar="JSON", help="pose: person boxes per image instead of the detector")
    parser.add_argument("--batch-size", type=int, default=8, help="pose: person crops per forward pass")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override recipe keys")
    parser.add_argument("--demo", action="store_true", help="use the recipe's demo settings and demo data")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_common_arguments(parser)
    return parser


@tool_main
def main(argv=None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # inputs may come before or after the options
    from densevision.engine.predictor import PredictOptions, predict_command, validate_options

    options = validate_options(PredictOptions(
        overlay=args.overlay, color=args.color, top_k=args.top_k, flip=args.flip, scales=tuple(args.scales),
        tile=args.tile, max_pixels=args.max_pixels, single=args.single, boxes_file=args.boxes,
        batch_size=args.batch_size))
    return predict_command(args.recipe, args.weights, list(args.inputs) + list(args.more_inputs), args.output,
                           overwrite=args.overwrite, resume=args.resume, demo=args.demo, overrides=args.overrides,
                           progress=not args.no_progress, recursive=not args.no_recursive, options=options)


if __name__ == "__main__":
    sys.exit(main())
