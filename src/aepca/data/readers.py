"""Readers for users' own data: CSV / TSV, NumPy ``.npy`` / ``.npz`` and Parquet.

Every problem with a file is reported as one line naming the file, the rule
and the fix (``ValueError``, ``FileNotFoundError`` or ``PermissionError``).
Which columns are features, labels or an identifier is the user's choice
(:class:`aepca.data.columns.Selection`); cleaning decisions (which constant
columns to drop, which means to impute) are learned on the training rows only
and then applied unchanged to the test rows, so no test information leaks
into preprocessing. The result is a :class:`ColumnSpec` that a saved model
can re-apply to new files, a block of rows at a time (:func:`iter_row_blocks`).
Images keep their shape: ``(n, h, w)`` and ``(n, h, w, c)`` arrays, or flat
rows given an ``image_shape``.
"""

from __future__ import annotations

import contextlib
import csv
import math
import numbers
import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aepca.data._dataset import Dataset
from aepca.data.columns import (
    IMPUTERS,
    ColumnSpec,
    Selection,
    arrow_columns,
    check_identifiers,
    frame_from_arrow,
)
from aepca.validation import IMAGE_CHANNELS, as_image_shape, describe_names, invalid_value, plural

MIN_ROWS = 3
MIN_SPLIT_ROWS = 2
# Rows per block when a model is applied to a file (see iter_row_blocks).
BLOCK_ROWS = 65536
# The start of a CSV file read to find its delimiter and header.
SNIFF_CHARS = 16 * 1024
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
_CORRUPT_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


@dataclass(frozen=True)
class Table:
    """A cleaned table: float32 ``features`` (rows x columns), optional ``labels`` (the first label column).

    ``image_shape`` ((h, w) or (h, w, c)) is kept for images whose pixels all survive; ``ids`` are the id
    column's values, ``all_labels`` every label column by name, ``columns`` the learned :class:`ColumnSpec`.
    """

    features: np.ndarray
    labels: np.ndarray | None
    feature_names: tuple[str, ...]
    image_shape: tuple[int, ...] | None = None
    ids: np.ndarray | None = None
    all_labels: dict | None = None
    columns: ColumnSpec | None = None


@dataclass(frozen=True)
class _Raw:
    """A file as read: single-value columns (list columns expanded), its column names in order, notes."""

    frame: pd.DataFrame
    sources: tuple[str, ...]
    lists: dict
    labels: np.ndarray | None = None  # an .npz file's array 'y'
    image_shape: tuple[int, ...] | None = None
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, frame: pd.DataFrame, **kwargs) -> _Raw:
        frame.columns = [str(c) for c in frame.columns]
        return cls(frame, tuple(frame.columns), {}, **kwargs)


def _corrupt(path: Path, kind: str, err: Exception, fix: str) -> ValueError:
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ValueError(f"{path} is not a readable {kind} file ({detail}); it may be truncated or corrupt. {fix}")


def _check_array(array: np.ndarray, path: Path) -> None:
    if not array.dtype.names and array.ndim < 2:
        raise ValueError(
            f"{path} holds an array of shape {array.shape}, expected 2-D (samples x features). "
            "Re-save it as a 2-D array, e.g. x.reshape(-1, 1) for a single feature."
        )


def _array_frame(array: np.ndarray) -> tuple[pd.DataFrame, tuple[int, ...] | None]:
    """A checked array as a frame (columns x0, x1, ... or a structured array's fields) and its image shape."""
    if array.dtype.names:  # structured array: one named field per column
        return pd.DataFrame(array), None
    # (n, h, w), or (n, h, w, c) with channels a figure can show.
    image_shape = as_image_shape(array.shape[1:]) if array.ndim in (3, 4) else None
    flat = array.reshape(len(array), math.prod(array.shape[1:]))
    return pd.DataFrame(flat, columns=[f"x{i}" for i in range(flat.shape[1])], copy=False), image_shape


def _array_to_raw(array: np.ndarray, labels: np.ndarray | None, path: Path) -> _Raw:
    if labels is not None:
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or array.ndim == 0 or len(labels) != len(array):
            raise ValueError(
                f"{path}: labels 'y' have shape {labels.shape} but features 'x' have shape {array.shape}, "
                "expected one label per row. Save one label per sample."
            )
    _check_array(array, path)
    frame, image_shape = _array_frame(array)
    return _Raw.of(frame, labels=labels, image_shape=image_shape)


