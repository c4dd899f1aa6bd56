"""Code refinement: better codes for a trained decoder, found by gradient descent.

An encoder is a fast approximation of the best code for each input, and on
new data it is a worse one than on its training data (the "amortisation
gap": Cremer, Li & Duvenaud, ICML 2018). PCA has no such gap: its projection
is the exact optimum for its linear decoder. Refinement closes most of the
gap for an autoencoder: starting from the encoder's code, a few hundred Adam
steps on each sample's own code minimise its reconstruction loss through the
fixed decoder. The code stays ``n_components`` numbers; only how it is found
changes (docs/hinton2006.md measures the gain).

A sample whose refined code does not lower its loss keeps the encoder's code,
so refinement never makes a reconstruction worse (in the training loss).
"""

from __future__ import annotations

import numpy as np

from aepca._keras import keras
from aepca.models import shared_program
from aepca.training import LOSSES
from aepca.validation import describe_names

# Adam's step in code units: within 0.6% of the best of 0.01-1 on every case measured
# (docs/recipes.md, benchmarks/refine_rate.py).
LEARNING_RATE = 0.3
BATCH_SIZE = 2048
_BETA_1, _BETA_2, _EPSILON = 0.9, 0.999, 1e-7  # Keras' Adam defaults


def refine_codes(decoder: keras.Model, x: np.ndarray, codes: np.ndarray, *, steps: int,
                 loss: str = "mse", learning_rate: float = LEARNING_RATE) -> np.ndarray:
    """Codes at least as good as ``codes`` at reconstructing ``x`` through ``decoder``.

    ``x`` is in the units the decoder outputs (for an aepca estimator, the
    scaled data), ``loss`` one of ``aepca.training.LOSSES``. Works on the JAX
    (compiled), TensorFlow and PyTorch backends.
    """
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"Received an invalid value for steps, expected an integer >= 0. Received: steps={steps!r}")
    codes = np.array(codes, dtype=np.float32, copy=True)
    if steps == 0 or len(codes) == 0:
        return codes
    x = np.ascontiguousarray(x, dtype=np.float32)
    backend = keras.backend.backend()
    if backend not in _REFINERS:
        raise ValueError(
            f"Code refinement runs on the {describe_names(sorted(_REFINERS))} backends; Keras runs on "
            f"{backend!r}. Set KERAS_BACKEND=jax, or refine_steps=0."
        )
    # One compiled shape: batches of BATCH_SIZE rows, or all rows when fewer.
    size = min(BATCH_SIZE, len(codes))
    refine_batch = _REFINERS[backend](decoder, loss, int(steps), float(learning_rate), size)
    for start in range(0, len(codes), size):
        codes[start : start + size] = refine_batch(x[start : start + size], codes[start : start + size])
    return codes


def _adam_step(code, m, v, grad, t, learning_rate, ops):
    """One step of Keras' Adam (same formula, so every backend gives the same codes)."""
    m = m + (grad - m) * (1 - _BETA_1)
    v = v + (ops.square(grad) - v) * (1 - _BETA_2)
    alpha = learning_rate * ops.sqrt(1 - _BETA_2**t) / (1 - _BETA_1**t)
    return code - alpha * m / (ops.sqrt(v) + _EPSILON), m, v


def _jax_refiner(decoder, loss, steps, learning_rate, size):
    import jax
    import jax.numpy as jnp

    per_sample = LOSSES[loss]

    def build(live):
        def losses(weights, code, xb):
            reconstruction, _ = live.model.stateless_call(*weights, code, training=False)
            return per_sample(xb, reconstruction)

        # Samples are independent, so the gradient of the summed loss is each code's own.
        grad = jax.grad(lambda code, weights, xb: jnp.sum(losses(weights, code, xb)))

        @jax.jit
        def refine(weights, xb, start):
            def step(state, t):
                code, m, v = state
                return _adam_step(code, m, v, grad(code, weights, xb), t, learning_rate, jnp), None

            zeros = jnp.zeros_like(start)
            (code, _, _), _ = jax.lax.scan(step, (start, zeros, zeros), jnp.arange(1, steps + 1, dtype=jnp.float32))
            better = losses(weights, code, xb) < losses(weights, start, xb)
            return jnp.where(better[:, None], code, start)

        return refine

    # The weights are arguments, not constants baked into the program: one compiled refinement
    # serves every decoder of this structure (each call of compare's, every fold's).
    refine = shared_program(decoder, ("refine", loss, steps, learning_rate), build).bind(model=decoder)
    weights = ([v.value for v in decoder.trainable_variables], [v.value for v in decoder.non_trainable_variables])

    def refine_batch(xb, start):
        n = len(xb)
        if n < size:  # the last batch: pad to the compiled shape, then drop the padding
            xb = np.pad(xb, ((0, size - n), (0, 0)))
            start = np.pad(start, ((0, size - n), (0, 0)))
        return np.asarray(refine(weights, xb, start))[:n]

    return refine_batch


def _eager_losses(decoder, loss):
    """A function of ``(code, xb)``: each sample's loss of reconstructing ``xb`` by ``decoder(code)``."""
    per_sample = LOSSES[loss]
    return lambda code, xb: per_sample(xb, decoder(code, training=False))


def _tensorflow_refiner(decoder, loss, steps, learning_rate, size):
    import tensorflow as tf

    losses = _eager_losses(decoder, loss)

    @tf.function(reduce_retracing=True)
    def refine(xb, start):
        code, m, v = tf.identity(start), tf.zeros_like(start), tf.zeros_like(start)
        for t in tf.range(1, steps + 1, dtype=tf.float32):
            with tf.GradientTape() as tape:
                tape.watch(code)
                total = tf.reduce_sum(losses(code, xb))
            code, m, v = _adam_step(code, m, v, tape.gradient(total, code), t, learning_rate, tf.math)
        better = losses(code, xb) < losses(start, xb)
        return tf.where(better[:, None], code, start)

    return lambda xb, start: refine(tf.constant(xb), tf.constant(start)).numpy()


def _torch_refiner(decoder, loss, steps, learning_rate, size):
    import torch

    losses = _eager_losses(decoder, loss)

    def refine(xb, start):
        # Keras' tensors, so on the device that holds the decoder's weights.
        xb, start = keras.ops.convert_to_tensor(xb), keras.ops.convert_to_tensor(start)
        code, m, v = start.clone().requires_grad_(True), torch.zeros_like(start), torch.zeros_like(start)
        for t in range(1, steps + 1):
            (grad,) = torch.autograd.grad(torch.sum(losses(code, xb)), code)
            with torch.no_grad():
                code, m, v = _adam_step(code, m, v, grad, torch.tensor(float(t)), learning_rate, torch)
            code.requires_grad_(True)
        with torch.no_grad():
            better = losses(code, xb) < losses(start, xb)
            return keras.ops.convert_to_numpy(torch.where(better[:, None], code, start))

    return refine


_REFINERS = {"jax": _jax_refiner, "tensorflow": _tensorflow_refiner, "torch": _torch_refiner}
