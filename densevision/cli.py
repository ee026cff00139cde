"""The front door every command shares: how failures end (``densevision COMMAND`` runs each command's ``run``
through :func:`run_tool`; see :mod:`densevision.commands`).

- An *expected* failure (a :class:`~densevision.errors.DensevisionError`: recipe, dataset, checkpoint, output,
  command-line value; or the disk refusing a write: full, read-only, no permission) prints one
  ``error: <message>`` on stderr and exits 2. The message says what to fix.
- Ctrl-C prints ``interrupted`` and exits 130.
- Anything else is a bug or an environment problem: ``error: unexpected <Type>: <message> (full traceback in
  <log>; rerun with --debug to see it)``, exit 1, the traceback written to a log file under
  ``$DENSEVISION_CACHE/logs`` (default ``~/.cache/densevision/logs``).
- ``--debug`` lets every exception through with its full traceback.

A script outside the ``densevision`` command can use it as a decorator on its ``main(argv=None) -> int``::

    @tool_main
    def main(argv=None) -> int:
        parser = argparse.ArgumentParser(...)
        add_common_arguments(parser)
        ...
"""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import functools
import os
import platform
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Optional, Sequence

from densevision import __version__
from densevision.errors import DensevisionError

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

# OS errors that are the user's environment, not a bug: they are reported as plain errors
_EXPECTED_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def add_common_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options every tool has (``--debug``)."""
    parser.add_argument("--debug", action="store_true",
                        help="let errors through with their full Python traceback (for bug reports)")
    return parser


def wants_debug(argv: Sequence[str]) -> bool:
    """``--debug`` among the arguments (before a ``--``), or ``DENSEVISION_DEBUG=1`` in the environment."""
    arguments = list(argv)
    if "--" in arguments:
        arguments = arguments[: arguments.index("--")]
    return "--debug" in arguments or os.environ.get("DENSEVISION_DEBUG", "") not in ("", "0")


def _files():
    """:mod:`densevision.files`, imported on the first error only."""
    from densevision import files  # it imports numpy: --help took 0.08 s without it, 0.20 s with it (time, 5 runs)

    return files


def expected_message(error: BaseException) -> Optional[str]:
    """The one-line message of an expected error, or ``None`` for an unexpected one."""
    if isinstance(error, DensevisionError):
        return str(error)
    if isinstance(error, OSError) and error.errno in _EXPECTED_ERRNOS:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{_files().describe_os_error(error)}"
    return None


def log_dir() -> Path:
    """Where tracebacks of unexpected errors go: ``$DENSEVISION_CACHE/logs`` or ``~/.cache/densevision/logs``."""
    return _files().cache_root() / "logs"


def write_error_log(tool: str, argv: Sequence[str], error: BaseException) -> Optional[Path]:
    """Write the traceback of ``error`` with the command line and versions; return the file (``None`` if no
    folder could take it)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    lines = [
        f"densevision {tool} failed at {_dt.datetime.now().isoformat(timespec='seconds')}",
        f"command: {' '.join([tool, *map(str, argv)])}",
        f"python {platform.python_version()} on {platform.platform()}",
    ]
    lines.append(f"densevision {__version__}")
    text = "\n".join(lines) + "\n\n" + "".join(traceback.format_exception(type(error), error, error.__traceback__))
    name = f"{tool}-{stamp}-{os.getpid()}.log"
    for folder in (log_dir(), Path(tempfile.gettempdir()) / "densevision-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text)
            return path
        except OSError:
            continue
    return None


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_tool(main_fn: Callable[[list[str]], Optional[int]], argv: Optional[Sequence[str]] = None,
             tool: Optional[str] = None) -> int:
    """Run ``main_fn(argv)`` and turn its failures into exit codes and messages (see the module docstring).

    Args:
        main_fn: the tool's body; returns an exit code (``None`` means 0) or raises.
        argv: the arguments (default ``sys.argv[1:]``).
        tool: the tool's name for messages and log files (default: the script's name).

    Returns:
        0, the code ``main_fn`` returned, 1 (unexpected error), 2 (expected error) or 130 (interrupted).
        ``SystemExit`` (argparse's usage errors, ``--help``) passes through.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    code_file = getattr(getattr(main_fn, "__code__", None), "co_filename", None)
    tool = tool or (Path(code_file).stem if code_file else "") or Path(sys.argv[0]).stem or "densevision"
    debug = wants_debug(argv)
    try:
        code = main_fn(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - this is the one place that catches everything
        if debug:
            raise
        message = expected_message(error)
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
            return EXIT_ERROR
        log = write_error_log(tool, argv, error)
        if log is None:  # nowhere to write: the traceback goes to the terminal after all
            traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
            where = "traceback above"
        else:
            where = f"full traceback in {log}"
        print(f"error: unexpected {type(error).__name__}: {_first_line(error)} ({where}; rerun with --debug to "
              f"see it)", file=sys.stderr)
        return EXIT_UNEXPECTED
    finally:
        sys.stdout.flush()
    return EXIT_OK if code is None else int(code)


def tool_main(fn: Optional[Callable] = None, *, tool: Optional[str] = None):
    """Decorator: ``main(argv=None)`` runs through :func:`run_tool` (``@tool_main`` or ``@tool_main(tool=...)``)."""
    def wrap(body: Callable) -> Callable[..., int]:
        @functools.wraps(body)
        def main(argv: Optional[Sequence[str]] = None) -> int:
            return run_tool(body, argv, tool=tool)

        main.body = body  # the undecorated function, for tests that want the exceptions
        return main

    return wrap(fn) if fn is not None else wrap
