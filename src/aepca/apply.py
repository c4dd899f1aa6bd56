"""A trained model applied to data (a file, a folder or glob of them, or a table in memory):
codes, or reconstructions with each row's error, written in blocks.

Rows are read a block at a time as a row source through the model's column
specification (``open_source(data, spec=...)``), ids beside them, and written
a block at a time, so a file larger than memory works. The output is written
beside its final name and moved there only when complete: nothing half-written
is left.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np

from aepca._files import check_can_write, remove, staging_folder
from aepca.data.sources import open_source
from aepca.preprocessing import RowMoments
from aepca.validation import describe_names, invalid_value, plural

OUTPUT_FORMATS = (".parquet", ".arrow", ".feather", ".npy", ".fvecs", ".fbin", ".h5", ".hdf5", ".csv", ".tsv", ".jsonl",
                  ".xlsx")
# The most rows an Excel sheet holds, its header row included.
EXCEL_MAX_ROWS = 1_048_576
ERROR_COLUMN = "error"
# Binary outputs hold float32 values alone: ids and text columns go beside them (NAME-ids.npy, NAME-categories.npy).
BESIDE_KINDS = ("ids", "categories")
WRITES_BESIDE = (".npy", ".fvecs", ".fbin")
HDF5_CHUNK_BYTES = 2**20


def encode_file(model, data, out, *, block_rows: int | None = None, overwrite: bool = False,
                split: str | None = None) -> dict:
    """Write the codes of every row of ``data`` (ids first, when the data has an id column) to ``out``;
    ``split`` ("train" or "test"): that half of a file that holds its own split.

    Returns the rows written, the files, and notes on categorical cells of a category unseen in
    training and on rows unlike the training rows (:meth:`aepca.preprocessing.Scaler.departure_notes`).
    """
    names = [f"code_{i}" for i in range(model.n_components)]
    return _write(out, model, data, block_rows, names, lambda features: (model.transform(features), {}), overwrite, split)


def reconstruct_file(model, data, out, *, block_rows: int | None = None, overwrite: bool = False,
                     split: str | None = None) -> dict:
    """Write every row's reconstruction (in the data's units) and its error to ``out``.

    ``error`` is the row's mean squared error in the model's error space, the
    usual anomaly score: its mean over a test file is the test MSE that
    ``aepca compare`` reports. A model with categorical columns also writes each one's decoded
    category (a text column of its name, the largest reconstructed indicator's category; in a
    ``.npy`` output, ``NAME-categories.npy`` beside it, a column per categorical column).
    Returns what :func:`encode_file` returns.
    """
    spec = model.column_spec()
    names = [*spec.feature_names, ERROR_COLUMN]

    def reconstruct(features):
        reconstruction, errors = model.reconstruct_with_errors(features)
        return np.column_stack([reconstruction, errors.astype(np.float32)]), spec.decode(reconstruction)

    return _write(out, model, data, block_rows, names, reconstruct, overwrite, split)


class _UnseenCategories:
    """Cells of categorical columns holding a category unseen in training or none (all-zero indicators):
    how many per column, and the first one's row (from 1, in the order read)."""

    def __init__(self, spec):
        self.spec, self.rows, self.counts, self.first = spec, 0, {}, {}

    def add(self, features: np.ndarray) -> None:
        for name, unseen in self.spec.unseen_cells(features).items():
            if unseen.any():
                self.counts[name] = self.counts.get(name, 0) + int(unseen.sum())
                self.first.setdefault(name, self.rows + int(np.argmax(unseen)) + 1)
        self.rows += len(features)

    def notes(self) -> list[str]:
        if not self.counts:
            return []
        where = "; ".join(f"{plural(count, 'cell')} of {describe_names([name])}, first in row {self.first[name]}"
                          for name, count in self.counts.items())
        return [f"{plural(sum(self.counts.values()), 'cell')} held a category unseen in training or none ({where}): "
                "encoded as all-zero indicators, so those rows' codes and reconstructions rest on their other columns."]


def _blocks(source, names, apply, tallies):
    """``(ids, values, text columns, column names, id column name)`` per block of ``source``; ``apply``
    gives the values and text columns (``{name: strings}``) of a block's features, added to each of ``tallies``."""
    for i in range(source.n_blocks):
        features = source.read(i)
        for tally in tallies:
            tally.add(features)
        yield source.ids(i), *apply(features), names, source.id_name


def check_output(out, *, overwrite: bool) -> Path:
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; name a file, e.g. {out / 'codes.parquet'}.")
    beside = next((path for path in _beside_paths(out) if path.is_dir()), None)
    if beside is not None:  # not a file of an earlier output, so never replaced
        raise IsADirectoryError(f"--out {out} writes {beside.name} beside it, and {beside} is a folder; choose another name.")
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise invalid_value(
            "--out",
            f"a file ending in one of {list(OUTPUT_FORMATS)}",
            repr(out.name),
            "Name the output e.g. codes.parquet.",
        )
    taken = next((path for path in (out, *_beside_paths(out)) if path.exists()), None)
    if taken is not None and not overwrite:
        raise FileExistsError(f"--out {taken} already exists; pass --overwrite to replace it, or choose another name.")
    check_can_write(out.parent, f"--out {out}")
    return out


