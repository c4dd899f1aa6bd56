"""Exact PCA from scatter matrices accumulated over batches.

The scatter of the rows about their mean is accumulated part by part (products
in the rows' precision, sums in float64; see :class:`ScatterAccumulator`), so
data never has to be in memory at once, and a symmetric eigendecomposition of
the d x d scatter gives every principal direction (accuracy and cost: docs/pca.md).

Data bigger than memory comes as a *row source*: an object with ``n_features``,
``n_rows``, ``n_blocks``, ``block_sizes`` and ``read(i)`` (block ``i`` as a
float32 array), such as those of :mod:`aepca.data.sources`. Fitting,
``transform`` and the error curves read it a block at a time, the next block in
a background thread. Accumulators of separate shards merge exactly
(:meth:`ScatterAccumulator.merge`), and one eigendecomposition
(:meth:`PCA.from_accumulator`) fits the whole.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator
from numbers import Integral
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, RealNotInt
from sklearn.utils.validation import check_is_fitted, validate_data

from aepca.data.columns import ColumnSpec
from aepca.data.sources import open_source
from aepca.inputs import check_finite, check_has_columns, is_arrow_table, numbers_expected, opened, refuse_non_finite
from aepca.prefetch import prefetch
from aepca.validation import check_codes, invalid_value


# Rows whose scatter is one float32 product (see ScatterAccumulator): their count bounds the
# rounding a product adds up (about sqrt(rows) float32 epsilons); a part of PART_BYTES stays in
# the processor's cache between centring it and multiplying it (docs/pca.md).
PART_ROWS = 8192
PART_BYTES = 8 * 2**20


def is_row_source(X) -> bool:
    """Whether ``X`` is a row source, read a block at a time, rather than an array."""
    return hasattr(X, "read") and hasattr(X, "n_blocks") and not isinstance(X, np.ndarray)


class ScatterAccumulator:
    """Running count, mean and centred scatter matrix of rows, in float64, from products in the
    rows' precision.

    Rows are gathered into parts of a fixed number of rows, counted from the first row seen, so
    the parts (and the result) do not depend on how the rows were batched. Every part is taken
    less one shift (the first part's mean, rounded to the rows' precision, moved when rows drift
    away from it), and its products are one BLAS product in the rows' precision, summed in
    float64 (accuracy: docs/pca.md). A constant column's variance is exactly 0. Reading the
    statistics folds in the part still gathering without ending it. Accumulators of disjoint rows
    merge exactly (:meth:`merge`) and travel between processes as one flat array (:meth:`to_array`).

    While there are no more rows than features, the rows themselves are kept instead and no d x d
    scatter is made (a wide table's would not fit): their directions then come from the centred rows.
    """

    def __init__(self, n_features: int):
        self._n = 0
        # Rows are accumulated less the shift: sums of (row - shift) and of its outer products.
        self._shift = np.zeros(n_features)
        self._sums = np.zeros(n_features)
        self._products = None  # made when the rows outnumber the features: a wide table's would not fit
        self._part_rows = max(1, min(PART_ROWS, PART_BYTES // (4 * max(n_features, 1))))
        self._part = np.empty((0, n_features), np.float32)
        self._filled = 0
        self._folded = None
        self._held: list[np.ndarray] | None = []  # the rows, while they are no more than the features

    def __getstate__(self) -> dict:
        # Of the part buffer, only the rows gathered so far.
        return {**self.__dict__, "_part": self._part[: self._filled].copy(), "_folded": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"_held": None, **state})  # pickled before rows were kept: products
        gathered, self._part = self._part, np.empty((self._part_rows, self.n_features), self._part.dtype)
        self._part[: len(gathered)] = gathered

    @property
    def n_features(self) -> int:
        return len(self._shift)

    @property
    def n(self) -> int:
        return sum(map(len, self._held)) if self._held is not None else self._n + self._filled

    @property
    def held_rows(self) -> np.ndarray | None:
        """The rows seen, in float64, while they are kept (no more rows than features); else None."""
        rows = self.kept_rows
        return None if rows is None else rows.astype(np.float64)

    @property
    def kept_rows(self) -> np.ndarray | None:
        """The rows seen, as they came, while they are kept (no more rows than features); else None.
        Joined into one array once, not at every reading."""
        if self._held is None:
            return None
        if len(self._held) != 1:
            self._held = [np.concatenate(self._held) if self._held else np.zeros((0, self.n_features))]
        return self._held[0]

    @property
    def mean(self) -> np.ndarray:
        rows = self.kept_rows
        if rows is not None:
            return rows.mean(axis=0, dtype=np.float64) if len(rows) else np.zeros(self.n_features)
        whole = self._whole()
        return whole._shift + whole._sums / max(whole._n, 1)

    @property
    def scatter(self) -> np.ndarray:
        """The centred scatter matrix (symmetric, Fortran order)."""
        rows = self.held_rows
        if rows is not None:
            centred = rows - rows.mean(axis=0) if len(rows) else rows
            return np.asfortranarray(centred.T @ centred)
        whole = self._whole()
        return whole._products - np.outer(whole._sums, whole._sums / max(whole._n, 1))

    def _whole(self) -> ScatterAccumulator:
        """The statistics of every row seen: this accumulator, or a copy with its gathering part
        folded in (kept until the next update), so that reading leaves the part to gather on."""
        if not self._filled:
            return self
        if self._folded is None:
            folded = copy.copy(self)
            folded._sums, folded._products = self._sums.copy(), self._products.copy()
            folded._part = self._part[: self._filled].copy()
            folded._settle()
            self._folded = folded
        return self._folded

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch)
        self._folded = None
        if self._held is not None:
            if self.n + len(batch) <= self.n_features:
                self._held.append(batch.copy())  # a copy: the caller may reuse or change its array
                return
            # More rows than features: from here on, products (the kept rows first, in their order).
            held, self._held = self._held, None
            self._products = np.zeros((self.n_features, self.n_features), order="F")
            for rows in held:
                self._add(rows)
        self._add(batch)

    def _add(self, batch: np.ndarray) -> None:
        start = 0
        while start < len(batch):
            if self._filled == 0:
                self._start_part(batch[start])
            taken = min(self._part_rows - self._filled, len(batch) - start)
            part = self._part[self._filled : self._filled + taken]
            # A non-finite value is refused once it reaches the statistics (see _accumulated).
            with np.errstate(invalid="ignore", over="ignore"):
                np.subtract(batch[start : start + taken], self._part_shift, out=part, casting="same_kind")
            self._filled += taken
            start += taken
            if self._filled == self._part_rows:
                self._settle()

    def _start_part(self, first_row: np.ndarray) -> None:
        # Products in the rows' precision, as scikit-learn computes: float32 rows, float32 products.
        dtype = np.float32 if first_row.dtype == np.float32 else np.float64
        if self._part.dtype != dtype or len(self._part) < self._part_rows:
            self._part = np.empty((self._part_rows, self.n_features), dtype)
        # A shift the part's precision holds exactly, so that subtracting it rounds only the result.
        shift = (self._shift if self._n else first_row).astype(dtype)
        self._move_shift(shift.astype(np.float64))
        self._part_shift = shift

    def _settle(self) -> None:
        """Fold the rows gathered in the current part into the statistics."""
        m, self._filled = self._filled, 0
        part = self._part[:m]
        # A non-finite value is refused once it reaches the statistics (see _accumulated), without warnings.
        with np.errstate(invalid="ignore", over="ignore"):
            sums = _column_sums(part)
            offset = sums / m
            # Rows far from the shift (the first part, shifted by its first row; rows that drift)
            # would make products of large values that cancel: they are re-centred first.
            if not self._n or 16 * (offset @ offset) > self._spread():
                move = offset.astype(part.dtype)
                part -= move
                self._move_shift(self._shift + move)
                sums = _column_sums(part)
            # The product is symmetric: its transpose adds to the Fortran-ordered sum in memory order.
            self._products += (part.T @ part).T
        self._sums += sums
        self._n += m

    def _spread(self) -> float:
        """The rows' variance summed over columns (the scatter's trace over the count)."""
        return (np.trace(self._products) - self._sums @ self._sums / self._n) / self._n

    def _move_shift(self, shift: np.ndarray) -> None:
        """Take the rows seen so far less ``shift`` instead (exact, in float64)."""
        step = shift - self._shift
        if self._n and step.any():
            moved = self._sums - self._n * step
            self._products += np.outer(self._n * step - self._sums, step) - np.outer(step, self._sums)
            self._sums = moved
        self._shift = shift

    def merge(self, other: ScatterAccumulator) -> ScatterAccumulator:
        """Add the rows ``other`` has seen to this accumulator (in place) and return it.

        Exact, as if every row had been accumulated here (Chan et al.'s pairwise combination of
        counts, means and centred scatters), so shards accumulated apart combine into the
        statistics of the whole.
        """
        if other.n_features != self.n_features:
            raise invalid_value("other", f"an accumulator of {self.n_features} features", f"one of {other.n_features}")
        if self._held is not None and other._held is not None and self.n + other.n <= self.n_features:
            self._held = self._held + other._held  # kept rows are never changed in place
            return self
        if other.n:
            n, mean, scatter = self.n, self.mean, self.scatter
            total, delta = n + other.n, other.mean - mean
            # As to_array keeps it (the upper triangle), so that a copy that travelled merges the same.
            scatter += _mirrored_upper(other.scatter) + (n * other.n / total) * np.outer(delta, delta)
            self._n, self._shift, self._sums = total, mean + delta * (other.n / total), np.zeros(self.n_features)
            self._products, self._filled, self._folded, self._held = np.asfortranarray(scatter), 0, None, None
        return self

    def copy(self) -> ScatterAccumulator:
        return copy.deepcopy(self)

    def to_array(self) -> np.ndarray:
        """The state as one flat float64 array: ``[n, mean..., upper scatter...]``."""
        upper = self.scatter[np.triu_indices(self.n_features)]
        return np.concatenate([[float(self.n)], self.mean, upper])

    @staticmethod
    def array_size(n_features: int) -> int:
        """The length of :meth:`to_array`'s array for ``n_features`` features."""
        return 1 + n_features + n_features * (n_features + 1) // 2

    @classmethod
    def from_array(cls, array) -> ScatterAccumulator:
        """The accumulator whose :meth:`to_array` is ``array``."""
        array = np.asarray(array, dtype=np.float64)
        # Solving array_size(d) = len for d.
        n_features = int(round((np.sqrt(1 + 8 * array.size) - 3) / 2)) if array.ndim == 1 else -1
        if n_features < 0 or array.size != cls.array_size(n_features) or array[0] < 0:
            raise invalid_value("array", "the flat array of ScatterAccumulator.to_array()",
                                f"an array of shape {array.shape}")
        upper = np.zeros((n_features, n_features))
        upper[np.triu_indices(n_features)] = array[1 + n_features :]
        return cls._of(int(array[0]), array[1 : 1 + n_features], _mirrored_upper(upper))

    @classmethod
    def _of(cls, n: int, mean: np.ndarray, scatter: np.ndarray) -> ScatterAccumulator:
        accumulator = cls(len(mean))
        accumulator._n, accumulator._shift = n, np.array(mean, dtype=np.float64)
        accumulator._products = np.asfortranarray(scatter, dtype=np.float64)
        accumulator._held = None
        return accumulator

    def in_scaled_space(self, offset, scale) -> ScatterAccumulator:
        """The accumulator of ``(x - offset) / scale`` for the rows seen, exact
        without a second pass (mean and scatter transform affinely)."""
        scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (self.n_features,))
        rows = self.held_rows
        if rows is not None:
            scaled = type(self)(self.n_features)
            scaled._held = [(rows - offset) / scale]
            return scaled
        return self._of(self.n, (self.mean - offset) / scale, self.scatter / np.outer(scale, scale))

    def variance(self) -> np.ndarray:
        """Per-column (population) variance of the rows seen."""
        rows = self.kept_rows
        if rows is not None:
            return rows.var(axis=0, dtype=np.float64) if len(rows) else np.zeros(self.n_features)
        # Not below 0, where cancelling (or products that underflow) can round a column's.
        return np.maximum(np.diag(self.scatter), 0.0) / max(self.n, 1)

    def covariance(self) -> np.ndarray:
        return self.scatter / max(self.n - 1, 1)


