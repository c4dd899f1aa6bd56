"""Which rows are held out and in what order an epoch reads them.

Both are pure functions of the seed, the row numbers and the block layout, computed
from metadata and hashes of row numbers alone: every process, and every form the same
rows arrive in, gets the same split and the same batches. A split holds out exactly
``ceil(fraction * n)`` rows, those of the smallest seeded hashes.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from aepca.validation import invalid_value

# Rows hashed at a time when a view counts the rows it keeps in each block.
_HASH_CHUNK = 1 << 20
# splitmix64's increment and multipliers.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def row_hash(seed: int, salt: str, rows: np.ndarray) -> np.ndarray:
    """float64 in [0, 1) for each global row index in ``rows``: splitmix64 keyed by ``seed`` and ``salt``.

    Pure uint64 arithmetic, so the same on every platform and process.
    """
    key = int.from_bytes(hashlib.blake2b(f"{seed}:{salt}".encode(), digest_size=8).digest(), "little")
    state = np.asarray(rows, dtype=np.int64).astype(np.uint64)
    state += np.uint64(1)
    state *= _GOLDEN
    state += np.uint64(key)
    state ^= state >> np.uint64(30)
    state *= _MIX_1
    state ^= state >> np.uint64(27)
    state *= _MIX_2
    state ^= state >> np.uint64(31)
    return (state >> np.uint64(11)).astype(np.float64) * 2.0**-53


# The salts of the two splits: test rows, then validation rows among the rest.
TEST_SALT = "test"
VALIDATION_SALT = "validation"


def held_count(fraction: float, n_rows: int) -> int:
    """Rows a split of ``fraction`` holds out of ``n_rows``: ``ceil(fraction * n_rows)``, as scikit-learn's
    ``train_test_split`` (a product within rounding of a whole number counts as that number)."""
    return math.ceil(round(fraction * n_rows, 6))


# A rank's hash is looked for within this many of its standard deviations of where it is expected
# (ranks are uniform order statistics); one outside (odds below 1e-20) is looked for again, wider.
_WINDOW_SIGMAS = 10.0


def hash_edges(hashes: Callable[[], Iterable[np.ndarray]], n_rows: int, ranks: list[int]) -> list[float]:
    """For each rank ``r`` of ``ranks`` (0 to ``n_rows``), the hash below which exactly ``r`` of the rows'
    hashes lie: the ``r``-th smallest (from 0), 1.0 for ``r = n_rows``. ``hashes()`` gives the rows'
    hashes a chunk at a time; only those near each rank's expected value are kept (about 20 sqrt(n) of
    them), so the memory is bounded whatever the rows."""
    edges = {r: 1.0 for r in ranks if r >= n_rows}
    wanted, sigmas = sorted({r for r in ranks if r < n_rows}), _WINDOW_SIGMAS
    while wanted:
        centre = np.array(wanted) / n_rows
        half = sigmas * (np.sqrt(centre * (1 - centre) / n_rows) + 1 / n_rows)
        low, high = centre - half, centre + half
        below = np.zeros(len(wanted), np.int64)
        near: list[list[np.ndarray]] = [[] for _ in wanted]
        for chunk in hashes():
            for j in range(len(wanted)):
                below[j] += np.count_nonzero(chunk < low[j])
                near[j].append(chunk[(chunk >= low[j]) & (chunk < high[j])])
        missed = []
        for j, rank in enumerate(wanted):
            values, k = np.sort(np.concatenate(near[j])), rank - below[j]
            if 0 <= k < len(values):
                edges[rank] = float(values[k])
            else:
                missed.append(rank)
        wanted, sigmas = missed, sigmas * 16
    return [edges[r] for r in ranks]


def held_out_mask(n_rows: int, fraction: float, seed: int, salt: str) -> np.ndarray:
    """Whether each of rows ``0 .. n_rows - 1`` is held out: the ``held_count(fraction, n_rows)`` rows of
    the smallest ``row_hash(seed, salt, row)``. The one split rule of every input form (``RowSource.split``)."""
    fraction, seed, salt = _check_filter(fraction, seed, salt)
    hashes = row_hash(seed, salt, np.arange(n_rows, dtype=np.int64))
    edge, = hash_edges(lambda: [hashes], n_rows, [held_count(fraction, n_rows)])
    return hashes < edge


@dataclass(frozen=True)
class _Filter:
    """Rows whose hash lies in ``[start, start + fraction)`` (``held_out``) or not (kept)."""

    fraction: float
    seed: int
    salt: str
    held_out: bool
    start: float = 0.0

    def admits(self, rows: np.ndarray) -> np.ndarray:
        hashes = row_hash(self.seed, self.salt, rows)
        inside = hashes < self.start + self.fraction
        if self.start:
            inside &= hashes >= self.start
        return inside == self.held_out


def _check_filter(fraction, seed, salt) -> tuple[float, int, str]:
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0.0 < fraction < 1.0:
        raise invalid_value("fraction", "a number strictly between 0 and 1", f"fraction={fraction!r}", "Use e.g. 0.2.")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise invalid_value("seed", "an integer", f"seed={seed!r}", "Use e.g. 0.")
    if not isinstance(salt, str):
        raise invalid_value("salt", "a string naming the split", f"salt={salt!r}", "Use e.g. 'test'.")
    return float(fraction), int(seed), salt


def _admitted_sizes(bounds: np.ndarray, admits) -> np.ndarray:
    """Rows of each block ``[bounds[i], bounds[i+1])`` that ``admits`` keeps, hashing a chunk of rows at a time."""
    before = np.zeros(len(bounds), dtype=np.int64)  # rows admitted before each bound
    counted = 0
    total = int(bounds[-1])
    for low in range(0, total, _HASH_CHUNK):
        high = min(low + _HASH_CHUNK, total)
        running = np.concatenate([[0], np.cumsum(admits(np.arange(low, high, dtype=np.int64)))])
        inside = (bounds >= low) & (bounds <= high)
        before[inside] = counted + running[bounds[inside] - low]
        counted += int(running[-1])
    return np.diff(before)


# --- the order of an epoch ----------------------------------------------------------------------------


def epoch_blocks(seed: int, epoch: int, n_blocks: int) -> np.ndarray:
    """The blocks of an epoch in their seeded order, the same on every process."""
    return np.random.default_rng([seed, epoch, 1]).permutation(n_blocks)


def lane_blocks(order: np.ndarray, lane: int, lanes: int) -> np.ndarray:
    """The blocks of ``order`` that lane ``lane`` of ``lanes`` reads, in order."""
    return order[lane::lanes]


def _positive_int(value, name: str, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise invalid_value(name, "a positive integer", f"{name}={value!r}", f"Use e.g. {example}.")
    return int(value)


def _lane_batch(lanes, batch_size) -> int:
    lanes = _positive_int(lanes, "lanes", 1)
    batch_size = _positive_int(batch_size, "batch_size", 256 * lanes)
    if batch_size % lanes:
        raise invalid_value("batch_size", f"a multiple of lanes={lanes}", f"batch_size={batch_size}",
                            f"Use e.g. {max(1, batch_size // lanes) * lanes}.")
    return batch_size // lanes


def epoch_steps(source: RowSource, *, seed: int, epoch: int, lanes: int, batch_size: int) -> int:
    """Steps of an epoch: the most lane batches (``batch_size // lanes`` rows) any lane's blocks fill."""
    return _steps(source.block_sizes, epoch_blocks(seed, epoch, source.n_blocks), lanes, _lane_batch(lanes, batch_size))


def _steps(block_sizes: np.ndarray, order: np.ndarray, lanes: int, lane_batch: int) -> int:
    rows = [int(block_sizes[lane_blocks(order, lane, lanes)].sum()) for lane in range(lanes)]
    return max(-(-count // lane_batch) for count in rows)


class EpochBatches:
    """The batches of one epoch of ``source`` for the lanes ``lanes_here`` (a range of lane numbers).

    Lane ``k`` reads its blocks (:func:`lane_blocks` of :func:`epoch_blocks`) ``buffer_blocks`` at a time;
    each such window's rows are shuffled by ``default_rng([seed, epoch, k, window])`` and the lane's rows,
    window after window, are cut into ``batch_size // lanes`` rows. A step yields ``(rows, weights)``: the
    owned lanes' pieces in lane order, each padded to the lane batch with zero rows of weight 0 (weights 1
    elsewhere), so a step's global batch is the same whichever process owns which lanes.
    """

    def __init__(self, source: RowSource, *, seed: int, epoch: int, lanes: int, batch_size: int,
                 lanes_here=None, buffer_blocks: int = 4):
        self.lane_batch = _lane_batch(lanes, batch_size)
        self._order = epoch_blocks(seed, epoch, source.n_blocks)
        self.steps = _steps(source.block_sizes, self._order, lanes, self.lane_batch)
        self._lanes_here = list(range(lanes) if lanes_here is None else lanes_here)
        if not self._lanes_here or not all(0 <= lane < lanes for lane in self._lanes_here):
            raise invalid_value("lanes_here", f"lane numbers in range(0, {lanes})", f"lanes_here={lanes_here!r}",
                                f"Pass e.g. range(0, {lanes}).")
        self._buffer_blocks = _positive_int(buffer_blocks, "buffer_blocks", 4)
        self._source, self._seed, self._epoch, self._lanes = source, seed, epoch, lanes

    def __len__(self) -> int:
        return self.steps

    def _read_window(self, blocks: np.ndarray) -> np.ndarray:
        sizes = self._source.block_sizes[blocks]
        rows = np.empty((int(sizes.sum()), self._source.n_features), dtype=np.float32)
        for block, start, stop in zip(blocks, np.cumsum(sizes) - sizes, np.cumsum(sizes)):
            rows[start:stop] = self._source.read(block)
        return rows

    def _lane_windows(self, lane: int):
        """Lane ``lane``'s windows: each one's blocks and the seeded permutation of their rows."""
        blocks = lane_blocks(self._order, lane, self._lanes)
        for window, start in enumerate(range(0, len(blocks), self._buffer_blocks)):
            chosen = blocks[start : start + self._buffer_blocks]
            n_rows = int(self._source.block_sizes[chosen].sum())
            yield chosen, np.random.default_rng([self._seed, self._epoch, lane, window]).permutation(n_rows)

    def _lane_pieces(self, lane: int):
        """Lane ``lane``'s rows in ``lane_batch`` pieces (the last may be shorter), each a list of
        ``(rows, indices)`` parts: the rows to gather, without copying them here."""
        size = self.lane_batch
        parts, have = [], 0
        for blocks, order in self._lane_windows(lane):
            rows = self._read_window(blocks)
            at = 0
            while at < len(order):
                take = min(size - have, len(order) - at)
                parts.append((rows, order[at : at + take]))
                have, at = have + take, at + take
                if have == size:
                    yield parts
                    parts, have = [], 0
            # A piece left unfinished keeps its own rows, not the whole window, while the next one is read.
            parts = [(rows[indices], np.arange(len(indices))) for rows, indices in parts]
            del rows
        if parts:
            yield parts

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's batches as positions in the source's rows laid out block after block (as
        ``to_array`` lays them): int64 ``(steps, batch)`` and float32 weights, 0 for padding. The
        same batches :meth:`chunks` assembles by reading, for rows held in memory."""
        size = self.lane_batch
        offsets = np.concatenate([[0], np.cumsum(self._source.block_sizes)]).astype(np.int64)
        positions = np.zeros((self.steps, len(self._lanes_here) * size), np.int64)
        weights = np.zeros(positions.shape, np.float32)
        for k, lane in enumerate(self._lanes_here):
            order = [np.concatenate([np.arange(offsets[b], offsets[b + 1]) for b in blocks])[permutation]
                     for blocks, permutation in self._lane_windows(lane)]
            order = np.concatenate(order) if order else np.zeros(0, np.int64)
            # The lane's columns, filled step after step.
            positions[:, k * size : (k + 1) * size].flat[: len(order)] = order
            weights[:, k * size : (k + 1) * size].flat[: len(order)] = 1.0
        return positions, weights

    def chunks(self, chunk_steps: int):
        """The epoch's steps ``chunk_steps`` at a time: ``(rows, weights, real_steps)`` with rows of shape
        ``(chunk_steps, batch, n_features)``; the last chunk is padded with steps of zero weights."""
        lanes = [self._lane_pieces(lane) for lane in self._lanes_here]
        size = self.lane_batch
        for first in range(0, self.steps, chunk_steps):
            real = min(chunk_steps, self.steps - first)
            rows = np.zeros((chunk_steps, len(lanes) * size, self._source.n_features), dtype=np.float32)
            weights = np.zeros((chunk_steps, len(lanes) * size), dtype=np.float32)
            for step in range(real):
                for position, pieces in enumerate(lanes):
                    _gather(next(pieces, ()), rows[step], weights[step], position * size)
            yield rows, weights, real

    def __iter__(self):
        for rows, weights, _ in self.chunks(1):
            yield rows[0], weights[0]


def _gather(parts, rows: np.ndarray, weights: np.ndarray, at: int) -> None:
    """Copy a lane's piece (``(window rows, indices)`` parts) into ``rows`` from ``at``, weights 1.
    A function of its own, so that no reference to a window outlives the copy."""
    for window, indices in parts:
        np.take(window, indices, axis=0, out=rows[at : at + len(indices)])
        weights[at : at + len(indices)] = 1.0
        at += len(indices)
