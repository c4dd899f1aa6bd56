"""The verdict of a test comparison: paired per-row errors, 95% intervals, their words."""

from __future__ import annotations

import numpy as np
import pytest

from aepca.pca import PCA
from aepca.selection import PairedErrors

SCALES = np.array([3.0, 2.0, 1.5, 1.0, 0.5, 0.4, 0.3, 0.2])


def _gaussian(rng, n):
    return rng.standard_normal((n, len(SCALES))) * SCALES


def _errors(model: PCA, reference: PCA, x):
    rebuilt = lambda pca: pca.inverse_transform(pca.transform(x))  # noqa: E731
    return np.mean(np.square(rebuilt(model) - x), axis=1), np.mean(np.square(rebuilt(reference) - x), axis=1)


@pytest.mark.parametrize("test_rows", [30, 400])
def test_the_interval_covers_the_difference_on_new_rows_when_pca_is_optimal(test_rows):
    """Gaussian data, where PCA fitted on the training rows is the best linear code: a rival (PCA
    fitted on few rows, so a little worse) is never called better than it beyond chance, and the
    95% interval from the test rows covers the difference measured on 20,000 new rows."""
    covered, called_below = 0, 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        reference = PCA(3).fit(_gaussian(rng, 2000))
        rival = PCA(3).fit(_gaussian(rng, 40))
        paired = PairedErrors(1, keep_rows=True)
        paired.add(*_errors(rival, reference, _gaussian(rng, test_rows)))
        found = paired.interval(0, seed)
        truth = np.subtract(*_errors(rival, reference, _gaussian(rng, 20_000))).mean()
        covered += found["interval"][0] <= truth <= found["interval"][1]
        called_below += found["verdict"] == "below"
    assert covered >= 90
    assert called_below <= 5


def test_sums_from_parts_give_the_interval_of_all_rows():
    rng = np.random.default_rng(1)
    a, b = rng.random(1000), rng.random((1000, 3))
    whole, parts = PairedErrors(3, keep_rows=False), PairedErrors(3, keep_rows=False)
    whole.add(a, b)
    for start in range(0, 1000, 300):
        parts.add(a[start : start + 300], b[start : start + 300])
    for size in range(3):
        got, expected = parts.interval(size), whole.interval(size)
        assert got["verdict"] == expected["verdict"]
        # The same sums added in another order: float64 round-off of sums of 1,000 values.
        np.testing.assert_allclose(got["interval"], expected["interval"], rtol=1e3 * np.finfo(float).eps)


def test_a_process_without_rows_keeps_an_empty_array_that_joins_the_others():
    """A process whose share holds no test rows (fewer blocks than processes) gives its part all the same."""
    rng = np.random.default_rng(2)
    none, some = PairedErrors(3, keep_rows=True), PairedErrors(3, keep_rows=True)
    some.add(rng.random(5), rng.random((5, 3)))
    assert none.kept_rows().shape == (0, 4)
    joined = np.concatenate([none.kept_rows(), some.kept_rows()])
    np.testing.assert_array_equal(joined, some.kept_rows())


def test_the_ratios_interval_stays_above_zero_and_covers_on_skewed_errors():
    """A network's per-row errors are skewed (a few rows far worse): 200 draws of 60 rows whose
    candidate errors are lognormal (sigma 1.5, true ratio of means 0.3 e^1.125 / e^0.125 = 0.815).
    A symmetric delta-method interval went below 0 in 2.5% of them and covered 84%."""
    rng = np.random.default_rng(0)
    true_ratio = 0.3 * np.exp(1.5**2 / 2) / np.exp(0.5**2 / 2)
    covered = 0
    for _ in range(200):
        errors = PairedErrors(1, keep_rows=False)
        errors.add(0.3 * rng.lognormal(0, 1.5, 60), rng.lognormal(0, 0.5, 60))
        found = errors.interval(0)
        low, high = found["ratio_interval"]
        assert 0 < low < found["ratio"] < high
        covered += low <= true_ratio <= high
    # Binomial spread of 200 draws at the 87% this interval covers (measured over 2,000): about 2.4%.
    assert covered >= 0.8 * 200


def test_a_comparison_on_gaussian_data_does_not_call_the_network_better():
    from aepca.experiments.compare import compare

    x = _gaussian(np.random.default_rng(2), 1500).astype(np.float32)
    comparison = compare(x, code_dim=3, recipe="classic", hidden=(8,), epochs=2, seed=0, scale="none")
    record = comparison.metrics["comparison"]
    assert record["verdict"] in ("equal within noise", "above PCA")
    assert record["interval"][0] <= record["difference"] <= record["interval"][1]
    assert set(record) >= {"difference", "interval", "ratio", "ratio_interval", "verdict", "method"}
