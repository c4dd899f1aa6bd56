"""``compare``: metrics on an MNIST subset, the files it writes, the linear sanity check."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from aepca.data import Dataset, load_mnist
from aepca.experiments.compare import LINEAR_TOLERANCE, _notes, check_code_dim, compare, write_outputs
from aepca.experiments.sweep import sweep
from aepca.metrics import mse
from aepca.recipes import CLASSIC, FAST, RECIPES, get_recipe
from aepca.pca import PCA
from conftest import float_tolerance, forward_roundings, mse_shift, mse_tolerance, pca_rounding, scaled_tolerance

PNG = b"\x89PNG\r\n\x1a\n"


# One worker runs the module, so its fixtures are built once (pytest-xdist's loadgroup).
pytestmark = pytest.mark.xdist_group("compare")


@pytest.fixture(scope="module")
def mnist_subset():
    return load_mnist(n_train=3000, n_test=500)


@pytest.fixture(scope="module")
def comparison(mnist_subset):
    return compare(mnist_subset, code_dim=2, recipe="classic", epochs=1, seed=0)


def test_metrics_have_the_documented_keys(comparison):
    metrics = comparison.metrics
    assert set(metrics) >= {"dataset", "n_train", "n_test", "n_components", "recipe", "backend", "pca", "autoencoder"}
    assert set(metrics["pca"]) >= {"train_mse", "test_mse", "fit_seconds"}
    assert set(metrics["autoencoder"]) >= {"train_mse", "test_mse", "fit_seconds", "epochs", "history", "pca_equivalent_components"}
    assert set(metrics["autoencoder"]["history"]) >= {"loss", "val_loss"}
    import keras

    assert (metrics["dataset"], metrics["n_train"], metrics["n_test"], metrics["n_components"]) == ("mnist", 3000, 500, 2)
    assert (metrics["recipe"], metrics["backend"]) == ("classic", keras.backend.backend())
    assert metrics["autoencoder"]["epochs"] == 1
    history = metrics["autoencoder"]["history"]
    # The classic recipe monitors the test split every epoch.
    assert len(history["loss"]) == len(history["val_loss"]) == 1
    assert isinstance(metrics["autoencoder"]["pca_equivalent_components"], int)
    assert metrics["pca"]["fit_seconds"] > 0 and metrics["autoencoder"]["fit_seconds"] > 0
    assert json.loads(json.dumps(metrics)) == metrics  # plain JSON, nothing lost


def test_test_rows_in_other_units_are_noted(comparison, mnist_subset):
    assert comparison.metrics["test_rows_departure"] == []  # MNIST's own test images
    pixels = compare(mnist_subset.x_train, test=mnist_subset.x_test * np.float32(255), code_dim=2, recipe="classic",
                     epochs=1, seed=0, neighbours=0)
    assert len(pixels.metrics["test_rows_departure"]) == 1
    note = next(note for note in pixels.notes if note.startswith("The test rows lie "))
    assert "training standard deviations from the training rows' mean" in note


def _same_network_shift(estimator, metrics, largest) -> float:
    """How far the reported test MSE may move when the same float32 network runs on the same rows in
    other blocks: each value (up to ``largest`` in the error space) as far as one pass rounds."""
    delta = float_tolerance(np.float32, largest, np.sqrt(forward_roundings(estimator.model_)))
    return mse_shift(metrics["autoencoder"]["test_mse"], delta)


def test_metrics_values_are_consistent(comparison, mnist_subset):
    metrics = comparison.metrics
    pca = PCA(n_components=2).fit(mnist_subset.x_train)
    # The same PCA of the same rows: each error within its curve's and its 2 directions' rounding.
    direction = pca_rounding(mnist_subset.x_train, 2, pca.all_explained_variance_).direction
    for split in ("test", "train"):
        x = getattr(mnist_subset, f"x_{split}")
        assert metrics["pca"][f"{split}_mse"] == pytest.approx(
            pca.reconstruction_mse(x), rel=0, abs=mse_tolerance(x, pca.mean_, k=2, direction=direction))
    # float64 means of the same 392,000 squares.
    x_test = mnist_subset.x_test
    assert metrics["autoencoder"]["test_mse"] == pytest.approx(
        mse(comparison.ae_reconstruction, x_test), rel=float_tolerance(np.float64, 1.0, np.sqrt(x_test.size)))
    assert metrics["autoencoder"]["test_mse"] == pytest.approx(-comparison.estimator.score(mnist_subset.x_test), rel=0,
                                                               abs=_same_network_shift(comparison.estimator, metrics, 1.0))
    curve = metrics["pca"]["test_mse_by_components"]
    k = metrics["autoencoder"]["pca_equivalent_components"]
    assert curve[k] <= metrics["autoencoder"]["test_mse"] and (k == 0 or curve[k - 1] > metrics["autoencoder"]["test_mse"])
    assert comparison.pca_codes.shape == comparison.ae_codes.shape == (500, 2)
    assert comparison.pca_reconstruction.shape == comparison.ae_reconstruction.shape == (500, 784)
    rows = comparison.table_rows()
    assert [row["method"] for row in rows] == ["PCA (k=2)", "Autoencoder (classic, k=2)"]
    assert rows[0]["test MSE"] == metrics["pca"]["test_mse"]
    assert comparison.notes[0].startswith("MSE in the data's own units") and "k=2" in comparison.notes[1]


def test_write_outputs_writes_every_file(comparison, mnist_subset, tmp_path):
    from aepca import load_model

    metrics = write_outputs(comparison, tmp_path)
    for name in ("metrics.json", "codes.png", "reconstructions.png", "loss.png", "report.html"):
        assert (tmp_path / name).stat().st_size > 0, name
    for name in ("codes.png", "reconstructions.png", "loss.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics == comparison.metrics
    report = (tmp_path / "report.html").read_text()
    assert report.lstrip().lower().startswith("<!doctype html") and "data:image/png;base64," in report
    model = load_model(tmp_path / "model")
    assert mse(model.reconstruct(mnist_subset.x_test), mnist_subset.x_test) == pytest.approx(
        metrics["autoencoder"]["test_mse"], rel=0, abs=_same_network_shift(model, metrics, 1.0))


@pytest.mark.parametrize(("function", "keywords", "match"), [
    (compare, {"epochz": 1}, r"^compare\(\) got an unexpected keyword argument 'epochz' \(did you mean 'epochs'\?\)"),
    (compare, {"n_components": 3}, r"^compare\(\) takes code_dim= for the Autoencoder's n_components$"),
    (sweep, {"neighbourz": 5}, r"^sweep\(\) got an unexpected keyword argument 'neighbourz' \(did you mean 'neighbours'\?\)"),
])
def test_an_unknown_keyword_is_refused_before_the_data_is_read(function, keywords, match, tmp_path):
    args = (tmp_path / "not-there.csv",) if function is compare else (tmp_path / "not-there.csv", [1])
    with pytest.raises(TypeError, match=match):
        function(*args, **keywords)


def test_a_table_of_fewer_rows_than_columns_is_compared_at_every_code_size():
    x = np.random.default_rng(0).random((32, 60)).astype(np.float32)
    metrics = compare(Dataset("wide", x[:24], x[24:]), code_dim=2, epochs=1, hidden=(8,), neighbours=0).metrics
    # PCA of 24 rows has 24 directions; past them the curve stays where they leave it.
    curve = metrics["pca"]["test_mse_by_components"]
    assert len(curve) == 61 and np.all(np.diff(curve) <= 0)
    np.testing.assert_allclose(curve[25:], curve[24], rtol=float_tolerance(np.float64, 1.0, 60))


def test_linear_autoencoder_converges_to_pca(low_rank_data):
    X = low_rank_data(n_samples=1000, n_features=10, rank=3, noise=0.3, seed=0)
    dataset = Dataset(name="low_rank", x_train=X[:800], x_test=X[800:])
    result = compare(dataset, code_dim=3, recipe="linear", epochs=30, batch_size=32, learning_rate=2e-2, seed=0, scale="standard")
    pca, ae = result.metrics["pca"]["test_mse"], result.metrics["autoencoder"]["test_mse"]
    assert abs(ae / pca - 1) <= LINEAR_TOLERANCE
    sanity = [note for note in result.notes if note.startswith("Linear sanity check")]
    assert len(sanity) == 1 and sanity[0].startswith("Linear sanity check passes: a linear autoencoder should converge to PCA")


def _metrics(pca_mse, ae_mse, verdict, interval):
    return {
        "n_components": 3, "units": "u", "scale": "none", "scale_reason": "r",
        "pca": {"test_mse": pca_mse}, "autoencoder": {"test_mse": ae_mse, "pca_equivalent_components": 5},
        "comparison": {"ratio": ae_mse / pca_mse, "ratio_interval": interval, "verdict": verdict,
                       "method": "m", "pca_equivalent_interval": [4, 6]},
        "test_rows_departure": [],
    }


def test_notes_report_the_sanity_check_and_the_verdict_with_its_interval():
    linear = get_recipe("linear").settings(800, 10, 3)
    notes = _notes(_metrics(1.0, 1.5, "above PCA", [1.25, 1.75]), linear)
    assert notes == [
        "MSE in u; error space none (r).",
        "At k=3 the autoencoder's test MSE is 50.0% above PCA's, 95% interval 25.0% above to 75.0% above (m): above PCA.",
        "Linear sanity check fails: a linear autoencoder should converge to PCA; its test MSE is +50.00% from "
        "PCA's (tolerance 2%).",
    ]
    assert _notes(_metrics(1.0, 1.01, "equal within noise", [0.99, 1.03]), linear)[2].startswith("Linear sanity check passes")
    nonlinear = _notes(_metrics(1.0, 0.8, "below PCA", [0.75, 0.85]), CLASSIC.settings(800, 10, 3))
    assert nonlinear[1] == ("At k=3 the autoencoder's test MSE is 20.0% below PCA's, 95% interval 25.0% below to 15.0% "
                            "below (m): below PCA; PCA needs 4 to 6 components to match it.")


def test_a_tie_with_pca_is_not_called_a_win_by_the_verdict_or_diagnoses():
    from aepca.experiments.diagnostics import beats
    from aepca.selection import PairedErrors

    # A model that kept its PCA start matches PCA to float32 round-off, with a tiny spread.
    pca = np.random.default_rng(0).random(1000) + 0.5
    tie = PairedErrors(1, keep_rows=False)
    tie.add(pca * (1 - 1e-9), pca)
    assert tie.interval(0)["verdict"] == "equal within noise"
    assert not beats(float(np.mean(pca * (1 - 1e-9))), float(np.mean(pca)))
    win = PairedErrors(1, keep_rows=False)
    win.add(pca * 0.9995, pca)
    assert win.interval(0)["verdict"] == "below"


def test_a_network_at_pcas_error_to_round_off_is_worded_a_tie_not_given_its_narrow_interval():
    from aepca.experiments.compare import comparison_interval, verdict_note
    from aepca.selection import PairedErrors

    # PCA kept as a network at its PCA start: 1e-8 above PCA at k=1, every row alike (a narrow interval).
    pca = np.random.default_rng(0).random((300, 3)) + np.array([2.0, 1.0, 0.5])
    paired = PairedErrors(3, keep_rows=False)
    paired.add(pca[:, 1] * (1 + 1e-8), pca)
    comparison = comparison_interval(paired, 1, seed=0)
    assert comparison["ratio_interval"][0] > 1 and comparison["verdict"] == "equal within noise"
    assert verdict_note(comparison, 1) == ("At k=1 the autoencoder's test MSE equals PCA's to float32 round-off "
                                           "(1e-06% above): equal within noise; PCA needs 1 to 2 components to match it.")


def test_errors_at_round_off_tie_with_pcas_zero_error_and_the_note_says_so():
    from aepca.experiments.compare import comparison_interval, verdict_note
    from aepca.selection import PairedErrors

    # Three columns of rank 2: PCA's error is 0 from 2 components on; a network kept at its PCA start has
    # float32 round-off.
    rng = np.random.default_rng(0)
    network = rng.random(200) * 1e-15
    pca = np.column_stack([0.2 + rng.random(200), 0.1 + rng.random(200) / 10, np.zeros(200), np.zeros(200)])
    exact = PairedErrors(4, keep_rows=False)
    exact.add(network, pca)
    assert exact.interval(2)["verdict"] == "above"
    rounded = PairedErrors(4, keep_rows=False, roundoff=1e-12)
    rounded.add(network, pca)
    comparison = comparison_interval(rounded, 2, seed=0)
    assert comparison["verdict"] == "equal within noise" and comparison["within_roundoff"]
    assert verdict_note(comparison, 2) == (
        "At k=2 the autoencoder and PCA both reconstruct the test rows to float32 round-off: equal within noise; "
        "PCA needs at least 2 components to match it (none of up to 3 is clearly better).")


@pytest.mark.parametrize("given", ["a test file", "a test set", "the data set", "the file's own test split"])
def test_a_test_size_is_refused_where_the_test_rows_are_given(tmp_path, given):
    rows = np.random.default_rng(0).random((60, 4), dtype=np.float32)
    np.save(tmp_path / "test.npy", rows[:20])
    np.savez(tmp_path / "split.npz", x_train=rows[20:], x_test=rows[:20])
    data, test, extra = {
        "a test file": (rows, tmp_path / "test.npy", {"categorical": "onehot"}),  # read whole, by load_user_data
        "a test set": (rows, rows[:20], {}),
        "the data set": (Dataset("rows", rows[20:], rows[:20]), None, {}),
        "the file's own test split": (str(tmp_path / "split.npz"), None, {}),
    }[given]
    with pytest.raises(ValueError, match=rf"test_size, expected none where {given} gives the test rows .* "
                                         r"Received: test_size=0\.3\. Drop --test-size \(test_size=\)\."):
        compare(data, test=test, test_size=0.3, **extra)


def test_a_file_holding_its_own_split_is_compared_on_that_split(tmp_path):
    """As an .npz of x_train and x_test (Keras' mnist.npz) or an HDF5 file of train and test (the ANN benchmarks')."""
    rows = np.random.default_rng(0).random((60, 4), dtype=np.float32)
    np.savez(tmp_path / "split.npz", x_train=rows[20:], x_test=rows[:20])
    result = compare(str(tmp_path / "split.npz"), code_dim=1, recipe="classic", hidden=(4,), epochs=1)
    assert (result.metrics["n_train"], result.metrics["n_test"]) == (40, 20)
    np.testing.assert_array_equal(result.shown.x_test, rows[:20])


def test_compare_in_python_reads_and_cleans_a_file_as_the_command_does(tmp_path, capsys):
    """The command's column options and cleaning, as compare()'s keywords: the same run."""
    from aepca.cli import main

    rows = np.random.default_rng(0).standard_normal((200, 5))
    rows[[3, 70], [2, 4]], rows[:, 1] = np.nan, 7.0
    frame = pd.DataFrame(rows, columns=list("abcde"))
    frame.insert(0, "row_id", np.arange(200))
    frame["note"] = "text"
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    result = compare(str(tmp_path / "gaps.csv"), id_column="row_id", drop_columns=["note"], impute="mean",
                     drop_constant=True, recipe="classic", hidden=(4,), epochs=1)
    assert main(["compare", str(tmp_path / "gaps.csv"), "--id-column", "row_id", "--drop-columns", "note", "--impute",
                 "mean", "--drop-constant", "--recipe", "classic", "--hidden", "4", "--epochs", "1", "--no-progress",
                 "--out", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    command = json.loads((tmp_path / "run" / "metrics.json").read_text())
    columns = result.metrics["column_test_mse_original_units"]["columns"]
    assert columns == command["column_test_mse_original_units"]["columns"] == ["a", "c", "d", "e"]
    for method in ("pca", "autoencoder"):
        assert result.metrics[method]["test_mse"] == pytest.approx(command[method]["test_mse"], rel=1e-6)


def test_compare_in_python_chooses_the_columns_of_a_file_it_streams(tmp_path):
    frame = pd.DataFrame(np.random.default_rng(1).standard_normal((120, 4)), columns=list("abcd"))
    frame.insert(0, "row_id", np.arange(120))
    frame.to_parquet(tmp_path / "rows.parquet")
    result = compare(str(tmp_path / "rows.parquet"), id_column="row_id", columns=["a", "b", "c"], code_dim=1,
                     recipe="classic", hidden=(4,), epochs=1)
    assert result.metrics["column_test_mse_original_units"]["columns"] == ["a", "b", "c"]


@pytest.mark.parametrize("function", [compare, lambda rows, **kw: sweep(rows, [1], **kw).rows[0]], ids=["compare", "sweep"])
def test_a_row_source_of_a_file_learns_its_cleaning_on_its_training_rows(tmp_path, function):
    """Its missing value, unfilled, would be refused when the rows are read."""
    from aepca.data import open_source

    rows = np.random.default_rng(2).standard_normal((150, 4))
    rows[5, 1] = np.nan
    np.savetxt(tmp_path / "gap.csv", rows, delimiter=",", header="a,b,c,d", comments="")
    function(open_source(str(tmp_path / "gap.csv")), impute="mean", recipe="classic", hidden=(3,), epochs=1)


@pytest.mark.parametrize("function", [compare, lambda rows, **kw: sweep(rows, [1], **kw)], ids=["compare", "sweep"])
def test_cleaning_rows_read_as_they_are_is_refused_naming_the_option(function):
    from aepca.data import open_source

    with pytest.raises(ValueError, match=r"impute, expected none beside a RowSource, whose columns and rows are read as they are"):
        function(open_source(np.ones((10, 3), np.float32)), impute="mean")


def test_recipes():
    assert sorted(RECIPES) == ["classic", "fast", "linear"]
    classic = CLASSIC.settings(60000, 784, 2)
    assert classic["hidden"] == (512, 128) and classic["activation"] == "elu" and classic["epochs"] == 5
    assert CLASSIC.settings(60000, 784, 2, epochs=2, hidden=None)["epochs"] == 2
    assert CLASSIC.settings(60000, 784, 2, hidden=None)["hidden"] == (512, 128)  # None keeps the recipe's value
    assert get_recipe(CLASSIC) is CLASSIC
    # The fast recipe's step floor and early stopping stretch its own epochs, never an explicit count.
    assert FAST.settings(60000, 784, 2)["min_steps"] == 1200
    assert FAST.settings(60000, 784, 2, epochs=2)["min_steps"] is None
    assert FAST.settings(400, 10, 2, epochs=2)["patience"] is None
    assert FAST.settings(60000, 784, 2, epochs=2, min_steps=10)["min_steps"] == 10
    with pytest.raises(ValueError, match=r"invalid value for recipe, expected one of \['classic', 'fast', 'linear'\] or a Recipe\. Received: recipe='slow'"):
        get_recipe("slow")


def test_a_users_file_named_mnist_gets_the_default_of_the_users_data_read_whole_or_streamed(tmp_path):
    from aepca.data import load_user_data, open_source
    from aepca.experiments.compare import default_recipe

    np.save(tmp_path / "mnist.npy", np.random.default_rng(0).random((40, 4), dtype=np.float32))
    assert default_recipe(load_mnist()) == "classic"  # the bundled set, the recipe it reproduces
    assert default_recipe(load_user_data(tmp_path / "mnist.npy")) == "fast"
    assert default_recipe(open_source(tmp_path / "mnist.npy")) == "fast"


def test_fast_is_sized_to_the_data():
    large = FAST.settings(57000, 784, 2)
    assert (large["hidden"], large["epochs"], large["batch_size"], large["folds"]) == ((512, 128), 3, 128, 0)
    table = FAST.settings(455, 30, 2)
    assert table["hidden"] == (128, 64) and table["batch_size"] == 32 and table["folds"] == 5
    assert table["patience"] is not None and table["epochs"] >= 100  # stopped by the validation loss, not a count
    assert FAST.settings(142, 13, 2)["hidden"] == (64, 32)
    medium = FAST.settings(10000, 50, 5)
    assert medium["folds"] == 0 and medium["validation_fraction"] == 0.2


@pytest.mark.parametrize("code_dim", [0, 10, 11, 2.0])
def test_check_code_dim(code_dim):
    with pytest.raises(ValueError, match=rf"code_dim, expected an integer from 1 to 9 \(fewer than the 10 features\)\. Received: code_dim={code_dim!r}"):
        check_code_dim(code_dim, 10)


def test_compare_refuses_a_code_dim_before_training():
    dataset = Dataset(name="tiny", x_train=np.ones((5, 3), np.float32), x_test=np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"Received: code_dim=3"):
        compare(dataset, code_dim=3)


@pytest.fixture(scope="module")
def digits():
    from aepca.data.readers import split_indices
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    train, test = split_indices(len(X), 0.2, 0, "digits")
    X = X.astype(np.float32)
    return Dataset(name="digits", x_train=X[train], x_test=X[test], y_train=y[train], y_test=y[test], image_shape=(8, 8))


@pytest.fixture(scope="module", params=["none", "standard"])
def digits_comparison(request, digits):
    # The classic recipe monitors the test split: its last validation loss is a test MSE.
    return compare(digits, code_dim=5, recipe="classic", epochs=2, seed=0, scale=request.param)


def _float32_space_tolerance(train, test, scaled, k, expected) -> float:
    """How far PCA's test error at ``k`` on rows held in float32 may be from a float64 reference. Test
    values off by ``scaled`` move it by mse_shift; training values so move the covariance by at most
    2 |std| |scaled| (Frobenius), the projector by twice that over the k-th eigenvalue gap, the error by
    that times the test rows' mean square; then the rounding of the fit's float32 products and of
    float64 scoring (conftest.mse_tolerance)."""
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(train, rowvar=False)))[::-1]
    covariance = 2 * np.linalg.norm(train.std(axis=0)) * np.linalg.norm(np.broadcast_to(scaled, train.shape[1]))
    projector = 2 * covariance / (eigenvalues[k - 1] - eigenvalues[k])
    mean = train.mean(axis=0)
    direction = pca_rounding(train.astype(np.float32), k, eigenvalues).direction
    return (mse_shift(expected, np.broadcast_to(scaled, train.shape[1])) + projector * np.mean(np.square(test - mean))
            + mse_tolerance(test, mean, k=k, direction=direction))


def test_pca_row_is_scikit_learns_pca_in_the_error_space(digits_comparison, digits):
    from sklearn.decomposition import PCA as ScikitPCA
    from sklearn.preprocessing import StandardScaler

    metrics = digits_comparison.metrics
    train, test = digits.x_train.astype(np.float64), digits.x_test.astype(np.float64)
    if metrics["scale"] == "standard":
        scaler = StandardScaler().fit(train)
        train, test = scaler.transform(train), scaler.transform(test)
        assert "variance is 1" in metrics["units"]
    else:
        assert metrics["units"].startswith("the data's own units")
    # aepca's error space holds the rows scaled in float32, each value off by scaled_tolerance.
    scaled = scaled_tolerance(digits.x_test, scaler.mean_, scaler.scale_) if metrics["scale"] == "standard" else 0.0
    for k in (1, 5, 20):
        reference = ScikitPCA(k, svd_solver="full").fit(train)
        expected = np.mean(np.square(reference.inverse_transform(reference.transform(test)) - test))
        assert metrics["pca"]["test_mse_by_components"][k] == pytest.approx(
            expected, rel=0, abs=_float32_space_tolerance(train, test, scaled, k, expected))
    assert metrics["pca"]["test_mse"] == metrics["pca"]["test_mse_by_components"][5]
    # The autoencoder's error, its PCA-equivalent components and PCA's are in that one space.
    curve = metrics["pca"]["test_mse_by_components"]
    ae, k = metrics["autoencoder"]["test_mse"], metrics["autoencoder"]["pca_equivalent_components"]
    assert curve[k] <= ae and (k == 0 or curve[k - 1] > ae)
    assert ae == pytest.approx(-digits_comparison.estimator.score(digits.x_test), rel=0,
                               abs=_same_network_shift(digits_comparison.estimator, metrics, np.abs(test).max()))


def test_a_table_in_other_units_is_drawn_in_the_error_space(digits, tmp_path, monkeypatch):
    from aepca import plots
    from aepca.experiments.compare import RECONSTRUCTED_ROWS, _evenly_spaced

    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, data=None: figures.append(fig) or save(fig, path, data))
    # 60 of the pixels: no image shape, nor a square one, so rows are drawn as feature profiles.
    table = Dataset(name="digits", x_train=digits.x_train[:, :60], x_test=digits.x_test[:, :60],
                    y_train=digits.y_train, y_test=digits.y_test)
    comparison = compare(table, code_dim=2, recipe="classic", epochs=1, seed=0, scale="standard")
    metrics = write_outputs(comparison, tmp_path, save_model=False)
    assert plots.read_figure_data(tmp_path / "reconstructions.png")["units"] == metrics["units"]
    first = table.x_test[_evenly_spaced(len(table.x_test), RECONSTRUCTED_ROWS)[0]]
    drawn = figures[1].axes[0].lines[0].get_ydata()  # the first sample's original, as drawn
    np.testing.assert_allclose(drawn, comparison.estimator.scaler_.transform(first[None])[0],
                               rtol=0, atol=float_tolerance(np.float32, 16.0))


def test_loss_figure_shows_the_table_numbers(digits_comparison, digits, tmp_path):
    from aepca.plots import read_figure_data

    metrics = write_outputs(digits_comparison, tmp_path, save_model=False)
    shown = read_figure_data(tmp_path / "loss.png")
    assert shown["pca_test_mse"] == metrics["pca"]["test_mse"]
    assert shown["validation"][-1] == metrics["autoencoder"]["history"]["val_loss"][-1]
    assert shown["units"] == metrics["units"]
    # The last validation loss (on the test split) is the table's test MSE: the same space, up to the
    # float32 mean of its 360 x 64 squares it is computed as in training.
    assert shown["validation"][-1] == pytest.approx(metrics["autoencoder"]["test_mse"],
                                                    rel=float_tolerance(np.float32, 1.0, np.sqrt(digits.x_test.size)))


def test_metrics_record_how_the_run_was_made(digits_comparison):
    record = digits_comparison.metrics["run"]
    assert record["rows"] == {"train": 1437, "test": 360} and record["columns"] == 64
    assert any(line.startswith("3 constant columns kept") for line in record["preprocessing"])
    assert any(line.startswith("error space: scale=") for line in record["preprocessing"])
    assert record["epochs"] == "2 epochs, as set"
    assert {"python", "aepca", "keras", "numpy", "scikit-learn"} <= set(record["versions"])


def test_per_column_errors_are_in_original_units(digits_comparison, digits):
    columns = digits_comparison.metrics["column_test_mse_original_units"]
    assert len(columns["columns"]) == len(columns["pca"]) == len(columns["autoencoder"]) == 64
    # What turns each column's MSE into the error space's: 1 under "none", 1 / training variance under "standard".
    scale = digits_comparison.estimator.scaler_.scale_.astype(np.float64)
    np.testing.assert_allclose(columns["error_space_weights"], 1 / scale**2, rtol=float_tolerance(np.float64, 1.0, 2))
    expected = np.mean(np.square(digits_comparison.ae_reconstruction.astype(np.float64) - digits.x_test), axis=0)
    # float64 means over the 360 test rows (through JSON).
    np.testing.assert_allclose(columns["autoencoder"], expected,
                               rtol=float_tolerance(np.float64, 1.0, np.sqrt(len(digits.x_test))))
    assert np.mean(columns["pca"]) == pytest.approx(
        np.mean(np.square(digits_comparison.pca_reconstruction.astype(np.float64) - digits.x_test)),
        rel=float_tolerance(np.float64, 1.0, np.sqrt(digits.x_test.size)),  # float64 means of the same squares
    )


def test_the_worst_columns_rank_by_the_error_space_not_by_their_units():
    from aepca.experiments.compare import worst_columns

    # Income in dollars (variance 1e8), height in metres (variance 0.01): the network leaves 10% of
    # income's spread and 90% of height's; in original units income's error is a million times larger.
    columns = {"columns": ["income", "height"], "pca": [2e7, 0.005], "autoencoder": [1e7, 0.009],
               "error_space_weights": [1e-8, 100.0]}
    assert [row["column"] for row in worst_columns(columns)] == ["height", "income"]
    assert worst_columns(columns, n=1) == [{"column": "height", "PCA test MSE": 0.005, "AE test MSE": 0.009}]


def test_a_flat_table_of_pixels_is_drawn_as_square_images(digits):
    from aepca.experiments.compare import display_shape

    flat = Dataset(name="pixels", x_train=digits.x_train, x_test=digits.x_test)
    assert display_shape(flat) == (8, 8)
    # Mixed units, negative values or a non-square count are tables, not images.
    assert display_shape(Dataset(name="t", x_train=digits.x_train - 8, x_test=digits.x_test)) is None
    assert display_shape(Dataset(name="t", x_train=digits.x_train[:, :63], x_test=digits.x_test[:, :63])) is None


def test_selection_notes_say_what_was_kept_and_why():
    from aepca.experiments.compare import selection_note

    folds = {"kept_network": True, "gain": 0.167, "z": 3.83, "z_threshold": 2.0,
             "held_out": "5 folds of 455 training rows", "fold_gains": [0.1, 0.2, 0.1, 0.3, 0.1], "folds_below": 5}
    assert selection_note(folds) == "Kept the network: 16.7% below PCA on 5 folds of 455 training rows (each fold below); z = 3.83 > 2."
    fell_back = {**folds, "kept_network": False, "gain": -0.02, "z": -1.5, "folds_below": 1}
    assert selection_note(fell_back) == (
        "Kept PCA: the network was 2.0% above PCA on 5 folds of 455 training rows (1 of 5 folds below), "
        "not clearly better (z = -1.50, needs > 2)."
    )
    # Over twice PCA's error, a ratio: a network trained too little, or PCA reconstructing the rows exactly.
    assert "the network was 3.8 times PCA's error on 5 folds" in selection_note({**fell_back, "gain": -2.8})
    assert "the network was 2.6e+14 times PCA's error on 5 folds" in selection_note({**fell_back, "gain": -2.6e14})
    # PCA reconstructs the held-out rows exactly (code size at the data's rank): no ratio.
    exact = {**fell_back, "gain": 0.0, "reference_error": 0.0, "candidate_error": 6.8e-16}
    assert "the network was at an error of 6.8e-16 against PCA's 0 on 5 folds" in selection_note(exact)


def test_a_comparison_reads_the_training_rows_once_before_training(monkeypatch, tmp_path):
    """The error space and the PCA come from the fit's one pass: compare scans no rows itself."""
    import aepca.fitting
    from aepca.data import open_source

    scanned = []
    scan = aepca.fitting.scan
    monkeypatch.setattr(aepca.fitting, "scan", lambda source, **kwargs: scanned.append(source.n_rows) or scan(source, **kwargs))
    x = np.random.default_rng(0).standard_normal((600, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    comparison = compare(open_source(tmp_path / "x.npy", block_rows=100), code_dim=2, recipe="classic", hidden=(4,),
                         epochs=1, seed=0)
    assert scanned == [comparison.metrics["n_train"]]


def test_figures_show_rows_spread_over_data_sorted_by_class(digits, monkeypatch, tmp_path):
    import aepca.experiments.compare as compare_module
    from aepca import plots

    order = np.argsort(digits.y_test, kind="stable")
    by_class = Dataset(name="sorted", x_train=digits.x_train, x_test=digits.x_test[order], y_test=digits.y_test[order],
                       image_shape=(8, 8))
    monkeypatch.setattr(compare_module, "N_CODE_POINTS", 30)
    comparison = compare(by_class, code_dim=2, recipe="classic", epochs=1, hidden=(8,), neighbours=0)
    assert set(comparison.shown.y_test) == set(range(10))  # the first 30 rows would hold two classes
    drawn, draw = {}, plots.plot_reconstructions

    def drawing(originals, *args, **kwargs):
        drawn["rows"] = originals
        return draw(originals, *args, **kwargs)

    monkeypatch.setattr(plots, "plot_reconstructions", drawing)
    write_outputs(comparison, tmp_path)
    rows = {tuple(row) for row in drawn["rows"]}
    positions = [i for i, row in enumerate(comparison.shown.x_test) if tuple(row) in rows]
    assert len(drawn["rows"]) == 10 and positions[0] == 0 and positions[-1] == 29
