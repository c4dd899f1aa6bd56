import bz2
import json
import gzip
import io
import lzma
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aepca.data import Dataset, load_user_data, open_source, read_table
from aepca.data.columns import ColumnSpec
from aepca.data.order import TEST_SALT, held_out_mask
from conftest import float_tolerance

RNG = np.random.default_rng(0)
FRAME = pd.DataFrame(
    {"a": [1.0, 2.0, 3.0, 4.0, 5.0], "b": [0, 1, 0, 1, 1], "label": ["x", "y", "x", "y", "x"]}
)


def write(path: Path, content) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, pd.DataFrame):
        {".csv": lambda: content.to_csv(path, index=False), ".feather": lambda: content.to_feather(path),
         ".jsonl": lambda: content.to_json(path, orient="records", lines=True),
         ".arrow": lambda: _arrow_stream(path, pa.Table.from_pandas(content, preserve_index=False))}.get(
            path.suffix, lambda: content.to_parquet(path))()
    elif isinstance(content, dict):
        np.savez(path, **content)
    else:
        np.save(path, content)
    return path


def _arrow_stream(path: Path, table, batch_rows=2) -> None:
    """``table`` as an Arrow IPC stream of ``batch_rows``-row record batches (as Hugging Face datasets save)."""
    with pa.OSFile(str(path), "wb") as file, pa.ipc.new_stream(file, table.schema) as stream:
        stream.write_table(table, max_chunksize=batch_rows)


def _changing_dictionaries() -> bytes:
    """An Arrow stream whose second batch brings new categories: a dictionary message between batches."""
    batches = [pa.record_batch({"a": [1.0, 2.0], "c": pa.array(values).dictionary_encode()})
               for values in (["x", "y"], ["z", "x"])]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batches[0].schema, options=pa.ipc.IpcWriteOptions(emit_dictionary_deltas=True)) as stream:
        for batch in batches:
            stream.write_batch(batch)
    return sink.getvalue().to_pybytes()


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _zip_of(**members) -> bytes:
    """A .zip archive of the CSV files ``name.csv`` holding each member's text (dated, so that its bytes, in a
    test's id, are the same whenever the tests are collected)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            archive.writestr(zipfile.ZipInfo(f"{name}.csv", date_time=(2026, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()


COMPRESS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress, ".zip": lambda data: _zip_of(d=data)}


def vectors_bytes(rows: np.ndarray, suffix: str) -> bytes:
    """``rows`` as a file of vectors: each row its length (int32) first (.fvecs, .bvecs), or the file its
    row count and length (.fbin, .u8bin, .i8bin)."""
    n, d = rows.shape
    if suffix in (".fvecs", ".bvecs"):
        return b"".join(np.int32(d).tobytes() + row.tobytes() for row in rows)
    return np.array([n, d], np.int32).tobytes() + rows.tobytes()


VECTOR_TYPES = {".fvecs": np.float32, ".bvecs": np.uint8, ".fbin": np.float32, ".u8bin": np.uint8, ".i8bin": np.int8}


def hdf5_bytes(**datasets) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        for name, values in datasets.items():
            file[name] = values
    return buffer.getvalue()


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# --- good files -------------------------------------------------------------------------------------


def test_csv_with_label_column(tmp_path):
    table = read_table(write(tmp_path / "d.csv", FRAME), label_column="label")
    assert table.features.dtype == np.float32 and table.features.shape == (5, 2)
    assert table.feature_names == ("a", "b")
    assert list(table.labels) == ["x", "y", "x", "y", "x"]
    np.testing.assert_array_equal(table.features[:, 0], FRAME["a"])


def test_spaces_after_the_commas_are_not_part_of_names_or_values(tmp_path):
    table = read_table(write(tmp_path / "d.csv", "a, b, label\n1.5, 2, x\n3, 4, y\n5, 6, x\n"), label_column="label")
    assert table.feature_names == ("a", "b") and list(table.labels) == ["x", "y", "x"]
    np.testing.assert_array_equal(table.features, [[1.5, 2], [3, 4], [5, 6]])


@pytest.mark.parametrize("suffix", list(COMPRESS))
def test_a_compressed_csv_gives_the_rows_of_the_csv(tmp_path, suffix):
    """Read whole and a block at a time, from its text decompressed once into a temporary file."""
    text = "a;b;label\n" + "".join(f"{i},5;{i % 7};{'xy'[i % 2]}\n" for i in range(50))  # decimal commas too
    plain = read_table(write(tmp_path / "d.csv", text), label_column="label")
    packed = tmp_path / f"d.csv{suffix}"
    packed.write_bytes(COMPRESS[suffix](text.encode()))
    table = read_table(packed, label_column="label")
    np.testing.assert_array_equal(table.features, plain.features)
    assert list(table.labels) == list(plain.labels) and table.feature_names == plain.feature_names
    source = open_source(packed, label_columns="label", block_rows=16)
    np.testing.assert_array_equal(np.concatenate([source.read(k) for k in range(source.n_blocks)]), plain.features)


@pytest.mark.parametrize("name", ["d.parquet", "d.feather", "d.arrow", "d.jsonl"])
def test_parquet_arrow_and_json_lines_files_match_csv(tmp_path, name):
    table = read_table(write(tmp_path / name, FRAME), label_column="label")
    csv = read_table(write(tmp_path / "d.csv", FRAME), label_column="label")
    np.testing.assert_array_equal(table.features, csv.features)
    assert table.feature_names == csv.feature_names == ("a", "b")
    assert list(table.labels) == list(csv.labels)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_json_lines_read_lists_absent_keys_and_blank_lines_alike_whole_and_in_blocks(tmp_path, suffix):
    """An embedding store's lines: an id, a list column, a key absent from some lines (a missing value)."""
    lines = [f'{{"id": "doc{i}", "emb": [{i}, {i % 3}.5], "w": {i % 4}}}' if i % 5 else f'{{"id": "doc{i}", "emb": [{i}, 0]}}'
             for i in range(40)]
    text = "\n".join(lines[:20]) + "\n\n  \n" + "\n".join(lines[20:]) + "\n"
    path = tmp_path / f"d.jsonl{suffix}"
    path.write_bytes(gzip.compress(text.encode(), mtime=0) if suffix else text.encode())
    expected = np.array([[i, i % 3 + 0.5, i % 4] if i % 5 else [i, 0, np.nan] for i in range(40)], np.float32)
    table = read_table(path, id_column="id", impute="mean")
    assert table.feature_names == ("emb[0]", "emb[1]", "w") and list(table.ids) == [f"doc{i}" for i in range(40)]
    np.testing.assert_array_equal(table.features[:, :2], expected[:, :2])
    source = open_source(path, id_column="id", drop_columns="w", block_rows=16)
    assert list(source.block_sizes) == [16, 16, 8]
    np.testing.assert_array_equal(np.concatenate([source.read(k) for k in range(source.n_blocks)]), expected[:, :2])
    # A key absent from every line of a block is missing there too (streamed rows are read as they are).
    with pytest.raises(ValueError, match=r"\(rows 1-1\) holds 1 missing, infinite or huge value .* column 'w'"):
        open_source(path, id_column="id", block_rows=1).read(0)


