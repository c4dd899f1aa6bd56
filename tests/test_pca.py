"""Exact streaming PCA: pinned MNIST errors, equality with scikit-learn, streaming, chunked fits, row sources,
mergeable statistics, sampled fits, error curves."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA as SkPCA
from threadpoolctl import threadpool_limits

from aepca.pca import PCA, ScatterAccumulator, equivalent_components
from conftest import assert_within, float_tolerance, mse_tolerance, pca_rounding


def _sig4(value: float) -> float:
    return float(f"{value:.4g}")


def _well_conditioned(n_samples=500, n_features=20, seed=0, offset=0.0) -> np.ndarray:
    """float64 data whose covariance has well-separated eigenvalues (unique directions)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((n_features, n_features)))
    scales = np.geomspace(10.0, 0.5, n_features)
    return offset + (rng.standard_normal((n_samples, n_features)) * scales) @ basis.T


def _align_signs(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    signs = np.sign(np.sum(reference * other, axis=1))
    return other * signs[:, None]


class BlockSource:
    """A row source (the protocol of ``aepca.data.sources``) over an array, in blocks of the given sizes."""

    def __init__(self, X: np.ndarray, block_sizes):
        self.block_sizes = np.asarray(block_sizes)
        self.n_rows, self.n_features = X.shape
        self.n_blocks = len(self.block_sizes)
        self._X = X
        self._starts = np.concatenate([[0], np.cumsum(self.block_sizes)])
        self.reads: list[int] = []

    def read(self, i: int) -> np.ndarray:
        self.reads.append(i)
        return self._X[self._starts[i] : self._starts[i + 1]].astype(np.float32)

    def iter_blocks(self, blocks=None):
        for i in range(self.n_blocks) if blocks is None else blocks:
            yield self.read(i)


# Uneven blocks, one of a single row: 803 rows in all.
BLOCKS = [97, 300, 1, 250, 155]


# MNIST, fitted once on all 60,000 training images --------------------------------
def test_mnist_test_mse_is_pinned(mnist, mnist_pca):
    curve = mnist_pca.mse_by_components(mnist.x_test, 30)
    assert _sig4(curve[2]) == 0.05567
    assert _sig4(curve[9]) == 0.03559
    assert _sig4(curve[30]) == 0.01769
    # Summed over the 784 pixels of an image: the figure usually quoted for k=30.
    assert round(curve[30] * 784, 2) == 13.87


def test_mnist_train_mse_is_pinned(mnist_pca):
    # On the fitted data the error of k directions is the variance left in the others
    # (times (n-1)/n, the covariance being unbiased): no pass over the 60,000 images needed.
    n, d = mnist_pca.n_samples_seen_, mnist_pca.n_features_in_
    assert (n, d) == (60000, 784)
    train_mse_k2 = mnist_pca.all_explained_variance_[2:].sum() * (n - 1) / n / d
    assert _sig4(train_mse_k2) == 0.05595


def test_train_mse_identity_holds_on_the_data():
    x = _well_conditioned(n_samples=400, n_features=15, seed=4)
    pca = PCA(n_components=2).fit(x)
    n, d = x.shape
    curve = pca.mse_by_components(x, 5)
    # The curve within its rounding; the eigenvalues, each within the scatter's, summed and divided by d.
    tolerance = mse_tolerance(x, pca.mean_) + pca_rounding(x).variance
    for k in range(6):
        assert curve[k] == pytest.approx(pca.all_explained_variance_[k:].sum() * (n - 1) / n / d, rel=0, abs=tolerance)


def test_mnist_reconstruction_mse_matches_explicit_reconstruction(mnist, mnist_pca):
    x = mnist.x_test.astype(np.float64)
    explicit = np.mean(np.square(mnist_pca.inverse_transform(mnist_pca.transform(x)) - x))
    assert mnist_pca.reconstruction_mse(x) == pytest.approx(explicit, rel=0, abs=mse_tolerance(x, mnist_pca.mean_))
    assert mnist_pca.score(x) == -mnist_pca.reconstruction_mse(x)
    assert mnist_pca.transform(x).shape == (10000, 30)
    assert mnist_pca.all_components_.shape == (784, 784)


def test_mnist_test_mse_matches_sklearn_full_svd(mnist):
    # A subset keeps scikit-learn's full SVD quick; the test set is complete.
    x_train = mnist.x_train[:2000].astype(np.float64)
    x_test = mnist.x_test.astype(np.float64)
    ours = PCA(n_components=30).fit(x_train)
    # One BLAS thread: on a shared 2-core machine a threaded SVD is many times slower.
    with threadpool_limits(1):
        theirs = SkPCA(n_components=30, svd_solver="full").fit(x_train)
    theirs_mse = np.mean(np.square(theirs.inverse_transform(theirs.transform(x_test)) - x_test))
    direction = pca_rounding(x_train, 30).direction
    assert ours.reconstruction_mse(x_test) == pytest.approx(
        theirs_mse, rel=0, abs=mse_tolerance(x_test, ours.mean_, k=30, direction=direction)
    )


# Equality with scikit-learn's full SVD --------------------------------------------
def test_matches_sklearn_full_svd_on_float64():
    X = _well_conditioned()
    ours = PCA(n_components=5).fit(X)
    theirs = SkPCA(n_components=5, svd_solver="full").fit(X)
    rounding, d = pca_rounding(X, 5), X.shape[1]
    np.testing.assert_allclose(ours.mean_, theirs.mean_, rtol=0, atol=rounding.mean)
    np.testing.assert_allclose(
        _align_signs(theirs.components_, ours.components_), theirs.components_, rtol=0, atol=rounding.direction
    )
    np.testing.assert_allclose(ours.explained_variance_, theirs.explained_variance_, rtol=0, atol=rounding.variance)
    # A ratio moves with its eigenvalue and with the total of d of them.
    np.testing.assert_allclose(ours.explained_variance_ratio_, theirs.explained_variance_ratio_, rtol=0,
                               atol=(d + 1) * rounding.variance / ours.all_explained_variance_.sum())
    # Codes agree up to the same per-direction signs; a reconstruction sums 5 of them along 5 directions.
    signs = np.sign(np.sum(theirs.components_ * ours.components_, axis=1))
    np.testing.assert_allclose(ours.transform(X) * signs, theirs.transform(X), rtol=0, atol=rounding.codes)
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(X)), theirs.inverse_transform(theirs.transform(X)),
                               rtol=0, atol=2 * np.sqrt(5) * rounding.codes)


