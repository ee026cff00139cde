#!/usr/bin/env python
"""Predict segmentation masks for images:
``python tools/predict.py RECIPE --weights CKPT INPUT... --output DIR [--overlay] [--overwrite]``.

INPUT is an image file or a folder of images. For each image ``<stem>`` it writes ``DIR/<stem>.png`` (class index
per pixel) and, with ``--overlay``, ``DIR/overlays/<stem>.png``. Existing outputs are never replaced silently:
the run stops before predicting unless ``--overwrite`` is given. Bad inputs exit 2.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import densevision  # noqa: E402,F401
from densevision.engine.predictor import predict_command  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="recipe YAML (the model and, for overlays, the dataset's palette)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    parser.add_argument("--weights", required=True, help="checkpoint: .keras model or .weights.h5")
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--overlay", action="store_true", help="also write colour overlays")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override recipe keys")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    return predict_command(args.recipe, args.weights, args.inputs, args.output, overlay=args.overlay,
                           overwrite=args.overwrite, overrides=args.overrides, progress=not args.no_progress)


if __name__ == "__main__":
    sys.exit(main())
