"""Initial weights and optimizer slots without a compiled program per shape.

Keras fills each zero bias and optimizer slot, and draws each kernel, with an
eager JAX call, and JAX compiles one small program per (operation, shape): to
trace and lower each costs ~20-50 ms even when JAX's disk cache holds it, which
was most of the time spent building a network and its optimizer (classic
network, cache filled: 0.52 and 0.09 s before, 0.32 and 0.03 s now). Here
zeros come from NumPy, and every uniform kernel from one draw program of a
fixed size: with JAX's partitionable Threefry (its default), the first n
values of a draw do not depend on how many are drawn, so a kernel is Keras' own
value bit for bit (tests/test_initial_values.py compares them). Other
initializers, and uniform kernels on other backends, get the initializer's own
call.
"""

from __future__ import annotations

import math

import numpy as np

from aepca._backend import load_keras

keras = load_keras()

# Kernels up to this many values (784 x 1000 and every MNIST network here)
# share one draw program; a larger one is drawn at the next power of two.
MIN_DRAW_SIZE = 2**20


class SharedProgramInitializer:
    """The values of a Keras initializer, computed without a JAX program per
    shape where that is exact: zeros, and variance-scaling uniform kernels on
    JAX. Any other initializer is called as it is."""

    def __init__(self, initializer):
        self.initializer = initializer

    def __call__(self, shape, dtype=None):
        dtype = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
        if isinstance(self.initializer, keras.initializers.Zeros):
            values = np.zeros(shape, dtype)
        elif (limit := _uniform_limit(self.initializer, shape)) is not None and _draws_are_prefix_stable():
            n = math.prod(shape)
            size = max(MIN_DRAW_SIZE, 1 << (n - 1).bit_length())
            flat = keras.random.uniform((size,), minval=-limit, maxval=limit, dtype=dtype, seed=self.initializer.seed)
            values = np.asarray(flat)[:n].reshape(shape)
        else:
            return self.initializer(shape, dtype=dtype)
        # With an explicit dtype JAX takes a NumPy array as it is; without one
        # it would compile a program per shape to stage it.
        return keras.ops.convert_to_tensor(values, dtype=dtype)


def _uniform_limit(initializer, shape) -> float | None:
    """The bound a variance-scaling uniform initializer draws a 2-D kernel
    within, computed as Keras computes it; ``None`` for anything else."""
    if not (
        isinstance(initializer, keras.initializers.VarianceScaling)
        and initializer.distribution == "uniform"
        and isinstance(initializer.seed, int)
        and initializer.input_axes is None
        and initializer.output_axes is None
        and len(shape) == 2
    ):
        return None
    fan_in, fan_out = shape
    fans = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[initializer.mode]
    return math.sqrt(3.0 * (initializer.scale / max(1.0, fans)))


def _draws_are_prefix_stable() -> bool:
    if keras.backend.backend() != "jax":
        return False
    import jax

    # A JAX without the flag falls back to Keras' own draws: slower, never different.
    return bool(getattr(jax.config, "jax_threefry_partitionable", False))


def built(layer, inputs):
    """``layer(inputs)``, its weights created by :class:`SharedProgramInitializer`.

    The layer keeps its own initializers, so its saved config is unchanged.
    """
    kept = layer.kernel_initializer, layer.bias_initializer
    layer.kernel_initializer, layer.bias_initializer = (SharedProgramInitializer(i) for i in kept)
    try:
        return layer(inputs)
    finally:
        layer.kernel_initializer, layer.bias_initializer = kept


def with_slots_on_host(optimizer_class):
    """A subclass of a Keras optimizer whose slots (Adam's moments, ...) are
    created by :class:`SharedProgramInitializer`; it behaves as the original
    in every other way, and keeps its name."""

    class Optimizer(optimizer_class):
        def add_variable(self, shape, initializer="zeros", *args, **kwargs):
            shared = SharedProgramInitializer(keras.initializers.get(initializer))
            return super().add_variable(shape, shared, *args, **kwargs)

    Optimizer.__name__ = Optimizer.__qualname__ = optimizer_class.__name__
    return Optimizer