def test_all_directions_are_orthonormal_and_sorted():
    X = _well_conditioned(n_features=12)
    pca = PCA(n_components=3).fit(X)
    # Orthonormal to the eigensolver's backward error (12 roundings), seen through 12-term dot products.
    np.testing.assert_allclose(pca.all_components_ @ pca.all_components_.T, np.eye(12), rtol=0,
                               atol=float_tolerance(np.float64, 1.0, 2 * 12))
    assert np.all(np.diff(pca.all_explained_variance_) <= 0)
    np.testing.assert_array_equal(pca.components_, pca.all_components_[:3])
    # Deterministic signs: each direction's largest-magnitude loading is positive.
    rows = np.arange(12)
    assert np.all(pca.all_components_[rows, np.argmax(np.abs(pca.all_components_), axis=1)] > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_how_rows_are_batched_makes_no_difference(dtype, monkeypatch):
    # Parts of 100 rows, counted from the first row: whatever the batches, the same parts are multiplied.
    monkeypatch.setattr("aepca.pca.PART_ROWS", 100)
    X = _well_conditioned(n_samples=1003, n_features=12, seed=1, offset=1000.0).astype(dtype)
    fits = [PCA(n_components=4, batch_size=7).fit(X), PCA(n_components=4, batch_size=10_000).fit(X)]
    if dtype == np.float32:  # the rows a source reads
        fits.append(PCA(n_components=4).fit(BlockSource(X, BLOCKS + [200])))
    chunked = PCA(n_components=4)
    for chunk in np.array_split(X, 7):
        chunked.partial_fit(chunk)
    for other in fits[1:] + [chunked]:
        np.testing.assert_array_equal(other.mean_, fits[0].mean_)
        np.testing.assert_array_equal(other.all_explained_variance_, fits[0].all_explained_variance_)
        np.testing.assert_array_equal(other.all_components_, fits[0].all_components_)


def _drifting(n_samples=20_000, n_features=16, seed=0) -> np.ndarray:
    """Rows whose mean moves far from the first rows' (a trend of 50 standard deviations)."""
    X = _well_conditioned(n_samples=n_samples, n_features=n_features, seed=seed, offset=100.0)
    return X + np.linspace(0.0, 500.0, n_samples)[:, None] * np.linspace(1.0, -1.0, n_features)


@pytest.mark.parametrize("data", [_well_conditioned, _drifting], ids=["offset", "drifting"])
def test_explained_variances_of_float32_rows_are_within_1e_6_of_float64(data, monkeypatch):
    # Many parts, so that shifts move (drifting rows) and parts combine.
    monkeypatch.setattr("aepca.pca.PART_ROWS", 1000)
    X = data(n_samples=20_000, n_features=16, seed=4).astype(np.float32)
    centred = X.astype(np.float64) - X.mean(axis=0, dtype=np.float64)
    exact = np.linalg.eigvalsh(centred.T @ centred / (len(X) - 1))[::-1][:6]
    # The documented bound (docs/pca.md), about 20 float32 epsilons; scikit-learn's float32 solver is off by ~1e-4.
    np.testing.assert_allclose(PCA(n_components=6).fit(X).explained_variance_, exact, rtol=1e-6, atol=0)


@pytest.mark.parametrize("value", [np.float32(0.1), 0.1])
def test_a_constant_column_has_no_variance(value):
    X = _well_conditioned(n_samples=3000, n_features=5, seed=2)
    X[:, 2] = value
    X = X.astype(type(value))
    pca = PCA(n_components=2).fit(X)
    assert pca.feature_variance_[2] == 0.0 and pca.mean_[2] == value
    assert np.all(pca.feature_variance_[[0, 1, 3, 4]] > 0)


# Fitting a chunk at a time ---------------------------------------------------------
def test_a_wide_table_is_fitted_from_its_rows_and_continues_past_its_width():
    """No more rows than features: the n - 1 directions of n centred rows from the rows (no d x d
    scatter), as scikit-learn's full SVD gives them; more rows than features later: the scatter of all."""
    X = _well_conditioned(n_samples=110, n_features=80, seed=2, offset=3.0)
    wide, rows = X[:30], 30
    ours, theirs = PCA(n_components=5).fit(wide), SkPCA(n_components=5, svd_solver="full").fit(wide)
    rounding = pca_rounding(wide, 5)
    assert ours.all_components_.shape == (rows - 1, 80) and ours.all_explained_variance_.shape == (rows - 1,)
    np.testing.assert_allclose(ours.explained_variance_, theirs.explained_variance_, rtol=0, atol=rounding.variance)
    np.testing.assert_allclose(_align_signs(theirs.components_, ours.components_), theirs.components_, rtol=0,
                               atol=rounding.direction)
    np.testing.assert_allclose(ours.all_components_ @ ours.all_components_.T, np.eye(rows - 1), rtol=0,
                               atol=float_tolerance(np.float64, 1.0, 2 * 80))
    # Every direction past the rows' adds nothing: the training rows are rebuilt exactly from them.
    curve = ours.mse_by_components(wide)
    assert len(curve) == 81
    np.testing.assert_allclose(curve[rows - 1 :], 0.0, rtol=0, atol=mse_tolerance(wide, ours.mean_, k=rows,
                                                                                   direction=rounding.direction))
    chunked = PCA(n_components=5)
    for chunk in np.array_split(wide, 3):
        chunked.partial_fit(chunk)
    np.testing.assert_allclose(chunked.explained_variance_, ours.explained_variance_, rtol=0, atol=rounding.variance)
    # Past 80 rows the kept rows become the scatter: the fit of all 110 rows, however they came.
    chunked.partial_fit(X[rows:])
    whole, rounding = PCA(n_components=5).fit(X), pca_rounding(X, 5)
    assert chunked.all_components_.shape == whole.all_components_.shape == (80, 80)
    np.testing.assert_allclose(chunked.all_explained_variance_, whole.all_explained_variance_, rtol=0, atol=rounding.variance)
    np.testing.assert_allclose(chunked.components_, whole.components_, rtol=0, atol=rounding.direction)


@pytest.mark.parametrize(("rows", "features", "components"), [(5, 10, 8), (2, 50, 25)])
def test_more_components_than_rows_adds_orthonormal_directions_of_no_variance(rows, features, components):
    X = _well_conditioned(n_samples=rows, n_features=features, seed=3)
    pca = PCA(n_components=components).fit(X)
    assert pca.components_.shape == (components, features) and pca.transform(X).shape == (rows, components)
    np.testing.assert_allclose(pca.components_ @ pca.components_.T, np.eye(components), rtol=0,
                               atol=float_tolerance(np.float64, 1.0, 2 * features))
    # n centred rows span n - 1 directions; the n-th variance is rounding, the others are added.
    np.testing.assert_allclose(pca.explained_variance_[rows - 1 :], 0.0, rtol=0,
                               atol=pca_rounding(X, rows - 1).variance)


def test_the_directions_of_few_rows_are_orthonormal_whatever_their_rounding():
    """The n-th direction of n centred rows has a variance of rounding alone, with no direction of its own."""
    for seed in range(50):
        X = np.random.default_rng(seed).standard_normal((2 + seed % 5, 50))
        directions = PCA(n_components=25).fit(X).all_components_
        np.testing.assert_allclose(directions @ directions.T, np.eye(25), rtol=0,
                                   atol=float_tolerance(np.float64, 1.0, 2 * 50), err_msg=f"seed {seed}")


def test_partial_fit_over_chunks_equals_fit():
    X = _well_conditioned(n_samples=1003, n_features=12, seed=1, offset=1000.0)
    whole = PCA(n_components=4).fit(X)
    chunked = PCA(n_components=4, batch_size=100)
    for chunk in np.array_split(X, 7):
        chunked.partial_fit(chunk)
    assert chunked.n_samples_seen_ == 1003
    rounding, d = pca_rounding(X, 4), X.shape[1]
    np.testing.assert_allclose(chunked.mean_, whole.mean_, rtol=0, atol=rounding.mean)
    np.testing.assert_allclose(chunked.all_explained_variance_, whole.all_explained_variance_, rtol=0, atol=rounding.variance)
    np.testing.assert_allclose(chunked.components_, whole.components_, rtol=0, atol=rounding.direction)
    np.testing.assert_allclose(chunked.explained_variance_ratio_, whole.explained_variance_ratio_, rtol=0,
                               atol=(d + 1) * rounding.variance / whole.all_explained_variance_.sum())


def test_mnist_fitted_a_chunk_at_a_time_from_a_memory_mapped_file(mnist, mnist_pca, tmp_path):
    path = tmp_path / "train.npy"
    np.save(path, mnist.x_train)
    on_disk = np.load(path, mmap_mode="r")
    chunked = PCA(n_components=30)
    for start in range(0, len(on_disk), 7000):
        chunked.partial_fit(on_disk[start : start + 7000])
    assert chunked.n_samples_seen_ == 60000
    direction = pca_rounding(mnist.x_train, 30, mnist_pca.all_explained_variance_).direction
    np.testing.assert_allclose(
        chunked.mse_by_components(mnist.x_test, 30), mnist_pca.mse_by_components(mnist.x_test, 30), rtol=0,
        atol=mse_tolerance(mnist.x_test, mnist_pca.mean_, k=30, direction=direction),
    )
    assert chunked.reconstruction_mse(mnist.x_test) * 784 == pytest.approx(13.87, abs=0.005)


def test_fit_starts_again_after_partial_fit():
    X = _well_conditioned(n_samples=200, n_features=6, seed=4)
    pca = PCA(n_components=2).partial_fit(X[:50]).partial_fit(X[50:120])
    assert pca.n_samples_seen_ == 120
    refitted = pca.fit(X[120:])
    assert refitted.n_samples_seen_ == 80
    np.testing.assert_allclose(refitted.mean_, X[120:].mean(axis=0), rtol=0, atol=pca_rounding(X[120:]).mean)


def test_partial_fit_refuses_a_first_chunk_of_one_row_and_a_new_feature_count():
    X = np.random.default_rng(0).random((20, 5))
    with pytest.raises(ValueError, match=r"Found array with 1 sample\(s\) \(shape=\(1, 5\)\) while a minimum of 2"):
        PCA(n_components=2).partial_fit(X[:1])
    pca = PCA(n_components=2).partial_fit(X[:10])
    assert pca.partial_fit(X[10:11]).n_samples_seen_ == 11
    with pytest.raises(ValueError, match=r"X has 4 features, but PCA is expecting 5 features"):
        pca.partial_fit(X[:, :4])
    assert pca.n_samples_seen_ == 11


def test_partial_fit_accumulates_and_solves_once_when_read(monkeypatch):
    calls = []
    eigh = np.linalg.eigh

    def counted_eigh(*args, **kwargs):
        calls.append(1)
        return eigh(*args, **kwargs)

    monkeypatch.setattr(np.linalg, "eigh", counted_eigh)
    X = _well_conditioned(n_samples=1000, n_features=8, seed=5)
    pca = PCA(n_components=3)
    for chunk in np.array_split(X, 10):
        pca.partial_fit(chunk)
    assert len(calls) == 0
    first = pca.components_
    np.testing.assert_array_equal(pca.components_, first)
    assert len(calls) == 1
    # New rows make the next reading solve again, once.
    pca.partial_fit(X[:10])
    assert pca.n_samples_seen_ == 1010 and len(calls) == 1
    assert pca.explained_variance_.shape == (3,) and len(calls) == 2


def test_partial_fit_pickles_unsolved_and_solves_after_loading():
    X = _well_conditioned(n_samples=300, n_features=6, seed=6)
    restored = pickle.loads(pickle.dumps(PCA(n_components=2).partial_fit(X[:100]).partial_fit(X[100:])))
    expected = PCA(n_components=2).fit(X).all_explained_variance_
    np.testing.assert_allclose(restored.all_explained_variance_, expected, rtol=0, atol=pca_rounding(X).variance)


# Row sources -----------------------------------------------------------------------
def test_fit_on_a_row_source_equals_fit_on_the_array():
    X = _well_conditioned(n_samples=803, n_features=12, seed=1).astype(np.float32)
    source = BlockSource(X, BLOCKS)
    streamed = PCA(n_components=4, batch_size=128).fit(source)
    whole = PCA(n_components=4).fit(X)
    assert source.reads == list(range(len(BLOCKS)))
    assert streamed.n_samples_seen_ == 803 and streamed.n_features_in_ == 12
    rounding = pca_rounding(X)
    np.testing.assert_allclose(streamed.mean_, whole.mean_, rtol=0, atol=rounding.mean)
    aligned = _align_signs(whole.all_components_, streamed.all_components_)
    np.testing.assert_allclose(aligned, whole.all_components_, rtol=0, atol=rounding.direction)
    np.testing.assert_allclose(streamed.all_explained_variance_, whole.all_explained_variance_, rtol=0, atol=rounding.variance)
    X_test = _well_conditioned(n_samples=200, n_features=12, seed=2)
    np.testing.assert_allclose(streamed.mse_by_components(X_test, 11), whole.mse_by_components(X_test, 11), rtol=0,
                               atol=mse_tolerance(X_test, whole.mean_, k=11, direction=rounding.direction))


def test_transform_and_errors_of_a_row_source_equal_those_of_the_array():
    X = _well_conditioned(n_samples=803, n_features=12, seed=1).astype(np.float32)
    X_test = _well_conditioned(n_samples=803, n_features=12, seed=2).astype(np.float32)
    pca = PCA(n_components=4, batch_size=128).fit(X)
    # The same model in other batches: 12-term dot products, and error curves, that round differently.
    codes_tolerance, curve_tolerance = float_tolerance(np.float64, np.abs(X_test).max(), 12), mse_tolerance(X_test, pca.mean_)
    np.testing.assert_allclose(pca.transform(BlockSource(X_test, BLOCKS)), pca.transform(X_test), rtol=0, atol=codes_tolerance)
    np.testing.assert_allclose(
        pca.mse_by_components(BlockSource(X_test, BLOCKS)), pca.mse_by_components(X_test), rtol=0, atol=curve_tolerance
    )
    assert pca.reconstruction_mse(BlockSource(X_test, BLOCKS)) == pytest.approx(
        pca.reconstruction_mse(X_test), rel=0, abs=curve_tolerance
    )


def test_partial_fit_takes_row_sources_and_arrays_alike():
    X = _well_conditioned(n_samples=803, n_features=12, seed=1).astype(np.float32)
    mixed = PCA(n_components=4).partial_fit(BlockSource(X[:400], [150, 250])).partial_fit(X[400:600])
    mixed.partial_fit(BlockSource(X[600:], [203]))
    whole = PCA(n_components=4).fit(X)
    assert mixed.n_samples_seen_ == 803
    rounding = pca_rounding(X, 4)
    np.testing.assert_allclose(mixed.all_explained_variance_, whole.all_explained_variance_, rtol=0, atol=rounding.variance)
    np.testing.assert_allclose(
        _align_signs(whole.components_, mixed.components_), whole.components_, rtol=0, atol=rounding.direction
    )


def test_row_sources_with_bad_values_or_feature_counts_are_refused():
    X = _well_conditioned(n_samples=100, n_features=5, seed=2)
    pca = PCA(n_components=2).fit(X)
    with pytest.raises(ValueError, match=r"X has 4 features, but PCA is expecting 5 features"):
        pca.transform(BlockSource(X[:, :4], [100]))
    bad = X.copy()
    bad[60, 3] = np.nan
    # A row source of the caller's own, whose reading checks nothing: refused by the statistics.
    with pytest.raises(ValueError, match=r"X holds NaN, infinite or huge values \(its statistics are not finite\)"):
        pca.partial_fit(BlockSource(bad, [50, 50]))
    assert pca.n_samples_seen_ == 100  # the refused rows were not added
    with pytest.raises(ValueError, match=r"a row source of at least 2 rows\. Received: one of 1 rows"):
        PCA(n_components=2).fit(BlockSource(X[:1], [1]))


# Mergeable statistics ----------------------------------------------------------------
def _accumulated(X: np.ndarray, batch_size: int = 64) -> ScatterAccumulator:
    accumulator = ScatterAccumulator(X.shape[1])
    for start in range(0, len(X), batch_size):
        accumulator.update(X[start : start + batch_size])
    return accumulator


def _assert_same_statistics(a: ScatterAccumulator, b: ScatterAccumulator, largest: np.ndarray) -> None:
    """``a`` and ``b`` hold the same statistics up to the rounding of accumulating rows whose column
    ``i`` reaches ``largest[i]`` (in ``b``'s units). The mean rounds at ``largest`` over ``sqrt(n)``
    updates; scatter entry ``(i, j)`` at ``n sqrt(s_i L_i s_j L_j)`` (``s``: standard deviations), as
    the pairwise updates' differences of means carry the offset in."""
    assert a.n == b.n
    n_ops, spread = np.sqrt(b.n), np.sqrt(np.diag(b.scatter) / b.n)
    assert_within(a.mean, b.mean, float_tolerance(np.float64, largest, n_ops))
    column = np.sqrt(spread * largest)
    assert_within(np.triu(a.scatter), np.triu(b.scatter), float_tolerance(np.float64, b.n * np.outer(column, column), n_ops))


def test_merged_halves_equal_one_accumulator_also_through_flat_arrays():
    X = _well_conditioned(n_samples=1003, n_features=12, seed=1, offset=1000.0)
    whole, largest = _accumulated(X), np.abs(X).max(axis=0)
    _assert_same_statistics(_accumulated(X[:400]).merge(_accumulated(X[400:])), whole, largest)
    # As two processes would exchange them.
    left, right = (ScatterAccumulator.from_array(_accumulated(part).to_array()) for part in (X[:700], X[700:]))
    merged = left.merge(right)
    _assert_same_statistics(merged, whole, largest)
    assert merged.to_array().shape == (1 + 12 + 12 * 13 // 2,)
    # One solve of the merged statistics is the fit on all rows.
    pca = PCA.from_accumulator(merged, n_components=3)
    fitted = PCA(n_components=3).fit(X)
    assert pca.n_samples_seen_ == 1003 and pca.n_features_in_ == 12
    rounding = pca_rounding(X, 3)
    np.testing.assert_allclose(pca.all_explained_variance_, fitted.all_explained_variance_, rtol=0, atol=rounding.variance)
    np.testing.assert_allclose(
        _align_signs(fitted.components_, pca.components_), fitted.components_, rtol=0, atol=rounding.direction
    )


def test_merging_into_an_empty_accumulator_gives_the_other():
    X = _well_conditioned(n_samples=200, n_features=5, seed=3)
    merged, alone = ScatterAccumulator(5).merge(_accumulated(X)), _accumulated(X)
    # Adding to zeros and scaling by m / m = 1 round nothing: the other's statistics, bit for bit.
    assert merged.n == alone.n
    np.testing.assert_array_equal(merged.mean, alone.mean)
    np.testing.assert_array_equal(merged.scatter, alone.scatter)


def test_a_malformed_flat_array_is_refused():
    with pytest.raises(ValueError, match=r"ScatterAccumulator\.to_array\(\)\. Received: an array of shape \(7,\)"):
        ScatterAccumulator.from_array(np.zeros(7))


def test_in_scaled_space_equals_accumulating_scaled_rows():
    X = _well_conditioned(n_samples=500, n_features=8, seed=7, offset=50.0)
    offset, scale = X.mean(axis=0) + 3.0, np.geomspace(0.01, 100.0, 8)
    # The unscaled rows' offsets, in scaled units, bound what either path rounds.
    _assert_same_statistics(_accumulated(X).in_scaled_space(offset, scale), _accumulated((X - offset) / scale),
                            np.abs(X).max(axis=0) / scale)


def test_variance_is_the_population_variance():
    X = _well_conditioned(n_samples=500, n_features=8, seed=7, offset=50.0)
    # Each column's variance rounds at its standard deviation times its largest magnitude, over sqrt(n) rows.
    assert_within(_accumulated(X).variance(), X.var(axis=0),
                  float_tolerance(np.float64, X.std(axis=0) * np.abs(X).max(axis=0), np.sqrt(len(X))))


# Sampled fits ---------------------------------------------------------------------------
def test_sample_rows_fits_on_whole_blocks_close_to_the_full_fit(low_rank_data):
    X = low_rank_data(n_samples=20_000, n_features=20, rank=3, noise=0.05, seed=3)
    X_test = low_rank_data(n_samples=2_000, n_features=20, rank=3, noise=0.05, seed=3)
    source = BlockSource(X, [500] * 40)
    sampled = PCA(n_components=3, sample_rows=2_000).fit(source)
    full = PCA(n_components=3).fit(X)
    assert sampled.n_samples_seen_ == 2_000
    assert source.reads == sorted(source.reads) and len(source.reads) == 4
    assert sampled.reconstruction_mse(X_test) == pytest.approx(full.reconstruction_mse(X_test), rel=0.02)
    # The same blocks, as slices of an array of batch_size rows.
    by_slices = PCA(n_components=3, batch_size=500, sample_rows=2_000).fit(X)
    np.testing.assert_array_equal(by_slices.all_explained_variance_, sampled.all_explained_variance_)


@pytest.mark.parametrize("as_source", [False, True])
def test_sample_rows_of_all_rows_is_the_full_fit(as_source):
    X = _well_conditioned(n_samples=803, n_features=12, seed=1).astype(np.float32)
    data = BlockSource(X, BLOCKS) if as_source else X
    sampled = PCA(n_components=4, batch_size=128, sample_rows=803).fit(data)
    full = PCA(n_components=4, batch_size=128).fit(data)
    np.testing.assert_array_equal(sampled.all_components_, full.all_components_)
    np.testing.assert_array_equal(sampled.all_explained_variance_, full.all_explained_variance_)


# Error curves ----------------------------------------------------------------------
def _explicit_mse(pca: PCA, X: np.ndarray, k: int, weights=None) -> float:
    directions = pca.all_components_[:k]
    centred = X - pca.mean_
    error = centred - centred @ directions.T @ directions
    weights = np.ones(X.shape[1]) if weights is None else weights
    return float(np.mean(np.square(error) * weights))


@pytest.mark.parametrize("batch_size", [7, 2048])
@pytest.mark.parametrize("weighted", [False, True])
def test_mse_by_components_equals_explicit_reconstructions(weighted, batch_size):
    X = _well_conditioned(n_samples=300, n_features=10, seed=2)
    X_test = _well_conditioned(n_samples=100, n_features=10, seed=3)
    weights = np.linspace(0.5, 4.0, 10) if weighted else None
    pca = PCA(n_components=2, batch_size=batch_size).fit(X)
    curve = pca.mse_by_components(X_test, feature_weights=weights)
    assert curve.shape == (11,)
    tolerance = mse_tolerance(X_test, pca.mean_, weights)
    for k in (0, 1, 2, 5, 9, 10):
        assert curve[k] == pytest.approx(_explicit_mse(pca, X_test, k, weights), rel=0, abs=tolerance)
    # More directions never hurt on the fitted data.
    assert np.all(np.diff(pca.mse_by_components(X)) <= mse_tolerance(X, pca.mean_))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_in_batches_equals_one_projection(dtype):
    X = _well_conditioned(n_samples=103, n_features=10, seed=4).astype(dtype)
    pca = PCA(n_components=3, batch_size=10).fit(X)
    expected = (X.astype(np.float64) - pca.mean_) @ pca.components_.T
    # 10-term dot products in float64, of values up to the data's largest.
    np.testing.assert_allclose(pca.transform(X), expected, rtol=0, atol=float_tolerance(np.float64, np.abs(X).max(), 10))


def test_mse_by_components_caps_max_components():
    X = _well_conditioned(n_samples=200, n_features=6)
    pca = PCA(n_components=2).fit(X)
    assert pca.mse_by_components(X, 3).shape == (4,)
    assert pca.mse_by_components(X, 100).shape == (7,)
    np.testing.assert_allclose(pca.mse_by_components(X, 3), pca.mse_by_components(X)[:4], rtol=0,
                               atol=mse_tolerance(X, pca.mean_))


def test_full_rank_reconstruction_is_exact():
    X = _well_conditioned(n_samples=50, n_features=5)
    pca = PCA(n_components=5).fit(X)
    # Zero up to the rounding of the total sum of squares it is computed from.
    assert pca.reconstruction_mse(X) == pytest.approx(0.0, abs=mse_tolerance(X, pca.mean_))
    # Two 5-term dot products (codes, then back), each rounding at the norm of the longest row.
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(X)), X, rtol=0,
                               atol=float_tolerance(np.float64, np.linalg.norm(X, axis=1).max(), 2 * 5))


