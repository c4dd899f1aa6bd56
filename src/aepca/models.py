"""Keras builders for aepca's autoencoders.

Every network is a plain Keras 3 functional model made of built-in layers, so
it saves to the ``.keras`` format and loads in ``safe_mode`` without custom
objects, on any backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import numbers
import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from aepca._keras import keras
from aepca.validation import invalid_value

# A fit's peak memory in float32 copies of its network's weights, at the least (weights, gradients,
# Adam's moments, kept best weights...; measurements in docs/usage.md, "Large networks").
TRAINING_COPIES = 12


def mirrored_widths(n_features: int, hidden, n_components: int) -> tuple[int, ...]:
    """The layer widths of the mirrored network ``d - hidden - k - reversed(hidden) - d``."""
    return (n_features, *hidden, n_components, *reversed(hidden), n_features)


def parameter_count(n_features: int, hidden, n_components: int) -> int:
    """Weights and biases of the mirrored network (:func:`mirrored_widths`)."""
    widths = mirrored_widths(n_features, hidden, n_components)
    return sum((inputs + 1) * outputs for inputs, outputs in zip(widths[:-1], widths[1:]))


def training_memory() -> tuple[int, str] | None:
    """Bytes of the memory networks train in, and its name: the JAX device's where JAX reports its
    limit (a GPU's), else the machine's RAM; None where neither is known."""
    if keras.backend.backend() == "jax":
        import jax

        device = jax.local_devices()[0]
        limit = (device.memory_stats() or {}).get("bytes_limit")
        if limit:
            return int(limit), f"the memory of {device.platform.upper()} device {device.id}"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's RAM"
    except (AttributeError, ValueError, OSError):  # no such query on this system
        return None


def network_fits(n_features: int, hidden, n_components: int) -> bool:
    """Whether the network's training fits in the memory it trains in (``TRAINING_COPIES`` of its weights)."""
    memory = training_memory()
    return memory is None or TRAINING_COPIES * 4 * parameter_count(n_features, hidden, n_components) <= memory[0]


def check_network_fits(n_features: int, hidden, n_components: int) -> None:
    """Refuse a network too large to train in the memory it trains in, before anything is allocated:
    a JAX allocation that fails there aborts the whole process instead of raising."""
    memory = training_memory()
    weights = parameter_count(n_features, hidden, n_components)
    needed = TRAINING_COPIES * 4 * weights
    if memory is not None and needed > memory[0]:
        layers = "-".join(map(str, mirrored_widths(n_features, hidden, n_components)))
        raise invalid_value(
            "hidden", f"a network whose training fits in {memory[1]} ({memory[0] / 2**30:.1f} GiB)",
            f"hidden={tuple(hidden)}: {layers}, {weights:,} weights, at least {needed / 2**30:,.1f} GiB to train "
            f"({TRAINING_COPIES} float32 copies of its weights)",
            "Choose narrower hidden layers (--hidden, hidden=).")


@dataclass(frozen=True)
class AutoencoderNet:
    """An autoencoder and its two halves; the halves share the layers."""

    autoencoder: keras.Model
    encoder: keras.Model
    decoder: keras.Model


def check_activation(name: str, what: str = "activation") -> str:
    try:
        keras.activations.get(name)
    except (ValueError, TypeError):
        raise ValueError(
            f"Received an invalid value for {what}, expected a Keras activation name such as "
            f"'elu', 'relu', 'tanh', 'sigmoid' or 'linear'. Received: {what}={name!r}"
        ) from None
    return name


def check_hidden(hidden) -> tuple[int, ...]:
    """The encoder's hidden widths as ints: each a whole number of units, at least 1 (none: no hidden layer)."""
    widths = list(hidden)
    if not all(isinstance(w, numbers.Real) and not isinstance(w, bool) and float(w).is_integer() and w >= 1
               for w in widths):
        raise invalid_value("hidden", "widths that are whole numbers of units, at least 1 each",
                            f"hidden=[{', '.join(map(str, widths))}]",
                            "Give the encoder's widths, e.g. hidden=(512, 128) (--hidden 512,128).")
    return tuple(int(w) for w in widths)


# Where an output activation can be inverted: the pre-activation giving a
# wanted output, and the range the wanted output is clipped to. Sigmoid and
# tanh targets are kept off their asymptotes (a mean of exactly 0 or 1 would
# need an infinite bias).
_OUTPUT_INVERSES = {
    "linear": (lambda target: target, -np.inf, np.inf),
    "sigmoid": (lambda target: np.log(target) - np.log1p(-target), 1e-3, 1 - 1e-3),
    "tanh": (np.arctanh, -1 + 2e-3, 1 - 2e-3),
}


def output_bias_for(mean: np.ndarray, output_activation: str) -> np.ndarray:
    """The output layer's bias that makes a network with zero last-layer
    weights reconstruct every sample as ``mean``."""
    if output_activation not in _OUTPUT_INVERSES:
        raise ValueError(
            f"Received an invalid value for output_activation, expected one of "
            f"{sorted(_OUTPUT_INVERSES)} when the output bias starts at the data mean. "
            f"Received: output_activation={output_activation!r}. Use output_bias='zeros' "
            "or one of those output activations."
        )
    inverse, low, high = _OUTPUT_INVERSES[output_activation]
    return inverse(np.clip(np.asarray(mean, dtype=np.float64), low, high)).astype(np.float32)


def _dense(units, activation, name, seed, index, zero=False):
    """A Dense layer whose kernel starts at zero or from its own seed, derived from ``seed`` and ``index``."""
    layer_seed = None if seed is None else (int(seed) * 1009 + index) % (2**31 - 1)
    kernel = "zeros" if zero else keras.initializers.GlorotUniform(seed=layer_seed)
    return keras.layers.Dense(units, activation=activation, kernel_initializer=kernel, name=name)


def _mlp(x, sizes, activation, prefix, seed, first_index):
    for i, units in enumerate(sizes):
        x = _dense(units, activation, f"{prefix}_{i}", seed, first_index + i)(x)
    return x


def build_autoencoder(
    n_features: int,
    n_components: int,
    *,
    hidden=(512, 128),
    activation: str = "elu",
    output_activation: str = "sigmoid",
    code_activation: str = "linear",
    seed: int | None = None,
    pca: tuple[np.ndarray, np.ndarray] | None = None,
    output_mean: np.ndarray | None = None,
    standardise: tuple[np.ndarray, np.ndarray] | None = None,
    data_scale: float = 1.0,
) -> AutoencoderNet:
    """A mirrored multilayer autoencoder ``d - hidden - k - reversed(hidden) - d``.

    The code layer is linear by default: a bounded code wastes capacity
    (``code_activation`` exists to show that; a PCA start is always linear).

    With ``pca=(components, mean)`` (``components`` of shape ``(k, d)``) the
    network is *PCA-initialised*: the encoder is the PCA projection plus a
    nonlinear residual branch, and the decoder the PCA reconstruction plus a
    nonlinear residual branch. Each branch's last layer starts at zero, so at
    step 0 the model *is* PCA and training can only start from PCA's error.
    The output is then linear (a sigmoid would distort the PCA start).

    With ``output_mean`` (shape ``(d,)``, random starts only) the output
    layer's bias starts where the output activation gives that mean, so the
    first steps spend no effort learning the mean (the PCA start already
    includes it; a standardised output starts at the standardising mean
    without it).

    With ``standardise=(mean, scale)`` (each of shape ``(d,)``) the hidden
    layers see each column standardised and the output layer's values are
    scaled back per column: the network is well conditioned whatever the
    columns' units, while its loss stays the plain MSE of its inputs.
    ``data_scale`` says that the inputs are the data divided by it, so that a
    PCA start (``pca`` in the data's units) keeps PCA's codes.
    """
    check_activation(activation)
    check_activation(output_activation, "output_activation")
    check_activation(code_activation, "code_activation")
    hidden = tuple(int(h) for h in hidden)
    n_hidden = len(hidden)
    inputs = keras.Input(shape=(n_features,), name="features")
    code_inputs = keras.Input(shape=(n_components,), name="code_in")
    if output_mean is not None and np.shape(output_mean) != (n_features,):
        raise ValueError(
            f"Received an invalid value for output_mean, expected shape ({n_features},). "
            f"Received: output_mean.shape={np.shape(output_mean)}"
        )

    if standardise is not None:
        columns, scales = (np.asarray(a, dtype=np.float32) for a in standardise)
        if columns.shape != (n_features,) or scales.shape != (n_features,) or not np.all(scales > 0):
            raise ValueError(
                f"Received an invalid value for standardise, expected a mean and positive scales of shape "
                f"({n_features},). Received: shapes {columns.shape} and {scales.shape}"
            )
        hidden_inputs = keras.layers.Normalization(mean=columns, variance=np.square(scales), name="standardised")(inputs)
        # Per-column output scale; the PCA start's own layer already adds the mean.
        output_mean_shift = np.zeros_like(columns) if pca is not None else columns
        rescale = keras.layers.Normalization(
            mean=output_mean_shift, variance=np.square(scales), invert=True, name="output_scale"
        )
    else:
        hidden_inputs, rescale = inputs, None
    if pca is not None:
        components, mean = (np.asarray(a, dtype=np.float32) for a in pca)
        if components.shape != (n_components, n_features) or mean.shape != (n_features,):
            raise ValueError(
                f"Received an invalid value for pca, expected components of shape "
                f"({n_components}, {n_features}) and a mean of shape ({n_features},). "
                f"Received: components.shape={components.shape}, mean.shape={mean.shape}"
            )
    # The hidden layers; a PCA start's residual branches.
    encoded = _mlp(hidden_inputs, hidden, activation, "encoder", seed, 0)
    decoded = _mlp(code_inputs, tuple(reversed(hidden)), activation, "decoder", seed, n_hidden + 1)
    if pca is None:
        code = _dense(n_components, code_activation, "code", seed, n_hidden)(encoded)
        output_layer = _dense(n_features, output_activation, "reconstruction", seed, 2 * n_hidden + 1)
        outputs = output_layer(decoded)
        if output_mean is not None:
            # Before a standardised output is scaled back: the mean in the output layer's own units.
            start = output_mean if rescale is None else (np.asarray(output_mean) - output_mean_shift) / scales
            output_layer.bias.assign(output_bias_for(start, output_activation))
        if rescale is not None:
            outputs = rescale(outputs)
    else:
        projection = keras.layers.Dense(n_components, name="pca_projection")
        residual = _dense(n_components, "linear", "encoder_residual", seed, n_hidden, zero=True)(encoded)
        code = keras.layers.Add(name="code")([projection(inputs), residual])
        # Inputs are data / data_scale; codes and means stay in the data's units.
        projection.set_weights([components.T * data_scale, -mean @ components.T])

        reconstruction = keras.layers.Dense(n_features, name="pca_reconstruction")
        residual = _dense(n_features, "linear", "decoder_residual", seed, 2 * n_hidden + 1, zero=True)(decoded)
        if rescale is not None:
            residual = rescale(residual)
        outputs = keras.layers.Add(name="reconstruction")([reconstruction(code_inputs), residual])
        reconstruction.set_weights([components / data_scale, mean / data_scale])

    encoder = keras.Model(inputs, code, name="encoder")
    decoder = keras.Model(code_inputs, outputs, name="decoder")
    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="autoencoder")
    # Everything but initial values that the three models compute with.
    structure = json.dumps([
        n_features, n_components, hidden, activation, output_activation, code_activation, pca is not None,
        None if standardise is None else hashlib.sha256(columns.tobytes() + scales.tobytes()).hexdigest(),
    ])
    for model in (autoencoder, encoder, decoder):
        _STRUCTURES[model] = f"{model.name} {structure}"
    return AutoencoderNet(autoencoder, encoder, decoder)


