"""Training loops for aepca's Keras autoencoders.

On the JAX backend (the default) training runs through Keras' stateless API
inside compiled chunks of an epoch: the data stays on the device, a
``jax.lax.scan`` runs many optimizer steps per call, and Python only sees the
loop a few times per epoch (often enough for a progress bar). Other backends
use ``model.fit``, which is correct but slower. Both paths share the optimizer,
schedule, loss, validation, best-weight and divergence rules defined here.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

import numpy as np

from aepca._backend import load_keras
from aepca._initial_values import with_slots_on_host
from aepca._memory import checked_rows, to_device
from aepca._saved_traces import jit_with_saved_trace
from aepca.models import predict
from aepca.validation import describe_names

keras = load_keras()
from keras import ops  # noqa: E402


class DivergenceError(RuntimeError):
    """Training kept producing non-finite losses after every allowed retry."""


def mse_per_sample(x, reconstruction):
    return ops.mean(ops.square(reconstruction - x), axis=-1)


def binary_crossentropy_per_sample(x, reconstruction):
    return ops.mean(ops.binary_crossentropy(x, reconstruction), axis=-1)


LOSSES: dict[str, Callable] = {
    "mse": mse_per_sample,
    "binary_crossentropy": binary_crossentropy_per_sample,
}

OPTIMIZERS: dict[str, Callable] = {
    name: with_slots_on_host(optimizer)
    for name, optimizer in (
        ("adam", keras.optimizers.Adam), ("adamw", keras.optimizers.AdamW), ("nadam", keras.optimizers.Nadam),
    )
}

SCHEDULES = ("constant", "cosine")
# Backends trained through model.fit: correct, slower than JAX's compiled chunks.
FIT_BACKENDS = ("tensorflow", "torch")
# Training steps per call into the compiled step function, by backend. On
# TensorFlow one call per step costs model.fit ~1-2 ms of Python a step; PyTorch's
# trainer takes only 1. XLA (jit_compile) stays as Keras decides: off on a CPU.
STEPS_PER_EXECUTION = {"tensorflow": 64}
MIN_CHUNK_STEPS = 20


def _choose(table, value, what):
    if value not in table:
        raise ValueError(
            f"Received an invalid value for {what}, expected one of {sorted(table)}. "
            f"Received: {what}={value!r}"
        )
    return value


@dataclass(frozen=True)
class TrainConfig:
    """How to train one network (the recipes in docs/recipes.md say which values were measured).

    ``schedule="cosine"`` warms the learning rate up linearly over
    ``warmup_epochs`` then decays it along a cosine to ``min_lr_fraction`` of
    its peak at the last step. ``restore_best`` keeps the weights with the
    lowest validation loss, the starting weights included, so training can
    never end worse on validation than where it began. ``patience`` stops
    training once that many epochs passed without a lower validation loss
    (``epochs`` is then the cap). ``beta_2`` is the
    decay rate of the optimizer's second-moment average (Keras' name); lower
    values let the step size follow the gradient scale sooner.
    """

    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    beta_2: float = 0.999
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    min_lr_fraction: float = 0.0
    loss: str = "mse"
    seed: int = 0
    restore_best: bool = False
    patience: int | None = None
    max_divergence_retries: int = 3
    chunks_per_epoch: int = 10
    devices: int = 1

    def __post_init__(self):
        _choose(LOSSES, self.loss, "loss")
        _choose(OPTIMIZERS, self.optimizer, "optimizer")
        _choose(dict.fromkeys(SCHEDULES), self.schedule, "schedule")
        for name in ("epochs", "batch_size", "chunks_per_epoch", "devices", "patience"):
            value = getattr(self, name)
            if name == "patience" and value is None:
                continue
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(
                    f"Received an invalid value for {name}, expected a positive integer. "
                    f"Received: {name}={value!r}"
                )
        if self.batch_size % self.devices:
            raise ValueError(
                f"Received an invalid value for devices, expected a divisor of batch_size={self.batch_size} "
                f"(each device takes an equal share of every batch). Received: devices={self.devices}"
            )
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < math.inf):
            raise ValueError(
                "Received an invalid value for learning_rate, expected a positive finite number. "
                f"Received: learning_rate={self.learning_rate!r}"
            )
        if not (isinstance(self.beta_2, (int, float)) and 0 < self.beta_2 < 1):
            raise ValueError(
                "Received an invalid value for beta_2, expected a number between 0 and 1 (exclusive). "
                f"Received: beta_2={self.beta_2!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    return math.ceil(n_samples / batch_size)


def make_optimizer(config: TrainConfig, n_samples: int) -> keras.optimizers.Optimizer:
    learning_rate = config.learning_rate
    if config.schedule == "cosine":
        per_epoch = steps_per_epoch(n_samples, config.batch_size)
        total = per_epoch * config.epochs
        warmup = min(int(round(config.warmup_epochs * per_epoch)), total - 1)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate if warmup == 0 else 0.0,
            warmup_target=config.learning_rate if warmup else None,
            warmup_steps=warmup,
            decay_steps=max(total - warmup, 1),
            alpha=config.min_lr_fraction,
        )
    return OPTIMIZERS[config.optimizer](learning_rate=learning_rate, beta_2=config.beta_2)


class EpochCallback(Protocol):
    def __call__(self, epoch: int, logs: dict, snapshot: Callable[[], "TrainState"]) -> None: ...


@dataclass
class TrainState:
    """Host copies of everything needed to continue training exactly."""

    trainable: list
    non_trainable: list
    optimizer: list
    epoch: int
    lr_scale: float
    history: dict = field(default_factory=dict)
    best: "tuple[float, list, list] | None" = None

    @staticmethod
    def capture(trainable, non_trainable, optimizer, epoch, lr_scale, history, best):
        to_host = lambda values: [np.array(v) for v in values]  # noqa: E731
        return TrainState(
            to_host(trainable), to_host(non_trainable), to_host(optimizer), epoch, lr_scale,
            _copy_history(history), best,
        )


def _copy_history(history: dict) -> dict:
    """Per-epoch lists copied; scalars (the starting validation loss) as they are."""
    return {k: list(v) if isinstance(v, list) else v for k, v in history.items()}


def _empty_history() -> dict:
    return {"loss": [], "val_loss": [], "val_mse": [], "seconds": [], "lr_scale": []}


def train(
    model: keras.Model,
    x: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    x_val: np.ndarray | None = None,
    config: TrainConfig = TrainConfig(),
    progress: bool = False,
    callbacks: tuple[EpochCallback, ...] = (),
    resume: TrainState | None = None,
) -> dict:
    """Train ``model`` to reconstruct ``x``; return the per-epoch history.

    ``rows`` (integer indices) trains on those rows of ``x`` only, read in
    place: a validation split then costs no copy of the training rows. The
    batches are those of training on ``x[rows]``.

    The history has ``loss`` (mean training loss over the epoch), ``val_loss``
    and ``val_mse`` on ``x_val`` (when given), ``seconds`` (wall time since the
    first step, cumulative) and ``lr_scale`` (1 unless divergence lowered the
    learning rate). The model's weights are updated in place.
    """
    backend = keras.backend.backend()
    if backend != "jax" and backend not in FIT_BACKENDS:
        raise ValueError(
            f"aepca trains on the 'jax', {describe_names(FIT_BACKENDS)} backends; Keras runs on {backend!r}. "
            "Set KERAS_BACKEND=jax (the fastest here)."
        )
    if config.devices > 1 and backend != "jax":
        raise ValueError(
            f"Received an invalid value for devices, expected 1 on the {backend!r} backend: training splits "
            f"batches over several devices on JAX only. Received: devices={config.devices}. "
            "Set KERAS_BACKEND=jax or devices=1."
        )
    runner = _JaxRunner if backend == "jax" else _KerasFitRunner
    return runner(model, x, x_val, config, rows).run(progress=progress, callbacks=callbacks, resume=resume)


class _Runner:
    """The epoch loop shared by every backend: validation, best weights, divergence."""

    def __init__(self, model, x, x_val, config: TrainConfig, rows=None):
        self.model = model
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        # int32 is what the compiled chunks index with.
        self.rows = None if rows is None else checked_rows(rows, len(self.x)).astype(np.int32, copy=False)
        self.n_train = len(self.x) if self.rows is None else len(self.rows)
        self.x_val = None if x_val is None else np.ascontiguousarray(x_val, dtype=np.float32)
        self.config = config
        self.optimizer = make_optimizer(config, self.n_train)
        self.optimizer.build(model.trainable_variables)

    # Backend-specific pieces -------------------------------------------------
    def state(self) -> tuple[list, list, list]:
        raise NotImplementedError

    def set_state(self, trainable, non_trainable, optimizer) -> None:
        raise NotImplementedError

    def run_epoch(self, epoch: int, lr_scale: float, tick: Callable[[int], None]) -> float:
        """Train one epoch; return the mean training loss."""
        raise NotImplementedError

    def evaluate(self, x: np.ndarray) -> tuple[float, float]:
        """Mean loss and mean squared error of reconstructing ``x``."""
        raise NotImplementedError

    def finish(self) -> None:
        """Write the final state into the Keras variables."""

    # Shared loop -------------------------------------------------------------
    def run(self, *, progress, callbacks, resume: TrainState | None) -> dict:
        config = self.config
        history = _empty_history()
        lr_scale, start_epoch, best = 1.0, 0, None
        if resume is not None:
            self.set_state(resume.trainable, resume.non_trainable, resume.optimizer)
            history = _copy_history(resume.history)
            lr_scale, start_epoch, best = resume.lr_scale, resume.epoch, resume.best
        elif config.restore_best and self.x_val is not None:
            # The starting point competes too: a PCA-initialised model can
            # then never end worse on validation than PCA.
            val_loss, _ = self.evaluate(self.x_val)
            best = (val_loss, *self._host_weights())
            history["start_val_loss"] = val_loss

        bar = _progress_bar(progress, config.epochs, start_epoch, steps_per_epoch(self.n_train, config.batch_size))
        started = time.perf_counter() - (history["seconds"][-1] if history["seconds"] else 0.0)
        epoch, retries = start_epoch, 0
        try:
            while epoch < config.epochs:
                before = [[np.array(v) for v in part] for part in self.state()]
                loss = self.run_epoch(epoch, lr_scale, bar.update if bar else _ignore)
                if not (math.isfinite(loss) and self._weights_finite()):
                    retries += 1
                    if retries > config.max_divergence_retries:
                        self.set_state(*before)
                        self.finish()  # the model keeps the weights from before the failing epoch
                        raise DivergenceError(
                            f"Training diverged (non-finite loss) in epoch {epoch + 1} even at "
                            f"{lr_scale:g} x the learning rate {config.learning_rate:g}. "
                            "Lower learning_rate or scale the data (scale='standard')."
                        )
                    lr_scale *= 0.1
                    warnings.warn(
                        f"Loss became non-finite in epoch {epoch + 1}; restored the weights from "
                        f"the start of the epoch and retrying at {lr_scale:g} x the learning rate.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    self.set_state(*before)
                    if bar:
                        bar.reset_epoch(epoch)
                    continue
                history["loss"].append(loss)
                if self.x_val is not None:
                    val_loss, val_mse = self.evaluate(self.x_val)
                    history["val_loss"].append(val_loss)
                    history["val_mse"].append(val_mse)
                    if config.restore_best and (best is None or val_loss < best[0]):
                        best = (val_loss, *self._host_weights())
                history["seconds"].append(time.perf_counter() - started)
                history["lr_scale"].append(lr_scale)
                epoch += 1
                if self._out_of_patience(history):
                    history["stopped_early"] = epoch
                    epoch = config.epochs
                if bar:
                    bar.set_postfix(_postfix(history))
                snapshot = lambda e=epoch: TrainState.capture(  # noqa: E731
                    *self.state(), e, lr_scale, history, best
                )
                for callback in callbacks:
                    callback(epoch, history, snapshot)
        finally:
            if bar:
                bar.close()
        if config.restore_best and best is not None:
            self._restore_weights(best[1], best[2])
            history["best_val_loss"] = best[0]
        self.finish()
        return history

    def _out_of_patience(self, history: dict) -> bool:
        """Whether ``patience`` epochs have passed since the lowest validation
        loss (the starting point counting as epoch 0)."""
        losses = history["val_loss"]
        if self.config.patience is None or not losses:
            return False
        best_epoch = int(np.argmin(losses)) + 1 if min(losses) < history.get("start_val_loss", math.inf) else 0
        return len(losses) - best_epoch >= self.config.patience

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The rows of ``x`` in the order epoch ``epoch`` visits them."""
        order = epoch_permutation(self.config.seed, epoch, self.n_train)
        return order if self.rows is None else self.rows[order]

    def _host_weights(self):
        trainable, non_trainable, _ = self.state()
        return [np.array(v) for v in trainable], [np.array(v) for v in non_trainable]

    def _restore_weights(self, trainable, non_trainable):
        _, _, optimizer = self.state()
        self.set_state(trainable, non_trainable, optimizer)

    def _weights_finite(self) -> bool:
        return all(bool(np.all(np.isfinite(np.asarray(v)))) for v in self.state()[0])


