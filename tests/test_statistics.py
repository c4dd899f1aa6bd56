import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from aepca.data.sources import open_source
from aepca.pca import PCA, ScatterAccumulator
from aepca.preprocessing import ColumnSummary, Scaler
from aepca.statistics import scan
from conftest import assert_within, float_tolerance


@pytest.fixture
def rows():
    rng = np.random.default_rng(3)
    # Mixed units with large offsets, which expose a naive sum-of-squares update.
    return (rng.standard_normal((1003, 4)) * [1.0, 10.0, 1e3, 0.01] + [0.0, -5.0, 1e4, 3.0]).astype(np.float32)


def test_scan_of_a_source_equals_the_summary_of_its_rows(rows, monkeypatch):
    # A small sample, so its rows are spread over several blocks.
    monkeypatch.setattr("aepca.statistics.UNIT_SAMPLE_ROWS", 40)
    statistics = scan(open_source(rows, block_rows=97))
    whole = ColumnSummary.of(rows)
    assert statistics.summary.n == whole.n == statistics.accumulator.n
    # Each column's sums over sqrt(n) float32 rows round at its largest magnitude (the offset).
    tolerance = float_tolerance(np.float32, np.abs(rows).max(axis=0), np.sqrt(len(rows)))
    for field in ("mean", "std", "low", "high"):
        assert_within(getattr(statistics.summary, field), getattr(whole, field), tolerance, err_msg=field)
    np.testing.assert_array_equal(statistics.summary.sample, rows[::25])


def test_scan_of_a_view_uses_its_rows_only(rows):
    source = open_source(rows, block_rows=100).kept(0.3, seed=1, salt="test")
    kept = source.to_array()
    statistics = scan(source)
    assert statistics.accumulator.n == len(kept) < len(rows)
    assert_within(statistics.summary.mean, kept.mean(axis=0, dtype=np.float64),
                  float_tolerance(np.float32, np.abs(kept).max(axis=0), np.sqrt(len(kept))))


def test_statistics_in_the_error_space_equal_those_of_the_scaled_rows(rows):
    statistics = scan(open_source(rows, block_rows=128))
    scaler = Scaler("standard").fit(statistics.summary)
    space = statistics.in_scaled_space(scaler.offset_, scaler.scale_)
    scaled = scaler.transform(rows).astype(np.float64)
    direct = ScatterAccumulator(rows.shape[1])
    direct.update(scaled)
    # Against rows scaled in float32: each entry's two unit-variance columns are off by their scale's
    # and their division's float32 rounding (the offset's only shifts them, which centring removes).
    tolerance = float_tolerance(np.float32, 1.0, 2)
    np.testing.assert_allclose(space.accumulator.covariance(), direct.covariance(), rtol=0, atol=tolerance)
    # An eigenvalue moves by at most the change's spectral norm, at most d times its largest entry (Weyl).
    pca = PCA.from_accumulator(space.accumulator, 2)
    np.testing.assert_allclose(pca.explained_variance_, PCA(2).fit(scaled).explained_variance_, rtol=0,
                               atol=rows.shape[1] * tolerance)


class TwoProcesses:
    """Two threads standing for two processes: ``all_rows`` gathers the values of both, in process
    order, refusing what a real gather refuses (values of other dtypes or widths)."""

    def __init__(self):
        self.barrier, self.values, self.local = threading.Barrier(2), [None, None], threading.local()
        self.widest = 0  # the most values in a row of any gather

    def all_rows(self, values):
        values = np.asarray(values)
        self.values[self.local.index] = values
        self.barrier.wait()
        first, second = self.values
        gathered = np.concatenate([first, second])
        self.widest = max(self.widest, gathered[0].size if len(gathered) else 0)
        self.barrier.wait()
        assert first.dtype == second.dtype and first.shape[1:] == second.shape[1:], (first.dtype, second.dtype)
        return gathered

    def run(self, task):
        """``task()`` in both processes; their results, in process order."""

        def in_process(index):
            self.local.index = index
            try:
                return task()
            except BaseException:
                self.barrier.abort()  # the other process stops at its next gather instead of waiting
                raise

        with ThreadPoolExecutor(2) as pool:
            return [future.result() for future in [pool.submit(in_process, i) for i in range(2)]]


@pytest.mark.parametrize(("shape", "block_rows"), [
    ((1003, 4), 97),  # 11 blocks of more rows than columns: process 0 takes 0, 2, ..., 10; process 1 the others
    ((30, 50), 7),  # a wide table: every block, and all rows, fewer than the columns
    ((80, 50), 7),  # wide blocks whose rows, together, outnumber the columns
])
def test_a_scan_shared_by_two_processes_gives_the_statistics_of_one(shape, block_rows, monkeypatch):
    import aepca.distributed as distributed

    rng = np.random.default_rng(3)
    rows = (rng.standard_normal(shape) * rng.uniform(0.01, 1e3, shape[1]) + rng.uniform(-1e4, 1e4, shape[1])).astype(np.float32)
    source = open_source(rows, block_rows=block_rows)
    alone = scan(source)
    processes = TwoProcesses()
    monkeypatch.setattr(distributed, "process_count", lambda: 2)
    monkeypatch.setattr(distributed, "process_index", lambda: processes.local.index)
    monkeypatch.setattr(distributed, "all_rows", processes.all_rows)
    results = processes.run(lambda: scan(source))
    if shape[0] > block_rows < shape[1]:
        # Wide blocks travel as their rows, not as d x d scatters.
        assert processes.widest == shape[1]
    for shared in results:
        # The same blocks merged in the same order: the same values to float64 round-off of the
        # scatter's largest entries.
        scale = np.abs(alone.accumulator.scatter).max()
        assert shared.accumulator.n == alone.accumulator.n
        assert_within(shared.accumulator.mean, alone.accumulator.mean,
                      float_tolerance(np.float64, np.abs(rows).max(axis=0), 1))
        assert_within(shared.accumulator.scatter, alone.accumulator.scatter, float_tolerance(np.float64, scale, 1))
        np.testing.assert_array_equal(shared.summary.sample, alone.summary.sample)