def weights_of(model) -> list[np.ndarray]:
    """``model.get_weights()`` without Keras' NumPy-2 copy-keyword DeprecationWarning per weight
    (and, on PyTorch, without a gradient record)."""
    return [np.array(keras.ops.convert_to_numpy(keras.ops.stop_gradient(v.value))) for v in model.weights]


def split_autoencoder(autoencoder: keras.Model) -> AutoencoderNet:
    """Recover the encoder and decoder halves of a (loaded) autoencoder."""
    try:
        return AutoencoderNet(autoencoder, autoencoder.get_layer("encoder"), autoencoder.get_layer("decoder"))
    except ValueError:
        raise ValueError(
            "The model has no 'encoder' and 'decoder' sub-models; it was not made by aepca."
        ) from None


PREDICT_BATCH = 8192
# The smallest padded block: smaller inputs share this one compiled program.
MIN_PREDICT_BLOCK = 64


def predict(model: keras.Model, X: np.ndarray) -> np.ndarray:
    """``model(X)`` as float32 numpy, ``PREDICT_BATCH`` rows at a time.

    On JAX each block runs as one compiled program (faster than Keras' eager
    call, with the same numbers); a short last block is padded to a power of
    two, so only a handful of shapes is ever compiled. Other backends call the
    model eagerly, without recording gradients.
    """
    if len(X) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    if keras.backend.backend() == "jax":
        forward = _compiled_forward(model)
    else:
        def forward(block):
            with without_gradients():
                return keras.ops.convert_to_numpy(model(block, training=False))
    parts = [forward(X[start : start + PREDICT_BATCH]) for start in range(0, len(X), PREDICT_BATCH)]
    return np.concatenate(parts).astype(np.float32, copy=False)