def _ignore(_steps: int) -> None:
    pass


def _postfix(history):
    postfix = {"loss": f"{history['loss'][-1]:.4f}"}
    if history["val_loss"]:
        postfix["val"] = f"{history['val_loss'][-1]:.4f}"
    return postfix


class _EpochBar:
    """A tqdm bar counting optimizer steps across all epochs."""

    def __init__(self, epochs, start_epoch, per_epoch):
        from tqdm.auto import tqdm

        self.per_epoch = per_epoch
        self.bar = tqdm(total=epochs * per_epoch, initial=start_epoch * per_epoch, unit="step", desc="training", leave=False)

    def update(self, steps):
        self.bar.update(steps)

    def reset_epoch(self, epoch):
        self.bar.n = epoch * self.per_epoch
        self.bar.refresh()

    def set_postfix(self, postfix):
        self.bar.set_postfix(postfix)

    def close(self):
        self.bar.close()


def _progress_bar(progress, epochs, start_epoch, per_epoch):
    return _EpochBar(epochs, start_epoch, per_epoch) if progress else None


def epoch_permutation(seed: int, epoch: int, n_samples: int) -> np.ndarray:
    """The shuffle of one epoch, a pure function of seed and epoch so a resumed
    run sees exactly the batches an uninterrupted one would."""
    return np.random.default_rng([seed, epoch]).permutation(n_samples)


