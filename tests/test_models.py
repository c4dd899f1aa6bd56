"""Keras builders: the classic architecture, PCA initialisation, seeds and errors."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from aepca import models
from aepca._keras import keras
from aepca.models import PREDICT_BATCH, build_autoencoder, check_activation, output_bias_for, predict, split_autoencoder
from aepca.pca import PCA
from conftest import float_tolerance, mse_shift


def _dense_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_classic_architecture_layer_sizes_and_parameter_count():
    net = build_autoencoder(784, 2, seed=0)
    encoder, decoder = _dense_layers(net.encoder), _dense_layers(net.decoder)
    sizes = [784] + [layer.units for layer in encoder] + [layer.units for layer in decoder]
    assert sizes == [784, 512, 128, 2, 128, 512, 784]
    expected = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    assert expected == 936_466  # ~0.93 M
    assert net.autoencoder.count_params() == expected == models.parameter_count(784, (512, 128), 2)
    assert net.encoder.count_params() + net.decoder.count_params() == expected
    assert net.autoencoder.input_shape == (None, 784)
    assert net.encoder.output_shape == (None, 2)
    assert net.decoder.input_shape == (None, 2)
    assert net.autoencoder.output_shape == (None, 784)


def test_a_network_too_large_for_memory_is_refused_naming_its_size_before_anything_is_allocated():
    from aepca import Autoencoder

    rows = np.random.default_rng(0).random((40, 6), dtype=np.float32)
    # 2 million squared weights: petabytes, beyond any machine's memory (JAX would abort the process).
    with pytest.raises(ValueError, match=r"hidden=\(2000000, 2000000\): 6-2000000-2000000-2-2000000-2000000-6, "
                                         r"8,000,040,000,008 weights, at least .* GiB to train") as refused:
        Autoencoder(n_components=2, hidden=(2_000_000, 2_000_000), recipe="classic").fit(rows)
    assert "Choose narrower hidden layers" in str(refused.value)
    memory = models.training_memory()
    assert memory is None or memory[1] in str(refused.value)


def test_activations_code_layer_is_linear_output_is_sigmoid():
    net = build_autoencoder(784, 2, seed=0)
    layers = {layer.name: layer for layer in _dense_layers(net.encoder) + _dense_layers(net.decoder)}
    activation = lambda name: keras.activations.serialize(layers[name].activation)  # noqa: E731
    assert activation("code") == "linear"
    assert activation("reconstruction") == "sigmoid"
    for name in ("encoder_0", "encoder_1", "decoder_0", "decoder_1"):
        assert activation(name) == "elu"
    out = _predict(net.autoencoder, np.random.default_rng(0).normal(0, 10, (32, 784)).astype(np.float32))
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_output_activation_and_hidden_are_configurable():
    net = build_autoencoder(10, 3, hidden=(), activation="linear", output_activation="linear", seed=0)
    assert [layer.units for layer in _dense_layers(net.encoder)] == [3]
    assert [layer.units for layer in _dense_layers(net.decoder)] == [10]
    assert keras.activations.serialize(_dense_layers(net.decoder)[0].activation) == "linear"
    assert net.autoencoder.count_params() == 10 * 3 + 3 + 3 * 10 + 10


def test_the_shared_halves_compose_to_the_autoencoder():
    net = build_autoencoder(20, 3, hidden=(16, 8), seed=1)
    x = np.random.default_rng(0).random((7, 20)).astype(np.float32)
    # The same float32 layers in one call or two: values of order one, the widest layer of 20 inputs.
    np.testing.assert_allclose(
        _predict(net.decoder, _predict(net.encoder, x)), _predict(net.autoencoder, x), rtol=0,
        atol=float_tolerance(np.float32, 1.0, 20),
    )


def test_seed_fixes_the_initial_weights():
    a, b, c = (build_autoencoder(20, 3, hidden=(16,), seed=s).autoencoder.get_weights() for s in (5, 5, 6))
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a[0], c[0])


def test_pca_initialised_model_is_pca_at_step_zero(mnist_small):
    x_train, x_test = mnist_small
    pca = PCA(n_components=9).fit(x_train)
    net = build_autoencoder(784, 9, hidden=(64, 16), seed=0, pca=(pca.components_, pca.mean_))
    codes = _predict(net.encoder, x_test)
    # float32 against float64: a code is a 785-term sum (784 pixels along a unit direction, and the
    # mean's), rounding at the row's norm plus the mean's (Cauchy-Schwarz).
    codes_tolerance = float_tolerance(
        np.float32, np.linalg.norm(x_test, axis=1).max() + np.linalg.norm(pca.mean_), np.sqrt(784 + 1)
    )
    np.testing.assert_allclose(codes, pca.transform(x_test), rtol=0, atol=codes_tolerance)
    expected = pca.inverse_transform(pca.transform(x_test))
    reconstruction = _predict(net.autoencoder, x_test)
    # A pixel sums 9 codes (off by codes_tolerance along directions whose squares add up to at most 1:
    # at most 3 codes_tolerance) and the mean, rounding 10 times at their size.
    np.testing.assert_allclose(reconstruction, expected, rtol=0, atol=3 * codes_tolerance + float_tolerance(
        np.float32, np.linalg.norm(codes, axis=1).max() + np.abs(pca.mean_).max(), 9 + 1))
    mse = float(np.mean(np.square(reconstruction.astype(np.float64) - x_test)))
    # As far as the reconstructions' differences move it (conftest.mse_shift); PCA's own MSE is a
    # total minus a captured sum of squares over 784 x 300 values.
    tolerance = mse_shift(mse, reconstruction - expected) + float_tolerance(
        np.float64, np.mean(np.square(x_test - pca.mean_)), 784 * np.sqrt(len(x_test)))
    assert mse == pytest.approx(pca.reconstruction_mse(x_test), rel=0, abs=tolerance)
    # The output is linear: a sigmoid would distort the PCA start.
    assert {layer.name for layer in net.decoder.layers} >= {"pca_reconstruction", "decoder_residual"}
    assert np.all(net.decoder.get_layer("decoder_residual").get_weights()[0] == 0)
    assert np.all(net.encoder.get_layer("encoder_residual").get_weights()[0] == 0)


def test_pca_shapes_must_match():
    with pytest.raises(
        ValueError,
        match=r"invalid value for pca, expected components of shape \(3, 10\) and a mean of shape \(10,\)\. "
        r"Received: components\.shape=\(2, 10\), mean\.shape=\(10,\)",
    ):
        build_autoencoder(10, 3, pca=(np.zeros((2, 10)), np.zeros(10)))


@pytest.mark.parametrize("output_activation", ["sigmoid", "linear", "tanh"])
def test_output_mean_starts_the_reconstruction_at_the_mean(output_activation):
    rng = np.random.default_rng(0)
    mean = rng.uniform(0.1, 0.9, size=10).astype(np.float32)
    net = build_autoencoder(10, 2, hidden=(6,), output_activation=output_activation, seed=0, output_mean=mean)
    last = net.decoder.get_layer("reconstruction")
    kernel, bias = last.get_weights()
    assert np.any(kernel != 0)  # only the bias is set; the kernel keeps its random start
    last.set_weights([np.zeros_like(kernel), bias])
    # The float32 output bias through the activation and its inverse: a few roundings of values of order one.
    np.testing.assert_allclose(_predict(net.autoencoder, rng.normal(size=(5, 10))), np.tile(mean, (5, 1)), rtol=0,
                               atol=float_tolerance(np.float32, 1.0, 4))


def test_output_bias_keeps_sigmoid_and_tanh_targets_off_their_asymptotes():
    np.testing.assert_allclose(output_bias_for(np.array([0.0, 1.0, 0.5]), "sigmoid"), [np.log(1e-3 / (1 - 1e-3)), np.log((1 - 1e-3) / 1e-3), 0.0],
                               rtol=0, atol=float_tolerance(np.float32, np.log(1e3), 2))  # a float32 logit
    assert np.all(np.isfinite(output_bias_for(np.array([-1.0, 1.0]), "tanh")))
    np.testing.assert_array_equal(output_bias_for(np.array([-3.0, 7.0]), "linear"), [-3.0, 7.0])


def test_output_mean_needs_an_invertible_output_activation_and_the_right_shape():
    with pytest.raises(
        ValueError,
        match=r"invalid value for output_activation, expected one of \['linear', 'sigmoid', 'tanh'\] when the "
        r"output bias starts at the data mean\. Received: output_activation='relu'\. Use output_bias='zeros'",
    ):
        build_autoencoder(10, 2, output_activation="relu", output_mean=np.zeros(10))
    with pytest.raises(ValueError, match=r"invalid value for output_mean, expected shape \(10,\)\. Received: output_mean\.shape=\(9,\)"):
        build_autoencoder(10, 2, output_mean=np.zeros(9))


@pytest.mark.parametrize("what", ["activation", "output_activation"])
def test_unknown_activation_is_refused(what):
    with pytest.raises(
        ValueError,
        match=rf"Received an invalid value for {what}, expected a Keras activation name such as 'elu', "
        rf"'relu', 'tanh', 'sigmoid' or 'linear'\. Received: {what}='swishy'",
    ):
        build_autoencoder(10, 2, **{what: "swishy"})


def test_check_activation_returns_known_names():
    assert check_activation("tanh") == "tanh"


def test_split_autoencoder_finds_the_halves_and_refuses_foreign_models():
    net = build_autoencoder(10, 2, hidden=(4,), seed=0)
    halves = split_autoencoder(net.autoencoder)
    assert halves.encoder is net.encoder and halves.decoder is net.decoder
    inputs = keras.Input(shape=(10,))
    foreign = keras.Model(inputs, keras.layers.Dense(10)(inputs))
    with pytest.raises(ValueError, match="no 'encoder' and 'decoder' sub-models; it was not made by aepca"):
        split_autoencoder(foreign)


@pytest.mark.parametrize("rows", [0, 1, 63, 65, PREDICT_BATCH + 3])
def test_predict_in_blocks_equals_calling_the_model(rows):
    """Padded and split into blocks (compiled on JAX), the numbers are the model's own."""
    net = build_autoencoder(10, 2, hidden=(6,), seed=0)
    x = np.random.default_rng(rows).random((rows, 10)).astype(np.float32)
    out = predict(net.autoencoder, x)
    assert out.shape == (rows, 10) and out.dtype == np.float32
    if rows:
        # The same float32 layers (10 inputs at most) in other batches: outputs in [0, 1].
        np.testing.assert_allclose(out, _predict(net.autoencoder, x), rtol=0, atol=float_tolerance(np.float32, 1.0, 10))
        # Codes come from the encoder alone, at its current weights.
        net.encoder.set_weights([w + 0.5 for w in net.encoder.get_weights()])
        codes = _predict(net.encoder, x)
        np.testing.assert_allclose(predict(net.encoder, x), codes, rtol=0,
                                   atol=float_tolerance(np.float32, max(1.0, np.abs(codes).max()), 10))


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="compiled prediction is JAX's")
def test_prediction_programs_are_shared_by_structure_and_bounded(monkeypatch):
    monkeypatch.setattr(models, "_PROGRAMS", OrderedDict())
    monkeypatch.setattr(models, "MAX_SHARED_PROGRAMS", 3)
    x = np.zeros((3, 10), np.float32)
    for seed in (0, 1):
        predict(build_autoencoder(10, 2, hidden=(6,), seed=seed).autoencoder, x)
    assert len(models._PROGRAMS) == 1
    for width in (3, 4, 5, 7):
        predict(build_autoencoder(10, 2, hidden=(width,), seed=0).autoencoder, x)
    assert len(models._PROGRAMS) == 3


