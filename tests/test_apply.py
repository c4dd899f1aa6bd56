"""A trained model applied to files: ``aepca encode`` and ``aepca reconstruct``, and the same from Python."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from aepca.apply import _write_text, encode_file
from aepca.cli import EXIT_USAGE, main
from aepca.data.order import TEST_SALT, held_out_mask
from aepca.estimator import Autoencoder, load_model
from conftest import dead_pid, float_tolerance, forward_roundings, mse_shift, optimizer_steps


# One worker runs the module, so its fixtures are built once (pytest-xdist's loadgroup).
pytestmark = pytest.mark.xdist_group("apply")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A table with an id and a text column, and the compare run trained on it."""
    folder = tmp_path_factory.mktemp("apply")
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((300, 2))
    features = np.tanh(latent @ rng.standard_normal((2, 6))) + 0.05 * rng.standard_normal((300, 6))
    frame = pd.DataFrame(features.round(5), columns=[f"f{i}" for i in range(6)])
    frame.insert(0, "customer_id", np.arange(1000, 1300))
    frame["note"] = [f"row {i}" for i in range(300)]
    csv = folder / "table.csv"
    frame.to_csv(csv, index=False)
    out = folder / "run"
    argv = ["compare", str(csv), "--id-column", "customer_id", "--drop-columns", "note", "--epochs", "2",
            "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    return folder, frame, out


def _codes_tolerance(model, codes) -> float:
    """The same float32 encoder in other blocks: the rounding of its layers' sums, at the codes' size."""
    return float_tolerance(np.float32, max(1.0, np.abs(codes).max()), np.sqrt(forward_roundings(model.encoder_)))


# How each table output is read back: Parquet, an Arrow stream (as Hugging Face datasets read), Feather v2,
# JSON Lines, an Excel workbook.
TABLE_READERS = {"parquet": pd.read_parquet, "feather": pd.read_feather,
                 "arrow": lambda path: pa.ipc.open_stream(str(path)).read_all().to_pandas(),
                 "jsonl": lambda path: pd.read_json(path, lines=True), "xlsx": pd.read_excel}


@pytest.mark.parametrize("suffix", sorted(TABLE_READERS))
def test_encode_writes_the_codes_of_python_transform_with_the_ids(run, capsys, suffix):
    folder, frame, out = run
    path = folder / f"codes.{suffix}"
    assert main(["encode", str(out / "model"), str(folder / "table.csv"), "--out", str(path), "--overwrite"]) == 0
    codes = TABLE_READERS[suffix](path)
    assert list(codes.columns) == ["customer_id", "code_0", "code_1"]
    np.testing.assert_array_equal(codes["customer_id"], frame["customer_id"])
    model = load_model(out / "model")
    expected = model.transform(frame)
    np.testing.assert_allclose(codes[["code_0", "code_1"]].to_numpy(), expected, rtol=0, atol=_codes_tolerance(model, expected))
    assert "note:" not in capsys.readouterr().out  # rows like the training rows


def test_more_rows_than_an_excel_sheet_holds_are_refused_leaving_nothing(run, capsys, monkeypatch):
    from aepca import apply

    folder, _, out = run
    monkeypatch.setattr(apply, "EXCEL_MAX_ROWS", 300)  # the table's 300 rows and a header: one too many
    path = folder / "too-long.xlsx"
    assert main(["encode", str(out / "model"), str(folder / "table.csv"), "--out", str(path)]) == EXIT_USAGE
    assert "at most 299 rows for an Excel sheet" in capsys.readouterr().err
    assert not path.exists() and not list(folder.glob(".*too-long*"))


def read_fvecs(path) -> np.ndarray:
    framed = np.fromfile(path, "<i4").reshape(-1, np.fromfile(path, "<i4", count=1)[0] + 1)
    assert (framed[:, 0] == framed.shape[1] - 1).all()  # every row its length first
    return framed[:, 1:].view("<f4")


def read_fbin(path) -> np.ndarray:
    rows, width = np.fromfile(path, "<u4", count=2)
    return np.fromfile(path, "<f4", offset=8).reshape(rows, width)


@pytest.mark.parametrize("suffix, read", [("fvecs", read_fvecs), ("fbin", read_fbin)])
def test_encode_writes_vector_files_as_the_ann_tools_read_them_with_the_ids_beside(run, suffix, read):
    folder, frame, out = run
    path = folder / f"codes.{suffix}"
    assert main(["encode", str(out / "model"), str(folder / "table.csv"), "--out", str(path), "--overwrite",
                 "--block-rows", "64"]) == 0
    model = load_model(out / "model")
    expected = model.transform(frame)
    np.testing.assert_allclose(read(path), expected, rtol=0, atol=_codes_tolerance(model, expected))
    np.testing.assert_array_equal(np.load(folder / "codes-ids.npy"), frame["customer_id"])


def test_encode_writes_one_hdf5_file_of_codes_and_ids_that_reads_back_as_data(run):
    import h5py

    from aepca.data import open_source

    folder, frame, out = run
    path = folder / "codes.h5"
    assert main(["encode", str(out / "model"), str(folder / "table.csv"), "--out", str(path), "--overwrite",
                 "--block-rows", "64"]) == 0
    model = load_model(out / "model")
    expected = model.transform(frame)
    with h5py.File(path) as file:
        assert list(file["x"].attrs["columns"]) == ["code_0", "code_1"] and file["ids"].attrs["name"] == "customer_id"
        codes = file["x"][:]
        np.testing.assert_array_equal(file["ids"][:], frame["customer_id"])
    np.testing.assert_allclose(codes, expected, rtol=0, atol=_codes_tolerance(model, expected))
    np.testing.assert_array_equal(open_source(path).to_array(), codes)  # the dataset aepca reads back


def test_json_lines_output_keeps_every_float32_value(tmp_path):
    """JSON text holds decimals: enough of them that every float32 value, tiny or huge, reads back the same."""
    values = (np.random.default_rng(0).standard_normal((4, 3)) * [[1e-6], [1e-3], [1], [1e20]]).astype(np.float32)
    rows, _ = _write_text(tmp_path / "v.jsonl", [(None, values, {}, ["a", "b", "c"], None)])
    back = pd.read_json(tmp_path / "v.jsonl", lines=True).to_numpy().astype(np.float32)
    assert rows == len(values)
    np.testing.assert_array_equal(back, values)


def test_rows_in_other_units_are_encoded_with_a_note(run, capsys):
    folder, frame, out = run
    features = [f"f{i}" for i in range(6)]
    frame.assign(**{name: frame[name] * 1000 for name in features}).to_csv(folder / "milli.csv", index=False)
    assert main(["encode", str(out / "model"), str(folder / "milli.csv"), "--out", str(folder / "milli-codes.csv")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("wrote codes of 300 rows")
    assert printed[1].startswith("note: the rows lie") and "were they scaled as the training rows were" in printed[1]


def test_a_compare_run_folder_is_read_as_the_model_inside_it(run):
    folder, _, out = run
    from_run, from_model = load_model(out), load_model(out / "model")
    for got, expected in zip(from_run.model_.get_weights(), from_model.model_.get_weights()):
        np.testing.assert_array_equal(got, expected)  # the same file read twice
    assert main(["encode", str(out), str(folder / "table.csv"), "--out", str(folder / "run_codes.csv")]) == 0


def test_reordered_columns_give_the_same_codes(run):
    folder, frame, out = run
    reordered = folder / "reordered.csv"
    frame[frame.columns[::-1]].to_csv(reordered, index=False)
    for name, source in (("a", folder / "table.csv"), ("b", reordered)):
        assert main(["encode", str(out / "model"), str(source), "--out", str(folder / f"{name}.npy"), "--block-rows", "64"]) == 0
    np.testing.assert_array_equal(np.load(folder / "a.npy"), np.load(folder / "b.npy"))
    np.testing.assert_array_equal(np.load(folder / "a-ids.npy"), frame["customer_id"])


@pytest.mark.parametrize("separator", [",", "\t"], ids=["csv", "tsv"])
def test_a_text_output_holds_the_ids_and_codes_with_its_separator(run, separator):
    folder, frame, out = run
    path = folder / f"codes-out.{'csv' if separator == ',' else 'tsv'}"
    assert main(["encode", str(out / "model"), str(folder / "table.csv"), "--out", str(path)]) == 0
    written = pd.read_csv(path, sep=separator)
    assert list(written.columns) == ["customer_id", "code_0", "code_1"]
    np.testing.assert_array_equal(written["customer_id"], frame["customer_id"])
    model = load_model(out / "model")
    expected = model.transform(frame)
    np.testing.assert_allclose(written[["code_0", "code_1"]].to_numpy(), expected, rtol=0,
                               atol=_codes_tolerance(model, expected))


def write_form(frame: pd.DataFrame, form: str, folder):
    """``frame`` as a file, a folder of three parts, or in memory (DataFrame, Arrow table)."""
    if form == "DataFrame":
        return frame
    if form == "Arrow":
        return pa.Table.from_pandas(frame, preserve_index=False)
    suffix = form.split()[0]

    def save(rows, path):
        rows.to_csv(path, index=False) if suffix == "csv" else rows.to_parquet(path, index=False)
        return path

    if not form.endswith("folder"):
        return save(frame, folder / f"data.{suffix}")
    target = folder / f"{suffix}_parts"
    target.mkdir()
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        save(frame.iloc[rows], target / f"part-{k}.{suffix}")
    return target


@pytest.mark.parametrize("form", ["csv", "parquet", "csv folder", "parquet folder", "DataFrame", "Arrow"])
def test_encode_reads_every_input_form_a_block_at_a_time(run, form):
    folder, frame, out = run
    model = load_model(out / "model")
    data = write_form(frame[frame.columns[::-1]], form, folder)  # the columns in another order
    written = encode_file(model, data, folder / f"codes-{form.replace(' ', '_')}.parquet", block_rows=64)
    codes = pd.read_parquet(written["files"][0])
    assert written["rows"] == len(frame) and list(codes.columns) == ["customer_id", "code_0", "code_1"]
    np.testing.assert_array_equal(codes["customer_id"], frame["customer_id"])
    expected = model.transform(frame)
    np.testing.assert_allclose(codes[["code_0", "code_1"]].to_numpy(), expected, rtol=0, atol=_codes_tolerance(model, expected))


def test_a_missing_column_exits_2_naming_it(run, capsys):
    folder, frame, out = run
    frame.drop(columns=["f3"]).to_csv(folder / "short.csv", index=False)
    assert main(["encode", str(out / "model"), str(folder / "short.csv"), "--out", str(folder / "x.csv")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'f3'" in err
    assert not (folder / "x.csv").exists()


def test_reconstruct_errors_average_to_the_reported_test_mse(run):
    folder, frame, out = run
    test = held_out_mask(len(frame), 0.2, 0, TEST_SALT)  # the command's test rows
    frame[test].to_csv(folder / "test.csv", index=False)
    assert main(["reconstruct", str(out / "model"), str(folder / "test.csv"), "--out", str(folder / "recon.csv")]) == 0
    reconstruction = pd.read_csv(folder / "recon.csv")
    assert list(reconstruction.columns) == ["customer_id", *[f"f{i}" for i in range(6)], "error"]
    reported = json.loads((out / "metrics.json").read_text())["autoencoder"]["test_mse"]
    # The same network on the same rows in other blocks: each value as far as its float32 pass rounds.
    model = load_model(out / "model")
    values = np.abs(model.scaler_.transform(frame[test][[f"f{i}" for i in range(6)]])).max()
    delta = float_tolerance(np.float32, values, np.sqrt(forward_roundings(model.model_)))
    assert reconstruction["error"].mean() == pytest.approx(reported, rel=0, abs=mse_shift(reported, delta))


def test_an_existing_output_is_kept_unless_overwrite(run, capsys):
    folder, _, out = run
    (folder / "taken.csv").write_text("keep me")
    assert main(["encode", str(out / "model"), str(folder / "table.csv"), "--out", str(folder / "taken.csv")]) == EXIT_USAGE
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (folder / "taken.csv").read_text() == "keep me"


def test_the_ids_an_output_writes_beside_it_are_kept_unless_overwrite(run, capsys):
    folder, _, out = run
    (folder / "other-ids.npy").write_text("keep me")
    argv = ["encode", str(out / "model"), str(folder / "table.csv"), "--out", str(folder / "other.fbin")]
    assert main(argv) == EXIT_USAGE
    assert f"--out {folder / 'other-ids.npy'} already exists; pass --overwrite" in capsys.readouterr().err
    assert (folder / "other-ids.npy").read_text() == "keep me" and not (folder / "other.fbin").exists()


def test_a_folder_named_as_a_file_beside_the_output_is_never_replaced(run, capsys):
    folder, _, out = run
    (folder / "kept-ids.npy").mkdir()
    (folder / "kept-ids.npy" / "mine.txt").write_text("keep me")
    argv = ["encode", str(out / "model"), str(folder / "table.csv"), "--out", str(folder / "kept.npy"), "--overwrite"]
    assert main(argv) == EXIT_USAGE
    assert f"writes kept-ids.npy beside it, and {folder / 'kept-ids.npy'} is a folder" in capsys.readouterr().err
    assert (folder / "kept-ids.npy" / "mine.txt").read_text() == "keep me"


def test_an_output_overwritten_without_ids_leaves_none_of_the_earlier_ones_beside_it(run):
    """Ids beside codes of other rows would be matched to them: replacing the codes removes them."""
    folder, frame, out = run
    frame.drop(columns="customer_id").iloc[:40].to_csv(folder / "no-ids.csv", index=False)
    for data in ("table.csv", "no-ids.csv"):
        assert main(["encode", str(out / "model"), str(folder / data), "--out", str(folder / "replaced.npy"), "--overwrite"]) == 0
    assert len(np.load(folder / "replaced.npy")) == 40 and not (folder / "replaced-ids.npy").exists()


@pytest.mark.parametrize("failing", ["placed.npy", "placed-ids.npy"])
def test_a_failure_placing_an_output_leaves_no_codes_beside_ids_of_other_rows(run, monkeypatch, failing):
    """Replacing codes and their ids is two moves: whichever fails, no codes are left beside ids of other rows."""
    import aepca.apply

    folder, frame, out = run
    model, path = load_model(out / "model"), folder / "placed.npy"
    encode_file(model, frame.iloc[:50], path, overwrite=True)
    place = os.replace

    def fail_one(source, destination):
        if Path(destination).name == failing:
            raise OSError("disk gone")
        place(source, destination)

    monkeypatch.setattr(aepca.apply.os, "replace", fail_one)
    with pytest.raises(OSError, match="disk gone"):
        encode_file(model, frame.iloc[:40], path, overwrite=True)
    assert not path.exists() or len(np.load(path)) == len(np.load(folder / "placed-ids.npy"))


def test_a_folder_given_as_the_output_is_refused_as_a_folder(run, capsys):
    folder, _, out = run
    assert main(["encode", str(out / "model"), str(folder / "table.csv"), "--out", str(folder)]) == EXIT_USAGE
    assert f"--out {folder} is a folder; name a file, e.g. {folder / 'codes.parquet'}" in capsys.readouterr().err


def test_encode_reads_the_half_of_a_split_file_that_split_names(run, capsys):
    folder, frame, out = run
    features = frame[[f"f{i}" for i in range(6)]].to_numpy(np.float32)
    np.savez(folder / "split.npz", x_train=features[:200], x_test=features[200:])  # mnist.npz's layout
    codes = folder / "split-codes.npy"
    assert main(["encode", str(out / "model"), str(folder / "split.npz"), "--split", "test", "--out", str(codes)]) == 0
    model = load_model(out / "model")
    expected = model.transform(features[200:])
    np.testing.assert_allclose(np.load(codes), expected, rtol=0, atol=_codes_tolerance(model, expected))
    capsys.readouterr()
    assert main(["encode", str(out / "model"), str(folder / "table.csv"), "--split", "test", "--out",
                 str(folder / "no.npy")]) == EXIT_USAGE
    assert "split='test' for " in capsys.readouterr().err and not (folder / "no.npy").exists()


def test_an_output_under_a_file_is_refused_before_the_model_is_read(run, capsys):
    folder, _, _ = run
    blocker = folder / "file.txt"
    blocker.write_text("a file, not a folder")
    out = blocker / "codes.csv"
    assert main(["encode", str(folder / "no-model"), str(folder / "table.csv"), "--out", str(out)]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"aepca: error: --out {out}: {blocker} is a file, not a folder; choose another path."


def test_an_encode_that_fails_on_its_data_makes_no_output_folders(run, capsys):
    folder, _, out = run
    assert main(["encode", str(out / "model"), str(folder / "missing.csv"), "--out", str(folder / "new" / "codes.csv")]) == EXIT_USAGE
    assert "missing.csv" in capsys.readouterr().err and not (folder / "new").exists()


def test_what_a_killed_encode_left_is_removed_by_the_next(run):
    folder, _, out = run
    left = folder / f".after-kill.parquet.tmp-{dead_pid()}@{socket.gethostname()}-abcd1234"
    left.mkdir()
    (left / "after-kill.parquet").write_bytes(b"half")
    assert main(["encode", str(out / "model"), str(folder / "table.csv"), "--out", str(folder / "after-kill.parquet")]) == 0
    assert not left.exists() and not [name for name in os.listdir(folder) if ".tmp-" in name]


def test_python_with_the_commands_defaults_equals_the_command(run):
    from aepca.data import load_user_data

    folder, _, out = run
    data = load_user_data(folder / "table.csv", id_column="customer_id", drop_columns=["note"])
    model = Autoencoder(2, recipe="fast", epochs=2, random_state=0).fit(data.x_train)
    reported = json.loads((out / "metrics.json").read_text())["autoencoder"]["test_mse"]
    # The same training: every step could carry one float32 rounding of another path into it.
    rel = float_tolerance(np.float32, 1.0, optimizer_steps(model, len(data.x_train)))
    assert -model.score(data.x_test) == pytest.approx(reported, rel=rel)


def test_a_saved_model_takes_its_own_table_without_warnings(run):
    import warnings

    folder, frame, out = run
    model = load_model(out / "model")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. scikit-learn's "X has feature names, but ... was fitted without"
        codes = model.transform(frame.drop(columns=["note"]))
    assert codes.shape == (300, 2)
