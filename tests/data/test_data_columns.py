"""Column control: choosing features, ids and labels, list columns, identifiers, CSV layouts, the column spec."""

import json
import re
import shlex
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aepca.data import ColumnSpec, load_user_data, read_table
from aepca.data.formats import SNIFF_CHARS
from aepca.data.sources import open_source
from aepca.data.columns import shorten
from conftest import float_tolerance

N = 12
RNG = np.random.default_rng(0)
# Floats with distinct values are measurements, not ids; customer_id is unique but shuffled.
PEOPLE = pd.DataFrame({
    "customer_id": RNG.permutation(1000)[:N] + 5000,
    "age": RNG.uniform(20, 60, N).round(2),
    "income": RNG.uniform(1, 9, N).round(3),
    "emb_a": RNG.standard_normal(N).round(4),
    "emb_b": RNG.standard_normal(N).round(4),
    "segment": ["gold", "silver", "bronze"] * (N // 3),
    "churned": [0, 1] * (N // 2),
})


def csv_file(tmp_path, frame=PEOPLE, name="d.csv", **kwargs):
    path = tmp_path / name
    frame.to_csv(path, index=False, **kwargs)
    return path


def embeddings_parquet(tmp_path, *, fixed=False, n=N, dim=4, seed=1):
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    values = pa.array(emb.ravel())
    column = (pa.FixedSizeListArray.from_arrays(values, dim) if fixed
              else pa.ListArray.from_arrays(pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32)), values))
    table = pa.table({"doc_id": pa.array(rng.permutation(10 * n)[:n]), "length": rng.uniform(size=n), "emb": column})
    path = tmp_path / "e.parquet"
    pq.write_table(table, path, row_group_size=5)  # several chunks
    return path, emb, table


# --- choosing columns ---------------------------------------------------------------------------------


def test_columns_select_by_name_and_pattern_in_the_given_order(tmp_path):
    table = read_table(csv_file(tmp_path), columns=["income", "emb_*"])
    assert table.feature_names == ("income", "emb_a", "emb_b")
    np.testing.assert_array_equal(table.features[:, 0], PEOPLE["income"].astype(np.float32))


def test_drop_columns_by_pattern(tmp_path):
    table = read_table(csv_file(tmp_path), drop_columns=["emb_*", "segment"], id_column="customer_id",
                       label_column="churned")
    assert table.feature_names == ("age", "income")
    assert table.columns.dropped_columns == ("emb_a", "emb_b", "segment")


def test_a_pattern_matching_nothing_lists_at_most_ten_columns(tmp_path):
    wide = pd.DataFrame(RNG.standard_normal((4, 15)), columns=[f"c{i}" for i in range(15)])
    with pytest.raises(ValueError, match=r"'c0', 'c1', .*'c9' and 5 more\. Received: columns entry 'emb\*', which "
                                         r"matches no column") as info:
        read_table(csv_file(tmp_path, wide), columns=["c1", "emb*"])
    assert "'c10'" not in str(info.value)


def test_id_column_is_kept_beside_the_rows_and_split_with_them(tmp_path):
    data = load_user_data(csv_file(tmp_path), id_column="customer_id", label_columns=["segment", "churned"], seed=4)
    assert data.feature_names == ("age", "income", "emb_a", "emb_b")
    by_id = PEOPLE.set_index("customer_id")
    for ids, x in ((data.ids_train, data.x_train), (data.ids_test, data.x_test)):
        np.testing.assert_array_equal(x[:, 0], by_id.loc[ids, "age"].astype(np.float32))
    assert "column 'customer_id' kept beside the rows" in data.notes["preprocessing"][0]


def test_a_test_file_brings_its_own_ids(tmp_path):
    train = csv_file(tmp_path, PEOPLE.iloc[:8], name="train.csv")
    test = csv_file(tmp_path, PEOPLE.iloc[8:, ::-1], name="test.csv")  # columns in another order
    data = load_user_data(train, test=test, id_column="customer_id", label_column="segment")
    np.testing.assert_array_equal(data.ids_test, PEOPLE["customer_id"].iloc[8:])
    np.testing.assert_array_equal(data.x_test[:, 0], PEOPLE["age"].iloc[8:].astype(np.float32))


