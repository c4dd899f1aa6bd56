"""Tables with categories: ``categorical="onehot"`` (``--categorical onehot``) encodes text, categorical and
boolean columns as indicators learned on the training rows; compare reports each method's category
accuracy, reconstructions decode categories, and a saved model applies the encoding to new rows."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from aepca.cli import EXIT_USAGE, main
from aepca.data import open_source, read_table
from aepca.data.columns import ColumnSpec
from aepca.data.readers import load_user_data

TEAMS = ("blue", "green", "red")


def _table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Three numbers driven by one factor, a text column (its sign and size) and a boolean column."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    return pd.DataFrame({
        "x0": np.round(z + 0.1 * rng.standard_normal(n), 4),
        "x1": np.round(-z + 0.1 * rng.standard_normal(n), 4),
        "x2": np.round(rng.standard_normal(n), 4),
        "team": np.array(TEAMS)[np.digitize(z, [-0.5, 0.5])],
        "home": z > 0,
    })


@pytest.fixture
def table_csv(tmp_path):
    path = tmp_path / "teams.csv"
    _table().to_csv(path, index=False)
    return path


def _unseen() -> pd.DataFrame:
    """Test rows of the table's columns, two of them in a team that no training row has."""
    frame = _table(40, seed=1)
    frame.loc[[3, 7], "team"] = "purple"
    return frame


@pytest.fixture
def unseen_csv(tmp_path):
    path = tmp_path / "new.csv"
    _unseen().to_csv(path, index=False)
    return path


# --- reading -------------------------------------------------------------------------------------


def test_the_default_refuses_text_columns_with_the_hint(table_csv):
    with pytest.raises(ValueError, match=r"non-numeric columns 'team'.*--categorical onehot.*--drop-columns"):
        read_table(table_csv)


def test_the_default_reads_a_boolean_column_as_a_0_1_number(table_csv):
    table = read_table(table_csv, drop_columns=["team"])
    assert table.feature_names == ("x0", "x1", "x2", "home")
    np.testing.assert_array_equal(table.features[:, 3], _table()["home"].to_numpy(np.float32))


def test_onehot_gives_one_indicator_per_training_category(table_csv):
    table = read_table(table_csv, categorical="onehot")
    indicators = [f"team={team}" for team in TEAMS] + ["home=False", "home=True"]
    assert table.feature_names == ("x0", "x1", "x2", *indicators)
    assert table.columns.categories == {"team": TEAMS, "home": ("False", "True")}
    frame = _table()
    expected = np.column_stack([frame["team"] == team for team in TEAMS] + [~frame["home"], frame["home"]])
    np.testing.assert_array_equal(table.features[:, 3:], expected.astype(np.float32))


def test_categories_are_learned_on_the_training_rows_only(table_csv, unseen_csv):
    data = load_user_data(table_csv, test=unseen_csv, categorical="onehot")
    assert data.columns.categories["team"] == TEAMS
    team = data.x_test[:, 3:6]
    # The unseen team has no indicator of its own: all zeros, not an error.
    np.testing.assert_array_equal(team[[3, 7]], 0.0)
    assert np.all(np.delete(team, [3, 7], axis=0).sum(axis=1) == 1.0)
    assert any("categorical column 'team' encoded as 3 indicators" in line for line in data.notes["preprocessing"])


def test_a_column_of_51_values_is_refused_naming_its_count(tmp_path):
    frame = _table(300)
    frame["name"] = [f"person {i % 51}" for i in range(len(frame))]
    path = tmp_path / "names.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"column 'name' has 51 distinct values in the training rows, more than "
                                         r"max_categories=50.*--drop-columns name"):
        read_table(path, categorical="onehot")
    assert read_table(path, categorical="onehot", max_categories=51).columns.categories["name"][0] == "person 0"


@pytest.mark.parametrize("options, message", [
    ({"categorical": "ordinal"}, r"one of \['refuse', 'onehot'\]. Received: categorical='ordinal'"),
    ({"categorical": "onehot", "max_categories": 1}, r"max_categories=1"),
])
def test_bad_options_are_refused(table_csv, options, message):
    with pytest.raises(ValueError, match=message):
        read_table(table_csv, **options)


def test_a_file_opened_as_a_row_source_learns_the_categories_of_all_its_rows_a_block_at_a_time(tmp_path):
    frame = _table()
    frame.loc[200, "team"] = "purple"  # in the last of three blocks only
    frame.to_csv(tmp_path / "teams.csv", index=False)
    source = open_source(tmp_path / "teams.csv", categorical="onehot", block_rows=100)
    assert source.columns.categories == {"team": ("blue", "green", "purple", "red"), "home": ("False", "True")}
    np.testing.assert_array_equal(source.to_array(), open_source(frame, categorical="onehot").to_array())


