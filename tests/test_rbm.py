import io

import jax
import numpy as np
import pytest

from aepca.rbm import (
    RBMLayer,
    RBMParams,
    cd1_update,
    cd1_update_with_states,
    logistic_pca,
    pretrain_stack,
    reconstruction_error,
    sample_hidden,
    train_rbm,
    unroll,
    up_pass,
)
from conftest import float_tolerance

# float32 against float64 on values of order 1; the longest sum is the error's 6 squares.
ATOL = float_tolerance(np.float32, 1.0, 6)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _tiny_case():
    weights = np.array([[0.1, -0.2], [0.3, 0.05], [-0.15, 0.2]])
    visible_bias = np.array([0.01, -0.02, 0.03])
    hidden_bias = np.array([-0.1, 0.2])
    velocity = (np.full((3, 2), 0.01), np.array([0.0, 0.02, -0.01]), np.array([0.03, 0.0]))
    batch = np.array([[1.0, 0.0, 1.0], [0.2, 0.9, 0.0]])
    return weights, visible_bias, hidden_bias, velocity, batch


def _to_params(*arrays):
    return RBMParams(*(jax.numpy.asarray(a, dtype=np.float32) for a in arrays))


def _hand_cd1(hidden_mean, states, lr, momentum, cost):
    """CD-1 element by element, as in the Matlab rbm.m / rbmhidlinear.m, in float64."""
    w, b, c, (vw, vb, vc), v = _tiny_case()
    n, n_vis, n_hid = 2, 3, 2
    pos_h = np.array([[hidden_mean(sum(v[k, i] * w[i, j] for i in range(n_vis)) + c[j])
                       for j in range(n_hid)] for k in range(n)])
    neg_v = np.array([[_sigmoid(sum(states[k, j] * w[i, j] for j in range(n_hid)) + b[i])
                       for i in range(n_vis)] for k in range(n)])
    neg_h = np.array([[hidden_mean(sum(neg_v[k, i] * w[i, j] for i in range(n_vis)) + c[j])
                       for j in range(n_hid)] for k in range(n)])
    new_vw = np.empty_like(w)
    for i in range(n_vis):
        for j in range(n_hid):
            pos = sum(v[k, i] * pos_h[k, j] for k in range(n))
            neg = sum(neg_v[k, i] * neg_h[k, j] for k in range(n))
            new_vw[i, j] = momentum * vw[i, j] + lr * ((pos - neg) / n - cost * w[i, j])
    new_vb = momentum * vb + lr * (v.sum(0) - neg_v.sum(0)) / n
    new_vc = momentum * vc + lr * (pos_h.sum(0) - neg_h.sum(0)) / n
    params = (w + new_vw, b + new_vb, c + new_vc)
    return params, (new_vw, new_vb, new_vc), ((v - neg_v) ** 2).sum()


@pytest.mark.parametrize(
    "hidden_type, hidden_mean, states",
    [
        ("binary", _sigmoid, np.array([[1.0, 0.0], [0.0, 1.0]])),
        ("gaussian", lambda z: z, np.array([[0.7, -1.3], [0.25, 0.4]])),
    ],
)
def test_cd1_update_matches_hand_computation(hidden_type, hidden_mean, states):
    lr, momentum, cost = 0.1, 0.5, 2e-4
    w, b, c, velocity, batch = _tiny_case()
    params, new_velocity, error = cd1_update_with_states(
        _to_params(w, b, c), _to_params(*velocity), jax.numpy.asarray(batch, np.float32),
        jax.numpy.asarray(states, np.float32), learning_rate=lr, momentum=momentum,
        weight_cost=cost, hidden_type=hidden_type,
    )
    expected_params, expected_velocity, expected_error = _hand_cd1(hidden_mean, states, lr,
                                                                   momentum, cost)
    for got, want in zip(params + new_velocity, expected_params + expected_velocity):
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(float(error), expected_error, rtol=0, atol=ATOL)


