"""Users' own data files read whole, into a cleaned :class:`Table` or train/test :class:`Dataset`.

Each file is read by the reader of its format (:mod:`aepca.data.formats`); every problem is one line naming
the file, the rule and the fix. Cleaning (constant columns dropped, means imputed, categories) is learned on
the training rows only, so no test information leaks; the learned :class:`ColumnSpec` is re-applied to new
data (``open_source(data, spec=...)``). A file's test rows are those :func:`aepca.data.order.held_out_mask`
holds out, as when the file is streamed.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aepca.data._dataset import Dataset
from aepca.data.columns import (MAX_CATEGORIES, ColumnSpec, Selection, check_categorical, check_identifiers, check_impute,
                                cleaning_notes, column_notes)
from aepca.data.formats import Part, check_same_columns, holds_split, memory_part, open_part
from aepca.data.order import TEST_SALT, held_count, held_out_mask
from aepca.validation import IMAGE_CHANNELS, as_image_shape, invalid_value, plural

MIN_ROWS = 3
MIN_SPLIT_ROWS = 2


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
    """A file (or a table in memory) read whole: its reader (``part``), its rows as single-value columns,
    ``{list column: length}``."""

    part: Part
    frame: pd.DataFrame
    lists: dict

    @property
    def source(self) -> str:
        """How messages name it: a file by its name."""
        return self.part.where if self.part.path is None else self.part.path.name

    @property
    def name(self) -> str:
        """The data's name, as a row source of it is named: a file's name, else its kind."""
        return self.part.kind if self.part.path is None else self.part.path.name


def _read_raw(data, no_header: bool | None = None, split: str | None = None) -> _Raw:
    """A file (``split``: the rows of an archive that holds its own split), or a DataFrame or Arrow table in
    memory, read whole."""
    is_file = isinstance(data, str | os.PathLike)
    part = open_part(data, no_header=no_header, split=split) if is_file else memory_part(data, sys.maxsize)
    frame, lists = part.frame(part.whole(), part.path.name if is_file else part.where)
    frame.columns = [str(c) for c in frame.columns]
    return _Raw(part, frame, lists)


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


def _final_image_shape(requested, raw: _Raw, spec: ColumnSpec, n_features: int, source: str) -> tuple | None:
    """The requested image shape, checked against the features left; else an array file's, while every pixel
    is a feature in place."""
    if requested is None:
        found = raw.part.image_shape if spec.feature_names == tuple(raw.frame.columns) else None
        return found if found and math.prod(found) == n_features else None
    return spec.checked_image_shape(requested, source)


def _check_rows(frame: pd.DataFrame, source: str, min_rows: int) -> None:
    if len(frame) < min_rows:
        raise ValueError(
            f"{source} has {plural(len(frame), 'row')}, expected at least {min_rows}. Provide more samples."
        )


def _check_options(impute, categorical, max_categories, image_shape) -> tuple[int, ...] | None:
    """The cleaning options of both readers checked; the image shape asked for."""
    check_impute(impute)
    check_categorical(categorical, max_categories)
    return _check_image_shape(image_shape)


def _learn(raw: _Raw, spec: ColumnSpec, rows, selection: Selection, source: str, **cleaning) -> ColumnSpec:
    """The selected ``spec`` completed by the cleaning learned on the training ``rows``.

    Identifiers are looked for last, in file order, so that plainer problems are reported first.
    """
    spec = spec.learn(rows, source, **cleaning)
    check_identifiers(raw.frame, spec, selection, source)
    return spec


def _labels(raw: _Raw, spec: ColumnSpec) -> dict:
    if raw.part.y is not None:
        return {"y": raw.part.y}
    return {name: raw.frame[name].to_numpy() for name in spec.label_columns}


def _ids(raw: _Raw, spec: ColumnSpec) -> np.ndarray | None:
    return None if spec.id_column is None else raw.frame[spec.id_column].to_numpy()


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
    categorical: str = "refuse",
    max_categories: int = MAX_CATEGORIES,
    na_values=None,
) -> Table:
    """Read a delimited text (``.csv``, ``.tsv``, ``.txt``, ``.dat``), Excel (``.xlsx``: the first sheet), ``.npy``,
    ``.npz``, ``.parquet`` or Arrow (``.arrow``, ``.feather``) file as a :class:`Table`.

    ``label_column`` / ``label_columns`` name columns returned as labels instead of features (a
    ``.npz`` file may instead hold labels as array ``y``); ``id_column`` is kept beside the rows;
    ``columns`` and ``drop_columns`` choose the features by name or ``fnmatch`` pattern. A Parquet
    list column of numbers (embeddings) gives features ``NAME[0], NAME[1], ...``. Integer columns that
    look like row ids are refused unless handled. A CSV's delimiter (``,`` ``;`` tab) and header are
    detected; ``no_header=True`` reads its first line as data. Constant columns are kept (PCA and the
    autoencoder handle them) unless ``drop_constant=True``; missing values (empty cells, NaN, and the cell
    values ``na_values`` lists, such as ``"?"``) are errors unless ``impute="mean"``. ``image_shape`` ((h, w) or
    (h, w, c)) marks flat rows as images and overrides the shape of an image array. Text and categorical columns
    are refused (a boolean column is a 0/1 number) unless ``categorical="onehot"``: then each, booleans too,
    becomes one 0/1 indicator per category of the training rows (``NAME=CATEGORY``; docs/categorical.md), and a
    column of more than ``max_categories`` distinct values is refused.
    """
    requested = _check_options(impute, categorical, max_categories, image_shape)
    selection = Selection.of(columns=columns, drop_columns=drop_columns, id_column=id_column,
                             label_column=label_column, label_columns=label_columns, na_values=na_values)
    source = Path(path).name
    raw = _read_raw(path, no_header)
    _check_rows(raw.frame, source, MIN_ROWS)
    spec = raw.part.select(raw.frame, raw.lists, selection, source, categorical)
    spec = _learn(raw, spec, raw.frame, selection, source, drop_constant=drop_constant, impute=impute,
                  max_categories=max_categories)
    features = spec.apply(raw.frame, source)
    shape = _final_image_shape(requested, raw, spec, features.shape[1], source)
    labels = _labels(raw, spec)
    return Table(features, next(iter(labels.values()), None), spec.feature_names, shape,
                 ids=_ids(raw, spec), all_labels=labels or None, columns=spec)


def _checked_split(train: np.ndarray, test: np.ndarray, test_size, source: str) -> tuple[np.ndarray, np.ndarray]:
    if min(len(train), len(test)) < MIN_SPLIT_ROWS:
        raise ValueError(
            f"Splitting the {len(train) + len(test)} rows of {source} with test_size={test_size} leaves {len(train)} "
            f"training and {plural(len(test), 'test row')}, expected at least {MIN_SPLIT_ROWS} on each side. Provide "
            "more rows, change test_size, or pass a separate test file."
        )
    return train, test


def _check_test_size(test_size) -> float:
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real) or not 0.0 < test_size < 1.0:
        raise invalid_value(
            "test_size", "a fraction strictly between 0 and 1", f"test_size={test_size!r}", "Use e.g. 0.2."
        )
    return float(test_size)


# The share of rows held out for testing where data holds no test rows of its own (the bundled sets too).
TEST_SIZE = 0.2


def resolved_test_size(test_size, own_test: str | None) -> float | None:
    """``test_size`` (None: ``TEST_SIZE``) where the test rows are held out of the data here; where
    ``own_test`` names what gives them instead (a test file, ...), None, and a ``test_size`` refused."""
    if own_test is None:
        return TEST_SIZE if test_size is None else _check_test_size(test_size)
    if test_size is not None:
        raise invalid_value("test_size", f"none where {own_test} gives the test rows (all of the data's rows train)",
                            f"test_size={test_size!r}", "Drop --test-size (test_size=).")
    return None


def split_indices(n_rows: int, test_size: float, seed: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle of ``range(n_rows)`` into (train, test) index arrays: the split that defines the bundled
    data sets (users' files are split by :func:`held_out_split`)."""
    n_test = held_count(_check_test_size(test_size), n_rows)
    order = np.random.default_rng(seed).permutation(n_rows)
    return _checked_split(order[n_test:], order[:n_test], test_size, source)