# Shared programs keep no model alive and are safe from several threads -----------------------------
def _fit_and_use(kind: str):
    """A weak reference to the Keras model of a small fit (its programs compiled and used), the fit dropped."""
    import weakref

    from aepca import Autoencoder
    from aepca.training import TrainConfig, train

    x = np.random.default_rng(0).random((256, 8)).astype(np.float32)
    if kind == "estimator":
        estimator = Autoencoder(2, recipe="classic", hidden=(4,), epochs=1, batch_size=32, random_state=0).fit(x)
        estimator.transform(x)
        return weakref.ref(estimator.model_)
    if kind == "network":
        net = build_autoencoder(8, 2, hidden=(4,), seed=0)
        train(net.autoencoder, x, x_val=x[:64], config=TrainConfig(epochs=1, batch_size=32))
        predict(net.autoencoder, x)
        return weakref.ref(net.autoencoder)
    foreign = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8)])  # programs of its own
    predict(foreign, x)
    return weakref.ref(foreign)


@pytest.mark.parametrize("kind", ["estimator", "network", "a model aepca did not build"])
def test_a_model_is_freed_once_its_owner_drops_it(kind):
    import gc

    model = _fit_and_use(kind)
    gc.collect()
    assert model() is None, "a compiled program (or its cache) keeps the model alive"


