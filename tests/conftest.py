"""Shared by every test folder: puts tests/ on ``sys.path`` so ``from engine_utils import ...`` works from any
tests/test_<package>/ file.

The test folders are packages (an ``__init__.py`` in each): the layout mirrors densevision/, so module names repeat
(tests/test_serving/test_export.py and a commands export test would both be ``test_export``), and pytest's default
``prepend`` import mode needs unique basenames unless the folders are packages.
"""

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
