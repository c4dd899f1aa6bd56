"""Training through Keras' own train step, for the backends without aepca's compiled JAX path."""

from __future__ import annotations

import dataclasses

import numpy as np

from aepca._keras import keras, ops
from aepca.data.sources import RowSource
from aepca.models import predict
from aepca.prefetch import prefetch
from aepca.training.config import EVAL_BATCH, LOSSES, make_optimizer, mse_per_sample
from aepca.training.loop import Runner

# Backends trained through Keras' train step: correct, slower than JAX's compiled chunks.
FIT_BACKENDS = ("tensorflow", "torch")


class KerasFitRunner(Runner):
    """Keras' ``train_on_batch``, one call a step of the epoch's batches, for backends without the
    compiled path (faster than ``model.fit`` on small tables: docs/backends.md)."""

    def __init__(self, model, x, x_val, config):
        super().__init__(model, x, x_val, config, config.lanes or 1)
        self.x_array = x.to_array() if x.in_memory else None
        self.lr_scale = 1.0
        # A second model over the same layers (so the same weights) is the one
        # compiled and trained: the model itself stays uncompiled, as on JAX, and
        # saves without an optimizer or a loss function in its file.
        self.trainer = keras.Model(model.inputs, model.outputs, name=f"{model.name}_trainer")
        self._compile()

    def _compile(self):
        self.trainer.compile(optimizer=self.optimizer, loss=LOSSES[self.config.loss])

    def _rescale_learning_rate(self, lr_scale):
        """Swap in an optimizer at the scaled rate that keeps the old one's state."""
        old = self.optimizer.variables
        scaled = dataclasses.replace(self.config, learning_rate=self.config.learning_rate * lr_scale)
        self.optimizer = make_optimizer(scaled, self.per_epoch)
        self.optimizer.build(self.model.trainable_variables)
        self._assign_optimizer(old)
        self.lr_scale = lr_scale
        self._compile()

    def state(self):
        return (
            [np.array(v) for v in self.model.trainable_variables],
            [np.array(v) for v in self.model.non_trainable_variables],
            [np.array(v) for v in self.optimizer.variables],
        )

    def set_state(self, trainable, non_trainable, optimizer):
        self.assign_weights(trainable, non_trainable)
        self._assign_optimizer(optimizer)

    def _assign_optimizer(self, values):
        """Write the optimizer's state from ``values``, but its learning rate: the current scale's."""
        for variable, value in zip(self.optimizer.variables, values):
            if "learning_rate" not in variable.path:
                variable.assign(value)

    def run_epoch(self, epoch, lr_scale, tick):
        if lr_scale != self.lr_scale:
            self._rescale_learning_rate(lr_scale)
        total = 0.0
        with prefetch(self._steps(epoch)) as steps:
            for rows in steps:
                total += float(self.trainer.train_on_batch(rows, rows)) * len(rows)
                tick(1)
        return total / self.n_train

    def _steps(self, epoch):
        """The rows of each of the epoch's steps, padding left out (it matters to several processes only)."""
        batches = self.epoch_batches(epoch)
        if self.x_array is not None:
            for positions, weights in zip(*batches.positions()):
                yield self.x_array[positions[weights > 0]]
        else:
            for rows, weights in batches:
                yield rows[weights > 0]

    def evaluate(self, x):
        blocks = x.iter_blocks() if isinstance(x, RowSource) else (
            x[start : start + EVAL_BATCH] for start in range(0, len(x), EVAL_BATCH)
        )
        loss_per_sample = LOSSES[self.config.loss]
        loss = mse = 0.0
        for xb in blocks:
            # As numpy on every backend, and on PyTorch without recording gradients.
            reconstruction = predict(self.model, xb)
            loss += float(ops.convert_to_numpy(ops.sum(loss_per_sample(xb, reconstruction))))
            mse += float(ops.convert_to_numpy(ops.sum(mse_per_sample(xb, reconstruction))))
        n_rows = x.n_rows if isinstance(x, RowSource) else len(x)
        return loss / n_rows, mse / n_rows
