"""Print a model's layer table: output shapes, parameters, multiply-adds, activations, receptive field, jump.

Examples:
    densevision summarize vgg16 --include-top                 # the CS231n VGG16 table
    densevision summarize resnet50 --input-shape 512x512x3    # a backbone's feature maps at 512x512
    densevision summarize tiramisu56_camvid --input-shape 360x480x3 --json
    densevision summarize runs/tiramisu56_camvid/<time> --set model.growth_rate=8

MODEL is a backbone name, a recipe file, a built-in recipe name or a run folder (its recipe.yaml).
Exit status: 0 on success, 2 for a bad recipe, an unknown model name or an input shape the model rejects,
1 for an unexpected error (traceback in a log file; --debug shows it).
"""

from __future__ import annotations

import argparse
import json
import re

from densevision.commands import options
from densevision.errors import DensevisionError, UsageError
from densevision.runs import RECIPE_FILE, is_run_dir


def parse_shape(text: str) -> tuple[int, ...]:
    """``"224x224x3"`` -> ``(224, 224, 3)``."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--input-shape {text!r}: expected HxWxC with positive integers, e.g. "
                                         f"224x224x3")
    return shape


def build_parser() -> argparse.ArgumentParser:
    parser = options.new_parser("summarize", __doc__)
    parser.add_argument("model", metavar="MODEL", help="backbone name (vgg16, resnet50, ...), recipe or run folder")
    parser.add_argument("--input-shape", "--input", dest="input_shape", type=parse_shape, default=(224, 224, 3),
                        metavar="HxWxC", help="input size to tabulate at (default 224x224x3; --input is an alias)")
    parser.add_argument("--include-top", action="store_true",
                        help="the ImageNet classifier (1000 classes) instead of the backbone's feature maps")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    options.add_recipe_options(parser, demo_help="a recipe's demo settings (the model a --demo run trains)")
    options.add_run_options(parser, progress=False)
    return parser


def _keras_reason(error: Exception) -> str:
    """The sentence that matters in a Keras layer error (without its colour codes and call arguments)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        return f"{lines[1]} ({lines[0].removeprefix('Exception encountered when calling ').rstrip('.')})"
    return lines[0] if lines else type(error).__name__


def run(args: argparse.Namespace) -> int:
    spec = f"{args.model.rstrip('/')}/{RECIPE_FILE}" if is_run_dir(args.model) else args.model
    # after parsing: the layer table imports TensorFlow
    from densevision.analysis.layer_table import format_table, layer_table, resolve_model

    try:
        model = resolve_model(spec, input_shape=args.input_shape, include_top=args.include_top,
                              overrides=args.overrides, demo=args.demo)
        table = layer_table(model, input_shape=args.input_shape)
    except DensevisionError:  # a bad recipe, an unknown model name
        raise
    except ValueError as error:  # Keras rejects the input shape for this model
        raise UsageError(f"{args.model} at --input-shape {'x'.join(map(str, args.input_shape))}: "
                         f"{_keras_reason(error)}") from error
    print(json.dumps(table, indent=1) if args.json else format_table(table))
    return 0
