"""Exact streaming PCA: pinned MNIST errors, equality with scikit-learn, streaming, chunked fits, error curves."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA as SkPCA
from threadpoolctl import threadpool_limits

from aepca.pca import PCA, equivalent_components


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
    for k in range(6):
        assert curve[k] == pytest.approx(pca.all_explained_variance_[k:].sum() * (n - 1) / n / d, rel=1e-9)


def test_mnist_reconstruction_mse_matches_explicit_reconstruction(mnist, mnist_pca):
    x = mnist.x_test.astype(np.float64)
    explicit = np.mean(np.square(mnist_pca.inverse_transform(mnist_pca.transform(x)) - x))
    assert mnist_pca.reconstruction_mse(x) == pytest.approx(explicit, rel=1e-10)
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
    assert ours.reconstruction_mse(x_test) == pytest.approx(theirs_mse, rel=1e-6)


# Equality with scikit-learn's full SVD --------------------------------------------
def test_matches_sklearn_full_svd_on_float64():
    X = _well_conditioned()
    ours = PCA(n_components=5).fit(X)
    theirs = SkPCA(n_components=5, svd_solver="full").fit(X)
    np.testing.assert_allclose(ours.mean_, theirs.mean_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(_align_signs(theirs.components_, ours.components_), theirs.components_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.explained_variance_, theirs.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(ours.explained_variance_ratio_, theirs.explained_variance_ratio_, rtol=1e-10)
    # Codes agree up to the same per-direction signs.
    signs = np.sign(np.sum(theirs.components_ * ours.components_, axis=1))
    np.testing.assert_allclose(ours.transform(X) * signs, theirs.transform(X), rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(X)), theirs.inverse_transform(theirs.transform(X)), atol=1e-8)


def test_all_directions_are_orthonormal_and_sorted():
    X = _well_conditioned(n_features=12)
    pca = PCA(n_components=3).fit(X)
    np.testing.assert_allclose(pca.all_components_ @ pca.all_components_.T, np.eye(12), atol=1e-12)
    assert np.all(np.diff(pca.all_explained_variance_) <= 0)
    np.testing.assert_array_equal(pca.components_, pca.all_components_[:3])
    # Deterministic signs: each direction's largest-magnitude loading is positive.
    rows = np.arange(12)
    assert np.all(pca.all_components_[rows, np.argmax(np.abs(pca.all_components_), axis=1)] > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streaming_batch_size_makes_no_difference(dtype):
    # A large offset would expose a naive sum-of-squares update.
    X = _well_conditioned(n_samples=1003, n_features=12, seed=1, offset=1000.0).astype(dtype)
    small = PCA(n_components=4, batch_size=7).fit(X)
    large = PCA(n_components=4, batch_size=10_000).fit(X)
    assert small.n_samples_seen_ == large.n_samples_seen_ == 1003
    np.testing.assert_allclose(small.mean_, large.mean_, rtol=1e-12)
    np.testing.assert_allclose(small.all_explained_variance_, large.all_explained_variance_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(small.components_, large.components_, rtol=0, atol=1e-9)


# Fitting a chunk at a time ---------------------------------------------------------
def test_partial_fit_over_chunks_equals_fit():
    X = _well_conditioned(n_samples=1003, n_features=12, seed=1, offset=1000.0)
    whole = PCA(n_components=4).fit(X)
    chunked = PCA(n_components=4, batch_size=100)
    for chunk in np.array_split(X, 7):
        chunked.partial_fit(chunk)
    assert chunked.n_samples_seen_ == 1003
    np.testing.assert_allclose(chunked.mean_, whole.mean_, rtol=1e-12)
    np.testing.assert_allclose(chunked.all_explained_variance_, whole.all_explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(chunked.components_, whole.components_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(chunked.explained_variance_ratio_, whole.explained_variance_ratio_, rtol=1e-9)


def test_mnist_fitted_a_chunk_at_a_time_from_a_memory_mapped_file(mnist, mnist_pca, tmp_path):
    path = tmp_path / "train.npy"
    np.save(path, mnist.x_train)
    on_disk = np.load(path, mmap_mode="r")
    chunked = PCA(n_components=30)
    for start in range(0, len(on_disk), 7000):
        chunked.partial_fit(on_disk[start : start + 7000])
    assert chunked.n_samples_seen_ == 60000
    np.testing.assert_allclose(
        chunked.mse_by_components(mnist.x_test, 30), mnist_pca.mse_by_components(mnist.x_test, 30), rtol=1e-10
    )
    assert chunked.reconstruction_mse(mnist.x_test) * 784 == pytest.approx(13.87, abs=0.005)


def test_fit_starts_again_after_partial_fit():
    X = _well_conditioned(n_samples=200, n_features=6, seed=4)
    pca = PCA(n_components=2).partial_fit(X[:50]).partial_fit(X[50:120])
    assert pca.n_samples_seen_ == 120
    refitted = pca.fit(X[120:])
    assert refitted.n_samples_seen_ == 80
    np.testing.assert_allclose(refitted.mean_, X[120:].mean(axis=0), rtol=1e-12)


def test_partial_fit_refuses_a_first_chunk_of_one_row_and_a_new_feature_count():
    X = np.random.default_rng(0).random((20, 5))
    with pytest.raises(ValueError, match=r"Found array with 1 sample\(s\) \(shape=\(1, 5\)\) while a minimum of 2"):
        PCA(n_components=2).partial_fit(X[:1])
    pca = PCA(n_components=2).partial_fit(X[:10])
    assert pca.partial_fit(X[10:11]).n_samples_seen_ == 11
    with pytest.raises(ValueError, match=r"X has 4 features, but PCA is expecting 5 features"):
        pca.partial_fit(X[:, :4])
    assert pca.n_samples_seen_ == 11


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
    for k in (0, 1, 2, 5, 9, 10):
        assert curve[k] == pytest.approx(_explicit_mse(pca, X_test, k, weights), rel=1e-9, abs=1e-14)
    assert np.all(np.diff(pca.mse_by_components(X)) <= 1e-12)  # more directions never hurt on the fitted data


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_in_batches_equals_one_projection(dtype):
    X = _well_conditioned(n_samples=103, n_features=10, seed=4).astype(dtype)
    pca = PCA(n_components=3, batch_size=10).fit(X)
    expected = (X.astype(np.float64) - pca.mean_) @ pca.components_.T
    np.testing.assert_allclose(pca.transform(X), expected, rtol=1e-12, atol=1e-12)


def test_mse_by_components_caps_max_components():
    X = _well_conditioned(n_samples=200, n_features=6)
    pca = PCA(n_components=2).fit(X)
    assert pca.mse_by_components(X, 3).shape == (4,)
    assert pca.mse_by_components(X, 100).shape == (7,)
    np.testing.assert_allclose(pca.mse_by_components(X, 3), pca.mse_by_components(X)[:4], rtol=1e-12)


def test_full_rank_reconstruction_is_exact():
    X = _well_conditioned(n_samples=50, n_features=5)
    pca = PCA(n_components=5).fit(X)
    assert pca.reconstruction_mse(X) == pytest.approx(0.0, abs=1e-20)
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(X)), X, atol=1e-10)


@pytest.mark.parametrize(
    ("target", "expected"),
    [(2.0, 0), (1.0, 0), (0.5, 1), (0.3, 2), (0.1, 3), (0.05, 4)],
)
def test_equivalent_components(target, expected):
    assert equivalent_components(np.array([1.0, 0.5, 0.2, 0.1]), target) == expected


# Bad input ---------------------------------------------------------------------------
def test_too_many_components_is_refused():
    with pytest.raises(ValueError, match=r"n_components, expected at most the number of features \(5\)\. Received: n_components=6"):
        PCA(n_components=6).fit(np.random.default_rng(0).random((20, 5)))


def test_one_row_is_refused():
    with pytest.raises(ValueError, match=r"1 sample\(s\) \(shape=\(1, 5\)\) while a minimum of 2 is required"):
        PCA(n_components=2).fit(np.ones((1, 5)))


@pytest.mark.parametrize("n_components", [0, -1, 1.5])
def test_invalid_n_components_is_refused(n_components):
    with pytest.raises(ValueError, match=r"'n_components' parameter of PCA must be an int in the range \[1, inf\)"):
        PCA(n_components=n_components).fit(np.random.default_rng(0).random((20, 5)))


def test_feature_count_mismatch_and_bad_codes():
    pca = PCA(n_components=2).fit(np.random.default_rng(0).random((20, 5)))
    with pytest.raises(ValueError, match=r"X has 4 features, but PCA is expecting 5 features"):
        pca.transform(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"expected codes of shape \(n_samples, 2\)\. Received: X\.shape=\(3, 3\)"):
        pca.inverse_transform(np.ones((3, 3)))


def test_nan_is_refused():
    X = np.random.default_rng(0).random((20, 5))
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        PCA(n_components=2).fit(X)


def test_feature_names_out():
    pca = PCA(n_components=3).fit(np.random.default_rng(0).random((20, 5)))
    assert list(pca.get_feature_names_out()) == ["pca0", "pca1", "pca2"]
