"""Every kind of bad input, through the CLI and the Python API.

CLI: exit status 2, one line on stderr naming the problem, no traceback, and
the output folder left exactly as it was. API: ValueError (FileNotFoundError
or PermissionError for files). Property test: the estimator either refuses
input with a clear ValueError or gives finite output, never anything else.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aepca import PCA, Autoencoder
from aepca.cli import EXIT_USAGE, main
from aepca.data.readers import load_user_data

HEADER = "a,b,c,d,y\n"


def good_rows(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return "".join(f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{r[3]:.4f},{i % 2}\n" for i, r in enumerate(rng.random((n, 4))))


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def truncated_npz(tmp_path):
    full = tmp_path / "full.npz"
    np.savez(full, x=np.random.default_rng(0).random((50, 4)))
    return full.read_bytes()[:200]


# (file name, content, extra CLI args, text the one-line error must contain, ignoring case)
CASES = {
    "nan": ("data.csv", HEADER + good_rows() + "0.1,nan,0.3,0.4,1\n", ["--label-column", "y"],
            "data.csv (training rows) has 1 missing value (NaN or empty cells) in columns 'b'"),
    "inf": ("data.csv", HEADER + good_rows() + "0.1,inf,0.3,0.4,1\n", ["--label-column", "y"], "inf"),
    "text column": ("data.csv", "a,b,c,d,y\n" + "".join(f"0.1,0.2,x{i},0.4,1\n" for i in range(40)), [],
                    "data.csv has non-numeric columns 'c'"),
    "empty file": ("data.csv", "", [], "empty"),
    "header only": ("data.csv", HEADER, ["--label-column", "y"], "data.csv has 0 rows, expected at least 3"),
    "two rows": ("data.csv", HEADER + "0.1,0.2,0.3,0.4,1\n0.2,0.3,0.5,0.7,0\n", ["--label-column", "y"],
                 "data.csv has 2 rows, expected at least 3"),
    "huge values": ("data.csv", HEADER + good_rows() + "1e30,0.2,0.3,0.4,1\n", ["--label-column", "y"], "1e+30"),
    # Squared deviations of 1e-31 values underflow float32 (they left NaN standard deviations).
    "tiny spread": ("data.csv", HEADER + "".join(f"{(i % 7) * 1e-31:.1e},0.2,0.3,{i / 40:.3f},{i % 2}\n" for i in range(40)),
                    ["--label-column", "y"], "value for data.csv, expected columns that vary by at least 1e-15 or not at all (below, "
                    "float32 squared errors underflow). Received: columns 'a' varying by as little as "),
    "code size = features": ("data.csv", HEADER + good_rows(), ["--label-column", "y", "--code-dim", "4"],
                             "--code-dim, expected an integer from 1 to 3 (fewer than the 4 features). Received: --code-dim=4"),
    "one feature": ("data.csv", "a,y\n" + "".join(f"{i / 40:.3f},{i % 2}\n" for i in range(40)), ["--label-column", "y"],
                    "data, expected at least 2 features, so that a code of fewer can be learned. Received: data of 1 feature"),
    # Said of the budget as given (the run spends part of it before training, and keeps none back here).
    "budget too small": ("data.csv", HEADER + good_rows(), ["--label-column", "y", "--time-budget", "1s"],
                         "this run needs besides training. Received: --time-budget 1s. Give the run a larger budget."),
    "unknown extension": ("data.xls", "whatever", [], ".csv"),
    "text named xlsx": ("data.xlsx", "whatever", [], "data.xlsx is not a readable Excel file"),
    "text named parquet": ("data.parquet", "this is not parquet\n", [], "data.parquet"),
    "truncated npz": ("data.npz", None, [], "data.npz"),
    "missing label column": ("data.csv", HEADER + good_rows(), ["--label-column", "label"], "label"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_refuses_bad_input_with_one_line_and_exit_2(tmp_path, capsys, case):
    name, content, extra, expected = CASES[case]
    if content is None:
        content = truncated_npz(tmp_path)
    path = write(tmp_path, name, content)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    code = main(["compare", str(path), *extra, "--epochs", "1", "--hidden", "4", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE
    assert err.startswith("aepca: error: ") and "\n" not in err and "Traceback" not in err, err
    assert expected.lower() in err.lower(), err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "earlier result"


def test_cli_names_the_training_file_and_its_columns_beside_a_test_file(tmp_path, capsys):
    name, content, extra, expected = CASES["tiny spread"]
    path, test = write(tmp_path, name, content), write(tmp_path, "test.csv", content)
    code = main(["compare", str(path), "--test", str(test), *extra, "--epochs", "1", "--hidden", "4", "--no-progress",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and expected.lower() in err.lower(), err


def test_cli_missing_file(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "out")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "nope.csv" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_unwritable_out(tmp_path, capsys):
    path = write(tmp_path, "data.csv", HEADER + good_rows())
    # Root ignores permission bits, so make the path impossible instead: a folder under a file.
    blocker = write(tmp_path, "file.txt", "a file, not a folder")
    out = blocker / "out"
    assert main(["compare", str(path), "--label-column", "y", "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == f"aepca: error: --out {out}: {blocker} is a file, not a folder; choose another path."
    assert blocker.read_text() == "a file, not a folder"


@pytest.mark.parametrize("case", ["nan", "text column", "two rows", "huge values", "empty file", "truncated npz"])
def test_api_readers_raise_value_error(tmp_path, case):
    name, content, _, expected = CASES[case]
    if content is None:
        content = truncated_npz(tmp_path)
    path = write(tmp_path, name, content)
    with pytest.raises(ValueError, match=f"(?i){re.escape(expected)}"):
        load_user_data(path)


@pytest.mark.parametrize("form", ["DataFrame", "Arrow"])
@pytest.mark.parametrize(("case", "column"), [("text column", "c"), ("nan", "b"), ("inf", "b"), ("huge values", "a")])
def test_api_fit_of_a_table_names_the_column_and_the_fix_as_the_command_does(case, column, form):
    _, content, _, _ = CASES[case]
    frame = pd.read_csv(io.StringIO(content)).drop(columns="y")
    table = frame if form == "DataFrame" else pa.Table.from_pandas(frame)
    with pytest.raises(ValueError) as info:
        Autoencoder(1, recipe="classic", hidden=(2,), epochs=1).fit(table)
    message = str(info.value)
    assert f"column {column!r}" in message or f"columns {column!r}" in message, message
    assert "\n" not in message and "could not convert" not in message
    assert ("Features must be numbers" if case == "text column" else "Fill or remove those rows") in message


@pytest.mark.parametrize("form", ["DataFrame", "Arrow"])
def test_pca_and_the_autoencoder_refuse_a_text_column_with_one_message(form):
    frame = pd.read_csv(io.StringIO(CASES["text column"][1])).drop(columns="y")
    table = frame if form == "DataFrame" else pa.Table.from_pandas(frame)
    messages = []
    for estimator in (PCA(1), Autoencoder(1, recipe="classic", hidden=(2,), epochs=1)):
        with pytest.raises(ValueError, match=r"has non-numeric columns 'c' \(e\.g\. 'c' holds .*Features must be numbers"
                                             r".*aepca\.open_source\(X, categorical=") as info:
            estimator.fit(table)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("estimator", [PCA(1), Autoencoder(1, recipe="classic", hidden=(2,), epochs=1)], ids=["PCA", "Autoencoder"])
def test_an_array_holding_text_is_refused_with_the_cell_and_the_fix(estimator):
    rows = pd.read_csv(io.StringIO(CASES["text column"][1])).drop(columns="y").to_numpy()  # object array: 'c' is text
    with pytest.raises(ValueError, match=r"^X holds text where features must be numbers \(.*'x0'\)\. Pass a DataFrame"):
        estimator.fit(rows)


def test_api_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_user_data(tmp_path / "nope.csv")


@pytest.fixture(scope="module")
def tiny_model():
    x = np.random.default_rng(0).random((60, 5)).astype(np.float32)
    return Autoencoder(2, recipe="classic", hidden=(4,), epochs=1, random_state=0).fit(x)


@pytest.mark.parametrize(
    "method, X, match",
    [
        ("transform", np.zeros((3, 4)), "5 features"),
        ("transform", np.zeros(5), "1-D|2D array|reshape"),
        ("transform", np.array([["a"] * 5] * 3, dtype=object), r"X holds text where features must be numbers .*'a'.*Pass a DataFrame"),
        ("transform", np.full((3, 5), np.nan), "NaN"),
        ("inverse_transform", np.zeros((3, 3)), "codes of shape"),
        ("inverse_transform", np.full((3, 2), np.inf), "NaN or infinite"),
        ("score", np.zeros((3, 6)), "5 features"),
    ],
)
def test_api_transform_time_input_is_checked(tiny_model, method, X, match):
    with pytest.raises(ValueError, match=match):
        getattr(tiny_model, method)(X)


@pytest.mark.parametrize(
    "X, params, match",
    [
        (np.zeros((10, 3)), {"n_components": 4}, "n_components"),
        (np.zeros((1, 3)), {}, "sample"),
        (np.full((10, 3), np.inf), {}, "infinity|inf"),
    ],
)
def test_api_fit_input_is_checked(X, params, match):
    with pytest.raises(ValueError, match=match):
        Autoencoder(recipe="classic", **{"n_components": 1, "hidden": (2,), "epochs": 1, **params}).fit(X)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_rows=st.integers(min_value=0, max_value=12),
    n_cols=st.integers(min_value=1, max_value=4),
    dtype=st.sampled_from(["float32", "float64", "int64", "bool", "object"]),
    nan_at=st.one_of(st.none(), st.tuples(st.integers(0, 11), st.integers(0, 3))),
    scale=st.sampled_from([1.0, 1e6, 1e30]),
)
def test_property_estimator_refuses_clearly_or_returns_finite(tiny_model, n_rows, n_cols, dtype, nan_at, scale):
    rng = np.random.default_rng(n_rows * 7 + n_cols)
    X = rng.random((n_rows, n_cols)) * scale
    if nan_at is not None and nan_at[0] < n_rows and nan_at[1] < n_cols:
        X[nan_at] = np.nan
    with np.errstate(invalid="ignore"):  # NaN cast to an integer type is any integer: fine here
        X = X.astype(dtype) if dtype != "object" else X.astype(str).astype(object)
    try:
        model = Autoencoder(1, recipe="classic", hidden=(2,), epochs=1, scale="standard", random_state=0).fit(X)
    except ValueError as error:
        assert str(error).strip(), "an error must say what is wrong"
        return
    codes = model.transform(X)
    assert np.all(np.isfinite(codes)) and np.all(np.isfinite(model.inverse_transform(codes)))
