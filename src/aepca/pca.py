"""Exact PCA from scatter matrices accumulated over batches.

The covariance is accumulated in float64 batch by batch (Chan, Golub and
LeVeque's pairwise update of mean and centred scatter), so data never has to
be in memory at once, and a symmetric eigendecomposition of the d x d scatter
gives every principal direction. That is both exact (it matches a full SVD of
the centred data to float64 round-off) and cheaper than an SVD when there are
many more samples than features.

Data bigger than memory comes as a *row source*: an object with ``n_features``,
``n_rows``, ``n_blocks``, ``block_sizes`` and ``read(i)`` (block ``i`` as a
float32 array), such as those of :mod:`aepca.data.sources`. Fitting,
``transform`` and the error curves read it a block at a time, the next block in
a background thread while the current one is computed on. Accumulators of
separate shards merge exactly (:meth:`ScatterAccumulator.merge`), so several
processes can each accumulate their part and one eigendecomposition
(:meth:`PCA.from_accumulator`) fits the whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from numbers import Integral
from typing import NamedTuple

import numpy as np
import scipy.linalg
from scipy.linalg.blas import dsyr, dsyrk
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from aepca.inputs import opened
from aepca.prefetch import prefetch
from aepca.validation import check_codes, invalid_value


# Rows centred at a time: a whole block's float64 copy (400 MB for 65,536 MNIST rows) would be
# fresh pages each time; this buffer is reused.
UPDATE_ROWS = 2048


def is_row_source(X) -> bool:
    """Whether ``X`` is a row source, read a block at a time, rather than an array."""
    return hasattr(X, "read") and hasattr(X, "n_blocks") and not isinstance(X, np.ndarray)


class ScatterAccumulator:
    """Running count, mean and centred scatter matrix of row batches, in float64.

    Each batch is centred into one reused buffer and added to the scatter in
    place by BLAS (a rank-k and a rank-1 update), so a batch allocates no
    full-size temporaries: fresh ones cost page faults on every batch.
    Accumulators of disjoint rows merge exactly (:meth:`merge`), and travel
    between processes as one flat array (:meth:`to_array`).
    """

    def __init__(self, n_features: int):
        self.n = 0
        self.mean = np.zeros(n_features)
        # Only the upper triangle is maintained (dsyrk and dsyr write that half);
        # the lower one stays zero.
        self.scatter = np.zeros((n_features, n_features), order="F")
        self._work = np.empty(0)

    def __getstate__(self) -> dict:
        # The batch buffer is scratch space: not worth pickling.
        return {**self.__dict__, "_work": np.empty(0)}

    @property
    def n_features(self) -> int:
        return len(self.mean)

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch)
        for start in range(0, len(batch), UPDATE_ROWS):
            self._update(batch[start : start + UPDATE_ROWS])

    def _update(self, batch: np.ndarray) -> None:
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
        self._add_mean(m, batch_mean)

    def _add_mean(self, m: int, mean: np.ndarray) -> None:
        """Fold in the count and mean of ``m`` rows whose own scatter is already added."""
        total = self.n + m
        delta = mean - self.mean
        if self.n:
            self.scatter = dsyr(self.n * m / total, delta, lower=0, a=self.scatter, overwrite_a=1)
        self.mean += delta * (m / total)
        self.n = total

    def merge(self, other: ScatterAccumulator) -> ScatterAccumulator:
        """Add the rows ``other`` has seen to this accumulator (in place) and return it.

        Exact, as if every row had been accumulated here (Chan et al.'s
        pairwise combination), so shards accumulated apart combine into the
        statistics of the whole.
        """
        if other.n_features != self.n_features:
            raise invalid_value(
                "other", f"an accumulator of {self.n_features} features", f"one of {other.n_features}"
            )
        if other.n:
            self.scatter += other.scatter
            self._add_mean(other.n, other.mean)
        return self

    def copy(self) -> ScatterAccumulator:
        return ScatterAccumulator.from_array(self.to_array())

    def to_array(self) -> np.ndarray:
        """The state as one flat float64 array: ``[n, mean..., upper scatter...]``."""
        upper = self.scatter[np.triu_indices(self.n_features)]
        return np.concatenate([[float(self.n)], self.mean, upper])

    @classmethod
    def from_array(cls, array) -> ScatterAccumulator:
        """The accumulator whose :meth:`to_array` is ``array``."""
        array = np.asarray(array, dtype=np.float64)
        # len = 1 + d + d (d + 1) / 2
        n_features = int(round((np.sqrt(1 + 8 * array.size) - 3) / 2)) if array.ndim == 1 else -1
        if n_features < 0 or array.size != 1 + n_features + n_features * (n_features + 1) // 2 or array[0] < 0:
            raise invalid_value(
                "array",
                "the flat array of ScatterAccumulator.to_array()",
                f"an array of shape {array.shape}",
            )
        accumulator = cls(n_features)
        accumulator.n = int(array[0])
        accumulator.mean = array[1 : 1 + n_features].copy()
        accumulator.scatter[np.triu_indices(n_features)] = array[1 + n_features :]
        return accumulator

    def in_scaled_space(self, offset, scale) -> ScatterAccumulator:
        """The accumulator of ``(x - offset) / scale`` for the rows seen, exact
        without a second pass (mean and scatter transform affinely)."""
        scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), self.mean.shape)
        scaled = ScatterAccumulator(self.n_features)
        scaled.n = self.n
        scaled.mean = (self.mean - offset) / scale
        scaled.scatter = np.asfortranarray(self.scatter / np.outer(scale, scale))
        return scaled

    def variance(self) -> np.ndarray:
        """Per-column (population) variance of the rows seen."""
        return np.diag(self.scatter) / max(self.n, 1)

    def covariance(self) -> np.ndarray:
        upper = np.triu(self.scatter)
        full = upper + np.triu(upper, 1).T
        return full / max(self.n - 1, 1)


class _Eigen(NamedTuple):
    """Every principal direction (rows, by decreasing variance) and its variance, with the mean."""

    mean: np.ndarray
    directions: np.ndarray
    variances: np.ndarray


def _solve(accumulator: ScatterAccumulator) -> _Eigen:
    eigenvalues, eigenvectors = scipy.linalg.eigh(accumulator.covariance())
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    directions = eigenvectors[:, order].T
    # Deterministic signs: the largest-magnitude loading of each direction is positive.
    signs = np.sign(directions[np.arange(len(directions)), np.argmax(np.abs(directions), axis=1)])
    directions *= signs[:, None]
    return _Eigen(accumulator.mean.copy(), directions, eigenvalues)


class PCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Exact principal component analysis, fitted by streaming batches.

    ``fit``, ``transform``, :meth:`mse_by_components` and
    :meth:`reconstruction_mse` take an array or a row source (see the module
    docstring), which they read a block at a time.

    Parameters
    ----------
    n_components : int, default=2
        Number of principal directions kept by ``transform``. All directions
        are learned, so reconstruction errors for every code size are
        available from :meth:`mse_by_components` at no extra cost.
    batch_size : int, default=2048
        Rows per batch in ``fit``, ``transform`` and ``mse_by_components``;
        bounds their float64 working memory.
    sample_rows : int >= 2 or None, default=None
        Fit on a sample of at least this many rows instead of all of them, as
        FAISS trains its PCA: whole blocks of a row source (whole slices of
        ``batch_size`` rows of an array), chosen by a fixed-seed permutation
        and read in order. An approximation: the directions are those of the
        sample, so reconstruction errors exceed those of the full fit by an
        amount measured in ``docs/pca_sample.md``. ``None`` (or at least as many
        rows as there are) fits on everything, exactly. ``partial_fit`` always
        takes every row it is given.

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
        "sample_rows": [Interval(Integral, 2, None, closed="left"), None],
    }

    def __init__(self, n_components=2, *, batch_size=2048, sample_rows=None):
        self.n_components = n_components
        self.batch_size = batch_size
        self.sample_rows = sample_rows

    @classmethod
    def from_accumulator(cls, accumulator: ScatterAccumulator, n_components=2, **params) -> PCA:
        """A PCA fitted on the rows that ``accumulator`` has seen.

        For statistics gathered elsewhere, e.g. shards accumulated by several
        processes and merged (:meth:`ScatterAccumulator.merge`): one
        eigendecomposition fits the whole, exactly as ``fit`` on all rows.
        ``params`` are the other constructor parameters.
        """
        pca = cls(n_components=n_components, **params)
        pca._validate_params()
        if accumulator.n < 2:
            raise invalid_value("accumulator", "statistics of at least 2 rows", f"{accumulator.n} rows")
        pca._check_n_components(accumulator.n_features)
        pca._set_statistics(accumulator.copy())
        pca._solved()
        return pca

    def fit(self, X, y=None):
        """Fit on every row of ``X`` (an array, table, row source, file, folder or pattern),
        or on a sample of them when ``sample_rows`` is set."""
        self._validate_params()
        X = opened(X)
        if is_row_source(X):
            self._check_source(X, reset=True)
            self._check_n_components(X.n_features)
            accumulator = self._accumulate_source(X, self._sampled_blocks(np.asarray(X.block_sizes)))
        else:
            X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
            self._check_n_components(X.shape[1])
            starts = np.arange(0, len(X), self.batch_size)
            sampled = starts[self._sampled_blocks(np.diff(np.append(starts, len(X))))]
            batches = (X[start : start + self.batch_size] for start in sampled)
            accumulator = self._accumulate(ScatterAccumulator(X.shape[1]), batches)
        self._set_statistics(accumulator)
        # Solved now, so that reading a fitted estimator never changes its state.
        self._solved()
        return self

    def partial_fit(self, X, y=None):
        """Add the rows of ``X`` (an array or a row source) to those seen so far.

        The result equals ``fit`` on all rows at once (to float64 round-off),
        so data that never fits in memory together can be fitted a chunk at
        a time: files, row groups, ``np.load(path, mmap_mode="r")`` slices.
        A call only accumulates; the d x d eigenproblem is solved once, when a
        learned attribute is next read, so many small chunks cost no more
        than a few large ones. The first call needs at least two rows.
        """
        first = not hasattr(self, "n_samples_seen_")
        if first:
            self._validate_params()
        X = opened(X)
        if is_row_source(X):
            self._check_source(X, reset=first)
            self._check_n_components(X.n_features)
            added = self._accumulate_source(X)
            accumulator = added if first else self._accumulator.merge(added)
        else:
            X = validate_data(
                self, X, dtype=[np.float64, np.float32], reset=first, ensure_min_samples=2 if first else 1
            )
            self._check_n_components(X.shape[1])
            accumulator = ScatterAccumulator(X.shape[1]) if first else self._accumulator
            self._accumulate(accumulator, self._batches([X]))
        self._set_statistics(accumulator)
        return self

    def _check_source(self, source, *, reset: bool) -> None:
        """What ``validate_data`` checks of an array, for a row source (whose values are checked once read)."""
        if reset:
            if source.n_rows < 2:
                raise invalid_value("X", "a row source of at least 2 rows", f"one of {source.n_rows} rows")
            self.n_features_in_ = source.n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif source.n_features != self.n_features_in_:
            raise ValueError(
                f"X has {source.n_features} features, but {type(self).__name__} "
                f"is expecting {self.n_features_in_} features as input."
            )

    def _check_n_components(self, n_features: int) -> None:
        if self.n_components > n_features:
            raise invalid_value(
                "n_components",
                f"at most the number of features ({n_features})",
                f"n_components={self.n_components}",
            )

    def _sampled_blocks(self, sizes: np.ndarray) -> np.ndarray:
        """Indices, ascending, of the blocks to fit on: all of them, or a
        fixed-seed random choice of blocks holding at least ``sample_rows`` rows."""
        if self.sample_rows is None or self.sample_rows >= sizes.sum():
            return np.arange(len(sizes))
        order = np.random.default_rng(0).permutation(len(sizes))
        taken = np.searchsorted(np.cumsum(sizes[order]), self.sample_rows) + 1
        return np.sort(order[:taken])

    def _batches(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for block in blocks:
            for start in range(0, len(block), self.batch_size):
                yield block[start : start + self.batch_size]

    @staticmethod
    def _accumulate(accumulator: ScatterAccumulator, batches: Iterable[np.ndarray]) -> ScatterAccumulator:
        for batch in batches:
            accumulator.update(batch)
        return accumulator

    def _accumulate_source(self, source, blocks: Iterable[int] | None = None) -> ScatterAccumulator:
        """A new accumulator of the source's blocks (all by default), its values checked."""
        with prefetch(source.iter_blocks(blocks)) as read:
            accumulator = self._accumulate(ScatterAccumulator(source.n_features), self._batches(read))
        # A non-finite value anywhere makes the mean or the scatter non-finite.
        if not (np.isfinite(accumulator.mean).all() and np.isfinite(np.diag(accumulator.scatter)).all()):
            raise ValueError("Input X contains NaN or infinity.")
        return accumulator

    def _set_statistics(self, accumulator: ScatterAccumulator) -> None:
        self._accumulator = accumulator
        self._eigen = None  # solved on first reading
        self.n_samples_seen_ = accumulator.n
        self.n_features_in_ = accumulator.n_features
        self._n_features_out = self.n_components

    def _solved(self) -> _Eigen:
        """The eigen-solution of the statistics so far, computed once per new data."""
        check_is_fitted(self)
        if self._eigen is None:
            self._eigen = _solve(self._accumulator)
        return self._eigen

    @property
    def mean_(self) -> np.ndarray:
        return self._solved().mean

    @property
    def all_components_(self) -> np.ndarray:
        return self._solved().directions

    @property
    def all_explained_variance_(self) -> np.ndarray:
        return self._solved().variances

    @property
    def feature_variance_(self) -> np.ndarray:
        """Each feature's (population) variance over the rows fitted: 0 exactly for a constant one."""
        check_is_fitted(self)
        return self._accumulator.variance()

    @property
    def components_(self) -> np.ndarray:
        return self._solved().directions[: self._n_features_out]

    @property
    def explained_variance_(self) -> np.ndarray:
        return self._solved().variances[: self._n_features_out]

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        variances = self._solved().variances
        total = variances.sum()
        k = self._n_features_out
        return variances[:k] / total if total > 0 else np.zeros(k)

    @contextlib.contextmanager
    def _rows(self, X) -> Iterator[tuple[int, Iterator[np.ndarray]]]:
        """The number of rows of ``X`` (checked against the fit) and its row batches, while the
        block lasts (a row source is read ahead, and the reading stops with the block)."""
        X = opened(X)
        if not is_row_source(X):
            X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
            yield len(X), self._batches([X])
            return
        self._check_source(X, reset=False)
        with prefetch(X.iter_blocks()) as blocks:
            yield X.n_rows, self._batches(blocks)

    def transform(self, X):
        """Codes of the rows of ``X`` (an array or a row source), as one array."""
        check_is_fitted(self)
        mean, components = self.mean_, self.components_
        with self._rows(X) as (n_rows, batches):
            codes = np.empty((n_rows, len(components)))
            # A batch of rows at a time: no float64 copy of the whole of X.
            start = 0
            for batch in batches:
                codes[start : start + len(batch)] = (batch - mean) @ components.T
                start += len(batch)
        return codes

    def inverse_transform(self, X):
        """Rows rebuilt from codes ``X`` (an array, or codes in any form a row source takes)."""
        check_is_fitted(self)
        X = opened(X)
        if is_row_source(X):
            parts = [self.inverse_transform(block) for block in X.iter_blocks()]
            return np.concatenate(parts) if parts else np.zeros((0, self.n_features_in_))
        X = check_codes(X, self._n_features_out, dtype=np.float64)
        return X @ self.components_ + self.mean_

    def mse_by_components(self, X, max_components=None, feature_weights=None) -> np.ndarray:
        """Mean squared reconstruction error of ``X`` for code sizes 0..max_components.

        ``X`` is an array or a row source. Entry ``k`` is the MSE (averaged
        over samples and features) of the reconstruction from the first ``k``
        principal directions. Because the directions are orthonormal, one
        projection gives every ``k``. ``feature_weights`` weighs each
        feature's squared error, e.g. by the squared scale of standardised
        data to report errors in original units; that breaks orthogonality,
        so residuals are then updated per direction.
        """
        check_is_fitted(self)
        n_features = self.n_features_in_
        max_components = n_features if max_components is None else min(max_components, n_features)
        directions = self.all_components_[:max_components]
        mean = self.mean_
        weights = None if feature_weights is None else np.asarray(feature_weights, dtype=np.float64)
        errors = np.zeros(max_components + 1)
        # A batch of rows at a time: no float64 copy of the whole of X.
        with self._rows(X) as (n_rows, batches):
            for batch in batches:
                centred = batch.astype(np.float64) - mean
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
        return np.maximum(errors, 0.0) / (n_rows * n_features)

    def reconstruction_mse(self, X) -> float:
        """Mean squared error of reconstructing ``X`` (an array or a row source) from ``n_components`` directions."""
        check_is_fitted(self)
        return float(self.mse_by_components(X, self._n_features_out)[self._n_features_out])

    def score(self, X, y=None) -> float:
        """Negative reconstruction MSE (higher is better)."""
        return -self.reconstruction_mse(X)

    def score_samples(self, X) -> np.ndarray:
        """Each row's negative reconstruction MSE from ``n_components`` directions (as
        :meth:`aepca.Autoencoder.score_samples`, not scikit-learn's log-likelihood)."""
        check_is_fitted(self)
        mean, components = self.mean_, self.components_
        parts = []
        with self._rows(X) as (_, batches):
            for batch in batches:
                centred = batch.astype(np.float64) - mean
                residual = centred - (centred @ components.T) @ components
                parts.append(-np.einsum("ij,ij->i", residual, residual) / self.n_features_in_)
        return np.concatenate(parts) if parts else np.zeros(0)


def equivalent_components(mse_by_k: np.ndarray, target_mse: float) -> int:
    """The smallest code size whose PCA error is at or below ``target_mse``.

    Returns ``len(mse_by_k)`` when no size in the curve is good enough.
    """
    good = np.flatnonzero(np.asarray(mse_by_k) <= target_mse)
    return int(good[0]) if good.size else len(mse_by_k)
