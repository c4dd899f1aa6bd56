"""Row sources: every input form read a block at a time, column options and model specifications on every
form, content fingerprints, held-out views, the seeded batches of an epoch, bad input."""

import gzip
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aepca.data import EpochBatches, epoch_steps, is_source_path, open_source, read_table, row_hash
from aepca.data.sources import interleaved_source

DIM = 6
PART_ROWS = (20, 13, 9)
ROW_GROUP = 7
# Table forms of TABLE: how each is written, and what open_source is given.
TABLE_FORMS = ["DataFrame", "Arrow", "csv", "tsv", "parquet", "feather", "arrow", "npy", "npz", "csv folder",
               "parquet folder", "arrow folder"]


def list_column(values: np.ndarray, fixed: bool):
    n, dim = values.shape
    flat = pa.array(values.ravel())
    if fixed:
        return pa.FixedSizeListArray.from_arrays(flat, dim)
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32)), flat)


def write_parts(folder, tables) -> list:
    folder.mkdir()
    paths = [folder / f"part-{k}.parquet" for k in range(len(tables))]
    for path, table in zip(paths, tables):
        pq.write_table(table, path, row_group_size=ROW_GROUP)
    return paths


def embedding_parts(folder, *, fixed=True, dtype=np.float32, sizes=PART_ROWS, dim=DIM) -> list:
    """Parquet files of an embedding column ``emb`` and a ``label``; ``emb[0]`` holds the global row index."""
    rng = np.random.default_rng(1)
    tables, start = [], 0
    for n in sizes:
        emb = rng.standard_normal((n, dim)).astype(dtype)
        emb[:, 0] = np.arange(start, start + n)
        tables.append(pa.table({"emb": list_column(emb, fixed), "label": pa.array(np.arange(start, start + n) % 3)}))
        start += n
    return write_parts(folder, tables)


def all_of(source, method) -> np.ndarray:
    return np.concatenate([getattr(source, method)(i) for i in range(source.n_blocks)])


def counting_source(n_rows=1003, width=3, block_rows=50):
    """An in-memory source whose column 0 holds each row's index."""
    x = np.random.default_rng(2).standard_normal((n_rows, width)).astype(np.float32)
    x[:, 0] = np.arange(n_rows)
    return open_source(x, block_rows=block_rows)


def table(n=30, seed=3) -> pd.DataFrame:
    """A shuffled row id, three measurements, an integer label."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"row_id": rng.permutation(1000)[:n] + 100, "a": rng.standard_normal(n).round(5),
                         "b": rng.integers(0, 9, n), "c": rng.standard_normal(n).round(5), "kind": np.arange(n) % 3})


def as_form(frame: pd.DataFrame, form: str, folder):
    """``frame`` as ``form`` (see TABLE_FORMS): the object, or the path written."""
    if form == "DataFrame":
        return frame
    if form == "Arrow":
        return pa.Table.from_pandas(frame, preserve_index=False)
    folder.mkdir(exist_ok=True)
    if form.endswith("folder"):
        suffix = form.split()[0]
        (folder / "parts").mkdir()
        for k, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
            as_form(frame.iloc[part], suffix, folder / "parts" / f"p{k}")
        for written in (folder / "parts").glob("p*/*"):
            written.rename(folder / "parts" / f"{written.parent.name}.{suffix}")
        return folder / "parts"
    path = folder / f"t.{form}"
    if form in ("csv", "tsv"):
        frame.to_csv(path, index=False, sep="," if form == "csv" else "\t")
    elif form == "parquet":
        frame.to_parquet(path, index=False, row_group_size=ROW_GROUP)
    elif form == "feather":
        frame.reset_index(drop=True).to_feather(path, chunksize=ROW_GROUP)
    elif form == "arrow":  # the stream format, as Hugging Face datasets save
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        with pa.OSFile(str(path), "wb") as file, pa.ipc.new_stream(file, arrow.schema) as stream:
            stream.write_table(arrow, max_chunksize=ROW_GROUP)
    elif form == "npy":
        np.save(path, frame.to_records(index=False))
    else:
        np.savez(path, x=frame.to_records(index=False))
    return path


# --- reading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", TABLE_FORMS)
def test_column_options_work_on_every_table_form(tmp_path, form):
    frame = table()
    source = open_source(as_form(frame, form, tmp_path), id_column="row_id", label_column="kind",
                         drop_columns=["c"], block_rows=8)
    assert source.feature_names == ("a", "b") and source.columns.id_column == "row_id"
    assert source.block_sizes.tolist() == [8, 8, 8, 6]
    np.testing.assert_array_equal(source.to_array(), frame[["a", "b"]].to_numpy(np.float32))
    np.testing.assert_array_equal(all_of(source, "ids"), frame["row_id"])
    np.testing.assert_array_equal(all_of(source, "labels"), frame["kind"])
    chosen = open_source(as_form(frame, form, tmp_path / "again"), columns=["c", "a*"], block_rows=8)
    np.testing.assert_array_equal(chosen.to_array(), frame[["c", "a"]].to_numpy(np.float32))
    assert chosen.ids(0) is None and chosen.labels(0) is None


@pytest.mark.parametrize(("fixed", "dtype"), [(True, np.float32), (False, np.float64)],
                         ids=["fixed_size_list<float32>", "list<double>"])
def test_parquet_folder_of_list_columns_gives_the_rows_read_table_gives(tmp_path, fixed, dtype):
    paths = embedding_parts(tmp_path / "parts", fixed=fixed, dtype=dtype)
    source = open_source(tmp_path / "parts", label_column="label", block_rows=ROW_GROUP)
    tables = [read_table(path, label_column="label") for path in paths]
    np.testing.assert_array_equal(source.to_array(), np.concatenate([t.features for t in tables]))
    np.testing.assert_array_equal(all_of(source, "labels"), np.concatenate([t.labels for t in tables]))
    np.testing.assert_array_equal(all_of(source, "row_indices"), np.arange(sum(PART_ROWS)))
    assert source.feature_names == tables[0].feature_names
    # Blocks of 7 consecutive rows, whatever the files' row groups.
    assert source.block_sizes.tolist() == [7] * 6 == [len(block) for block in source.iter_blocks()]
    assert (source.name, source.n_rows, source.n_features, source.image_shape) == ("parts", 42, DIM, None)


def test_a_hugging_face_dataset_folder_reads_as_its_arrow_files_rows(tmp_path):
    """``datasets.Dataset.save_to_disk``'s layout: Arrow streams of 1,000-row batches beside JSON files."""
    folder, rng = tmp_path / "embedded", np.random.default_rng(4)
    folder.mkdir()
    emb = rng.standard_normal((2500, DIM)).astype(np.float32)
    for k, rows in enumerate(np.array_split(np.arange(2500), 2)):
        shard = pa.table({"text": [f"doc {i}" for i in rows], "embedding": list_column(emb[rows], fixed=False),
                          "label": rows % 4})
        with pa.OSFile(str(folder / f"data-{k:05d}-of-00002.arrow"), "wb") as file, \
                pa.ipc.new_stream(file, shard.schema) as stream:
            stream.write_table(shard, max_chunksize=1000)
    (folder / "dataset_info.json").write_text("{}")
    (folder / "state.json").write_text("{}")
    source = open_source(folder, columns=["embedding"], label_column="label", block_rows=600)
    np.testing.assert_array_equal(source.to_array(), emb)
    np.testing.assert_array_equal(all_of(source, "labels"), np.arange(2500) % 4)
    assert source.feature_names == tuple(f"embedding[{j}]" for j in range(DIM))


