"""Rows read a block at a time, for data bigger than memory.

Streaming PCA, streamed training and evaluation all read a :class:`RowSource`: an
array, a memory-mapped ``.npy`` file, Parquet files (one block per row group), or a
folder or glob pattern of either. Row counts and block layout come from metadata
alone, so held-out views (a seeded hash of each row's index) and each epoch's block
order are pure functions of metadata: every process computes the same ones without
reading data, and no view copies data.
"""

from __future__ import annotations

import glob
import hashlib
import math
import numbers
import operator
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aepca.data.columns import ColumnSpec, Selection, arrow_columns, check_identifiers, check_numeric, frame_from_arrow
from aepca.data.order import _admitted_sizes, _check_filter, _Filter
from aepca.data.readers import (
    BLOCK_ROWS,
    _array_frame,
    _check_array,
    _check_block_rows,
    _check_path,
    _load_npy,
    _parquet,
    _parquet_errors,
)
from aepca.validation import MAX_ABS_VALUE, as_image_shape, describe_names, invalid_value, plural

__all__ = ["BLOCK_ROWS", "RowSource", "is_source_path", "open_source"]

_STREAMED = (".npy", ".parquet")
_CSV_FIX = ("Convert it to Parquet, e.g. pyarrow.parquet.write_table(pyarrow.csv.read_csv(path), 'data.parquet') "
            "or pandas.read_csv(path).to_parquet('data.parquet').")
_NOT_STREAMED = {
    ".csv": _CSV_FIX,
    ".tsv": _CSV_FIX,
    ".npz": "Save its feature array as a .npy file with numpy.save(path, archive['x']).",
}
# An array's fingerprint hashes this many of its first, middle and last rows.
_DIGEST_ROWS = 4096


def _check_values(block: np.ndarray, where: str, feature_names, first_row: int) -> None:
    """``ValueError`` naming the first bad cell when ``block`` holds NaN, infinities or values past MAX_ABS_VALUE."""
    if block.size == 0:
        return
    low, high = float(block.min()), float(block.max())
    if math.isfinite(low) and math.isfinite(high) and max(-low, high) <= MAX_ABS_VALUE:
        return
    bad = ~(np.abs(block) <= MAX_ABS_VALUE)  # NaN compares False
    rows, columns = np.nonzero(bad)
    raise ValueError(
        f"{where} holds {plural(int(bad.sum()), 'missing, infinite or huge value')} (NaN, inf or beyond "
        f"{MAX_ABS_VALUE:.0e}), first in row {first_row + int(rows[0])}, column {feature_names[columns[0]]!r}. "
        "Fill or remove those rows and rescale huge values: streamed files are read as they are (no imputation)."
    )


