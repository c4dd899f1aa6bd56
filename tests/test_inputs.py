"""One pipeline for every input: an array, a sparse matrix, a DataFrame, an Arrow table, a file, a
folder, a pattern or a row source give the same rows, so the same model and the same answers."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import scipy.sparse
from sklearn.base import clone

from aepca import PCA, Autoencoder
from aepca.data import open_source
from aepca.experiments.compare import compare

EPS32 = np.finfo(np.float32).eps


def _rows(n_rows, n_features, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_rows, 3)) * np.array([3.0, 2.0, 1.0])
    return (np.tanh(latent @ rng.standard_normal((3, n_features)) / 2) + 0.05 * rng.standard_normal((n_rows, n_features))).astype(np.float32)


def _table(x, names):
    return pa.table({name: x[:, j] for j, name in enumerate(names)})


class Frame:
    """A table of another library (as polars' DataFrame is): it exports Arrow data (the PyCapsule
    interface) and has pandas-like ``columns``, ``dtypes`` and an array form of its own."""

    def __init__(self, table):
        self._table = table
        self.columns, self.dtypes, self.shape = table.column_names, [str(t) for t in table.schema.types], table.shape

    def __arrow_c_stream__(self, requested_schema=None):
        return self._table.__arrow_c_stream__(requested_schema)

    def __array__(self, dtype=None, copy=None):
        return np.column_stack([column.to_numpy() for column in self._table.columns]).astype(dtype)


def _write_forms(x, folder, names, parts=3, row_group_size=None):
    """``x`` as a .npy file, a Parquet file, a Feather file, an Arrow stream (record batches of 1,000 rows,
    as Hugging Face datasets save them), JSON Lines, vectors (.fvecs, as FAISS reads them), an HDF5 dataset
    and a folder of Parquet parts (other row groups)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "x.npy", x)
    pq.write_table(_table(x, names), folder / "x.parquet")
    feather.write_feather(_table(x, names), folder / "x.feather", chunksize=max(1, len(x) // 5))
    with pa.OSFile(str(folder / "x.arrow"), "wb") as file, pa.ipc.new_stream(file, _table(x, names).schema) as stream:
        for batch in _table(x, names).to_batches(max_chunksize=1000):
            stream.write_batch(batch)
    pd.DataFrame(x, columns=names).to_json(folder / "x.jsonl", orient="records", lines=True, double_precision=15)
    np.hstack([np.full((len(x), 1), x.shape[1], np.int32).view(np.float32), x]).tofile(folder / "x.fvecs")
    with h5py.File(folder / "x.h5", "w") as file:
        file["x"] = x
    (folder / "parts").mkdir()
    for k, rows in enumerate(np.array_split(x, parts)):
        pq.write_table(_table(rows, names), folder / "parts" / f"part-{k}.parquet",
                       row_group_size=row_group_size or max(1, len(rows) // 3))
    return {"npy": folder / "x.npy", "parquet": folder / "x.parquet", "feather": folder / "x.feather",
            "arrow stream": folder / "x.arrow", "jsonl": folder / "x.jsonl", "fvecs": folder / "x.fvecs", "h5": folder / "x.h5",
            "folder": folder / "parts",
            "pattern": str(folder / "parts" / "part-*.parquet")}


# The same model whatever form the rows arrive in -------------------------------------------------
# One worker runs the module, so its fixtures are built once (pytest-xdist's loadgroup).
pytestmark = pytest.mark.xdist_group("inputs")


@pytest.fixture(scope="module")
def comparisons(tmp_path_factory):
    x = _rows(30_000, 20)
    names = [f"c{j}" for j in range(20)]
    files = _write_forms(x, tmp_path_factory.mktemp("forms"), names)
    forms = {"array": x, "DataFrame": pd.DataFrame(x, columns=names), "npy": files["npy"],
             "Parquet file": files["parquet"], "Arrow stream": files["arrow stream"], "Parquet parts": files["folder"]}
    settings = dict(code_dim=2, recipe="classic", hidden=(16,), epochs=1, seed=0)
    return {form: compare(data, **settings) for form, data in forms.items()}


@pytest.mark.parametrize("form", ["DataFrame", "npy", "Parquet file", "Arrow stream", "Parquet parts"])
def test_the_same_rows_and_seed_give_the_same_model_in_every_form(comparisons, form):
    ours, reference = comparisons[form], comparisons["array"]
    assert (ours.metrics["n_train"], ours.metrics["n_test"]) == (reference.metrics["n_train"], reference.metrics["n_test"])
    np.testing.assert_array_equal(ours.shown.x_test, reference.shown.x_test)  # the same test rows, in order
    for got, expected in zip(ours.estimator.model_.get_weights(), reference.estimator.model_.get_weights(), strict=True):
        # The same float32 steps on the same batches: equal to float32 round-off of the weights' scale.
        np.testing.assert_allclose(got, expected, rtol=0, atol=64 * EPS32 * max(1.0, float(np.abs(expected).max())))
    for method in ("pca", "autoencoder"):
        for key in ("train_mse", "test_mse"):
            assert ours.metrics[method][key] == pytest.approx(reference.metrics[method][key], rel=1e-6)
    assert ours.metrics["autoencoder"]["history"]["loss"] == pytest.approx(
        reference.metrics["autoencoder"]["history"]["loss"], rel=1e-6)


# Every public method takes every form ------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """An Autoencoder and a PCA fitted on an array, the rows as every form, and the array's answers."""
    x = _rows(3_000, 8, seed=1)
    names = [f"x{j}" for j in range(8)]  # the names a model fitted on an array reads tables by
    files = _write_forms(x, tmp_path_factory.mktemp("methods"), names)
    forms = {"array": x, "DataFrame": pd.DataFrame(x, columns=names), "Arrow table": _table(x, names),
             "another library's table": Frame(_table(x, names)), "row source": open_source(x, block_rows=700),
             "sparse matrix": scipy.sparse.csr_array(x), **files}
    autoencoder = Autoencoder(2, recipe="classic", hidden=(8,), epochs=1, random_state=0).fit(x)
    pca = PCA(2).fit(x)
    return x, forms, autoencoder, pca


def _call(estimator, method, data):
    with warnings.catch_warnings():
        # A DataFrame given to a model fitted on an array is read by position, as scikit-learn does.
        warnings.filterwarnings("ignore", message="X has feature names", category=UserWarning)
        return getattr(estimator, method)(data)


FORMS = ["DataFrame", "Arrow table", "another library's table", "row source", "sparse matrix", "npy", "parquet", "feather", "arrow stream", "jsonl", "fvecs", "h5", "folder", "pattern"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("method", ["transform", "reconstruct", "score_samples", "score"])
def test_autoencoder_methods_take_every_form(fitted, method, form):
    x, forms, autoencoder, _ = fitted
    expected = np.asarray(_call(autoencoder, method, x), dtype=np.float64)
    got = np.asarray(_call(autoencoder, method, forms[form]), dtype=np.float64)
    assert got.shape == expected.shape
    # Blocks of other sizes go through the network: float32 round-off of the outputs' scale.
    np.testing.assert_allclose(got, expected, rtol=0, atol=16 * EPS32 * max(1.0, float(np.abs(expected).max())))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("method", ["fit", "partial_fit", "transform", "score_samples", "score"])
def test_pca_methods_take_every_form(fitted, method, form):
    x, forms, _, pca = fitted
    if method in ("fit", "partial_fit"):
        got, expected = getattr(PCA(2), method)(forms[form]), pca
        got, expected = got.explained_variance_, expected.explained_variance_
        # float32 rows accumulated in float64, in other batches: float64 round-off times the rows summed.
        tolerance = 8 * np.finfo(np.float64).eps * len(x)
    else:
        got, expected = _call(pca, method, forms[form]), _call(pca, method, x)
        tolerance = 8 * np.finfo(np.float64).eps * x.shape[1]
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=tolerance, atol=tolerance * np.abs(expected).max())


@pytest.mark.parametrize("layout", ["csr_matrix", "csc_array", "coo_matrix"])
def test_a_sparse_matrix_trains_the_model_its_dense_rows_train_made_dense_a_block_at_a_time(layout):
    x = _rows(2_000, 12, seed=3)
    x[np.random.default_rng(3).random(x.shape) < 0.7] = 0.0  # mostly zeros, as sparse data is
    sparse = getattr(scipy.sparse, layout)(x)
    settings = dict(recipe="classic", hidden=(8,), epochs=2, batch_size=64, random_state=0)
    ours, reference = Autoencoder(2, **settings).fit(sparse), Autoencoder(2, **settings).fit(x)
    for got, expected in zip(ours.model_.get_weights(), reference.model_.get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=64 * EPS32 * max(1.0, float(np.abs(expected).max())))
    codes = reference.transform(x)
    np.testing.assert_allclose(ours.inverse_transform(scipy.sparse.csr_matrix(codes)), reference.inverse_transform(codes),
                               rtol=0, atol=16 * EPS32 * max(1.0, float(np.abs(x).max())))
    assert not open_source(sparse).in_memory  # blocks are made dense as read: training streams them


def test_a_sparse_matrix_saved_by_scipy_is_read_as_in_memory(tmp_path):
    matrix = scipy.sparse.random(300, 9, density=0.2, format="csr", random_state=0, dtype=np.float32)
    scipy.sparse.save_npz(tmp_path / "x.npz", matrix)
    source = open_source(tmp_path / "x.npz", block_rows=128)
    assert source.block_sizes.tolist() == [128, 128, 44] and source.feature_names == tuple(f"x{j}" for j in range(9))
    np.testing.assert_array_equal(source.to_array(), matrix.toarray())


@pytest.mark.parametrize("estimator", ["autoencoder", "pca"])
@pytest.mark.parametrize("form", ["DataFrame", "Arrow table", "another library's table", "parquet"])
def test_a_model_fitted_on_named_columns_reads_tables_and_files_by_name(fitted, estimator, form, tmp_path):
    _, forms, _, _ = fitted
    model = Autoencoder(2, recipe="classic", hidden=(8,), epochs=1, random_state=0) if estimator == "autoencoder" else PCA(2)
    model.fit(forms[form])
    table = forms["Arrow table"]
    reordered = table.select(table.column_names[::-1])
    pq.write_table(reordered, tmp_path / "reordered.parquet")
    expected = np.asarray(model.transform(table))
    for data in (reordered, tmp_path / "reordered.parquet", reordered.to_pandas().assign(extra=1.0), Frame(reordered)):
        np.testing.assert_allclose(model.transform(data), expected, rtol=0,
                                   atol=16 * EPS32 * max(1.0, float(np.abs(expected).max())))
    if form == "DataFrame":
        with pytest.raises(ValueError, match=r"X lacks 1 column the model was trained on: 'x3'\. Pass rows with every"):
            model.transform(forms["DataFrame"].drop(columns=["x3"]))


@pytest.mark.parametrize("estimator", [PCA(2), Autoencoder(2, epochs=1)])
def test_another_librarys_table_is_named_by_its_library_and_class(estimator):
    table = Frame(pa.table({"a": _rows(50, 1)[:, 0], "team": ["x", "y"] * 25}))
    with pytest.raises(ValueError, match=r"^the test_inputs Frame has non-numeric columns 'team' \(e\.g\. 'team' holds 'x'\)"):
        clone(estimator).fit(table)


@pytest.mark.parametrize("estimator", ["autoencoder", "pca"])
def test_a_model_fitted_on_named_columns_reads_an_array_file_by_position_as_an_array(fitted, estimator, tmp_path):
    x, _, _, _ = fitted
    model = Autoencoder(2, recipe="classic", hidden=(8,), epochs=1, random_state=0) if estimator == "autoencoder" else PCA(2)
    frame = pd.DataFrame(x, columns=[f"c{j}" for j in range(8)])
    model.fit(frame)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "narrow.npy", x[:, :7])
    expected = np.asarray(model.transform(frame))
    np.testing.assert_allclose(model.transform(tmp_path / "x.npy"), expected, rtol=0,
                               atol=16 * EPS32 * max(1.0, float(np.abs(expected).max())))
    with pytest.raises(ValueError, match=r"narrow\.npy has 7 features, but the model reads 8 \('c0', 'c1', .*in that order"):
        model.transform(tmp_path / "narrow.npy")


@pytest.mark.parametrize("form", ["DataFrame", "Arrow table", "parquet"])
@pytest.mark.parametrize("estimator", [PCA(2), Autoencoder(2, epochs=1)])
def test_two_columns_of_one_name_are_refused_in_every_form(tmp_path, estimator, form):
    x = _rows(50, 3)
    table = pa.table([x[:, 0], x[:, 1], x[:, 2]], names=["a", "a", "b"])
    pq.write_table(table, tmp_path / "t.parquet")
    data = {"DataFrame": pd.DataFrame(x, columns=["a", "a", "b"]), "Arrow table": table, "parquet": tmp_path / "t.parquet"}
    with pytest.raises(ValueError, match=r"has more than one column named 'a', and columns are read by name\. "
                                         r"Give each column a name of its own\."):
        clone(estimator).fit(data[form])


def test_validation_rows_without_a_table_s_column_names_are_refused_naming_both():
    x = _rows(60, 3)
    with pytest.raises(ValueError, match=r"X_val, expected the columns of X, in the same order: 'a', 'b', 'c'\. "
                                         r"Received: an array of 3 unnamed columns\. Pass validation rows as a "
                                         r"table with X's columns\."):
        Autoencoder(1, epochs=1).fit(pd.DataFrame(x, columns=["a", "b", "c"]), X_val=x)


@pytest.mark.parametrize("form", ["array", "DataFrame", "npy"])
@pytest.mark.parametrize(("estimator", "method"), [("autoencoder", "fit"), ("autoencoder", "transform"),
                                                   ("autoencoder", "score_samples"), ("pca", "fit"),
                                                   ("pca", "partial_fit"), ("pca", "transform"), ("pca", "score_samples")])
def test_a_missing_value_is_refused_naming_its_cell_in_every_form(fitted, tmp_path, estimator, method, form):
    x, _, autoencoder, pca = fitted
    bad = x.copy()
    bad[4, 3] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    data = {"array": bad, "DataFrame": pd.DataFrame(bad, columns=[f"x{j}" for j in range(8)]),
            "npy": tmp_path / "bad.npy"}[form]
    model = {"autoencoder": autoencoder, "pca": pca}[estimator]
    if method in ("fit", "partial_fit"):
        model = clone(model)
    with pytest.raises(ValueError, match=r"holds 1 missing, infinite or huge value \(NaN, inf or beyond 1e\+15\), "
                                         r"first in row 5, column 'x3'\. Fill or remove those rows"):
        _call(model, method, data)


@pytest.mark.parametrize("estimator", ["autoencoder", "pca"])
def test_inverse_transform_takes_codes_in_any_form(fitted, estimator, tmp_path):
    x, _, autoencoder, pca = fitted
    model = autoencoder if estimator == "autoencoder" else pca
    codes = np.asarray(model.transform(x), dtype=np.float32)
    np.save(tmp_path / "codes.npy", codes)
    expected = model.inverse_transform(codes)
    for form in (tmp_path / "codes.npy", open_source(codes, block_rows=500)):
        np.testing.assert_allclose(model.inverse_transform(form), expected, rtol=0,
                                   atol=16 * EPS32 * max(1.0, float(np.abs(expected).max())))


# Memory bounded by blocks, not by the file ------------------------------------------------------
def _memory(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


# A .npy file four times the training rows (the case); an Arrow stream of eight times, since a block
# of its rows passes through a table and a frame too (peaks of 45-67 MiB for 16 MiB blocks, measured).
@pytest.mark.parametrize(("form", "copies"), [("npy", 4), ("arrow stream", 8)])
def test_transforming_a_big_file_holds_blocks_not_the_file(tmp_path, form, copies):
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets the peak (VmHWM) to the present size
    except OSError:
        pytest.skip("the process's peak memory cannot be reset here (/proc/self/clear_refs)")
    train = _rows(131_072, 64, seed=3)
    model = Autoencoder(2, recipe="classic", hidden=(16,), epochs=1, random_state=0).fit(train)
    model.transform(train[:100])  # programs compiled before measuring
    if form == "npy":
        path = tmp_path / "big.npy"
        big = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(copies * len(train), 64))
        for k in range(copies):
            big[k * len(train) : (k + 1) * len(train)] = train
        big.flush()
        del big
    else:
        path, table = tmp_path / "big.arrow", _table(train, [f"x{j}" for j in range(64)])
        with pa.OSFile(str(path), "wb") as file, pa.ipc.new_stream(file, table.schema) as stream:
            for _ in range(copies):
                stream.write_table(table, max_chunksize=8192)
        del table
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _memory("VmRSS")
    codes = model.transform(path)
    assert codes.shape == (copies * len(train), 2)
    assert _memory("VmHWM") - before < path.stat().st_size / 2


# Every command takes every file form --------------------------------------------------------------
FILE_FORMS = ["csv", "jsonl", "fvecs", "h5", "npy", "npz", "parquet", "feather", "arrow stream", "folder", "pattern", "csv folder"]
# The fast suite runs one form per command; the others are slow.
FAST_FORMS = {"compare": "folder", "sweep": "csv", "encode": "npz", "reconstruct": "arrow stream"}


def _file_forms(x, folder):
    names = [f"x{j}" for j in range(x.shape[1])]
    forms = {key: str(value) for key, value in _write_forms(x, folder, names).items()}
    pd.DataFrame(x, columns=names).to_csv(folder / "x.csv", index=False)
    np.savez(folder / "x.npz", x=x)
    (folder / "csv parts").mkdir()
    for k, rows in enumerate(np.array_split(x, 2)):
        pd.DataFrame(rows, columns=names).to_csv(folder / "csv parts" / f"part-{k}.csv", index=False)
    return {**forms, "csv": str(folder / "x.csv"), "npz": str(folder / "x.npz"), "csv folder": str(folder / "csv parts")}


@pytest.fixture(scope="module")
def command_inputs(tmp_path_factory):
    """Every file form of 400 rows x 6 features, and a model folder trained on them."""
    from aepca.cli import main

    folder = tmp_path_factory.mktemp("command-inputs")
    forms = _file_forms(_rows(400, 6, seed=4), folder)
    args = ["--recipe", "classic", "--hidden", "4", "--epochs", "1", "--no-progress"]
    # Blocks of 64 rows: the order of the training rows depends on them.
    assert main(["compare", forms["npy"], "--out", str(folder / "run"), "--block-rows", "64", *args]) == 0
    return forms, folder / "run" / "model", args


def test_the_command_trains_one_model_whether_a_file_is_read_whole_or_streamed(command_inputs, tmp_path):
    """``compare FILE`` reads the file whole (the fixture's run), ``--stream`` a block at a time: the
    same rows in the same order, so the same test rows, batches and model."""
    from aepca.cli import main

    forms, model, args = command_inputs
    assert main(["compare", forms["npy"], "--stream", "--out", str(tmp_path / "run"), "--block-rows", "64", *args]) == 0
    whole, streamed = (json.loads((run / "metrics.json").read_text()) for run in (model.parent, tmp_path / "run"))
    assert (streamed["n_train"], streamed["n_test"]) == (whole["n_train"], whole["n_test"])
    for method in ("pca", "autoencoder"):
        assert streamed[method]["test_mse"] == pytest.approx(whole[method]["test_mse"], rel=1e-6)
    assert streamed["autoencoder"]["history"]["loss"] == pytest.approx(whole["autoencoder"]["history"]["loss"], rel=1e-6)


def test_a_file_holding_its_own_split_is_compared_on_it_whether_read_whole_or_streamed(tmp_path):
    """An ANN-benchmarks HDF5 file (train, test, an angular distance): the same split, model and neighbours."""
    from aepca.cli import main

    x = _rows(300, 6, seed=5)
    with h5py.File(tmp_path / "glove.hdf5", "w") as file:
        file["train"], file["test"], file.attrs["distance"] = x[:240], x[240:], "angular"
    args = ["--recipe", "classic", "--hidden", "4", "--epochs", "1", "--no-progress", "--block-rows", "64"]
    for run, stream in (("whole", []), ("streamed", ["--stream"])):
        assert main(["compare", str(tmp_path / "glove.hdf5"), "--out", str(tmp_path / run), *stream, *args]) == 0
    whole, streamed = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("whole", "streamed"))
    assert (streamed["n_train"], streamed["n_test"]) == (whole["n_train"], whole["n_test"]) == (240, 60)
    for method in ("pca", "autoencoder"):
        assert streamed[method]["test_mse"] == pytest.approx(whole[method]["test_mse"], rel=1e-6)
        assert streamed[method]["neighbours"]["metric"] == whole[method]["neighbours"]["metric"] == "cosine"


def test_streamed_rows_learn_the_cleaning_that_rows_read_whole_learn(tmp_path):
    """--impute mean and --drop-constant with --stream: learned in a pass over the training rows, the same
    fill values (to float32 rounding: the whole file's means are of its float64 values), constant columns
    and test MSE as when the file is read whole."""
    from aepca.cli import main
    from aepca.estimator import load_model

    x = _rows(600, 6, seed=2)
    x[np.random.default_rng(3).random(x.shape) < 0.03], x[:, 3] = np.nan, 2.5
    pd.DataFrame(x, columns=list("abcdef")).to_csv(tmp_path / "gaps.csv", index=False)
    args = ["--impute", "mean", "--drop-constant", "--recipe", "classic", "--hidden", "4", "--epochs", "1", "--neighbours",
            "0", "--no-progress", "--block-rows", "128"]
    for run, stream in (("whole", []), ("streamed", ["--stream"])):
        assert main(["compare", str(tmp_path / "gaps.csv"), "--out", str(tmp_path / run), *stream, *args]) == 0
    whole, streamed = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("whole", "streamed"))
    columns = [load_model(tmp_path / run).columns_ for run in ("whole", "streamed")]
    assert columns[0].feature_names == columns[1].feature_names == tuple("abcef") and columns[1].constant_columns == ("d",)
    fill = [np.array([spec.fill[name] for name in spec.feature_names]) for spec in columns]
    np.testing.assert_allclose(fill[1], fill[0], rtol=0, atol=np.finfo(np.float32).eps * np.nanmax(np.abs(x)))
    for method in ("pca", "autoencoder"):
        assert streamed[method]["test_mse"] == pytest.approx(whole[method]["test_mse"], rel=1e-5)
    for record in (whole, streamed):  # the record says how the rows were cleaned
        assert {"1 constant column of the training rows dropped: 'd'",
                "missing values filled with the mean of the training rows"} <= set(record["run"]["preprocessing"])


def test_the_distance_a_file_declares_decides_the_recall_rule_of_compare_in_python(tmp_path):
    """compare() of an ANN-benchmarks file read whole: its declared distance reaches the keep rule."""
    x = 3 * _rows(300, 6, seed=5)
    with h5py.File(tmp_path / "glove.hdf5", "w") as file:
        file["train"], file["test"], file.attrs["distance"] = x[:240], x[240:], "angular"
    result = compare(str(tmp_path / "glove.hdf5"), code_dim=2, recipe="classic", hidden=(4,), epochs=1, init="auto",
                     select_by="recall", neighbours=0)
    selection = result.metrics["autoencoder"]["selection"]
    assert (selection["metric"], selection["metric_reason"]) == ("cosine", "auto: the data's distance is angular")


COMMAND_CASES = [
    pytest.param(command, form, id=f"{command}-{form}", marks=() if form == FAST_FORMS[command] else pytest.mark.slow)
    for command in FAST_FORMS for form in FILE_FORMS
]


@pytest.mark.parametrize(("command", "form"), COMMAND_CASES)
def test_every_command_takes_every_file_form(command_inputs, command, form, tmp_path):
    from aepca.cli import main

    forms, model, args = command_inputs
    if command in ("compare", "sweep"):
        extra = ["--code-dims", "1,2"] if command == "sweep" else []
        assert main([command, forms[form], "--out", str(tmp_path / "run"), *args, *extra]) == 0
        assert (tmp_path / "run" / "report.html").stat().st_size > 0
    else:
        out = tmp_path / "out.npy"
        assert main([command, str(model), forms[form], "--out", str(out)]) == 0
        assert len(np.load(out)) == 400