@pytest.mark.parametrize("suffix", list(VECTOR_TYPES))
def test_files_of_vectors_read_their_rows_whole_and_in_blocks(tmp_path, suffix):
    rows = (RNG.standard_normal((50, 7)) * 40).clip(-128, 127).astype(VECTOR_TYPES[suffix])
    path = write(tmp_path / f"v{suffix}", vectors_bytes(rows, suffix))
    table = read_table(path)
    assert table.feature_names == tuple(f"x{i}" for i in range(7))
    np.testing.assert_array_equal(table.features, rows.astype(np.float32))
    source = open_source(path, block_rows=16)
    np.testing.assert_array_equal(np.concatenate([source.read(k) for k in range(source.n_blocks)]), rows.astype(np.float32))


def test_an_arrow_stream_of_categorical_labels_reads_them(tmp_path):
    """Categories written as an Arrow stream are dictionary-encoded: the dictionary precedes the batches."""
    frame = FRAME.assign(label=pd.Categorical(FRAME["label"]))
    table = read_table(write(tmp_path / "d.arrow", frame), label_column="label")
    np.testing.assert_array_equal(table.features, FRAME[["a", "b"]].to_numpy(np.float32))
    assert list(table.labels) == list(FRAME["label"])
    blocks = open_source(tmp_path / "d.arrow", label_column="label", block_rows=2)
    assert [len(block) for block in blocks.iter_blocks()] == [2] * (len(FRAME) // 2) + [1] * (len(FRAME) % 2)


@pytest.mark.parametrize("x_name, y_name", [("x", "y"), ("X", "y"), ("X", "Y"), ("features", None)])
def test_npz_arrays(tmp_path, x_name, y_name):
    x = RNG.standard_normal((6, 3))
    arrays = {x_name: x} | ({y_name: np.arange(6).reshape(6, 1)} if y_name else {})
    table = read_table(write(tmp_path / "d.npz", arrays))
    np.testing.assert_allclose(table.features, x.astype(np.float32), rtol=float_tolerance(np.float32))  # read as float32
    assert table.feature_names == ("x0", "x1", "x2")
    if y_name:
        np.testing.assert_array_equal(table.labels, np.arange(6))
    else:
        assert table.labels is None


def test_an_npz_holding_its_own_split_gives_compare_that_split_and_is_refused_elsewhere(tmp_path):
    """Keras' mnist.npz layout: x_train, y_train, x_test, y_test (images of 4 x 3)."""
    x_train, x_test = RNG.uniform(size=(6, 4, 3)), RNG.uniform(size=(4, 4, 3))
    path = write(tmp_path / "split.npz", {"x_train": x_train, "y_train": np.arange(6), "x_test": x_test,
                                          "y_test": np.arange(4) + 10})
    data = load_user_data(path)  # the archive's split (a test_size with it is refused: test_compare)
    np.testing.assert_array_equal(data.x_train, x_train.reshape(6, 12).astype(np.float32))
    np.testing.assert_array_equal(data.x_test, x_test.reshape(4, 12).astype(np.float32))
    assert list(data.y_test) == [10, 11, 12, 13] and data.image_shape == (4, 3) and data.name == "split.npz"
    for read in (lambda: load_user_data(path, test=path), lambda: open_source(path)):
        with pytest.raises(ValueError, match=r"holds a train/test split .* compare and sweep take it as their split"):
            read()


@pytest.mark.parametrize("labels", [None, "y"])
def test_an_hdf5_dataset_of_rows_is_read_whole_and_in_blocks_with_its_labels(tmp_path, labels):
    rows = RNG.standard_normal((40, 5)).astype(np.float32)
    datasets = {"x": rows, "y": np.arange(40) % 3, "other": np.ones(2)} if labels else {"data/embeddings": rows}
    path = write(tmp_path / "d.h5", hdf5_bytes(**datasets))
    table = read_table(path)
    np.testing.assert_array_equal(table.features, rows)
    assert table.labels is None if labels is None else list(table.labels) == list(np.arange(40) % 3)
    source = open_source(path, block_rows=16)
    np.testing.assert_array_equal(np.concatenate([source.read(k) for k in range(source.n_blocks)]), rows)


def test_a_folder_of_hdf5_parts_reads_as_their_rows_in_order(tmp_path):
    rows = RNG.standard_normal((30, 3)).astype(np.float32)
    (tmp_path / "parts").mkdir()
    for k, part in enumerate(np.array_split(rows, 3)):
        write(tmp_path / "parts" / f"part-{k}.h5", hdf5_bytes(x=part))
    np.testing.assert_array_equal(open_source(tmp_path / "parts").to_array(), rows)


def test_an_hdf5_file_of_the_ann_benchmarks_gives_compare_its_train_and_test_split(tmp_path):
    train, test = RNG.standard_normal((30, 4)).astype(np.float32), RNG.standard_normal((10, 4)).astype(np.float32)
    content = io.BytesIO(hdf5_bytes(train=train, test=test, neighbors=np.zeros((10, 3), np.int32)))
    with h5py.File(content, "a") as file:
        file.attrs["distance"] = "angular"
    path = write(tmp_path / "glove.hdf5", content.getvalue())
    data = load_user_data(path)
    np.testing.assert_array_equal(data.x_train, train)
    np.testing.assert_array_equal(data.x_test, test)
    assert data.notes["distance"] == "angular"  # the metric the neighbours' "auto" takes
    with pytest.raises(ValueError, match=r"holds a train/test split \('train', 'test'\), expected one set of rows"):
        open_source(path)


def test_npy_images_keep_their_shape_until_a_column_is_dropped(tmp_path):
    images = RNG.uniform(size=(5, 4, 3)).astype(np.float32)
    table = read_table(write(tmp_path / "d.npy", images))
    assert table.image_shape == (4, 3) and table.features.shape == (5, 12)
    images[:, 0, 0] = 0.0
    dropped = read_table(write(tmp_path / "d.npy", images), drop_constant=True)
    assert dropped.image_shape is None and dropped.features.shape == (5, 11)
    assert "x0" not in dropped.feature_names


@pytest.mark.parametrize(("channels", "expected"), [(3, (4, 2, 3)), (1, (4, 2, 1)), (2, None)])
def test_npz_images_with_channels_keep_their_shape(tmp_path, channels, expected):
    images = np.random.default_rng(1).uniform(size=(5, 4, 2, channels))
    table = read_table(write(tmp_path / "d.npz", {"x": images, "y": np.arange(5)}))
    assert table.image_shape == expected and table.features.shape == (5, 8 * channels)


def test_explicit_image_shape_overrides_the_array_shape(tmp_path):
    images = np.random.default_rng(2).uniform(size=(5, 4, 3))
    table = read_table(write(tmp_path / "d.npy", images), image_shape=(3, 4))
    assert table.image_shape == (3, 4)


def test_flat_rows_with_a_label_column_keep_an_explicit_image_shape(tmp_path):
    # Like scikit-learn's digits as a CSV: a label column plus the pixel columns.
    pixels = np.random.default_rng(3).integers(0, 17, size=(10, 6))
    frame = pd.DataFrame(pixels, columns=[f"p{i}" for i in range(6)]).assign(label=np.arange(10) % 3)
    path = write(tmp_path / "d.csv", frame)
    assert read_table(path, label_column="label", image_shape=(2, 3)).image_shape == (2, 3)
    data = load_user_data(path, label_column="label", image_shape=[3, 2])
    assert data.image_shape == (3, 2) and data.x_train.shape[1] == 6 and len(data.x_train) + len(data.x_test) == 10
    assert read_table(path, label_column="label").image_shape is None


def test_constant_columns_are_kept_and_counted(tmp_path):
    # Column a is not in order: 0..9 in order would be a row id, which is refused.
    path = write(tmp_path / "d.csv", "a,b,c,d\n" + "".join(f"{i * 3 % 10},0,{i * i % 7},7\n" for i in range(10)))
    table = read_table(path)
    assert table.feature_names == ("a", "b", "c", "d")
    np.testing.assert_array_equal(table.features[:, 1], 0.0)
    data = load_user_data(path)
    assert data.feature_names == ("a", "b", "c", "d") and data.notes["constant_columns"] == 2
    dropped = load_user_data(path, drop_constant=True)
    assert dropped.feature_names == ("a", "c") and dropped.notes["dropped_constant_columns"] == ["b", "d"]
    assert "constant_columns" not in dropped.notes
    assert "constant_columns" not in load_user_data(write(tmp_path / "ten.csv", TEN)).notes


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet", ".npy", ".npz"])
def test_column_options_read_every_format_alike(tmp_path, suffix):
    frame = pd.DataFrame({"key": [7, 3, 9, 1, 5], "a": [0.5, 1.5, 2.0, 3.5, 1.0], "b": [4, 2, 2, 1, 3],
                          "c": [9.0, 8.5, 7.0, 1.5, 2.5], "kind": ["x", "y", "x", "y", "z"]})
    path = tmp_path / f"d{suffix}"
    if suffix in (".csv", ".tsv"):
        frame.to_csv(path, index=False, sep="," if suffix == ".csv" else "\t")
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        records = frame.to_records(index=False).astype([("key", "i8"), ("a", "f8"), ("b", "i8"), ("c", "f8"), ("kind", "U1")])
        np.save(path, records) if suffix == ".npy" else np.savez(path, x=records)
    table = read_table(path, id_column="key", label_column="kind", drop_columns=["c"])
    assert table.feature_names == ("a", "b") and table.columns.dropped_columns == ("c",)
    np.testing.assert_array_equal(table.features, frame[["a", "b"]].to_numpy(np.float32))
    np.testing.assert_array_equal(table.ids, frame["key"])
    np.testing.assert_array_equal(table.labels, frame["kind"])


def test_structured_npy_uses_field_names(tmp_path):
    array = np.array([(1.0, 2), (3.0, 4), (5.0, 7)], dtype=[("height", "f8"), ("count", "i4")])
    table = read_table(write(tmp_path / "d.npy", array))
    assert table.feature_names == ("height", "count")


def test_impute_mean_and_drop_constant(tmp_path):
    path = write(tmp_path / "d.csv", "a,b,c\n1,5,1\n,6,1\n3,,1\n")
    table = read_table(path, impute="mean", drop_constant=True)
    assert table.feature_names == ("a", "b")
    np.testing.assert_array_equal(table.features, [[1, 5], [2, 6], [3, 5.5]])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_codes_of_missing_values_are_read_as_missing_whole_by_blocks_and_by_a_saved_spec(tmp_path, suffix):
    frame = pd.DataFrame({"a": ["1", "?", "3", "4", "-", "6"], "b": [5.0, 6.0, 7.0, 8.0, 9.0, 1.0],
                          "team": ["x", "?", "y", "x", "y", "x"]})
    path = write(tmp_path / f"d{suffix}", frame)
    with pytest.raises(ValueError, match=r"'a' holds '\?'\)\. If '\?' marks a missing value, compare and sweep read it so "
                                         r"with --na-values '\?' \(na_values=\) and fill it with --impute mean; a model "
                                         r"trained so reads new rows the same way\."):
        read_table(path, drop_columns="team")
    table = read_table(path, na_values=["?", "-"], impute="mean", categorical="onehot")
    assert table.feature_names == ("a", "b", "team=x", "team=y")  # '?' no category: all-zero indicators
    np.testing.assert_array_equal(table.features[:, 0], [1, 3.5, 3, 4, 3.5, 6])
    np.testing.assert_array_equal(table.features[1, 2:], [0, 0])
    source = open_source(path, na_values=["?", "-"], categorical="onehot", block_rows=2)
    assert source.columns.categories == {"team": ("x", "y")}
    spec = ColumnSpec.from_dict(json.loads(json.dumps(table.columns.to_dict())))  # as a saved model has it
    assert spec.na_values == ("?", "-")
    np.testing.assert_array_equal(open_source(path, spec=spec, block_rows=4).to_array(), table.features)


def test_impute_mean_reads_boolean_columns_as_zeros_and_ones(tmp_path):
    path = write(tmp_path / "d.csv", "a,b\nTrue,False\nFalse,True\nTrue,True\n")
    table = read_table(path, impute="mean")
    np.testing.assert_array_equal(table.features, [[1, 0], [0, 1], [1, 1]])


# --- bad files --------------------------------------------------------------------------------------

BAD_FILES = [
    ("d.ods", "a,b\n1,2\n", {}, ValueError, r"Received: 'd\.ods'\. Save the sheet as \.xlsx \(the Excel workbook format read here\) or as CSV\."),
    ("d.xls", "a,b\n1,2\n", {}, ValueError,
     r"expected one of \['\.arrow', '\.csv', '\.dat', '\.feather', '\.h5', '\.hdf5', '\.ipc', '\.jsonl', '\.ndjson', '\.npy', '\.npz', '\.parquet', '\.tsv', '\.txt', '\.xlsx', '\.xlsm', '\.fvecs', '\.bvecs', '\.fbin', '\.u8bin', '\.i8bin'\] or an image's \(\.bmp.*\)\. Received: 'd\.xls'"),
    ("d.csv.zst", b"\x28\xb5\x2f\xfd", {}, ValueError,
     r"Received: 'd\.csv\.zst'\. Files are read .* decompress first \(unzstd d\.csv\.zst\) or save as Parquet"),
    ("d.npy.gz", gzip.compress(npy_bytes(np.ones((3, 2))), mtime=0), {}, ValueError,  # dated: ids equal on every worker
     r"Received: 'd\.npy\.gz'\. .*decompress first \(gunzip -k d\.npy\.gz\)"),
    ("d.csv.gz", b"\x1f\x8b\x08\x00", {}, ValueError,
     r"d\.csv\.gz is not a readable \.gz-compressed file \(.*\); it may be truncated or corrupt\. Check the file, or "
     r"decompress it yourself \(gunzip -k d\.csv\.gz\)\."),
    ("d.csv.zip", _zip_of(a="a,b\n1,2\n", b="a,b\n3,4\n"), {}, ValueError,
     r"d\.csv\.zip holds 2 files, expected one data file\. Unzip it"),
    ("d.csv", b"", {}, ValueError, r"d\.csv is empty \(0 bytes\)"),
    ("d.h5", "not an HDF5 file", {}, ValueError, r"d\.h5 is not a readable HDF5 file \(.*signature not found\)"),
    ("d.h5", npz_bytes(), {}, ValueError, r"d\.h5 is not a readable HDF5 file"),
    ("d.h5", hdf5_bytes(a=np.ones((3, 2)), b=np.ones((3, 2))), {}, ValueError,
     r"d\.h5 holds arrays \['a', 'b'\], expected a single array or arrays named 'x' \(features\) and optionally 'y' "
     r"\(labels\)\. Write the rows as one dataset named 'x'"),
    ("d.h5", hdf5_bytes(x=np.array([b"a", b"b"])), {}, ValueError, r"d\.h5: dataset 'x' holds \|S1 values, expected numbers\."),
    ("d.fvecs", vectors_bytes(np.ones((4, 3), np.float32), ".fvecs")[:-2], {}, ValueError,
     r"d\.fvecs holds 62 bytes, not a whole number of rows of 3 values \(16 bytes each\)\. It may be truncated"),
    ("d.fbin", vectors_bytes(np.ones((4, 3), np.float32), ".fbin")[:-4], {}, ValueError,
     r"d\.fbin holds 52 bytes, not a whole number of rows of 3 values \(12 bytes each after an 8-byte header\)"),
    ("d.fvecs", vectors_bytes(np.ones((4, 3), np.float32), ".fvecs")[:16] + vectors_bytes(np.ones((3, 2), np.float32), ".fvecs")[:-4],
     {}, ValueError, r"d\.fvecs: row 2 says it holds 2 values, the first row 3; every row must hold as many\."),
    ("d.fvecs", b"abcd", {}, ValueError, r"d\.fvecs is not a readable \.fvecs file: its header says 1684234849 values a row, "
     r"in a file of 4 bytes\."),
    ("d.jsonl", '{"a": 1, "b": 2}\n{"a": 3, "b": \n', {}, ValueError,
     r"d\.jsonl is not a readable JSON Lines file \(JSON parse error: .*\); it may be truncated or corrupt\. "
     r"Write one JSON object per line, e\.g\. \{\"id\": 7, \"embedding\": \[0\.1, 0\.2\]\}\.$"),
    ("d.jsonl", "[1, 2]\n[3, 4]\n[5, 6]\n", {}, ValueError, r"d\.jsonl is not a readable JSON Lines file .* Write one JSON object per line"),
    ("d.jsonl", "\n \n", {}, ValueError, r"d\.jsonl holds no JSON objects\. Write one JSON object per line"),
    ("d.csv", "\n\n", {}, ValueError, r"no header row"),
    ("d.csv", "a,b\n", {}, ValueError, r"has 0 rows, expected at least 3"),
    ("d.csv", "a,b\n1,2\n3,4\n", {}, ValueError, r"has 2 rows, expected at least 3"),
    ("d.csv", b"\x7fELF\x02\x01\x00\x81binary", {}, ValueError, r"not a readable CSV file \(it holds NUL bytes"),
    ("d.csv", "a,b\n1,2\n3,4\n5,6\n".encode("utf-16"), {}, ValueError, r"d\.csv is UTF-16 text, .* Re-save it as UTF-8"),
    ("d.csv", "a,city\n1,Paris\n2,Rome\n3,Oslo\n", {}, ValueError,
     r"non-numeric columns 'city' \(e\.g\. 'city' holds 'Paris'\).*--label-column"),
    ("d.csv", "a,b,c\n1,,3\n4,5,\n7,8,9\n", {}, ValueError,
     r"2 missing values .* in columns 'b', 'c'.*--impute mean"),
    ("d.csv", "a,b\n1,1\n1,1\n1,1\n", {}, ValueError, r"Every feature column of d\.csv is constant"),
    ("d.csv", "a,b\n1,1\n1,1\n1,1\n", {"drop_constant": True}, ValueError, r"Every feature column .* is constant"),
    ("d.csv", "a,b,c,d\n1,2,3,4\n5,6,7,8\n9,1,2,3\n", {"image_shape": (2, 3)}, ValueError,
     r"image_shape, expected dimensions whose product is the 4 feature columns of d\.csv\. "
     r"Received: image_shape=\(2, 3\)\. Pass the shape of one image"),
    ("d.csv", "a,b,c,d\n1,2,3,0\n5,6,7,0\n9,1,2,0\n", {"image_shape": (2, 2), "drop_constant": True}, ValueError,
     r"product is the 3 feature columns of d\.csv left after dropping 1 constant column\. "
     r"Received: image_shape=\(2, 2\)\. Keep the constant columns"),
    ("d.csv", "a,b,c,d\n1,2,3,4\n5,6,7,8\n9,1,2,3\n", {"image_shape": (2, 0)}, ValueError,
     r"image_shape, expected \(height, width\) or \(height, width, channels\) of positive integers.*"
     r"Received: image_shape=\(2, 0\)"),
    ("d.csv", "a,b,c,d\n1,2,3,4\n5,6,7,8\n9,1,2,3\n", {"image_shape": (1, 2, 2)}, ValueError,
     r"channels in \(1, 3, 4\)\. Received: image_shape=\(1, 2, 2\)"),
    ("d.csv", "a,b,c,d\n1,2,3,4\n5,6,7,8\n9,1,2,3\n", {"image_shape": "2x2"}, ValueError,
     r"Received: image_shape='2x2'"),
    ("d.csv", "a,b\n1,\n2,\n3,\n", {"impute": "mean"}, ValueError,
     r"no values at all: 'b'\. Leave them out with --drop-columns b \(drop_columns=\)"),
    # A trailing delimiter: an unnamed column, empty in every row, to leave out rather than fill.
    ("d.csv", "a,b,\n1,2,\n3,4,\n5,7,\n", {}, ValueError,
     r"no values at all: 'Unnamed: 2'\. Leave them out with --drop-columns 'Unnamed: 2' \(drop_columns=\)\.$"),
    ("d.csv", "a,b\n1,2\n3,4\n5,6\n", {"label_column": "lbl"}, ValueError,
     r"expected one of the columns of d\.csv: 'a', 'b'\. Received: label_column='lbl'"),
    ("d.csv", "lbl\n1\n2\n3\n", {"label_column": "lbl"}, ValueError, r"no feature columns"),
    ("d.csv", "a,b\n1,2\n3,inf\n5,6\n", {}, ValueError, r"1 infinite value in columns 'b'\. Before fitting, replace"),
    ("d.csv", "a,b\n1,2\n3,1e30\n5,6\n", {}, ValueError, r"values up to 1e\+30 in columns 'b'.*Rescale"),
    # Values whose mean overflows float64: refused for their size, not as missing once imputed.
    ("d.csv", "a,b\n1,1e308\n3,1e308\n5,\n", {"impute": "mean"}, ValueError, r"values up to 1e\+308 in columns 'b'.*Rescale"),
    ("d.csv", "a,b\n1,2\n3,4\n5,6\n", {"impute": "median"}, ValueError, r"expected one of \[None, 'mean'\].*'median'"),
    ("d.npy", npy_bytes(np.arange(6.0))[:-8], {}, ValueError, r"not a readable \.npy file.*truncated or corrupt"),
    ("d.npy", b"not numpy at all", {}, ValueError, r"not a readable \.npy file"),
    ("d.npy", npy_bytes(np.array([[1, "a"]] * 3, dtype=object)), {}, ValueError,
     r"d\.npy holds Python objects \(dtype object\), expected numbers .* e\.g\. array\.astype\(float\)\.$"),
    ("d.npz", npz_bytes(x=np.array([[1, "a"]] * 3, dtype=object)), {}, ValueError,
     r"d\.npz holds Python objects \(dtype object\), expected numbers"),
    ("d.npy", npz_bytes(x=np.ones((3, 2))), {}, ValueError, r"is a \.npz archive, not a \.npy array\. Rename it to end in \.npz\."),
    ("d.npy", npy_bytes(np.arange(5.0)), {}, ValueError, r"shape \(5,\), expected 2-D.*reshape\(-1, 1\)"),
    ("d.npy", npy_bytes(np.array([["a", "b"]] * 3)), {}, ValueError, r"non-numeric columns 'x0', 'x1'"),
    ("d.npz", npz_bytes(x=np.ones((30, 20)))[:-40], {}, ValueError, r"not a readable \.npz file.*truncated"),
    ("d.npz", npz_bytes(a=np.ones((3, 2)), b=np.ones(3)), {}, ValueError,
     r"holds arrays \['a', 'b'\], expected a single array or arrays named 'x'"),
    ("d.npz", npz_bytes(x_train=np.ones((3, 2)), x_test=np.ones((3, 2)), y_train=np.ones(3), y_test=np.ones(3)), {},
     ValueError, r"holds a train/test split \('x_train', 'x_test'\), expected one set of rows: compare and sweep take "
     r"it as their split \(without --test\), but not this\. Name the half to read: aepca encode or reconstruct "
     r"--split train or test; aepca\.open_source\(path, split='test'\) in Python\."),
    ("d.npz", npz_bytes(x=np.ones((3, 2)), y=np.ones(4)), {}, ValueError, r"labels 'y' have shape \(4,\)"),
    ("d.npz", npz_bytes(x=np.arange(6.0).reshape(3, 2), y=np.ones(3)), {"label_column": "x0"}, ValueError,
     r"already holds labels"),
    ("d.npz", npy_bytes(np.ones((3, 2))), {}, ValueError, r"is a \.npy array, not a \.npz archive\. Rename it to end in \.npy\."),
    ("d.parquet", "a,b\n1,2\n", {}, ValueError, r"not a Parquet file.*wrong extension"),
    ("d.parquet", b"PAR1 truncated", {}, ValueError, r"not a Parquet file.*truncated"),
    ("d.parquet", b"PAR1" + b"\x00" * 20 + b"PAR1", {}, ValueError, r"not a readable Parquet file"),
    ("d.arrow", "a,b\n1,2\n", {}, ValueError, r"not a readable Arrow file.*truncated or corrupt"),
    ("d.feather", b"FEA1" + b"\x00" * 20 + b"FEA1", {}, ValueError, r"Feather version 1 file.*Re-save it as version 2"),
    ("d.arrow", _changing_dictionaries(), {}, ValueError,
     r"Arrow stream whose dictionaries change between record batches.*Arrow file format"),
]


@pytest.mark.parametrize(("name", "content", "kwargs", "error", "match"), BAD_FILES)
def test_bad_file(tmp_path, name, content, kwargs, error, match):
    path = write(tmp_path / name, content)
    with pytest.raises(error, match=match) as info:
        read_table(path, **kwargs)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No such file: .*nope\.csv"):
        read_table(tmp_path / "nope.csv")


def test_directory(tmp_path):
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(ValueError, match=r"is a directory"):
        read_table(tmp_path / "d.csv")


def test_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path / "d.csv", FRAME)
    monkeypatch.setattr(os, "access", lambda *args: False)
    with pytest.raises(PermissionError, match=r"permission denied.*chmod"):
        read_table(path)


