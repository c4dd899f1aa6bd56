"""The epoch loop every backend shares: validation, best weights, patience, divergence."""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable

import numpy as np

from aepca import distributed
from aepca.data.order import EpochBatches, epoch_steps
from aepca.data.sources import RowSource
from aepca.training.config import (
    DivergenceError,
    TrainConfig,
    TrainState,
    best_epoch,
    copy_history,
    make_optimizer,
)


class Runner:
    """One training run; a backend supplies the state, an epoch and an evaluation."""

    def __init__(self, model, x: RowSource, x_val, config: TrainConfig, lanes: int = 1):
        """``x``: the training rows; ``lanes`` read streams make up each batch (see
        :class:`aepca.data.order.EpochBatches`)."""
        self.model = model
        self.config = config
        self.x, self.n_train, self.lanes = x, x.n_rows, lanes
        self.x_val = x_val if x_val is None or isinstance(x_val, RowSource) else np.ascontiguousarray(x_val, dtype=np.float32)
        self.per_epoch = epoch_steps(x, seed=config.seed, epoch=0, lanes=lanes, batch_size=config.batch_size)
        self.optimizer = make_optimizer(config, self.per_epoch)
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
        """Write the final weights into the model's Keras variables."""

    def epoch_batches(self, epoch: int, lanes_here=None) -> EpochBatches:
        """Epoch ``epoch``'s batches: one order for rows held in memory and rows read as they go."""
        return EpochBatches(self.x, seed=self.config.seed, epoch=epoch, lanes=self.lanes,
                            batch_size=self.config.batch_size, lanes_here=lanes_here)

    def host(self, value) -> np.ndarray:
        """A host copy of one array of :meth:`state`."""
        return np.array(value)

    def host_state(self) -> list[list[np.ndarray]]:
        return [[self.host(v) for v in part] for part in self.state()]

    def assign_weights(self, trainable, non_trainable) -> None:
        """Write weights into the model's Keras variables."""
        variables = self.model.trainable_variables + self.model.non_trainable_variables
        for variable, value in zip(variables, [*trainable, *non_trainable]):
            variable.assign(value)

    # Shared loop -------------------------------------------------------------
    def run(self, *, progress, callbacks, resume: TrainState | None) -> dict:
        config = self.config
        history = {"loss": [], "val_loss": [], "val_mse": [], "seconds": [], "lr_scale": []}
        lr_scale, start_epoch, best = 1.0, 0, None
        if resume is not None:
            self.set_state(resume.trainable, resume.non_trainable, resume.optimizer)
            history = copy_history(resume.history)
            lr_scale, start_epoch, best = resume.lr_scale, resume.epoch, resume.best
            history["resumed_at"] = start_epoch
        # One host copy of the state per epoch: where a diverging next epoch restarts, the checkpoint's,
        # and the best weights when they are.
        state = self.host_state()
        if resume is None and config.restore_best and self.x_val is not None:
            # The starting point competes too: a PCA-initialised model can
            # then never end worse on validation than PCA.
            val_loss, _ = self.evaluate(self.x_val)
            best = (val_loss, state[0], state[1])
            history["start_val_loss"] = val_loss

        bar = _EpochBar(config.epochs, start_epoch, self.per_epoch) if progress else None
        started = time.perf_counter() - (history["seconds"][-1] if history["seconds"] else 0.0)
        epoch, retries = start_epoch, 0
        try:
            while epoch < config.epochs:
                loss = self.run_epoch(epoch, lr_scale * self._anneal_factor(history, epoch),
                                      bar.update if bar else lambda steps: None)
                # The epoch's one host copy: checked, kept as the best weights, checkpointed.
                after = self.host_state()
                if not (math.isfinite(loss) and all(np.isfinite(v).all() for v in after[0])):
                    retries += 1
                    if retries > config.max_divergence_retries:
                        self.set_state(*state)
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
                    self.set_state(*state)
                    if bar:
                        bar.reset_epoch(epoch)
                    continue
                history["loss"].append(loss)
                if self.x_val is not None:
                    val_loss, val_mse = self.evaluate(self.x_val)
                    history["val_loss"].append(val_loss)
                    history["val_mse"].append(val_mse)
                    if config.restore_best and (best is None or val_loss < best[0]):
                        best = (val_loss, after[0], after[1])
                history["seconds"].append(time.perf_counter() - started)
                history["lr_scale"].append(lr_scale)
                epoch += 1
                annealing = "annealed_from" in history
                if self._stops(history, epoch, best):
                    history["stopped_early"] = epoch
                    epoch = config.epochs
                elif epoch < config.epochs and self._past_deadline(history, first=epoch == start_epoch + 1):
                    history["stopped_at_deadline"] = epoch
                    epoch = config.epochs
                if bar:
                    bar.set_postfix(history)
                # Annealing that started now went back to the best weights.
                state = after if ("annealed_from" in history) == annealing else self.host_state()
                snapshot = lambda e=epoch, state=state: TrainState(  # noqa: E731
                    *state, e, lr_scale, copy_history(history), best
                )
                for callback in callbacks:
                    callback(epoch, history, snapshot)
        finally:
            if bar:
                bar.close()
            for callback in callbacks:
                if hasattr(callback, "close"):
                    callback.close()
        if config.restore_best and best is not None:
            self._restore_weights(best[1], best[2])
            history["best_val_loss"] = best[0]
        self.finish()
        return history

    def _stops(self, history: dict, epoch: int, best) -> bool:
        """Whether training ends after ``epoch`` epochs: out of patience (``patience`` epochs since the
        lowest validation loss, the start counting as epoch 0), or, with ``anneal_epochs``, at the end
        of the annealing that running out of patience starts from the best weights."""
        if "annealed_from" in history:
            return epoch - history["annealed_from"] >= self.config.anneal_epochs
        losses = history["val_loss"]
        if self.config.patience is None or not losses or len(losses) - best_epoch(history) < self.config.patience:
            return False
        if not self.config.anneal_epochs:
            return True
        history["annealed_from"] = epoch
        if best is not None:
            self._restore_weights(best[1], best[2])
        return False

    def _anneal_factor(self, history: dict, epoch: int) -> float:
        """The share of the scheduled learning rate epoch ``epoch`` (from 0) trains at: 1, then
        falling linearly over the annealing epochs to 1 / ``anneal_epochs`` (a cosine schedule
        cut short by patience never reaches its low rates, which lower the error most)."""
        if "annealed_from" not in history:
            return 1.0
        return (self.config.anneal_epochs - (epoch - history["annealed_from"])) / self.config.anneal_epochs

    def _past_deadline(self, history: dict, *, first: bool) -> bool:
        """Whether another epoch, as long as the last, would end after the deadline (on any
        process: they stop together). The ``first`` epoch of a run compiles, so its length says
        nothing of the next: only a deadline already past ends training after it."""
        if self.config.deadline is None:
            return False
        seconds = history["seconds"]
        last = 0.0 if first else seconds[-1] - seconds[-2]
        return bool(distributed.all_sum([float(time.monotonic() + last > self.config.deadline)])[0] > 0)

    def _restore_weights(self, trainable, non_trainable):
        _, _, optimizer = self.host_state()
        self.set_state(trainable, non_trainable, optimizer)


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

    def set_postfix(self, history):
        postfix = {"loss": f"{history['loss'][-1]:.4f}"}
        if history["val_loss"]:
            postfix["val"] = f"{history['val_loss'][-1]:.4f}"
        self.bar.set_postfix(postfix)

    def close(self):
        self.bar.close()