def test_a_folder_skips_its_text_notes_and_a_pattern_naming_txt_files_reads_them(tmp_path):
    rows = np.arange(12, dtype=np.float32).reshape(6, 2)
    (tmp_path / "parts").mkdir()
    for k in range(2):
        np.savetxt(tmp_path / "parts" / f"part-{k}.txt", rows[3 * k : 3 * k + 3])
    pd.DataFrame(rows, columns=["x0", "x1"]).to_csv(tmp_path / "parts" / "all.csv", index=False)
    (tmp_path / "parts" / "README.txt").write_text("rows written by np.savetxt")
    np.testing.assert_array_equal(open_source(tmp_path / "parts").to_array(), rows)  # all.csv alone
    pattern = open_source(str(tmp_path / "parts" / "part-*.txt"))
    np.testing.assert_array_equal(pattern.to_array(), rows)
    # What the files' reader noted, once for all of them (the run's record shows it).
    assert pattern.notes == ("read as whitespace-separated values", "no header line: the first line was read as data "
                             "and the columns named x0, x1, ...")


def test_a_glob_pattern_reads_what_its_folder_reads(tmp_path):
    embedding_parts(tmp_path / "parts")
    (tmp_path / "parts" / "_SUCCESS").write_text("")
    folder = open_source(tmp_path / "parts")
    pattern = open_source(str(tmp_path / "parts" / "part-*.parquet"))
    np.testing.assert_array_equal(pattern.to_array(), folder.to_array())
    assert pattern.block_sizes.tolist() == folder.block_sizes.tolist()
    assert is_source_path(tmp_path / "parts") and is_source_path(str(tmp_path / "parts" / "*.parquet"))
    assert not is_source_path(tmp_path / "parts" / "part-0.parquet")


CSV_LAYOUTS = {
    "quotes, blank lines, CRLF": ('id,note,a,b\r\n1,"x, y",1.5,2\r\n\r\n2,"two\r\nlines",2.5,3\r\n  \r\n'
                                  '3,"say ""hi""",4,1\r\n4,plain,0.5,7\r\n5,"",1,1\r\n6,"last",3,3'),
    "semicolons and decimal commas": "a;b\n1,5;2\n2,5;3\n\n4;1\n0,25;7\n1;1\n3;3\n",
    "no header": "1.5,2\n2.5,3\n4,1\n0.5,7\n1,1\n3,3\n",
    "tabs": "a\tb\n1.5\t2\n2.5\t3\n  \n4\t1\n0.5\t7\n1\t1\n3\t3\n",
    "thousands separators": 'a,b\n"1,234.5",2\n2.5,3\n"-12,000",1\n0.5,7\n1,1\n3,3\n',
    "whitespace, aligned": " 1.50e+00  2.00e+00\n 2.50e+00  3.00e+00\n\n-4.00e+00  1.00e+00\n 5.00e-01  7.00e+00\n"
                           " 1.00e+00  1.00e+00\n 3.00e+00  3.00e+00\n",
}


