#!/usr/bin/env python
"""Draw a model's answers on every frame of a video (an alias of ``densevision video``; see
:mod:`densevision.commands.video`):
``python tools/video.py RECIPE INPUT --weights CKPT --output OUT.mp4 [--json OUT.json]``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from densevision.cli import tool_main  # noqa: E402
from densevision.commands.video import build_parser, run  # noqa: E402


@tool_main
def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
