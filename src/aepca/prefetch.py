"""Reading ahead in a background thread, so that reading the next blocks of a
file overlaps computing on the current one (NumPy, pyarrow and XLA release
the GIL while they work)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """Yield ``items`` in order, produced up to ``depth`` ahead by a daemon thread.

    An error raised while producing is raised here, at the item it replaced;
    leaving the loop early (``break``, an exception, garbage collection) stops the thread.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            offer(_Failed(error))
            return
        offer(_DONE)

    thread = threading.Thread(target=produce, name="aepca-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