@pytest.mark.parametrize("hidden_type", ["binary", "gaussian"])
def test_cd1_update_samples_states_from_the_hidden_means(hidden_type):
    w, b, c, velocity, batch = _tiny_case()
    params, key = _to_params(w, b, c), jax.random.key(3)
    batch = jax.numpy.asarray(batch, np.float32)
    hidden = batch @ params.weights + params.hidden_bias
    mean = jax.nn.sigmoid(hidden) if hidden_type == "binary" else hidden
    kwargs = dict(learning_rate=0.1, momentum=0.9, weight_cost=2e-4, hidden_type=hidden_type)
    sampled = cd1_update(params, _to_params(*velocity), batch, key, **kwargs)
    injected = cd1_update_with_states(params, _to_params(*velocity), batch,
                                      sample_hidden(mean, key, hidden_type), **kwargs)
    for got, want in zip(jax.tree.leaves(sampled), jax.tree.leaves(injected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=ATOL)


def test_sample_hidden_distributions():
    mean = jax.numpy.full((20_000, 2), jax.numpy.array([0.2, 0.7]))
    binary = np.asarray(sample_hidden(mean, jax.random.key(0), "binary"))
    assert set(np.unique(binary)) <= {0.0, 1.0}
    # Sampling, not rounding: 6 standard errors of n draws (a Bernoulli's variance is at most 1/4;
    # a unit normal's mean has variance 1 / n, its standard deviation about 1 / (2 n)).
    n = len(binary)
    np.testing.assert_allclose(binary.mean(0), [0.2, 0.7], rtol=0, atol=6 * np.sqrt(0.25 / n))
    gaussian = np.asarray(sample_hidden(mean, jax.random.key(1), "gaussian"))
    np.testing.assert_allclose(gaussian.mean(0), [0.2, 0.7], rtol=0, atol=6 * np.sqrt(1 / n))
    np.testing.assert_allclose(gaussian.std(0), [1.0, 1.0], rtol=0, atol=6 * np.sqrt(1 / (2 * n)))


@pytest.fixture(scope="module")
def patterns():
    """Three 16-bit prototypes with 5% of bits flipped: structure an RBM can learn."""
    rng = np.random.default_rng(0)
    prototypes = rng.random((3, 16)) < 0.5
    x = prototypes[rng.integers(0, 3, size=300)] ^ (rng.random((300, 16)) < 0.05)
    return x.astype(np.float32)


# Shapes shared with the stack fixture's first layer, so one compilation serves all tests.
FIRST_LAYER = dict(n_hidden=6, batch_size=30)


def test_train_rbm_lowers_reconstruction_error(patterns):
    errors = []
    untrained = train_rbm(patterns, epochs=0, seed=1, **FIRST_LAYER)  # same initial weights
    trained = train_rbm(patterns, epochs=15, seed=1, **FIRST_LAYER,
                        progress=lambda e, err: errors.append((e, err)))
    assert [e for e, _ in errors] == list(range(1, 16))
    assert errors[-1][1] < 0.5 * errors[0][1]
    assert reconstruction_error(trained, patterns) < 0.5 * reconstruction_error(untrained, patterns)
    np.testing.assert_array_equal(untrained.visible_bias, 0)
    assert 0.05 < untrained.weights.std() < 0.15  # 0.1 x N(0, 1)


def test_train_rbm_accepts_a_tqdm_bar(patterns):
    tqdm = pytest.importorskip("tqdm")
    with tqdm.tqdm(total=2, file=io.StringIO()) as bar:
        train_rbm(patterns, epochs=2, progress=bar, **FIRST_LAYER)
        assert bar.n == 2


@pytest.fixture(scope="module")
def stack(patterns):
    return pretrain_stack(patterns, (6, 2), epochs=2, batch_size=30, seed=0)


def test_seeded_pretraining_is_repeatable(stack, patterns):
    again = pretrain_stack(patterns, (6, 2), epochs=2, batch_size=30, seed=0)
    other = pretrain_stack(patterns, (6, 2), epochs=2, batch_size=30, seed=1)
    for layer, same in zip(stack, again):
        for name in ("weights", "visible_bias", "hidden_bias"):
            np.testing.assert_array_equal(getattr(layer, name), getattr(same, name))
    assert not np.allclose(stack[-1].weights, other[-1].weights)


def test_pretrain_stack_shapes_and_types(stack):
    assert [(layer.n_visible, layer.n_hidden) for layer in stack] == [(16, 6), (6, 2)]
    assert [layer.hidden_type for layer in stack] == ["binary", "gaussian"]


def test_unrolled_encoder_is_the_up_pass_composition(stack, patterns):
    net = unroll(stack)
    expected = patterns
    for layer in stack:
        expected = up_pass(layer, expected)
    code = np.asarray(net.encoder(patterns))
    # float32 layers of 16 and 6 inputs, of values of order one.
    np.testing.assert_allclose(code, expected, rtol=0, atol=float_tolerance(np.float32, max(1.0, np.abs(expected).max()), 16 + 6))

    names = [layer.name for layer in net.encoder.layers[1:] + net.decoder.layers[1:]]
    assert names == ["encoder_0", "code", "decoder_0", "decoder_1"]
    kernel, bias = net.decoder.get_layer("decoder_0").get_weights()
    np.testing.assert_array_equal(kernel, stack[-1].weights.T)
    np.testing.assert_array_equal(bias, stack[-1].visible_bias)
    kernel, bias = net.decoder.get_layer("decoder_1").get_weights()
    np.testing.assert_array_equal(kernel, stack[0].weights.T)
    np.testing.assert_array_equal(bias, stack[0].visible_bias)

    output = np.asarray(net.autoencoder(patterns))
    decoded = np.asarray(net.decoder(code))
    # The same float32 decoder (layers of 2 and 6 inputs) on the same codes, in one call or two.
    np.testing.assert_allclose(output, decoded, rtol=0, atol=float_tolerance(np.float32, 1.0, 2 + 6))
    assert output.shape == patterns.shape and 0 <= output.min() and output.max() <= 1


def test_logistic_pca_starts_at_pca_and_training_lowers_cross_entropy(patterns):
    def cross_entropy(net):
        p = np.clip(np.asarray(net.autoencoder(patterns)), 1e-7, 1 - 1e-7)
        return -np.mean(patterns * np.log(p) + (1 - patterns) * np.log(1 - p))

    kwargs = dict(batch_size=50, learning_rate=1e-2, seed=0)
    start = logistic_pca(patterns, 2, epochs=0, **kwargs)
    codes = np.asarray(start.encoder(patterns)).astype(np.float64)
    centred = patterns - patterns.mean(0)
    singular_values = np.linalg.svd(centred, compute_uv=False)[:2]
    # float32 projections of 16 centred bits: rounding at the longest row's norm; the norms of
    # the codes and the float32 singular values, relative to themselves.
    row = np.linalg.norm(centred, axis=1).max()
    np.testing.assert_allclose(np.abs(codes.mean(0)), 0, rtol=0, atol=float_tolerance(np.float32, row, 16))
    np.testing.assert_allclose(np.linalg.norm(codes, axis=0), singular_values, rtol=float_tolerance(np.float32, 1.0, 16))
    trained = logistic_pca(patterns, 2, epochs=3, **kwargs)
    assert cross_entropy(trained) < cross_entropy(start)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: train_rbm(x, 2, hidden_type="relu"), "hidden_type, expected one of"),
        (lambda x: train_rbm(2 * x, 2), r"values in \[0, 1\]"),
        (lambda x: train_rbm(x, 2, batch_size=1000), "batch_size, expected at most"),
        (lambda x: train_rbm(x, 0), "n_hidden, expected an integer >= 1"),
        (lambda x: train_rbm(x, 2, progress="yes"), "progress, expected None"),
        (lambda x: pretrain_stack(x, (), epochs=1), "sizes, expected a non-empty"),
        (lambda x: up_pass(train_rbm(x, 2, epochs=0), x[:, :3]), "has 3 features, but the model was fitted with 16"),
        (lambda x: logistic_pca(x, 17, epochs=0, batch_size=10, learning_rate=1e-3, seed=0),
         "n_components, expected an integer"),
        (lambda x: train_rbm(x[:, 0], 2), "expected a 2-D array"),
    ],
)
def test_bad_input_is_rejected(patterns, call, match):
    with pytest.raises(ValueError, match=match):
        call(patterns)


def test_unroll_rejects_mismatched_layers():
    layer = RBMLayer(np.zeros((4, 3)), np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match="n_visible to equal"):
        unroll([layer, layer])
    with pytest.raises(ValueError, match="hidden_type, expected one of"):
        RBMLayer(np.zeros((4, 3)), np.zeros(4), np.zeros(3), hidden_type="relu")
    with pytest.raises(ValueError, match="RBM parameters, expected weights of shape"):
        RBMLayer(np.zeros((4, 3)), np.zeros(3), np.zeros(3))