def test_label_columns_repeat_and_the_first_is_y(tmp_path):
    data = load_user_data(csv_file(tmp_path), id_column="customer_id", label_columns=("segment", "churned"))
    assert list(data.all_labels_train) == ["segment", "churned"]
    np.testing.assert_array_equal(data.y_train, data.all_labels_train["segment"])
    by_id = PEOPLE.set_index("customer_id")
    np.testing.assert_array_equal(data.all_labels_test["churned"], by_id.loc[data.ids_test, "churned"])
    table = read_table(csv_file(tmp_path), label_column="segment", label_columns=["churned"], id_column="customer_id")
    assert table.columns.label_columns == ("segment", "churned") and list(table.labels[:3]) == ["gold", "silver", "bronze"]


# --- non-numeric columns ------------------------------------------------------------------------------


def test_non_numeric_error_lists_every_such_column(tmp_path):
    frame = PEOPLE.assign(**{f"t{i}": [f"w{i}"] * N for i in range(7)})
    with pytest.raises(ValueError, match=r"non-numeric columns 'segment', 't0', 't1', 't2', 't3', 't4', 't5', 't6' "
                                         r"\(e\.g\. 'segment' holds 'gold'\)"):
        read_table(csv_file(tmp_path, frame), id_column="customer_id")


def test_non_numeric_advice_leaves_out_what_was_done(tmp_path):
    with pytest.raises(ValueError) as info:
        read_table(csv_file(tmp_path), label_column="churned", id_column="customer_id")
    message = str(info.value)
    assert "non-numeric columns 'segment'" in message and "--drop-columns" in message
    assert "--label-column NAME" not in message and "--id-column NAME" not in message
    with pytest.raises(ValueError, match=r"take them out of --columns"):
        read_table(csv_file(tmp_path), columns=["age", "seg*"])


def test_quoted_cells_are_shortened(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("a,b\n1,2\n3," + "x" * 6000 + "\n5,6\n")
    with pytest.raises(ValueError) as info:
        read_table(path)
    assert len(str(info.value)) < 500 and "xxx..." in str(info.value)
    assert shorten(np.arange(384.0)).endswith("...") and len(shorten(np.arange(384.0))) == 80
    assert shorten("Paris") == "'Paris'" and shorten(np.str_("a")) == "'a'"


def test_a_list_column_of_text_is_quoted_short(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0, 4.0], "tags": [["word"] * 500] * 3}), path)
    with pytest.raises(ValueError, match=r"non-numeric columns 'tags'") as info:
        read_table(path)
    assert len(str(info.value)) < 500


# --- list columns -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixed", [False, True])
def test_parquet_list_column_is_expanded_into_features(tmp_path, fixed):
    path, emb, _ = embeddings_parquet(tmp_path, fixed=fixed)
    table = read_table(path, id_column="doc_id")
    assert table.feature_names == ("length", "emb[0]", "emb[1]", "emb[2]", "emb[3]")
    np.testing.assert_array_equal(table.features[:, 1:], emb)
    assert table.columns.columns == ("length", "emb") and table.columns.list_lengths == {"emb": 4}
    assert read_table(path, id_column="doc_id", columns=["emb"]).feature_names == tuple(f"emb[{i}]" for i in range(4))


def test_missing_lists_are_missing_values(tmp_path):
    path = tmp_path / "m.parquet"
    values = [[1.0, 2.0], None, [3.0, 5.0], [4.0, 1.0]]
    pq.write_table(pa.table({"emb": pa.array(values, type=pa.list_(pa.float64(), 2))}), path)
    with pytest.raises(ValueError, match=r"2 missing values .* 'emb\[0\]', 'emb\[1\]'"):
        read_table(path)
    # The mean of three values, held as float32.
    np.testing.assert_allclose(read_table(path, impute="mean").features[1], [8 / 3, 8 / 3],
                               rtol=float_tolerance(np.float32, 1.0, 3))