# --- CSV and TSV ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CsvLayout:
    """How a CSV file is written: delimiter, decimal mark, whether line 1 names the columns; notes say so."""

    delimiter: str
    decimal: str
    header: bool
    notes: tuple[str, ...] = ()


def _sniff(sample: str) -> str:
    sniffer = csv.Sniffer()
    # On a tie, ';' beats ',' (semicolon files often hold decimal commas) and tab beats both.
    sniffer.preferred = ["\t", ";", ","]
    try:
        return sniffer.sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:  # one column, or no consistent delimiter
        return ","


_COMMA_DECIMAL = re.compile(r"[+-]?\d*,\d+([eE][+-]?\d+)?")
_POINT_DECIMAL = re.compile(r"[+-]?\d*\.\d+([eE][+-]?\d+)?")


def _decimal(rows: list[list[str]]) -> str:
    """``,`` when the numbers of a semicolon file are written 1,5 (and none 1.5), else ``.``."""
    cells = [cell.strip() for row in rows for cell in row]
    comma = any(_COMMA_DECIMAL.fullmatch(c) for c in cells) and not any(_POINT_DECIMAL.fullmatch(c) for c in cells)
    return "," if comma else "."


def _holds_numbers(fields: list[str], decimal: str) -> bool:
    values = [f.strip().replace(decimal, ".") for f in fields if f.strip()]
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return bool(values)


def _has_header(fields: list[str], decimal: str, notes: list[str]) -> bool:
    """A first line of numbers is data, except ``0,1,...,n-1``: the names pandas gives unnamed columns."""
    if len(fields) > 1 and [f.strip() for f in fields if f.strip()] == [str(i) for i in range(len(fields))]:
        notes.append(f"first line 0,1,...,{len(fields) - 1} read as column names, as pandas writes them "
                     "(no_header=True, --no-header, if it is data)")
        return True
    return not _holds_numbers(fields, decimal)


def _csv_layout(path: Path, no_header: bool | None) -> _CsvLayout:
    """The delimiter (``,`` ``;`` or tab, sniffed; tab for ``.tsv``), decimal mark and header of a CSV file.

    ``no_header`` True or False overrides the header guess.
    """
    with open(path, "rb") as fh:
        sample = fh.read(SNIFF_CHARS).decode("utf-8-sig", errors="replace")
    tsv = path.suffix.lower() == ".tsv"
    # Whole lines only, so that a cut last line does not look inconsistent.
    delimiter = "\t" if tsv else _sniff(sample[: sample.rfind("\n") + 1] or sample)
    rows = list(csv.reader([line for line in sample.splitlines() if line.strip()], delimiter=delimiter))
    decimal = _decimal(rows) if delimiter == ";" else "."
    notes = [] if delimiter == "," or tsv else [f"read as {DELIMITERS[delimiter]}-separated values"]
    if decimal == ",":
        notes.append("numbers read with decimal commas")
    header = _has_header(rows[0] if rows else [], decimal, notes) if no_header is None else not no_header
    if not header:
        notes.append("no header line: the first line was read as data and the columns named x0, x1, ...")
    return _CsvLayout(delimiter, decimal, header, tuple(notes))


@contextlib.contextmanager
def _csv_errors(path: Path):
    try:
        yield
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path} has no header row and no data. Write a header line of column names, then the rows."
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        fix = "Check that it is comma-, semicolon- or tab-separated text with the same number of fields on every line."
        raise _corrupt(path, "CSV", err, fix) from None


def _read_csv_frame(path: Path, layout: _CsvLayout, **kwargs):
    """``pandas.read_csv`` with the file's layout; a file without header gets columns x0, x1, ..."""
    frame = pd.read_csv(path, sep=layout.delimiter, decimal=layout.decimal, header=0 if layout.header else None, **kwargs)
    if isinstance(frame, pd.DataFrame):
        return _named(frame, layout)
    return (_named(chunk, layout) for chunk in frame)


def _named(frame: pd.DataFrame, layout: _CsvLayout) -> pd.DataFrame:
    frame.columns = [str(c) if layout.header else f"x{c}" for c in frame.columns]
    return frame


def _read_csv(path: Path, no_header: bool | None) -> _Raw:
    layout = _csv_layout(path, no_header)
    with _csv_errors(path):
        frame = _read_csv_frame(path, layout)
    return _Raw.of(frame, notes=layout.notes)