def _write(out, model, data, block_rows, names, apply, overwrite: bool, split: str | None) -> dict:
    """Apply ``apply`` to every block of ``data`` (any input :func:`aepca.open_source` takes, read through
    the model's column specification) and write the results to ``out``."""
    out = check_output(out, overwrite=overwrite)
    spec = model.column_spec()
    source = open_source(data, spec=spec, block_rows=block_rows, split=split)
    moments = RowMoments(source.n_features, shift=getattr(model.scaler_, "mean_", None))
    unseen = _UnseenCategories(spec)
    # Each writer returns the rows and the files it wrote, the output first.
    write = {**dict.fromkeys(WRITES_BESIDE, _write_binary), ".h5": _write_hdf5, ".hdf5": _write_hdf5,
             ".csv": _write_text, ".tsv": _write_text, ".jsonl": _write_text, ".xlsx": _write_excel}.get(
                 out.suffix.lower(), _write_table)
    staging = staging_folder(out)
    try:
        rows, files = write(staging / out.name, _blocks(source, names, apply, (moments, unseen)))
        # The files beside an output belong to it: the earlier output and those of its files the new one does
        # not write go first, the new output's own last, so that at no moment are codes beside ids of other rows.
        beside = _beside_paths(out)
        if beside:
            for stale in {out, *beside} - {out.parent / file.name for file in files[1:]}:
                remove(stale)
        for file in files[::-1]:
            os.replace(staging / file.name, out.parent / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"rows": rows, "files": [str(out.parent / file.name) for file in files],
            "notes": unseen.notes() + model.scaler_.departure_notes(moments)}


def _write_table(path: Path, blocks) -> tuple[int, list[Path]]:
    """A table a block at a time: Parquet, an Arrow stream (``.arrow``, as Hugging Face datasets read
    them) or the Arrow file format (``.feather``, Feather v2)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    opener = {".parquet": pq.ParquetWriter, ".arrow": pa.ipc.new_stream, ".feather": pa.ipc.new_file}[path.suffix.lower()]
    writer, rows = None, 0
    try:
        for ids, values, text, columns, id_name in blocks:
            arrays = [pa.array(values[:, i]) for i in range(values.shape[1])]
            arrays += [pa.array(cells, type=pa.string()) for cells in text.values()]
            names = [*columns, *text]
            if ids is not None:
                arrays.insert(0, pa.array(ids))
                names.insert(0, id_name)
            table = pa.table(arrays, names=names)
            writer = writer or opener(str(path), table.schema)
            writer.write_table(table)
            rows += len(values)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise _no_rows()
    return rows, [path]


def _write_text(path: Path, blocks) -> tuple[int, list[Path]]:
    """Comma-separated values, tab-separated for a ``.tsv`` file, or JSON Lines (as they are read)."""
    import pandas as pd

    rows = 0
    with open(path, "w", newline="") as handle:
        for ids, values, text, columns, id_name in blocks:
            frame = pd.DataFrame(values, columns=columns)
            for name, cells in text.items():
                frame[name] = cells
            if ids is not None:
                frame.insert(0, id_name, ids)
            if path.suffix.lower() == ".jsonl":
                # pandas' most decimals: float32 values exact down to 1e-6, within 5e-16 below it.
                frame.to_json(handle, orient="records", lines=True, double_precision=15)
            else:
                frame.to_csv(handle, sep="\t" if path.suffix.lower() == ".tsv" else ",", header=rows == 0, index=False)
            rows += len(values)
    return rows, [path]


def _write_excel(path: Path, blocks) -> tuple[int, list[Path]]:
    """An Excel workbook of one sheet, appended a block at a time by openpyxl's write-only mode; more rows
    than a sheet holds are refused."""
    from aepca.data.formats import needs

    openpyxl = needs("openpyxl", "openpyxl", "Writing an Excel workbook", "'aepca[excel]'")
    book = openpyxl.Workbook(write_only=True)
    sheet, rows = book.create_sheet(path.stem[:31]), 0  # Excel's longest sheet name
    for ids, values, text, columns, id_name in blocks:
        if rows + len(values) >= EXCEL_MAX_ROWS:
            raise invalid_value("--out", f"at most {EXCEL_MAX_ROWS - 1} rows for an Excel sheet",
                                f"{path.name} for more rows", "Write .parquet or .csv instead.")
        if not rows:
            sheet.append([*([id_name] if ids is not None else []), *columns, *text])
        lead = [[cell] for cell in np.asarray(ids).tolist()] if ids is not None else [[]] * len(values)
        words = list(zip(*(np.asarray(cells).tolist() for cells in text.values()))) if text else [()] * len(values)
        for first, numbers, last in zip(lead, values.tolist(), words):
            sheet.append([*first, *numbers, *last])
        rows += len(values)
    if not rows:
        raise _no_rows()
    book.save(path)
    return rows, [path]


def _beside_paths(out: Path) -> list[Path]:
    """The files an output ``out`` may write beside it (:class:`_Beside`)."""
    if out.suffix.lower() not in WRITES_BESIDE:
        return []
    return [out.with_name(f"{out.stem}-{kind}.npy") for kind in BESIDE_KINDS]


def _text_array(text: dict) -> np.ndarray:
    """A block's text columns (``{name: strings}``) as one array of strings, a column each."""
    return np.column_stack(list(text.values())).astype(str)


