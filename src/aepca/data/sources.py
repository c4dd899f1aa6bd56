"""Rows read a block at a time: every input form becomes a :class:`RowSource` once, at the public boundary.

A row source is the rows of an array or table in memory, or of files (or a folder or glob pattern of them)
read by the reader of their format (:mod:`aepca.data.formats`). The columns are chosen on the first block,
or given by a fitted model's :class:`ColumnSpec`; every block carries its float32 features, labels and ids.
Row counts and block layout come from metadata, so held-out views (a seeded hash of each row's index) and
each epoch's block order are pure functions of them: every process computes the same ones without reading
data, and no view copies data.
"""

from __future__ import annotations

import glob
import hashlib
import math
import operator
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from aepca.data.columns import (MAX_CATEGORIES, ColumnSpec, FeatureSummary, Selection, category_cells, check_categorical,
                                check_identifiers, check_impute)
from aepca.data.formats import (DECOMPRESSORS, IMAGE_EXTENSIONS, VECTOR_FORMATS, ImagesPart, InterleavedPart, check_same_columns,
                                decompress_fix, format_suffix, holds_split, memory_part, open_part, rows_within)
from aepca.data.order import _admitted_sizes, _check_filter, _Filter, _positive_int, hash_edges, held_count, row_hash
from aepca.validation import MAX_ABS_VALUE, as_image_shape, describe_names, invalid_value, plural

__all__ = ["BLOCK_ROWS", "RowSource", "image_files", "is_source_path", "open_source", "source_files"]

# Rows per block unless the caller chooses (fewer for rows of over 1,024 values: formats.BLOCK_BYTES a block).
BLOCK_ROWS = 65536
# The files a folder or pattern may hold, by kind (a stream reads one kind).
_KINDS = {".npy": ".npy", ".parquet": ".parquet", ".csv": ".csv", ".tsv": ".csv", ".arrow": ".arrow",
          ".feather": ".arrow", ".ipc": ".arrow", ".jsonl": ".jsonl", ".ndjson": ".jsonl", ".h5": ".h5", ".hdf5": ".h5",
          **{suffix: suffix for suffix in VECTOR_FORMATS}}
# A folder's .txt and .dat files are taken for notes (README.txt) and skipped; a pattern naming them reads them.
_PATTERN_KINDS = {**_KINDS, ".txt": ".csv", ".dat": ".csv"}
# Subfolder names of the halves of a train/test split (the first found of each is suggested).
TRAIN_FOLDERS = ("train", "training")
TEST_FOLDERS = ("test", "testing", "validation", "valid", "val")
# Rows of each sampled block that the fingerprint of rows in memory hashes.
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
        "Fill or remove those rows and rescale huge values: rows are read as they are, except by compare and sweep "
        "told to fill missing values with the training rows' means (--impute mean; impute='mean')."
    )


class _Block(NamedTuple):
    features: np.ndarray
    labels: np.ndarray | None
    ids: np.ndarray | None


def _column(raw, name: str | None):
    if name is None:
        return None
    if isinstance(raw, np.ndarray):
        return raw[:, int(name[1:])]  # a plain array's column x<i>
    return raw[name].to_numpy() if hasattr(raw, "iloc") else raw.column(name).to_numpy(zero_copy_only=False)


