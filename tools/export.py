#!/usr/bin/env python
"""Export a checkpoint for serving:
``python tools/export.py RECIPE --weights CKPT --format saved_model|keras|tflite --output PATH
[--input-size H W] [--int8 --calibration DIR] [--set KEY=VALUE ...] [--overwrite]``.

Every format takes uint8 RGB images and returns the model's raw outputs (``logits``, ``heatmaps``) and the task's
decoded ones (``labels``; ``probabilities`` and ``top_class``; ``keypoints`` and ``scores``). ``saved_model`` takes
any batch and image size; ``tflite`` one image of ``--input-size`` (default: the recipe's crop size), ``--int8``
quantised with the images of ``--calibration DIR``. The export is checked against the Keras model on a few
images and the differences are printed. Recipe, checkpoint and option errors exit 2; a failed parity check exits 1.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import densevision  # noqa: E402,F401
from densevision.cli import add_common_arguments, tool_main  # noqa: E402
from densevision.engine.export import FORMATS, export_command  # noqa: E402


@tool_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="recipe YAML (builds the model for .weights.h5, names the task)")
    parser.add_argument("--weights", required=True, help="checkpoint: .keras model or .weights.h5")
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument("--output", required=True, metavar="PATH",
                        help="a folder (saved_model), a .keras file or a .tflite file")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="fixed input size for tflite (default: the recipe's crop / input size)")
    parser.add_argument("--int8", action="store_true", help="tflite: full-integer int8 quantisation")
    parser.add_argument("--calibration", metavar="DIR", help="--int8: folder of representative images")
    parser.add_argument("--calibration-limit", type=int, default=100, metavar="N",
                        help="--int8: use at most N calibration images (default 100)")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override recipe keys")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--demo", action="store_true", help="the recipe's demo settings (a checkpoint trained with "
                                                             "--demo)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return export_command(args.recipe, args.weights, args.format, args.output, overrides=args.overrides,
                          input_size=args.input_size, int8=args.int8, calibration=args.calibration,
                          overwrite=args.overwrite, calibration_limit=args.calibration_limit, demo=args.demo)


if __name__ == "__main__":
    sys.exit(main())
