"""Export a checkpoint for serving: densevision export RUN_DIR|RECIPE [--weights W] --format FORMAT --output PATH.

Formats: saved_model, keras, tflite ([--input-size H W] [--int8 --calibration DIR]). A run folder brings its recipe
(as trained: --demo and --set applied) and checkpoints/best.keras (--weights last or a file picks another); a recipe
needs --weights.

Every format takes uint8 RGB images and returns the model's raw outputs (logits, heatmaps) and the task's decoded
ones (labels; probabilities and top_class; keypoints and scores). saved_model takes any batch and image size; tflite
one image of --input-size (default: the recipe's crop size), --int8 quantised with the images of --calibration DIR.
The export is checked against the Keras model on a few images and the differences are printed. Recipe, checkpoint
and option errors exit 2; a failed parity check exits 1.
"""

from __future__ import annotations

import argparse

from densevision.commands import options
from densevision.runs import resolve_model_source

FORMATS = ("saved_model", "keras", "tflite")  # densevision.engine.export.FORMATS, without importing TensorFlow


def build_parser() -> argparse.ArgumentParser:
    parser = options.new_parser("export", __doc__)
    options.add_model(parser)
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument("--output", required=True, metavar="PATH",
                        help="a folder (saved_model), a .keras file or a .tflite file")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="fixed input size for tflite (default: the recipe's crop / input size)")
    parser.add_argument("--int8", action="store_true", help="tflite: full-integer int8 quantisation")
    parser.add_argument("--calibration", metavar="DIR", help="--int8: folder of representative images")
    parser.add_argument("--calibration-limit", type=int, default=100, metavar="N",
                        help="--int8: use at most N calibration images (default 100)")
    options.add_overwrite(parser, "an existing output")
    options.add_run_options(parser, progress=False)
    return parser


def run(args: argparse.Namespace) -> int:
    source = resolve_model_source(args.target, args.weights, demo=args.demo)
    from densevision.engine.export import export_command  # after parsing: it imports TensorFlow

    return export_command(source.recipe, source.weights, args.format, args.output, overrides=args.overrides,
                          input_size=args.input_size, int8=args.int8, calibration=args.calibration,
                          overwrite=args.overwrite, calibration_limit=args.calibration_limit, demo=args.demo)
