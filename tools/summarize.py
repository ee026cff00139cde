#!/usr/bin/env python
"""Print a model's layer table: output shapes, parameters, multiply-adds, activations, receptive field, jump.

Examples:
    python tools/summarize.py vgg16 --include-top          # the CS231n VGG16 table
    python tools/summarize.py resnet50 --input 512x512x3   # a backbone's feature maps at 512x512
    python tools/summarize.py recipes/camvid_tiramisu.yaml --input 360x480x3 --json

Exit status: 0 on success, 2 for a bad recipe, an unknown model name or an input shape the model rejects,
1 for an unexpected error (traceback in a log file; --debug shows it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import densevision  # noqa: E402,F401  (environment before keras)
from densevision.cli import add_common_arguments, tool_main  # noqa: E402


def parse_shape(text: str) -> tuple[int, ...]:
    """``"224x224x3"`` -> ``(224, 224, 3)``."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"--input {text!r}: expected HxWxC with positive integers, e.g. 224x224x3")
    return shape


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", metavar="MODEL_OR_RECIPE", help="backbone name (vgg16, resnet50, ...) or recipe .yaml")
    parser.add_argument("--input", type=parse_shape, default=(224, 224, 3), metavar="HxWxC",
                        help="input size to tabulate at (default 224x224x3)")
    parser.add_argument("--include-top", action="store_true",
                        help="the ImageNet classifier (1000 classes) instead of the backbone's feature maps")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    add_common_arguments(parser)
    return parser


def _keras_reason(error: Exception) -> str:
    """The sentence that matters in a Keras layer error (without its colour codes and call arguments)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        return f"{lines[1]} ({lines[0].removeprefix('Exception encountered when calling ').rstrip('.')})"
    return lines[0] if lines else type(error).__name__


@tool_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from densevision.analysis.layer_table import format_table, layer_table, resolve_model
    from densevision.errors import DensevisionError, UsageError

    try:
        model = resolve_model(args.model, input_shape=args.input, include_top=args.include_top)
        table = layer_table(model, input_shape=args.input)
    except DensevisionError:  # a bad recipe, an unknown model name
        raise
    except ValueError as error:  # Keras rejects the input shape for this model
        raise UsageError(f"{args.model} at --input {'x'.join(map(str, args.input))}: {_keras_reason(error)}") from error
    print(json.dumps(table, indent=1) if args.json else format_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