def test_a_column_empty_in_the_first_block_is_categorical_if_later_rows_hold_text_as_read_whole(tmp_path):
    frame = _table(300)
    frame["referrer"] = None
    frame.loc[250:, "referrer"] = ["web", "mail"] * 25  # the first two blocks of 100 rows hold none
    frame["late"] = np.nan
    frame.loc[250:, "late"] = np.arange(50) / 7  # numbers alone: stays a number
    frame.to_csv(tmp_path / "late.csv", index=False)
    whole = read_table(tmp_path / "late.csv", categorical="onehot", impute="mean")
    source = open_source(tmp_path / "late.csv", categorical="onehot", block_rows=100)
    assert source.columns.categories["referrer"] == ("mail", "web") and "late" in source.feature_names
    assert source.feature_names == whole.feature_names
    features = source.respecified(whole.columns).to_array()  # the whole file's fill values for 'late'
    np.testing.assert_allclose(features, whole.features, rtol=np.finfo(np.float32).eps)


def test_a_file_of_too_many_categories_is_refused_naming_the_rows_read(tmp_path):
    frame = _table(300)
    frame["name"] = [f"person {i}" for i in range(len(frame))]
    frame.to_csv(tmp_path / "names.csv", index=False)
    # Reading stops at the block where the count passes the limit: the error says how far it read.
    with pytest.raises(ValueError, match=r"column 'name' has 100 distinct values in its first 100 rows, more than "
                                         r"max_categories=50"):
        open_source(tmp_path / "names.csv", categorical="onehot", block_rows=100)


def test_a_dataframe_as_a_row_source_is_encoded(table_csv):
    source = open_source(_table(), categorical="onehot")
    np.testing.assert_array_equal(source.to_array(), read_table(table_csv, categorical="onehot").features)


def test_the_specification_round_trips_and_decodes_the_largest_indicator():
    spec = ColumnSpec(columns=("x", "team"), feature_names=("x", "team=a", "team=b"), categories={"team": ("a", "b")})
    assert ColumnSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    rows = np.array([[0.0, 0.2, 0.7], [1.0, 0.6, 0.5]], np.float32)
    np.testing.assert_array_equal(spec.decode(rows)["team"], ["b", "a"])
    truth = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], np.float32)  # the second row's category is unseen
    np.testing.assert_array_equal(spec.category_counts(truth, rows), [1, 1, 1])


# --- compare, the command, a saved model ----------------------------------------------------------------


def test_python_compare_reports_category_accuracy_and_unseen_cells():
    from aepca.experiments.compare import compare

    metrics = compare(_table(), test=_unseen(), code_dim=1, categorical="onehot", epochs=1).metrics
    assert metrics["categories"]["columns"] == {"team": list(TEAMS), "home": ["False", "True"]}
    # Under auto, a table with categories is standardised (docs/categorical.md), and the record says why.
    assert metrics["scale"] == "standard" and "categorical columns" in metrics["scale_reason"]
    # 40 test rows x 2 categorical columns; the two purple teams are unseen.
    assert (metrics["categories"]["cells"], metrics["categories"]["unseen_cells"]) == (80, 2)
    for method in ("pca", "autoencoder"):
        assert 0.0 <= metrics[method]["category_accuracy"] <= 1.0
        assert metrics[method]["numeric_test_mse"] > 0.0
    # One factor drives every column: a 1-component PCA recovers most categories.
    assert metrics["pca"]["category_accuracy"] > 0.6


