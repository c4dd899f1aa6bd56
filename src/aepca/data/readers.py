"""Readers for users' own data: CSV, NumPy ``.npy`` / ``.npz`` and Parquet.

Every problem with a file is reported as one line naming the file, the rule
and the fix (``ValueError``, ``FileNotFoundError`` or ``PermissionError``).
Cleaning decisions (which constant columns to drop, which means to impute)
are learned on the training rows only and then applied unchanged to the test
rows, so no test information leaks into preprocessing. Images keep their
shape: ``(n, h, w)`` and ``(n, h, w, c)`` arrays, or flat rows given an
``image_shape``.
"""

from __future__ import annotations

import math
import numbers
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aepca.data._dataset import Dataset
from aepca.validation import IMAGE_CHANNELS, as_image_shape, check_features, describe_names, plural

MIN_ROWS = 3
MIN_SPLIT_ROWS = 2
# Imputation strategies: per-column fill values computed from the training rows.
IMPUTERS = {"mean": pd.DataFrame.mean}
_CORRUPT_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


@dataclass(frozen=True)
class Table:
    """A cleaned table: float32 ``features`` (rows x columns), optional ``labels``.

    ``image_shape`` ((h, w) or (h, w, c)) is kept for images whose pixels all survive.
    """

    features: np.ndarray
    labels: np.ndarray | None
    feature_names: tuple[str, ...]
    image_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class _Raw:
    frame: pd.DataFrame
    labels: np.ndarray | None
    image_shape: tuple[int, ...] | None


def _corrupt(path: Path, kind: str, err: Exception, fix: str) -> ValueError:
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ValueError(f"{path} is not a readable {kind} file ({detail}); it may be truncated or corrupt. {fix}")


def _array_to_raw(array: np.ndarray, labels: np.ndarray | None, path: Path) -> _Raw:
    if labels is not None:
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or array.ndim == 0 or len(labels) != len(array):
            raise ValueError(
                f"{path}: labels 'y' have shape {labels.shape} but features 'x' have shape {array.shape}, "
                "expected one label per row. Save one label per sample."
            )
    if array.dtype.names:  # structured array: one named field per column
        return _Raw(pd.DataFrame(array), labels, None)
    if array.ndim < 2:
        raise ValueError(
            f"{path} holds an array of shape {array.shape}, expected 2-D (samples x features). "
            "Re-save it as a 2-D array, e.g. x.reshape(-1, 1) for a single feature."
        )
    # (n, h, w), or (n, h, w, c) with channels a figure can show.
    image_shape = as_image_shape(array.shape[1:]) if array.ndim in (3, 4) else None
    flat = array.reshape(len(array), -1)
    frame = pd.DataFrame(flat, columns=[f"x{i}" for i in range(flat.shape[1])], copy=False)
    return _Raw(frame, labels, image_shape)


def _read_csv(path: Path) -> _Raw:
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path} has no header row and no data. Write a header line of column names, then the rows."
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        fix = "Check that it is comma-separated text with the same number of fields on every line."
        raise _corrupt(path, "CSV", err, fix) from None
    frame.columns = [str(c) for c in frame.columns]
    return _Raw(frame, None, None)


def _read_npy(path: Path) -> _Raw:
    try:
        array = np.load(path, allow_pickle=False)
    except _CORRUPT_ERRORS as err:
        raise _corrupt(path, ".npy", err, "Re-save it with numpy.save(path, array).") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise ValueError(f"{path} is a .npz archive, not a .npy array. Rename it to end in .npz.")
    return _array_to_raw(array, None, path)


def _pick_npz_arrays(names: list[str], path: Path) -> tuple[str, str | None]:
    x_name = next((n for n in ("x", "X") if n in names), None)
    if x_name:
        return x_name, next((n for n in ("y", "Y") if n in names), None)
    if len(names) == 1:
        return names[0], None
    raise ValueError(
        f"{path} holds arrays {names}, expected a single array or arrays named 'x' (features) and optionally "
        "'y' (labels). Re-save it with numpy.savez(path, x=features, y=labels)."
    )


