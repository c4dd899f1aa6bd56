"""RBM pretraining of deep autoencoders (Hinton & Salakhutdinov, Science 313:504, 2006).

The paper's protocol, followed here:

* A stack of RBMs is trained greedily; each layer's hidden probabilities are the next
  layer's data (:func:`pretrain_stack`).
* Visible units are logistic and reconstructed with probabilities, not samples; hidden
  units are logistic except in the top RBM, whose hidden units are Gaussian with unit
  variance (:func:`cd1_update`).
* Each RBM is trained with CD-1 and the paper's hyperparameters (the defaults of
  :func:`train_rbm`); the update follows the authors' Matlab code (``rbm.m`` /
  ``rbmhidlinear.m``), including ``v = momentum*v + lr*(grad - cost*W)``.
* The stack is unrolled into an encoder and a decoder started at the transposed weights
  (:func:`unroll`), which the general training loop fine-tunes on cross-entropy.

Deviations: the training set is reshuffled every epoch (the Matlab code visits fixed
mini-batches in a fixed order) and the ``n % batch_size`` examples left over by a shuffle
are skipped for that epoch; everything is float32 (the paper: float64); the fine-tuning
optimiser is the caller's (the paper: conjugate gradients); :func:`logistic_pca`
approximates the paper's "logistic PCA" baseline with an autoencoder.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from aepca._keras import keras
from aepca.models import AutoencoderNet
from aepca.training import TrainConfig, train
from aepca.validation import check_features, check_n_components

__all__ = [
    "RBMLayer",
    "RBMParams",
    "cd1_update",
    "cd1_update_with_states",
    "logistic_pca",
    "pretrain_stack",
    "reconstruction_error",
    "sample_hidden",
    "train_rbm",
    "unroll",
    "up_pass",
]

# Hidden-unit types: how the hidden mean follows from the total input, and how a state is
# sampled from that mean (rbm.m thresholds uniforms; rbmhidlinear.m adds unit-variance noise).
_HIDDEN_MEAN: dict[str, Callable] = {
    "binary": jax.nn.sigmoid,
    "gaussian": lambda total_input: total_input,
}
_HIDDEN_SAMPLE: dict[str, Callable] = {
    "binary": lambda mean, key: (jax.random.uniform(key, mean.shape) < mean).astype(mean.dtype),
    "gaussian": lambda mean, key: mean + jax.random.normal(key, mean.shape, mean.dtype),
}
_DEFAULT_LEARNING_RATE = {"binary": 0.1, "gaussian": 0.001}


class RBMParams(NamedTuple):
    """JAX-side parameters of one RBM (also the shape of its momentum velocity)."""

    weights: jax.Array  # (n_visible, n_hidden)
    visible_bias: jax.Array  # (n_visible,)
    hidden_bias: jax.Array  # (n_hidden,)


@dataclass(frozen=True, eq=False)
class RBMLayer:
    """A trained RBM: float32 numpy weights ``(n_visible, n_hidden)`` and biases.

    ``hidden_type`` is ``"binary"`` (logistic hidden units) or ``"gaussian"`` (linear
    hidden means with unit-variance noise, the paper's top layer).
    """

    weights: np.ndarray
    visible_bias: np.ndarray
    hidden_bias: np.ndarray
    hidden_type: str = "binary"

    def __post_init__(self):
        _check_hidden_type(self.hidden_type)
        for name in ("weights", "visible_bias", "hidden_bias"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float32))
        if self.weights.ndim != 2 or self.visible_bias.shape != (self.n_visible,) or (
            self.hidden_bias.shape != (self.n_hidden,)
        ):
            raise ValueError(
                "Received an invalid value for the RBM parameters, expected weights of shape "
                "(n_visible, n_hidden), visible_bias of shape (n_visible,) and hidden_bias of "
                f"shape (n_hidden,). Received: weights.shape={self.weights.shape}, "
                f"visible_bias.shape={self.visible_bias.shape}, "
                f"hidden_bias.shape={self.hidden_bias.shape}"
            )

    @property
    def n_visible(self) -> int:
        return self.weights.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.weights.shape[1]

    def params(self) -> RBMParams:
        return RBMParams(*map(jnp.asarray, (self.weights, self.visible_bias, self.hidden_bias)))


# --------------------------------------------------------------------------- CD-1


def sample_hidden(mean: jax.Array, key: jax.Array, hidden_type: str) -> jax.Array:
    """Sample hidden states: Bernoulli(mean) for binary units, mean + N(0, 1) for Gaussian."""
    _check_hidden_type(hidden_type)
    return _HIDDEN_SAMPLE[hidden_type](mean, key)


def cd1_update_with_states(
    params: RBMParams,
    velocity: RBMParams,
    batch: jax.Array,
    hidden_states: jax.Array,
    *,
    learning_rate,
    momentum,
    weight_cost,
    hidden_type: str,
) -> tuple[RBMParams, RBMParams, jax.Array]:
    """One CD-1 step given the sampled hidden states of the positive phase.

    Positive statistics use the hidden probabilities (means); the visible units are
    reconstructed with probabilities from ``hidden_states``; negative statistics use the
    hidden probabilities of that reconstruction. Weight cost applies to the weights only.
    Returns ``(params, velocity, squared_error)`` where ``squared_error`` is the batch's
    summed squared reconstruction error, as printed by the Matlab code.
    """
    _check_hidden_type(hidden_type)
    hidden_mean = _HIDDEN_MEAN[hidden_type]
    weights, visible_bias, hidden_bias = params
    n_cases = batch.shape[0]

    positive_hidden = hidden_mean(batch @ weights + hidden_bias)
    negative_visible = jax.nn.sigmoid(hidden_states @ weights.T + visible_bias)
    negative_hidden = hidden_mean(negative_visible @ weights + hidden_bias)

    gradient = RBMParams(
        weights=(batch.T @ positive_hidden - negative_visible.T @ negative_hidden) / n_cases
        - weight_cost * weights,
        visible_bias=jnp.mean(batch - negative_visible, axis=0),
        hidden_bias=jnp.mean(positive_hidden - negative_hidden, axis=0),
    )
    velocity = jax.tree.map(lambda v, g: momentum * v + learning_rate * g, velocity, gradient)
    params = jax.tree.map(jnp.add, params, velocity)
    return params, velocity, jnp.sum((batch - negative_visible) ** 2)


def cd1_update(
    params: RBMParams,
    velocity: RBMParams,
    batch: jax.Array,
    key: jax.Array,
    *,
    learning_rate,
    momentum,
    weight_cost,
    hidden_type: str,
) -> tuple[RBMParams, RBMParams, jax.Array]:
    """One CD-1 step on a mini-batch; hidden states are sampled with ``key``.

    Pure function (jit-able); see :func:`cd1_update_with_states` for the update itself.
    """
    _check_hidden_type(hidden_type)
    mean = _HIDDEN_MEAN[hidden_type](batch @ params.weights + params.hidden_bias)
    return cd1_update_with_states(
        params, velocity, batch, sample_hidden(mean, key, hidden_type), learning_rate=learning_rate,
        momentum=momentum, weight_cost=weight_cost, hidden_type=hidden_type,
    )


@functools.partial(jax.jit, static_argnames=("batch_size", "hidden_type"))
def _rbm_epoch(params, velocity, data, key, learning_rate, momentum, weight_cost, *,
               batch_size, hidden_type):
    """One shuffled epoch of CD-1 steps and its reconstruction error per case.

    Mini-batches are gathered from the device-resident ``data`` inside ``lax.scan``; the
    ``n % batch_size`` examples left over by the permutation are skipped this epoch.
    """
    n_batches = data.shape[0] // batch_size
    permutation_key, step_key = jax.random.split(key)
    order = jax.random.permutation(permutation_key, data.shape[0])
    order = order[: n_batches * batch_size].reshape(n_batches, batch_size)

    def step(carry, indices_and_key):
        indices, batch_key = indices_and_key
        params, velocity, error = cd1_update(
            *carry, data[indices], batch_key, learning_rate=learning_rate, momentum=momentum,
            weight_cost=weight_cost, hidden_type=hidden_type,
        )
        return (params, velocity), error

    (params, velocity), errors = jax.lax.scan(
        step, (params, velocity), (order, jax.random.split(step_key, n_batches))
    )
    return params, velocity, jnp.sum(errors) / (errors.shape[0] * batch_size)


# --------------------------------------------------------------------------- training


def train_rbm(
    data,
    n_hidden: int,
    *,
    hidden_type: str = "binary",
    epochs: int = 50,
    batch_size: int = 100,
    learning_rate: float | None = None,
    weight_cost: float = 2e-4,
    initial_momentum: float = 0.5,
    final_momentum: float = 0.9,
    momentum_switch_epoch: int = 5,
    seed: int = 0,
    progress=None,
) -> RBMLayer:
    """Train one RBM with CD-1 on ``data`` (values in [0, 1]; logistic visible units).

    Defaults are the paper's: 50 epochs of mini-batches of 100, learning rate 0.1 for
    binary hidden units and 0.001 for Gaussian ones, weight cost 2e-4, momentum 0.5 for the
    first ``momentum_switch_epoch`` (5) epochs then 0.9, weights 0.1 x N(0, 1), biases 0.
    The same ``seed`` gives the same initial weights whatever ``epochs`` is, and the same
    result on the same machine.

    ``progress`` is None (silent), a callable ``progress(epoch, reconstruction_error)``
    called after each epoch with the number of epochs done (1..epochs), or a tqdm bar
    (advanced by one per epoch). The reconstruction error is the mean over the epoch's
    cases of the summed squared error of their CD-1 reconstructions.
    """
    x = _check_unit_interval(data, "data")
    n_hidden = _check_int(n_hidden, "n_hidden", minimum=1)
    _check_hidden_type(hidden_type)
    epochs = _check_int(epochs, "epochs", minimum=0)
    batch_size = _check_int(batch_size, "batch_size", minimum=1)
    if batch_size > x.shape[0]:
        raise ValueError(
            f"Received an invalid value for batch_size, expected at most the number of "
            f"examples ({x.shape[0]}). Received: batch_size={batch_size}. "
            "Pass a smaller batch_size or more data."
        )
    momentum_switch_epoch = _check_int(momentum_switch_epoch, "momentum_switch_epoch", minimum=0)
    seed = _check_int(seed, "seed", minimum=0)
    if learning_rate is None:
        learning_rate = _DEFAULT_LEARNING_RATE[hidden_type]
    report = _progress_reporter(progress)

    init_key, train_key = jax.random.split(jax.random.key(seed))
    n_visible = x.shape[1]
    params = RBMParams(
        weights=0.1 * jax.random.normal(init_key, (n_visible, n_hidden), jnp.float32),
        visible_bias=jnp.zeros(n_visible, jnp.float32),
        hidden_bias=jnp.zeros(n_hidden, jnp.float32),
    )
    velocity = jax.tree.map(jnp.zeros_like, params)
    x = jax.device_put(x)
    for epoch in range(epochs):
        momentum = initial_momentum if epoch < momentum_switch_epoch else final_momentum
        params, velocity, error = _rbm_epoch(
            params, velocity, x, jax.random.fold_in(train_key, epoch),
            jnp.float32(learning_rate), jnp.float32(momentum), jnp.float32(weight_cost),
            batch_size=batch_size, hidden_type=hidden_type,
        )
        if report is not None:
            report(epoch + 1, float(error))
    return RBMLayer(*(np.asarray(p) for p in params), hidden_type=hidden_type)


def up_pass(layer: RBMLayer, data) -> np.ndarray:
    """Hidden probabilities (binary) or means (Gaussian) of ``layer`` given ``data``."""
    x = check_features(data, name="data", n_features=layer.n_visible)
    return np.asarray(_hidden_means(layer.params(), jnp.asarray(x), layer.hidden_type))


def reconstruction_error(layer: RBMLayer, data) -> float:
    """Deterministic mean-field reconstruction error: the mean over cases of the summed
    squared difference between ``data`` and sigmoid(up_pass(data) @ W.T + b)."""
    x = check_features(data, name="data", n_features=layer.n_visible)
    return float(_mean_field_error(layer.params(), jnp.asarray(x), layer.hidden_type))


@functools.partial(jax.jit, static_argnames="hidden_type")
def _hidden_means(params, x, hidden_type):
    return _HIDDEN_MEAN[hidden_type](x @ params.weights + params.hidden_bias)


@functools.partial(jax.jit, static_argnames="hidden_type")
def _mean_field_error(params, x, hidden_type):
    hidden = _hidden_means(params, x, hidden_type)
    reconstruction = jax.nn.sigmoid(hidden @ params.weights.T + params.visible_bias)
    return jnp.sum((x - reconstruction) ** 2) / x.shape[0]


def pretrain_stack(
    data,
    sizes: Sequence[int] = (1000, 500, 250, 30),
    *,
    epochs: int = 50,
    batch_size: int = 100,
    seed: int = 0,
    progress=None,
) -> list[RBMLayer]:
    """Greedily pretrain a stack of RBMs with the paper's hyperparameters.

    Every layer has binary hidden units except the last, whose hidden units are Gaussian
    (the linear code); each layer is trained on the hidden probabilities of the one below.
    ``progress`` is None (silent), ``"tqdm"`` (one bar per layer on stderr) or a callable
    ``progress(layer_index, epoch, reconstruction_error)``.
    """
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
        raise ValueError(
            "Received an invalid value for sizes, expected a non-empty sequence of layer "
            f"widths such as (1000, 500, 250, 30). Received: sizes={sizes!r}"
        )
    sizes = [_check_int(size, "sizes", minimum=1) for size in sizes]
    seed = _check_int(seed, "seed", minimum=0)
    layer_seeds = np.random.SeedSequence(seed).generate_state(len(sizes))
    x = _check_unit_interval(data, "data")
    layers = []
    for index, n_hidden in enumerate(sizes):
        hidden_type = "gaussian" if index == len(sizes) - 1 else "binary"
        with _layer_progress(progress, index, x.shape[1], n_hidden, epochs) as layer_progress:
            layer = train_rbm(
                x, n_hidden, hidden_type=hidden_type, epochs=epochs, batch_size=batch_size,
                seed=int(layer_seeds[index]), progress=layer_progress,
            )
        layers.append(layer)
        if index < len(sizes) - 1:
            x = up_pass(layer, x)
    return layers


# --------------------------------------------------------------------------- Keras models


def unroll(layers: Sequence[RBMLayer]) -> AutoencoderNet:
    """Unroll a pretrained stack into a Keras autoencoder and its encoder and decoder.

    Encoder layers ``encoder_0..`` use the RBMs' weights and hidden biases with logistic
    activations, except the top one, named ``"code"``, which is linear for a Gaussian top
    RBM. Decoder layers ``decoder_0..`` (``decoder_0`` reads the code) use the transposed
    weights and the visible biases, all logistic, ending with ``n_visible`` outputs.
    """
    layers = list(layers)
    if not layers or not all(isinstance(layer, RBMLayer) for layer in layers):
        raise ValueError(
            "Received an invalid value for layers, expected a non-empty list of RBMLayer "
            f"such as pretrain_stack() returns. Received: layers={layers!r}"
        )
    for below, above in zip(layers, layers[1:]):
        if below.n_hidden != above.n_visible:
            raise ValueError(
                "Received an invalid value for layers, expected each layer's n_visible to "
                f"equal the previous layer's n_hidden. Received: {below.n_hidden} hidden "
                f"units followed by {above.n_visible} visible units"
            )
    last = len(layers) - 1
    encoder = [
        _DenseSpec(
            layer.weights, layer.hidden_bias,
            "sigmoid" if layer.hidden_type == "binary" else "linear",
            "code" if index == last else f"encoder_{index}",
        )
        for index, layer in enumerate(layers)
    ]
    decoder = [
        _DenseSpec(layer.weights.T, layer.visible_bias, "sigmoid", f"decoder_{index}")
        for index, layer in enumerate(reversed(layers))
    ]
    return _build_autoencoder(encoder, decoder)


class _DenseSpec(NamedTuple):
    kernel: np.ndarray
    bias: np.ndarray
    activation: str
    name: str


def _build_autoencoder(encoder_specs, decoder_specs) -> AutoencoderNet:
    """Encoder and decoder sub-models nested in the autoencoder, as aepca.models builds
    them, so that split_autoencoder() and the estimator's save/load handle the result."""

    def stack(specs, input_name, name):
        inputs = keras.Input(shape=(specs[0].kernel.shape[0],), name=input_name)
        tensor = inputs
        for spec in specs:
            layer = keras.layers.Dense(spec.kernel.shape[1], activation=spec.activation,
                                       name=spec.name)
            tensor = layer(tensor)
            layer.set_weights([np.asarray(spec.kernel, np.float32),
                               np.asarray(spec.bias, np.float32)])
        return keras.Model(inputs, tensor, name=name)

    encoder = stack(encoder_specs, "features", "encoder")
    decoder = stack(decoder_specs, "code_in", "decoder")
    inputs = keras.Input(shape=(encoder_specs[0].kernel.shape[0],), name="features")
    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="autoencoder")
    return AutoencoderNet(autoencoder, encoder, decoder)


