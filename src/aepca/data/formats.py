"""One reader per data format: CSV / TSV, JSON Lines, NumPy ``.npy`` / ``.npz``, Parquet, Arrow IPC (Feather),
files of vectors (``.fvecs``, ``.fbin``, ...), image files, and arrays and tables in memory.

Each opens as a :class:`Part`: its source columns in order (list columns unexpanded) and its rows in native
blocks (a Parquet row group, Arrow record batches, a run of CSV or JSON lines or of image files, a slice of an array;
an ``.npz`` archive is loaded whole, as NumPy cannot map a member of a zip), each read as a raw table: a 2-D
numeric array, a pandas DataFrame or a pyarrow Table. Every problem with a file is one line naming the file,
the rule and the fix.
"""

from __future__ import annotations

import atexit
import bz2
import codecs
import contextlib
import csv
import dataclasses
import errno
import functools
import gzip
import hashlib
import importlib
import io
import lzma
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aepca._files import remove
from aepca.data.columns import arrow_columns, check_unique_names, numbers_if_all, to_frame
from aepca.validation import as_image_shape, describe_names, invalid_value, plural

# Files of vectors as FAISS and the ANN benchmarks store them: {suffix: (value type, whether each row starts
# with its length as an int32 (TEXMEX's .fvecs, .bvecs), else the file with its rows and length (big-ann-benchmarks'))}.
VECTOR_FORMATS = {".fvecs": ("<f4", True), ".bvecs": ("u1", True), ".fbin": ("<f4", False), ".u8bin": ("u1", False),
                  ".i8bin": ("i1", False)}
# Delimited text: comma-, semicolon-, tab- or whitespace-separated values (what np.savetxt writes).
DELIMITED_EXTENSIONS = (".csv", ".tsv", ".txt", ".dat")
# Excel workbooks (their first sheet), read by openpyxl.
EXCEL_EXTENSIONS = (".xlsx", ".xlsm")
EXTENSIONS = (".arrow", ".csv", ".dat", ".feather", ".h5", ".hdf5", ".ipc", ".jsonl", ".ndjson", ".npy", ".npz",
              ".parquet", ".tsv", ".txt", *EXCEL_EXTENSIONS, *VECTOR_FORMATS)
# Text formats, read also compressed (x.csv.gz): their text is decompressed once (see decompressed).
TEXT_EXTENSIONS = (*DELIMITED_EXTENSIONS, ".jsonl", ".ndjson")
# Compressed files, named with the command that decompresses each beside it.
DECOMPRESSORS = {".gz": "gunzip -k", ".bz2": "bunzip2 -k", ".xz": "unxz -k", ".zst": "unzstd", ".zip": "unzip"}
# Image files Pillow reads: one row each (ImagesPart).
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
# Image files decoded at a time (a native block), and the modes read as greyscale (1, 8 or 16
# bits); any other is read as RGB.
IMAGE_BLOCK_FILES = 256
# Decoded image rows kept for the next pass (epochs decode no file again) up to this many bytes.
IMAGE_CACHE_BYTES = 2**30
_GREY_MODES = ("1", "L", "LA", "La", "I;16", "I;16B", "I;16L", "I;16N")
# The most bytes of float32 values a block read from a file holds: wide rows are read fewer at a time.
BLOCK_BYTES = 256 * 2**20
# The start of a CSV file read to find its delimiter and header.
SNIFF_CHARS = 16 * 1024
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
# Fields separated by runs of spaces or tabs, leading ones ignored (pandas' own pattern for it).
WHITESPACE = r"\s+"
# Bytes of a CSV file scanned at a time when its lines are indexed.
_INDEX_BYTES = 1 << 22
# A file's fingerprint hashes this many of its first, middle and last bytes.
_DIGEST_BYTES = 1 << 16
_CORRUPT_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)
_NPY_FIX = "Re-save it with numpy.save(path, array)."


def _corrupt(where, kind: str, err: Exception, fix: str) -> ValueError:
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "Object arrays cannot be loaded" in detail or "Python objects in dtype" in detail:  # NumPy's, for dtype object
        return ValueError(f"{where} holds Python objects (dtype object), expected numbers (objects are not read: "
                          "unpickling them could run code). Convert the array to numbers before saving it, e.g. "
                          "array.astype(float).")
    return ValueError(f"{where} is not a readable {kind} file ({detail}); it may be truncated or corrupt. {fix}")


@contextlib.contextmanager
def _read_errors(where, kind: str, fix: str, errors=_CORRUPT_ERRORS):
    """``errors`` raised while reading ``where`` as :func:`_corrupt`'s one line."""
    try:
        yield
    except errors as err:
        raise _corrupt(where, kind, err, fix) from None