class _Rows:
    """The rows of parts (files, or an array or table in memory) through a column spec, a native block at a
    time: float32 features, the first label column and the id column (where the data has them).

    ``take``: for plain arrays, the positions of the features (None: every column, in order). The block
    decoded last is kept, so the features, labels and ids of a block are read once. ``checked``: refuse
    missing, infinite and huge values (else they pass, for cleaning to be learned from them).
    """

    def __init__(self, name: str, kind: str, parts: list, spec: ColumnSpec, *, take, exposed: bool, named: bool,
                 checked: bool = True):
        self.name, self.kind, self._parts, self._spec, self._take = name, kind, parts, spec, take
        self.checked = checked
        self.columns = spec if exposed else None
        self.feature_names = spec.feature_names
        first = parts[0]
        self.in_memory = first.in_memory
        self.image_shape = first.image_shape if take is None else None  # every pixel a feature, in place
        self.declared_shape = None  # the shape given for flat rows (_reader)
        self.distance = first.distance
        self.notes = tuple(dict.fromkeys(note for part in parts for note in part.notes))  # how the files were read
        present = set(first.names) if named else set()
        self._label = next((name for name in spec.label_columns[:1] if name in present), None)
        self._id = spec.id_column if spec.id_column in present else None
        self.id_name = first.id_name if first.ids is not None else self._id
        wanted = {*spec.columns, *spec.feature_names, self._label, self._id}
        self._needed = [name for name in first.names if name in wanted]
        self._blocks, sizes = [], []  # (part, native block, its first row in the part)
        for p, part in enumerate(parts):
            for k, first_row in enumerate(np.cumsum(part.sizes) - part.sizes):
                if part.sizes[k]:
                    self._blocks.append((p, k, int(first_row)))
                    sizes.append(part.sizes[k])
        self.bounds = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        self._lock = threading.Lock()
        self._last: tuple[int, _Block] | None = None

    def decode(self, j: int) -> _Block:
        with self._lock:
            last = self._last
        if last is not None and last[0] == j:
            return last[1]
        p, k, first = self._blocks[j]
        part = self._parts[p]
        raw = part.block(k, self._needed)
        n = len(raw)
        where = f"{part.where} (rows {first + 1}-{first + n})"
        if part.plain:
            with np.errstate(over="ignore"):  # past float32's range: inf, reported below
                features = np.ascontiguousarray(raw if self._take is None else raw[:, self._take], dtype=np.float32)
            features = self._spec.fill_missing(features)
        else:
            features = self._spec.values(raw, where)
        labels = part.y[first : first + n] if part.y is not None else _column(raw, self._label)
        ids = part.ids[first : first + n] if part.ids is not None else _column(raw, self._id)
        if self.checked:
            _check_values(features, where, self.feature_names, first + 1)
        block = _Block(features, labels, ids)
        with self._lock:
            self._last = (j, block)
        return block

    def fingerprint(self) -> dict:
        """The data by content: files by base name, size, rows and a hash of sampled bytes; rows in memory
        by a hash of the features of their first, middle and last blocks."""
        first = self._parts[0]
        identity = {"kind": self.kind, "schema": first.schema}
        if first.path is not None:
            return {**identity, "files": [part.fingerprint() for part in self._parts]}
        digest = hashlib.sha256()
        last = len(self._blocks) - 1
        for j in sorted({0, last // 2, last}) if self._blocks else ():
            features = self.decode(j).features
            digest.update(features[:_DIGEST_ROWS].tobytes())
            digest.update(features[-_DIGEST_ROWS:].tobytes())
        return {**identity, "rows": int(self.bounds[-1]), "digest": digest.hexdigest()[:16]}


class _Layout:
    """Blocks of ``block_rows`` consecutive rows over a reader's own blocks (row groups, CSV blocks, files).

    The splits and every epoch's order are functions of these blocks, so they depend on the row
    count and ``block_rows`` only, never on how files cut the rows: the same rows in an array, one
    file or a folder of parts are read as the same blocks. The reader keeps its block decoded last,
    so reading the blocks in turn decodes each of the reader's blocks once.
    """

    def __init__(self, reader, block_rows: int):
        self.reader = reader
        total = int(reader.bounds[-1])
        self.block_rows = block_rows
        self.bounds = np.append(np.arange(0, total, block_rows, dtype=np.int64), np.int64(total))

    def gather(self, i: int, what: str):
        """Rows ``bounds[i]:bounds[i + 1]`` of the reader's ``what`` ("features", "labels" or "ids"); None
        where the reader has none."""
        start, stop = int(self.bounds[i]), int(self.bounds[i + 1])
        edges = self.reader.bounds
        parts = []
        for j in range(int(np.searchsorted(edges, start, side="right")) - 1, len(edges) - 1):
            if edges[j] >= stop:
                break
            values = getattr(self.reader.decode(j), what)
            if values is None:
                return None
            parts.append(values[max(start, edges[j]) - edges[j] : min(stop, edges[j + 1]) - edges[j]])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _one_array(blocks: list[np.ndarray]) -> np.ndarray | None:
    """The one array whose rows, in order, ``blocks`` are (the block itself, or views of an array's
    consecutive rows), or None: a copy would cost the rows' size again."""
    if len(blocks) == 1:
        return blocks[0]
    base = blocks[0].base if blocks else None
    if not (isinstance(base, np.ndarray) and base.ndim == 2 and base.dtype == np.float32 and base.flags.c_contiguous
            and len(base) == sum(map(len, blocks))):
        return None
    at = base.__array_interface__["data"][0]
    for block in blocks:
        if block.base is not base or block.__array_interface__["data"][0] != at:
            return None
        at += block.nbytes
    return base


class RowSource:
    """Rows of any input form (:func:`open_source`), read a block at a time; views keep rows by a seeded hash,
    copying nothing.

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
        # The name of the column ``ids`` gives (an id column, or image files' paths); None without ids.
        self.id_name: str | None = self._rows.id_name
        self.image_shape: tuple | None = self._rows.image_shape
        # The distance the data declares its rows compared by (an ANN-benchmarks HDF5 file's), or None.
        self.distance: str | None = self._rows.distance
        # How the files were read (a CSV's delimiter, a workbook's other sheets, decompression).
        self.notes: tuple[str, ...] = self._rows.notes
        self.block_rows: int = self._layout.block_rows
        bounds = self._layout.bounds
        self.n_blocks: int = len(bounds) - 1
        self.block_sizes: np.ndarray = _admitted_sizes(bounds, self.admits) if filters else np.diff(bounds)
        self.n_rows: int = int(self.block_sizes.sum())
        # Rows already in memory (an array): training may keep them all on its device.
        self.in_memory: bool = bool(getattr(self._rows, "in_memory", False))

    def __repr__(self) -> str:
        return f"RowSource({self.name!r}: {self.n_rows} rows x {self.n_features} features in {self.n_blocks} blocks)"

    def admits(self, rows: np.ndarray) -> np.ndarray:
        """Whether each global row index in ``rows`` (positions in the unfiltered source) is in this view."""
        admitted = np.ones(len(rows), bool)
        for row_filter in self._filters:
            admitted &= row_filter.admits(rows)
        return admitted

    def _all_rows(self, i) -> tuple[int, np.ndarray]:
        """Block ``i`` checked, and the global indices of all its rows."""
        i = operator.index(i)
        if not 0 <= i < self.n_blocks:
            raise IndexError(f"block {i} is out of range: {self.name} has {plural(self.n_blocks, 'block')}.")
        return i, np.arange(self._layout.bounds[i], self._layout.bounds[i + 1], dtype=np.int64)

    def _mask(self, rows: np.ndarray) -> np.ndarray | slice:
        return self.admits(rows) if self._filters else slice(None)

    def read(self, i: int) -> np.ndarray:
        """float32 C-contiguous ``(block_sizes[i], n_features)``; may be read-only or a view: copy before writing."""
        i, rows = self._all_rows(i)
        block = self._layout.gather(i, "features")[self._mask(rows)]
        # A block the filters leave empty (a split's share of a small block) has no rows to map.
        for function in self._maps if len(block) else ():
            block = function(block)
        return block

    def labels(self, i: int) -> np.ndarray | None:
        """The first label column's values for the rows of ``read(i)``; None without label columns."""
        return self._beside(i, "labels")

    def ids(self, i: int) -> np.ndarray | None:
        """The ids (the id column's values, or image files' paths) of the rows of ``read(i)``; None without ids."""
        return self._beside(i, "ids")

    def _beside(self, i: int, what: str) -> np.ndarray | None:
        i, rows = self._all_rows(i)
        values = self._layout.gather(i, what)
        return None if values is None else values[self._mask(rows)]

    def row_indices(self, i: int) -> np.ndarray:
        """int64 positions in the unfiltered source of the rows of ``read(i)``."""
        i, rows = self._all_rows(i)
        return rows[self._mask(rows)]

    def iter_row_hashes(self, seed: int, salt: str):
        """``row_hash(seed, salt, row_indices(i))`` for each block in order."""
        for i in range(self.n_blocks):
            yield row_hash(seed, salt, self.row_indices(i))

    def iter_blocks(self, blocks=None):
        """``read(i)`` for each ``i`` of ``blocks`` (default: all), in that order."""
        for i in range(self.n_blocks) if blocks is None else blocks:
            yield self.read(i)

    def to_array(self) -> np.ndarray:
        """Every row in one array (for sources that fit in memory): the rows given, without a copy, where
        the blocks are their rows in order (an array), else a new array. Read it; do not write to it."""
        blocks = list(self.iter_blocks())
        whole = _one_array(blocks)
        if whole is not None:
            return whole
        return np.concatenate(blocks, dtype=np.float32) if blocks else np.empty((0, self.n_features), np.float32)

    def split(self, fraction: float, seed: int, salt: str) -> tuple[RowSource, RowSource]:
        """``(kept, held_out)`` views: exactly ``ceil(fraction * n_rows)`` of this view's rows held out,
        those of the smallest ``row_hash(seed, salt, index)`` (a hash interval found from the indices)."""
        fraction, seed, salt = _check_filter(fraction, seed, salt)
        edge, = hash_edges(lambda: self.iter_row_hashes(seed, salt), self.n_rows, [held_count(fraction, self.n_rows)])
        return tuple(self._filtered(_Filter(edge, seed, salt, held)) for held in (False, True))

    def held_out(self, fraction: float, seed: int, salt: str, start: float = 0.0) -> RowSource:
        """The view of the rows with ``start <= row_hash(seed, salt, index) < start + fraction``
        (fold ``f`` of ``k``: ``fraction=1/k, start=f/k``)."""
        return self._filtered(_Filter(*_check_filter(fraction, seed, salt), True, start))

    def kept(self, fraction: float, seed: int, salt: str, start: float = 0.0) -> RowSource:
        """The view of the rows :meth:`held_out` leaves out."""
        return self._filtered(_Filter(*_check_filter(fraction, seed, salt), False, start))

    def _filtered(self, row_filter: _Filter) -> RowSource:
        return RowSource(self._layout, (*self._filters, row_filter), self._maps)

    @property
    def reads_files(self) -> bool:
        """Whether the rows are read from files (which :meth:`respecified` can read again), not from memory."""
        return self._rows._parts[0].path is not None

    def respecified(self, spec: ColumnSpec, *, checked: bool = True) -> RowSource:
        """This view of the same files' rows read through ``spec`` (the cleaning learned on them, say);
        ``checked=False`` lets missing, infinite and huge values through, for cleaning to be learned from them."""
        rows = self._rows
        if not self.reads_files:
            raise invalid_value("data", "files for their columns to be read again", f"rows in memory ({self.name})",
                                "Pass the array or table itself.")
        reader = _reader(rows.name, rows.kind, rows._parts, Selection(), spec, checked=checked,
                         image_shape=rows.declared_shape)
        return RowSource(_Layout(reader, self.block_rows), self._filters, self._maps)

    def map(self, function) -> RowSource:
        """The view whose blocks are ``function(block)`` (rows in, as many float32 rows of the same width out),
        e.g. the scaling a model applies."""
        return RowSource(self._layout, self._filters, (*self._maps, function))

    def fingerprint(self) -> dict:
        """JSON-able identity, by content: the files (base names, sizes, rows, hashes of sampled bytes) or the rows
        in memory (a hash of sampled blocks), the schema, the column specification, block layout, filters."""
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
    """The data files a folder (with its Hive partition subfolders, ``key=value``, such as
    ``date=2024-01-01/``) or glob pattern names, sorted by path, of one kind: ``.parquet``, ``.npy``,
    ``.csv`` / ``.tsv`` (and ``.txt`` / ``.dat`` that a pattern names), or Arrow's ``.arrow`` / ``.feather`` /
    ``.ipc``.

    Other subfolders (a run's output, say) are not read. Hidden files and those starting with ``_``
    (e.g. Spark's ``_SUCCESS``) and files of other kinds are skipped; ``.npz`` archives are refused
    (NumPy loads them whole).
    """
    kinds = _KINDS
    if Path(path).is_dir():
        where = f"the folder {path}"
        found = sorted(_partition_files(Path(path)))
    else:
        where, kinds = f"the files matching {path}", _PATTERN_KINDS
        found = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
        if not found:
            raise FileNotFoundError(
                f"No file matches the pattern {path} (relative to {Path.cwd()}). Check the pattern and the current "
                "directory."
            )
    visible = [p for p in found if not p.name.startswith((".", "_"))]
    for p in visible:
        if p.suffix.lower() == ".npz":
            raise ValueError(f"{p} in {where} cannot be read a block at a time: NumPy loads an .npz archive whole. "
                             "Save its feature array as a .npy file with numpy.save(path, archive['x']).")
    files = [p for p in visible if format_suffix(p) in kinds]
    if not files:
        inside = _subfolders_hint(Path(path)) if Path(path).is_dir() else ""
        compressed = [p for p in visible if p.suffix.lower() in DECOMPRESSORS]
        none = f"No .parquet, .arrow, .npy, .csv, .jsonl or image file in {where}"
        if compressed:
            suffix = compressed[0].suffix.lower()
            target = str(Path(path) / f"*{suffix}") if Path(path).is_dir() else str(path)
            raise ValueError(f"{none}: {plural(len(compressed), 'file')} compressed "
                             f"({describe_names([p.name for p in compressed])}). {decompress_fix(target, suffix)}")
        raise ValueError(f"{none}{inside}. Point to a folder or pattern of Parquet, Arrow, .npy, CSV, JSON Lines or "
                         "image files.")
    found_kinds = sorted({kinds[format_suffix(p)] for p in files})
    if len(found_kinds) > 1:
        examples = [next(p.name for p in files if kinds[format_suffix(p)] == kind) for kind in found_kinds]
        verb = "mixes" if Path(path).is_dir() else "mix"  # the folder mixes, the files matching a pattern mix
        raise ValueError(
            f"{where.capitalize()} {verb} {' and '.join(found_kinds)} files (e.g. {describe_names(examples)}); a stream "
            f"reads one kind. Move one kind elsewhere or name the files with a pattern such as {Path(path) / '*.parquet'}."
        )
    return files


def _subfolders_hint(folder: Path) -> str:
    """Why ``folder``'s subfolders were not read, and what to name instead: the two halves of a train/test
    split (``train/``, ``test/``, as a Hugging Face DatasetDict saves them), or a pattern of their files."""
    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
    by_name = {name.lower(): name for name in subfolders}
    train = next((by_name[name] for name in TRAIN_FOLDERS if name in by_name), None)
    test = next((by_name[name] for name in TEST_FOLDERS if name in by_name), None)
    if train and test:
        return (f" (its subfolders {train!r} and {test!r} hold a train/test split: pass {folder / train} as the data "
                f"and {folder / test} as the test data, --test on the command line, test= in Python)")
    if not subfolders:
        return ""
    suffix = next((p.suffix for name in subfolders for p in sorted((folder / name).iterdir())
                   if format_suffix(p) in _KINDS), ".parquet")
    return (f" (its subfolders {describe_names(subfolders)} are read only when named as partitions, key=value; "
            f"name their files with a pattern such as {folder / '*' / f'*{suffix}'})")


def image_files(path) -> tuple[list[Path], Path] | None:
    """The image files a folder (with its subfolders, at any depth) or glob pattern names, sorted by path,
    and the folder their ids are relative to (the common one); None where it names no image, or data files,
    which are read instead (:func:`source_files`). Hidden files and folders and those starting with ``_``
    are skipped."""
    path = Path(path)
    if path.is_dir():
        if any(format_suffix(p) in (*_KINDS, ".npz") for p in _partition_files(path) if not p.name.startswith((".", "_"))):
            return None
        found = []
        for root, folders, files in os.walk(path):
            folders[:] = sorted(name for name in folders if not name.startswith((".", "_")))
            found += [Path(root) / name for name in files]
    else:
        found = [Path(p) for p in glob.glob(str(path)) if Path(p).is_file()]
        if any(format_suffix(p) in (*_PATTERN_KINDS, ".npz") for p in found):
            return None
    images = sorted(p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith((".", "_")))
    if not images:
        return None
    return images, path if path.is_dir() else Path(os.path.commonpath([p.parent for p in images]))


def _partition_files(folder: Path) -> Iterator[Path]:
    """The files of ``folder`` and of its partition subfolders (``key=value``), at any depth."""
    for root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if "=" in name]  # only partitions are walked into
        yield from (Path(root) / name for name in files)


def _choose_columns(name: str, parts: list, selection: Selection, categorical: str, max_categories: int) -> ColumnSpec:
    """The columns ``selection`` names, chosen and checked (numbers, no row ids) on the first block of rows;
    the categories of categorical columns learned on every row (:func:`_category_cells`). A column the
    first block of a file leaves empty has no type there: with ``categorical="onehot"`` it is categorical
    if a later row holds text, as when the file is read whole."""
    part, k = next(((part, k) for part in parts for k, size in enumerate(part.sizes) if size), (None, None))
    if part is None:
        raise ValueError(f"{name} holds no rows. Point to data that holds rows.")
    frame, lists = part.frame(part.block(k), part.where)
    spec = part.select(frame, lists, selection, part.where, categorical)
    check_identifiers(frame, spec, selection, part.where)
    empty = [] if categorical != "onehot" or part.path is None else [
        column for column in spec.columns
        if column not in spec.categories and column not in spec.list_lengths and frame[column].isna().all()]
    if spec.categories or empty:
        cells, read, texts = _category_cells(parts, spec, empty, max_categories)
        spec = spec.with_pending_categories(texts)
        rows = "its rows" if read == sum(sum(p.sizes) for p in parts) else f"its first {plural(read, 'row')}"
        spec = spec.with_categories(cells, name, max_categories, rows=rows) if spec.categories else spec
    return spec


def _category_cells(parts: list, spec: ColumnSpec, empty: list[str], max_categories: int
                    ) -> tuple[dict[str, set], int, list[str]]:
    """The distinct cells of ``spec``'s categorical columns and of the columns ``empty`` (their first block's
    cells all missing) in the rows of ``parts``, read a block at a time (those columns alone); how many rows
    were read (all, unless a categorical column is found to hold more than ``max_categories``); and which of
    ``empty`` hold text. Of a column of numbers alone, no more than ``max_categories + 1`` are kept."""
    names = [*spec.categories, *empty]
    found, read, texts = {column: set() for column in names}, 0, set()
    blocks = ((part, k, size) for part in parts for k, size in enumerate(part.sizes) if size)
    for part, k, size in blocks:
        frame = spec.marked_missing(part.frame(part.block(k, names), part.where)[0])
        for column in names:
            if column in empty and not pd.api.types.is_numeric_dtype(frame[column].dtype):
                texts.add(column)
            if len(found[column]) <= max_categories:
                found[column].update(category_cells(frame[column]))
                found[column].discard(None)
        read += size
        if any(len(found[column]) > max_categories for column in [*spec.categories, *texts]):
            break
    return found, read, [column for column in empty if column in texts]


def _positions(part, spec: ColumnSpec) -> np.ndarray | None:
    """Where a plain array's columns hold the features (None: all of them, in order)."""
    if spec.feature_names == part.names:
        return None
    index = {name: i for i, name in enumerate(part.names)}
    return np.array([index[name] for name in spec.feature_names])


def _reader(name: str, kind: str, parts: list, selection: Selection, spec: ColumnSpec | None,
            categorical: str = "refuse", max_categories: int = MAX_CATEGORIES, checked: bool = True,
            image_shape: tuple | None = None) -> _Rows:
    """The rows of ``parts`` through ``spec``, or the columns ``selection`` chooses; ``image_shape``: one image's
    shape for flat rows of a table or array (image files are read at theirs)."""
    first = parts[0]
    given = spec is not None
    # An array holds the features in order: in memory always, in a file (.npy, .npz, images) unless its
    # positional names (x0, x1, ...) are those the model reads, as after a fit on such a file.
    positional = given and first.plain and (first.path is None or not set(spec.feature_names) <= set(first.names))
    if not given:
        spec = _choose_columns(name, parts, selection, categorical, max_categories)
    elif positional and len(first.names) != len(spec.feature_names):
        where = first.where if first.path is not None else first.where.capitalize()  # a path as it is
        raise ValueError(f"{where} has {len(first.names)} features, but the model reads {len(spec.feature_names)} "
                         f"({describe_names(spec.feature_names)}). Pass rows of those features, in that order.")
    elif not positional:
        for part in parts:
            spec.check_names(part.names, part.where)
            if part.positional:
                spec.check_width(part.names, part.where)
    exposed = given or first.path is not None or not first.plain or selection != Selection()
    take = _positions(first, spec) if first.plain and not positional else None
    rows = _Rows(name, kind, parts, spec, take=take, exposed=exposed, named=not positional, checked=checked)
    if image_shape is not None and kind != ImagesPart.kind:
        rows.image_shape = rows.declared_shape = spec.checked_image_shape(image_shape, name)
    return rows


def _open_files(path: Path, no_header: bool | None, block_rows: int, image_shape,
                split: str | None = None) -> tuple[str, str, list]:
    """The name, kind and parts of a file, or of a folder's or pattern's files (the same columns in each)."""
    if is_source_path(path):
        name = path.resolve().name if path.is_dir() else str(path)
        images = image_files(path)
        if images is not None:
            return name, ImagesPart.kind, [ImagesPart(*images, block_rows, image_shape)]
        files = source_files(path)
    else:
        files, name = [path], path.name
    parts = [open_part(file, no_header=no_header, block_rows=block_rows, image_shape=image_shape, split=split)
             for file in files]
    for part in parts[1:]:
        check_same_columns(parts[0], part, "Every file of a folder or pattern needs the same columns and row "
                           "shape: rewrite it or move it out.")
    return name, parts[0].kind, parts


def open_source(data, *, columns=None, drop_columns=None, id_column=None, label_column=None, label_columns=None,
                na_values=None, spec: ColumnSpec | None = None, no_header: bool | None = None,
                block_rows: int | None = None, categorical: str = "refuse",
                max_categories: int = MAX_CATEGORIES, image_shape=None, split: str | None = None) -> RowSource:
    """``data`` as a :class:`RowSource`, read a block at a time (memory bounded by blocks, except for ``.npz`` and
    Excel workbooks, read whole).

    ``data``: a 2-D array or an ``(n, h, w[, c])`` image array, a pandas DataFrame, a pyarrow Table (or
    another library's table that exports Arrow data), a RowSource (returned as is); a delimited text file
    (``.csv``, ``.tsv``, ``.txt``, ``.dat``) or ``.jsonl`` (``block_rows`` lines at a time, the delimiter and
    header detected as by :func:`aepca.data.read_table`; ``no_header`` overrides the header guess), ``.npy``,
    ``.h5`` or vectors' (``.fvecs``, ``.fbin``, ...: a block of rows read from the file), ``.parquet`` (by row
    groups), ``.arrow`` / ``.feather`` / ``.ipc`` (by record batches), ``.npz`` or an Excel workbook's first
    sheet (``.xlsx``, ``.xlsm``; loaded whole) file; a folder or glob pattern of such files (sorted by name,
    one kind, the same columns); image files, a row each, or a folder or pattern of them
    (:class:`aepca.data.formats.ImagesPart`: ids their paths, labels their subfolders), all of one size or
    resized to ``image_shape`` (height, width[, 1 or 3 channels]; a ``spec`` gives the shape of the training
    images); for other data, ``image_shape`` is one image's shape for its flat rows (its product: the
    features), as figures draw them.
    ``block_rows`` (the unit of the shuffle): by default ``BLOCK_ROWS``, fewer for rows of over 1,024
    values, so that a block takes at most ``formats.BLOCK_BYTES``. The column options are those of
    :func:`aepca.data.read_table` on every table form (an array's columns are ``x0, x1, ...``), checked on
    the first block: features are numbers, no row ids. ``spec``, a fitted model's column specification,
    instead reads its columns from any form: matched by name, extra ones ignored, a missing one reported
    before the first block, list columns decoded, missing values imputed as in training (an array in
    memory holds the features in order). Constant columns are kept; other missing values are errors.
    ``categorical="onehot"`` encodes the text, categorical and boolean columns as indicators of the
    categories of all the rows (at most ``max_categories`` per column), found in a pass over those columns
    (:func:`aepca.experiments.compare` keeps the training rows' alone). A ``spec`` applies the categories
    it carries. ``split`` ("train" or "test") reads those rows of a file
    that holds its own split (:func:`aepca.data.formats.holds_split`), which is otherwise refused.
    """
    given_rows = None if block_rows is None else _positive_int(block_rows, "block_rows", BLOCK_ROWS)
    given_shape = _image_shape(image_shape)
    image_shape = given_shape or (spec.image_shape if spec is not None else None)
    block_rows = given_rows or BLOCK_ROWS
    check_categorical(categorical, max_categories)
    selection = Selection.of(columns=columns, drop_columns=drop_columns, id_column=id_column,
                             label_column=label_column, label_columns=label_columns, na_values=na_values)
    for option in ("columns", "drop_columns", "id_column", "label_columns", "na_values"):
        value = getattr(selection, option)
        if value and (spec is not None or isinstance(data, RowSource)):
            beside = "a RowSource" if isinstance(data, RowSource) else "spec (which names the columns)"
            raise invalid_value(option, f"no {option} beside {beside}", f"{option}={value!r}",
                                "Pass the column options with the data itself, or the spec alone.")
    if isinstance(data, RowSource):
        if given_shape is not None:
            raise invalid_value("image_shape", "none beside a RowSource, whose rows are read as they are",
                                f"image_shape={given_shape!r}", "Give it where the rows are opened.")
        if spec is not None and data.n_features != len(spec.feature_names):
            raise ValueError(f"{data.name} has {data.n_features} features, but the model reads "
                             f"{len(spec.feature_names)}. Pass a row source of the features the model was trained on.")
        return data
    if split is not None and not (isinstance(data, str | os.PathLike) and holds_split(data) and split in ("train", "test")):
        raise invalid_value("split", "'train' or 'test' of a file that holds its own split (mnist.npz's x_train and "
                            "x_test; an ANN-benchmarks HDF5 file's train and test)", f"split={split!r} for {data}",
                            "Drop split (--split): the data is one set of rows.")
    if isinstance(data, str | os.PathLike):
        name, kind, parts = _open_files(Path(data), no_header, block_rows, image_shape, split)
    else:
        part = memory_part(data, block_rows)
        name, kind, parts = part.kind, part.kind, [part]
    reader = _reader(name, kind, parts, selection, spec, categorical, max_categories, image_shape=given_shape)
    return RowSource(reader, block_rows=given_rows or rows_within(BLOCK_ROWS, len(reader.feature_names)))


def _image_shape(image_shape) -> tuple | None:
    """``image_shape``, checked: (height, width) or (height, width, 1 or 3)."""
    if image_shape is None:
        return None
    shape = as_image_shape(image_shape)
    if shape is None or len(shape) == 3 and shape[2] not in (1, 3):
        raise invalid_value("image_shape", "(height, width) or (height, width, 1 or 3) of positive integers",
                            f"image_shape={image_shape!r}", "Use e.g. (64, 64) or (64, 64, 3).")
    return shape


def learn_cleaning(train: RowSource, *, impute: str | None, drop_constant: bool) -> ColumnSpec:
    """The column specification of ``train``'s files completed by what one pass over its rows (missing values
    let through) learns, as :func:`aepca.data.load_user_data` learns it on training rows read whole: the
    categories seen in them, ``impute="mean"``'s fill values and the constant columns, dropped with
    ``drop_constant``."""
    check_impute(impute)
    spec = train.columns
    summary = FeatureSummary.of_blocks(train.respecified(spec, checked=False).iter_blocks(), train.n_features)
    if spec.categories:
        spec, summary = spec.seen_categories(summary, train.name)
    spec.check_present(summary, train.name)
    return spec.cleaned(summary, train.name, drop_constant=drop_constant, impute=impute)


def interleaved_source(first: np.ndarray, second: np.ndarray | None = None, in_second: np.ndarray | None = None, *,
                       name: str | None = None, feature_names: tuple[str, ...] | None = None,
                       block_rows: int | None = None, distance: str | None = None) -> RowSource:
    """The rows of a float32 array, or of two of one width as one source in the order ``in_second`` gives
    (row ``i`` is the next row of ``second`` where ``in_second[i]``, else of ``first``), copying a block at
    a time (``block_rows``: as :func:`open_source` chooses by default); ``name``, ``feature_names``
    (default ``array`` and ``x0, x1, ...``) and ``distance`` (declared, or None) are those of the data the
    arrays were read from."""
    if second is None:
        second, in_second = first[:0], np.zeros(len(first), bool)
    block_rows = block_rows or rows_within(BLOCK_ROWS, first.shape[1])
    part = InterleavedPart(first, second, in_second, block_rows, where=name, names=feature_names, distance=distance)
    return RowSource(_reader(name or part.kind, part.kind, [part], Selection(), None), block_rows=block_rows)
