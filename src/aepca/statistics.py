"""One pass over streamed rows gives everything fitted before training: the
error space's scaling, the PCA, and the network's input scaling.

The raw rows' scatter (count, mean, centred scatter) transforms exactly under
the per-column affine scaling, so neither the error space nor the PCA fitted
in it needs a second pass. Each process reads its share of the blocks; the
statistics are then merged exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aepca import distributed
from aepca.data.sources import RowSource
from aepca.pca import ScatterAccumulator
from aepca.prefetch import prefetch
from aepca.preprocessing import UNIT_SAMPLE_ROWS, ColumnSummary


# The most bytes of validation rows a fit keeps in memory (docs/internals.md).
MAX_HELD_BYTES = 256 * 2**20


@dataclass(frozen=True)
class RowStatistics:
    """The scatter and the column summary of the same rows; ``held``: the rows a scan was asked
    to keep (None when none were asked for)."""

    accumulator: ScatterAccumulator
    summary: ColumnSummary
    held: np.ndarray | None = None

    def in_scaled_space(self, offset, scale) -> RowStatistics:
        """The statistics of ``(rows - offset) / scale`` (without the held rows)."""
        return RowStatistics(self.accumulator.in_scaled_space(offset, scale), self.summary.in_scaled_space(offset, scale))


def scan(source: RowSource, *, hold=None) -> RowStatistics:
    """The statistics of every row of ``source``, read once (shared out over processes).

    Each block's scatter is accumulated on its own and merged into the whole in block order, in
    every process, so the statistics (and all that is fitted on them) are the same bits whatever
    the number of processes: a sum's rounding depends on its order.

    ``hold`` (a function of global row indices returning a mask) names rows to keep in memory as
    well, in the order of their indices, e.g. the validation rows: then no later pass needs to
    find them in every block.
    """
    accumulator = ScatterAccumulator(source.n_features)
    low = np.full(source.n_features, np.inf)
    high = np.full(source.n_features, -np.inf)
    # Evenly spaced rows (by global index, so whichever process reads them) judge the columns' units.
    every = max(1, source.n_rows // UNIT_SAMPLE_ROWS)
    sample, sample_index = [], []
    held, held_index = [], []
    blocks = distributed.share(source.n_blocks)
    rounds = -(-source.n_blocks // distributed.process_count())
    with prefetch(source.iter_blocks(blocks)) as read:
        read = iter(read)
        for turn in range(rounds):
            # Every process takes part in every round's merge, with an empty block when it has none left.
            i, rows = (blocks[turn], next(read)) if turn < len(blocks) else (None, np.zeros((0, source.n_features)))
            block = ScatterAccumulator(source.n_features)
            block.update(rows)
            # Every process's block, in process order: block order (process p takes blocks p, p + P, ...).
            for other in [block] if distributed.process_count() == 1 else _every_process(block):
                accumulator.merge(other)
            if not len(rows):
                continue
            np.minimum(low, rows.min(axis=0), out=low)
            np.maximum(high, rows.max(axis=0), out=high)
            index = source.row_indices(i)
            chosen = index % every == 0
            sample.append(rows[chosen])
            sample_index.append(index[chosen])
            if hold is not None:
                kept = hold(index)
                held.append(rows[kept])
                held_index.append(index[kept])
    sample, sample_index = _joined(sample, sample_index, source.n_features)
    held, held_index = _joined(held, held_index, source.n_features)
    if distributed.process_count() > 1:
        low = distributed.all_rows(low[None, :]).min(axis=0)
        high = distributed.all_rows(high[None, :]).max(axis=0)
        sample, sample_index = distributed.all_rows(sample), distributed.all_rows(sample_index)
        if hold is not None:
            held, held_index = distributed.all_rows(held), distributed.all_rows(held_index)
    sample = sample[np.argsort(sample_index, kind="stable")]
    held = held[np.argsort(held_index, kind="stable")]
    summary = ColumnSummary(
        n=accumulator.n, mean=accumulator.mean.copy(), std=np.sqrt(accumulator.variance()),
        low=low.astype(np.float64), high=high.astype(np.float64), sample=sample,
    )
    return RowStatistics(accumulator, summary, held if hold is not None else None)


def _every_process(block: ScatterAccumulator) -> list[ScatterAccumulator]:
    """Every process's ``block``, in process order. One of no more rows than columns travels as its rows
    (a row source's, float32; its flat statistics would hold a d x d scatter: 1.6 GB for 20,000 columns)
    and is made again from them as it was made; a larger one as its flat statistics (``to_array``)."""
    kept = block.kept_rows
    counts = distributed.all_rows(np.array([-1 if kept is None else len(kept)]))
    n_features = block.n_features
    travelling = np.zeros((0, n_features)) if kept is None else kept
    rows = distributed.all_rows(travelling.astype(np.float32, copy=False)) if any(counts > 0) else None
    arrays = iter(distributed.all_rows(block.to_array()[None, :] if kept is None else
                                       np.zeros((0, ScatterAccumulator.array_size(n_features))))
                  if any(counts < 0) else ())
    blocks, start = [], 0
    for count in counts:
        if count < 0:
            blocks.append(ScatterAccumulator.from_array(next(arrays)))
            continue
        blocks.append(ScatterAccumulator(n_features))
        if count:
            blocks[-1].update(rows[start : start + count])
        start += count
    return blocks


def _joined(rows: list, index: list, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    if not rows:
        return np.zeros((0, n_features), np.float32), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(index)