@pytest.mark.parametrize("layout", sorted(CSV_LAYOUTS))
@pytest.mark.parametrize("block_rows", [1, 2, 4, 1000])
def test_a_csv_file_read_by_blocks_gives_the_rows_read_whole(tmp_path, layout, block_rows):
    path = tmp_path / "t.csv"
    path.write_bytes(CSV_LAYOUTS[layout].encode())
    options = {"drop_columns": ["note"], "id_column": "id"} if layout.startswith("quotes") else {}
    whole = read_table(path, **options)
    source = open_source(path, block_rows=block_rows, **options)
    np.testing.assert_array_equal(source.to_array(), whole.features)
    assert source.feature_names == whole.feature_names and source.n_rows == len(whole.features)
    assert [len(block) for block in source.iter_blocks()] == source.block_sizes.tolist()
    if options:
        np.testing.assert_array_equal(all_of(source, "ids"), whole.ids)


@pytest.mark.parametrize("block_rows", [100, 30])
def test_an_arrays_rows_are_given_as_they_are_not_copied(block_rows):
    x = np.random.default_rng(0).standard_normal((100, 3)).astype(np.float32)
    rows = open_source(x, block_rows=block_rows).to_array()  # one block, or views of x's rows in order
    assert np.shares_memory(rows, x) and rows.shape == x.shape
    held = open_source(x, block_rows=block_rows).held_out(0.5, seed=0, salt="test")
    rows = held.to_array()
    assert not np.shares_memory(rows, x)  # a view's rows: a new array of them
    np.testing.assert_array_equal(rows, x[np.concatenate([held.row_indices(i) for i in range(held.n_blocks)])])


def test_npy_images_are_memory_mapped_in_blocks_of_rows(tmp_path):
    images = np.random.default_rng(4).random((50, 4, 4)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    source = open_source(tmp_path / "images.npy", block_rows=16)
    np.testing.assert_array_equal(source.to_array(), np.load(tmp_path / "images.npy").reshape(50, 16))
    assert source.block_sizes.tolist() == [16, 16, 16, 2] == [len(block) for block in source.iter_blocks()]
    assert source.image_shape == (4, 4) and source.labels(0) is None and not source.in_memory
    block = source.read(3)
    assert block.dtype == np.float32 and block.flags["C_CONTIGUOUS"]


def test_a_folder_of_npy_files_reads_them_in_name_order(tmp_path):
    parts = [np.random.default_rng(k).integers(0, 9, (n, 5)).astype(np.uint8) for k, n in enumerate((30, 7))]
    (tmp_path / "parts").mkdir()
    for k, part in enumerate(parts):
        np.save(tmp_path / "parts" / f"p{k}.npy", part)
    source = open_source(tmp_path / "parts", block_rows=8, drop_columns=["x4"], label_column="x0")
    np.testing.assert_array_equal(source.to_array(), np.concatenate(parts)[:, 1:4].astype(np.float32))
    np.testing.assert_array_equal(all_of(source, "labels"), np.concatenate(parts)[:, 0])
    assert source.block_sizes.tolist() == [8, 8, 8, 8, 5]
    assert source.feature_names == ("x1", "x2", "x3")


def test_a_partitioned_folder_reads_its_partitions_in_path_order_and_no_other_subfolder(tmp_path):
    parts = {name: np.full((3, 2), k, np.float32) for k, name in enumerate(("a.npy", "date=1/p.npy", "date=2/h=0/p.npy",
                                                                           "date=2/p.npy"))}
    # Not partitions: Spark's scratch folder, a hidden folder, a run's output, a partition's hidden file.
    others = ("_temporary/0/p.npy", ".cache/p.npy", "run/checkpoint/p.npy", "date=1/.p.npy", "date=1/_p.npy")
    for name, rows in {**parts, **{name: np.full((3, 2), 9, np.float32) for name in others}}.items():
        (tmp_path / "store" / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "store" / name, rows)
    source = open_source(tmp_path / "store")
    np.testing.assert_array_equal(source.to_array(), np.concatenate(list(parts.values())))


def test_an_npz_archive_gives_its_labels_y(tmp_path):
    x, y = np.random.default_rng(6).random((9, 2, 3)), np.arange(9) % 4
    np.savez(tmp_path / "d.npz", x=x, y=y)
    source = open_source(tmp_path / "d.npz", block_rows=4)
    np.testing.assert_array_equal(source.to_array(), x.reshape(9, 6).astype(np.float32))
    np.testing.assert_array_equal(all_of(source, "labels"), y)
    assert source.image_shape == (2, 3) and source.in_memory


def test_an_in_memory_float32_array_is_read_without_copies():
    x = np.random.default_rng(5).standard_normal((100, 3)).astype(np.float32)
    source = open_source(x, block_rows=40)
    assert source.block_sizes.tolist() == [40, 40, 20]
    assert np.shares_memory(source.read(1), x)
    np.testing.assert_array_equal(source.read(1), x[40:80])
    assert open_source(source) is source and source.in_memory and source.columns is None


def test_two_arrays_interleaved_read_as_the_rows_in_their_merged_order():
    rng = np.random.default_rng(6)
    rows = rng.standard_normal((100, 3)).astype(np.float32)
    in_second = rng.random(100) < 0.3
    merged = interleaved_source(rows[~in_second], rows[in_second], in_second, block_rows=40)
    whole = open_source(rows, block_rows=40)
    assert merged.block_sizes.tolist() == [40, 40, 20] and merged.in_memory and merged.columns is None
    for i in range(merged.n_blocks):
        np.testing.assert_array_equal(merged.read(i), whole.read(i))
    np.testing.assert_array_equal(merged.kept(0.3, 1, "t").to_array(), whole.kept(0.3, 1, "t").to_array())


def test_blocks_read_from_a_background_thread_equal_those_read_in_order(tmp_path):
    embedding_parts(tmp_path / "parts")
    source = open_source(tmp_path / "parts", block_rows=5).held_out(0.5, 0, "test")
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(source.read, range(source.n_blocks)))
    for block, expected in zip(threaded, source.iter_blocks()):
        np.testing.assert_array_equal(block, expected)


