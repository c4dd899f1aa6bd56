"""Initial values without a program per shape: exactly Keras' own values, on every path."""

from __future__ import annotations

import numpy as np
import pytest

from aepca._initial_values import MIN_DRAW_SIZE, SharedProgramInitializer, built, with_slots_on_host
from aepca.models import build_autoencoder

import keras  # noqa: E402  (after aepca, which only sets a default backend)

SHAPES = [(784, 512), (512, 128), (128, 2), (2, 128), (1000, 500), (13, 7), (1, 1)]


def _bits(values):
    return np.asarray(keras.ops.convert_to_numpy(values), np.float32).view(np.uint32)


@pytest.mark.parametrize("initializer_class", [keras.initializers.GlorotUniform, keras.initializers.HeUniform, keras.initializers.LecunUniform])
@pytest.mark.parametrize("seed", [0, 12345, 2**31 - 2])
def test_uniform_kernels_are_keras_values_bit_for_bit(initializer_class, seed):
    for shape in SHAPES:
        initializer = initializer_class(seed=seed)
        np.testing.assert_array_equal(_bits(SharedProgramInitializer(initializer)(shape)), _bits(initializer(shape)))


def test_a_kernel_larger_than_the_shared_draw_is_still_exact():
    shape = (MIN_DRAW_SIZE // 1000 + 1, 1000)
    initializer = keras.initializers.GlorotUniform(seed=3)
    np.testing.assert_array_equal(_bits(SharedProgramInitializer(initializer)(shape)), _bits(initializer(shape)))


@pytest.mark.parametrize(
    "initializer",
    [
        keras.initializers.Zeros(),
        keras.initializers.Ones(),
        keras.initializers.RandomNormal(seed=1),
        keras.initializers.GlorotNormal(seed=1),
        keras.initializers.VarianceScaling(distribution="uniform", seed=1, input_axes=[0], output_axes=[1]),
    ],
    ids=lambda initializer: type(initializer).__name__,
)
def test_other_initializers_give_their_own_values(initializer):
    for shape in [(5, 3), (2, 3, 4)]:
        np.testing.assert_array_equal(_bits(SharedProgramInitializer(initializer)(shape)), _bits(initializer(shape)))


def test_without_prefix_stable_draws_the_initializer_draws_itself():
    import jax

    initializer = keras.initializers.GlorotUniform(seed=7)
    previous = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", False)
    try:
        expected = _bits(initializer((20, 30)))
        np.testing.assert_array_equal(_bits(SharedProgramInitializer(initializer)((20, 30))), expected)
    finally:
        jax.config.update("jax_threefry_partitionable", previous)


def test_built_layer_keeps_its_initializers_and_keras_weights():
    def dense():
        return keras.layers.Dense(6, kernel_initializer=keras.initializers.GlorotUniform(seed=4), name="d")

    layer, reference = dense(), dense()
    kernel_initializer, bias_initializer = layer.kernel_initializer, layer.bias_initializer
    inputs = keras.Input(shape=(9,))
    built(layer, inputs)
    reference(inputs)
    assert layer.kernel_initializer is kernel_initializer and layer.bias_initializer is bias_initializer
    assert layer.get_config() == reference.get_config()
    for got, expected in zip(layer.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, expected)


def test_network_kernels_are_the_seeded_glorot_draws():
    net = build_autoencoder(30, 2, hidden=(16, 8), seed=11)
    kernels = [layer for layer in net.autoencoder.layers for layer in getattr(layer, "layers", [layer])
               if isinstance(layer, keras.layers.Dense)]
    assert len(kernels) == 6
    for layer in kernels:
        expected = layer.kernel_initializer(tuple(layer.kernel.shape))
        np.testing.assert_array_equal(layer.get_weights()[0], keras.ops.convert_to_numpy(expected))
        np.testing.assert_array_equal(layer.get_weights()[1], 0.0)


@pytest.mark.parametrize("optimizer_class", [keras.optimizers.Adam, keras.optimizers.Nadam])
def test_optimizer_with_slots_on_host_matches_the_original(optimizer_class):
    def variables():
        return [keras.Variable(np.full(shape, 0.5, np.float32)) for shape in [(3, 4), (4,)]]

    settings = {"learning_rate": 0.1, "name": "optimizer"}
    shared, reference = with_slots_on_host(optimizer_class)(**settings), optimizer_class(**settings)
    assert isinstance(shared, optimizer_class) and type(shared).__name__ == optimizer_class.__name__
    assert shared.get_config() == reference.get_config()
    trained = {}
    for name, optimizer in (("shared", shared), ("reference", reference)):
        weights = variables()
        optimizer.build(weights)
        trained[name] = (optimizer, weights)
        for step in range(3):
            optimizer.apply([np.full(w.shape, step + 1.0, np.float32) for w in weights], weights)
    (shared, shared_weights), (reference, reference_weights) = trained["shared"], trained["reference"]
    describe = lambda optimizer: [(tuple(v.shape), v.dtype) for v in optimizer.variables]  # noqa: E731
    assert describe(shared) == describe(reference)
    for got, expected in zip(shared.variables + shared_weights, reference.variables + reference_weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(expected))
