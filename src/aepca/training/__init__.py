"""Training loops for aepca's Keras autoencoders.

On JAX (the default) an epoch runs as compiled chunks of optimizer steps
(:mod:`aepca.training.jax_runner`); other backends use Keras' train step
(:mod:`aepca.training.fit_runner`). Both share the optimizer, schedule,
loss, validation, best-weight and divergence rules.
"""

from __future__ import annotations

import numpy as np

from aepca._keras import keras
from aepca.data.sources import open_source
from aepca.training.config import (
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
    DivergenceError,
    EpochCallback,
    TrainConfig,
    TrainState,
    best_epoch,
    make_optimizer,
    mse_per_sample,
    steps_per_epoch,
)
from aepca.training.fit_runner import FIT_BACKENDS
from aepca.validation import describe_names, invalid_value

__all__ = [
    "DivergenceError", "EpochCallback", "FIT_BACKENDS", "LOSSES", "OPTIMIZERS", "SCHEDULES", "TrainConfig",
    "TrainState", "best_epoch", "make_optimizer", "mse_per_sample", "steps_per_epoch", "train",
]


def train(
    model: keras.Model,
    x,
    *,
    x_val: np.ndarray | None = None,
    config: TrainConfig = TrainConfig(),
    progress: bool = False,
    callbacks: tuple[EpochCallback, ...] = (),
    resume: TrainState | None = None,
) -> dict:
    """Train ``model`` to reconstruct ``x``; return the per-epoch history.

    ``x`` is an array or a :class:`aepca.data.sources.RowSource`: rows in
    memory stay on the training device, others are read a block at a time
    (by each of several processes, its own lanes); the batches are the same
    either way (:class:`aepca.data.order.EpochBatches`). ``x_val`` is an
    array or a row source. ``callbacks``
    are called after every epoch (see :class:`EpochCallback`); ``resume``
    continues from a :class:`TrainState` they captured.

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
    x = open_source(x)
    if backend == "jax":
        from aepca.training.jax_runner import JaxRunner as runner
    else:
        if config.devices > 1:
            raise invalid_value(
                "devices", f"1 on the {backend!r} backend: training splits batches over several devices on JAX only",
                f"devices={config.devices}", "Set KERAS_BACKEND=jax or devices=1.",
            )
        from aepca.training.fit_runner import KerasFitRunner as runner
    return runner(model, x, x_val, config).run(progress=progress, callbacks=callbacks, resume=resume)