# --- a model's column specification --------------------------------------------------------------------


@pytest.mark.parametrize("form", TABLE_FORMS)
def test_a_spec_reads_the_same_features_from_every_form(tmp_path, form):
    frame = table().assign(c=2.5)  # c constant: dropped
    frame.loc[[3, 17], "a"] = np.nan
    spec = read_table(as_form(frame, "csv", tmp_path / "train"), id_column="row_id", label_column="kind",
                      impute="mean", drop_constant=True).columns
    assert spec.feature_names == ("a", "b") and spec.columns == ("a", "b", "c")
    expected = frame[["a", "b"]].fillna({"a": spec.fill["a"]}).to_numpy(np.float32)
    new = frame[["c", "kind", "b", "row_id", "a"]].assign(extra=1.0)  # other order, an extra column
    source = open_source(as_form(new, form, tmp_path / "new"), spec=spec, block_rows=8)
    np.testing.assert_array_equal(source.to_array(), expected)
    np.testing.assert_array_equal(all_of(source, "ids"), frame["row_id"])
    assert source.columns == spec and source.feature_names == ("a", "b")


@pytest.mark.parametrize("form", ["array", "npy", "npz", "npy folder"])
def test_a_spec_reads_the_same_features_from_every_array_form(tmp_path, form):
    x = np.random.default_rng(7).random((30, 5))
    x[:, 2] = 1.0
    np.save(tmp_path / "train.npy", x)
    spec = read_table(tmp_path / "train.npy", drop_columns=["x4"], drop_constant=True).columns
    assert spec.feature_names == ("x0", "x1", "x3")
    if form == "array":  # an array in memory holds the features themselves, in order
        data = x[:, [0, 1, 3]]
    elif form == "npy folder":
        (tmp_path / "parts").mkdir()
        for k, part in enumerate(np.array_split(x, 3)):
            np.save(tmp_path / "parts" / f"p{k}.npy", part)
        data = tmp_path / "parts"
    else:
        data = tmp_path / f"new.{form}"
        np.save(data, x) if form == "npy" else np.savez(data, x=x)
    source = open_source(data, spec=spec, block_rows=8)
    np.testing.assert_array_equal(source.to_array(), x[:, [0, 1, 3]].astype(np.float32))


@pytest.mark.parametrize("form", ["npy", "headerless csv"])
def test_a_spec_refuses_columns_named_by_position_that_are_more_or_fewer_than_in_training(tmp_path, form):
    x = np.random.default_rng(8).random((30, 6))
    np.save(tmp_path / "train.npy", x)
    spec = read_table(tmp_path / "train.npy", columns=["x0", "x1"]).columns  # x2-x5 left out, not absent
    for width in (6, 9, 4):
        data = tmp_path / f"new{width}.{'npy' if form == 'npy' else 'csv'}"
        if form == "npy":
            np.save(data, x[:, :width] if width <= 6 else np.hstack([x, x[:, :3]]))
        else:
            pd.DataFrame(np.resize(x, (30, width))).to_csv(data, header=False, index=False)
        if width == 6:
            assert open_source(data, spec=spec).n_features == 2
        else:
            with pytest.raises(ValueError, match=rf"new{width}\.\w+ holds rows of {width} values, but the training rows "
                                                 r"held 6; .* matched by position"):
                open_source(data, spec=spec)


