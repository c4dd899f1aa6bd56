"""The error space: per-feature scaling with JSON-serialisable state.

``x_scaled = (x - offset_) / scale_``. PCA and the autoencoder are both fitted
and scored on ``x_scaled``, so the scaling chooses the space in which errors
are measured. The learned offsets and scales are float64 so that saved models
reproduce the exact transform.

Everything here is decided by per-column statistics and a sample of rows
(:class:`ColumnSummary`), so data bigger than memory is scaled from one pass
over a row source (:func:`aepca.statistics.scan`) without holding it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aepca.validation import check_features, invalid_value

_CHUNK_ROWS = 8192  # bounds the float64 temporaries of the variance pass
# Columns share one unit when the standard deviations of the columns that vary
# densely (non-zero interquartile range) lie within this factor of each other.
# Measured: pixels (MNIST, digits) and embeddings 1.0-2.2, mixed-unit tables
# (scikit-learn's wine, breast cancer, raw diabetes) 69 and more.
ONE_UNIT_SPREAD = 10.0
UNIT_SAMPLE_ROWS = 20000
# The network's per-column input scales are at least this share of the typical
# column scale: near-constant columns (border pixels) are not blown up.
NETWORK_SCALE_FLOOR = 0.1
# Rows applied to a model are noted when they lie this many training standard deviations from the
# training rows' mean, or vary this many times less (root mean square over columns, error space).
FAR_FROM_TRAINING = 10.0


def _unit_sample(X: np.ndarray) -> np.ndarray:
    """An evenly spaced sample of rows: enough to judge spreads."""
    return X[:: max(1, len(X) // UNIT_SAMPLE_ROWS)]


def shares_one_unit(X) -> tuple[bool, str]:
    """Whether the columns of ``X`` look like one quantity in one unit
    (pixels, embeddings, columns of similar spread), and why.

    ``X`` is an array or its :class:`ColumnSummary` (same answer: only the
    column extremes and the summary's sample of rows are looked at).
    """
    if isinstance(X, ColumnSummary):
        within, sample = bool(X.low.min() >= 0.0 and X.high.max() <= 1.0), X.sample
    else:
        X = check_features(X)
        within, sample = bool(X.min() >= 0.0 and X.max() <= 1.0), _unit_sample(X)
    if within:
        return True, "every value lies in [0, 1]"
    low, high = np.percentile(sample, [25, 75], axis=0)
    stds = sample.std(axis=0, dtype=np.float64)
    dense = stds[(high > low) & (stds > 0)]
    if dense.size < 2:
        dense = stds[stds > 0]
        if dense.size < 2:
            return True, "at most one column varies"
    ratio = float(dense.max() / dense.min())
    what = "the densely varying columns'" if dense.size < np.count_nonzero(stds) else "the columns'"
    if ratio <= ONE_UNIT_SPREAD:
        return True, f"{what} standard deviations are within {ratio:.3g}x of each other"
    return False, f"{what} standard deviations differ {ratio:.3g}-fold (mixed units)"


def _mean_and_std(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and population standard deviations, in float64."""
    mean = X.mean(axis=0, dtype=np.float64)
    sq = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        sq += np.square(X[start : start + _CHUNK_ROWS] - mean).sum(axis=0)
    return mean, np.sqrt(sq / X.shape[0])


@dataclass(frozen=True, eq=False)
class ColumnSummary:
    """What the scaling decisions need of a set of rows, without the rows.

    ``n`` rows; per column, float64 ``mean``, population ``std``, and the
    extremes ``low`` and ``high``; ``sample``, float32 rows evenly spaced
    through the data (about ``UNIT_SAMPLE_ROWS``), on which
    :func:`shares_one_unit` judges spreads. Built from an array
    (:meth:`of`) or from one pass over a row source
    (:func:`aepca.statistics.scan`).
    """

    n: int
    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray
    sample: np.ndarray

    @classmethod
    def of(cls, X) -> ColumnSummary:
        """The summary of an array (its sample is a view of ``X``)."""
        X = check_features(X)
        mean, std = _mean_and_std(X)
        low, high = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
        return cls(len(X), mean, std, low, high, _unit_sample(X))

    def in_scaled_space(self, offset, scale) -> ColumnSummary:
        """The summary of the rows ``(x - offset) / scale`` (positive scales),
        computed from this one; the sample is scaled in float32 as
        :meth:`Scaler.transform` scales rows."""
        offset = np.asarray(offset, dtype=np.float64)
        scale = np.asarray(scale, dtype=np.float64)
        sample = (self.sample - offset.astype(np.float32)) / scale.astype(np.float32)
        return ColumnSummary(
            self.n, (self.mean - offset) / scale, self.std / scale,
            (self.low - offset) / scale, (self.high - offset) / scale, sample,
        )


# Each method's (offset, scale) from the summary of the rows.
_METHODS = {
    "minmax": lambda summary: (summary.low, summary.high - summary.low),
    "standard": lambda summary: (summary.mean, summary.std),
    "none": lambda summary: (np.zeros(len(summary.mean)), np.ones(len(summary.mean))),
}
_OPTIONS = ("auto", *_METHODS)
# How each space's MSE reads, for tables, figures and reports.
UNITS = {
    "none": "the data's own units",
    "standard": "standardised units (each column's training variance is 1)",
    "minmax": "min-max units (each column's training range is [0, 1])",
}


class Scaler:
    """Scale each feature: ``"minmax"`` to [0, 1], ``"standard"`` to zero mean
    and unit (population) variance as scikit-learn's ``StandardScaler``,
    ``"none"`` unchanged, or ``"auto"``: ``"none"`` when the columns share one
    unit (:func:`shares_one_unit`), else ``"standard"``; ``reason_`` says why.

    Constant features get scale 1 (left as they are, less their mean).
    ``unit_interval_`` tells whether the scaled training data lies in [0, 1],
    i.e. whether a sigmoid decoder output can reproduce it. ``mean_`` and
    ``std_`` are the training rows' column moments in the data's units, which
    rows applied later are held against (:meth:`departure_notes`).

    ``fit`` takes an array or a :class:`ColumnSummary` of one (the same
    result), so a row source is scaled from its summary without holding it.
    """

    def __init__(self, method: str = "auto"):
        self.method = method

    def _resolve(self, summary: ColumnSummary) -> tuple[str, str]:
        if self.method not in _OPTIONS:
            raise invalid_value("method", f"one of {list(_OPTIONS)}", f"method={self.method!r}",
                                "Pick one of the listed options.")
        if self.method == "auto":
            one_unit, why = shares_one_unit(summary)
            return ("none" if one_unit else "standard"), f"auto: {why}"
        return self.method, "given"

    def fit(self, X, y=None) -> Scaler:
        """Learn the scaling of ``X``: an array, or a :class:`ColumnSummary` of one."""
        summary = X if isinstance(X, ColumnSummary) else ColumnSummary.of(X)
        self.method_, self.reason_ = self._resolve(summary)
        offset, scale = _METHODS[self.method_](summary)
        self.offset_ = offset
        self.scale_ = np.where(scale > 0.0, scale, 1.0)
        self.n_features_in_ = len(summary.mean)
        # Scaling is monotone per column, so the column extremes decide.
        low = (summary.low - offset) / self.scale_
        high = (summary.high - offset) / self.scale_
        self.unit_interval_ = bool(low.min() >= 0.0 and high.max() <= 1.0)
        self.mean_, self.std_ = summary.mean, summary.std
        return self

    def departure_notes(self, moments: RowMoments, rows: str = "the rows") -> list[str]:
        """Notes on ``rows`` (their ``moments``) that lie far from the training rows' mean or vary far
        less, in the error space: most often rows in other units (pixels of 0-255 against 0-1). None for
        a scaler saved without the training rows' moments."""
        self._check_fitted()
        if getattr(self, "mean_", None) is None:
            return []
        spread = float(np.sum(np.square(self.std_ / self.scale_)))
        if not moments.count or spread == 0.0:
            return []
        n, scale2 = moments.count, np.square(self.scale_)
        # Mean squared distance of the rows from the training mean, per column (the offset cancels), from
        # moments about their shift: (x - mean)^2 = (x - shift)^2 + 2 (x - shift) step + step^2.
        step = moments.shift - self.mean_
        distance2 = (moments.squares + 2 * step * moments.sums) / n + np.square(step)
        distance = float(np.sqrt(max(np.sum(distance2 / scale2), 0.0) / spread))
        hint = ("were they scaled as the training rows were (the same units; pixels divided by 255 or not)? A "
                "model's codes and reconstructions of rows unlike its training rows mean little.")
        if distance > FAR_FROM_TRAINING:
            return [f"{rows} lie {distance:.3g} training standard deviations from the training rows' mean (root "
                    f"mean square over columns, in the model's error space; rows like the training rows lie about 1 "
                    f"away): {hint}"]
        variance = (moments.squares - np.square(moments.sums) / n) / max(n - 1, 1)
        variation = float(np.sqrt(max(np.sum(variance / scale2), 0.0) / spread))
        # Rows that do not vary at all are copies of one row, whatever their units.
        varies = bool(np.any(moments.high > moments.low))
        if varies and variation * FAR_FROM_TRAINING < 1.0:
            less = f"{1 / variation:.3g} times" if variation > 0.0 else "far"  # 0: below the sums' rounding
            return [f"{rows} vary {less} less than the training rows (root mean "
                    f"square over columns, in the model's error space): {hint}"]
        return []

    def _check_fitted(self) -> None:
        if not hasattr(self, "scale_"):
            raise ValueError(
                "This Scaler is not fitted yet. Call fit(X) (or fit_transform) before transform."
            )

    def _params32(self) -> tuple[np.ndarray, np.ndarray]:
        # Computing in float32 avoids a float64 copy of the whole data set.
        return self.offset_.astype(np.float32), self.scale_.astype(np.float32)

    def transform(self, X) -> np.ndarray:
        """Scaled float32 copy of ``X``; with ``method_ == "none"`` the validated
        input itself (no copy of large pixel data)."""
        self._check_fitted()
        X = check_features(X, n_features=self.n_features_in_)
        if self.method_ == "none":
            return X
        offset, scale = self._params32()
        return (X - offset) / scale

    def inverse_transform(self, Z) -> np.ndarray:
        self._check_fitted()
        Z = check_features(Z, name="Z", n_features=self.n_features_in_)
        if self.method_ == "none":
            return Z
        offset, scale = self._params32()
        return Z * scale + offset

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X).transform(X)

    @property
    def units(self) -> str:
        """How an MSE in this scaler's space reads."""
        self._check_fitted()
        return UNITS[self.method_]

    def to_dict(self) -> dict:
        """JSON-ready state; ``Scaler.from_dict`` restores it exactly."""
        self._check_fitted()
        return {
            "method": self.method,
            "method_": self.method_,
            "reason": self.reason_,
            "offset": self.offset_.tolist(),
            "scale": self.scale_.tolist(),
            "unit_interval": self.unit_interval_,
            **{key: None if getattr(self, f"{key}_", None) is None else getattr(self, f"{key}_").tolist()
               for key in ("mean", "std")},
        }

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        missing = {"method", "method_", "offset", "scale", "unit_interval"} - set(d)
        if missing:
            raise invalid_value("scaler metadata", "keys method, method_, offset, scale and unit_interval",
                                f"missing {sorted(missing)}", "Re-save the model.")
        offset = np.asarray(d["offset"], dtype=np.float64)
        scale = np.asarray(d["scale"], dtype=np.float64)
        if offset.ndim != 1 or offset.shape != scale.shape or d["method_"] not in _METHODS:
            raise invalid_value(
                "scaler metadata", f"equal-length offset and scale lists and method_ in {list(_METHODS)}",
                f"offset of shape {offset.shape}, scale of shape {scale.shape}, method_={d['method_']!r}",
                "Re-save the model.",
            )
        scaler = cls(method=d["method"])
        scaler.method_ = d["method_"]
        scaler.reason_ = d.get("reason", "given")
        scaler.offset_ = offset
        scaler.scale_ = scale
        scaler.n_features_in_ = offset.shape[0]
        scaler.unit_interval_ = bool(d["unit_interval"])
        # Models saved before the training rows' moments were kept have none.
        moments = [None if d.get(key) is None else np.asarray(d[key], dtype=np.float64) for key in ("mean", "std")]
        if any(m is not None and m.shape != offset.shape for m in moments):
            raise invalid_value("scaler metadata", f"mean and std lists of {offset.shape[0]} values",
                                f"shapes {[None if m is None else m.shape for m in moments]}", "Re-save the model.")
        scaler.mean_, scaler.std_ = moments
        return scaler