def test_the_command_runs_with_onehot_and_reconstruct_writes_decoded_categories(capsys, tmp_path, table_csv,
                                                                                unseen_csv):
    out = tmp_path / "run"
    status = main(["compare", str(table_csv), "--categorical", "onehot", "--code-dim", "1", "--recipe", "classic",
                   "--hidden", "8", "--epochs", "1", "--no-progress", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "category accuracy" in captured.out and "note: Category accuracy" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(0.0 <= metrics[m]["category_accuracy"] <= 1.0 for m in ("pca", "autoencoder"))
    assert "category accuracy" in (out / "report.html").read_text()

    # The saved model applies its encoding to new rows, an unseen category included.
    written = tmp_path / "reconstructed.csv"
    assert main(["reconstruct", str(out / "model"), str(unseen_csv), "--out", str(written)]) == 0
    result = pd.read_csv(written)
    assert len(result) == 40
    assert set(result["team"]) <= set(TEAMS) and set(result["home"].astype(str)) <= {"False", "True"}
    indicators = result[[f"team={team}" for team in TEAMS]].to_numpy()
    np.testing.assert_array_equal(result["team"], np.array(TEAMS)[indicators.argmax(axis=1)])
    stored = tmp_path / "reconstructed.h5"  # one HDF5 file: the decoded categories beside the numbers
    assert main(["reconstruct", str(out / "model"), str(unseen_csv), "--out", str(stored)]) == 0
    with h5py.File(stored) as file:
        team = list(file["categories"].attrs["columns"]).index("team")
        np.testing.assert_array_equal(file["categories"].asstr()[:, team], result["team"])
    workbook = tmp_path / "reconstructed.xlsx"
    assert main(["reconstruct", str(out / "model"), str(unseen_csv), "--out", str(workbook)]) == 0
    np.testing.assert_array_equal(pd.read_excel(workbook)["team"], result["team"])
    codes = tmp_path / "codes.parquet"
    assert main(["encode", str(out / "model"), str(unseen_csv), "--out", str(codes)]) == 0
    assert pd.read_parquet(codes).shape == (40, 1)


def test_a_saved_model_encodes_new_rows_as_in_training(tmp_path):
    from aepca.estimator import Autoencoder, load_model

    model = Autoencoder(n_components=1, epochs=1, random_state=0).fit(open_source(_table(), categorical="onehot"))
    model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    new = _table(20, seed=2)
    encoded = open_source(new, spec=model.column_spec()).to_array()
    assert encoded.shape == (20, 8)
    np.testing.assert_array_equal(loaded.transform(new), model.transform(encoded))


def test_encoding_new_rows_notes_their_cells_of_an_unseen_category_or_none(tmp_path):
    from aepca.apply import encode_file
    from aepca.estimator import Autoencoder

    model = Autoencoder(n_components=1, recipe="classic", hidden=(8,), epochs=1, random_state=0)
    model.fit(open_source(_table(), categorical="onehot"))
    new = _unseen()  # rows 4 and 8 (from 1) in the unseen team "purple"
    new.loc[9, "team"] = None
    notes = encode_file(model, new, tmp_path / "codes.csv")["notes"]
    assert notes[0] == ("3 cells held a category unseen in training or none (3 cells of 'team', first in row 4): "
                        "encoded as all-zero indicators, so those rows' codes and reconstructions rest on their "
                        "other columns.")
    assert not any("unseen" in note for note in encode_file(model, _table(20, seed=2), tmp_path / "more.csv")["notes"])


def test_streamed_categories_are_learned_on_the_training_rows_as_when_read_whole(tmp_path):
    from aepca.data.order import TEST_SALT, held_out_mask

    frame = _table(600)
    test_rows = np.flatnonzero(held_out_mask(len(frame), 0.2, 0, TEST_SALT))
    frame.loc[test_rows[:2], "team"] = "purple"  # a category of two test rows: no indicator, as read whole
    frame.loc[test_rows[2], "x2"] = np.nan
    frame.to_csv(tmp_path / "teams.csv", index=False)
    metrics = {}
    for how in ("whole", "stream"):
        argv = ["compare", str(tmp_path / "teams.csv"), "--categorical", "onehot", "--impute", "mean", "--code-dim",
                "2", "--recipe", "classic", "--hidden", "8", "--epochs", "1", "--block-rows", "200", "--no-progress",
                "--out", str(tmp_path / how)]
        assert main(argv + (["--stream"] if how == "stream" else [])) == 0
        metrics[how] = json.loads((tmp_path / how / "metrics.json").read_text())
    whole, stream = metrics["whole"], metrics["stream"]
    assert stream["categories"] == whole["categories"]
    assert stream["categories"]["columns"]["team"] == list(TEAMS) and stream["categories"]["unseen_cells"] == 2
    columns = "column_test_mse_original_units"
    assert stream[columns]["columns"] == whole[columns]["columns"]
    # The record says the same of the columns and their cleaning (the stream adds how it read the blocks).
    said = [line for line in stream["run"]["preprocessing"] if not line.startswith("read from")]
    assert said == whole["run"]["preprocessing"] and "categorical column 'team' encoded as 3 indicators" in said[0]
    for method in ("pca", "autoencoder"):
        for key in ("test_mse", "category_accuracy"):
            np.testing.assert_allclose(stream[method][key], whole[method][key], rtol=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["--max-categories", "2"], "column 'team' has 3 distinct values in the training rows"),
    (["--stream", "--max-categories", "2"], "column 'team' has 3 distinct values in its rows"),
])
def test_the_command_refuses_in_one_line(capsys, tmp_path, table_csv, argv, message):
    status = main(["compare", str(table_csv), "--categorical", "onehot", *argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and message in err and len(err.strip().splitlines()) == 1