def test_a_spec_reads_the_needed_columns_of_list_columns_with_ids(tmp_path):
    paths = embedding_parts(tmp_path / "parts", fixed=False)
    pq.write_table(pq.read_table(paths[0]).append_column("doc_id", pa.array(np.arange(20) + 500)),
                   tmp_path / "train.parquet")
    spec = read_table(tmp_path / "train.parquet", id_column="doc_id", drop_columns=["label"]).columns
    table_ = pq.read_table(paths[1])
    frame = table_.to_pandas().assign(doc_id=np.arange(13) * 2)  # the lists as arrays in cells
    for data in (frame, table_.append_column("doc_id", pa.array(np.arange(13) * 2))):
        source = open_source(data, spec=spec, block_rows=5)
        np.testing.assert_array_equal(source.to_array(), read_table(paths[1], columns=["emb"]).features)
        np.testing.assert_array_equal(all_of(source, "ids"), np.arange(13) * 2)
    assert open_source(paths[1], spec=spec).ids(0) is None  # no id column there: no ids


def test_a_missing_training_column_is_named_before_any_block_is_read(tmp_path):
    spec = read_table(as_form(table(), "csv", tmp_path), id_column="row_id").columns
    short = table().drop(columns=["b"])
    for data in (short, as_form(short, "parquet", tmp_path / "short")):
        with pytest.raises(ValueError, match=r"lacks column 'b' that the model reads as features \(columns are "
                                             r"matched by name; its columns: 'row_id', 'a', 'c', 'kind'\)\. Provide"):
            open_source(data, spec=spec)
    with pytest.raises(ValueError, match=r"The array has 2 features, but the model reads 4 \('a', 'b', 'c', 'kind'\)"):
        open_source(np.zeros((3, 2)), spec=spec)


def test_a_named_table_given_to_a_model_fitted_on_unnamed_columns_is_told_to_pass_them_by_position(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((5, 3), np.float32))
    spec = read_table(tmp_path / "x.npy").columns
    with pytest.raises(ValueError, match=r"lacks columns 'x0', 'x1', 'x2' that .*\. The model was fitted on unnamed "
                                         r"columns \(an array, a \.npy or a headerless CSV\): give its 3 columns"):
        open_source(pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0]}), spec=spec)


@pytest.mark.parametrize("form", ["DataFrame", "Arrow"])
def test_a_text_column_in_a_table_is_named_with_the_fix(form):
    frame = table().drop(columns=["row_id"]).assign(country=["NL", "FR", "DE"] * 10)
    with pytest.raises(ValueError) as info:
        open_source(as_form(frame, form, None))
    message = str(info.value)
    assert message.startswith(f"the {'DataFrame' if form == 'DataFrame' else 'Arrow table'} has non-numeric "
                              "columns 'country' (e.g. 'country' holds 'NL'). Features must be numbers")
    assert "drop_columns=" in message and "\n" not in message


# --- fingerprints --------------------------------------------------------------------------------------


def test_fingerprints_identify_files_by_content_not_place(tmp_path):
    embedding_parts(tmp_path / "parts")
    shutil.copytree(tmp_path / "parts", tmp_path / "elsewhere" / "parts")
    first = open_source(tmp_path / "parts").fingerprint()
    assert open_source(tmp_path / "elsewhere" / "parts").fingerprint() == first
    assert [(f["name"], f["rows"]) for f in first["files"]] == [(f"part-{k}.parquet", n) for k, n in enumerate(PART_ROWS)]
    assert first["kind"] == "parquet" and first["schema"] == [f"emb: {pq.read_schema(tmp_path / 'parts' / 'part-0.parquet').field('emb').type}", "label: int64"]
    # One value changed in the last file, whose bytes are all sampled: only that file differs.
    path = tmp_path / "elsewhere" / "parts" / "part-2.parquet"
    changed = pq.read_table(path)
    labels = changed.column("label").to_numpy().copy()
    labels[4] += 1
    pq.write_table(changed.set_column(1, "label", pa.array(labels)), path, row_group_size=ROW_GROUP)
    other = open_source(tmp_path / "elsewhere" / "parts").fingerprint()
    assert other["files"][:2] == first["files"][:2] and other["files"][2] != first["files"][2]


