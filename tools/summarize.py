#!/usr/bin/env python
"""Print a model's layer table: output shapes, parameters, multiply-adds, activations, receptive field, jump.

Examples:
    python tools/summarize.py vgg16 --include-top          # the CS231n VGG16 table
    python tools/summarize.py resnet50 --input 512x512x3   # a backbone's feature maps at 512x512
    python tools/summarize.py recipes/camvid_tiramisu.yaml --input 360x480x3 --json

Exit status: 0 on success, 2 for a bad recipe, an unknown model name or an input shape the model rejects.
"""

from __future__ import annotations

import argparse
import json
import sys


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import densevision  # noqa: F401  (environment before keras)
    from densevision.analysis.layer_table import format_table, layer_table, resolve_model
    from densevision.registry import UnknownNameError

    try:
        model = resolve_model(args.model, input_shape=args.input, include_top=args.include_top)
        table = layer_table(model, input_shape=args.input)
    except (UnknownNameError, ValueError) as error:  # RecipeError is a ValueError
        print(f"summarize: {error}", file=sys.stderr)
        return 2
    print(json.dumps(table, indent=1) if args.json else format_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