def split_dataset(name: str, X: np.ndarray, y: np.ndarray | None, seed: int, **fields) -> Dataset:
    """``X`` (as float32) and its labels ``y`` split 80/20 by :func:`split_indices` seeded with ``seed``,
    as every bundled data set is; ``fields`` are the other :class:`Dataset` fields."""
    train, test = split_indices(len(X), TEST_SIZE, seed, name)
    X = X.astype(np.float32)
    return Dataset(name=name, x_train=X[train], x_test=X[test], y_train=None if y is None else y[train],
                   y_test=None if y is None else y[test], **fields)


def held_out_split(n_rows: int, test_size: float, seed: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices of ``range(n_rows)``: the test rows are those of
    ``held_out_mask(n_rows, test_size, seed, TEST_SALT)``, the rule of a streamed file's test rows."""
    test = held_out_mask(n_rows, _check_test_size(test_size), seed, TEST_SALT)
    return _checked_split(np.flatnonzero(~test), np.flatnonzero(test), test_size, source)


def _notes(raw: _Raw, spec: ColumnSpec, source: str) -> dict:
    notes = {"units": f"original units of {source}", **cleaning_notes(spec)}
    if raw.part.distance is not None:
        notes["distance"] = raw.part.distance
    lines = [*raw.part.notes, *column_notes(spec)]
    if lines:
        notes["preprocessing"] = lines
    return notes


def load_user_data(
    path,
    *,
    test=None,
    test_size: float | None = None,
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
    categorical: str = "refuse",
    max_categories: int = MAX_CATEGORIES,
    na_values=None,
) -> Dataset:
    """Read a user's file (or a DataFrame or Arrow table in memory) as a train/test :class:`Dataset`.

    Without ``test``, the test rows are ``held_out_mask(n_rows, test_size, seed, TEST_SALT)``
    (:func:`held_out_split`): the same test rows as when the file is streamed. With ``test`` that second
    file (same columns, any order) is the test set; an ``.npz`` archive of ``x_train`` and ``x_test`` (and
    ``y_train``, ``y_test``: Keras' mnist.npz) is its own (:func:`aepca.data.formats.holds_split`). Column
    drops, imputed means and categories are learned on the training rows only (a test row's category unseen
    there has all-zero indicators); the other keywords are those of :func:`read_table`. The dataset carries
    the learned :class:`ColumnSpec` (``columns``), the id column's values (``ids_train`` / ``ids_test``),
    every label column (``all_labels_*``; ``y_*`` hold the first) and ``notes``: the constant columns kept
    (``"constant_columns"``) and what was done to the columns (``"preprocessing"``).
    """
    requested = _check_options(impute, categorical, max_categories, image_shape)
    selection = Selection.of(columns=columns, drop_columns=drop_columns, id_column=id_column,
                             label_column=label_column, label_columns=label_columns, na_values=na_values)
    own_split = test is None and isinstance(path, str | os.PathLike) and holds_split(path)
    test_size = resolved_test_size(test_size, "a test file" if test is not None else "the file's own test split" if own_split else None)
    raw = _read_raw(path, no_header, split="train" if own_split else None)
    source = raw.source
    cleaning = {"drop_constant": drop_constant, "impute": impute, "max_categories": max_categories}
    if test is None and not own_split:
        _check_rows(raw.frame, source, MIN_ROWS)
        spec = raw.part.select(raw.frame, raw.lists, selection, source, categorical)
        train_index, test_index = held_out_split(len(raw.frame), test_size, seed, source)
        train_frame, test_frame = raw.frame.iloc[train_index], raw.frame.iloc[test_index]
        spec = _learn(raw, spec, train_frame, selection, source, **cleaning)
        labels, ids = _labels(raw, spec), _ids(raw, spec)
        labels_train = {name: values[train_index] for name, values in labels.items()}
        labels_test = {name: values[test_index] for name, values in labels.items()}
        ids_train, ids_test = (None, None) if ids is None else (ids[train_index], ids[test_index])
        test_source, split = source, (float(test_size), seed)
    else:
        test_raw = _read_raw(path, split="test") if own_split else _read_raw(test, no_header)
        test_source = test_raw.source
        _check_rows(raw.frame, source, MIN_SPLIT_ROWS)
        _check_rows(test_raw.frame, test_source, MIN_SPLIT_ROWS)
        spec = raw.part.select(raw.frame, raw.lists, selection, source, categorical)
        selection.check_exists(list(test_raw.part.names), test_raw.lists, test_source)
        check_same_columns(raw.part, test_raw.part, "A test file needs the columns of the training file.")
        train_frame, test_frame = raw.frame, test_raw.frame
        spec = _learn(raw, spec, train_frame, selection, source, **cleaning)
        labels_train, labels_test = _labels(raw, spec), _labels(test_raw, spec)
        ids_train, ids_test = _ids(raw, spec), _ids(test_raw, spec)
        split = None
    x_train = spec.apply(train_frame, source)
    x_test = spec.apply(test_frame, test_source)
    return Dataset(
        name=raw.name,
        x_train=x_train,
        x_test=x_test,
        y_train=next(iter(labels_train.values()), None),
        y_test=next(iter(labels_test.values()), None),
        image_shape=_final_image_shape(requested, raw, spec, x_train.shape[1], source),
        feature_names=spec.feature_names,
        notes=_notes(raw, spec, source),
        columns=spec,
        ids_train=ids_train,
        ids_test=ids_test,
        all_labels_train=labels_train or None,
        all_labels_test=labels_test or None,
        split=split,
    )
