"""Input checks shared by the estimators, the readers and the CLI.

Every check either returns a clean value or raises ``ValueError`` with one
line that names the value, the rule it broke and how to fix it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

# float32 holds values up to ~3.4e38, but past ~1e15 its 24-bit mantissa makes
# squared errors and variances meaningless, so such data must be rescaled.
MAX_ABS_VALUE = 1e15
# Below ~1e-15, squared deviations (1e-30) near float32's smallest normal (1e-38) lose precision
# and then vanish: a column varying by less must be rescaled too.
MIN_SPREAD = 1e-15
_ACCEPTED_KINDS = "biuf"  # bool, signed int, unsigned int, float


def shorten(value, limit: int = 80) -> str:
    """``repr(value)`` on one line and at most ``limit`` characters: messages quote cells, never whole arrays."""
    if isinstance(value, np.generic):
        value = value.item()
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def describe_names(names: Sequence, limit: int = 5) -> str:
    """``'a', 'b', 'c' and 2 more`` -- a short, quoted list for error messages."""
    shown = ", ".join(shorten(n) if isinstance(n, str) else str(n) for n in names[:limit])
    extra = len(names) - limit
    return f"{shown} and {extra} more" if extra > 0 else shown


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 row``, ``2 rows`` (``nouns``, when not ``noun`` + "s": ``2 processes``)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def invalid_value(name: str, expected: str, received: str, fix: str = "") -> ValueError:
    """The one-line error for a bad value: what it is, what was expected, what was received, how to fix it.

    ``Received an invalid value for {name}, expected {expected}. Received: {received}. {fix}`` --
    ``raise invalid_value(...)``; for another exception type, build it from ``str()`` of this one.
    """
    message = f"Received an invalid value for {name}, expected {expected}. Received: {received}."
    return ValueError(f"{message} {fix}" if fix else message)


def _frame_to_array(frame: pd.DataFrame, name: str) -> np.ndarray:
    dtypes = frame.dtypes
    text = [c for c, dt in dtypes.items() if not pd.api.types.is_numeric_dtype(dt)]
    if text:
        raise invalid_value(name, "numeric columns only", f"non-numeric columns {describe_names(text)}",
                            "Convert them to numbers or drop them.")
    if any(pd.api.types.is_complex_dtype(dt) for dt in dtypes):
        raise invalid_value(name, "real numbers", "complex columns", "Take .real or abs() first.")
    if len(set(dtypes)) == 1 and isinstance(dtypes.iloc[0], np.dtype):
        return frame.to_numpy()  # homogeneous: no float64 copy of e.g. uint8 pixels
    # Mixed or nullable columns (which hold pd.NA): convert to float64 with NaN
    # so the finite check reports missing values like any other.
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def _check_dtype(array: np.ndarray, name: str) -> None:
    kind = array.dtype.kind
    if kind in _ACCEPTED_KINDS:
        return
    if kind == "c":
        raise invalid_value(name, "real numbers", f"{name} with dtype {array.dtype}", "Take .real or abs() first.")
    raise invalid_value(name, "a numeric array (bool, int or float)", f"{name} with dtype {array.dtype}",
                        "Convert text or object values to numbers, or drop those columns.")


def _check_shape(array: np.ndarray, name: str, min_rows: int) -> None:
    if array.ndim == 1:
        raise invalid_value(name, "a 2-D array (samples x features)", f"a 1-D array of shape {array.shape}",
                            f"Use {name}.reshape(-1, 1) for a single feature or {name}.reshape(1, -1) for a single sample.")
    if array.ndim != 2:
        raise invalid_value(name, "a 2-D array (samples x features)", f"an array of shape {array.shape}",
                            f"Flatten each sample, e.g. {name}.reshape(len({name}), -1).")
    n_rows, n_cols = array.shape
    if n_rows == 0:
        raise invalid_value(name, "at least 1 row", f"{name} with 0 rows", "Pass a non-empty array.")
    if n_rows < min_rows:
        raise invalid_value(name, f"at least {min_rows} rows", f"{name} with {plural(n_rows, 'row')}",
                            "Provide more samples.")
    if n_cols == 0:
        raise invalid_value(name, "at least 1 feature", f"{name} with shape {array.shape}",
                            "Pass some feature columns.")


def _check_values(array: np.ndarray, name: str, columns: Sequence) -> None:
    if array.dtype.kind == "b" or array.size == 0:
        return
    # Column extremes first: a NaN or an infinity shows in them, and no
    # full-size temporary (a mask or |X|) is made for a large valid input.
    col_min = array.min(axis=0).astype(np.float64)
    col_max = array.max(axis=0).astype(np.float64)
    if array.dtype.kind == "f" and not (np.isfinite(col_min).all() and np.isfinite(col_max).all()):
        found, fixes = [], []
        # A missing value can be imputed; an infinite one is a value, which imputing leaves as it is.
        for bad, kind, fix in (
            (np.isnan(array), "NaN (missing) value", "impute the missing values (impute='mean', --impute mean) or "
                                                      "drop their rows"),
            (np.isinf(array), "infinite value", "replace the infinite values (e.g. by a large finite value) or drop "
                                                "their rows; imputing fills missing values only"),
        ):
            if bad.any():
                cols = [columns[i] for i in np.flatnonzero(bad.any(axis=0))]
                found.append(f"{plural(int(bad.sum()), kind)} in columns {describe_names(cols)}")
                fixes.append(fix)
        raise invalid_value(name, "finite values", "; ".join(found), f"Before fitting, {' and '.join(fixes)}.")
    col_abs_max = np.maximum(np.abs(col_max), np.abs(col_min))
    huge = col_abs_max > MAX_ABS_VALUE
    if huge.any():
        cols = [columns[i] for i in np.flatnonzero(huge)]
        largest = float(col_abs_max.max())
        raise invalid_value(
            name,
            f"values with magnitude at most {MAX_ABS_VALUE:.0e} (beyond, float32 squared errors lose all "
            "precision or overflow)",
            f"values up to {largest:.3g} in columns {describe_names(cols)}",
            f"Rescale the data first, e.g. divide those columns by {10.0 ** np.floor(np.log10(largest)):.0e} "
            "or change their units.",
        )


def check_spread(low: np.ndarray, high: np.ndarray, name: str, feature_names: Sequence) -> None:
    """Refuse columns that vary, but by less than ``MIN_SPREAD`` (``low``, ``high``: column extremes)."""
    spread = np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64)
    tiny = (spread > 0) & (spread < MIN_SPREAD)
    if tiny.any():
        smallest = float(spread[tiny].min())
        raise invalid_value(
            name,
            f"columns that vary by at least {MIN_SPREAD:.0e} or not at all (below, float32 squared errors underflow)",
            f"columns {describe_names([feature_names[i] for i in np.flatnonzero(tiny)])} varying by as little as "
            f"{smallest:.3g}",
            f"Rescale the data first, e.g. multiply those columns by {10.0 ** -np.floor(np.log10(smallest)):.0e} "
            "or change their units.",
        )


def check_features(X, *, name: str = "X", min_rows: int = 1, n_features: int | None = None) -> np.ndarray:
    """Validate a feature matrix and return it as C-contiguous float32.

    Accepts bool, integer and float arrays, nested sequences and pandas
    DataFrames (whose column names then appear in error messages).
    """
    if sparse.issparse(X):
        raise invalid_value(name, "a dense array", f"a sparse {type(X).__name__}", f"Use {name}.toarray() first.")
    if isinstance(X, pd.DataFrame):
        array = _frame_to_array(X, name)
    else:
        try:
            array = np.asarray(X)
        except (ValueError, TypeError) as err:
            raise invalid_value(name, "a rectangular numeric array", f"an object numpy cannot convert ({err})",
                                "Make every row the same length.") from None
    _check_dtype(array, name)
    _check_shape(array, name, min_rows)
    _check_values(array, name, list(X.columns) if isinstance(X, pd.DataFrame) else range(array.shape[1]))
    if n_features is not None and array.shape[1] != n_features:
        raise ValueError(
            f"{name} has {array.shape[1]} features, but the model was fitted with {n_features}. "
            f"Pass data with the same {n_features} columns, in the same order, as at fit time."
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def check_n_components(n_components, n_features: int, *, allow_equal: bool = False) -> int:
    """Return ``n_components`` as an int in ``[1, n_features)``.

    ``allow_equal=True`` also admits ``n_features`` (a full-rank PCA).
    """
    limit = n_features if allow_equal else n_features - 1
    if isinstance(n_components, numbers.Integral) and not isinstance(n_components, bool | np.bool_):
        if 1 <= int(n_components) <= limit:
            return int(n_components)
    raise invalid_value(
        "n_components",
        f"an integer with 1 <= n_components {'<=' if allow_equal else '<'} n_features={n_features}",
        f"n_components={n_components!r}",
        f"Choose a whole number between 1 and {limit}." if limit >= 1 else "The data needs more features.",
    )


def check_codes(codes, n_components: int, dtype=np.float32) -> np.ndarray:
    """Codes to decode: a finite 2-D array with ``n_components`` columns."""
    codes = np.asarray(codes, dtype=dtype)
    if codes.ndim != 2 or codes.shape[1] != n_components:
        raise invalid_value("X", f"codes of shape (n_samples, {n_components})", f"X.shape={codes.shape}",
                            "Pass the output of transform.")
    if not np.all(np.isfinite(codes)):
        raise ValueError("Received codes with NaN or infinite values; pass the output of transform.")
    return codes


# Channels an image may have: grey (1), RGB (3), RGBA (4).
IMAGE_CHANNELS = (1, 3, 4)


def as_image_shape(value) -> tuple[int, ...] | None:
    """``value`` as an image shape (height, width) or (height, width, channels), or None if it is not one."""
    dims = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else ()
    valid = (
        len(dims) in (2, 3)
        and all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in dims)
        and (len(dims) == 2 or dims[2] in IMAGE_CHANNELS)
    )
    return tuple(int(d) for d in dims) if valid else None
