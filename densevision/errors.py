"""The root of densevision's *expected* errors: problems with what a user gave (a recipe, a dataset, a checkpoint,
an output path, a command-line value), whose message alone tells what to fix.

Tools turn these into one ``error: <message>`` line and exit code 2 (see :mod:`densevision.cli`); anything else
is a bug or an environment failure and is reported with a log file holding the traceback.
"""

from __future__ import annotations


class DensevisionError(Exception):
    """Base of every expected error; the message names the file, key or value and what was expected."""


class UsageError(DensevisionError, ValueError):
    """A command-line value a tool cannot use (``--top-k 0``): names the option and what it accepts."""


class OutputError(DensevisionError, ValueError):
    """An output that cannot or must not be written: a folder that is a file, a read-only place, an existing
    file without ``--overwrite``, two inputs that would write the same file."""


class CheckpointError(DensevisionError, RuntimeError):
    """A checkpoint or run folder that cannot be written or read; the message names the file.

    Defined here (and re-exported by :mod:`densevision.engine.checkpoints`) so the checkpoint loader and the check
    that a checkpoint fits its recipe (:mod:`densevision.engine.compat`) both raise it without importing each other.
    """
