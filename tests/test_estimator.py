"""The ``Autoencoder`` estimator: transforms, scores, persistence, seeds, PCA start, scaling, errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from aepca import load_model
from aepca._keras import keras
from aepca.estimator import Autoencoder
from aepca.persistence import METADATA_FILE, MODEL_FILE
from aepca.pca import PCA
from conftest import (
    adam_drift,
    assert_within,
    float_tolerance,
    make_low_rank,
    mse_shift,
    optimizer_steps,
    scaled_tolerance,
)

PARAMS = dict(n_components=2, recipe="classic", hidden=(8,), epochs=10, batch_size=32, learning_rate=1e-2, random_state=0)


@pytest.fixture(scope="module")
def data(low_rank_data):
    X = low_rank_data(n_samples=300, n_features=10, rank=3, noise=0.05, seed=1)
    return X[:240], X[240:]


@pytest.fixture(scope="module")
def fitted(data):
    return Autoencoder(**PARAMS).fit(data[0])


def _mse(a, b) -> float:
    return float(np.mean(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _pca_start_tolerances(Z, pca, scaled=0.0) -> tuple[float, np.ndarray, float]:
    """What a float32 network started at ``pca`` may differ from it by on rows ``Z`` (of the space
    ``pca`` was fitted in, entering off by ``scaled`` per column): the codes, ``d + 1``-term dot
    products at the rows' and the mean's norms, plus the inputs' error along a unit direction; each
    column of a reconstruction, its own input error, k codes' along unit directions and as much
    rounding again; and the MSE, as far as such reconstructions move it (conftest.mse_shift)."""
    n_features, k = pca.components_.shape[1], pca.components_.shape[0]
    norm = np.linalg.norm(Z, axis=1).max() + np.linalg.norm(pca.mean_)
    codes = float_tolerance(np.float32, norm, n_features + 1) + np.linalg.norm(np.broadcast_to(scaled, n_features))
    reconstruction = scaled + (k + 1) * codes
    mse = _mse(pca.inverse_transform(pca.transform(Z)), Z)
    return codes, reconstruction, mse_shift(mse, np.broadcast_to(reconstruction, n_features))


# Transforms and scores ---------------------------------------------------------------
def test_shapes_dtypes_and_feature_names(fitted, data):
    X_train, X_test = data
    codes = fitted.transform(X_test)
    assert codes.shape == (60, 2) and codes.dtype == np.float32
    reconstruction = fitted.inverse_transform(codes)
    assert reconstruction.shape == (60, 10) and reconstruction.dtype == np.float32
    assert fitted.n_features_in_ == 10
    assert list(fitted.get_feature_names_out()) == ["autoencoder0", "autoencoder1"]
    assert set(fitted.history_) >= {"loss", "val_loss", "val_mse", "seconds", "lr_scale"}
    assert len(fitted.history_["loss"]) == 10
    # Unscaled data outside [0, 1] with a random start: a linear output.
    assert fitted.output_activation_ == "linear"
    assert fitted.scaler_.method_ == "none"


def test_reconstruct_is_inverse_of_transform_and_score_is_minus_mse(fitted, data):
    X_test = data[1]
    reconstruction = fitted.reconstruct(X_test)
    # One float32 network in one call or two: at most the rounding of its widest (10-term) layers.
    np.testing.assert_allclose(reconstruction, fitted.inverse_transform(fitted.transform(X_test)), rtol=0,
                               atol=float_tolerance(np.float32, np.abs(X_test).max(), X_test.shape[1]))
    samples = fitted.score_samples(X_test)
    assert samples.shape == (60,)
    # Sums of positive squares in float64: relative to themselves, 10 terms per row, 60 rows.
    np.testing.assert_allclose(samples, -np.mean(np.square(reconstruction.astype(np.float64) - X_test), axis=1),
                               rtol=float_tolerance(np.float64, 1.0, X_test.shape[1]))
    assert fitted.score(X_test) == pytest.approx(
        -_mse(reconstruction, X_test), rel=float_tolerance(np.float64, 1.0, X_test.shape[1] * np.sqrt(len(X_test)))
    )
    # It learned something: far better than predicting the mean.
    assert -fitted.score(X_test) < 0.5 * _mse(X_test, X_test.mean(axis=0))


def test_random_state_makes_fits_repeatable(fitted, data):
    X_train, X_test = data
    again = Autoencoder(**PARAMS)
    codes = again.fit_transform(X_train)
    np.testing.assert_array_equal(codes, fitted.transform(X_train))
    np.testing.assert_array_equal(again.transform(X_test), fitted.transform(X_test))
    assert again.history_["loss"] == fitted.history_["loss"]
    other = Autoencoder(**{**PARAMS, "random_state": 1, "epochs": 1}).fit(X_train)
    assert not np.allclose(other.transform(X_test), fitted.transform(X_test), atol=1e-3)


def test_numpy_scalar_parameters_train_the_same_model(fitted, data, tmp_path):
    """As ``np.arange`` and grid searches give them: the same model, and a record and model folder of plain numbers."""
    numpy_params = {key: (np.int64(value) if isinstance(value, int) else np.float32(value) if isinstance(value, float)
                          else value) for key, value in PARAMS.items()}
    again = Autoencoder(**numpy_params).fit(data[0])
    np.testing.assert_array_equal(again.transform(data[1]), fitted.transform(data[1]))
    assert json.loads(json.dumps(again.json_params())) == {**fitted.json_params(), "learning_rate": float(np.float32(1e-2))}
    assert load_model(again.save(tmp_path / "model")).json_params() == again.json_params()


# Persistence -------------------------------------------------------------------------
def test_save_and_load_round_trip(fitted, data, tmp_path):
    X_test = data[1]
    path = fitted.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == [METADATA_FILE, MODEL_FILE]
    fitted.save(path)  # overwriting an existing model folder works
    loaded = load_model(path)
    assert isinstance(loaded, Autoencoder)
    np.testing.assert_array_equal(loaded.transform(X_test), fitted.transform(X_test))
    np.testing.assert_array_equal(loaded.reconstruct(X_test), fitted.reconstruct(X_test))
    assert loaded.get_params() == fitted.get_params()
    assert loaded.history_ == fitted.history_
    assert loaded.output_activation_ == fitted.output_activation_
    assert loaded.n_features_in_ == 10
    metadata = json.loads((path / METADATA_FILE).read_text())
    assert metadata["backend"] == keras.backend.backend()
    assert len(metadata["weights_sha256"]) == 64


def test_pickle_round_trip(fitted, data):
    clone = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(clone.transform(data[1]), fitted.transform(data[1]))
    np.testing.assert_array_equal(clone.inverse_transform(np.ones((3, 2), np.float32)), fitted.inverse_transform(np.ones((3, 2), np.float32)))
    assert "model_" in fitted.__dict__  # pickling left the original intact


def test_tampered_weights_are_refused(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    metadata_before = (path / METADATA_FILE).read_text()
    model = keras.saving.load_model(path / MODEL_FILE, compile=False, safe_mode=True)
    weights = model.get_weights()
    weights[0] = weights[0] + np.float32(1e-3)
    model.set_weights(weights)
    model.save(path / MODEL_FILE)  # a valid archive with other weights; the old JSON stays
    assert (path / METADATA_FILE).read_text() == metadata_before
    with pytest.raises(ValueError, match=r"model\.keras does not match the weights' SHA-256 recorded in .*aepca\.json; "
                       r"the file was modified or corrupted"):
        load_model(path)


def test_either_file_of_a_model_folder_loads_the_folder(fitted, data, tmp_path):
    path = fitted.save(tmp_path / "model")
    for file in (MODEL_FILE, METADATA_FILE):
        np.testing.assert_array_equal(load_model(path / file).transform(data[1]), fitted.transform(data[1]))


def test_corrupt_or_missing_model_folders_are_refused(fitted, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No such model folder: .*nowhere .*Pass the folder written by Autoencoder\.save"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"expected a model folder .* Received: .*rows\.csv, a file\."):
        load_model(tmp_path / "rows.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"model\.keras does not exist; pass the folder written by Autoencoder\.save"):
        load_model(tmp_path / "empty")
    path = fitted.save(tmp_path / "model")
    metadata = json.loads((path / METADATA_FILE).read_text())
    (path / METADATA_FILE).write_text(json.dumps({**metadata, "format": 99}))
    with pytest.raises(ValueError, match=r"has format 99, expected 1; re-save the model"):
        load_model(path)
    (path / METADATA_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"aepca\.json is not valid JSON .*; the model folder is corrupt"):
        load_model(path)
    (path / METADATA_FILE).write_text(json.dumps(metadata))
    (path / MODEL_FILE).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"model\.keras could not be loaded safely"):
        load_model(path)


def test_non_finite_weights_are_not_saved(data, tmp_path):
    model = pickle.loads(pickle.dumps(Autoencoder(**{**PARAMS, "epochs": 1}).fit(data[0])))
    weights = model.model_.get_weights()
    weights[0][0, 0] = np.nan
    model.model_.set_weights(weights)
    with pytest.raises(ValueError, match="non-finite weights and is not saved; retrain with a lower learning_rate"):
        model.save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_dataframe_feature_names_survive_saving(data, tmp_path):
    X_train = pd.DataFrame(data[0], columns=[f"f{i}" for i in range(10)])
    model = Autoencoder(**{**PARAMS, "epochs": 1}).fit(X_train)
    loaded = load_model(model.save(tmp_path / "model"))
    assert list(loaded.feature_names_in_) == list(X_train.columns)
    np.testing.assert_array_equal(loaded.transform(X_train), model.transform(X_train))
    with pytest.raises(ValueError, match="X lacks 1 column the model was trained on: 'f0'"):
        loaded.transform(X_train.rename(columns={"f0": "g0"}))


# PCA start and scaling -----------------------------------------------------------------
def test_pca_start_with_a_tiny_learning_rate_scores_like_pca(data):
    X_train, X_test = data
    # One epoch at 1e-7 is not clearly better than the PCA start on the validation rows: the start is kept.
    model = Autoencoder(**{**PARAMS, "init": "pca", "learning_rate": 1e-7, "epochs": 1, "validation_fraction": 0.2,
                           "restore_best": True}).fit(X_train)
    pca = PCA(n_components=2).fit(X_train)
    assert model.output_activation_ == "linear"
    assert model.history_["kept_start"] is True
    codes_tolerance, _, score_tolerance = _pca_start_tolerances(X_test, pca)
    assert model.score(X_test) == pytest.approx(pca.score(X_test), rel=0, abs=score_tolerance)
    codes = model.transform(X_test)
    np.testing.assert_allclose(codes, pca.transform(X_test), rtol=0, atol=codes_tolerance)


def test_output_bias_mean_starts_the_output_at_the_training_mean(data):
    X = data[0]
    # One epoch at a small learning rate moves each weight by at most adam_drift from its start.
    unit = (X - X.min()) / (X.max() - X.min())  # in [0, 1]: fed as it is to a sigmoid output
    ae = Autoencoder(**{**PARAMS, "epochs": 1, "learning_rate": 1e-6, "output_bias": "mean", "output_activation": "sigmoid"}).fit(unit)
    drift = adam_drift(1e-6, optimizer_steps(ae, len(unit)))
    bias = ae.decoder_.get_layer("reconstruction").get_weights()[1]
    # The sigmoid's slope is at most 1/4; the float32 logit and sigmoid round four times.
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), unit.mean(axis=0, dtype=np.float64), rtol=0,
                               atol=drift / 4 + float_tolerance(np.float32, 1.0, 4))
    default = Autoencoder(**{**PARAMS, "epochs": 1, "learning_rate": 1e-6, "output_activation": "sigmoid"}).fit(unit)
    np.testing.assert_allclose(default.decoder_.get_layer("reconstruction").get_weights()[1], 0.0, rtol=0,
                               atol=adam_drift(1e-6, optimizer_steps(default, len(unit))))


def test_a_linear_output_is_standardised_so_a_zero_bias_is_the_training_mean(data):
    X = data[0] * np.float32(1e-3)  # small units: the network still sees unit-variance columns
    ae = Autoencoder(**{**PARAMS, "epochs": 1, "learning_rate": 1e-6, "output_activation": "linear"}).fit(X)
    bias = ae.decoder_.get_layer("reconstruction").get_weights()[1]
    output_scale = ae.decoder_.get_layer("output_scale")
    start = output_scale(bias[None]) * ae.network_scale_
    # The bias is within adam_drift of zero: the output within what the output scale makes of that,
    # plus the float32 rounding of the mean and scale layers (multiply, add, network scale).
    drift = adam_drift(1e-6, optimizer_steps(ae, len(X)))
    at_zero, at_drift = (np.asarray(output_scale(np.full((1, X.shape[1]), b, np.float32)))[0] for b in (0.0, drift))
    moved = at_drift - at_zero
    assert_within(np.asarray(start)[0], X.mean(axis=0, dtype=np.float64),
                  np.abs(moved) * ae.network_scale_ + float_tolerance(np.float32, np.abs(X).max(axis=0), 3))
    standardised = ae.encoder_.get_layer("standardised")(X / ae.network_scale_)
    # Fixed layers: unit variance up to float32 sums over sqrt(n) rows of unit-variance values.
    np.testing.assert_allclose(np.std(np.asarray(standardised), axis=0), 1.0, rtol=0,
                               atol=float_tolerance(np.float32, 1.0, np.sqrt(len(X))))


def test_standard_scaling_scores_in_standardised_units(data):
    X_train, X_test = data
    units = np.float32(10.0) ** np.arange(-2, 3, 0.5, dtype=np.float32)  # 0.01 ... 316
    X_train, X_test = X_train * units + 5.0, X_test * units + 5.0
    model = Autoencoder(**{**PARAMS, "init": "pca", "scale": "standard", "learning_rate": 1e-7, "epochs": 1,
                           "validation_fraction": 0.2, "restore_best": True}).fit(X_train)
    assert model.scaler_.method_ == "standard"
    assert model.history_["kept_start"] is True  # the PCA start itself (see the test above)
    # PCA fitted on StandardScaler's output (population std), scored in those units.
    mean, std = X_train.mean(axis=0, dtype=np.float64), X_train.std(axis=0, dtype=np.float64)
    pca = PCA(n_components=2).fit((X_train - mean) / std)
    Z_test = (X_test - mean) / std
    # The rows enter the network scaled in float32: off by conftest.scaled_tolerance.
    _, reconstruction_tolerance, score_tolerance = _pca_start_tolerances(Z_test, pca, scaled_tolerance(X_test, mean, std))
    assert model.score(X_test) == pytest.approx(-_mse(pca.inverse_transform(pca.transform(Z_test)), Z_test), rel=0,
                                                abs=score_tolerance)
    # Reconstructions stay in the data's own units: scaled back in float32 (a multiply and an add).
    expected = pca.inverse_transform(pca.transform(Z_test)) * std + mean
    assert_within(model.reconstruct(X_test), expected,
                  reconstruction_tolerance * std + float_tolerance(np.float32, np.abs(expected).max(axis=0), 2))


def test_validation_fraction_monitors_a_held_out_share(data):
    model = Autoencoder(**{**PARAMS, "epochs": 2, "validation_fraction": 0.25, "restore_best": True}).fit(data[0])
    assert len(model.history_["val_loss"]) == 2
    assert model.history_["best_val_loss"] <= min(model.history_["val_loss"])


# Bad input -------------------------------------------------------------------------------
def test_feature_count_mismatch_at_transform(fitted):
    with pytest.raises(ValueError, match=r"X has 5 features, but Autoencoder is expecting 10 features as input"):
        fitted.transform(np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"X has 5 features, but Autoencoder is expecting 10 features as input"):
        fitted.score(np.ones((4, 5), np.float32))


def test_bad_codes_are_refused(fitted):
    with pytest.raises(ValueError, match=r"expected codes of shape \(n_samples, 2\)\. Received: X\.shape=\(4, 3\)\. Pass the output of transform"):
        fitted.inverse_transform(np.ones((4, 3)))
    codes = np.ones((4, 2))
    codes[1, 1] = np.inf
    with pytest.raises(ValueError, match="Received codes with NaN or infinite values"):
        fitted.inverse_transform(codes)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_components": 11}, r"n_components, expected at most the number of features\. Received: n_components=11, n_features=10"),
        ({"activation": "nope"}, r"Received an invalid value for activation, expected a Keras activation name .* Received: activation='nope'"),
        ({"output_activation": "nope"}, r"Received: output_activation='nope'"),
        ({"init": "svd"}, r"The 'init' parameter of Autoencoder must be a str among"),
        ({"scale": "robust"}, r"The 'scale' parameter of Autoencoder must be a str among"),
        ({"epochs": 0}, r"The 'epochs' parameter of Autoencoder must be an int in the range \[1, inf\)"),
        ({"hidden": [8, 0]}, r"invalid value for hidden, expected widths that are whole numbers of units, at least 1 each\. "
                             r"Received: hidden=\[8, 0\]\. Give the encoder's widths, e.g\. hidden=\(512, 128\)"),
        ({"hidden": [8.5]}, r"Received: hidden=\[8\.5\]"),
        ({"output_bias": "median"}, r"The 'output_bias' parameter of Autoencoder must be a str among"),
        ({"beta_2": 1.0}, r"The 'beta_2' parameter of Autoencoder must be a float in the range \(0\.0, 1\.0\) or None\. Got 1\.0 instead"),
        ({"output_bias": "mean", "output_activation": "relu"}, r"expected one of \['linear', 'sigmoid', 'tanh'\] when the output bias starts at the data mean\. Received: output_activation='relu'"),
        ({"validation_fraction": 0.9}, r"validation_fraction, expected a share leaving at least one row on each side\. Received: validation_fraction=0\.9 with 3 rows"),
    ],
)
def test_invalid_parameters_are_refused_at_fit(params, match):
    # Three rows: too few to hold any out for validation.
    X = np.random.default_rng(0).random((3, 10)).astype(np.float32)
    with pytest.raises(ValueError, match=match):
        Autoencoder(**{**PARAMS, **params}).fit(X)


def test_bad_training_data_is_refused():
    with pytest.raises(ValueError, match=r"Found array with 1 sample\(s\) \(shape=\(1, 10\)\) while a minimum of 2 is required"):
        Autoencoder(**PARAMS).fit(np.ones((1, 10), np.float32))
    X = np.random.default_rng(0).random((20, 10))
    X[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"holds 1 missing, infinite or huge value .* first in row 3, column 'x3'"):
        Autoencoder(**PARAMS).fit(X)


def test_unfitted_estimator_says_so():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="This Autoencoder instance is not fitted yet"):
        Autoencoder().transform(np.ones((2, 3)))


def test_training_does_not_depend_on_the_datas_units(data):
    X_train, X_test = data
    params = {**PARAMS, "epochs": 3, "scale": "none", "output_activation": "linear"}
    big = Autoencoder(**params).fit(X_train)
    small = Autoencoder(**params).fit(X_train * np.float32(1e-4))
    # The same network and steps: the error in tiny units is the error in big units times 1e-8, up to
    # inputs that differ by one float32 rounding each, which every step can carry into the weights.
    rtol = float_tolerance(np.float32, 1.0, optimizer_steps(big, len(X_train)))
    assert small.score(X_test * np.float32(1e-4)) == pytest.approx(big.score(X_test) * 1e-8, rel=rtol)
    assert small.history_["loss"][-1] == pytest.approx(big.history_["loss"][-1] * 1e-8, rel=rtol)


def test_the_history_says_why_that_many_epochs_ran(data):
    X = data[0][:200]  # in batches of 32: 7 steps per epoch
    stretched = Autoencoder(**{**PARAMS, "epochs": 1, "min_steps": 20}).fit(X)
    assert len(stretched.history_["loss"]) == 3
    assert stretched.history_["epochs_reason"].startswith("3 epochs instead of 1: 200 training rows make 7 steps")
    # Exactly rank-2 rows: the PCA start reconstructs them to rounding, so no epoch can improve on it.
    rank_2 = make_low_rank(n_samples=200, n_features=10, rank=2, noise=0.0, seed=1)
    stopped = Autoencoder(**{**PARAMS, "init": "pca", "epochs": 50, "validation_fraction": 0.2,
                             "restore_best": True, "patience": 3}).fit(rank_2)
    assert len(stopped.history_["loss"]) == 3  # nothing improves on the start: three epochs of patience
    assert stopped.history_["epochs_reason"] == "3 epochs: the validation loss had not improved for 3 epochs (cap 50)"
    annealed = Autoencoder(**{**PARAMS, "init": "pca", "epochs": 50, "validation_fraction": 0.2,
                              "restore_best": True, "patience": 3, "anneal_epochs": 2}).fit(rank_2)
    assert annealed.history_["epochs_reason"] == ("5 epochs: the validation loss had not improved for 3 epochs by epoch 3, "
                                                  "then 2 more from the best weights at a learning rate falling linearly to 0 (cap 50)")