class RowMoments:
    """Per-column count, sums and sums of squares (float64) of rows less ``shift``, and the rows'
    extremes, added a block at a time.

    The shift (e.g. the training rows' mean, rounded to float32) keeps the squares of a column far from
    zero for its spread (timestamps, coordinates) from losing that spread to rounding.
    """

    def __init__(self, n_features: int, shift=None):
        self.count = 0
        self.shift = np.zeros(n_features) if shift is None else np.asarray(shift, np.float32).astype(np.float64)
        self.sums = np.zeros(n_features)
        self.squares = np.zeros(n_features)
        self.low = np.full(n_features, np.inf)
        self.high = np.full(n_features, -np.inf)

    def add(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        self.count += len(rows)
        np.minimum(self.low, rows.min(axis=0), out=self.low)
        np.maximum(self.high, rows.max(axis=0), out=self.high)
        shift = self.shift.astype(rows.dtype)  # exact: the shift is float32-representable
        for start in range(0, len(rows), _CHUNK_ROWS):
            chunk = rows[start : start + _CHUNK_ROWS] - shift
            # Products in the rows' precision (no float64 copy), summed in float64 a chunk at a time.
            self.sums += chunk.sum(axis=0, dtype=np.float64)
            self.squares += np.einsum("ij,ij->j", chunk, chunk)


def network_scaling(X) -> tuple[np.ndarray, np.ndarray, float]:
    """How the network sees rows of the error space ``X`` (an array, or its
    :class:`ColumnSummary`, with the same result): one scalar ``c`` by
    which the rows are divided, so that losses are of order one whatever the
    units, and the per-column means and scales of ``X / c`` that its fixed
    first layer standardises with and its output undoes (each scale at least
    ``NETWORK_SCALE_FLOOR`` of the typical one: near-constant columns, such as
    border pixels, are not blown up).

    Returns ``(mean, scale, c)``. Training on ``X / c`` through such layers
    minimises exactly the MSE of ``X`` (the loss is that MSE divided by ``c**2``).
    """
    mean, std = (X.mean, X.std) if isinstance(X, ColumnSummary) else _mean_and_std(X)
    typical = float(np.sqrt(np.mean(np.square(std))))
    typical = typical if typical > 0 else 1.0
    return mean / typical, np.maximum(std / typical, NETWORK_SCALE_FLOOR), typical


@dataclass(frozen=True, eq=False)
class ErrorSpace:
    """The space errors are measured in, and how the network sees it.

    ``scaler`` maps the data's units to the error space; the network takes
    those rows divided by ``network_scale`` (1 for data in [0, 1], fed as
    they are), so a loss of the network is the error space's MSE divided by
    ``network_scale ** 2``.
    """

    scaler: Scaler
    network_scale: float

    @classmethod
    def fit(cls, method: str, summary: ColumnSummary) -> ErrorSpace:
        """The error space ``method`` chooses for rows summarised by ``summary``."""
        scaler = Scaler(method).fit(summary)
        space = summary.in_scaled_space(scaler.offset_, scaler.scale_)
        return cls(scaler, 1.0 if scaler.unit_interval_ else network_scaling(space)[2])

    def to_network(self, X_space: np.ndarray) -> np.ndarray:
        """Rows of the error space as the network takes them."""
        if self.network_scale == 1.0:
            return X_space
        return (X_space / np.float32(self.network_scale)).astype(np.float32, copy=False)

    def from_network(self, X_net: np.ndarray) -> np.ndarray:
        """The network's rows back in the error space."""
        if self.network_scale == 1.0:
            return X_net
        return X_net * np.float32(self.network_scale)

    def network_rows(self, X: np.ndarray) -> np.ndarray:
        """Rows in the data's units as the network takes them."""
        return self.to_network(self.scaler.transform(X))

    def network_summary(self, summary: ColumnSummary) -> ColumnSummary:
        """The summary of the network's rows, from the summary of the error space's."""
        return summary.in_scaled_space(0.0, self.network_scale)

    def in_space_units(self, value):
        """A mean squared error of the network's rows (or a list of them) in the error space's units."""
        factor = self.network_scale**2
        return [v * factor for v in value] if isinstance(value, list) else value * factor
