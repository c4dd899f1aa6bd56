"""Reading ahead in a background thread, so that reading the next blocks of a
file overlaps computing on the current one (NumPy, pyarrow and XLA release
the GIL while they work).

Use it as a context manager, so that the thread and the items it read ahead
are gone on every way out of the loop (its end, ``break``, an error, Ctrl-C),
even while a traceback keeps the caller's frame alive::

    with prefetch(source.iter_blocks()) as blocks:
        for block in blocks:
            ...
"""

from __future__ import annotations

import contextlib
import queue
import threading
import traceback
import weakref
from collections.abc import Iterable

_DONE = object()
# How often a producer blocked on a full queue checks whether it should stop.
_POLL_S = 0.1


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable, depth: int = 2) -> Prefetch:
    """``items`` in order, produced up to ``depth`` ahead by a daemon thread (see :class:`Prefetch`)."""
    return Prefetch(items, depth)


class Prefetch:
    """An iterator over ``items`` produced ahead in a thread named ``aepca-prefetch``; a context manager
    whose exit (like :meth:`close`) stops and joins the thread and drops what it read ahead.

    The thread starts at the first item. An error raised while producing is raised here, at the item
    it replaced, once the thread is stopped. Without ``with``, the thread stops when the iterator is
    exhausted, fails, or is garbage collected.
    """

    def __init__(self, items: Iterable, depth: int = 2):
        self._items = iter(items)
        self._ready: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Collected without close(): the producer still stops (it holds no reference to this object).
        weakref.finalize(self, self._stop.set)

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self):
        if self._thread is None:
            if self._items is None:  # closed
                raise StopIteration
            self._thread = threading.Thread(
                target=_produce, args=(self._items, self._ready, self._stop), name="aepca-prefetch", daemon=True
            )
            self._items = None  # the thread's now: it closes them when it ends
            self._thread.start()
        if not self._thread.is_alive() and self._ready.empty():
            raise StopIteration  # closed, or finished and drained
        item = self._ready.get()
        if item is _DONE:
            self.close()
            raise StopIteration
        if isinstance(item, _Failed):
            self.close()
            error, item = item.error, None
            # The producer's frames (e.g. a generator's read-ahead window) would otherwise live as long
            # as the traceback; its lines are kept, their local variables are not.
            traceback.clear_frames(error.__traceback__)
            raise error
        return item

    def close(self) -> None:
        """Stop the thread, wait for it (at most the read it is in), and drop every item not yet taken."""
        self._stop.set()
        if self._thread is not None:
            self._drain()  # a producer waiting on a full queue sees the stop at once
            # Not when an interrupt came before the thread started (it then sees the stop first, if it runs).
            if self._thread.is_alive():
                self._thread.join()
        self._drain()
        self._items = None

    def _drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self._ready.get_nowait()


def _produce(items, ready: queue.Queue, stop: threading.Event) -> None:
    """Put ``items`` into ``ready`` until they end, fail, or ``stop`` is set; then close them."""

    def offer(item) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                ready.put(item, timeout=_POLL_S)
                return True
        return False

    try:
        for item in items:
            if not offer(item):
                return
            del item  # not held while the next one is produced
        offer(_DONE)
    except BaseException as error:  # noqa: BLE001 - handed to the consumer
        offer(_Failed(error))
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # a generator's own clean-up (open files) runs now, in this thread