@pytest.mark.parametrize("form", ["npy", "csv"])
def test_a_changed_value_in_a_sampled_block_changes_a_big_files_fingerprint(tmp_path, form):
    x = np.random.default_rng(8).random((40_000, 8)).round(4)  # far more than the 3 x 64 KiB sampled
    path = as_form(pd.DataFrame(x, columns=[f"c{i}" for i in range(8)]), form, tmp_path)
    before = open_source(path).fingerprint()
    content = bytearray(path.read_bytes())
    middle = next(i for i in range(len(content) // 2, len(content)) if chr(content[i]).isdigit())
    content[middle] = ord("1") if content[middle] != ord("1") else ord("2")  # one value, in the middle block
    path.write_bytes(bytes(content))
    after = open_source(path).fingerprint()
    assert after["files"][0]["bytes"] == before["files"][0]["bytes"] == len(content)
    assert after["files"][0]["digest"] != before["files"][0]["digest"]


def test_fingerprint_is_json_and_names_layout_and_filters(tmp_path):
    embedding_parts(tmp_path / "parts")
    first = open_source(tmp_path / "parts")
    view = json.loads(json.dumps(first.kept(0.2, 0, "test").fingerprint()))
    assert [f["bytes"] for f in view["files"]] == [(tmp_path / "parts" / f"part-{k}.parquet").stat().st_size
                                                   for k in range(3)]
    assert [(f["fraction"], f["seed"], f["salt"], f["held_out"]) for f in view["filters"]] == [(0.2, 0, "test", False)]
    assert view != first.fingerprint() != first.kept(0.2, 1, "test").fingerprint()
    array = np.arange(12, dtype=np.float32).reshape(6, 2)
    assert open_source(array).fingerprint() == open_source(array.copy()).fingerprint()
    assert open_source(array).fingerprint() != open_source(array + 1).fingerprint()
    frame = pd.DataFrame(array, columns=["a", "b"])
    assert open_source(frame).fingerprint() == open_source(frame.copy()).fingerprint()
    assert open_source(frame).fingerprint() != open_source(frame.assign(b=frame["b"] + 1)).fingerprint()


# --- held-out views ----------------------------------------------------------------------------------


def test_row_hash_is_splitmix64_pinned_across_platforms():
    np.testing.assert_array_equal(
        row_hash(0, "test", np.arange(4)),
        [0.16177199845026935, 0.12489567434410664, 0.5223460204836187, 0.07707238626665036],
    )
    np.testing.assert_array_equal(row_hash(7, "validation", np.array([0, 2**40, -1])),
                                  [0.2945528650775353, 0.8743580274718254, 0.8408004544679091])


def test_held_out_and_kept_partition_the_rows():
    source = counting_source(10_000, block_rows=1000)
    held, kept = source.held_out(0.2, 3, "test"), source.kept(0.2, 3, "test")
    held_rows, kept_rows = all_of(held, "row_indices"), all_of(kept, "row_indices")
    assert np.intersect1d(held_rows, kept_rows).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([held_rows, kept_rows])), np.arange(10_000))
    for view, rows in ((held, held_rows), (kept, kept_rows)):
        np.testing.assert_array_equal(view.to_array()[:, 0], rows)
        assert view.block_sizes.tolist() == [len(block) for block in view.iter_blocks()]
        assert view.n_rows == len(rows)
    np.testing.assert_array_equal(all_of(source.held_out(0.2, 3, "test"), "row_indices"), held_rows)
    sigma = np.sqrt(10_000 * 0.2 * 0.8)
    assert abs(held.n_rows - 2000) <= 3 * sigma


def test_a_mapped_view_reads_blocks_it_leaves_empty_without_mapping_them():
    def doubled(rows):  # refuses no rows, as a scaler's transform does
        assert len(rows), "mapped an empty block"
        return rows * np.float32(2)

    source = counting_source(200, block_rows=3)
    held = source.held_out(0.2, 0, "test").map(doubled)
    assert (held.block_sizes == 0).any() and held.n_rows > 0
    rows = held.to_array()
    np.testing.assert_array_equal(rows, source.to_array()[all_of(held, "row_indices")] * 2)
    assert all(block.shape == (0, 3) for block, size in zip(held.iter_blocks(), held.block_sizes) if size == 0)


def test_views_compose_and_differ_by_salt(tmp_path):
    embedding_parts(tmp_path / "parts")
    source = open_source(tmp_path / "parts", label_column="label", block_rows=10)
    train = source.kept(0.3, 0, "test")
    validation = train.held_out(0.3, 1, "validation")
    rows = all_of(validation, "row_indices")
    assert 0 < len(rows) < train.n_rows and np.isin(rows, all_of(train, "row_indices")).all()
    np.testing.assert_array_equal(validation.to_array(), source.to_array()[rows])
    np.testing.assert_array_equal(all_of(validation, "labels"), rows % 3)
    assert not np.array_equal(all_of(source.held_out(0.3, 0, "other"), "row_indices"),
                              all_of(source.held_out(0.3, 0, "test"), "row_indices"))


# --- the batches of an epoch -----------------------------------------------------------------------


def weighted_rows(batches) -> np.ndarray:
    """Column 0 (the row index) of the rows of weight 1, in the order yielded."""
    return np.concatenate([rows[weights == 1, 0] for rows, weights in batches])


def test_an_epoch_yields_every_training_row_once():
    train = counting_source().kept(0.2, 0, "test")
    batches = list(EpochBatches(train, seed=1, epoch=0, lanes=4, batch_size=32, buffer_blocks=2))
    assert len(batches) == epoch_steps(train, seed=1, epoch=0, lanes=4, batch_size=32)
    assert all(rows.shape == (32, 3) and rows.dtype == weights.dtype == np.float32 for rows, weights in batches)
    assert set(np.unique(np.concatenate([w for _, w in batches]))) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.sort(weighted_rows(batches)), all_of(train, "row_indices"))