@pytest.mark.parametrize(
    ("target", "expected"),
    [(2.0, 0), (1.0, 0), (0.5, 1), (0.3, 2), (0.1, 3), (0.05, 4)],
)
def test_equivalent_components(target, expected):
    assert equivalent_components(np.array([1.0, 0.5, 0.2, 0.1]), target) == expected


def test_a_network_that_is_pca_is_equivalent_to_its_own_code_size():
    """PCA kept as the model scores within float32 round-off of PCA's float64 error (here 1e-7
    below it): the same size, not the next one."""
    curve = np.array([1.0, 0.5, 0.2, 0.1])
    assert equivalent_components(curve, 0.2 * (1 - 1e-7)) == 2
    assert equivalent_components(curve, 0.2 * (1 - 1e-3)) == 3  # clearly below: the next size


# Bad input ---------------------------------------------------------------------------
def test_too_many_components_is_refused():
    with pytest.raises(ValueError, match=r"n_components, expected at most the number of features \(5\)\. Received: n_components=6"):
        PCA(n_components=6).fit(np.random.default_rng(0).random((20, 5)))


def test_one_row_is_refused():
    with pytest.raises(ValueError, match=r"1 sample\(s\) \(shape=\(1, 5\)\) while a minimum of 2 is required"):
        PCA(n_components=2).fit(np.ones((1, 5)))