def test_decimal_columns_are_numbers(tmp_path):
    """Decimals (as SQL exports write prices and amounts) are features, read whole or a block at a time."""
    path = tmp_path / "d.parquet"
    price = [Decimal("1.25"), Decimal("-3.50"), Decimal("7.00"), Decimal("2.75")]
    count = [Decimal(3), Decimal(3), Decimal(9), Decimal(1)]
    pq.write_table(pa.table({"price": pa.array(price, pa.decimal128(6, 2)), "count": pa.array(count, pa.decimal128(6, 0)),
                             "pair": pa.array([[p, p * 2] for p in price], pa.list_(pa.decimal128(6, 2), 2))}), path)
    expected = np.array([[float(p), float(c), float(p), float(p * 2)] for p, c in zip(price, count)], np.float32)
    np.testing.assert_array_equal(read_table(path).features, expected)
    np.testing.assert_array_equal(open_source(path).read(0), expected)


def test_whole_decimals_numbering_the_rows_are_told_apart_as_an_identifier(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"id": pa.array([Decimal(i) for i in range(40)], pa.decimal128(10, 0)),
                             "a": np.arange(40.0) % 7, "b": np.arange(40.0) % 5}), path)
    with pytest.raises(ValueError, match=r"column 'id' looks like a row identifier \(unique integers, in order\)"):
        read_table(path)
    assert list(read_table(path, id_column="id").ids[:3]) == [0, 1, 2]


def test_ragged_list_column_names_the_lengths(tmp_path):
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"emb": [[1.0, 2.0], [3.0], [4.0, 5.0], [1.0, 1.0]]}), path)
    with pytest.raises(ValueError, match=r"list column 'emb' holds lists of different lengths: 2 \(3 rows\), "
                                         r"1 \(1 row\), expected the same number"):
        read_table(path)


# --- identifiers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "name", "why"),
    [
        (PEOPLE.drop(columns=["segment"]), "customer_id", "named like an id"),
        (pd.DataFrame({"row": np.arange(20) * 7, "x": RNG.standard_normal(20)}), "row", "in order"),
        # The index pandas writes by default: its name quoted for a shell.
        (pd.DataFrame({"x": RNG.standard_normal(20)}).reset_index(names="Unnamed: 0"), "Unnamed: 0", "in order"),
    ],
)
def test_integer_identifiers_are_refused_with_the_flags(tmp_path, frame, name, why):
    flag = shlex.quote(name)
    with pytest.raises(ValueError, match=rf"column '{name}' looks like a row identifier \(unique integers, {why}\).*"
                                         rf"--id-column {re.escape(flag)}; .*--drop-columns {re.escape(flag)}; .*--columns"
                                         r".* \(in Python: aepca\.open_source\(X, id_column=, drop_columns=, columns=\)\)\.$"):
        read_table(csv_file(tmp_path, frame))


def test_identifiers_pass_when_handled_and_floats_are_never_ids(tmp_path):
    path = csv_file(tmp_path, PEOPLE.drop(columns=["segment"]))
    assert "customer_id" not in read_table(path, id_column="customer_id").feature_names
    assert "customer_id" not in read_table(path, drop_columns="customer_id").feature_names
    assert read_table(path, columns=["customer_id", "age"]).feature_names == ("customer_id", "age")
    with pytest.raises(ValueError, match="looks like a row identifier"):
        read_table(path, columns=["cust*", "age"])  # a pattern is not a choice of that column
    ordered_floats = pd.DataFrame({"t": np.arange(20) + 0.5, "x": RNG.standard_normal(20)})
    assert read_table(csv_file(tmp_path, ordered_floats)).feature_names == ("t", "x")