def _read_npz(path: Path) -> _Raw:
    fix = "Re-save it with numpy.savez(path, x=features, y=labels)."
    try:
        archive = np.load(path, allow_pickle=False)
    except _CORRUPT_ERRORS as err:
        raise _corrupt(path, ".npz", err, fix) from None
    if isinstance(archive, np.ndarray):
        raise ValueError(f"{path} is a .npy array, not a .npz archive. Rename it to end in .npy.")
    with archive:
        x_name, y_name = _pick_npz_arrays(list(archive.files), path)
        try:
            features = archive[x_name]
            labels = archive[y_name] if y_name else None
        except _CORRUPT_ERRORS as err:
            raise _corrupt(path, ".npz", err, fix) from None
    return _array_to_raw(features, labels, path)


def _read_parquet(path: Path) -> _Raw:
    magic = b"PAR1"
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    if head != magic or tail != magic:
        raise ValueError(
            f"{path} is not a Parquet file (its first and last bytes are not 'PAR1'): it may be a text or CSV "
            "file with the wrong extension, or truncated. Rename it to its real format or re-export it."
        )
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"Reading {path.name} needs pyarrow, which is not installed. Install it with: pip install 'aepca[parquet]'"
        ) from None
    try:
        frame = pq.read_table(path).to_pandas()
    except (pyarrow.ArrowException, *_CORRUPT_ERRORS) as err:
        raise _corrupt(path, "Parquet", err, "Re-export it.") from None
    frame.columns = [str(c) for c in frame.columns]
    return _Raw(frame, None, None)


_READERS = {".csv": _read_csv, ".npy": _read_npy, ".npz": _read_npz, ".parquet": _read_parquet}


def _read_raw(path) -> _Raw:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No such file: {path}. Check the path and the current directory ({Path.cwd()})."
        )
    if path.is_dir():
        raise ValueError(f"{path} is a directory, expected a data file ({', '.join(_READERS)}).")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(
            f"Received an invalid value for the file extension, expected one of {list(_READERS)}. "
            f"Received: {path.name!r}. Convert the file to CSV (with a header row), .npy, .npz or Parquet."
        )
    if not os.access(path, os.R_OK):
        raise PermissionError(
            f"Cannot read {path}: permission denied. Make it readable (chmod u+r) or copy it elsewhere."
        )
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes). Point to a file that holds data.")
    return reader(path)


def _pop_labels(raw: _Raw, label_column: str | None, source: str) -> tuple[pd.DataFrame, np.ndarray | None, tuple | None]:
    """Split off the label column; returns (feature frame, labels, image shape)."""
    if label_column is None:
        return raw.frame, raw.labels, raw.image_shape
    if raw.labels is not None:
        raise ValueError(
            f"{source} already holds labels (array 'y'), so label_column={label_column!r} is ambiguous. "
            "Drop the label column option."
        )
    columns = list(raw.frame.columns)
    if label_column not in columns:
        raise ValueError(
            f"Received an invalid value for label_column, expected one of the columns of {source}: "
            f"{describe_names(columns, 10)}. Received: label_column={label_column!r}. Check the spelling and case."
        )
    labels = raw.frame[label_column].to_numpy()
    # Removing a column breaks the pixel grid of image arrays.
    return raw.frame.drop(columns=[label_column]), labels, None


def _check_image_shape(image_shape) -> tuple[int, ...] | None:
    """``image_shape`` as a tuple of ints, or ``ValueError`` unless (h, w) or (h, w, c) of positive ints."""
    if image_shape is None:
        return None
    dims = as_image_shape(image_shape)
    if dims is None:
        raise ValueError(
            "Received an invalid value for image_shape, expected (height, width) or (height, width, channels) of "
            f"positive integers, with channels in {IMAGE_CHANNELS}. Received: image_shape={image_shape!r}. "
            "Pass e.g. image_shape=(8, 8), or leave it unset for tabular data."
        )
    return dims


def _final_image_shape(requested, found, n_features: int, n_dropped: int, source: str) -> tuple | None:
    """The requested image shape, checked against the features left; else the one found in an array file."""
    if requested is None:
        return found if found and math.prod(found) == n_features else None
    if math.prod(requested) != n_features:
        left = f" left after dropping {plural(n_dropped, 'constant column')}" if n_dropped else ""
        fix = (
            "Keep the constant columns (leave out drop_constant / --drop-constant) so that every pixel stays."
            if n_dropped
            else "Pass the shape of one image (labels excluded), or leave image_shape unset for tabular data."
        )
        raise ValueError(
            f"Received an invalid value for image_shape, expected dimensions whose product is the {n_features} "
            f"feature columns of {source}{left}. Received: image_shape={requested!r}. {fix}"
        )
    return requested