def test_two_threads_fitting_at_once_train_as_each_alone(monkeypatch):
    """Two fits of one structure in two threads, both tracing the same new programs at once, end with
    the weights each reaches alone."""
    import threading

    from aepca import Autoencoder

    rng = np.random.default_rng(0)
    data = [rng.random((300, 8)).astype(np.float32) for _ in range(2)]
    epochs, batch = 2, 32

    def fit(x, seed):
        estimator = Autoencoder(2, recipe="classic", hidden=(6,), epochs=epochs, batch_size=batch, random_state=seed)
        return [np.array(w) for w in estimator.fit(x).model_.get_weights()]

    monkeypatch.setattr(models, "_PROGRAMS", OrderedDict())
    alone = [fit(x, seed) for seed, x in enumerate(data)]
    monkeypatch.setattr(models, "_PROGRAMS", OrderedDict())  # both threads make and trace the programs
    together, errors = [None, None], []
    start = threading.Barrier(2, timeout=60)

    def fit_in_thread(i):
        try:
            start.wait()
            together[i] = fit(data[i], i)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=fit_in_thread, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    # The same programs on the same inputs: equal up to the float32 rounding of each step's update.
    steps = epochs * -(-len(data[0]) // batch)
    for got, expected in zip(together, alone, strict=True):
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=float_tolerance(np.float32, max(1.0, np.abs(b).max()), steps))
