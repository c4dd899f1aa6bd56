"""The split and the epoch order: pure functions of the seed, the row count and block_rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aepca.data import EpochBatches, open_source
from aepca.data.order import TEST_SALT, hash_edges, held_out_mask, row_hash


def _rows(n_rows=1000, width=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n_rows, width)).astype(np.float32)


def _parquet_parts(x, folder, parts, row_group_size):
    folder.mkdir()
    for k, rows in enumerate(np.array_split(x, parts)):
        table = pa.table({f"c{j}": rows[:, j] for j in range(x.shape[1])})
        pq.write_table(table, folder / f"part-{k}.parquet", row_group_size=row_group_size)
    return folder


@pytest.mark.parametrize(("lanes", "batch_size"), [(1, 32), (2, 64), (4, 100)])
def test_positions_are_the_batches_chunks_read(lanes, batch_size):
    source = open_source(_rows(), block_rows=64).kept(0.2, 0, "validation")
    rows = source.to_array()
    batches = EpochBatches(source, seed=3, epoch=2, lanes=lanes, batch_size=batch_size)
    positions, weights = batches.positions()
    chunks = list(batches.chunks(5))
    read = np.concatenate([chunk_rows[:real] for chunk_rows, _, real in chunks])
    read_weights = np.concatenate([chunk_weights[:real] for _, chunk_weights, real in chunks])
    np.testing.assert_array_equal(read_weights, weights)
    np.testing.assert_array_equal(read[weights > 0], rows[positions[weights > 0]])
    # Every row once per epoch.
    np.testing.assert_array_equal(np.sort(positions[weights > 0]), np.arange(source.n_rows))


def test_blocks_do_not_depend_on_how_files_cut_the_rows(tmp_path):
    x = _rows(2100, 4)
    parts = open_source(_parquet_parts(x, tmp_path / "parts", parts=3, row_group_size=300), block_rows=256)
    array = open_source(x, block_rows=256)
    np.testing.assert_array_equal(parts.block_sizes, array.block_sizes)
    for i in range(array.n_blocks):
        np.testing.assert_array_equal(parts.read(i), array.read(i))
    np.testing.assert_array_equal(parts.kept(0.2, 1, TEST_SALT).to_array(), array.kept(0.2, 1, TEST_SALT).to_array())
    ours = EpochBatches(parts, seed=1, epoch=0, lanes=2, batch_size=64).positions()
    theirs = EpochBatches(array, seed=1, epoch=0, lanes=2, batch_size=64).positions()
    np.testing.assert_array_equal(ours[0], theirs[0])


def test_held_out_mask_is_the_rule_of_split_views():
    x = _rows(500)
    kept, held = open_source(x, block_rows=64).split(0.25, 7, TEST_SALT)
    mask = held_out_mask(len(x), 0.25, 7, TEST_SALT)
    np.testing.assert_array_equal(held.to_array(), x[mask])
    np.testing.assert_array_equal(kept.to_array(), x[~mask])


@pytest.mark.parametrize("n_rows, fraction, held", [(6, 0.2, 2), (20, 0.2, 4), (30, 0.1, 3), (1, 0.5, 1), (9_999, 0.1, 1000)])
def test_a_split_holds_out_exactly_the_ceiling_of_its_share(n_rows, fraction, held):
    mask = held_out_mask(n_rows, fraction, 0, TEST_SALT)
    assert mask.sum() == held
    # The rows of the smallest hashes.
    hashes = row_hash(0, TEST_SALT, np.arange(n_rows))
    assert hashes[mask].max(initial=0.0) < hashes[~mask].min(initial=1.0)


def test_a_split_of_a_view_holds_out_its_share_of_the_view_s_rows():
    x = _rows(1000)
    train, test = open_source(x, block_rows=64).split(0.2, 1, TEST_SALT)
    fit, validation = train.split(0.1, 1, "validation")
    assert (test.n_rows, validation.n_rows, fit.n_rows) == (200, 80, 720)
    hashes = np.concatenate(list(train.iter_row_hashes(1, "validation")))
    assert np.sort(hashes)[80] == np.sort(np.concatenate(list(fit.iter_row_hashes(1, "validation"))))[0]


def test_a_rank_outside_the_expected_window_is_found_by_widening_it(monkeypatch):
    ranks, hashes = [1, 500, 999], row_hash(2, "folds", np.arange(1000))
    expected = hash_edges(lambda: [hashes], 1000, ranks)
    assert expected == [float(np.sort(hashes)[r]) for r in ranks]
    monkeypatch.setattr("aepca.data.order._WINDOW_SIGMAS", 1e-3)  # windows that miss at first
    assert hash_edges(lambda: [hashes], 1000, ranks) == expected


def test_a_view_of_a_hash_interval_holds_the_rows_hashed_there():
    x = _rows(800)
    source = open_source(x, block_rows=100)
    inside = source.held_out(0.25, 3, "folds", start=0.5)
    outside = source.kept(0.25, 3, "folds", start=0.5)
    assert inside.n_rows + outside.n_rows == len(x)
    hashes = row_hash(3, "folds", np.arange(len(x)))
    np.testing.assert_array_equal(inside.to_array(), x[(hashes >= 0.5) & (hashes < 0.75)])
