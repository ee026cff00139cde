"""Slide a trained classifier over large images: densevision sliding RUN_DIR|RECIPE [--weights W] INPUT... [--output DIR].

The classifier (trained at its recipe's input_shape, the window) is rewritten by densevision.to_fully_convolutional
and run as one fully convolutional pass; each image gives a class-score map per scale (--stride half the network
stride forwards the image shifted too), image-level scores (mean or max over windows and scales), the top-k labels
(printed), and a heat-map overlay PNG of one class (--class, default each image's top-1) in --output, with
results.json and the raw score maps. Outputs are named by each image's path below the folder given, extension
included: photos/a.jpg -> DIR/a.jpg_<class>.png and DIR/a.jpg_scores.npz. Inputs (positional or --input) are
files, folders (walked recursively) and glob patterns. A run folder brings its recipe and checkpoints/best.keras;
a recipe needs --weights (a .keras checkpoint or a .weights.h5 for the recipe's model).

Existing outputs are never replaced without --overwrite (checked before the first image). An image that cannot be
read, or is smaller than the window, is skipped with a warning and listed under failures in results.json, which is
always written. Exit status: 0 all images done, 1 some skipped (or an unexpected error, with a log file), 2 a bad
option, recipe, input, checkpoint or output (one error: line, before any image), 130 interrupted (results.json then
holds the images done, "complete": false).
"""

from __future__ import annotations

import argparse

from densevision.commands import options
from densevision.runs import resolve_model_source


def build_parser() -> argparse.ArgumentParser:
    parser = options.new_parser("sliding", __doc__)
    options.add_model(parser)
    options.add_inputs(parser, metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--stride", type=int, default=None,
                        help="pixels between windows: the network stride (default, e.g. 32) or a divisor (16)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0], help="image scales, e.g. 1.0 1.5")
    parser.add_argument("--reduce", choices=("mean", "max"), default="mean",
                        help="image-level score per class: mean or max over windows (then scales)")
    parser.add_argument("--top-k", type=int, default=5, help="labels to print per image (1 or more)")
    parser.add_argument("--class", dest="class_choice", metavar="NAME_OR_INDEX",
                        help="class of the heat map (default: each image's top-1)")
    parser.add_argument("--output", default="sliding_output", metavar="DIR", help="output folder")
    options.add_overwrite(parser)
    options.add_run_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    inputs = options.all_inputs(args)
    source = resolve_model_source(args.target, args.weights, demo=args.demo)
    from densevision.commands.sliding_run import sliding_classify_command  # after parsing: it imports TensorFlow

    return sliding_classify_command(
        source.recipe, source.weights, inputs, stride=args.stride, scales=args.scales, reduce=args.reduce,
        k=args.top_k, class_choice=args.class_choice, output=args.output, overrides=args.overrides,
        demo=args.demo, progress=not args.no_progress, overwrite=args.overwrite,
    )
