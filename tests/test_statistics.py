import numpy as np
import pytest

from aepca.data.sources import open_source
from aepca.pca import PCA, ScatterAccumulator
from aepca.preprocessing import ColumnSummary, Scaler
from aepca.statistics import scan


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
    for field in ("mean", "std", "low", "high"):
        np.testing.assert_allclose(getattr(statistics.summary, field), getattr(whole, field), rtol=1e-12, err_msg=field)
    np.testing.assert_array_equal(statistics.summary.sample, rows[::25])


def test_scan_of_a_view_uses_its_rows_only(rows):
    source = open_source(rows, block_rows=100).kept(0.3, seed=1, salt="test")
    kept = source.to_array()
    statistics = scan(source)
    assert statistics.accumulator.n == len(kept) < len(rows)
    np.testing.assert_allclose(statistics.summary.mean, kept.mean(axis=0, dtype=np.float64), rtol=1e-12)


def test_statistics_in_the_error_space_equal_those_of_the_scaled_rows(rows):
    statistics = scan(open_source(rows, block_rows=128))
    scaler = Scaler("standard").fit(statistics.summary)
    space = statistics.in_scaled_space(scaler.offset_, scaler.scale_)
    scaled = scaler.transform(rows).astype(np.float64)
    direct = ScatterAccumulator(rows.shape[1])
    direct.update(scaled)
    # Against rows scaled in float32: equal to float32 round-off of unit-variance columns.
    np.testing.assert_allclose(space.accumulator.covariance(), direct.covariance(), atol=1e-5)
    pca = PCA.from_accumulator(space.accumulator, 2)
    np.testing.assert_allclose(pca.explained_variance_, PCA(2).fit(scaled).explained_variance_, rtol=1e-5)
