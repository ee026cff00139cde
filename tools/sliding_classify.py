#!/usr/bin/env python
"""Slide a trained classifier over large images as one fully convolutional pass:
``python tools/sliding_classify.py RECIPE --weights W IMAGE_OR_FOLDER... [--stride 32|16] [--scales 1.0 1.5]
[--reduce mean|max] [--top-k 5] [--class NAME_OR_INDEX] [--output DIR] [--overwrite]``.

The classifier (trained at its recipe's ``input_shape``, the window) is rewritten by
``densevision.to_fully_convolutional``; each image gives a class-score map per scale (``--stride`` half the
network stride forwards the image shifted too), image-level scores (mean or max over windows and scales), the
top-k labels (printed), and a heat-map overlay PNG of one class (``--class``, default each image's top-1) in
``--output``, with ``results.json`` and the raw score maps. Outputs are named by each image's path below the
folder given, extension included: ``photos/a.jpg`` -> ``DIR/a.jpg_<class>.png`` and ``DIR/a.jpg_scores.npz``.
Folders are walked recursively; glob patterns work too. ``--weights``: a ``.keras`` checkpoint or a
``.weights.h5`` for the recipe's model.

Existing outputs are never replaced without ``--overwrite`` (checked before the first image). An image that
cannot be read, or is smaller than the window, is skipped with a warning and listed under ``failures`` in
``results.json``, which is always written. Exit status: 0 all images done, 1 some skipped (or an unexpected
error, with a log file), 2 a bad option, recipe, input, checkpoint or output (one ``error:`` line, before any
image), 130 interrupted (``results.json`` then holds the images done, ``"complete": false``).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import densevision  # noqa: E402,F401
from densevision.cli import add_common_arguments, tool_main  # noqa: E402
from densevision.inference.sliding import sliding_classify_command  # noqa: E402


@tool_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="recipe YAML (the classifier and its dataset's class names)")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="image files, folders of images (walked recursively) or glob patterns")
    parser.add_argument("--weights", required=True, help="checkpoint: .keras model or .weights.h5")
    parser.add_argument("--stride", type=int, default=None,
                        help="pixels between windows: the network stride (default, e.g. 32) or a divisor (16)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0], help="image scales, e.g. 1.0 1.5")
    parser.add_argument("--reduce", choices=("mean", "max"), default="mean",
                        help="image-level score per class: mean or max over windows (then scales)")
    parser.add_argument("--top-k", type=int, default=5, help="labels to print per image (1 or more)")
    parser.add_argument("--class", dest="class_choice", metavar="NAME_OR_INDEX",
                        help="class of the heat map (default: each image's top-1)")
    parser.add_argument("--output", default="sliding_output", metavar="DIR", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override recipe keys")
    parser.add_argument("--demo", action="store_true", help="use the recipe's demo settings and demo data")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return sliding_classify_command(
        args.recipe, args.weights, args.inputs, stride=args.stride, scales=args.scales, reduce=args.reduce,
        k=args.top_k, class_choice=args.class_choice, output=args.output, overrides=args.overrides,
        demo=args.demo, progress=not args.no_progress, overwrite=args.overwrite,
    )


if __name__ == "__main__":
    sys.exit(main())
