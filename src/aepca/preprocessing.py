"""Per-feature scaling with JSON-serialisable state.

``x_scaled = (x - offset_) / scale_``. The learned offsets and scales are
float64 so that saved models reproduce the exact transform.
"""

from __future__ import annotations

import numpy as np

from aepca.validation import check_features

_CHUNK_ROWS = 8192  # bounds the float64 temporaries of the variance pass


def in_unit_interval(X) -> bool:
    """Whether every value of ``X`` lies in [0, 1] (a sigmoid output can reproduce it)."""
    return _within_unit(check_features(X))


def _within_unit(X: np.ndarray) -> bool:
    return bool(X.min() >= 0.0 and X.max() <= 1.0)


def _identity(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = X.shape[1]
    return np.zeros(n), np.ones(n)


def _minmax(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low = X.min(axis=0).astype(np.float64)
    return low, X.max(axis=0).astype(np.float64) - low


def _standard(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0, dtype=np.float64)
    sq = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        sq += np.square(X[start : start + _CHUNK_ROWS] - mean).sum(axis=0)
    return mean, np.sqrt(sq / X.shape[0])


_METHODS = {"minmax": _minmax, "standard": _standard, "none": _identity}
_OPTIONS = ("auto", *_METHODS)


class Scaler:
    """Scale each feature: ``"minmax"`` to [0, 1], ``"standard"`` to zero mean
    and unit variance, ``"none"`` unchanged, or ``"auto"``: ``"none"`` when the
    training data already lies in [0, 1] (pixels), else ``"standard"``.

    Constant features get scale 1, so they map to 0 instead of dividing by zero.
    ``unit_interval_`` tells whether the scaled training data lies in [0, 1],
    i.e. whether a sigmoid decoder output can reproduce it.
    """

    def __init__(self, method: str = "auto"):
        self.method = method

    def _resolve(self, X: np.ndarray) -> str:
        if self.method not in _OPTIONS:
            raise ValueError(
                f"Received an invalid value for method, expected one of {list(_OPTIONS)}. "
                f"Received: method={self.method!r}. Pick one of the listed options."
            )
        if self.method == "auto":
            return "none" if _within_unit(X) else "standard"
        return self.method

    def fit(self, X, y=None) -> Scaler:
        X = check_features(X)
        method = self._resolve(X)
        offset, scale = _METHODS[method](X)
        self.method_ = method
        self.offset_ = offset
        self.scale_ = np.where(scale > 0.0, scale, 1.0)
        self.n_features_in_ = X.shape[1]
        # Scaling is monotone per column, so the column extremes decide.
        low = (X.min(axis=0) - offset) / self.scale_
        high = (X.max(axis=0) - offset) / self.scale_
        self.unit_interval_ = bool(low.min() >= 0.0 and high.max() <= 1.0)
        return self

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

    def to_dict(self) -> dict:
        """JSON-ready state; ``Scaler.from_dict`` restores it exactly."""
        self._check_fitted()
        return {
            "method": self.method,
            "method_": self.method_,
            "offset": self.offset_.tolist(),
            "scale": self.scale_.tolist(),
            "unit_interval": self.unit_interval_,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        missing = {"method", "method_", "offset", "scale", "unit_interval"} - set(d)
        if missing:
            raise ValueError(
                f"Received an invalid value for scaler metadata, expected keys method, method_, "
                f"offset, scale and unit_interval. Received: missing {sorted(missing)}. Re-save the model."
            )
        offset = np.asarray(d["offset"], dtype=np.float64)
        scale = np.asarray(d["scale"], dtype=np.float64)
        if offset.ndim != 1 or offset.shape != scale.shape or d["method_"] not in _METHODS:
            raise ValueError(
                "Received an invalid value for scaler metadata, expected equal-length offset and "
                f"scale lists and method_ in {list(_METHODS)}. Received: offset of shape "
                f"{offset.shape}, scale of shape {scale.shape}, method_={d['method_']!r}. Re-save the model."
            )
        scaler = cls(method=d["method"])
        scaler.method_ = d["method_"]
        scaler.offset_ = offset
        scaler.scale_ = scale
        scaler.n_features_in_ = offset.shape[0]
        scaler.unit_interval_ = bool(d["unit_interval"])
        return scaler