def logistic_pca(
    x_train,
    n_components: int,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
) -> AutoencoderNet:
    """The paper's "logistic PCA" baseline as a linear encoder and a logistic decoder.

    Initialised from PCA (float64 ``eigh`` of the covariance): the encoder projects the
    centred data on the top ``n_components`` principal directions (layer ``"code"``), the
    decoder (``"decoder_0"``) uses their transposes with bias logit(mean), so that the code
    0 decodes to the mean image. Then trained with Adam on the mean binary cross-entropy
    over ``epochs`` shuffled passes by :func:`aepca.training.train` (``epochs=0`` returns
    the PCA initialisation; ``batch_size``, ``learning_rate`` and ``seed`` are validated by
    :class:`aepca.training.TrainConfig`).

    Not the paper's procedure: logistic PCA proper (Collins et al. 2001; Schein et al.
    2003) fits codes and components jointly, whereas here codes are a linear function of
    the input, as in the other autoencoders of the comparison.
    """
    x = _check_unit_interval(x_train, "x_train")
    n_components = check_n_components(n_components, x.shape[1], allow_equal=True)
    epochs = _check_int(epochs, "epochs", minimum=0)
    mean = x.mean(axis=0, dtype=np.float64)
    centred = x - mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / max(x.shape[0] - 1, 1))
    components = eigenvectors[:, np.argsort(eigenvalues)[::-1][:n_components]]
    # Fix each direction's sign (largest-magnitude entry positive) so results are repeatable.
    signs = np.sign(components[np.argmax(np.abs(components), axis=0), range(n_components)])
    components = components * np.where(signs == 0, 1.0, signs)
    clipped_mean = np.clip(mean, 1e-4, 1 - 1e-4)
    models = _build_autoencoder(
        [_DenseSpec(components, -mean @ components, "linear", "code")],
        [_DenseSpec(components.T, np.log(clipped_mean / (1 - clipped_mean)), "sigmoid",
                    "decoder_0")],
    )
    if epochs:
        config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                             optimizer="adam", loss="binary_crossentropy", seed=seed)
        train(models.autoencoder, x, config=config)
    return models