# --- NumPy ---------------------------------------------------------------------------------------------


def _load_npy(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False, mmap_mode=mmap_mode)
    except _CORRUPT_ERRORS as err:
        raise _corrupt(path, ".npy", err, "Re-save it with numpy.save(path, array).") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise ValueError(f"{path} is a .npz archive, not a .npy array. Rename it to end in .npz.")
    return array


def _read_npy(path: Path) -> _Raw:
    return _array_to_raw(_load_npy(path), None, path)


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


def _parquet(path: Path):
    """``pyarrow.parquet`` once ``path`` looks like a Parquet file; the install hint without pyarrow."""
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
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            f"Reading {path.name} needs pyarrow, which is not installed. Install it with: pip install 'aepca[parquet]'"
        ) from None
    return pq


@contextlib.contextmanager
def _parquet_errors(path: Path):
    import pyarrow

    try:
        yield
    except (pyarrow.ArrowException, *_CORRUPT_ERRORS) as err:
        raise _corrupt(path, "Parquet", err, "Re-export it.") from None


def _read_parquet(path: Path) -> _Raw:
    pq = _parquet(path)
    with _parquet_errors(path):
        table = pq.read_table(path)
    frame, lists = frame_from_arrow(table, path.name)
    return _Raw(frame, arrow_columns(table), lists)


_TEXT = (".csv", ".tsv")  # read by _read_csv, which also takes no_header
_READERS = {".npy": _read_npy, ".npz": _read_npz, ".parquet": _read_parquet}
_EXTENSIONS = sorted([*_TEXT, *_READERS])


def _check_path(path) -> Path:
    """``path`` as a Path to a readable, non-empty file of a known kind."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No such file: {path}. Check the path and the current directory ({Path.cwd()})."
        )
    if path.is_dir():
        raise ValueError(f"{path} is a directory, expected a data file ({', '.join(_EXTENSIONS)}).")
    if path.suffix.lower() not in _EXTENSIONS:
        raise invalid_value(
            "the file extension",
            f"one of {_EXTENSIONS}",
            repr(path.name),
            "Convert the file to CSV (with a header row), .npy, .npz or Parquet.",
        )
    if not os.access(path, os.R_OK):
        raise PermissionError(
            f"Cannot read {path}: permission denied. Make it readable (chmod u+r) or copy it elsewhere."
        )
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes). Point to a file that holds data.")
    return path


def _read_raw(path, no_header: bool | None = None) -> _Raw:
    path = _check_path(path)
    suffix = path.suffix.lower()
    return _read_csv(path, no_header) if suffix in _TEXT else _READERS[suffix](path)


def _check_image_shape(image_shape) -> tuple[int, ...] | None:
    """``image_shape`` as a tuple of ints, or ``ValueError`` unless (h, w) or (h, w, c) of positive ints."""
    if image_shape is None:
        return None
    dims = as_image_shape(image_shape)
    if dims is None:
        raise invalid_value(
            "image_shape",
            f"(height, width) or (height, width, channels) of positive integers, with channels in {IMAGE_CHANNELS}",
            f"image_shape={image_shape!r}",
            "Pass e.g. image_shape=(8, 8), or leave it unset for tabular data.",
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
        raise invalid_value(
            "image_shape",
            f"dimensions whose product is the {n_features} feature columns of {source}{left}",
            f"image_shape={requested!r}",
            fix,
        )
    return requested


def _check_rows(frame: pd.DataFrame, source: str, min_rows: int) -> None:
    if len(frame) < min_rows:
        raise ValueError(
            f"{source} has {plural(len(frame), 'row')}, expected at least {min_rows}. Provide more samples."
        )


def _check_impute(impute) -> None:
    if impute is not None and impute not in IMPUTERS:
        raise invalid_value(
            "impute", f"one of {[None, *IMPUTERS]}", f"impute={impute!r}", "Use 'mean' or leave it unset."
        )


def _select(raw: _Raw, selection: Selection, source: str) -> ColumnSpec:
    """The user's choice of columns for ``raw`` (before anything is learned from its values)."""
    if raw.labels is not None and selection.label_columns:
        raise ValueError(
            f"{source} already holds labels (array 'y'), so label_column={selection.label_columns[0]!r} is "
            "ambiguous. Drop the label column option."
        )
    return selection.select(raw.frame, list(raw.sources), raw.lists, source)