def _mirrored_upper(matrix: np.ndarray) -> np.ndarray:
    """The symmetric matrix of ``matrix``'s upper triangle (the one :meth:`ScatterAccumulator.to_array` keeps)."""
    return np.triu(matrix) + np.triu(matrix, 1).T


def _column_sums(part: np.ndarray) -> np.ndarray:
    """A part's column sums, summed as its products are (by BLAS, in the rows' precision), in float64."""
    return (np.ones(len(part), part.dtype) @ part).astype(np.float64)


def _accumulated(n_features: int, batches: Iterable[np.ndarray], X) -> ScatterAccumulator:
    """A new accumulator of ``batches``, the rows of ``X``, checked: a non-finite value in any row makes the
    mean or the scatter non-finite, and only then are the rows read again, to name the first bad cell."""
    accumulator = ScatterAccumulator(n_features)
    for batch in batches:
        accumulator.update(batch)
    if not (np.isfinite(accumulator.mean).all() and np.isfinite(accumulator.variance()).all()):
        refuse_non_finite(X)
    return accumulator


class _Eigen(NamedTuple):
    """Every principal direction (rows, by decreasing variance) and its variance, with the mean,
    and how many directions are kept (``n_components``'s count)."""

    mean: np.ndarray
    directions: np.ndarray
    variances: np.ndarray
    kept: int