# --------------------------------------------------------------------------- validation


def _check_hidden_type(hidden_type):
    if hidden_type not in _HIDDEN_MEAN:
        raise ValueError(
            f"Received an invalid value for hidden_type, expected one of "
            f"{sorted(_HIDDEN_MEAN)}. Received: hidden_type={hidden_type!r}"
        )


def _check_int(value, name, *, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"Received an invalid value for {name}, expected an integer >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def _check_unit_interval(data, name) -> np.ndarray:
    x = check_features(data, name=name)
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        raise ValueError(
            f"Received an invalid value for {name}, expected values in [0, 1] for logistic "
            f"units. Received: {name} in [{low:g}, {high:g}]. Min-max scale it to [0, 1] "
            "first."
        )
    return x


def _progress_reporter(progress) -> Callable[[int, float], Any] | None:
    if progress is None:
        return None
    if hasattr(progress, "update") and hasattr(progress, "set_postfix"):
        def report(epoch, error):
            progress.set_postfix(reconstruction_error=f"{error:.4g}", refresh=False)
            progress.update(1)

        return report
    if callable(progress):
        return progress
    raise ValueError(
        "Received an invalid value for progress, expected None, a callable "
        f"progress(epoch, reconstruction_error) or a tqdm bar. Received: progress={progress!r}"
    )


@contextlib.contextmanager
def _layer_progress(progress, index, n_visible, n_hidden, epochs):
    """Yield train_rbm's progress target for one layer of the stack."""
    if progress is None:
        yield None
    elif isinstance(progress, str) and progress == "tqdm":
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=f"RBM {index} ({n_visible}->{n_hidden})", leave=False)
        try:
            yield bar
        finally:
            bar.close()
    elif callable(progress):
        yield functools.partial(progress, index)
    else:
        raise ValueError(
            "Received an invalid value for progress, expected None, 'tqdm' or a callable "
            "progress(layer_index, epoch, reconstruction_error). Received: "
            f"progress={progress!r}"
        )
