"""Reading ahead in a thread: items in order, errors where they happened, and nothing left behind on any
way out (the thread stopped, what it read ahead freed, the items' own clean-up run), even while a
traceback keeps the caller's frames, as a notebook does after an error."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest

from aepca.prefetch import prefetch


def new_prefetch_threads(before: set) -> list[threading.Thread]:
    """Read-ahead threads started since ``before`` (a set of threads) that are still alive."""
    return [t for t in threading.enumerate() if t.name == "aepca-prefetch" and t not in before]


class Blocks:
    """A generator of ``n`` arrays that remembers each (weakly), raises at block ``fail_at``, and
    records whether its own clean-up (a ``finally``, like closing a file) ran."""

    def __init__(self, n: int, fail_at: int | None = None):
        self.n, self.fail_at = n, fail_at
        self.made: list[weakref.ref] = []
        self.closed = threading.Event()

    def __iter__(self):
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise OSError(f"block {i} could not be read")
                block = np.full((1000, 8), i, np.float32)
                self.made.append(weakref.ref(block))
                yield block
        finally:
            self.closed.set()

    def alive(self) -> list[int]:
        return [i for i, ref in enumerate(self.made) if ref() is not None]


def test_items_come_in_order_and_the_thread_ends_with_them():
    before = set(threading.enumerate())
    blocks = Blocks(6)
    with prefetch(iter(blocks)) as read:
        assert [int(block[0, 0]) for block in read] == list(range(6))
    assert blocks.closed.is_set() and not new_prefetch_threads(before)


def test_without_a_with_block_the_items_still_come_in_order():
    assert list(prefetch(range(5), depth=1)) == list(range(5))


def test_an_error_while_reading_is_raised_at_its_item_and_stops_the_thread():
    before = set(threading.enumerate())
    blocks = Blocks(6, fail_at=3)
    seen = []
    with pytest.raises(OSError, match="block 3 could not be read") as failure:
        with prefetch(iter(blocks)) as read:
            for block in read:
                seen.append(int(block[0, 0]))
    assert seen == [0, 1, 2]
    assert not new_prefetch_threads(before)
    del block
    gc.collect()
    assert failure.value is not None  # the traceback is still held ...
    assert blocks.alive() == []  # ... without the reader's frames keeping blocks


def test_an_error_in_the_loop_stops_the_thread_and_frees_what_it_read_ahead():
    before = set(threading.enumerate())
    blocks = Blocks(50)
    with pytest.raises(KeyboardInterrupt) as failure:
        with prefetch(iter(blocks), depth=2) as read:
            for block in read:
                if block[0, 0] == 2:
                    raise KeyboardInterrupt  # Ctrl-C while computing on block 2
    assert not new_prefetch_threads(before)
    assert blocks.closed.is_set()  # the items' own clean-up ran
    gc.collect()
    # The traceback holds the loop's frame, so block 2 (its variable) lives; nothing read ahead does.
    assert failure.value is not None
    assert len(blocks.made) > 3  # blocks had been read ahead
    assert blocks.alive() == [2]


def test_an_interrupt_before_the_thread_starts_is_what_the_loop_raises(monkeypatch):
    """Ctrl-C (or SIGTERM) landing as the thread is being started: leaving the loop raises the interrupt,
    not a failure to wait for a thread that never started."""
    def interrupted(thread):
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", interrupted)
    with pytest.raises(KeyboardInterrupt), prefetch(Blocks(3)) as blocks:
        next(blocks)


def test_leaving_the_loop_early_stops_the_thread():
    before = set(threading.enumerate())
    blocks = Blocks(50)
    with prefetch(iter(blocks)) as read:
        next(read)
    assert not new_prefetch_threads(before) and blocks.closed.is_set()
    assert list(read) == []  # closed: nothing more comes


# Streamed training stopped in the middle of an epoch ---------------------------------------------
@pytest.fixture
def streamed_rows(tmp_path):
    """A row source read from a .npy file (so training streams it): 2,000 rows x 8 in blocks of 100."""
    from aepca.data.sources import open_source

    path = tmp_path / "rows.npy"
    np.save(path, np.random.default_rng(0).random((2000, 8)).astype(np.float32))
    source = open_source(path, block_rows=100)
    assert not source.in_memory
    return source


@pytest.fixture
def chunks_made(monkeypatch):
    """Weak references to every chunk of rows the epochs assemble (what the read-ahead thread queues)."""
    from aepca.data.order import EpochBatches

    made: list[weakref.ref] = []
    assemble = EpochBatches.chunks

    def chunks(self, chunk_steps):
        for rows, weights, real in assemble(self, chunk_steps):
            made.append(weakref.ref(rows))
            yield rows, weights, real

    monkeypatch.setattr(EpochBatches, "chunks", chunks)
    return made


def test_a_failure_in_the_middle_of_a_streamed_epoch_leaves_no_thread_and_no_rows(streamed_rows, chunks_made, monkeypatch):
    """Ctrl-C arrives while the third chunk of steps trains (the progress bar's update raises): the
    read-ahead thread is gone and the chunks it had assembled ahead are freed, while the traceback
    (as a notebook keeps it) still holds the frames of the training loop."""
    from aepca.models import build_autoencoder
    from aepca.training import TrainConfig, loop, train

    ticks = []

    def update(self, steps):
        ticks.append(steps)
        if len(ticks) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop._EpochBar, "update", update)
    net = build_autoencoder(8, 2, hidden=(4,), seed=0)
    before = set(threading.enumerate())
    with pytest.raises(KeyboardInterrupt) as failure:
        train(net.autoencoder, streamed_rows, config=TrainConfig(epochs=1, batch_size=16), progress=True)
    assert not new_prefetch_threads(before)
    gc.collect()
    assert failure.value is not None
    assert len(chunks_made) > 3  # chunks had been assembled ahead of the one training
    alive = [i for i, ref in enumerate(chunks_made) if ref() is not None]
    assert set(alive) <= {2}, f"chunks {alive} outlived the epoch"  # the training loop's own, at most


def test_a_read_failing_in_the_middle_of_a_streamed_epoch_leaves_no_thread_and_no_rows(streamed_rows, chunks_made):
    from aepca.models import build_autoencoder
    from aepca.training import TrainConfig, train

    reads = []

    def flaky(block):
        reads.append(len(block))
        if len(reads) == 9:
            raise OSError("the disk went away")
        return block

    net = build_autoencoder(8, 2, hidden=(4,), seed=0)
    before = set(threading.enumerate())
    with pytest.raises(OSError, match="the disk went away") as failure:
        train(net.autoencoder, streamed_rows.map(flaky), config=TrainConfig(epochs=1, batch_size=16))
    assert not new_prefetch_threads(before)
    gc.collect()
    assert failure.value is not None and len(chunks_made) > 1
    # Every chunk was handed over before the failing read's turn came; the training loop's frame
    # holds the last one, at most.
    alive = [i for i, ref in enumerate(chunks_made) if ref() is not None]
    assert set(alive) <= {len(chunks_made) - 1}, f"chunks {alive} outlived the epoch"
