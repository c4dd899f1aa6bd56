"""Training loops for aepca's Keras autoencoders.

On JAX (the default) an epoch runs as compiled chunks of optimizer steps
(:mod:`aepca.training.jax_runner`); other backends use ``model.fit``
(:mod:`aepca.training.fit_runner`). Both share the optimizer, schedule,
loss, validation, best-weight and divergence rules.
"""

from __future__ import annotations

import numpy as np

from aepca._keras import keras
from aepca.data.sources import RowSource, open_source
from aepca.training.config import (
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
    DivergenceError,
    EpochCallback,
    TrainConfig,
    TrainState,
    best_epoch,
    checked_rows,
    epoch_permutation,
    make_optimizer,
    mse_per_sample,
    steps_per_epoch,
)
from aepca.training.fit_runner import FIT_BACKENDS
from aepca.validation import describe_names, invalid_value

__all__ = [
    "DivergenceError", "EpochCallback", "FIT_BACKENDS", "LOSSES", "OPTIMIZERS", "SCHEDULES", "TrainConfig",
    "TrainState", "best_epoch", "epoch_permutation", "make_optimizer", "mse_per_sample", "steps_per_epoch", "train",
]


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

    ``x`` is an array or a :class:`aepca.data.sources.RowSource`, read a
    block at a time (and by each of several processes, its own lanes).
    ``rows`` (integer indices) trains on those rows of an array only, read in
    place: the batches are those of training on ``x[rows]``. ``callbacks``
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
    if backend == "jax":
        import jax

        from aepca.training.jax_runner import JaxRunner as runner

        if jax.process_count() > 1 and not isinstance(x, RowSource):
            # Several processes each read their own lanes of every batch: rows held in memory are streamed too.
            x, rows = open_source(x if rows is None else x[checked_rows(rows, len(x))]), None
            x_val = x_val if x_val is None or isinstance(x_val, RowSource) else open_source(x_val)
    else:
        if config.devices > 1:
            raise invalid_value(
                "devices", f"1 on the {backend!r} backend: training splits batches over several devices on JAX only",
                f"devices={config.devices}", "Set KERAS_BACKEND=jax or devices=1.",
            )
        from aepca.training.fit_runner import KerasFitRunner as runner
    return runner(model, x, x_val, config, rows).run(progress=progress, callbacks=callbacks, resume=resume)