def test_the_order_depends_on_seed_and_epoch_only():
    source = counting_source()

    def order(seed, epoch):
        return weighted_rows(EpochBatches(source, seed=seed, epoch=epoch, lanes=2, batch_size=16))

    np.testing.assert_array_equal(order(1, 0), order(1, 0))
    assert not np.array_equal(order(1, 0), order(2, 0))
    assert not np.array_equal(order(1, 0), order(1, 1))


def test_two_processes_owning_half_the_lanes_yield_the_batches_of_one():
    # 21 blocks over 4 lanes: lane 0 has 6 blocks, the others 5, so the last steps are partly padding.
    source = counting_source().kept(0.1, 0, "test")
    order = {"seed": 3, "epoch": 2, "lanes": 4, "batch_size": 32}
    whole = list(EpochBatches(source, buffer_blocks=2, **order))
    first = list(EpochBatches(source, buffer_blocks=2, lanes_here=range(0, 2), **order))
    second = list(EpochBatches(source, buffer_blocks=2, lanes_here=range(2, 4), **order))
    assert len(whole) == len(first) == len(second) == epoch_steps(source, **order)
    for (rows, weights), (rows_a, weights_a), (rows_b, weights_b) in zip(whole, first, second):
        np.testing.assert_array_equal(rows, np.concatenate([rows_a, rows_b]))
        np.testing.assert_array_equal(weights, np.concatenate([weights_a, weights_b]))
    rows, weights = whole[-1]
    assert 0 < weights.sum() < len(weights) and not rows[weights == 0].any()


def test_batch_size_must_split_evenly_into_lanes():
    with pytest.raises(ValueError, match=r"batch_size, expected a multiple of lanes=4\. Received: batch_size=30"):
        EpochBatches(counting_source(), seed=0, epoch=0, lanes=4, batch_size=30)


# --- bad input -----------------------------------------------------------------------------------------


def test_a_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No such file: .*nothing\.parquet"):
        open_source(tmp_path / "nothing.parquet")


def test_an_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"No \.parquet, \.arrow, \.npy, \.csv, \.jsonl or image file in the folder .*empty"):
        open_source(tmp_path / "empty")


@pytest.mark.parametrize(("subfolders", "match"), [
    (("train", "test"), r"its subfolders 'train' and 'test' hold a train/test split: pass .*dd/train as the data and "
                        r".*dd/test as the test data, --test on the command line"),
    (("2023", "2024"), r"its subfolders '2023', '2024' are read only when named as partitions.*dd/\*/\*\.arrow"),
])
def test_a_folder_of_subfolders_says_what_to_name(tmp_path, subfolders, match):
    for name in subfolders:
        (tmp_path / "dd" / name).mkdir(parents=True)
        (tmp_path / "dd" / name / "data-00000-of-00001.arrow").write_bytes(b"")
    (tmp_path / "dd" / "dataset_dict.json").write_text("{}")
    with pytest.raises(ValueError, match=match):
        open_source(tmp_path / "dd")


def test_a_folder_of_compressed_files_says_how_to_read_them(tmp_path):
    (tmp_path / "parts").mkdir()
    for name in ("a.npy.gz", "b.npy.gz"):
        (tmp_path / "parts" / name).write_bytes(b"\x1f\x8b\x08\x00")
    with pytest.raises(ValueError, match=r"in the folder .*parts: 2 files compressed \('a\.npy\.gz', 'b\.npy\.gz'\)\. "
                                         r".*decompress first \(gunzip -k .*parts/\*\.gz\)"):
        open_source(tmp_path / "parts")


def test_a_folder_of_compressed_csv_parts_gives_the_rows_of_the_plain_parts(tmp_path):
    rows = np.random.default_rng(0).random((30, 3)).round(4)
    for folder, suffix in (("plain", ""), ("packed", ".gz")):
        (tmp_path / folder).mkdir()
        for k, part in enumerate(np.array_split(rows, 3)):
            text = "a,b,c\n" + "".join(",".join(map(str, row)) + "\n" for row in part)
            (tmp_path / folder / f"part-{k}.csv{suffix}").write_bytes(gzip.compress(text.encode()) if suffix else text.encode())
    plain, packed = (open_source(tmp_path / folder, block_rows=4) for folder in ("plain", "packed"))
    np.testing.assert_array_equal(packed.block_sizes, plain.block_sizes)
    np.testing.assert_array_equal(packed.to_array(), plain.to_array())


def test_a_pattern_matching_nothing_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No file matches the pattern .*part-\*\.parquet"):
        open_source(str(tmp_path / "part-*.parquet"))


@pytest.mark.parametrize(("name", "match"), [("extra.npy", r"parts mixes \.npy and \.parquet files \(e\.g\. 'extra\.npy', "
                                                            r"'part-0\.parquet'\); a stream reads one kind"),
                                             ("more.csv", r"parts mixes \.csv and \.parquet files \(e\.g\. 'more\.csv'")])