@pytest.mark.parametrize("n_components", [0, -1, 1.0, 1.5, "mle"])
def test_invalid_n_components_is_refused(n_components):
    with pytest.raises(ValueError, match=r"'n_components' parameter of PCA must be an int in the range \[1, inf\), "
                                         r"a float in the range \(0.0, 1.0\) or None"):
        PCA(n_components=n_components).fit(np.random.default_rng(0).random((20, 5)))


@pytest.mark.parametrize("sample_rows", [1, 0.5])
def test_invalid_sample_rows_is_refused(sample_rows):
    with pytest.raises(ValueError, match=r"'sample_rows' parameter of PCA must be an int in the range \[2, inf\) or None"):
        PCA(sample_rows=sample_rows).fit(np.random.default_rng(0).random((20, 5)))


def test_feature_count_mismatch_and_bad_codes():
    pca = PCA(n_components=2).fit(np.random.default_rng(0).random((20, 5)))
    with pytest.raises(ValueError, match=r"X has 4 features, but PCA is expecting 5 features"):
        pca.transform(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"expected codes of shape \(n_samples, 2\)\. Received: X\.shape=\(3, 3\)"):
        pca.inverse_transform(np.ones((3, 3)))




@pytest.mark.parametrize("shape", [(1797, 64), (6, 20)])
@pytest.mark.parametrize("n_components", [0.5, 0.9, 0.999, None])
def test_a_fraction_of_variance_or_none_keeps_as_many_directions_as_sklearn(shape, n_components):
    X = load_digits().data[: shape[0], : shape[1]]
    ours, theirs = PCA(n_components).fit(X), SkPCA(n_components, svd_solver="full").fit(X)
    assert ours.n_components_ == theirs.n_components_
    k = ours.n_components_
    assert ours.components_.shape == (k, shape[1]) and ours.transform(X).shape == (len(X), k)
    assert len(ours.explained_variance_ratio_) == k and ours.get_feature_names_out()[-1] == f"pca{k - 1}"
    if n_components is not None:
        ratios = ours.all_explained_variance_ / ours.all_explained_variance_.sum()
        assert ratios[: k - 1].sum() <= n_components < ratios[:k].sum()


