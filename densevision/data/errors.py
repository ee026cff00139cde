"""Errors raised by data sources and augmentation, and the helper that keeps their messages short."""

from __future__ import annotations

import os
from typing import Iterable

from densevision.errors import DensevisionError


class DatasetError(DensevisionError, ValueError):
    """A dataset that cannot be used as it is: the message names the files, what is wrong and what was expected."""


class ImageReadError(DatasetError):
    """An image (or mask) file that cannot be decoded completely.

    Attributes:
        path: the file.
        reason: why, in a few words (``"empty file (0 bytes)"``, ``"truncated: ..."``, ``"not an image ..."``).
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # picklable with its two arguments (errors cross process and tf.data boundaries)
        return type(self), (self.path, self.reason)


class AugmentationError(DensevisionError, ValueError):
    """An augmentation list from a recipe that cannot be built: names the transform, the parameter and the problem."""


def not_a_folder(path: str | os.PathLike, what: str = "dataset root") -> str:
    """Why ``path`` cannot be opened as a folder, for a message: ``"dataset root X is a file, not a folder (a
    folder was expected)"`` or ``"dataset root X does not exist"``."""
    if os.path.isfile(path):
        return f"{what} {path} is a file, not a folder (data.root names the dataset's folder)"
    if os.path.lexists(path) and not os.path.exists(path):
        return f"{what} {path} is a broken symbolic link"
    return f"{what} {path} does not exist"


def summarize_items(items: Iterable[object], what: str, show: int = 5, noun: str = "file") -> str:
    """``"3 files with X: a, b, c"`` or ``"12 files with X: a, b, c, d, e (and 7 more)"``.

    Args:
        items: the offending files (or values); each is shown with ``str``.
        what: what is wrong with them, e.g. ``"without a mask"``.
        show: how many to list before summarising the rest as a count.
        noun: what the items are (``"record"`` gives ``"3 records with X: ..."``).
    """
    items = [str(item) for item in items]
    count = len(items)
    noun = noun if count == 1 else noun + "s"
    listed = ", ".join(items[:show])
    more = f" (and {count - show} more)" if count > show else ""
    return f"{count} {noun} {what}: {listed}{more}"
