"""Progress reporting that suits where the output goes.

On a terminal: a tqdm bar. Redirected to a file or a pipe: no carriage-return bar (a log would fill with them),
but one plain line every ``every`` steps and at the end, when the caller asks for it (the trainer prints its own
line per epoch and asks for none). ``TQDM_DISABLE=1`` and ``--no-progress`` hide both.

Every tool and loop makes its bar through :func:`progress_bar`, so the rule lives in one place.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Optional, TextIO

from tqdm.auto import tqdm


def _disabled_by_environment() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class PlainProgress:
    """The part of tqdm's interface the loops use (``update``, ``set_postfix``, ``n``, ``write``, iteration, ``with``),
    writing ``desc: n/total unit (rate unit/s) key=value`` every ``every`` steps and once at the end."""

    def __init__(self, iterable: Optional[Iterable] = None, total: Optional[int] = None, desc: str = "",
                 unit: str = "it", every: int = 0, file: Optional[TextIO] = None):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit, self.every = iterable, total, desc, unit, every
        self.file = file
        self.n = 0
        self.postfix: dict[str, Any] = {}
        self._started = time.perf_counter()
        self._last_line_at = 0
        self._closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.every and self.n - self._last_line_at >= self.every:
            self._line()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc

    def write(self, text: str, file: Optional[TextIO] = None, end: str = "\n") -> None:
        stream = file or sys.stdout
        stream.write(text + end)
        stream.flush()

    def close(self) -> None:
        if not self._closed and self.every and self.n != self._last_line_at:
            self._line()
        self._closed = True

    def _line(self) -> None:
        self._last_line_at = self.n
        rate = self.n / max(time.perf_counter() - self._started, 1e-9)
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        extra = "".join(f" {key}={value}" for key, value in self.postfix.items())
        stream = self.file or sys.stderr
        stream.write(f"{self.desc + ': ' if self.desc else ''}{count} {self.unit} ({rate:.2f} {self.unit}/s){extra}\n")
        stream.flush()


def progress_bar(iterable: Optional[Iterable] = None, *, enabled: bool = True, every: int = 0,
                 file: Optional[TextIO] = None, **tqdm_options):
    """A tqdm bar on a terminal, else a :class:`PlainProgress` (a line every ``every`` steps; none if 0).

    Args:
        iterable: what to iterate over, as ``tqdm(iterable)``; or ``None`` and ``update()`` by hand.
        enabled: ``False`` (``--no-progress``) hides it; so does ``TQDM_DISABLE=1``.
        every: redirected output: one plain line per this many steps (and one at the end); 0: none.
        file: the stream (default ``sys.stderr``, as tqdm).
        tqdm_options: ``total``, ``desc``, ``unit``, ... as tqdm takes them.
    """
    stream = file or sys.stderr
    if not enabled or _disabled_by_environment():
        return tqdm(iterable, disable=True, file=stream, **tqdm_options)
    if _is_terminal(stream):
        return tqdm(iterable, disable=None, file=stream, **tqdm_options)
    return PlainProgress(iterable, total=tqdm_options.get("total"), desc=tqdm_options.get("desc", ""),
                         unit=tqdm_options.get("unit", "it"), every=every, file=stream)