def _no_rows() -> ValueError:
    return ValueError("The data file has no rows; there is nothing to write.")


class _Beside:
    """The ids and text columns of a binary output's rows, gathered block by block and written beside
    it: ids as ``NAME-ids.npy``, text columns as ``NAME-categories.npy`` (a column each)."""

    def __init__(self):
        self.parts = {kind: [] for kind in BESIDE_KINDS}

    def values(self, blocks):
        """Each block's values as float32, its ids and text columns kept."""
        for ids, values, text, _, _ in blocks:
            if ids is not None:
                self.parts["ids"].append(ids)
            if text:
                self.parts["categories"].append(_text_array(text))
            yield np.ascontiguousarray(values, dtype=np.float32)

    def write(self, path: Path) -> list[Path]:
        files = []
        for file, parts in zip(_beside_paths(path), self.parts.values()):
            if parts:
                column = np.concatenate(parts)
                np.save(file, column.astype(str) if column.dtype == object else column, allow_pickle=False)
                files.append(file)
        return files


def _binary_header(suffix: str, rows: int, width: int) -> bytes:
    """A binary output's header: NumPy's (whose room for the row count takes any count, so the header is
    rewritten in place once the count is known), ``.fbin``'s row count and length (two uint32), or none
    (``.fvecs``: each row carries its length)."""
    if suffix == ".npy":
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (rows, width)})
        return header.getvalue()
    return np.array([rows, width], "<u4").tobytes() if suffix == ".fbin" else b""


def _write_binary(path: Path, blocks) -> tuple[int, list[Path]]:
    """Float32 rows (little-endian) in one file, a block at a time: a ``.npy`` array, or vectors as FAISS
    and the ANN benchmarks read them, ``.fvecs`` (each row its length, an int32, then its values) or
    ``.fbin``; its header written again with the row count at the end; ids and text columns beside it
    (:class:`_Beside`)."""
    suffix, beside, rows, width = path.suffix.lower(), _Beside(), 0, None
    with open(path, "wb") as handle:
        for values in beside.values(blocks):
            if width is None:
                width = values.shape[1]
                handle.write(_binary_header(suffix, 0, width))
            rows, values = rows + len(values), values.astype("<f4", copy=False)
            if suffix == ".fvecs":
                values = np.column_stack([np.full((len(values), 1), width, "<i4").view("<f4"), values])
            handle.write(values.tobytes())
        if width is None:
            raise _no_rows()
        handle.seek(0)
        handle.write(_binary_header(suffix, rows, width))
    return rows, [path, *beside.write(path)]


def _write_hdf5(path: Path, blocks) -> tuple[int, list[Path]]:
    """One HDF5 file (h5py), grown a block at a time: the values as dataset ``x`` (the name
    ``open_source`` reads back), their column names in its attribute ``columns``; the ids as ``ids``
    (the id column's name in its attribute ``name``) and the text columns as ``categories``."""
    import h5py

    rows = 0
    with h5py.File(path, "w") as file:
        for ids, values, text, columns, id_name in blocks:
            arrays = {"x": (np.asarray(values, np.float32), {"columns": list(columns)})}
            if ids is not None:
                arrays["ids"] = (ids.astype(str) if ids.dtype == object else ids, {"name": id_name})
            if text:
                arrays["categories"] = (_text_array(text), {"columns": list(text)})
            for name, (array, attributes) in arrays.items():
                strings = array.dtype.kind == "U"
                if name not in file:
                    # Chunks of whole rows, about HDF5_CHUNK_BYTES each: rows are read back a block at a time.
                    rows_per_chunk = max(1, HDF5_CHUNK_BYTES // max(1, array[:1].nbytes))
                    dataset = file.create_dataset(name, (0, *array.shape[1:]), h5py.string_dtype() if strings else array.dtype,
                                                  maxshape=(None, *array.shape[1:]), chunks=(rows_per_chunk, *array.shape[1:]))
                    dataset.attrs.update(attributes)
                dataset = file[name]
                dataset.resize(rows + len(array), axis=0)
                dataset[rows:] = array.astype(object) if strings else array
            rows += len(values)
    if not rows:
        raise _no_rows()
    return rows, [path]
