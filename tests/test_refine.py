"""Code refinement: a hand-computed reference, its guarantees, and the estimator's use of it."""

from __future__ import annotations

import numpy as np
import pytest

from aepca import Autoencoder, load_model
from aepca._keras import keras
from aepca.models import build_autoencoder
from aepca.refine import refine_codes
from conftest import adam_drift, float_tolerance


def linear_decoder(weights, bias):
    code = keras.Input(shape=(weights.shape[0],))
    layer = keras.layers.Dense(weights.shape[1])
    decoder = keras.Model(code, layer(code))
    layer.set_weights([weights, bias])
    return decoder


def adam_reference(codes, x, weights, bias, steps, learning_rate):
    """Keras' Adam on each code, with the gradient of the per-sample MSE written out by hand."""
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-7
    c = codes.astype(np.float64)
    m, v = np.zeros_like(c), np.zeros_like(c)
    for t in range(1, steps + 1):
        grad = 2.0 / x.shape[1] * (c @ weights + bias - x) @ weights.T
        m += (grad - m) * (1 - beta_1)
        v += (grad**2 - v) * (1 - beta_2)
        c -= learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (np.sqrt(v) + epsilon)
    return c


def test_refinement_matches_a_hand_computed_adam_on_a_linear_decoder():
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((3, 8)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    start = rng.standard_normal((50, 3)).astype(np.float32)
    refined = refine_codes(linear_decoder(weights, bias), x, start, steps=5, learning_rate=0.05)
    expected = adam_reference(start, x, weights, bias, steps=5, learning_rate=0.05)
    # float32 against float64: 5 steps, each a gradient through 8 outputs of 3 codes, at the codes' size.
    np.testing.assert_allclose(refined, expected, rtol=0, atol=float_tolerance(np.float32, np.abs(expected).max(), 5 * (3 + 8)))


def test_refinement_reaches_the_least_squares_code_of_a_linear_decoder():
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((2, 6)).astype(np.float32)
    x = rng.standard_normal((20, 6)).astype(np.float32)
    refined = refine_codes(linear_decoder(weights, np.zeros(6, np.float32)), x, np.zeros((20, 2), np.float32),
                           steps=2000, learning_rate=0.01)
    exact = np.linalg.lstsq(weights.T.astype(np.float64), x.T.astype(np.float64), rcond=None)[0].T
    # Converged, not rounded: at a constant learning rate Adam ends within about one step of the optimum.
    np.testing.assert_allclose(refined, exact, rtol=0, atol=adam_drift(0.01, 1))


@pytest.fixture(scope="module")
def undertrained():
    """A small autoencoder of a curved 2-D manifold, whose encoder misses its decoder's best
    codes on new data by ~7% in MSE (measured: 0.0283 -> 0.0262 after 50 steps)."""
    rng = np.random.default_rng(3)
    latent = rng.standard_normal((1200, 2))
    X = np.tanh(latent @ rng.standard_normal((2, 12))).astype(np.float32)
    model = Autoencoder(recipe="classic", n_components=2, hidden=(16,), epochs=10, batch_size=64, random_state=0).fit(X[:1000])
    return model, X[1000:]


def test_refined_codes_never_reconstruct_worse_and_help_on_average(undertrained):
    model, X = undertrained
    X_scaled = model.scaler_.transform(X)
    start = model.encoder_.predict(X_scaled, verbose=0)
    refined = refine_codes(model.decoder_, X_scaled, start, steps=50)
    errors = lambda codes: np.mean(np.square(model.decoder_.predict(codes, verbose=0) - X_scaled), axis=1)  # noqa: E731
    # Per row, up to the float32 rounding of its mean of 12 squares (relative to itself).
    assert np.all(errors(refined) <= errors(start) + float_tolerance(np.float32, errors(start), X.shape[1]))
    assert errors(refined).mean() < 0.95 * errors(start).mean()


def test_estimator_refine_steps_improve_the_score_and_survive_save_load(undertrained, tmp_path):
    model, X = undertrained
    plain = model.score(X)
    refined_model = load_model(model.save(tmp_path / "m")).set_params(refine_steps=50)
    assert refined_model.score(X) > plain
    assert refined_model.transform(X).shape == (len(X), 2)
    # The same float32 decoder on the same codes (values of order one; its widest layer has 16 inputs).
    np.testing.assert_allclose(
        refined_model.inverse_transform(refined_model.transform(X)), refined_model.reconstruct(X), rtol=0,
        atol=float_tolerance(np.float32, 1.0, 16),
    )
    again = load_model(refined_model.save(tmp_path / "r"))
    assert again.refine_steps == 50
    np.testing.assert_array_equal(again.transform(X), refined_model.transform(X))


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="compiled refinement is JAX's")
def test_decoders_of_one_structure_refine_with_one_compiled_program():
    """The second decoder's refinement compiles nothing and gives its own codes, as it does alone."""
    import jax

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 10)).astype(np.float32)
    codes = rng.standard_normal((40, 2)).astype(np.float32)
    first, second = (build_autoencoder(10, 2, hidden=(6,), seed=seed).decoder for seed in (0, 1))
    refine_codes(first, x, codes, steps=3)
    compiled = []
    listener = lambda event, duration, **_: compiled.append(event) if "backend_compile" in event else None  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        shared = refine_codes(second, x, codes, steps=3)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiled == []
    jax.clear_caches()
    np.testing.assert_array_equal(shared, refine_codes(second, x, codes, steps=3))


def test_zero_steps_returns_the_codes_unchanged():
    codes = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = refine_codes(linear_decoder(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)), codes, codes, steps=0)
    np.testing.assert_array_equal(out, codes)
    assert out is not codes


@pytest.mark.parametrize("steps", [-1, 1.5, True])
def test_invalid_steps_are_refused(steps):
    with pytest.raises(ValueError, match=r"invalid value for steps, expected an integer >= 0. Received: steps="):
        refine_codes(None, np.zeros((1, 2)), np.zeros((1, 1)), steps=steps)


def test_backends_without_gradients_get_a_clear_error(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
    with pytest.raises(
        ValueError, match=r"runs on the 'jax', 'tensorflow', 'torch' backends; Keras runs on 'numpy'. Set KERAS_BACKEND=jax"
    ):
        refine_codes(None, np.zeros((1, 2)), np.zeros((1, 1)), steps=1)
