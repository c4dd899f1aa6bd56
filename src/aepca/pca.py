"""Exact PCA from scatter matrices accumulated over batches.

The covariance is accumulated in float64 batch by batch (Chan, Golub and
LeVeque's pairwise update of mean and centred scatter), so data never has to
be in memory at once, and a symmetric eigendecomposition of the d x d scatter
gives every principal direction. That is both exact (it matches a full SVD of
the centred data to float64 round-off) and cheaper than an SVD when there are
many more samples than features.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import scipy.linalg
from scipy.linalg.blas import dsyr, dsyrk
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from aepca.validation import check_codes, invalid_value


class ScatterAccumulator:
    """Running count, mean and centred scatter matrix of row batches, in float64.

    Each batch is centred into one reused buffer and added to the scatter in
    place by BLAS (a rank-k and a rank-1 update), so a batch allocates no
    full-size temporaries: fresh ones cost page faults on every batch.
    """

    def __init__(self, n_features: int):
        self.n = 0
        self.mean = np.zeros(n_features)
        # Only the upper triangle is maintained (dsyrk and dsyr write that half).
        self.scatter = np.zeros((n_features, n_features), order="F")
        self._work = np.empty(0)

    @classmethod
    def from_eigen(cls, n: int, mean: np.ndarray, directions: np.ndarray, variances: np.ndarray) -> ScatterAccumulator:
        """The accumulator of ``n`` rows whose covariance has these eigen-pairs
        (``directions`` as rows), as a fitted PCA holds them."""
        accumulator = cls(len(mean))
        accumulator.n = n
        accumulator.mean = np.array(mean, dtype=np.float64)
        accumulator.scatter = np.asfortranarray((directions.T * (variances * max(n - 1, 1))) @ directions)
        return accumulator

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch)
        m, n_features = batch.shape
        if m == 0:
            return
        if self._work.size < m * n_features:
            self._work = np.empty(m * n_features)
        centred = self._work[: m * n_features].reshape(m, n_features)
        batch_mean = batch.mean(axis=0, dtype=np.float64)
        np.subtract(batch, batch_mean, out=centred)
        # centred.T is a Fortran-order view, so BLAS reads it without a copy;
        # the scatter (Fortran order) is updated in place, and reassigned in
        # case the wrapper ever had to copy it.
        self.scatter = dsyrk(1.0, centred.T, beta=1.0, c=self.scatter, trans=0, lower=0, overwrite_c=1)
        total = self.n + m
        delta = batch_mean - self.mean
        if self.n:
            self.scatter = dsyr(self.n * m / total, delta, lower=0, a=self.scatter, overwrite_a=1)
        self.mean += delta * (m / total)
        self.n = total

    def covariance(self) -> np.ndarray:
        upper = np.triu(self.scatter)
        full = upper + np.triu(upper, 1).T
        return full / max(self.n - 1, 1)


class PCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Exact principal component analysis, fitted by streaming batches.

    Parameters
    ----------
    n_components : int, default=2
        Number of principal directions kept by ``transform``. All directions
        are learned, so reconstruction errors for every code size are
        available from :meth:`mse_by_components` at no extra cost.
    batch_size : int, default=2048
        Rows per batch in ``fit``, ``transform`` and ``mse_by_components``;
        bounds their float64 working memory.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
    explained_variance_ : ndarray of shape (n_components,)
    explained_variance_ratio_ : ndarray of shape (n_components,)
    mean_ : ndarray of shape (n_features,)
    all_components_ : ndarray of shape (n_features, n_features)
        Every principal direction, by decreasing variance.
    all_explained_variance_ : ndarray of shape (n_features,)
    n_samples_seen_ : int
    n_features_in_ : int
    """

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_components=2, *, batch_size=2048):
        self.n_components = n_components
        self.batch_size = batch_size

    def fit(self, X, y=None):
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        self._accumulate(ScatterAccumulator(X.shape[1]), X)
        return self

    def partial_fit(self, X, y=None):
        """Add the rows of ``X`` to those seen so far and refit.

        The result equals ``fit`` on all rows at once (to float64 round-off),
        so data that never fits in memory together can be fitted a chunk at
        a time: files, row groups, ``np.load(path, mmap_mode="r")`` slices.
        Each call also solves the d x d eigenproblem again, so chunks of many
        rows are cheaper than many small ones. The first call needs at least
        two rows.
        """
        first = not hasattr(self, "n_samples_seen_")
        if first:
            self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=first, ensure_min_samples=2 if first else 1)
        if first:
            accumulator = ScatterAccumulator(X.shape[1])
        else:
            accumulator = ScatterAccumulator.from_eigen(
                self.n_samples_seen_, self.mean_, self.all_components_, self.all_explained_variance_
            )
        self._accumulate(accumulator, X)
        return self

    def _accumulate(self, accumulator: ScatterAccumulator, X) -> None:
        n_features = X.shape[1]
        if self.n_components > n_features:
            raise invalid_value(
                "n_components",
                f"at most the number of features ({n_features})",
                f"n_components={self.n_components}",
            )
        for start in range(0, X.shape[0], self.batch_size):
            accumulator.update(X[start : start + self.batch_size])
        self._set_from_accumulator(accumulator)

    def _set_from_accumulator(self, accumulator: ScatterAccumulator) -> None:
        eigenvalues, eigenvectors = scipy.linalg.eigh(accumulator.covariance())
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues = np.clip(eigenvalues[order], 0.0, None)
        directions = eigenvectors[:, order].T
        # Deterministic signs: the largest-magnitude loading of each direction is positive.
        signs = np.sign(directions[np.arange(len(directions)), np.argmax(np.abs(directions), axis=1)])
        directions *= signs[:, None]
        self.mean_ = accumulator.mean.copy()
        self.n_samples_seen_ = accumulator.n
        self.all_components_ = directions
        self.all_explained_variance_ = eigenvalues
        total = eigenvalues.sum()
        k = self.n_components
        self.components_ = directions[:k]
        self.explained_variance_ = eigenvalues[:k]
        self.explained_variance_ratio_ = eigenvalues[:k] / total if total > 0 else np.zeros(k)
        self._n_features_out = k

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        codes = np.empty((X.shape[0], self.n_components))
        # A batch of rows at a time: no float64 copy of the whole of X.
        for start in range(0, X.shape[0], self.batch_size):
            stop = start + self.batch_size
            codes[start:stop] = (X[start:stop] - self.mean_) @ self.components_.T
        return codes

    def inverse_transform(self, X):
        check_is_fitted(self)
        X = check_codes(X, self.n_components, dtype=np.float64)
        return X @ self.components_ + self.mean_

    def mse_by_components(self, X, max_components=None, feature_weights=None) -> np.ndarray:
        """Mean squared reconstruction error of ``X`` for code sizes 0..max_components.

        Entry ``k`` is the MSE (averaged over samples and features) of the
        reconstruction from the first ``k`` principal directions. Because the
        directions are orthonormal, one projection gives every ``k``.
        ``feature_weights`` weighs each feature's squared error, e.g. by the
        squared scale of standardised data to report errors in original units;
        that breaks orthogonality, so residuals are then updated per direction.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        n_features = X.shape[1]
        max_components = n_features if max_components is None else min(max_components, n_features)
        directions = self.all_components_[:max_components]
        weights = None if feature_weights is None else np.asarray(feature_weights, dtype=np.float64)
        errors = np.zeros(max_components + 1)
        # A batch of rows at a time: no float64 copy of the whole of X.
        for start in range(0, X.shape[0], self.batch_size):
            centred = X[start : start + self.batch_size].astype(np.float64) - self.mean_
            projections = centred @ directions.T
            if weights is None:
                total = np.einsum("ij,ij->", centred, centred)
                captured = np.concatenate([[0.0], np.cumsum(np.einsum("ij,ij->j", projections, projections))])
                errors += total - captured
                continue
            residual = centred
            errors[0] += np.einsum("ij,ij,j->", residual, residual, weights)
            for k in range(max_components):
                residual -= np.outer(projections[:, k], directions[k])
                errors[k + 1] += np.einsum("ij,ij,j->", residual, residual, weights)
        return np.maximum(errors, 0.0) / X.size

    def reconstruction_mse(self, X) -> float:
        """Mean squared error of reconstructing ``X`` from ``n_components`` directions."""
        return float(self.mse_by_components(X, self.n_components)[self.n_components])

    def score(self, X, y=None) -> float:
        """Negative reconstruction MSE (higher is better)."""
        return -self.reconstruction_mse(X)


def equivalent_components(mse_by_k: np.ndarray, target_mse: float) -> int:
    """The smallest code size whose PCA error is at or below ``target_mse``.

    Returns ``len(mse_by_k)`` when no size in the curve is good enough.
    """
    good = np.flatnonzero(np.asarray(mse_by_k) <= target_mse)
    return int(good[0]) if good.size else len(mse_by_k)