def _check_rows(frame: pd.DataFrame, source: str, min_rows: int) -> None:
    if len(frame) < min_rows:
        raise ValueError(
            f"{source} has {plural(len(frame), 'row')}, expected at least {min_rows}. Provide more samples."
        )


def _check_numeric(frame: pd.DataFrame, source: str) -> None:
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c].dtype)]
    if not text:
        return
    column = frame[text[0]]
    non_numbers = column[pd.to_numeric(column, errors="coerce").isna() & column.notna()]
    example = f" (e.g. {text[0]!r} holds {non_numbers.iloc[0]!r})" if len(non_numbers) else ""
    raise ValueError(
        f"{source} has non-numeric columns {describe_names(text)}{example}. Pass a label column with "
        "label_column=NAME (--label-column NAME), or remove those columns."
    )


def _check_missing(frame: pd.DataFrame, source: str) -> None:
    counts = frame.isna().sum()
    counts = counts[counts > 0]
    if len(counts):
        raise ValueError(
            f"{source} has {plural(int(counts.sum()), 'missing value')} (NaN or empty cells) in columns "
            f"{describe_names(list(counts.index))}. Fill them with the column mean using impute='mean' "
            "(--impute mean), or remove those rows."
        )


def _check_impute(impute) -> None:
    if impute is not None and impute not in IMPUTERS:
        raise ValueError(
            f"Received an invalid value for impute, expected one of {[None, *IMPUTERS]}. "
            f"Received: impute={impute!r}. Use 'mean' or leave it unset."
        )


@dataclass(frozen=True)
class _Cleaning:
    """Columns to keep, values to impute and the number of constant columns kept, learned on the training rows."""

    columns: tuple[str, ...]
    fill: dict
    n_constant_kept: int

    @classmethod
    def learn(cls, frame: pd.DataFrame, source: str, *, drop_constant: bool, impute: str | None) -> _Cleaning:
        if frame.shape[1] == 0:
            raise ValueError(f"{source} has no feature columns besides the labels. Add feature columns.")
        _check_numeric(frame, source)
        fill = {}
        if impute is not None:
            values = IMPUTERS[impute](frame)
            empty = list(values.index[values.isna()])
            if empty:
                raise ValueError(
                    f"{source} has columns with no values at all: {describe_names(empty)}, so there is no "
                    f"{impute} to impute. Remove those columns."
                )
            fill = values.to_dict()
        else:
            _check_missing(frame, source)
        # min/max skip NaN, and a mean-imputed constant column stays constant.
        constant = set(frame.columns[(frame.min() == frame.max()).to_numpy()])
        if len(constant) == frame.shape[1]:
            raise ValueError(f"Every feature column of {source} is constant. There is nothing to learn from.")
        kept = tuple(str(c) for c in frame.columns if not (drop_constant and c in constant))
        return cls(kept, fill, 0 if drop_constant else len(constant))

    def apply(self, frame: pd.DataFrame, source: str) -> np.ndarray:
        frame = frame[list(self.columns)]
        _check_numeric(frame, source)
        if self.fill:
            frame = frame.fillna({c: self.fill[c] for c in self.columns})
        _check_missing(frame, source)
        # Infinities and huge values are reported by the shared feature check.
        return check_features(frame, name=source)


