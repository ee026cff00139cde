"""densevision.errors: every expected error shares one base."""

from __future__ import annotations

import pytest

import densevision  # noqa: F401  (environment first)

from densevision.cli import tool_main
from densevision.data.errors import DatasetError, ImageReadError
from densevision.engine.checkpoints import CheckpointError
from densevision.errors import DensevisionError, OutputError, UsageError
from densevision.recipes import RecipeError


@pytest.mark.usefixtures("private_cache")
def test_densevision_errors_share_one_base():
    from densevision.data.errors import AugmentationError
    from densevision.engine.distribute import DistributeError
    from densevision.registry import UnknownNameError

    for error in (RecipeError, DatasetError, ImageReadError, CheckpointError, OutputError, UsageError,
                  AugmentationError, DistributeError, UnknownNameError):
        assert issubclass(error, DensevisionError), error
    assert issubclass(DatasetError, ValueError) and issubclass(CheckpointError, RuntimeError), "old bases kept"
    assert tool_main(lambda argv: 0)([]) == 0
