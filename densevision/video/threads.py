"""Run one stage of a frame loop on a background thread, a bounded number of items ahead of its consumer.

Chaining ``prefetch(stage(prefetch(source)))`` overlaps decoding, detection and writing while keeping order: every
stage is one thread consuming one iterator. OpenCV and TensorFlow release the GIL in their heavy calls, so the
threads really run together. An exception in a stage is re-raised in the consumer; closing the consumer (or an
error/Ctrl-C there) stops every stage upstream and closes their iterators (releasing a ``VideoCapture``).
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_END = object()
_POLL_SECONDS = 0.1
_JOIN_SECONDS = 5.0  # a stage blocked inside a camera read cannot be interrupted: do not wait for it forever


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


def _put(items: queue.Queue, item, stop: threading.Event) -> bool:
    """Put ``item``, waiting while the queue is full; False if the consumer went away meanwhile."""
    while not stop.is_set():
        try:
            items.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], max_queued: int = 8, name: str = "prefetch") -> Iterator[T]:
    """Iterate ``items`` on a daemon thread named ``name``, at most ``max_queued`` items ahead; yields them in order.

    The iterator ``items`` is consumed (and, if it has ``close``, closed) only by that thread.
    """
    if max_queued < 1:
        raise ValueError(f"max_queued must be at least 1, got {max_queued}")
    ready: queue.Queue = queue.Queue(maxsize=max_queued)
    stop = threading.Event()

    def work():
        iterator = iter(items)
        try:
            for item in iterator:
                if not _put(ready, item, stop):
                    return
            _put(ready, _END, stop)
        except BaseException as error:  # handed to the consumer, which re-raises it with its traceback
            _put(ready, _Raised(error), stop)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join(timeout=_JOIN_SECONDS)


def stage(function, upstream: Iterator) -> Iterator:
    """``function(item)`` for every item of ``upstream``, closing ``upstream`` when this stage ends or is closed."""
    try:
        for item in upstream:
            yield function(item)
    finally:
        close = getattr(upstream, "close", None)
        if close is not None:
            close()