def read_table(
    path,
    *,
    label_column: str | None = None,
    drop_constant: bool = False,
    impute: str | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> Table:
    """Read a ``.csv`` (with a header row), ``.npy``, ``.npz`` or ``.parquet`` file.

    ``label_column`` names a column to return as labels instead of a feature
    (a ``.npz`` file may instead hold labels as array ``y``). Constant
    columns are kept (PCA and the autoencoder handle them) unless
    ``drop_constant=True``; missing values are errors unless
    ``impute="mean"``. ``image_shape`` ((h, w) or (h, w, c)) marks flat rows
    as images and overrides the shape of an image array.
    """
    _check_impute(impute)
    requested = _check_image_shape(image_shape)
    source = Path(path).name
    frame, labels, found = _pop_labels(_read_raw(path), label_column, source)
    _check_rows(frame, source, MIN_ROWS)
    cleaning = _Cleaning.learn(frame, source, drop_constant=drop_constant, impute=impute)
    features = cleaning.apply(frame, source)
    n_dropped = frame.shape[1] - len(cleaning.columns)
    shape = _final_image_shape(requested, found, features.shape[1], n_dropped, source)
    return Table(features, labels, cleaning.columns, shape)


def split_indices(n_rows: int, test_size: float, seed: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle of ``range(n_rows)`` into (train, test) index arrays."""
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real) or not 0.0 < test_size < 1.0:
        raise ValueError(
            f"Received an invalid value for test_size, expected a fraction strictly between 0 and 1. "
            f"Received: test_size={test_size!r}. Use e.g. 0.2."
        )
    n_test = math.ceil(test_size * n_rows)
    n_train = n_rows - n_test
    if min(n_train, n_test) < MIN_SPLIT_ROWS:
        raise ValueError(
            f"Splitting the {n_rows} rows of {source} with test_size={test_size} leaves {n_train} training and "
            f"{plural(n_test, 'test row')}, expected at least {MIN_SPLIT_ROWS} on each side. Provide more rows, change "
            "test_size, or pass a separate test file."
        )
    order = np.random.default_rng(seed).permutation(n_rows)
    return order[n_test:], order[:n_test]


def _take(labels: np.ndarray | None, index: np.ndarray) -> np.ndarray | None:
    return None if labels is None else labels[index]


def load_user_data(
    path,
    *,
    test=None,
    test_size: float = 0.2,
    label_column: str | None = None,
    seed: int = 0,
    drop_constant: bool = False,
    impute: str | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> Dataset:
    """Read a user's file as a train/test :class:`Dataset`.

    Without ``test`` the rows are split by a shuffle seeded with ``seed``;
    with ``test`` that second file (same columns) is the test set. Column
    drops and imputed means are learned on the training rows only; the other
    keywords are those of :func:`read_table`. ``notes`` counts the constant
    columns kept (``"constant_columns"``) so that reports can say so.
    """
    _check_impute(impute)
    requested = _check_image_shape(image_shape)
    path = Path(path)
    source = path.name
    frame, labels, found = _pop_labels(_read_raw(path), label_column, source)
    if test is None:
        _check_rows(frame, source, MIN_ROWS)
        train_index, test_index = split_indices(len(frame), test_size, seed, source)
        train_frame, test_frame = frame.iloc[train_index], frame.iloc[test_index]
        y_train, y_test = _take(labels, train_index), _take(labels, test_index)
        test_source = source
    else:
        test_source = Path(test).name
        test_frame, y_test, _ = _pop_labels(_read_raw(test), label_column, test_source)
        missing = [c for c in frame.columns if c not in test_frame.columns]
        extra = [c for c in test_frame.columns if c not in frame.columns]
        if missing or extra:
            raise ValueError(
                f"{test_source} has different columns from {source}: missing {describe_names(missing) or 'none'}, "
                f"extra {describe_names(extra) or 'none'}. Both files need the same columns."
            )
        _check_rows(frame, source, MIN_SPLIT_ROWS)
        _check_rows(test_frame, test_source, MIN_SPLIT_ROWS)
        train_frame, y_train = frame, labels
    cleaning = _Cleaning.learn(train_frame, source, drop_constant=drop_constant, impute=impute)
    x_train = cleaning.apply(train_frame, source)
    x_test = cleaning.apply(test_frame, test_source)
    notes = {"units": f"original units of {source}"}
    dropped = [str(c) for c in frame.columns if str(c) not in cleaning.columns]
    if cleaning.n_constant_kept:
        notes["constant_columns"] = cleaning.n_constant_kept
    if dropped:
        notes["dropped_constant_columns"] = dropped
    if impute:
        notes["impute"] = f"{impute} of the training rows"
    return Dataset(
        name=path.stem,
        x_train=x_train,
        x_test=x_test,
        y_train=y_train,
        y_test=y_test,
        image_shape=_final_image_shape(requested, found, x_train.shape[1], len(dropped), source),
        feature_names=cleaning.columns,
        notes=notes,
    )
