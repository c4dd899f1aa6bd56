"""How a network is trained: losses, optimizers, schedules, and the state a run can resume from."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

import numpy as np

from aepca._keras import keras, ops
from aepca.validation import invalid_value


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
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "nadam": keras.optimizers.Nadam,
}
SCHEDULES = ("constant", "cosine")
# Rows per evaluation batch.
EVAL_BATCH = 4096


def _choose(options, value, what):
    if value not in options:
        raise invalid_value(what, f"one of {sorted(options)}", f"{what}={value!r}")
    return value


@dataclass(frozen=True)
class TrainConfig:
    """How to train one network (docs/recipes.md says which values were measured).

    ``schedule="cosine"`` warms the learning rate up linearly over
    ``warmup_epochs`` then decays it along a cosine to ``min_lr_fraction`` of
    its peak at the last step. ``restore_best`` keeps the weights with the
    lowest validation loss, the starting weights included, so training can
    never end worse on validation than where it began. ``patience`` stops
    training once that many epochs passed without a lower validation loss
    (``epochs`` is then the cap); with ``anneal_epochs``, training goes back
    to the best weights then and runs that many more epochs at a learning
    rate falling linearly towards 0 first. ``beta_2`` is the decay rate of the
    optimizer's second-moment average (Keras' name). ``devices`` is the
    number of devices of each process a batch is split over. ``lanes`` (for
    streamed rows only) is how many read streams make up each batch, each
    giving ``batch_size / lanes`` rows: the batches depend on it, not on how
    many processes read them (None: ``devices`` times the processes).
    ``deadline`` (a ``time.monotonic()`` value) ends training after the last
    epoch that, as long as the one before, finishes by then (a run's first
    epoch, which compiles, is no measure: only a passed deadline ends it).
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
    anneal_epochs: int | None = None
    max_divergence_retries: int = 3
    chunks_per_epoch: int = 10
    devices: int = 1
    lanes: int | None = None
    deadline: float | None = None

    def __post_init__(self):
        _choose(LOSSES, self.loss, "loss")
        _choose(OPTIMIZERS, self.optimizer, "optimizer")
        _choose(SCHEDULES, self.schedule, "schedule")
        for name in ("epochs", "batch_size", "chunks_per_epoch", "devices", "patience", "anneal_epochs", "lanes"):
            value = getattr(self, name)
            if name in ("patience", "anneal_epochs", "lanes") and value is None:
                continue
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise invalid_value(name, "a positive integer", f"{name}={value!r}")
        if self.batch_size % self.devices:
            raise invalid_value(
                "devices", f"a divisor of batch_size={self.batch_size} (each device takes an equal share of every batch)",
                f"devices={self.devices}", f"Use one of {self._batch_divisors()}, or a batch size that is a multiple "
                f"of {self.devices} (--batch-size, batch_size=).",
            )
        if self.lanes is not None and self.batch_size % self.lanes:
            raise invalid_value(
                "lanes", f"a divisor of batch_size={self.batch_size} (each lane gives an equal share of every batch)",
                f"lanes={self.lanes}", f"Use one of {self._batch_divisors()} that is a multiple of devices x processes "
                f"(--lanes; by default that product), or a batch size that is a multiple of {self.lanes} "
                "(--batch-size, batch_size=).",
            )
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < math.inf):
            raise invalid_value("learning_rate", "a positive finite number", f"learning_rate={self.learning_rate!r}")
        if not (isinstance(self.beta_2, (int, float)) and 0 < self.beta_2 < 1):
            raise invalid_value("beta_2", "a number between 0 and 1 (exclusive)", f"beta_2={self.beta_2!r}")

    def _batch_divisors(self) -> str:
        return ", ".join(str(n) for n in range(1, self.batch_size + 1) if self.batch_size % n == 0)

    def to_dict(self) -> dict:
        return asdict(self)


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    return math.ceil(n_samples / batch_size)


def make_optimizer(config: TrainConfig, per_epoch: int) -> keras.optimizers.Optimizer:
    """The configured optimizer, its schedule laid out over ``per_epoch`` steps per epoch."""
    learning_rate = config.learning_rate
    if config.schedule == "cosine":
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


@dataclass
class TrainState:
    """Host copies of everything needed to continue training exactly."""

    trainable: list
    non_trainable: list
    optimizer: list
    epoch: int
    lr_scale: float
    history: dict = field(default_factory=dict)
    best: tuple[float, list, list] | None = None


class EpochCallback(Protocol):
    """Called after every epoch with the number of epochs done, the history so
    far and a function returning a :class:`TrainState` to resume from; one with
    a ``close()`` method is closed once when training ends, however it ends."""

    def __call__(self, epoch: int, history: dict, snapshot: Callable[[], TrainState]) -> None: ...


def copy_history(history: dict) -> dict:
    """Per-epoch lists copied; scalars (the starting validation loss) as they are."""
    return {k: list(v) if isinstance(v, list) else v for k, v in history.items()}


def best_epoch(history: dict) -> int:
    """The epoch with the lowest validation loss (0: the start, or no validation, was best)."""
    losses = history.get("val_loss", [])
    if not losses or min(losses) >= history.get("start_val_loss", math.inf):
        return 0
    return int(np.argmin(losses)) + 1