def test_a_fraction_of_rows_of_no_variance_keeps_one_direction():
    assert PCA(0.9).fit(np.ones((10, 3))).n_components_ == 1


def test_feature_names_out():
    pca = PCA(n_components=3).fit(np.random.default_rng(0).random((20, 5)))
    assert list(pca.get_feature_names_out()) == ["pca0", "pca1", "pca2"]


def test_a_table_of_a_million_columns_is_fitted_without_a_scatter_of_its_columns():
    # Three rows of 1,000,000 columns: a 10^6 x 10^6 scatter would take 8 TB; the rows, 12 MB.
    rows = np.random.default_rng(0).standard_normal((3, 1_000_000), dtype=np.float32)
    pca = PCA(2).fit(rows)
    centred = rows.astype(np.float64) - rows.astype(np.float64).mean(axis=0)
    expected = np.linalg.svd(centred, compute_uv=False)[:2] ** 2 / 2
    # Sums over a million columns, in float64: a long sum's rounding (sqrt of its terms).
    rounding = np.sqrt(rows.shape[1])
    np.testing.assert_allclose(pca.explained_variance_, expected, rtol=float_tolerance(np.float64, 1.0, rounding))
    # Three centred rows span two directions: rebuilt from two codes.
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(rows)), rows, rtol=0,
                               atol=float_tolerance(np.float64, np.abs(rows).max(), rounding))