def _fingerprint_files(kind: str, files) -> dict:
    """``files``: (path, os.stat_result) pairs, as recorded when opened."""
    return {"kind": kind, "files": [{"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
                                    for path, stat in files]}


class _ArrayRows:
    """The rows of 2-D arrays (in memory, or memory-mapped ``.npy`` files) in slices of ``block_rows``."""

    def __init__(self, name, parts, block_rows, feature_names, *, paths=None, features=None, columns=None,
                 image_shape=None):
        self.name = name
        self.feature_names = tuple(feature_names)
        self.columns = columns
        self.image_shape = image_shape
        self._parts = parts
        self._paths = paths
        self.block_rows = block_rows
        self.in_memory = not paths
        self._stats = [path.stat() for path in paths] if paths else None
        self._features = features
        blocks = [(part, start, min(start + block_rows, len(array)))
                  for part, array in enumerate(parts) for start in range(0, len(array), block_rows)]
        self._blocks = blocks
        self.bounds = np.concatenate([[0], np.cumsum([stop - start for _, start, stop in blocks])]).astype(np.int64)

    def read(self, i: int) -> np.ndarray:
        part, start, stop = self._blocks[i]
        rows = self._parts[part][start:stop]
        block = np.ascontiguousarray(rows if self._features is None else rows[:, self._features], dtype=np.float32)
        where = f"{self._paths[part] if self._paths else 'the array'} (rows {start + 1}-{stop})"
        _check_values(block, where, self.feature_names, start + 1)
        return block

    def labels(self, i: int) -> None:
        return None

    def fingerprint(self) -> dict:
        if self._paths:
            return _fingerprint_files("npy", zip(self._paths, self._stats))
        array = self._parts[0]
        sample = min(len(array), _DIGEST_ROWS)
        digest = hashlib.sha256()
        for start in sorted({0, (len(array) - sample) // 2, len(array) - sample}):
            digest.update(np.ascontiguousarray(array[start : start + sample]).tobytes())
        return {"kind": "array", "shape": list(array.shape), "dtype": str(array.dtype),
                "digest": digest.hexdigest()[:16]}


class _ParquetRows:
    """The rows of Parquet files, one block per non-empty row group, features as ``spec`` reads them.

    Each read opens its file with the metadata kept from opening (no footer parsed again) and closes it,
    so reads share no state and may run from several threads.
    """

    def __init__(self, name, pq, files, spec: ColumnSpec):
        self.name = name
        self.feature_names = spec.feature_names
        self.columns = spec
        self.image_shape = None
        self._pq = pq
        self._files = files  # (path, metadata, stat)
        self._label = spec.label_columns[0] if spec.label_columns else None
        only_list = len(spec.columns) == 1 and spec.columns[0] in spec.list_lengths
        self._list_column = spec.columns[0] if only_list else None
        self._blocks = []  # (file, row group, its first row in the file)
        sizes = []
        for f, (_, metadata, _) in enumerate(files):
            first = 0
            for g in range(metadata.num_row_groups):
                size = metadata.row_group(g).num_rows
                if size:
                    self._blocks.append((f, g, first))
                    sizes.append(size)
                first += size
        self.bounds = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)

    def _read(self, i: int, columns: list[str]):
        f, g, _ = self._blocks[i]
        path, metadata, _ = self._files[f]
        with _parquet_errors(path), self._pq.ParquetFile(path, metadata=metadata) as parquet:
            return parquet.read_row_group(g, columns=columns)

    def read(self, i: int) -> np.ndarray:
        table = self._read(i, list(self.columns.columns))
        f, _, first = self._blocks[i]
        path = self._files[f][0]
        first += 1
        where = f"{path} (rows {first}-{first + table.num_rows - 1})"
        if self._list_column is None:
            frame = self.columns.features(table, where)
            check_numeric(frame, where, "Streamed features must be numbers: choose other columns or fix the cells.")
            block = np.ascontiguousarray(frame.to_numpy(dtype=np.float32, na_value=np.nan))
        else:
            block = self._list_block(table.column(self._list_column), where, first)
        _check_values(block, where, self.feature_names, first)
        return block

    def _list_block(self, column, where: str, first_row: int) -> np.ndarray:
        """A numeric list column straight from its Arrow values to float32 (no pandas, no copy for float32)."""
        import pyarrow.compute as pc

        name = self._list_column
        length = self.columns.list_lengths[name]
        parts = []
        offset = 0
        for chunk in column.chunks:
            if chunk.null_count:
                missing = np.flatnonzero(~chunk.is_valid().to_numpy(zero_copy_only=False))
                raise ValueError(
                    f"{where}: list column {name!r} has {plural(chunk.null_count, 'missing list')}, first in row "
                    f"{first_row + offset + int(missing[0])}. Fill or remove those rows: streamed files are read "
                    "as they are (no imputation)."
                )
            lengths = pc.min_max(pc.list_value_length(chunk)).as_py()
            if lengths["min"] != length or lengths["max"] != length:
                raise ValueError(
                    f"{where}: list column {name!r} holds lists of {lengths['min']} to {lengths['max']} numbers, "
                    f"expected {length} in every row (as in the first rows read). Store one length in every row."
                )
            parts.append(chunk.flatten().to_numpy(zero_copy_only=False))
            offset += len(chunk)
        values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return np.ascontiguousarray(values.reshape(-1, length), dtype=np.float32)

    def labels(self, i: int) -> np.ndarray | None:
        if self._label is None:
            return None
        return self._read(i, [self._label]).column(self._label).to_numpy()

    def fingerprint(self) -> dict:
        return _fingerprint_files("parquet", [(path, stat) for path, _, stat in self._files])


class _Layout:
    """Blocks of ``block_rows`` consecutive rows over a reader's own blocks (row groups, files).

    The splits and every epoch's order are functions of these blocks, so they depend on the row
    count and ``block_rows`` only, never on how files cut the rows: the same rows in an array, one
    file or a folder of parts are read as the same blocks. The reader's block read last is kept, so
    reading the blocks in turn decodes each of the reader's blocks once.
    """

    def __init__(self, reader, block_rows: int):
        self.reader = reader
        total = int(reader.bounds[-1])
        self.block_rows = block_rows
        self.bounds = np.append(np.arange(0, total, block_rows, dtype=np.int64), np.int64(total))
        self._lock = threading.Lock()
        self._kept: tuple[int, np.ndarray] | None = None

    def _features(self, j: int) -> np.ndarray:
        with self._lock:
            kept = self._kept
        if kept is not None and kept[0] == j:
            return kept[1]
        block = self.reader.read(j)
        with self._lock:
            self._kept = (j, block)
        return block

    def gather(self, i: int, what: str):
        """Rows ``bounds[i]:bounds[i + 1]`` of the reader's ``what`` ("features", "labels" or "ids"); None
        where the reader has none."""
        start, stop = int(self.bounds[i]), int(self.bounds[i + 1])
        edges = self.reader.bounds
        read = self._features if what == "features" else getattr(self.reader, what, None)
        if read is None:
            return None
        parts = []
        for j in range(int(np.searchsorted(edges, start, side="right")) - 1, len(edges) - 1):
            if edges[j] >= stop:
                break
            values = read(j)
            if values is None:
                return None
            parts.append(values[max(start, edges[j]) - edges[j] : min(stop, edges[j + 1]) - edges[j]])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class RowSource:
    """Rows of an array or of files, read a block at a time; views keep rows by a seeded hash, copying nothing.

    Block ``i`` is rows ``i * block_rows`` to ``(i + 1) * block_rows`` of the unfiltered rows, whatever
    the files' own layout; ``block_sizes`` are the rows of each block after this view's filters (from
    metadata and hashes only), and ``read(i)`` returns them in file order.
    """

    def __init__(self, rows, filters: tuple[_Filter, ...] = (), maps: tuple = (), *, block_rows: int | None = None):
        self._layout = rows if isinstance(rows, _Layout) else _Layout(rows, block_rows or getattr(rows, "block_rows", BLOCK_ROWS))
        self._rows = self._layout.reader
        self._filters = filters
        self._maps = maps
        self.name: str = self._rows.name
        self.feature_names: tuple[str, ...] = self._rows.feature_names
        self.n_features: int = len(self.feature_names)
        self.columns: ColumnSpec | None = self._rows.columns
        self.image_shape: tuple | None = self._rows.image_shape
        self.block_rows: int = self._layout.block_rows
        bounds = self._layout.bounds
        self.n_blocks: int = len(bounds) - 1
        self.block_sizes: np.ndarray = _admitted_sizes(bounds, self._admits) if filters else np.diff(bounds)
        self.n_rows: int = int(self.block_sizes.sum())
        # Rows already in memory (an array): training may keep them all on its device.
        self.in_memory: bool = bool(getattr(self._rows, "in_memory", False))

    def __repr__(self) -> str:
        return f"RowSource({self.name!r}: {self.n_rows} rows x {self.n_features} features in {self.n_blocks} blocks)"

    def _admits(self, rows: np.ndarray) -> np.ndarray:
        admitted = self._filters[0].admits(rows)
        for row_filter in self._filters[1:]:
            admitted &= row_filter.admits(rows)
        return admitted

    def _all_rows(self, i) -> tuple[int, np.ndarray]:
        """Block ``i`` checked, and the global indices of all its rows."""
        i = operator.index(i)
        if not 0 <= i < self.n_blocks:
            raise IndexError(f"block {i} is out of range: {self.name} has {plural(self.n_blocks, 'block')}.")
        return i, np.arange(self._layout.bounds[i], self._layout.bounds[i + 1], dtype=np.int64)

    def _mask(self, rows: np.ndarray) -> np.ndarray | slice:
        return self._admits(rows) if self._filters else slice(None)

    def read(self, i: int) -> np.ndarray:
        """float32 C-contiguous ``(block_sizes[i], n_features)``; may be read-only or a view: copy before writing."""
        i, rows = self._all_rows(i)
        block = self._layout.gather(i, "features")[self._mask(rows)]
        for function in self._maps:
            block = function(block)
        return block

    def labels(self, i: int) -> np.ndarray | None:
        """The first label column's values for the rows of ``read(i)``; None without label columns."""
        return self._beside(i, "labels")

    def ids(self, i: int) -> np.ndarray | None:
        """The id column's values for the rows of ``read(i)``; None without an id column."""
        return self._beside(i, "ids")

    def _beside(self, i: int, what: str) -> np.ndarray | None:
        i, rows = self._all_rows(i)
        values = self._layout.gather(i, what)
        return None if values is None else values[self._mask(rows)]

    def row_indices(self, i: int) -> np.ndarray:
        """int64 positions in the unfiltered source of the rows of ``read(i)``."""
        i, rows = self._all_rows(i)
        return rows[self._mask(rows)]

    def iter_blocks(self, blocks=None):
        """``read(i)`` for each ``i`` of ``blocks`` (default: all), in that order."""
        for i in range(self.n_blocks) if blocks is None else blocks:
            yield self.read(i)

    def to_array(self) -> np.ndarray:
        """Every row in one array (for sources that fit in memory)."""
        rows = np.empty((self.n_rows, self.n_features), dtype=np.float32)
        at = 0
        for block in self.iter_blocks():
            rows[at : at + len(block)] = block
            at += len(block)
        return rows

    def held_out(self, fraction: float, seed: int, salt: str, start: float = 0.0) -> RowSource:
        """The view of the rows with ``start <= row_hash(seed, salt, index) < start + fraction``
        (fold ``f`` of ``k``: ``fraction=1/k, start=f/k``)."""
        return RowSource(self._layout, (*self._filters, _Filter(*_check_filter(fraction, seed, salt), True, start)),
                         self._maps)

    def kept(self, fraction: float, seed: int, salt: str, start: float = 0.0) -> RowSource:
        """The view of the rows :meth:`held_out` leaves out."""
        return RowSource(self._layout, (*self._filters, _Filter(*_check_filter(fraction, seed, salt), False, start)),
                         self._maps)

    def map(self, function) -> RowSource:
        """The view whose blocks are ``function(block)`` (rows in, as many float32 rows of the same width out),
        e.g. the scaling a model applies."""
        return RowSource(self._layout, self._filters, (*self._maps, function))

    def fingerprint(self) -> dict:
        """JSON-able identity: the files (sizes, mtimes) or the array (shape, digest), block layout, filters."""
        return {
            **self._rows.fingerprint(),
            "n_blocks": self.n_blocks,
            "block_rows": self.block_rows,
            "columns": None if self.columns is None else self.columns.to_dict(),
            "filters": [asdict(row_filter) for row_filter in self._filters],
            "maps": len(self._maps),
            "n_rows": self.n_rows,
        }


# --- opening -------------------------------------------------------------------------------------------


def is_source_path(path) -> bool:
    """Whether ``path`` names a folder or a glob pattern (``*``, ``?``, ``[``): data read as a stream of files.

    An existing file is a file even when its name holds those characters.
    """
    path = Path(path)
    return path.is_dir() or (not path.exists() and any(char in str(path) for char in "*?["))


def source_files(path) -> list[Path]:
    """The data files a folder or glob pattern names, sorted by name, all ``.parquet`` or all ``.npy``.

    Hidden files and those starting with ``_`` (e.g. Spark's ``_SUCCESS``) and files of other kinds are skipped;
    CSV files are refused.
    """
    if Path(path).is_dir():
        where = f"the folder {path}"
        found = sorted(p for p in Path(path).iterdir() if p.is_file())
    else:
        where = f"the files matching {path}"
        found = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
        if not found:
            raise FileNotFoundError(
                f"No file matches the pattern {path} (relative to {Path.cwd()}). Check the pattern and the current "
                "directory."
            )
    visible = [p for p in found if not p.name.startswith((".", "_"))]
    for p in visible:
        if p.suffix.lower() in _NOT_STREAMED:
            raise ValueError(f"{p} in {where} cannot be read as a stream (only Parquet and .npy files can: their "
                             f"row counts are in their metadata). {_NOT_STREAMED[p.suffix.lower()]}")
    files = [p for p in visible if p.suffix.lower() in _STREAMED]
    if not files:
        raise ValueError(f"{where.capitalize()} holds no .parquet or .npy files. Point to a folder or pattern of "
                         "Parquet or .npy files.")
    kinds = {p.suffix.lower() for p in files}
    if len(kinds) > 1:
        examples = [next(p.name for p in files if p.suffix.lower() == kind) for kind in sorted(kinds)]
        raise ValueError(
            f"{where.capitalize()} mix .npy and .parquet files (e.g. {describe_names(examples)}); a stream reads one "
            f"kind. Move one kind elsewhere or name the files with a pattern such as {Path(path) / '*.parquet'}."
        )
    return files


def _refuse_options(selection: Selection, options: tuple[str, ...], what: str, fix: str) -> None:
    for option in options:
        value = getattr(selection, option)
        if value:
            raise invalid_value(option, f"no {option} for {what}", f"{option}={value!r}", fix)


def _check_numeric_dtype(dtype, name: str, fix: str) -> None:
    if dtype.names or dtype.kind not in "biuf":
        raise invalid_value(name, "plain numbers (bool, int or float)", f"values of dtype {dtype}", fix)


def _image_shape(shape: tuple) -> tuple | None:
    return as_image_shape(shape[1:]) if len(shape) in (3, 4) else None


def _open_array(data, block_rows: int) -> _ArrayRows:
    array = np.asarray(data)
    _check_numeric_dtype(array.dtype, "data", "Convert it with data.astype('float32').")
    if array.ndim < 2 or len(array) == 0 or math.prod(array.shape[1:]) == 0:
        raise invalid_value(
            "data", "a 2-D array (samples x features) or images (n, h, w[, c]) with at least one row and feature",
            f"an array of shape {array.shape}", "Use data.reshape(-1, 1) for a single feature.",
        )
    flat = array.reshape(len(array), -1)
    names = [f"x{i}" for i in range(flat.shape[1])]
    return _ArrayRows("array", [flat], block_rows, names, image_shape=_image_shape(array.shape))


def _open_npy(name: str, paths: list[Path], selection: Selection, block_rows: int) -> _ArrayRows:
    """Checked ``paths``, memory-mapped; the columns chosen on the first block of rows."""
    _refuse_options(selection, ("label_columns",), ".npy files (they hold features only)",
                    "Read labels from a Parquet file's column, or keep them in a separate array.")
    parts = []
    for path in paths:
        array = _load_npy(path, mmap_mode="r")
        _check_array(array, path)
        _check_numeric_dtype(array.dtype, str(path), "Re-save it with numpy.save(path, array.astype('float32')).")
        if parts and array.shape[1:] != parts[0].shape[1:]:
            raise ValueError(
                f"{path} holds rows of shape {array.shape[1:]}, but {paths[0]} rows of shape {parts[0].shape[1:]}. "
                "Every .npy file of a folder or pattern needs rows of the same shape: re-save it or move it out."
            )
        parts.append(array)
    first = next((i for i, array in enumerate(parts) if len(array)), None)
    if first is None:
        raise ValueError(f"{name} holds no rows. Point to .npy files that hold data.")
    frame, image_shape = _array_frame(parts[first][:block_rows])
    where = str(paths[first])
    spec = selection.select(frame, list(frame.columns), {}, where)
    check_identifiers(frame, spec, selection, where)
    everything = spec.feature_names == tuple(frame.columns)
    position = {column: i for i, column in enumerate(frame.columns)}
    return _ArrayRows(
        name, [array.reshape(len(array), -1) for array in parts], block_rows, spec.feature_names, paths=paths,
        features=None if everything else np.array([position[f] for f in spec.feature_names]),
        columns=spec, image_shape=image_shape if everything else None,
    )


def _cells(schema) -> dict:
    """``{column: None (single values), a list length (fixed-size lists) or 'lists'}`` of an Arrow schema."""
    import pyarrow as pa

    cells = {}
    for name in arrow_columns(schema.empty_table()):
        type_ = schema.field(name).type
        if pa.types.is_fixed_size_list(type_):
            cells[name] = type_.list_size
        elif pa.types.is_list(type_) or pa.types.is_large_list(type_):
            cells[name] = "lists"
        else:
            cells[name] = None
    return cells


def _describe_cells(cells) -> str:
    return "single values" if cells is None else "lists" if cells == "lists" else f"lists of {cells} values"


def _check_same_columns(first: Path, expected: dict, path: Path, found: dict) -> None:
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    differ = [name for name in expected if name in found and found[name] != expected[name]]
    if not (missing or extra or differ):
        return
    changes = [f"it lacks {describe_names(missing)}"] if missing else []
    changes += [f"it has extra {describe_names(extra)}"] if extra else []
    changes += [f"{name!r} holds {_describe_cells(found[name])}, not {_describe_cells(expected[name])}"
                for name in differ[:3]]
    raise ValueError(
        f"{path} has other columns than {first}: {'; '.join(changes)}. Every file of a folder or pattern needs the "
        "same columns: rewrite it with the same schema or move it out."
    )


def _open_parquet(name: str, paths: list[Path], selection: Selection) -> _ParquetRows:
    """Checked ``paths``' metadata, the same columns in each; the columns chosen on the first row group."""
    files = []
    cells = None
    for path in paths:
        pq = _parquet(path)
        with _parquet_errors(path), pq.ParquetFile(path) as parquet:
            metadata, schema = parquet.metadata, parquet.schema_arrow
        if cells is None:
            cells = _cells(schema)
        else:
            _check_same_columns(paths[0], cells, path, _cells(schema))
        files.append((path, metadata, path.stat()))
    first = next(((path, metadata, g) for path, metadata, _ in files
                  for g in range(metadata.num_row_groups) if metadata.row_group(g).num_rows), None)
    if first is None:
        raise ValueError(f"{name} holds no rows. Point to Parquet files that hold data.")
    path, metadata, group = first
    with _parquet_errors(path), pq.ParquetFile(path, metadata=metadata) as parquet:
        table = parquet.read_row_group(group)
    where = str(path)
    frame, lists = frame_from_arrow(table, where)
    spec = selection.select(frame, list(arrow_columns(table)), lists, where)
    check_identifiers(frame, spec, selection, where)
    return _ParquetRows(name, pq, files, spec)


def open_source(data, *, columns=None, drop_columns=None, id_column=None, label_column=None, label_columns=None,
                block_rows: int = BLOCK_ROWS) -> RowSource:
    """``data`` as a :class:`RowSource`.

    ``data``: a 2-D array or an ``(n, h, w[, c])`` image array (flattened); a RowSource (returned as is);
    a ``.npy`` file (memory-mapped) or a ``.parquet`` file; a folder of ``.parquet`` or ``.npy`` files, or
    a glob pattern of them (sorted by name, one kind, the same columns). Arrays and ``.npy`` files are read
    in blocks of ``block_rows`` rows, Parquet files one row group at a time. The column options are those of
    :func:`aepca.data.read_table`, chosen on the first rows; constant columns are kept and missing values
    are errors (streamed files are read as they are). Label columns exist in Parquet files only.
    """
    block_rows = _check_block_rows(block_rows)
    selection = Selection.of(columns=columns, drop_columns=drop_columns, id_column=id_column,
                             label_column=label_column, label_columns=label_columns)
    if not isinstance(data, str | os.PathLike):
        options = ("columns", "drop_columns", "id_column", "label_columns")
        if isinstance(data, RowSource):
            _refuse_options(selection, options, "a RowSource", "Pass the options to open_source with the file.")
            return data
        _refuse_options(selection, options, "an array", "Select columns by indexing the array.")
        return RowSource(_open_array(data, block_rows), block_rows=block_rows)
    path = Path(data)
    if is_source_path(path):
        paths = [_check_path(p) for p in source_files(path)]
        name = path.resolve().name if path.is_dir() else str(path)
    else:
        paths = [_check_path(path)]
        name = path.name
    suffix = paths[0].suffix.lower()
    if suffix in _NOT_STREAMED:
        raise ValueError(f"{paths[0]} cannot be read as a stream (only Parquet and .npy files can: their row counts "
                         f"are in their metadata). {_NOT_STREAMED[suffix]}")
    if suffix == ".npy":
        return RowSource(_open_npy(name, paths, selection, block_rows), block_rows=block_rows)
    return RowSource(_open_parquet(name, paths, selection), block_rows=block_rows)