# --- Excel workbooks ----------------------------------------------------------------------------------


def test_an_excel_workbooks_first_sheet_is_read_as_its_csv_is_with_a_note_on_the_other_sheets(tmp_path):
    frame = pd.DataFrame({"a": RNG.standard_normal(40).round(6), "b": RNG.integers(0, 9, 40), "label": ["x", "y"] * 20})
    with pd.ExcelWriter(tmp_path / "book.xlsx") as book:
        frame.to_excel(book, sheet_name="rows", index=False)
        frame.head(2).to_excel(book, sheet_name="summary", index=False)
    data = load_user_data(tmp_path / "book.xlsx", label_columns="label", test_size=0.25, seed=0)
    expected = load_user_data(write(tmp_path / "book.csv", frame), label_columns="label", test_size=0.25, seed=0)
    np.testing.assert_array_equal(data.x_train, expected.x_train)
    np.testing.assert_array_equal(data.y_test, expected.y_test)
    assert data.feature_names == ("a", "b")
    assert ("read its first sheet, 'rows', of 2 (not read: 'summary'; move the one to read first, or save it as "
            "CSV)") in data.notes["preprocessing"]


def test_an_excel_sheet_of_numbers_alone_has_no_header_row_and_is_sliced_into_blocks(tmp_path):
    rows = RNG.standard_normal((30, 3)).round(6)
    pd.DataFrame(rows).to_excel(tmp_path / "numbers.xlsx", index=False, header=False)
    source = open_source(tmp_path / "numbers.xlsx", block_rows=8)
    assert source.feature_names == ("x0", "x1", "x2") and source.block_sizes.tolist() == [8, 8, 8, 6]
    np.testing.assert_allclose(source.to_array(), rows, rtol=np.finfo(np.float32).eps)