def rows_within(block_rows: int, width: int) -> int:
    """``block_rows``, or fewer, so that a block of rows of ``width`` float32 values takes at most BLOCK_BYTES."""
    return max(1, min(block_rows, BLOCK_BYTES // (4 * max(width, 1))))


def _slices(n_rows: int, block_rows: int) -> list[int]:
    return [min(block_rows, n_rows - start) for start in range(0, n_rows, block_rows)]


class Part:
    """One file, or one array or table in memory, read a native block at a time: ``block(k, columns)`` is
    native block ``k`` as a raw table, of ``columns`` at least (None: all); ``whole()`` every row.

    ``names``: the source columns in order (list columns unexpanded); ``sizes``: the rows of each native
    block; ``where``: how messages name it; ``kind``, ``schema``: what the fingerprint says of it; ``cells``:
    ``{column: None, a list length or 'lists'}``; ``row_shape``: an array's rows. ``plain``: blocks are 2-D
    numeric arrays (columns ``x0, x1, ...``), else DataFrames or pyarrow Tables. ``y``: an ``.npz`` file's
    labels, or image files' class folders; ``ids`` (named ``id_name``): image files' paths; ``notes``: how a
    CSV file was read.
    """

    path: Path | None = None
    plain = False
    # Row ids the part itself names (image files: their paths), and the name of that id column.
    ids: np.ndarray | None = None
    id_name: str | None = None
    row_shape: tuple | None = None
    image_shape: tuple | None = None
    y: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    # The distance the file says its rows are compared by (an ANN-benchmarks HDF5 file's attribute).
    distance: str | None = None

    @property
    def cells(self) -> dict:
        return dict.fromkeys(self.names)

    @property
    def in_memory(self) -> bool:
        """Whether the rows are held as they are read (an array or table in memory, an ``.npz`` archive)."""
        return self.path is None or self.kind == "npz"

    @property
    def positional(self) -> bool:
        """Whether the columns are named by position (``x0, x1, ...``), not by the data."""
        return self.plain

    def frame(self, raw, source: str) -> tuple[pd.DataFrame, dict]:
        """``raw`` (a block, or every row) as single-value columns, and ``{list column: length}``."""
        if self.plain:
            return pd.DataFrame(raw, columns=list(self.names), copy=False), {}
        return to_frame(raw, source)

    def select(self, frame: pd.DataFrame, lists: dict, selection, source: str, categorical: str = "refuse"):
        """The :class:`ColumnSpec` of the columns ``selection`` names, checked on ``frame`` (rows of this part);
        ``categorical``: what becomes of text columns (:data:`aepca.data.columns.CATEGORICAL`)."""
        if self.y is not None and selection.label_columns:
            raise ValueError(
                f"{source} already holds labels (array 'y'), so label_column={selection.label_columns[0]!r} is "
                "ambiguous. Drop the label column option."
            )
        return selection.select(frame, list(self.names), lists, source, categorical)

    def fingerprint(self) -> dict:
        """The file by content, not by path or time: base name, bytes, rows, a hash of its first, middle and
        last bytes."""
        size = self.path.stat().st_size
        digest = hashlib.sha256()
        with open(self.path, "rb") as fh:
            for start in sorted({0, max(size - _DIGEST_BYTES, 0) // 2, max(size - _DIGEST_BYTES, 0)}):
                fh.seek(start)
                digest.update(fh.read(_DIGEST_BYTES))
        return {"name": self.path.name, "bytes": size, "rows": int(sum(self.sizes)), "digest": digest.hexdigest()[:16]}


# --- arrays and tables in memory, .npy and .npz ------------------------------------------------------


class _SlicedPart(Part):
    """An array (in memory, a ``.npy`` file's or an ``.npz`` archive's), a DataFrame or a pyarrow
    Table, in slices of ``block_rows`` rows. Text, object and structured arrays are read as DataFrames."""

    def __init__(self, rows, kind: str, where: str, block_rows: int, *, path=None, y=None):
        self.kind, self.where, self.path, self.y, self._step = kind, where, path, y, block_rows
        # A .npy file's plain rows are read from the file, not through its memory map: pages
        # mapped once stay in the process's memory, so a pass over a big file would hold all of it.
        self._file_rows = (isinstance(rows, np.memmap) and rows.dtype.kind in "biuf" and rows.flags.c_contiguous
                           and rows.size > 0)
        if self._file_rows:
            self._offset, self._file_dtype, self._row_shape = rows.offset, rows.dtype, rows.shape[1:]
            block_rows = self._step = rows_within(block_rows, math.prod(self._row_shape))
        if isinstance(rows, np.ndarray):
            self.plain = rows.dtype.kind in "biuf"
            self.row_shape = rows.shape[1:]
            self.image_shape = as_image_shape(rows.shape[1:]) if self.plain and rows.ndim in (3, 4) else None
            if not rows.dtype.names:
                rows = rows.reshape(len(rows), math.prod(rows.shape[1:]))
            self.names = rows.dtype.names or tuple(f"x{i}" for i in range(rows.shape[1]))
            self.schema = ([f"{name}: {rows.dtype[name]}" for name in self.names] if rows.dtype.names
                           else [f"{rows.dtype} rows of shape {self.row_shape}"])
        elif isinstance(rows, pd.DataFrame):
            self.names = tuple(str(c) for c in rows.columns)
            check_unique_names(self.names, where)
            self.schema = [f"{name}: {dtype}" for name, dtype in zip(self.names, rows.dtypes)]
        else:
            self.names = arrow_columns(rows, where)
            self.schema = [f"{name}: {rows.schema.field(name).type}" for name in self.names]
        self._rows = rows
        self.sizes = _slices(len(rows), block_rows)

    def _raw(self, rows):
        if isinstance(rows, np.ndarray) and not self.plain:
            return pd.DataFrame(rows, columns=list(self.names))
        return rows

    def block(self, k: int, columns=None):
        start, stop = k * self._step, min((k + 1) * self._step, len(self._rows))
        if self._file_rows:
            return self._read_file_rows(start, stop).reshape(stop - start, -1)
        rows = self._rows.iloc[start:stop] if isinstance(self._rows, pd.DataFrame) else self._rows[start:stop]
        return self._raw(rows)

    def _read_file_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the .npy file, read into a new array."""
        rows = np.empty((stop - start, *self._row_shape), dtype=self._file_dtype)
        with _read_errors(self.path, ".npy", _NPY_FIX, EOFError):
            offset = self._offset + start * rows.itemsize * math.prod(self._row_shape)
            _read_exactly(self.path, memoryview(rows).cast("B"), offset)
        return rows

    def whole(self):
        return self._raw(self._rows)


def _read_exactly(path: Path, buffer: memoryview, offset: int) -> None:
    """Fill ``buffer`` with ``path``'s bytes from ``offset`` (a read returns at most 2 GiB on Linux);
    ``EOFError`` if the file ends first."""
    with open(path, "rb", buffering=0) as file:
        while buffer:
            read = os.preadv(file.fileno(), [buffer], offset)
            if read == 0:
                raise EOFError("the file ends early")
            buffer, offset = buffer[read:], offset + read


class InterleavedPart(Part):
    """Rows in memory held as two 2-D arrays of one width, merged a block at a time: row ``i`` is the next
    row of ``second`` where ``in_second[i]``, else of ``first``. A hash-split file's training and test rows
    are so read in file order without a copy of them all."""

    plain = True
    kind, where = "array", "the array"

    def __init__(self, first: np.ndarray, second: np.ndarray, in_second: np.ndarray, block_rows: int, *,
                 where: str | None = None, names: tuple[str, ...] | None = None, distance: str | None = None):
        self._first, self._second, self._in_second, self._step = first, second, in_second, block_rows
        self.distance = distance
        # Rows of ``second`` before each row: where each block starts in both arrays.
        self._second_before = np.concatenate([[0], np.cumsum(in_second, dtype=np.int64)])
        self.row_shape = first.shape[1:]
        self.where = where or self.where
        self.names = names or tuple(f"x{i}" for i in range(first.shape[1]))
        self.schema = [f"{first.dtype} rows of shape {self.row_shape}"]
        self.sizes = _slices(len(in_second), block_rows)

    def block(self, k: int, columns=None) -> np.ndarray:
        start, stop = k * self._step, min((k + 1) * self._step, len(self._in_second))
        return self._merged(start, stop)

    def whole(self) -> np.ndarray:
        return self._merged(0, len(self._in_second))

    def _merged(self, start: int, stop: int) -> np.ndarray:
        second_start, second_stop = self._second_before[start], self._second_before[stop]
        if second_start == second_stop:  # rows of the first array alone: a view of them, as an array's block is
            return self._first[start - second_start : stop - second_stop]
        mask = self._in_second[start:stop]
        rows = np.empty((stop - start, *self.row_shape), dtype=self._first.dtype)
        rows[~mask] = self._first[start - second_start : stop - second_stop]
        rows[mask] = self._second[second_start:second_stop]
        return rows


def _check_array(array: np.ndarray, where: str, fix: str) -> None:
    if not array.dtype.names and (array.ndim < 2 or math.prod(array.shape[1:]) == 0):
        raise ValueError(f"{where} holds an array of shape {array.shape}, expected 2-D (samples x features) or images "
                         f"(n, h, w[, c]), with at least one feature. {fix}")


def _load_npy(path: Path) -> np.ndarray:
    with _read_errors(path, ".npy", _NPY_FIX):
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    if not isinstance(array, np.ndarray):
        array.close()
        raise ValueError(f"{path} is a .npz archive, not a .npy array. Rename it to end in .npz.")
    return array


class _RowRangePart(Part):
    """A file whose rows ``start:stop`` its ``_read`` reads, in blocks of ``_step`` rows."""

    def _read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def block(self, k: int, columns=None) -> np.ndarray:
        return self._read(k * self._step, k * self._step + self.sizes[k])

    def whole(self) -> np.ndarray:
        return self._read(0, sum(self.sizes))


class _VectorsPart(_RowRangePart):
    """A file of vectors (:data:`VECTOR_FORMATS`), a block of rows read at a time from the file."""

    plain = True
    _FIX = "It may be truncated: copy or download it again."

    def __init__(self, path: Path, block_rows: int):
        self.path, self.where, self.kind = path, str(path), path.suffix.lower()[1:]
        value, prefixed = VECTOR_FORMATS[path.suffix.lower()]
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = np.frombuffer(fh.read(4 if prefixed else 8).ljust(8, b"\0"), "<i4")
        n_rows, width = (None, int(head[0])) if prefixed else (int(head[0]), int(head[1]))
        if not 0 < width * np.dtype(value).itemsize <= size or n_rows is not None and n_rows < 0:
            raise ValueError(f"{path} is not a readable .{self.kind} file: its header says {width} values a row, in a "
                             f"file of {size} bytes. {self._FIX}")
        self._row = np.dtype([("length", "<i4"), ("values", value, (width,))]) if prefixed else np.dtype((value, (width,)))
        self._offset = 0 if prefixed else 8
        body = size - self._offset
        if n_rows is None and body % self._row.itemsize or n_rows is not None and body != n_rows * self._row.itemsize:
            raise ValueError(f"{path} holds {size} bytes, not a whole number of rows of {width} values "
                             f"({self._row.itemsize} bytes each{' after an 8-byte header' if self._offset else ''}). {self._FIX}")
        self.names, self.row_shape = tuple(f"x{i}" for i in range(width)), (width,)
        self.schema = [f"{np.dtype(value)} vectors of {width} values"]
        self._step = rows_within(block_rows, width)
        self.sizes = _slices(body // self._row.itemsize, self._step)

    def _read(self, start: int, stop: int) -> np.ndarray:
        rows = np.empty(stop - start, self._row)
        with _read_errors(self.path, f".{self.kind}", self._FIX, EOFError):
            _read_exactly(self.path, memoryview(rows.view(np.uint8).reshape(-1)), self._offset + start * self._row.itemsize)
        if not self._row.names:
            return rows
        wrong = np.flatnonzero(rows["length"] != len(self.names))
        if wrong.size:
            raise ValueError(f"{self.path}: row {start + wrong[0] + 1} says it holds {rows['length'][wrong[0]]} values, the "
                             f"first row {len(self.names)}; every row must hold as many. {self._FIX}")
        return rows["values"]


# The arrays of a file that holds its own train/test split, by the prefix of their names: Keras' mnist.npz
# (x_train, x_test, with labels y_train, y_test), the ANN benchmarks' HDF5 files (train, test).
SPLIT_PREFIXES = ("x_", "")
HDF5_EXTENSIONS = (".h5", ".hdf5")
_NPZ_FIX = "Re-save it with numpy.savez(path, x=features, y=labels)."


def _split_prefix(names) -> str | None:
    return next((prefix for prefix in SPLIT_PREFIXES if {f"{prefix}train", f"{prefix}test"} <= set(names)), None)


def _array_names(path: Path) -> list[str]:
    """The arrays of an ``.npz`` archive, or the datasets of an HDF5 file."""
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return list(archive.files)
    with _hdf5().File(path, "r") as file:
        return list(_datasets(file))


def _datasets(file) -> dict[str, tuple]:
    """The shape and type of every dataset of an open HDF5 file, by its path ('x', 'group/x')."""
    found = {}
    file.visititems(lambda name, item: found.update({name: (item.shape, item.dtype)})
                    if isinstance(item, _hdf5().Dataset) else None)
    return found


def holds_split(path) -> bool:
    """Whether ``path`` is an ``.npz`` archive or an HDF5 file of a train/test split of its own (``x_train``,
    ``x_test``, with ``y_train`` and ``y_test`` for labels; or ``train`` and ``test``), which compare and sweep
    take as their split."""
    if Path(path).suffix.lower() not in (".npz", *HDF5_EXTENSIONS):
        return False
    try:
        return _split_prefix(_array_names(_check_path(path))) is not None
    except (*_CORRUPT_ERRORS, TypeError):  # not an archive (a .npy array has no context): its reading says so
        return False


def _pick_arrays(names: list[str], path: Path, split: str | None, fix: str) -> tuple[str, str | None]:
    """The names of the features and the labels (or None) among a file's arrays ``names``: the ``split``
    ("train" or "test") of a file that holds one, else 'x' (or the only array) and 'y'."""
    prefix = _split_prefix(names)
    if prefix is not None:
        if split is None:
            raise ValueError(
                f"{path} holds a train/test split ('{prefix}train', '{prefix}test'), expected one set of rows: compare "
                "and sweep take it as their split (without --test), but not this. Name the half to read: aepca encode "
                "or reconstruct --split train or test; aepca.open_source(path, split='test') in Python."
            )
        return f"{prefix}{split}", f"y_{split}" if prefix and f"y_{split}" in names else None
    x_name = next((n for n in ("x", "X") if n in names), None)
    if x_name:
        return x_name, next((n for n in ("y", "Y") if n in names), None)
    if len(names) == 1:
        return names[0], None
    raise ValueError(f"{path} holds arrays {names}, expected a single array or arrays named 'x' (features) and "
                     f"optionally 'y' (labels). {fix}")


def _checked_labels(labels: np.ndarray, n_rows: int, path: Path, names: tuple[str, str], shape: tuple) -> np.ndarray:
    """``labels`` (array ``names[1]``) as one per row of the features (``names[0]``, of ``shape``)."""
    labels = labels[:, 0] if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if labels.ndim != 1 or len(labels) != n_rows:
        raise ValueError(f"{path}: labels {names[1]!r} have shape {labels.shape} but features {names[0]!r} have shape "
                         f"{shape}, expected one label per row. Save one label per sample.")
    return labels


def _load_npz(path: Path, split: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    with _read_errors(path, ".npz", _NPZ_FIX):
        archive = np.load(path, allow_pickle=False)
    if isinstance(archive, np.ndarray):
        raise ValueError(f"{path} is a .npy array, not a .npz archive. Rename it to end in .npy.")
    with archive:
        x_name, y_name = _pick_arrays(list(archive.files), path, split, _NPZ_FIX)
        with _read_errors(path, ".npz", _NPZ_FIX):
            features = archive[x_name]
            labels = archive[y_name] if y_name else None
    if labels is not None:
        labels = _checked_labels(labels, len(features) if features.ndim else -1, path, (x_name, y_name), features.shape)
    return features, labels


def _holds_sparse_matrix(path: Path) -> bool:
    """Whether an ``.npz`` archive is a sparse matrix as ``scipy.sparse.save_npz`` writes one."""
    with _read_errors(path, ".npz", _NPZ_FIX):
        archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a .npy file so named: refused where it is loaded
        return False
    with archive:
        return {"format", "shape", "data"} <= set(archive.files)


def _hdf5():
    return needs("h5py", "h5py", "Reading HDF5 files", "h5py")


class _Hdf5Part(_RowRangePart):
    """An HDF5 file's dataset of rows (chosen by name as an ``.npz`` archive's array is, in a group too; the
    ANN benchmarks' ``train`` and ``test`` as a split), a block of rows read at a time by h5py; labels read
    whole."""

    kind, plain = "hdf5", True
    _FIX = "Write the rows as one dataset named 'x' (labels: 'y'), e.g. with h5py: file['x'] = rows."

    def __init__(self, path: Path, block_rows: int, split: str | None):
        self.path = path
        with self._file() as file:
            datasets = _datasets(file)
            distance = file.attrs.get("distance")
        if distance is not None:
            self.distance = distance.decode() if isinstance(distance, bytes) else str(distance)
        self._x, y_name = _pick_arrays(list(datasets), path, split, self._FIX)
        shape, dtype = datasets[self._x]
        if y_name is not None:
            with self._file() as file:
                labels = file[y_name][()]
            self.y = _checked_labels(labels, shape[0] if shape else -1, path, (self._x, y_name), shape)
        self.where = f"{path} ({self._x})" if split else str(path)
        if dtype.kind not in "biuf":
            raise ValueError(f"{self.where}: dataset {self._x!r} holds {dtype} values, expected numbers. {self._FIX}")
        _check_array(np.broadcast_to(np.zeros((), dtype), shape), self.where, self._FIX)  # its shape, no rows read
        self.row_shape, width = shape[1:], math.prod(shape[1:])
        self.image_shape = as_image_shape(shape[1:]) if len(shape) in (3, 4) else None
        self.names = tuple(f"x{i}" for i in range(width))
        self.schema = [f"{dtype} rows of shape {self.row_shape}"]
        self._step = rows_within(block_rows, width)
        self.sizes = _slices(shape[0], self._step)

    @contextlib.contextmanager
    def _file(self):
        with _read_errors(self.path, "HDF5", self._FIX), _hdf5().File(self.path, "r") as file:
            yield file

    def _read(self, start: int, stop: int) -> np.ndarray:
        with self._file() as file:
            return file[self._x][start:stop].reshape(stop - start, -1)


def is_pyarrow_table(data) -> bool:
    """Whether ``data`` is a pyarrow Table or RecordBatch."""
    return type(data).__module__.startswith("pyarrow") and hasattr(data, "schema")


def exports_arrow(data) -> bool:
    """Whether ``data`` is another library's table that exports its data through the Arrow PyCapsule
    interface (a polars or DuckDB frame), read as a pyarrow Table: its columns by name."""
    return not isinstance(data, pd.DataFrame) and not type(data).__module__.startswith("pyarrow") and hasattr(
        data, "__arrow_c_stream__")


def memory_part(data, block_rows: int) -> Part:
    """An array (2-D, or images ``(n, h, w[, c])``), a SciPy sparse matrix or array, a pandas DataFrame, a
    pyarrow Table or RecordBatch, or another library's table that exports Arrow data (:func:`exports_arrow`)."""
    from scipy import sparse

    if sparse.issparse(data):
        return _SparsePart(data, block_rows)
    if exports_arrow(data):
        library = f"{type(data).__module__.split('.')[0]} {type(data).__name__}"  # "polars DataFrame"
        table = needs("pyarrow", "pyarrow", f"Reading a {library}", "'aepca[parquet]'").table(data)
        return _SlicedPart(table, "Arrow table", f"the {library}", block_rows)
    if isinstance(data, pd.DataFrame):
        return _SlicedPart(data, "DataFrame", "the DataFrame", block_rows)
    if is_pyarrow_table(data):
        import pyarrow as pa

        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        return _SlicedPart(table, "Arrow table", "the Arrow table", block_rows)
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as err:
        raise invalid_value("data", "a rectangular array of numbers", f"an object numpy cannot convert ({err})",
                            "Make every row the same length.") from None
    if array.dtype == object:
        with contextlib.suppress(ValueError, TypeError):  # numbers held as objects, as scikit-learn takes them
            array = array.astype(np.float64)
    _check_array(array, "data", "Use data.reshape(-1, 1) for a single feature.")
    return _SlicedPart(array, "array", "the array", block_rows)


class _SparsePart(Part):
    """A SciPy sparse matrix or array of numbers (any format, read as CSR; in memory, or a file that
    ``scipy.sparse.save_npz`` wrote), its rows made dense a block at a time: never all at once."""

    plain, in_memory = True, False

    def __init__(self, matrix, block_rows: int, path: Path | None = None):
        self.path, self.kind = path, "sparse matrix" if path is None else "npz"
        self.where = "the sparse matrix" if path is None else str(path)
        if matrix.dtype.kind not in "biuf":
            raise invalid_value("data", "a sparse matrix of numbers", f"one of dtype {matrix.dtype}",
                                "Convert it with matrix.astype(float).")
        self._rows = matrix.tocsr()
        n_rows, width = self._rows.shape
        self.names, self.row_shape = tuple(f"x{i}" for i in range(width)), (width,)
        self.schema = [f"{matrix.dtype} sparse rows of {width} columns"]
        self._step = rows_within(block_rows, width)
        self.sizes = _slices(n_rows, self._step)

    def block(self, k: int, columns=None) -> np.ndarray:
        start = k * self._step
        return self._rows[start : start + self.sizes[k]].toarray()

    def whole(self) -> np.ndarray:
        return self._rows.toarray()


# --- CSV and TSV ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CsvLayout:
    """How a CSV file is written: delimiter, decimal mark, whether line 1 names the columns, whether fields
    start with spaces after the delimiter ("a, b"); notes say so."""

    delimiter: str
    decimal: str
    header: bool
    spaced: bool = False
    notes: tuple[str, ...] = ()
    encoding: str = "utf-8-sig"  # a key of ENCODINGS
    thousands: str | None = None  # "," where numbers are written 1,234.5


def _sniff(lines: list[str]) -> str:
    """The delimiter of non-blank ``lines``: one of :data:`DELIMITERS`, else :data:`WHITESPACE` when every
    line splits on whitespace into the same number (over one) of fields, else ``,`` (one column)."""
    sniffer = csv.Sniffer()
    # On a tie, ';' beats ',' (semicolon files often hold decimal commas) and tab beats both.
    sniffer.preferred = ["\t", ";", ","]
    try:
        return sniffer.sniff("\n".join(lines), delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:  # one column, or no consistent delimiter
        widths = {len(line.split()) for line in lines}
        return WHITESPACE if len(widths) == 1 and widths.pop() > 1 else ","


_COMMA_DECIMAL = re.compile(r"[+-]?\d*,\d+([eE][+-]?\d+)?")
_POINT_DECIMAL = re.compile(r"[+-]?\d*\.\d+([eE][+-]?\d+)?")
# A number written with thousands separators, as spreadsheets export formatted cells: 1,234.5 or -12,000.
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?")


def _decimal(rows: list[list[str]]) -> str:
    """``,`` when the numbers of a semicolon file are written 1,5 (and none 1.5), else ``.``."""
    cells = [cell.strip() for row in rows for cell in row]
    comma = any(_COMMA_DECIMAL.fullmatch(c) for c in cells) and not any(_POINT_DECIMAL.fullmatch(c) for c in cells)
    return "," if comma else "."


NO_HEADER_NOTE = "no header line: the first line was read as data and the columns named x0, x1, ..."


def _has_header(fields: list[str], decimal: str, notes: list[str]) -> bool:
    """A first line of numbers is data, except ``0,1,...,n-1``: the names pandas gives unnamed columns."""
    values = [f.strip() for f in fields if f.strip()]
    if len(fields) > 1 and values == [str(i) for i in range(len(fields))]:
        notes.append(f"first line 0,1,...,{len(fields) - 1} read as column names, as pandas writes them "
                     "(no_header=True, --no-header, if it is data)")
        return True
    try:
        [float(v.replace(decimal, ".")) for v in values]
    except ValueError:
        return True
    return not values


def _csv_layout(path: Path, no_header: bool | None, where) -> _CsvLayout:
    """The delimiter (``,`` ``;``, tab or whitespace, sniffed; tab for ``.tsv``), decimal mark and header of a
    CSV file.

    ``no_header`` True or False overrides the header guess; ``where`` names the file in messages.
    """
    with open(path, "rb") as fh:
        sample = fh.read(SNIFF_CHARS)
    if len(sample) == SNIFF_CHARS:  # whole lines only, so that a cut last line does not look inconsistent
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    encoding = _encoding(sample, where)
    lines = [line for line in sample.decode(encoding, errors="replace").splitlines() if line.strip()]
    tsv = path.suffix.lower() == ".tsv"
    delimiter = "\t" if tsv else _sniff(lines)
    rows = [line.split() for line in lines] if delimiter == WHITESPACE else list(csv.reader(lines, delimiter=delimiter))
    decimal = _decimal(rows) if delimiter == ";" else "."
    notes = [] if delimiter == "," or tsv else [f"read as {DELIMITERS.get(delimiter, 'whitespace')}-separated values"]
    if encoding != "utf-8-sig":
        notes.append(f"read as {ENCODINGS[encoding]} text: it is not UTF-8")
    if decimal == ",":
        notes.append("numbers read with decimal commas")
    header = _has_header(rows[0] if rows else [], decimal, notes) if no_header is None else not no_header
    if not header:
        notes.append(NO_HEADER_NOTE)
    # Skipping those spaces slows parsing: only for files written so.
    spaced = any(f"{delimiter} " in line for line in lines[:2])
    separated = decimal == "." and any(_THOUSANDS.fullmatch(cell.strip()) for row in rows[header:] for cell in row)
    if separated:
        notes.append("numbers written with thousands separators (1,234.5) read as numbers")
    return _CsvLayout(delimiter, decimal, header, spaced, tuple(notes), encoding, "," if separated else None)


# Text encodings of CSV files: UTF-8 (a byte-order mark allowed), else what spreadsheets write on Windows.
ENCODINGS = {"utf-8-sig": "UTF-8", "cp1252": "Windows-1252 (Latin-1)"}


def _encoding(sample: bytes, where) -> str:
    """UTF-8 when the file's first bytes are UTF-8 (a character cut at the sample's end aside), else Windows-1252;
    UTF-16 and binary data (NUL bytes) are refused."""
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValueError(f"{where} is UTF-16 text, which is not read. Re-save it as UTF-8 (e.g. 'CSV UTF-8' in a "
                         "spreadsheet).")
    if b"\0" in sample:
        raise _corrupt(where, "CSV", "it holds NUL bytes: binary data", "Check that it is a text file.")
    try:
        sample.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if error.reason != "unexpected end of data":
            return "cp1252"
    return "utf-8-sig"


@contextlib.contextmanager
def _csv_errors(where):
    try:
        yield
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{where} has no header row and no data. Write a header line of column names, then the rows."
        ) from None
    except UnicodeDecodeError as err:  # UTF-8 at the start (else read as Windows-1252), not further on
        raise ValueError(f"{where} is not UTF-8 text throughout (its first lines are): byte "
                         f"{err.object[err.start]:#04x} is not. Re-save the file as UTF-8 (e.g. 'CSV UTF-8' in a "
                         "spreadsheet).") from None
    except pd.errors.ParserError as err:
        fix = ("Check that it is comma-, semicolon-, tab- or whitespace-separated text with the same number of fields "
               "on every line.")
        raise _corrupt(where, "CSV", err, fix) from None


def _index_lines(path: Path, block_rows: int, header: bool, tab: bool, quoted_fields: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The byte offset where each block of ``block_rows`` records starts, and each block's records, in one
    pass over the file. A record ends at a newline outside double quotes (at every newline without
    ``quoted_fields``: JSON escapes its strings' newlines); records of whitespace only are skipped, as pandas
    and pyarrow skip them; with ``header`` the first record is the header."""
    blank = np.zeros(256, bool)
    blank[[ord(" "), ord("\r"), ord("\n")] + ([] if tab else [ord("\t")])] = True
    starts, n_records, skip = [], 0, int(header)

    def count(firsts: np.ndarray) -> None:  # the first bytes of further records that are not blank
        nonlocal n_records, skip
        dropped = min(skip, len(firsts))
        firsts, skip = firsts[dropped:], skip - dropped
        starts.extend(firsts[(n_records + np.arange(len(firsts))) % block_rows == 0].tolist())
        n_records += len(firsts)

    record_start, pending, quoted, base = 0, False, 0, 0  # pending: the open record has content
    with open(path, "rb") as fh:
        while chunk := fh.read(_INDEX_BYTES):
            buf = np.frombuffer(chunk, np.uint8)
            ends = buf == ord("\n")
            if quoted_fields and (quoted or b'"' in chunk):
                parity = (np.cumsum(buf == ord('"'), dtype=np.int32) + quoted) & 1
                ends &= parity == 0
                quoted = int(parity[-1])
            ends = np.flatnonzero(ends)
            content = np.cumsum(~blank[buf], dtype=np.int32)
            has = np.diff(content[ends], prepend=0) > 0
            if len(ends):
                has[0] |= pending
                count(np.concatenate([[record_start], base + ends[:-1] + 1])[has])
                record_start, pending = base + int(ends[-1]) + 1, bool(content[-1] > content[ends[-1]])
            else:
                pending = pending or bool(content[-1])
            base += len(chunk)
    if pending:  # a last line without a newline
        count(np.array([record_start]))
    return np.array(starts, np.int64), np.array(_slices(n_records, block_rows), np.int64)


class _TextPart(Part):
    """A text file read a block of ``_step`` records at a time: ``_file`` is the file, or a compressed one's
    text, decompressed once (compression has no block offsets); ``_index`` (the format's) the byte offset
    where each block starts and each block's records."""

    def __init__(self, path: Path):
        self.path, self.where, self._file, self.notes = path, str(path), path, ()
        if path.suffix.lower() in DECOMPRESS:
            self._file = decompressed(path)
            self.notes = (f"decompressed ({path.suffix.lower()}) into a temporary file, read from there",)

    @property
    def sizes(self) -> np.ndarray:
        return self._index[1]

    def _text(self, k: int) -> tuple[bytes, str]:
        """The bytes of block ``k``, and how messages name its rows."""
        starts, sizes = self._index
        with open(self._file, "rb") as fh:
            fh.seek(starts[k])
            data = fh.read(starts[k + 1] - starts[k] if k + 1 < len(starts) else -1)
        first = k * self._step
        return data, f"{self.path} (rows {first + 1}-{first + sizes[k]})"


class _CsvPart(_TextPart):
    """A file of delimited text (CSV, TSV, whitespace-separated), or a compressed one's text; a block is
    ``block_rows`` records parsed by pandas from their byte range."""

    kind = "csv"

    def __init__(self, path: Path, no_header: bool | None, block_rows: int):
        super().__init__(path)
        self._layout = _csv_layout(self._file, no_header, self.where)
        self.notes += self._layout.notes
        head = self._parse(self._file, self.where, header=self._layout.header, nrows=0 if self._layout.header else 1)
        self.names = tuple(str(c) if self._layout.header else f"x{c}" for c in head.columns)
        self.schema = list(self.names)
        self._step = rows_within(block_rows, len(self.names))

    def _parse(self, source, where: str, *, header: bool, **kwargs) -> pd.DataFrame:
        with _csv_errors(where):
            # Spaces after a delimiter ("a, b") are not part of a name or a value.
            return pd.read_csv(source, sep=self._layout.delimiter, decimal=self._layout.decimal,
                               thousands=self._layout.thousands,
                               header=0 if header else None, skipinitialspace=self._layout.spaced,
                               encoding=self._layout.encoding,
                               # Windows-1252 leaves five bytes undefined: read as U+FFFD, not refused.
                               encoding_errors="strict" if self._layout.encoding == "utf-8-sig" else "replace",
                               **kwargs)

    @property
    def positional(self) -> bool:
        return not self._layout.header

    @functools.cached_property
    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        with open(self._file, "rb") as fh:
            sample = fh.read(SNIFF_CHARS)
        if b"\r" in sample and b"\n" not in sample:
            raise ValueError(f"{self.path} ends its lines with \\r alone (old Mac style), which is not read a block "
                             "at a time. Re-save it with \\n or \\r\\n line ends.")
        return _index_lines(self._file, self._step, self._layout.header, self._layout.delimiter == "\t")

    def block(self, k: int, columns=None) -> pd.DataFrame:
        sizes = self.sizes
        data, where = self._text(k)
        wanted = set(self.names if columns is None else columns)
        positions = [i for i, name in enumerate(self.names) if name in wanted]
        frame = self._parse(io.BytesIO(data), where, header=False, usecols=positions)
        if len(frame) != sizes[k]:
            raise ValueError(f"{where}: {len(frame)} rows parsed where {sizes[k]} lines were counted. Check that "
                             "quoted fields close their quotes, then read the file again.")
        frame.columns = [self.names[i] for i in frame.columns]
        return frame

    def whole(self) -> pd.DataFrame:
        frame = self._parse(self._file, self.where, header=self._layout.header)
        frame.columns = [str(c) if self._layout.header else f"x{c}" for c in frame.columns]
        return frame


class _ExcelPart(_SlicedPart):
    """The first sheet of an Excel workbook, read whole by openpyxl (a sheet holds at most 1,048,576 rows)
    and sliced into blocks. The table may start below or right of A1 (empty rows above it and empty
    columns are skipped); its first row is taken for column names unless it holds numbers alone, as a
    CSV file's first line (``no_header`` overrides the guess)."""

    kind = "xlsx"

    def __init__(self, path: Path, no_header: bool | None, block_rows: int):
        openpyxl = needs("openpyxl", "openpyxl", f"Reading {path.name} (an Excel workbook)", "'aepca[excel]'")
        notes = []
        errors = (*_CORRUPT_ERRORS, KeyError, openpyxl.utils.exceptions.InvalidFileException)
        with _read_errors(path, "Excel", "Re-save it as .xlsx, or the sheet as CSV.", errors), \
                pd.ExcelFile(path, engine="openpyxl") as book:
            sheets = book.sheet_names
            cells = pd.read_excel(book, sheets[0], header=None).dropna(axis=1, how="all")
        skipped = int(np.argmax(cells.notna().any(axis=1).to_numpy())) if len(cells) else 0
        cells = cells.iloc[skipped:].reset_index(drop=True)
        if skipped:
            notes.append(f"{plural(skipped, 'empty row')} above the table skipped (it starts at row {skipped + 1})")
        first = [] if cells.empty else ["" if pd.isna(value) else str(value) for value in cells.iloc[0]]
        header = _has_header(first, ".", notes) if no_header is None else not no_header
        if header:  # the names row out, then each column's type found again from its values alone
            frame = cells.iloc[1:].reset_index(drop=True).infer_objects()
            frame.columns = [f"Unnamed: {i}" if not name else name for i, name in enumerate(first)]
        else:
            frame = cells.set_axis([f"x{i}" for i in range(cells.shape[1])], axis=1)
            notes.append(NO_HEADER_NOTE)
        texts = []
        for name in [name for name, dtype in frame.dtypes.items() if pd.api.types.is_string_dtype(dtype)]:
            numbers = numbers_if_all(frame[name])  # numbers stored as text, read as a CSV file's are
            if numbers is not None:
                frame[name] = numbers
                texts.append(name)
        if texts:
            notes.append(f"numbers stored as text read as numbers in {describe_names(texts)}")
        if len(sheets) > 1:
            notes.append(f"read its first sheet, {sheets[0]!r}, of {len(sheets)} (not read: "
                         f"{describe_names(sheets[1:])}; move the one to read first, or save it as CSV)")
        super().__init__(frame, self.kind, str(path), block_rows, path=path)
        self.notes, self._header = tuple(notes), header

    @property
    def positional(self) -> bool:
        return not self._header


# --- Parquet, JSON Lines (and what Arrow files share with them) ------------------------------------------


def needs(module: str, package: str, what: str, install: str):
    """``module``; without it, an ``ImportError``: ``what`` (e.g. "Reading x.parquet") needs ``package``, and how
    to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs {package}, which is not installed. Install it with: "
                          f"pip install {install}") from None


def _pyarrow(path: Path, module: str = "pyarrow"):
    """``module`` of pyarrow, which reads ``path``."""
    return needs(module, "pyarrow", f"Reading {path.name}", "'aepca[parquet]'")


def _parquet(path: Path):
    """``pyarrow.parquet`` once ``path`` looks like a Parquet file."""
    magic = b"PAR1"
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0, os.SEEK_END)
        fh.seek(max(fh.tell() - 4, 0))
        tail = fh.read(4)
    if head != magic or tail != magic:
        raise ValueError(
            f"{path} is not a Parquet file (its first and last bytes are not 'PAR1'): it may be a text or CSV "
            "file with the wrong extension, or truncated. Rename it to its real format or re-export it."
        )
    return _pyarrow(path, "pyarrow.parquet")


def _arrow_errors(path: Path, kind: str):
    import pyarrow

    return _read_errors(path, kind, "Re-export it.", (pyarrow.ArrowException, *_CORRUPT_ERRORS))


class _ArrowSchemaPart(Part):
    """A file whose columns a pyarrow schema (``_schema``) describes: Parquet and Arrow."""

    @property
    def cells(self) -> dict:
        import pyarrow as pa

        cells = {}
        for name in self.names:
            type_ = self._schema.field(name).type
            if pa.types.is_fixed_size_list(type_):
                cells[name] = type_.list_size
            else:
                cells[name] = "lists" if pa.types.is_list(type_) or pa.types.is_large_list(type_) else None
        return cells


class _ParquetPart(_ArrowSchemaPart):
    """A Parquet file, a row group per block. Each read opens the file with the metadata kept from opening
    (no footer parsed again) and closes it, so reads share no state and may run from several threads."""

    kind = "parquet"

    def __init__(self, path: Path):
        self.path, self.where = path, str(path)
        self._pq = _parquet(path)
        with _arrow_errors(path, "Parquet"), self._pq.ParquetFile(path) as parquet:
            self._metadata, self._schema = parquet.metadata, parquet.schema_arrow
        self.names = arrow_columns(self._schema, self.where)
        self.schema = [f"{name}: {self._schema.field(name).type}" for name in self.names]
        self.sizes = [self._metadata.row_group(g).num_rows for g in range(self._metadata.num_row_groups)]

    def block(self, k: int, columns=None):
        with _arrow_errors(self.path, "Parquet"), self._pq.ParquetFile(self.path, metadata=self._metadata) as parquet:
            return parquet.read_row_group(k, columns=None if columns is None else list(columns))

    def whole(self):
        with _arrow_errors(self.path, "Parquet"):
            return self._pq.read_table(self.path)


class _JsonLinesPart(_TextPart, _ArrowSchemaPart):
    """A JSON Lines file (``.jsonl``, ``.ndjson``, or a compressed one's text): an object per line, its keys
    the columns (an array is a list column, as embedding stores write them). The columns are the keys of
    the first lines; a block is ``block_rows`` lines parsed by pyarrow from their byte range, a key absent
    from a line a missing value."""

    kind = "jsonl"
    _FIX = 'Write one JSON object per line, e.g. {"id": 7, "embedding": [0.1, 0.2]}.'
    # Lines read to learn the columns; bytes pyarrow parses at a time (a line may not be longer).
    _HEAD_LINES = 100
    _PARSE_BYTES = 64 * 2**20

    def __init__(self, path: Path, block_rows: int):
        super().__init__(path)
        self._json = _pyarrow(path, "pyarrow.json")
        with open(self._file, "rb") as fh:
            head = self._parse(b"".join(line for _, line in zip(range(self._HEAD_LINES), fh)), self.where)
        if head.num_rows == 0:
            raise ValueError(f"{path} holds no JSON objects. {self._FIX}")
        self._schema = head.schema
        self.names = arrow_columns(self._schema, self.where)
        self.schema = [f"{name}: {self._schema.field(name).type}" for name in self.names]
        # A row's values: a list column counts its longest list in the first lines.
        pc = _pyarrow(path, "pyarrow.compute")
        width = sum(int(pc.max(pc.list_value_length(head[name])).as_py() or 1) if self.cells[name] else 1
                    for name in self.names)
        self._step = rows_within(block_rows, width)

    def _parse(self, text: bytes | Path, where):
        """The objects of ``text`` (a block's bytes, or the file, read by pyarrow as it parses) as a table."""
        pa = _pyarrow(self.path)
        with _read_errors(where, "JSON Lines", self._FIX, (pa.ArrowException, *_CORRUPT_ERRORS)):
            options = self._json.ReadOptions(block_size=self._PARSE_BYTES)
            return self._json.read_json(str(text) if isinstance(text, Path) else pa.py_buffer(text), read_options=options)

    def _columns(self, table, columns):
        """``columns`` of ``table`` (None: every column of the file), a key absent from all its lines as nulls."""
        pa = _pyarrow(self.path)
        names = self.names if columns is None else list(columns)
        return pa.table({name: table[name] if name in table.column_names
                         else pa.nulls(table.num_rows, self._schema.field(name).type) for name in names})

    @functools.cached_property
    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        return _index_lines(self._file, self._step, header=False, tab=False, quoted_fields=False)

    def block(self, k: int, columns=None):
        data, where = self._text(k)
        table = self._parse(data, where)
        if table.num_rows != self.sizes[k]:
            raise ValueError(f"{where}: {table.num_rows} objects parsed where {self.sizes[k]} lines were counted. {self._FIX}")
        return self._columns(table, columns)

    def whole(self):
        return self._columns(self._parse(self._file, self.where), None)


# --- Arrow IPC (Feather) -------------------------------------------------------------------------------


class _ArrowPart(_ArrowSchemaPart):
    """An Arrow IPC file: the file format (Feather v2; random access) or the stream format (as Hugging Face
    datasets save them), in blocks of whole record batches of at most ``block_rows`` rows (or one batch).

    Each batch's rows, and in a stream its message's bytes, are found once on opening; a stream's block is
    read as its leading schema and dictionary messages and its batches' messages. Each read opens the file,
    reads only the block's bytes (not mapped: mapped pages would stay in the process) and closes it, so reads
    share no state and may run from several threads.
    """

    kind = "arrow"

    def __init__(self, path: Path, block_rows: int):
        pa = _pyarrow(path)
        self.path, self.where = path, str(path)
        with _arrow_errors(path, "Arrow"), pa.memory_map(str(path)) as mapped:
            head = mapped.read(6)
            if head.startswith(b"FEA1"):
                raise ValueError(f"{path} is a Feather version 1 file, a format pyarrow deprecates. Re-save it as "
                                 "version 2: pyarrow.feather.write_feather(pyarrow.feather.read_table(path), path).")
            self._random_access = head == b"ARROW1"
            mapped.seek(0)
            if not self._random_access:
                self._spans = self._batch_spans(pa, mapped)
                mapped.seek(0)
            reader = pa.ipc.open_file(mapped) if self._random_access else pa.ipc.open_stream(mapped)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches)) if self._random_access else reader
            rows = [batch.num_rows for batch in batches]
            self._schema = reader.schema
        self.names = arrow_columns(self._schema, self.where)
        self.schema = [f"{name}: {self._schema.field(name).type}" for name in self.names]
        self._groups, self.sizes = [], []  # the batches of each block, and its rows
        for batch, count in enumerate(rows):
            if not self._groups or self.sizes[-1] + count > block_rows:
                self._groups.append([])
                self.sizes.append(0)
            self._groups[-1].append(batch)
            self.sizes[-1] += count

    def _batch_spans(self, pa, mapped) -> list[tuple[int, int]]:
        """A stream's record batch messages as byte ranges, its leading messages (the schema and the
        dictionaries) kept in ``self._header``."""
        messages, starts, kinds = pa.ipc.MessageReader.open_stream(mapped), [], []
        while True:
            starts.append(mapped.tell())
            try:
                kinds.append(messages.read_next_message().type)
            except StopIteration:
                break
        batches = [i for i, kind in enumerate(kinds) if kind == "record batch"]
        first = batches[0] if batches else len(kinds)
        if "dictionary" in kinds[first:]:
            raise ValueError(f"{self.path} is an Arrow stream whose dictionaries change between record batches, which "
                             "cannot be read a batch at a time. Save it in the Arrow file format "
                             "(pyarrow.feather.write_feather) or as Parquet.")
        mapped.seek(0)
        self._header = mapped.read(starts[first])
        return [(starts[i], starts[i + 1]) for i in batches]

    def _read(self, batches, columns=None):
        pa = _pyarrow(self.path)
        with _arrow_errors(self.path, "Arrow"):
            if not batches:
                table = self._schema.empty_table()
            elif self._random_access:
                with pa.OSFile(str(self.path)) as file:
                    # Only the columns asked for are read (a text column beside them is skipped).
                    fields = None if columns is None else sorted(self._schema.get_field_index(name) for name in columns)
                    reader = pa.ipc.open_file(file, options=pa.ipc.IpcReadOptions(included_fields=fields))
                    table = pa.Table.from_batches([reader.get_batch(i) for i in batches])
            else:
                # The batches' messages are consecutive: one read after the leading messages, as a stream.
                start, stop = self._spans[batches[0]][0], self._spans[batches[-1]][1]
                buffer = np.empty(len(self._header) + stop - start, np.uint8)  # not zeroed: every byte is read
                buffer[: len(self._header)] = np.frombuffer(self._header, np.uint8)
                _read_exactly(self.path, memoryview(buffer)[len(self._header) :], start)
                table = pa.ipc.open_stream(pa.py_buffer(buffer)).read_all()
        return table if columns is None else table.select(list(columns))

    def block(self, k: int, columns=None):
        return self._read(self._groups[k], columns)

    def whole(self):
        return self._read([i for group in self._groups for i in group])


# --- image files ---------------------------------------------------------------------------------------


def _pillow():
    return needs("PIL.Image", "Pillow", "Reading image files", "pillow")


def _image_errors(path: Path):
    # Pillow reports some broken headers as SyntaxError.
    return _read_errors(path, "image", "Re-save it, or move it out of the folder.", (*_CORRUPT_ERRORS, SyntaxError))


def _size(width: int, height: int) -> str:
    """An image's size in words: image sizes are said width first, ``image_shape`` is height first."""
    return f"{width} pixels wide and {height} high"


class ImagesPart(Part):
    """Image files, one row each, in the order given: pixels row by row, channels last, as 8-bit values
    over 255 (16-bit greyscale over 65535), so in [0, 1]. Greyscale unless a file has colour, then every
    image is read as RGB (transparency dropped). Every file has the first one's size, checked from the
    headers on opening, unless ``shape`` (height, width[, channels 1 or 3]) is given: every image is then
    resized to it (bilinear, antialiased) and, with channels, read as greyscale or RGB. Ids are the paths
    below ``root``; labels the subfolder of ``root`` each file lies in, when every file lies in one.
    Decoded blocks are kept, read-only, up to ``IMAGE_CACHE_BYTES``: decoding, not training, would set the
    pace of every later pass."""

    kind, plain, id_name = "images", True, "file"

    def __init__(self, files: list[Path], root: Path, block_rows: int, shape: tuple | None = None):
        self.path, self.where, self._files, self._given_shape = root, str(root), files, shape
        self._decoded, self._decoded_bytes, self._lock = {}, 0, threading.Lock()
        sizes, modes = [], set()
        for file in files:
            with _image_errors(file), _pillow().open(file) as image:
                size, mode = image.size, image.mode
            if mode in ("I", "F"):
                raise ValueError(f"{file} holds 32-bit pixels (mode {mode}), whose range is unknown. Save it with 8 "
                                 "or 16 bits per value (e.g. PNG), or move it out.")
            sizes.append(size)
            modes.add(mode)
        if shape is None:
            for file, size in zip(files, sizes):
                if size != sizes[0]:
                    raise ValueError(
                        f"{file} is {_size(*size)}, but {files[0]} is {_size(*sizes[0])}: every image is one row, so "
                        "all need one size. Give the size to read them at, height by width (--image-shape "
                        f"{sizes[0][1]}x{sizes[0][0]}, image_shape=({sizes[0][1]}, {sizes[0][0]})), or move the odd "
                        "ones out.")
        width, height = sizes[0] if shape is None else (shape[1], shape[0])
        self._colour = shape[2] == 3 if shape is not None and len(shape) == 3 else not modes <= set(_GREY_MODES)
        self.row_shape = self.image_shape = (height, width, 3) if self._colour else (height, width)
        self.names = tuple(f"x{i}" for i in range(math.prod(self.row_shape)))
        self.schema = [f"{'RGB' if self._colour else 'greyscale'} images {_size(width, height)}"]
        relative = [file.relative_to(root) for file in files]
        self.ids = np.array([name.as_posix() for name in relative])
        self.y = np.array([name.parts[0] for name in relative]) if all(len(name.parts) > 1 for name in relative) else None
        # At most IMAGE_BLOCK_FILES files a block: choosing the columns decodes the first block.
        self._step = min(rows_within(block_rows, len(self.names)), IMAGE_BLOCK_FILES)
        self.sizes = _slices(len(files), self._step)

    def select(self, frame, lists, selection, source: str, categorical: str = "refuse"):
        """The spec of :meth:`Part.select`, holding the shape the images are read at, channels included."""
        return dataclasses.replace(super().select(frame, lists, selection, source, categorical),
                                   image_shape=(*self.row_shape[:2], 3 if self._colour else 1))

    def _pixels(self, file: Path) -> np.ndarray:
        height, width = self.row_shape[:2]
        with _image_errors(file), _pillow().open(file) as image:
            deep = image.mode.startswith("I;16")  # 16-bit greyscale: its values, exactly, as floats
            if self._given_shape is not None:
                # A JPEG is decoded at the smallest of 1/1 to 1/8 of its size that still covers the shape.
                image.draft("RGB" if self._colour else "L", (width, height))
            image = image.convert("F" if deep else "RGB" if self._colour else "L")
            if image.size != (width, height):
                if self._given_shape is None:
                    raise ValueError(f"{file} is {_size(*image.size)}, but it was {_size(width, height)} when the "
                                     "folder was opened. Keep the files unchanged while they are read.")
                image = image.resize((width, height), _pillow().Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / np.float32(65535 if deep else 255)
        return np.repeat(pixels[..., None], 3, axis=-1) if deep and self._colour else pixels

    def block(self, k: int, columns=None) -> np.ndarray:
        rows = self._decoded.get(k)
        if rows is not None:
            return rows
        files = self._files[k * self._step : (k + 1) * self._step]
        rows = np.empty((len(files), len(self.names)), np.float32)
        for row, file in zip(rows, files):
            row[:] = self._pixels(file).reshape(-1)
        rows.setflags(write=False)
        with self._lock:
            if k not in self._decoded and self._decoded_bytes + rows.nbytes <= IMAGE_CACHE_BYTES:
                self._decoded[k] = rows
                self._decoded_bytes += rows.nbytes
        return rows

    def whole(self) -> np.ndarray:
        return np.concatenate([self.block(k) for k in range(len(self.sizes))])

    def fingerprint(self) -> dict:
        """The files by name and size, and a hash of the bytes of the first, middle and last."""
        digest = hashlib.sha256()
        for name, file in zip(self.ids, self._files):
            digest.update(f"{name}\0{file.stat().st_size}\0".encode())
        for file in dict.fromkeys([self._files[0], self._files[len(self._files) // 2], self._files[-1]]):
            digest.update(file.read_bytes())
        return {"name": self.path.name, "files": len(self._files), "rows": len(self._files),
                "digest": digest.hexdigest()[:16]}


# --- a file of any format ------------------------------------------------------------------------------


def check_same_columns(first: Part, part: Part, fix: str) -> None:
    """``ValueError`` (ending in ``fix``) unless ``part`` has the columns, and array rows, of ``first``."""
    if part.row_shape != first.row_shape:
        raise ValueError(f"{part.where} holds rows of shape {part.row_shape}, but {first.where} rows of shape "
                         f"{first.row_shape}. {fix}")
    expected, found = first.cells, part.cells
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    differ = [name for name in expected if name in found and found[name] != expected[name]]
    changes = [f"it lacks {describe_names(missing)}"] if missing else []
    changes += [f"it has extra {describe_names(extra)}"] if extra else []
    cells = {None: "single values", "lists": "lists"}
    changes += [f"{name!r} holds {cells.get(found[name], f'lists of {found[name]} values')}, not "
                f"{cells.get(expected[name], f'lists of {expected[name]} values')}" for name in differ[:3]]
    if changes:
        raise ValueError(f"{part.where} has other columns than {first.where}: {'; '.join(changes)}. {fix}")


@contextlib.contextmanager
def _zip_member(path: Path, mode: str = "rb"):
    """The one file of a .zip archive, as a binary stream (opened as ``gzip.open`` opens a .gz file)."""
    with zipfile.ZipFile(path) as archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) != 1:
            raise ValueError(f"{path} holds {len(members)} files, expected one data file. Unzip it (unzip {path.name}) "
                             "and point to the files.")
        with archive.open(members[0], mode[0]) as text:
            yield text


# Compressed text files (x.csv.gz, x.jsonl.gz) read as their text: the opener of each, from the standard library.
DECOMPRESS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zip": _zip_member}


def decompress_fix(target: str, suffix: str) -> str:
    """What to do with compressed files (``target``: a name or a pattern; ``suffix`` a key of DECOMPRESSORS)."""
    return (f"Files are read a block at a time from any offset, which compression does not allow: decompress first "
            f"({DECOMPRESSORS[suffix]} {target}) or save as Parquet (compressed, read by blocks); a CSV compressed "
            f"by {', '.join(DECOMPRESS)} (x.csv.gz) or a JSON Lines file so compressed is read as it is.")


def format_suffix(path) -> str:
    """The suffix that names the format of ``path``, lower case: ``.csv`` for a compressed CSV (``x.csv.gz``)."""
    path = Path(path)
    inner = Path(path.stem).suffix.lower()
    return inner if path.suffix.lower() in DECOMPRESS and inner in TEXT_EXTENSIONS else path.suffix.lower()


# Compressed files decompressed by this process: {(path, size, time): the temporary file}, removed at exit.
_DECOMPRESSED: dict[tuple, Path] = {}
_DECOMPRESSING = threading.Lock()


def decompressed(path: Path) -> Path:
    """The text of the compressed text file ``path``, decompressed into a temporary file once per process (each
    block is then read from its offset there); the file goes at exit."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _DECOMPRESSING:
        if key not in _DECOMPRESSED:
            handle, name = tempfile.mkstemp(prefix="aepca-", suffix=format_suffix(path))
            target = Path(name)
            atexit.register(remove, target)
            try:
                with os.fdopen(handle, "wb") as out, DECOMPRESS[path.suffix.lower()](path, "rb") as text:
                    shutil.copyfileobj(text, out, 1 << 20)
            except BaseException as error:
                remove(target)  # nothing half-written is left
                if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise OSError(error.errno, f"No room to decompress {path} in {target.parent}: set TMPDIR to a "
                                               "folder with room, or decompress it yourself") from None
                if isinstance(error, (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile)):
                    raise _corrupt(path, f"{path.suffix.lower()}-compressed", error, "Check the file, or decompress "
                                   f"it yourself ({DECOMPRESSORS[path.suffix.lower()]} {path.name}).") from None
                raise
            _DECOMPRESSED[key] = target
        return _DECOMPRESSED[key]


def check_exists(path) -> None:
    """``FileNotFoundError`` naming ``path`` and the folder it was looked for from, unless something is there."""
    if not Path(path).exists():
        raise FileNotFoundError(f"No such file: {path}. Check the path and the current directory ({Path.cwd()}).")


def _check_path(path) -> Path:
    """``path`` as a Path to a readable, non-empty file of a known kind."""
    path = Path(path)
    check_exists(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, expected a data file ({', '.join(EXTENSIONS)}).")
    if format_suffix(path) not in EXTENSIONS + IMAGE_EXTENSIONS:
        fix = "Convert the file to CSV (with a header row), JSON Lines, .npy, .npz, Parquet, Arrow (Feather) or an image format."
        if path.suffix.lower() in (".xls", ".ods", ".xlsb", ".numbers"):  # spreadsheets of other formats
            fix = "Save the sheet as .xlsx (the Excel workbook format read here) or as CSV."
        if path.suffix.lower() in DECOMPRESSORS:
            fix = decompress_fix(path.name, path.suffix.lower())
        raise invalid_value("the file extension", f"one of {list(EXTENSIONS)} or an image's ({', '.join(IMAGE_EXTENSIONS)})",
                            repr(path.name), fix)
    if not os.access(path, os.R_OK):
        raise PermissionError(f"Cannot read {path}: permission denied. Make it readable (chmod u+r) or copy it elsewhere.")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes). Point to a file that holds data.")
    return path


def open_part(path, *, no_header: bool | None = None, block_rows: int | None = None,
              image_shape: tuple | None = None, split: str | None = None) -> Part:
    """The file ``path`` (delimited text: :data:`DELIMITED_EXTENSIONS`, ``.jsonl`` / ``.ndjson``, ``.npy``,
    ``.npz`` (arrays, or a sparse matrix), ``.parquet``, ``.arrow`` / ``.feather`` / ``.ipc``, ``.h5`` / ``.hdf5``,
    an Excel workbook, a file of vectors (:data:`VECTOR_FORMATS`) or an image, one row), checked and opened by
    the reader of its format, in blocks of ``block_rows``
    rows (None: one; Parquet: its row groups; Arrow: whole record batches); ``no_header`` True or False
    overrides a CSV file's header guess; ``image_shape`` the shape an image is read at (:class:`ImagesPart`);
    ``split`` ("train" or "test") the rows of an archive or HDF5 file that :func:`holds_split`."""
    path = _check_path(path)
    block_rows = block_rows or sys.maxsize
    suffix = format_suffix(path)
    if suffix in IMAGE_EXTENSIONS:
        return ImagesPart([path], path.parent, block_rows, image_shape)
    if suffix in DELIMITED_EXTENSIONS:
        return _CsvPart(path, no_header, block_rows)
    if suffix in EXCEL_EXTENSIONS:
        return _ExcelPart(path, no_header, block_rows)
    if suffix in (".jsonl", ".ndjson"):
        return _JsonLinesPart(path, block_rows)
    if suffix == ".parquet":
        return _ParquetPart(path)
    if suffix in (".arrow", ".feather", ".ipc"):
        return _ArrowPart(path, block_rows)
    if suffix in VECTOR_FORMATS:
        return _VectorsPart(path, block_rows)
    if suffix in HDF5_EXTENSIONS:
        return _Hdf5Part(path, block_rows, split)
    fix = "Re-save it as a 2-D array, e.g. x.reshape(-1, 1) for a single feature."
    if suffix == ".npz" and _holds_sparse_matrix(path):
        from scipy import sparse

        with _read_errors(path, ".npz", _NPZ_FIX):
            return _SparsePart(sparse.load_npz(path), block_rows, path=path)
    if suffix == ".npy":
        array = _load_npy(path)
        _check_array(array, str(path), fix)
        return _SlicedPart(array, "npy", str(path), block_rows, path=path)
    features, labels = _load_npz(path, split)
    where = f"{path} (x_{split})" if split else str(path)
    _check_array(features, where, fix)
    return _SlicedPart(features, "npz", where, block_rows, path=path, y=labels)