def _kept(n_components, variances: np.ndarray) -> int:
    """The directions ``n_components`` keeps: that many, all of them (None), or as scikit-learn's PCA
    reads a fraction, the fewest whose variance exceeds that fraction of the total."""
    if n_components is None:
        return len(variances)
    if isinstance(n_components, Integral):
        return int(n_components)
    total = variances.sum()
    if total <= 0:
        return 1
    return min(int(np.searchsorted(np.cumsum(variances) / total, n_components, side="right")) + 1, len(variances))


def _solve(accumulator: ScatterAccumulator, n_components) -> _Eigen:
    """Every direction of the rows seen, and at least as many as ``n_components`` asks for (None: as
    many as the smaller of rows and features, as scikit-learn's PCA keeps)."""
    if isinstance(n_components, Integral):
        count = n_components
    else:  # a fraction is reached within the directions of nonzero variance
        count = min(accumulator.n, accumulator.n_features) if n_components is None else 1
    rows = accumulator.held_rows
    if rows is not None:
        # No more rows than features: the directions from the n x n Gram matrix of the centred rows,
        # whose nonzero eigenvalues are the d x d scatter's (faster than the rows' SVD, docs/pca.md),
        # those of nonzero variance, then zero-variance ones orthogonal to them up to count.
        mean = rows.mean(axis=0)
        centred = rows - mean
        gram_values, gram_vectors = np.linalg.eigh(centred @ centred.T)
        gram_values, gram_vectors = gram_values[::-1], gram_vectors[:, ::-1]
        # Directions of no variance beyond the Gram matrix's rounding (centring leaves at least one)
        # are left out; those kept are accurate enough for the Cholesky step to make orthonormal.
        kept = gram_values > max(rows.shape) * np.finfo(np.float64).eps * max(gram_values[0], 0.0)
        directions = ((centred.T @ gram_vectors[:, kept]) / np.sqrt(gram_values[kept])).T
        # Orthonormal to rounding only where the variance is far below the largest: made so in their
        # order by one Cholesky QR step (BLAS-3, unlike Householder's, on these nearly orthonormal rows).
        directions = np.linalg.inv(np.linalg.cholesky(directions @ directions.T)) @ directions
        directions = _completed(directions, count)
        eigenvalues = np.zeros(len(directions))
        eigenvalues[: kept.sum()] = gram_values[kept] / max(len(rows) - 1, 1)
    else:
        # NumPy's LAPACK (divide and conquer), on the BLAS threads that made the products: SciPy's
        # BLAS is another library whose threads would contend with those still spinning.
        mean = accumulator.mean.copy()
        eigenvalues, eigenvectors = np.linalg.eigh(accumulator.covariance())
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues = np.clip(eigenvalues[order], 0.0, None)
        directions = eigenvectors[:, order].T
    # Deterministic signs: the largest-magnitude loading of each direction is positive.
    signs = np.sign(directions[np.arange(len(directions)), np.argmax(np.abs(directions), axis=1)])
    directions *= signs[:, None]
    return _Eigen(mean, directions, eigenvalues, _kept(n_components, eigenvalues))