def test_a_table_below_and_right_of_a1_with_numbers_stored_as_text_is_read_as_its_numbers(tmp_path):
    import openpyxl

    values = RNG.standard_normal((12, 2)).round(6)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append([])  # an empty first row, and the table from column B
    sheet.append([None, "a", "b", "team"])
    for (a, b), team in zip(values, "xyz" * 4):
        sheet.append([None, a, str(b), team])  # b's cells hold text, as pasted numbers often are
    book.save(tmp_path / "offset.xlsx")
    data = load_user_data(tmp_path / "offset.xlsx", drop_columns="team", test_size=0.25, seed=0)
    rows = np.concatenate([data.x_train, data.x_test])
    test = held_out_mask(12, 0.25, 0, TEST_SALT)
    np.testing.assert_array_equal(rows, np.concatenate([values[~test], values[test]]).astype(np.float32))
    assert data.notes["preprocessing"][:2] == ["1 empty row above the table skipped (it starts at row 2)",
                                               "numbers stored as text read as numbers in 'b'"]


def test_a_corrupt_workbook_and_one_without_openpyxl_are_refused_with_the_fix(tmp_path, monkeypatch):
    path = write(tmp_path / "d.xlsx", b"not a zip archive")
    with pytest.raises(ValueError, match=r"d\.xlsx is not a readable Excel file .*Re-save it as \.xlsx, or the sheet as CSV"):
        read_table(path)
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    with pytest.raises(ImportError, match=r"Reading d\.xlsx \(an Excel workbook\) needs openpyxl.*'aepca\[excel\]'"):
        read_table(path)


