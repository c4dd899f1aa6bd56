"""Row sources: blocks laid out from metadata, held-out views, the seeded batches of an epoch, bad input."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aepca.data import EpochBatches, epoch_steps, is_source_path, open_source, read_table, row_hash

DIM = 6
PART_ROWS = (20, 13, 9)
ROW_GROUP = 7
# Row groups of 7 rows in files of 20, 13 and 9 rows.
PART_BLOCKS = [7, 7, 6, 7, 6, 7, 2]


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


# --- reading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fixed", "dtype"), [(True, np.float32), (False, np.float64)],
                         ids=["fixed_size_list<float32>", "list<double>"])
def test_parquet_folder_of_list_columns_gives_the_rows_read_table_gives(tmp_path, fixed, dtype):
    paths = embedding_parts(tmp_path / "parts", fixed=fixed, dtype=dtype)
    source = open_source(tmp_path / "parts", label_column="label")
    tables = [read_table(path, label_column="label") for path in paths]
    np.testing.assert_array_equal(source.to_array(), np.concatenate([t.features for t in tables]))
    np.testing.assert_array_equal(all_of(source, "labels"), np.concatenate([t.labels for t in tables]))
    np.testing.assert_array_equal(all_of(source, "row_indices"), np.arange(sum(PART_ROWS)))
    assert source.feature_names == tables[0].feature_names
    assert source.block_sizes.tolist() == PART_BLOCKS == [len(block) for block in source.iter_blocks()]
    assert (source.name, source.n_rows, source.n_features, source.image_shape) == ("parts", 42, DIM, None)


def test_parquet_scalar_columns_give_the_rows_read_table_gives(tmp_path):
    rng = np.random.default_rng(3)
    frames = [pd.DataFrame({"row_id": np.arange(n) + 100 * k, "a": rng.standard_normal(n),
                            "b": rng.integers(0, 5, n).astype(np.int32), "c": rng.standard_normal(n).astype(np.float32),
                            "kind": rng.choice(["x", "y"], n)}) for k, n in enumerate(PART_ROWS)]
    paths = write_parts(tmp_path / "parts", [pa.Table.from_pandas(f, preserve_index=False) for f in frames])
    options = {"id_column": "row_id", "label_column": "kind", "drop_columns": ["c"]}
    source = open_source(tmp_path / "parts", **options)
    tables = [read_table(path, **options) for path in paths]
    np.testing.assert_array_equal(source.to_array(), np.concatenate([t.features for t in tables]))
    np.testing.assert_array_equal(all_of(source, "labels"), np.concatenate([t.labels for t in tables]))
    assert source.feature_names == ("a", "b")
    assert source.block_sizes.tolist() == PART_BLOCKS == [len(block) for block in source.iter_blocks()]


def test_a_glob_pattern_reads_what_its_folder_reads(tmp_path):
    embedding_parts(tmp_path / "parts")
    (tmp_path / "parts" / "_SUCCESS").write_text("")
    folder = open_source(tmp_path / "parts")
    pattern = open_source(str(tmp_path / "parts" / "part-*.parquet"))
    np.testing.assert_array_equal(pattern.to_array(), folder.to_array())
    assert pattern.block_sizes.tolist() == folder.block_sizes.tolist()
    assert is_source_path(tmp_path / "parts") and is_source_path(str(tmp_path / "parts" / "*.parquet"))
    assert not is_source_path(tmp_path / "parts" / "part-0.parquet")


def test_npy_images_are_memory_mapped_in_blocks_of_rows(tmp_path):
    images = np.random.default_rng(4).random((50, 4, 4)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    source = open_source(tmp_path / "images.npy", block_rows=16)
    np.testing.assert_array_equal(source.to_array(), np.load(tmp_path / "images.npy").reshape(50, 16))
    assert source.block_sizes.tolist() == [16, 16, 16, 2] == [len(block) for block in source.iter_blocks()]
    assert source.image_shape == (4, 4) and source.labels(0) is None
    block = source.read(3)
    assert block.dtype == np.float32 and block.flags["C_CONTIGUOUS"]


def test_a_folder_of_npy_files_reads_them_in_name_order(tmp_path):
    parts = [np.random.default_rng(k).integers(0, 9, (n, 5)).astype(np.uint8) for k, n in enumerate((30, 7))]
    (tmp_path / "parts").mkdir()
    for k, part in enumerate(parts):
        np.save(tmp_path / "parts" / f"p{k}.npy", part)
    source = open_source(tmp_path / "parts", block_rows=8, drop_columns=["x4"])
    np.testing.assert_array_equal(source.to_array(), np.concatenate(parts)[:, :4].astype(np.float32))
    assert source.block_sizes.tolist() == [8, 8, 8, 6, 7]
    assert source.feature_names == ("x0", "x1", "x2", "x3")


def test_an_in_memory_float32_array_is_read_without_copies():
    x = np.random.default_rng(5).standard_normal((100, 3)).astype(np.float32)
    source = open_source(x, block_rows=40)
    assert source.block_sizes.tolist() == [40, 40, 20]
    assert np.shares_memory(source.read(1), x)
    np.testing.assert_array_equal(source.read(1), x[40:80])
    assert open_source(source) is source


def test_blocks_read_from_a_background_thread_equal_those_read_in_order(tmp_path):
    embedding_parts(tmp_path / "parts")
    source = open_source(tmp_path / "parts").held_out(0.5, 0, "test")
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(source.read, range(source.n_blocks)))
    for block, expected in zip(threaded, source.iter_blocks()):
        np.testing.assert_array_equal(block, expected)


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


def test_views_compose_and_differ_by_salt(tmp_path):
    embedding_parts(tmp_path / "parts")
    source = open_source(tmp_path / "parts", label_column="label")
    train = source.kept(0.3, 0, "test")
    validation = train.held_out(0.3, 1, "validation")
    rows = all_of(validation, "row_indices")
    assert 0 < len(rows) < train.n_rows and np.isin(rows, all_of(train, "row_indices")).all()
    np.testing.assert_array_equal(validation.to_array(), source.to_array()[rows])
    np.testing.assert_array_equal(all_of(validation, "labels"), rows % 3)
    assert not np.array_equal(all_of(source.held_out(0.3, 0, "other"), "row_indices"),
                              all_of(source.held_out(0.3, 0, "test"), "row_indices"))


def test_fingerprint_is_json_and_names_files_layout_and_filters(tmp_path):
    embedding_parts(tmp_path / "parts")
    first, again = open_source(tmp_path / "parts"), open_source(tmp_path / "parts")
    assert first.fingerprint() == again.fingerprint()
    view = json.loads(json.dumps(first.kept(0.2, 0, "test").fingerprint()))
    assert [f["bytes"] for f in view["files"]] == [(tmp_path / "parts" / f"part-{k}.parquet").stat().st_size
                                                   for k in range(3)]
    assert view["filters"] == [{"fraction": 0.2, "seed": 0, "salt": "test", "held_out": False}]
    assert view != first.fingerprint() != first.kept(0.2, 1, "test").fingerprint()
    array = np.arange(12, dtype=np.float32).reshape(6, 2)
    assert open_source(array).fingerprint() == open_source(array.copy()).fingerprint()
    assert open_source(array).fingerprint() != open_source(array + 1).fingerprint()


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
    with pytest.raises(ValueError, match=r"The folder .*empty holds no \.parquet or \.npy files"):
        open_source(tmp_path / "empty")


def test_a_pattern_matching_nothing_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No file matches the pattern .*part-\*\.parquet"):
        open_source(str(tmp_path / "part-*.parquet"))


def test_a_folder_mixing_npy_and_parquet_is_refused(tmp_path):
    embedding_parts(tmp_path / "parts")
    np.save(tmp_path / "parts" / "extra.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"mix \.npy and \.parquet files \(e\.g\. 'extra\.npy', 'part-0\.parquet'\)"):
        open_source(tmp_path / "parts")


def test_a_csv_in_a_folder_says_to_convert_it_to_parquet(tmp_path):
    embedding_parts(tmp_path / "parts")
    pd.DataFrame({"a": [1.0, 2.0]}).to_csv(tmp_path / "parts" / "more.csv", index=False)
    with pytest.raises(ValueError, match=r"more\.csv .*cannot be read as a stream.*Convert it to Parquet"):
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
    table = pq.read_table(paths[1])
    emb = np.stack(table.column("emb").to_pylist()).astype(np.float32)
    emb[9, 2] = np.nan
    pq.write_table(table.set_column(0, "emb", list_column(emb, fixed)), paths[1], row_group_size=ROW_GROUP)
    source = open_source(tmp_path / "parts")
    source.read(3)  # the file's first row group is clean
    with pytest.raises(ValueError, match=r"part-1\.parquet \(rows 8-13\) holds 1 missing, infinite or huge value "
                                         r"\(NaN, inf or beyond 1e\+15\), first in row 10, column 'emb\[2\]'"):
        source.read(4)


def test_a_missing_list_names_the_file_and_row(tmp_path):
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(12, np.float32)), 2,
                                            mask=pa.array([False, False, True, False, False, False]))
    pq.write_table(pa.table({"emb": emb}), tmp_path / "e.parquet")
    with pytest.raises(ValueError, match=r"e\.parquet \(rows 1-6\): list column 'emb' has 1 missing list, first "
                                         r"in row 3\."):
        open_source(tmp_path / "e.parquet").read(0)


def test_a_missing_scalar_names_the_file_and_row(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0, None, 4.0], "b": [1.0, 3.0, 2.0, 5.0]})
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    with pytest.raises(ValueError, match=r"t\.parquet \(rows 1-4\) holds 1 missing.*first in row 3, column 'a'"):
        open_source(tmp_path / "t.parquet").read(0)


def test_npy_files_of_other_row_shapes_are_named(tmp_path):
    (tmp_path / "parts").mkdir()
    np.save(tmp_path / "parts" / "a.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "parts" / "b.npy", np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"b\.npy holds rows of shape \(5,\), but .*a\.npy rows of shape \(3,\)"):
        open_source(tmp_path / "parts")


def test_a_one_dimensional_npy_is_refused(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"v\.npy holds an array of shape \(5,\), expected 2-D"):
        open_source(tmp_path / "v.npy")


def test_npy_files_hold_no_label_columns(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"label_columns, expected no label_columns for \.npy files"):
        open_source(tmp_path / "x.npy", label_column="x0")