def without_gradients():
    """A context for eager calls whose results are only read: ``torch.no_grad()`` on PyTorch, which
    otherwise records every call for a backward pass; JAX and TensorFlow record nothing there."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def _compiled_forward(model: keras.Model):
    """``block -> model(block)`` compiled by JAX, at the model's current weights, as numpy."""
    import jax

    program = shared_program(
        model, ("forward",),
        lambda live: jax.jit(
            lambda trainable, non_trainable, x: live.model.stateless_call(trainable, non_trainable, x, training=False)[0]
        ),
    )
    call = program.bind(model=model)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def forward(block):
        rows = len(block)
        size = max(MIN_PREDICT_BLOCK, 1 << (rows - 1).bit_length())
        padded = np.pad(block, ((0, size - rows), (0, 0))) if size > rows else block
        return np.asarray(call(trainable, non_trainable, padded))[:rows]

    return forward


# The structure of each model build_autoencoder made (weakly: a model's entry goes with it).
_STRUCTURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class SharedProgram:
    """A compiled program that any live model of one structure (and its optimizer) can run.

    ``build(live)`` makes it once (e.g. a ``jax.jit`` function); the function reaches the model and
    optimizer only through ``live.model`` and ``live.optimizer`` while it is traced, never keeping
    them. A caller runs it through :meth:`bind`, which sets its own parts in ``live`` for the
    calling thread during each call: whenever JAX traces (a new shape), it traces a live model of
    that structure, and two threads calling at once each trace their own.
    """

    def __init__(self, build):
        self._live = threading.local()
        self._program = build(self._live)

    def bind(self, **parts):
        """The program as a function that computes with ``parts`` (e.g. ``model=..., optimizer=...``)."""
        program, live = self._program, self._live

        def call(*args, **kwargs):
            before = {name: getattr(live, name, None) for name in parts}
            for name, part in parts.items():
                setattr(live, name, part)
            try:
                return program(*args, **kwargs)
            finally:
                for name, part in before.items():
                    setattr(live, name, part)

        return call


# Compiled programs by structure and settings: the folds and refits of one network, and every
# prediction of one architecture, compile once per process. Keys hold shapes and settings only,
# programs no model, so a model and its device memory go when their owner drops them. Models that
# build_autoencoder did not make have programs of their own, which go with the model.
MAX_SHARED_PROGRAMS = 32
_PROGRAMS: OrderedDict = OrderedDict()
_OWN_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PROGRAMS_LOCK = threading.Lock()


def shared_program(model: keras.Model, settings: tuple, build) -> SharedProgram:
    """The program for ``model``'s structure and ``settings`` (hashable), made by
    ``build(live)`` (see :class:`SharedProgram`) when none is kept; the least recently used
    are dropped. Safe to call from several threads."""
    structure = _STRUCTURES.get(model)
    with _PROGRAMS_LOCK:
        if structure is None:
            programs, key = _OWN_PROGRAMS.setdefault(model, OrderedDict()), settings
        else:
            programs, key = _PROGRAMS, (structure, *settings)
        program = programs.pop(key, None) or SharedProgram(build)
        programs[key] = program
        while len(programs) > MAX_SHARED_PROGRAMS:
            programs.popitem(last=False)
    return program