# --- CSV layouts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("semicolon.csv", "a;b;c\n1.5;2;3\n2.5;3;1\n4;1;2\n"),
        ("decimal_commas.csv", "a;b;c\n1,5;2;3\n2,5;3;1\n4;1;2\n"),
        ("tabs.tsv", "a\tb\tc\n1.5\t2\t3\n2.5\t3\t1\n4\t1\t2\n"),
        ("tabs.csv", "a\tb\tc\n1.5\t2\t3\n2.5\t3\t1\n4\t1\t2\n"),
        # np.savetxt's layout (spaces; aligned columns have runs of them, and leading ones).
        ("spaces.txt", "a b c\n1.5 2 3\n2.5 3 1\n4 1 2\n"),
        ("aligned.dat", "  a    b  c\n 1.5   2  3\n 2.5   3  1\n   4\t 1  2\n"),
        ("spaces.csv", "a b c\n1.5 2 3\n2.5 3 1\n4 1 2\n"),
    ],
)
def test_delimiters_are_sniffed_and_tsv_is_read(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    table = read_table(path)
    assert table.feature_names == ("a", "b", "c")
    np.testing.assert_array_equal(table.features, [[1.5, 2, 3], [2.5, 3, 1], [4, 1, 2]])


def test_numbers_with_thousands_separators_are_read_as_numbers_and_said_so(tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text('region,amount\nnorth,"1,234.50"\nsouth,"-12,000"\neast,7.25\nwest,"3,001"\n')
    data = load_user_data(path, drop_columns="region", test_size=0.5, seed=0)
    assert sorted(np.concatenate([data.x_train, data.x_test])[:, 0]) == [-12000.0, 7.25, 1234.5, 3001.0]
    assert "numbers written with thousands separators (1,234.5) read as numbers" in data.notes["preprocessing"]


def test_a_windows_1252_csv_is_read_whole_and_a_block_at_a_time_with_its_names(tmp_path):
    path = tmp_path / "excel.csv"
    expected = np.array([[i + 0.5, i % 3] for i in range(10)])
    lines = "".join(f"{a:.1f};{b:.0f};Orléans {i}\n".replace(".", ",") for i, (a, b) in enumerate(expected))
    path.write_bytes(("température;débit;ville\n" + lines).encode("cp1252"))
    table = read_table(path, drop_columns="ville")
    assert table.feature_names == ("température", "débit")
    np.testing.assert_array_equal(table.features, expected)
    source = open_source(path, drop_columns="ville", block_rows=4)
    np.testing.assert_array_equal(np.concatenate(list(source.iter_blocks())), expected)
    notes = load_user_data(path, drop_columns="ville", test_size=0.5, seed=0).notes["preprocessing"]
    assert "read as Windows-1252 (Latin-1) text: it is not UTF-8" in notes


def test_a_csv_that_stops_being_utf8_after_its_first_lines_says_so(tmp_path):
    path = tmp_path / "late.csv"
    rows = "".join(f"{i},{i % 7}\n" for i in range(SNIFF_CHARS // 4))  # UTF-8 as far as the layout is sniffed
    path.write_bytes(("a,b\n" + rows).encode() + "1,2\nNîmes,3\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"late\.csv( \(rows \d+-\d+\))? is not UTF-8 text throughout \(its first lines "
                                         r"are\): byte 0xee is not\. Re-save the file as UTF-8"):
        list(open_source(path).iter_blocks())


def test_a_first_line_of_numbers_is_data(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("1,2\n3,5\n4,1\n6,0\n")
    table = read_table(path)
    assert table.feature_names == ("x0", "x1") and table.features.shape == (4, 2)
    data = load_user_data(path, test_size=0.5, seed=2)
    assert any("no header line" in line for line in data.notes["preprocessing"])


def test_no_header_forces_the_first_line_to_be_data(tmp_path):
    path = tmp_path / "pandas.csv"
    pd.DataFrame(RNG.standard_normal((4, 3))).to_csv(path, index=False)  # header 0,1,2: pandas's names
    assert read_table(path).feature_names == ("0", "1", "2")
    path.write_text("0,1,2\n1,5,2\n3,4,4\n")
    table = read_table(path, no_header=True)
    assert table.feature_names == ("x0", "x1", "x2") and table.features[0].tolist() == [0, 1, 2]


# --- the column specification -------------------------------------------------------------------------


def test_spec_round_trips_through_json_exactly(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,c\n0.1,,1\n0.2,5,1\n,6,1\n0.7,7,1\n")
    spec = read_table(path, impute="mean", drop_constant=True).columns
    again = ColumnSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.fill["a"] == (0.1 + 0.2 + 0.7) / 3
    assert spec.to_dict()["constant_columns"] == ["c"] and spec.feature_names == ("a", "b")
    with pytest.raises(ValueError, match=r"format 'aepca.columns'"):
        ColumnSpec.from_dict({"columns": ["a"]})


def test_spec_matches_columns_by_name(tmp_path):
    path, emb, table = embeddings_parquet(tmp_path)
    spec = read_table(path, id_column="doc_id").columns
    expected = spec.apply(table)
    frame = table.to_pandas()  # the list column as arrays in cells, as pandas reads it
    reordered = frame[["emb", "doc_id", "length"]].assign(extra="ignored")
    np.testing.assert_array_equal(spec.apply(reordered), expected)
    with pytest.raises(ValueError, match=r"lacks column 'length' that the model reads.*its columns: 'doc_id', 'emb'\)"):
        spec.apply(frame.drop(columns="length"))
    wrong = pa.table({"length": table["length"], "emb": pa.array([[1.0, 2.0]] * N)})
    with pytest.raises(ValueError, match=r"column 'emb' holds lists of 2 numbers, but the model reads lists of 4"):
        spec.apply(wrong)


def test_spec_imputes_as_in_training_and_checks_values(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,10\n,20\n3,30\n5,40\n")
    spec = read_table(path, impute="mean").columns
    np.testing.assert_array_equal(spec.apply(pd.DataFrame({"b": [1.0, np.nan], "a": [np.nan, 2.0]})), [[3, 1], [2, 25]])
    with pytest.raises(ValueError, match=r"infinite value"):
        spec.apply(pd.DataFrame({"a": [np.inf], "b": [1.0]}))


# --- the command line ---------------------------------------------------------------------------------


def test_cli_column_options_reach_the_reader(tmp_path):
    from aepca.cli import build_parser, read_data

    path = csv_file(tmp_path)
    args = build_parser().parse_args([
        "compare", str(path), "--id-column", "customer_id", "--label-column", "segment", "--label-column", "churned",
        "--columns", "age,emb_*", "--drop-columns", "emb_b",
    ])
    data = read_data(args)
    assert data.feature_names == ("age", "emb_a") and data.columns.label_columns == ("segment", "churned")
    assert len(data.ids_train) == len(data.x_train)
    no_header = tmp_path / "h.csv"
    no_header.write_text("".join(f"{i % 4}.5,{i * i % 5}\n" for i in range(6)))
    assert read_data(build_parser().parse_args(["compare", str(no_header), "--no-header"])).feature_names == ("x0", "x1")


def test_cli_na_values_reach_the_reader_whole_and_streamed(tmp_path):
    from aepca.cli import UsageError, build_parser, check_data_arguments, read_data, read_input

    path = tmp_path / "q.csv"
    path.write_text("a,b\n" + "".join(f"{i % 5}.5,{'?' if i % 4 == 0 else i % 7}\n" for i in range(40)))
    for streamed in ([], ["--stream"]):
        args = build_parser().parse_args(["compare", str(path), "--na-values", "?", "--impute", "mean", *streamed])
        data = read_input(args) if streamed else read_data(args)
        assert data.columns.na_values == ("?",)
    with pytest.raises(UsageError, match=r"--na-values applies to your own data file \(PATH\) only"):
        check_data_arguments(build_parser().parse_args(["compare", "--na-values", "?"]))


@pytest.mark.parametrize("option", [["--id-column", "a"], ["--columns", "a"], ["--drop-columns", "a"], ["--no-header"]])
def test_cli_column_options_need_a_path(option):
    from aepca.cli import UsageError, build_parser, check_data_arguments

    with pytest.raises(UsageError, match=rf"{option[0]} applies to your own data file \(PATH\) only"):
        check_data_arguments(build_parser().parse_args(["compare", *option]))


def test_cli_refuses_an_identifier_before_training(tmp_path, capsys):
    from aepca.cli import EXIT_USAGE, main

    path = csv_file(tmp_path, PEOPLE.drop(columns=["segment"]))
    out = tmp_path / "out"
    assert main(["compare", str(path), "--label-column", "churned", "--out", str(out), "--no-progress"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "column 'customer_id' looks like a row identifier" in err
    assert "--id-column customer_id" in err and (not out.exists() or not any(out.iterdir()))