def _completed(directions: np.ndarray, count: int) -> np.ndarray:
    """Orthonormal rows ``directions`` and more rows orthonormal to them, ``count`` in all (when fewer)."""
    if len(directions) >= count:
        return directions
    # A Householder Q is orthonormal whatever the columns; its first ones span the directions.
    extra = np.eye(directions.shape[1], count - len(directions))
    basis = np.linalg.qr(np.hstack([directions.T, extra]))[0]
    return np.vstack([directions, basis[:, len(directions) :].T])


class PCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Exact principal component analysis, fitted by streaming batches.

    ``fit``, ``transform``, :meth:`mse_by_components` and
    :meth:`reconstruction_mse` take an array or a row source (see the module
    docstring), which they read a block at a time.

    Parameters
    ----------
    n_components : int, float in (0, 1) or None, default=2
        Number of principal directions kept by ``transform``; a fraction keeps
        the fewest directions whose variance exceeds that fraction of the
        total, and None as many as the smaller of rows and features (both as
        in scikit-learn's PCA; the count is ``n_components_``). All directions
        are learned, so reconstruction errors for every code size are
        available from :meth:`mse_by_components` at no extra cost.
    batch_size : int, default=2048
        Rows per batch in ``transform`` and ``mse_by_components`` (bounds their
        float64 working memory), and per slice of an array that ``sample_rows``
        chooses from.
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
    n_components_ : int
    all_components_ : ndarray of shape (n_directions, n_features)
        Every principal direction, by decreasing variance: ``n_features`` of them, or on a wide
        table (no more rows than features) those of nonzero variance (fewer than the rows), and
        zero-variance ones up to ``n_components``.
    all_explained_variance_ : ndarray of shape (n_directions,)
    columns_ : ColumnSpec or None
        The named columns fitted on (a table's or a file's), by which later tables and files are read,
        as :class:`aepca.Autoencoder` reads them; None after a fit on an array (columns by position).
    n_samples_seen_ : int
    n_features_in_ : int
    """

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left"), Interval(RealNotInt, 0, 1, closed="neither"), None],
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
            # Values are checked through the statistics, without a pass of their own.
            rows = self._validated(X, ensure_min_samples=2)
            self._check_n_components(rows.shape[1])
            starts = np.arange(0, len(rows), self.batch_size)
            chosen = starts[self._sampled_blocks(np.diff(np.append(starts, len(rows))))]
            # Every row in one update (the accumulator parts them): the same statistics, less overhead.
            batches = [rows] if len(chosen) == len(starts) else (rows[start : start + self.batch_size] for start in chosen)
            accumulator = _accumulated(rows.shape[1], batches, X)
        self._set_statistics(accumulator)
        self.columns_ = self._fitted_columns(X)
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
        X = opened(X) if first else self._opened(X)
        if is_row_source(X):
            self._check_source(X, reset=first)
            self._check_n_components(X.n_features)
            added = self._accumulate_source(X)
            accumulator = added if first else self._accumulator.merge(added)
        else:
            X = check_finite(self._validated(X, reset=first, ensure_min_samples=2 if first else 1), X)
            self._check_n_components(X.shape[1])
            accumulator = ScatterAccumulator(X.shape[1]) if first else self._accumulator
            accumulator.update(X)
        self._set_statistics(accumulator)
        if first:
            self.columns_ = self._fitted_columns(X)
        return self

    def _validated(self, X, **params) -> np.ndarray:
        """``X`` as scikit-learn validates it (float32 kept float32), its values not yet checked."""
        with numbers_expected():
            return validate_data(self, X, dtype=[np.float64, np.float32], ensure_all_finite=False, **params)

    def _fitted_columns(self, X) -> ColumnSpec | None:
        """The columns of named rows just fitted on (a row source's, or a DataFrame's names), which later
        tables and files are read by; None for an array, whose columns are taken by position."""
        if is_row_source(X):
            return getattr(X, "columns", None)  # a row source of its own making may have none
        names = getattr(self, "feature_names_in_", None)
        return None if names is None else ColumnSpec(columns=tuple(names), feature_names=tuple(names))

    def _opened(self, X):
        """``X`` given after a fit: tables and files read by the names of the columns fitted on, as the
        Autoencoder reads them (a DataFrame after a fit on one: its columns taken by name, as they are);
        arrays, and everything after a fit on an array, by position."""
        spec = getattr(self, "columns_", None)  # absent from a PCA pickled before it was kept
        names = getattr(self, "feature_names_in_", None)
        if names is not None and hasattr(X, "columns") and hasattr(X, "dtypes") and not is_arrow_table(X):
            check_has_columns(X, names)
            return opened(X if list(X.columns) == list(names) else X[list(names)])
        if spec is not None and hasattr(X, "columns"):
            return open_source(X, spec=spec)
        return opened(X, spec=spec)

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
        if isinstance(self.n_components, Integral) and self.n_components > n_features:
            raise invalid_value("n_components", f"at most the number of features ({n_features})",
                                f"n_components={self.n_components}")

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

    def _accumulate_source(self, source, blocks: Iterable[int] | None = None) -> ScatterAccumulator:
        """A new accumulator of the source's blocks (all by default), its values checked."""
        with prefetch(source.iter_blocks(blocks)) as read:
            return _accumulated(source.n_features, read, source)

    def _set_statistics(self, accumulator: ScatterAccumulator) -> None:
        self._accumulator = accumulator
        self._eigen = None  # solved on first reading
        self.n_samples_seen_ = accumulator.n
        self.n_features_in_ = accumulator.n_features

    def _solved(self) -> _Eigen:
        """The eigen-solution of the statistics so far, computed once per new data."""
        check_is_fitted(self)
        if self._eigen is None:
            self._eigen = _solve(self._accumulator, self.n_components)
        return self._eigen

    @property
    def n_components_(self) -> int:
        return self._solved().kept

    _n_features_out = n_components_  # the count scikit-learn's get_feature_names_out reads

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
        X = self._opened(X)
        if is_row_source(X):
            self._check_source(X, reset=False)
            with prefetch(X.iter_blocks()) as blocks:
                yield X.n_rows, self._batches(blocks)
        else:
            X = check_finite(self._validated(X, reset=False), X)
            yield len(X), self._batches([X])

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
        # A wide table has fewer directions than features: past them, nothing is left to capture.
        directions = self.all_components_[:max_components]
        mean = self.mean_
        weights = None if feature_weights is None else np.asarray(feature_weights, dtype=np.float64)
        errors = np.zeros(len(directions) + 1)
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
                for k in range(len(directions)):
                    residual -= np.outer(projections[:, k], directions[k])
                    errors[k + 1] += np.einsum("ij,ij,j->", residual, residual, weights)
        errors = np.pad(errors, (0, max_components - len(directions)), mode="edge")
        return np.maximum(errors, 0.0) / (n_rows * n_features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # rows made dense a block at a time
        return tags

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


# Errors this close are equal: a network computes in float32, so one that is PCA's projection (PCA
# kept as the model) scores within a few float32 epsilons of PCA's float64 error (measured: 1e-7).
EQUAL_MSE_RTOL = 64 * float(np.finfo(np.float32).eps)


def equivalent_components(mse_by_k: np.ndarray, target_mse: float) -> int:
    """The smallest code size whose PCA error is at or below ``target_mse`` (within EQUAL_MSE_RTOL).

    Returns ``len(mse_by_k)`` when no size in the curve is good enough.
    """
    good = np.flatnonzero(np.asarray(mse_by_k) <= target_mse * (1 + EQUAL_MSE_RTOL))
    return int(good[0]) if good.size else len(mse_by_k)
