"""The old name of :mod:`densevision.video.command` (kept, so ``from densevision.video.cli import video_command``
still works; ``densevision/cli.py`` is the front door every command shares, a different thing)."""

from densevision.video.command import *  # noqa: F401,F403
from densevision.video.command import __all__  # noqa: F401