@pytest.mark.parametrize("name", ["d.parquet", "d.feather"])
def test_parquet_and_arrow_without_pyarrow(tmp_path, monkeypatch, name):
    path = write(tmp_path / name, FRAME)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r"pip install 'aepca\[parquet\]'"):
        read_table(path)


# --- property test ----------------------------------------------------------------------------------

cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(2**40), 2**40),
    st.booleans(),
    st.just(""),
    st.text(alphabet="abc", min_size=1, max_size=3),
)


@settings(max_examples=40, deadline=None)
@given(
    columns=st.lists(st.lists(cells, min_size=0, max_size=5), min_size=1, max_size=4),
    n_rows=st.integers(0, 5),
    suffix=st.sampled_from([".csv", ".npy"]),
    impute=st.sampled_from([None, "mean"]),
    drop_constant=st.booleans(),
)
def test_property_clear_error_or_finite_float32(columns, n_rows, suffix, impute, drop_constant):
    data = {f"c{i}": (col * (n_rows // max(len(col), 1) + 1))[:n_rows] if col else [1.5] * n_rows
            for i, col in enumerate(columns)}
    frame = pd.DataFrame(data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"t{suffix}"
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            try:
                array = frame.to_numpy(dtype=np.float64)
            except (ValueError, TypeError):
                array = frame.to_numpy().astype(str)
            np.save(path, array)
        try:
            table = read_table(path, impute=impute, drop_constant=drop_constant)
        except ValueError as err:
            assert "\n" not in str(err) and str(err)
            return
    assert table.features.dtype == np.float32 and table.features.ndim == 2
    assert table.features.shape[0] >= 3 and np.isfinite(table.features).all()
    assert len(table.feature_names) == table.features.shape[1]


# --- load_user_data ---------------------------------------------------------------------------------

TEN = pd.DataFrame({"a": np.arange(10.0), "b": np.arange(10.0) ** 2, "y": np.arange(10) % 3})


FORTY = pd.DataFrame({"a": np.arange(40.0) % 7, "b": np.arange(40.0) ** 2 % 11, "y": np.arange(40) % 3})


def test_split_holds_out_the_rows_the_hash_rule_holds_out(tmp_path):
    path = write(tmp_path / "forty.csv", FORTY)
    data = load_user_data(path, label_column="y", seed=1)
    test = held_out_mask(40, 0.2, 1, TEST_SALT)
    assert isinstance(data, Dataset) and test.sum() == 8
    np.testing.assert_array_equal(data.x_test, FORTY[["a", "b"]].to_numpy(np.float32)[test])
    np.testing.assert_array_equal(data.x_train, FORTY[["a", "b"]].to_numpy(np.float32)[~test])
    np.testing.assert_array_equal(data.y_train, FORTY["y"][~test])
    assert not np.array_equal(data.x_test, load_user_data(path, label_column="y", seed=2).x_test)
    assert data.name == "forty.csv" and data.feature_names == ("a", "b")
    assert data.notes["units"] == "original units of forty.csv"


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npy"])
def test_a_file_read_whole_and_streamed_has_the_same_test_rows(tmp_path, suffix):
    x = np.random.default_rng(4).standard_normal((500, 3)).round(4)
    path = write(tmp_path / f"d{suffix}", x if suffix == ".npy" else pd.DataFrame(x, columns=["a", "b", "c"]))
    data = load_user_data(path, seed=5)
    source = open_source(path, block_rows=64)
    kept, held_out = source.split(0.2, 5, TEST_SALT)
    np.testing.assert_array_equal(data.x_test, held_out.to_array())
    np.testing.assert_array_equal(data.x_train, kept.to_array())


def test_separate_test_file_learns_cleaning_on_train_only(tmp_path):
    train = write(tmp_path / "train.csv", "a,b,c\n1,5,0\n,7,0\n3,9,0\n")
    test = write(tmp_path / "test.csv", "c,b,a\n4,,10\n5,1,\n")  # other order; c varies here
    data = load_user_data(train, test=test, impute="mean", drop_constant=True)
    assert data.feature_names == ("a", "b")
    np.testing.assert_array_equal(data.x_train, [[1, 5], [2, 7], [3, 9]])
    np.testing.assert_array_equal(data.x_test, [[10, 7], [2, 1]])  # train means: a=2, b=7
    assert data.notes["dropped_constant_columns"] == ["c"]


@pytest.mark.parametrize(
    ("train", "test", "kwargs", "match"),
    [
        ("a,b\n" + "1,2\n3,4\n5,7\n6,1\n8,0\n", None, {}, r"Splitting the 5 rows of train\.csv with test_size=0\.2 "
         r"leaves 4 training and 1 test row, expected at least 2 on each side\. .*change test_size, or pass"),
        ("a,b\n" + "1,2\n3,4\n5,7\n6,1\n8,0\n", None, {"test_size": 1.5}, r"test_size=1\.5"),
        ("a,b\n1,2\n3,4\n5,7\n", "a,b\n1,2\n", {}, r"test\.csv has 1 row, expected at least 2"),
        ("a,b\n1,2\n3,4\n5,7\n", "a,c\n1,2\n3,3\n", {}, r"test\.csv has other columns than .*train\.csv: it lacks 'b'; it has extra 'c'\. A test file needs"),
        ("a,b\n1,2\n3,4\n5,7\n", "a,b\n1,2\n3,\n", {}, r"test\.csv has 1 missing value \("),
        ("a,b,y\n1,2,0\n3,4,1\n5,7,1\n", "a,b\n1,2\n3,4\n", {"label_column": "y"}, r"columns of test\.csv"),
    ],
)
def test_load_user_data_errors(tmp_path, train, test, kwargs, match):
    train_path = write(tmp_path / "train.csv", train)
    test_path = None if test is None else write(tmp_path / "test.csv", test)
    with pytest.raises(ValueError, match=match):
        load_user_data(train_path, test=test_path, **kwargs)