def _learn(raw: _Raw, spec: ColumnSpec, rows, selection: Selection, source: str, **cleaning) -> ColumnSpec:
    """The selected ``spec`` completed by the cleaning learned on the training ``rows``.

    Identifiers are looked for last, in file order, so that plainer problems are reported first.
    """
    spec = spec.learn(rows, source, **cleaning)
    check_identifiers(raw.frame, spec, selection, source)
    return spec


def _labels(raw: _Raw, spec: ColumnSpec) -> dict:
    if raw.labels is not None:
        return {"y": raw.labels}
    return {name: raw.frame[name].to_numpy() for name in spec.label_columns}


def _ids(raw: _Raw, spec: ColumnSpec) -> np.ndarray | None:
    return None if spec.id_column is None else raw.frame[spec.id_column].to_numpy()


def _found_shape(raw: _Raw, spec: ColumnSpec) -> tuple | None:
    """An array file's image shape, while every pixel is a feature in place."""
    return raw.image_shape if spec.feature_names == tuple(raw.frame.columns) else None


def _n_dropped(spec: ColumnSpec) -> int:
    return sum(name not in spec.feature_names for name in spec.constant_columns)


def read_table(
    path,
    *,
    label_column: str | None = None,
    label_columns=None,
    columns=None,
    drop_columns=None,
    id_column: str | None = None,
    no_header: bool | None = None,
    drop_constant: bool = False,
    impute: str | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> Table:
    """Read a ``.csv`` / ``.tsv``, ``.npy``, ``.npz`` or ``.parquet`` file as a :class:`Table`.

    ``label_column`` / ``label_columns`` name columns returned as labels instead of features (a
    ``.npz`` file may instead hold labels as array ``y``); ``id_column`` is kept beside the rows;
    ``columns`` and ``drop_columns`` choose the features by name or ``fnmatch`` pattern. A Parquet
    list column of numbers (embeddings) gives features ``NAME[0], NAME[1], ...``. Integer columns that
    look like row ids are refused unless handled. A CSV's delimiter (``,`` ``;`` tab) and header are
    detected; ``no_header=True`` reads its first line as data. Constant columns are kept (PCA and the
    autoencoder handle them) unless ``drop_constant=True``; missing values are errors unless
    ``impute="mean"``. ``image_shape`` ((h, w) or (h, w, c)) marks flat rows as images and overrides
    the shape of an image array.
    """
    _check_impute(impute)
    requested = _check_image_shape(image_shape)
    selection = Selection.of(columns=columns, drop_columns=drop_columns, id_column=id_column,
                             label_column=label_column, label_columns=label_columns)
    source = Path(path).name
    raw = _read_raw(path, no_header)
    _check_rows(raw.frame, source, MIN_ROWS)
    spec = _select(raw, selection, source)
    spec = _learn(raw, spec, raw.frame, selection, source, drop_constant=drop_constant, impute=impute)
    features = spec.apply(raw.frame, source)
    shape = _final_image_shape(requested, _found_shape(raw, spec), features.shape[1], _n_dropped(spec), source)
    labels = _labels(raw, spec)
    return Table(features, next(iter(labels.values()), None), spec.feature_names, shape,
                 ids=_ids(raw, spec), all_labels=labels or None, columns=spec)


def split_indices(n_rows: int, test_size: float, seed: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle of ``range(n_rows)`` into (train, test) index arrays."""
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real) or not 0.0 < test_size < 1.0:
        raise invalid_value(
            "test_size", "a fraction strictly between 0 and 1", f"test_size={test_size!r}", "Use e.g. 0.2."
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


def _take(values, index: np.ndarray):
    return None if values is None else values[index]


def _check_test_columns(raw: _Raw, test_raw: _Raw, selection: Selection, source: str, test_source: str) -> None:
    selection.check_exists(list(test_raw.sources), test_raw.lists, test_source)
    missing = [c for c in raw.sources if c not in test_raw.sources]
    extra = [c for c in test_raw.sources if c not in raw.sources]
    if missing or extra:
        raise ValueError(
            f"{test_source} has different columns from {source}: missing {describe_names(missing) or 'none'}, "
            f"extra {describe_names(extra) or 'none'}. Both files need the same columns."
        )


def _notes(raw: _Raw, spec: ColumnSpec, source: str, impute: str | None) -> dict:
    notes = {"units": f"original units of {source}"}
    n_constant_kept = sum(name in spec.feature_names for name in spec.constant_columns)
    dropped = [name for name in spec.constant_columns if name not in spec.feature_names]
    if n_constant_kept:
        notes["constant_columns"] = n_constant_kept
    if dropped:
        notes["dropped_constant_columns"] = dropped
    if impute:
        notes["impute"] = f"{impute} of the training rows"
    lines = list(raw.notes)
    if spec.id_column is not None:
        lines.append(f"column {spec.id_column!r} kept beside the rows as their identifier, not as a feature")
    if spec.dropped_columns:
        lines.append(f"{plural(len(spec.dropped_columns), 'column')} left out: {describe_names(spec.dropped_columns)}")
    lines += [f"list column {name!r} read as {length} features {name}[0] to {name}[{length - 1}]"
              for name, length in spec.list_lengths.items()]
    if lines:
        notes["preprocessing"] = lines
    return notes


def load_user_data(
    path,
    *,
    test=None,
    test_size: float = 0.2,
    label_column: str | None = None,
    label_columns=None,
    columns=None,
    drop_columns=None,
    id_column: str | None = None,
    no_header: bool | None = None,
    seed: int = 0,
    drop_constant: bool = False,
    impute: str | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> Dataset:
    """Read a user's file as a train/test :class:`Dataset`.

    Without ``test`` the rows are split by a shuffle seeded with ``seed``;
    with ``test`` that second file (same columns, any order) is the test set.
    Column drops and imputed means are learned on the training rows only; the
    other keywords are those of :func:`read_table`. The dataset carries the
    learned :class:`ColumnSpec` (``columns``), the id column's values
    (``ids_train`` / ``ids_test``), every label column (``all_labels_*``; ``y_*``
    hold the first) and ``notes``: the constant columns kept
    (``"constant_columns"``) and what was done to the columns
    (``"preprocessing"``), so that reports can say so.
    """
    _check_impute(impute)
    requested = _check_image_shape(image_shape)
    selection = Selection.of(columns=columns, drop_columns=drop_columns, id_column=id_column,
                             label_column=label_column, label_columns=label_columns)
    path = Path(path)
    source = path.name
    raw = _read_raw(path, no_header)
    cleaning = {"drop_constant": drop_constant, "impute": impute}
    if test is None:
        _check_rows(raw.frame, source, MIN_ROWS)
        spec = _select(raw, selection, source)
        train_index, test_index = split_indices(len(raw.frame), test_size, seed, source)
        train_frame, test_frame = raw.frame.iloc[train_index], raw.frame.iloc[test_index]
        spec = _learn(raw, spec, train_frame, selection, source, **cleaning)
        labels, ids = _labels(raw, spec), _ids(raw, spec)
        labels_train = {name: values[train_index] for name, values in labels.items()}
        labels_test = {name: values[test_index] for name, values in labels.items()}
        ids_train, ids_test = _take(ids, train_index), _take(ids, test_index)
        test_source = source
    else:
        test_source = Path(test).name
        test_raw = _read_raw(test, no_header)
        _check_rows(raw.frame, source, MIN_SPLIT_ROWS)
        _check_rows(test_raw.frame, test_source, MIN_SPLIT_ROWS)
        spec = _select(raw, selection, source)
        _check_test_columns(raw, test_raw, selection, source, test_source)
        train_frame, test_frame = raw.frame, test_raw.frame
        spec = _learn(raw, spec, train_frame, selection, source, **cleaning)
        labels_train, labels_test = _labels(raw, spec), _labels(test_raw, spec)
        ids_train, ids_test = _ids(raw, spec), _ids(test_raw, spec)
    x_train = spec.apply(train_frame, source)
    x_test = spec.apply(test_frame, test_source)
    return Dataset(
        name=path.stem,
        x_train=x_train,
        x_test=x_test,
        y_train=next(iter(labels_train.values()), None),
        y_test=next(iter(labels_test.values()), None),
        image_shape=_final_image_shape(requested, _found_shape(raw, spec), x_train.shape[1], _n_dropped(spec), source),
        feature_names=spec.feature_names,
        notes=_notes(raw, spec, source, impute),
        columns=spec,
        ids_train=ids_train,
        ids_test=ids_test,
        all_labels_train=labels_train or None,
        all_labels_test=labels_test or None,
    )


# --- applying a model to a file, a block of rows at a time ------------------------------------------


def _check_block_rows(block_rows) -> int:
    if isinstance(block_rows, bool) or not isinstance(block_rows, numbers.Integral) or block_rows < 1:
        raise invalid_value(
            "block_rows", "a positive integer", f"block_rows={block_rows!r}", f"Use e.g. {BLOCK_ROWS}."
        )
    return int(block_rows)


def _csv_blocks(path: Path, spec: ColumnSpec, block_rows: int, no_header: bool | None) -> Iterator:
    layout = _csv_layout(path, no_header)
    with _csv_errors(path):
        names = list(_read_csv_frame(path, layout, nrows=0 if layout.header else 1).columns)
        spec.check_names(names, path.name)
        wanted = {*spec.needed_columns, *spec.feature_names}
        # Positions, not a callable: pandas misreads header-less chunks selected by a callable.
        usecols = [i for i, name in enumerate(names) if name in wanted]
        yield from _read_csv_frame(path, layout, usecols=usecols, chunksize=block_rows)


def _parquet_blocks(path: Path, spec: ColumnSpec, block_rows: int) -> Iterator:
    pq = _parquet(path)
    with _parquet_errors(path):
        parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    spec.check_names(names, path.name)
    wanted = {*spec.needed_columns, *spec.feature_names}
    with _parquet_errors(path):
        yield from parquet.iter_batches(batch_size=block_rows, columns=[n for n in names if n in wanted])


def _array_blocks(path: Path, spec: ColumnSpec, block_rows: int) -> Iterator:
    if path.suffix.lower() == ".npy":
        array = _load_npy(path, mmap_mode="r")
        _check_array(array, path)
        names = _array_frame(array[:0])[0].columns
        blocks = (_array_frame(array[start : start + block_rows])[0] for start in range(0, len(array), block_rows))
    else:  # NumPy cannot map a member of a zip archive: the archive is loaded whole.
        frame = _read_npz(path).frame
        names = frame.columns
        blocks = (frame.iloc[start : start + block_rows] for start in range(0, len(frame), block_rows))
    spec.check_names(names, path.name)
    yield from blocks


def iter_row_blocks(path, spec: ColumnSpec, block_rows: int = BLOCK_ROWS, *, no_header: bool | None = None):
    """Yield ``(ids or None, float32 features (n, d))`` for successive blocks of at most ``block_rows`` rows.

    For applying a model to a file at bounded memory: CSV / TSV are read ``block_rows`` lines at a time
    (same delimiter and header detection as training; ``no_header`` as in :func:`read_table`), Parquet by
    record batches of the needed columns only, ``.npy`` through a memory map; an ``.npz`` archive is
    loaded whole (NumPy cannot map a member of a zip). Every block goes through ``spec.apply`` (columns
    matched by name, imputed as in training, values checked); a missing column is reported before the
    first block. ``ids`` are the values of ``spec.id_column`` where the file has that column.
    """
    path = _check_path(path)
    block_rows = _check_block_rows(block_rows)
    suffix = path.suffix.lower()
    if suffix in _TEXT:
        blocks = _csv_blocks(path, spec, block_rows, no_header)
    elif suffix == ".parquet":
        blocks = _parquet_blocks(path, spec, block_rows)
    else:
        blocks = _array_blocks(path, spec, block_rows)
    start = 0
    for block in blocks:
        stop = start + len(block)
        yield _block_ids(block, spec), spec.apply(block, f"{path.name} (rows {start + 1}-{stop})")
        start = stop


def _block_ids(block, spec: ColumnSpec) -> np.ndarray | None:
    name = spec.id_column
    if isinstance(block, pd.DataFrame):
        return block[name].to_numpy() if name in block.columns else None
    return block.column(name).to_numpy(zero_copy_only=False) if name in block.schema.names else None


def count_rows(path) -> int | None:
    """The number of rows of a file where its metadata tells (Parquet, ``.npy``); None for CSV, TSV and ``.npz``."""
    path = _check_path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        pq = _parquet(path)
        with _parquet_errors(path):
            return pq.ParquetFile(path).metadata.num_rows
    if suffix == ".npy":
        array = _load_npy(path, mmap_mode="r")
        return len(array) if array.ndim else None
    return None