def data_parallel_mesh(n_devices: int):
    """A one-axis mesh over the first ``n_devices`` devices JAX sees; ``None`` for one."""
    if n_devices == 1:
        return None
    import jax

    available = jax.devices()
    if n_devices > len(available):
        raise ValueError(
            f"Received an invalid value for devices, expected at most the {len(available)} device(s) JAX sees "
            f"({', '.join(str(d) for d in available)}). Received: devices={n_devices}"
        )
    return jax.sharding.Mesh(available[:n_devices], ("batch",))


class _JaxRunner(_Runner):
    """Compiled chunks of an epoch through Keras' stateless API.

    With ``config.devices > 1`` the data and the training state are copied to
    every device and each batch is split across them; XLA then sums the
    gradients over the devices, so the steps are those of one device (the
    same batches, losses equal to float32 round-off).
    """

    EVAL_BATCH = 4096

    def __init__(self, model, x, x_val, config, rows=None):
        super().__init__(model, x, x_val, config, rows)
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.mesh = data_parallel_mesh(config.devices)
        self.x_device = self._put(self.x)
        self.x_val_device = None if self.x_val is None else self._put(self.x_val)
        # Copies: the compiled chunks donate (delete) their input state, and the
        # model's own buffers must stay valid if training stops with an error.
        copy_tree = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))
        self._state = self._on_device(copy_tree((
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in self.optimizer.variables],
        )))
        # A saved trace is a one-device program (see aepca._saved_traces).
        self._description = self._trace_description() if self.mesh is None else None
        _, chunk_steps = self._chunk_layout()
        indices, weights = (jax.ShapeDtypeStruct((chunk_steps, config.batch_size), t) for t in (jnp.int32, jnp.float32))
        self._train_chunk = jit_with_saved_trace(
            self._make_train_chunk(),
            (self._state, self.x_device, indices, weights, np.float32(1)),
            description=self._description,
            donate_argnums=(0,),
        )
        self._eval_batches = {}

    def _trace_description(self) -> dict:
        """What tracing the training chunk and the evaluation read besides
        their arguments and aepca's, Keras' and JAX's code (see
        aepca._saved_traces)."""
        optimizer = keras.optimizers.serialize(self.optimizer)
        # Keras numbers a process's optimizers (adam, adam_1, ...): a label.
        optimizer["config"].pop("name", None)
        return {
            "model": _class_and_config(self.model, self.model.get_config()),
            "optimizer": _class_and_config(self.optimizer, optimizer),
            "loss": self.config.loss,
        }

    def _make_train_chunk(self):
        jax, jnp = self.jax, self.jnp
        model, optimizer = self.model, self.optimizer
        loss_per_sample = LOSSES[self.config.loss]

        def batch_loss(trainable, non_trainable, xb, weights):
            reconstruction, non_trainable = model.stateless_call(trainable, non_trainable, xb, training=True)
            total = jnp.sum(loss_per_sample(xb, reconstruction) * weights)
            # The mean over the real samples of a partial batch, as model.fit does.
            return total / jnp.maximum(jnp.sum(weights), 1.0), (non_trainable, total)

        grad = jax.value_and_grad(batch_loss, has_aux=True)

        def train_chunk(state, x, indices, weights, lr_scale):
            def step(state, batch):
                idx, w = batch

                def update(state):
                    trainable, non_trainable, opt = state
                    (_, (non_trainable, total)), grads = grad(trainable, non_trainable, x[idx], w)
                    new_trainable, opt = optimizer.stateless_apply(opt, grads, trainable)
                    # Adam's step is linear in the learning rate, so scaling the
                    # step scales the rate without recompiling.
                    new_trainable = [t + lr_scale * (n - t) for t, n in zip(trainable, new_trainable)]
                    return (new_trainable, non_trainable, opt), total

                def skip(state):
                    return state, jnp.zeros((), jnp.float32)

                # Padding steps (to equal chunk lengths) leave the state untouched.
                return jax.lax.cond(jnp.any(w > 0), update, skip, state)

            return jax.lax.scan(step, state, (indices, weights))

        return train_chunk

    def _eval_batch(self, size: int):
        """The compiled evaluation of ``size`` rows at a time."""
        if size not in self._eval_batches:
            jax, jnp = self.jax, self.jnp
            trainable, non_trainable, _ = self._state
            rows = jax.ShapeDtypeStruct((size, self.x.shape[1]), jnp.float32)
            weights = jax.ShapeDtypeStruct((size,), jnp.float32)
            self._eval_batches[size] = jit_with_saved_trace(
                self._make_eval_batch(), (trainable, non_trainable, rows, weights), description=self._description
            )
        return self._eval_batches[size]

    def _make_eval_batch(self):
        jnp = self.jnp
        model = self.model
        loss_per_sample = LOSSES[self.config.loss]

        def eval_batch(trainable, non_trainable, xb, weights):
            reconstruction, _ = model.stateless_call(trainable, non_trainable, xb, training=False)
            loss = jnp.sum(loss_per_sample(xb, reconstruction) * weights)
            mse = jnp.sum(mse_per_sample(xb, reconstruction) * weights)
            return loss, mse

        return eval_batch

    def state(self):
        return self._state

    def set_state(self, trainable, non_trainable, optimizer):
        self._state = self._on_device((list(trainable), list(non_trainable), list(optimizer)))

    def _put(self, x: np.ndarray):
        """Rows on the training device, or on every device of the mesh."""
        if self.mesh is None:
            return to_device(x)
        return self.jax.device_put(x, self._sharding())

    def _sharding(self, *spec):
        """Arrays of the mesh: copied to every device, or split along the axes ``spec`` names."""
        return self.jax.sharding.NamedSharding(self.mesh, self.jax.sharding.PartitionSpec(*spec))

    def _on_device(self, state):
        """``state`` placed explicitly where the data is, as the chunks'
        outputs are: the chunk is then lowered and compiled once, not once
        more for a state that JAX placed by default."""
        if self.mesh is not None:
            return self.jax.device_put(state, self._sharding())
        (device,) = self.x_device.devices()
        return self.jax.device_put(state, device)

    def _chunk_layout(self) -> tuple[int, int]:
        """How many chunks an epoch runs as, and how many steps each has."""
        steps = steps_per_epoch(self.n_train, self.config.batch_size)
        # Chunks of at least MIN_CHUNK_STEPS steps: fewer dispatches on small data.
        n_chunks = max(1, min(self.config.chunks_per_epoch, steps // MIN_CHUNK_STEPS))
        return n_chunks, math.ceil(steps / n_chunks)

    def _chunks(self, epoch):
        config = self.config
        n = self.n_train
        steps = steps_per_epoch(n, config.batch_size)
        n_chunks, chunk_steps = self._chunk_layout()
        padded = n_chunks * chunk_steps * config.batch_size
        indices = np.zeros(padded, dtype=np.int32)
        weights = np.zeros(padded, dtype=np.float32)
        indices[:n] = self.epoch_order(epoch)
        weights[:n] = 1.0
        shape = (n_chunks, chunk_steps, config.batch_size)
        return indices.reshape(shape), weights.reshape(shape), min(chunk_steps, steps)

    def run_epoch(self, epoch, lr_scale, tick):
        indices, weights, _ = self._chunks(epoch)
        if self.mesh is not None:
            # Each step's batch (the last axis) split across the devices.
            indices, weights = (self.jax.device_put(a, self._sharding(None, None, "batch")) for a in (indices, weights))
        steps_left = steps_per_epoch(self.n_train, self.config.batch_size)
        totals = []
        for chunk_indices, chunk_weights in zip(indices, weights):
            self._state, chunk_totals = self._train_chunk(
                self._state, self.x_device, chunk_indices, chunk_weights, np.float32(lr_scale)
            )
            totals.append(chunk_totals)
            done = min(len(chunk_indices), steps_left)
            steps_left -= done
            tick(done)
        return float(np.sum([np.sum(np.asarray(t), dtype=np.float64) for t in totals]) / self.n_train)

    def evaluate(self, x):
        x_device = self.x_val_device if x is self.x_val else self._put(x)
        trainable, non_trainable, _ = self._state
        loss = mse = 0.0
        # Equal batches of at most EVAL_BATCH rows: 10,000 rows run as 3 x 3,334,
        # not as 3 x 4,096 with a fifth of the work spent on padding.
        size = math.ceil(len(x) / math.ceil(len(x) / self.EVAL_BATCH))
        for start in range(0, len(x), size):
            xb = x_device[start : start + size]
            weights = np.ones(size, dtype=np.float32)
            if len(xb) < size:
                # One compiled shape for every batch: pad the last and mask it out.
                weights[len(xb) :] = 0.0
                xb = self.jnp.pad(xb, ((0, size - len(xb)), (0, 0)))
            batch_loss, batch_mse = self._eval_batch(size)(trainable, non_trainable, xb, weights)
            loss += float(batch_loss)
            mse += float(batch_mse)
        return loss / len(x), mse / len(x)

    def finish(self):
        trainable, non_trainable, optimizer = self._state
        if self.mesh is not None:
            # The model's weights on one device again, as Keras made them.
            trainable, non_trainable, optimizer = self.jax.device_get(self._state)
        for variable, value in zip(self.model.trainable_variables, trainable):
            variable.assign(value)
        for variable, value in zip(self.model.non_trainable_variables, non_trainable):
            variable.assign(value)
        for variable, value in zip(self.optimizer.variables, optimizer):
            variable.assign(value)


def _class_and_config(instance, config: dict) -> dict:
    """A Keras object's class and configuration, less its initializers: they
    only set starting values, which a traced program takes as arguments."""
    kind = type(instance)
    return {"module": kind.__module__, "class": kind.__qualname__, "config": _without_initial_values(config)}


def _without_initial_values(config):
    if isinstance(config, dict):
        return {
            key: _without_initial_values(value)
            for key, value in config.items()
            if not key.endswith("_initializer")
        }
    if isinstance(config, list):
        return [_without_initial_values(value) for value in config]
    return config


class _KerasFitRunner(_Runner):
    """``model.fit`` one epoch at a time, for backends without the compiled path."""

    def __init__(self, model, x, x_val, config, rows=None):
        super().__init__(model, x, x_val, config, rows)
        self.lr_scale = 1.0
        # A second model over the same layers (so the same weights) is the one
        # compiled and fitted: the model itself stays uncompiled, as on JAX, and
        # saves without an optimizer or a loss function in its file.
        self.trainer = keras.Model(model.inputs, model.outputs, name=f"{model.name}_trainer")
        self._compile()

    def _compile(self):
        self.trainer.compile(
            optimizer=self.optimizer,
            loss=LOSSES[self.config.loss],
            steps_per_execution=STEPS_PER_EXECUTION.get(keras.backend.backend(), 1),
        )

    def _rescale_learning_rate(self, lr_scale):
        """Swap in an optimizer at the scaled rate that keeps the old one's state."""
        old = self.optimizer
        scaled = dataclasses.replace(self.config, learning_rate=self.config.learning_rate * lr_scale)
        self.optimizer = make_optimizer(scaled, self.n_train)
        self.optimizer.build(self.model.trainable_variables)
        for new_variable, old_variable in zip(self.optimizer.variables, old.variables):
            if "learning_rate" not in new_variable.path:
                new_variable.assign(old_variable)
        self.lr_scale = lr_scale
        self._compile()

    def state(self):
        return (
            [np.array(v) for v in self.model.trainable_variables],
            [np.array(v) for v in self.model.non_trainable_variables],
            [np.array(v) for v in self.optimizer.variables],
        )

    def set_state(self, trainable, non_trainable, optimizer):
        for variable, value in zip(self.model.trainable_variables, trainable):
            variable.assign(value)
        for variable, value in zip(self.model.non_trainable_variables, non_trainable):
            variable.assign(value)
        for variable, value in zip(self.optimizer.variables, optimizer):
            if "learning_rate" not in variable.path:
                variable.assign(value)

    def run_epoch(self, epoch, lr_scale, tick):
        if lr_scale != self.lr_scale:
            self._rescale_learning_rate(lr_scale)
        rows = self.x[self.epoch_order(epoch)]  # one copy serves as inputs and targets
        result = self.trainer.fit(rows, rows, batch_size=self.config.batch_size, epochs=1, shuffle=False, verbose=0)
        tick(steps_per_epoch(self.n_train, self.config.batch_size))
        return float(result.history["loss"][-1])

    def evaluate(self, x):
        loss_per_sample = LOSSES[self.config.loss]
        loss = mse = 0.0
        for start in range(0, len(x), 4096):
            xb = x[start : start + 4096]
            # As numpy on every backend, and on PyTorch without recording gradients.
            reconstruction = predict(self.model, xb)
            loss += float(ops.convert_to_numpy(ops.sum(loss_per_sample(xb, reconstruction))))
            mse += float(ops.convert_to_numpy(ops.sum(mse_per_sample(xb, reconstruction))))
        return loss / len(x), mse / len(x)