def test_a_folder_mixing_kinds_is_refused(tmp_path, name, match):
    embedding_parts(tmp_path / "parts")
    as_form(pd.DataFrame({"a": [1.0, 2.0]}), name.split(".")[1], tmp_path / "other").rename(tmp_path / "parts" / name)
    with pytest.raises(ValueError, match=match):
        open_source(tmp_path / "parts")


def test_an_npz_in_a_folder_says_to_save_it_as_npy(tmp_path):
    (tmp_path / "parts").mkdir()
    np.savez(tmp_path / "parts" / "a.npz", x=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"a\.npz in the folder .* cannot be read a block at a time: NumPy loads "
                                         r"an \.npz archive whole\. Save its feature array as a \.npy file"):
        open_source(tmp_path / "parts")


def test_files_with_other_columns_are_named(tmp_path):
    folder = tmp_path / "parts"
    embedding_parts(folder)
    emb = np.zeros((5, 4), np.float32)
    pq.write_table(pa.table({"emb": list_column(emb, True), "label": pa.array(np.zeros(5))}), folder / "part-3.parquet")
    with pytest.raises(ValueError, match=r"part-3\.parquet has other columns than .*part-0\.parquet: 'emb' holds "
                                         r"lists of 4 values, not lists of 6 values"):
        open_source(folder)
    pq.write_table(pa.table({"emb": list_column(np.zeros((5, DIM), np.float32), True)}), folder / "part-3.parquet")
    with pytest.raises(ValueError, match=r"part-3\.parquet has other columns .*it lacks 'label'"):
        open_source(folder)


@pytest.mark.parametrize("fixed", [True, False], ids=["fixed_size_list", "list"])
def test_nan_in_a_list_column_names_the_file_and_row(tmp_path, fixed):
    paths = embedding_parts(tmp_path / "parts", fixed=fixed)
    table_ = pq.read_table(paths[1])
    emb = np.stack(table_.column("emb").to_pylist()).astype(np.float32)
    emb[9, 2] = np.nan
    pq.write_table(table_.set_column(0, "emb", list_column(emb, fixed)), paths[1], row_group_size=ROW_GROUP)
    source = open_source(tmp_path / "parts", block_rows=ROW_GROUP)
    source.read(2)  # rows 15-21: the first row group of part-1 is clean
    with pytest.raises(ValueError, match=r"part-1\.parquet \(rows 8-13\) holds 1 missing, infinite or huge value "
                                         r"\(NaN, inf or beyond 1e\+15\), first in row 10, column 'emb\[2\]'"):
        source.read(3)


def test_a_missing_list_names_the_file_and_row(tmp_path):
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(12, np.float32)), 2,
                                            mask=pa.array([False, False, True, False, False, False]))
    pq.write_table(pa.table({"emb": emb}), tmp_path / "e.parquet")
    with pytest.raises(ValueError, match=r"e\.parquet \(rows 1-6\) holds 2 missing, infinite or huge values .*first "
                                         r"in row 3, column 'emb\[0\]'"):
        open_source(tmp_path / "e.parquet").read(0)


def test_a_missing_scalar_names_the_file_and_row(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0, None, 4.0], "b": [1.0, 3.0, 2.0, 5.0]})
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    with pytest.raises(ValueError, match=r"t\.parquet \(rows 1-4\) holds 1 missing.*first in row 3, column 'a'"):
        open_source(tmp_path / "t.parquet").read(0)


def test_text_in_a_later_csv_block_names_the_rows(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n" + "1,2\n" * 5 + "3,x\n")
    source = open_source(tmp_path / "t.csv", block_rows=4)
    with pytest.raises(ValueError, match=r"t\.csv \(rows 5-6\) has non-numeric columns 'b' \(e\.g\. 'b' holds 'x'\)"):
        source.read(1)


def test_npy_files_of_other_row_shapes_are_named(tmp_path):
    (tmp_path / "parts").mkdir()
    np.save(tmp_path / "parts" / "a.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "parts" / "b.npy", np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"b\.npy holds rows of shape \(5,\), but .*a\.npy rows of shape \(3,\)"):
        open_source(tmp_path / "parts")


def test_a_one_dimensional_array_is_refused(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"v\.npy holds an array of shape \(5,\), expected 2-D"):
        open_source(tmp_path / "v.npy")
    with pytest.raises(ValueError, match=r"data holds an array of shape \(5,\), expected 2-D .*reshape\(-1, 1\)"):
        open_source(np.zeros(5))


def test_an_npz_with_labels_takes_no_label_column(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3)), y=np.arange(4))
    with pytest.raises(ValueError, match=r"already holds labels \(array 'y'\), so label_column='x0' is ambiguous"):
        open_source(tmp_path / "d.npz", label_column="x0")


def test_column_options_beside_a_spec_or_a_row_source_are_refused(tmp_path):
    source = counting_source()
    with pytest.raises(ValueError, match=r"columns, expected no columns beside a RowSource"):
        open_source(source, columns=["x0"])
    with pytest.raises(ValueError, match=r"id_column, expected no id_column beside spec"):
        open_source(table(), spec=read_table(as_form(table(), "csv", tmp_path), id_column="row_id").columns,
                    id_column="row_id")
