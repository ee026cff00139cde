#!/usr/bin/env python
"""Alias of ``densevision video`` (``python tools/video.py ARGS`` = ``densevision video ARGS``; see its --help):
``python tools/video.py RECIPE INPUT --weights CKPT --output OUT.mp4 [--json OUT.json]``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from densevision.commands import alias  # noqa: E402

main = alias("video")

if __name__ == "__main__":
    sys.exit(main())
