#!/usr/bin/env python
"""Alias of ``densevision predict`` (``python tools/predict.py ARGS`` = ``densevision predict ARGS``; see its --help)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from densevision.commands import alias  # noqa: E402

main = alias("predict")

if __name__ == "__main__":
    sys.exit(main())
