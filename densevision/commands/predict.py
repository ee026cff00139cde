"""Predict images with a trained model: densevision predict RUN_DIR|RECIPE [--weights W] INPUT... --output DIR.

A run folder brings its recipe (as trained: --demo and --set applied) and checkpoints/best.keras (--weights last or
a file picks another); a recipe needs --weights. Inputs are files, folders (walked recursively, their structure
kept under DIR) and glob patterns, given positionally or with --input. Per task:
  segmentation    <relative path without extension>.png index masks (values = class ids) of the input's
                  displayed size; --color adds color/..., --overlay adds overlays/...
  classification  predictions.csv and predictions.json with the --top-k classes of every image
  pose            overlays/<relative path>.png skeletons and results.json in COCO's results format; people found
                  with OpenCV's HOG detector, --boxes FILE.json, or --single (the whole image is one person)
Broken inputs (corrupt, empty, not an image, unreadable) are skipped with a warning; DIR/report.json lists
{"ok": [...], "failed": [{"path", "error"}]}. Exit status: 0 all predicted, 1 some inputs failed, 2 usage error
(bad recipe or weights, no input found, outputs that exist without --overwrite/--resume).
"""

from __future__ import annotations

import argparse

from densevision.commands import options
from densevision.runs import resolve_model_source


def build_parser() -> argparse.ArgumentParser:
    parser = options.new_parser("predict", __doc__)
    options.add_model(parser)
    options.add_inputs(parser)
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder")
    options.add_overwrite(parser)
    parser.add_argument("--resume", action="store_true", help="skip inputs whose outputs already exist")
    parser.add_argument("--no-recursive", action="store_true", help="do not walk into subfolders")
    parser.add_argument("--overlay", action="store_true", help="segmentation: also write colour overlays")
    parser.add_argument("--color", action="store_true", help="segmentation: also write colour masks")
    options.add_flip_test(parser, "test-time augmentation: average with the mirrored image (pose: joints swapped)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="segmentation: average over these image scales, e.g. 0.75 1.0 1.25")
    parser.add_argument("--tile", type=int, default=512, help="tile size for images above --max-pixels")
    parser.add_argument("--max-pixels", type=int, default=2048 * 2048,
                        help="images with more pixels are predicted tile by tile (memory bounded by the tile)")
    parser.add_argument("--top-k", type=int, default=5, help="classification: classes listed per image")
    parser.add_argument("--single", action="store_true", help="pose: the whole image is one person")
    parser.add_argument("--boxes", metavar="JSON", help="pose: person boxes per image instead of the detector, checked whole before any image: "
                        "{\"relative/path.jpg\": [[x, y, w, h(, score)], ...]}, a COCO-style list, or an earlier "
                        "run's results.json (densevision.data.boxes)")
    parser.add_argument("--batch-size", type=int, default=8, help="pose: person crops per forward pass")
    options.add_run_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    inputs = options.all_inputs(args)
    source = resolve_model_source(args.target, args.weights, demo=args.demo)
    # after parsing: the predictor imports TensorFlow
    from densevision.commands.predict_run import PredictOptions, predict_command, validate_options

    predict_options = validate_options(PredictOptions(
        overlay=args.overlay, color=args.color, top_k=args.top_k, flip=args.flip_test, scales=tuple(args.scales),
        tile=args.tile, max_pixels=args.max_pixels, single=args.single, boxes_file=args.boxes,
        batch_size=args.batch_size))
    return predict_command(source.recipe, source.weights, inputs, args.output, overwrite=args.overwrite,
                           resume=args.resume, demo=args.demo, overrides=args.overrides,
                           progress=not args.no_progress, recursive=not args.no_recursive, options=predict_options)
