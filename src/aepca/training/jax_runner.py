"""Training on JAX: compiled chunks of an epoch through Keras' stateless API.

The data stays on the device and a ``jax.lax.scan`` runs many optimizer steps
per call, so Python sees the loop only a few times per epoch (often enough for
a progress bar).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from aepca.models import shared_program, structure_key
from aepca.training.config import EVAL_BATCH, LOSSES, mse_per_sample, steps_per_epoch
from aepca.training.loop import Runner
from aepca.validation import invalid_value

# Chunks of at least this many steps: fewer dispatches on small data.
MIN_CHUNK_STEPS = 20

_copy_tree = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def data_parallel_mesh(n_devices: int):
    """A one-axis mesh over the first ``n_devices`` devices JAX sees; ``None`` for one."""
    if n_devices == 1:
        return None
    available = jax.devices()
    if n_devices > len(available):
        raise invalid_value(
            "devices", f"at most the {len(available)} device(s) JAX sees ({', '.join(str(d) for d in available)})",
            f"devices={n_devices}",
        )
    return jax.sharding.Mesh(available[:n_devices], ("batch",))


class JaxRunner(Runner):
    """Compiled chunks of an epoch through Keras' stateless API.

    With ``config.devices > 1`` the data and the training state are copied to
    every device and each batch is split across them; XLA then sums the
    gradients over the devices, so the steps are those of one device (the
    same batches, losses equal to float32 round-off).
    """

    def __init__(self, model, x, x_val, config, rows=None):
        super().__init__(model, x, x_val, config, rows)
        self.mesh = data_parallel_mesh(config.devices)
        self.x_device = self._put(self.x)
        self.x_val_device = None if self.x_val is None else self._put(self.x_val)
        # Copies: the compiled chunks donate (delete) their input state, and the
        # model's own buffers must stay valid if training stops with an error.
        self._state = self._on_device(_copy_tree((
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in self.optimizer.variables],
        )))
        # Programs shared by every run of one network structure, optimizer and loss. A constant
        # learning rate is optimizer state; a schedule's step counts are traced into the program.
        schedule = (config.schedule,) if config.schedule == "constant" else (
            config.schedule, config.learning_rate, config.warmup_epochs, config.min_lr_fraction, config.epochs,
            config.batch_size, self.n_train,
        )
        structure = (structure_key(model), config.optimizer, config.beta_2, *schedule, config.loss, config.devices)
        self._train_chunk = shared_program(
            ("train", *structure), lambda: jax.jit(self._make_train_chunk(), donate_argnums=(0,))
        )
        self._eval_batch = shared_program(("evaluate", *structure), lambda: jax.jit(self._make_eval_batch()))

    def _make_train_chunk(self):
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

    def _make_eval_batch(self):
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
        return jax.device_put(x, None if self.mesh is None else self._sharding())

    def _sharding(self, *spec):
        """Arrays of the mesh: copied to every device, or split along the axes ``spec`` names."""
        return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(*spec))

    def _on_device(self, state):
        """``state`` placed explicitly where the data is, as the chunks'
        outputs are: the chunk is then lowered and compiled once, not once
        more for a state that JAX placed by default."""
        if self.mesh is not None:
            return jax.device_put(state, self._sharding())
        (device,) = self.x_device.devices()
        return jax.device_put(state, device)

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
            indices, weights = (jax.device_put(a, self._sharding(None, None, "batch")) for a in (indices, weights))
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
        size = math.ceil(len(x) / math.ceil(len(x) / EVAL_BATCH))
        for start in range(0, len(x), size):
            xb = x_device[start : start + size]
            weights = np.ones(size, dtype=np.float32)
            if len(xb) < size:
                # One compiled shape for every batch: pad the last and mask it out.
                weights[len(xb) :] = 0.0
                xb = jnp.pad(xb, ((0, size - len(xb)), (0, 0)))
            batch_loss, batch_mse = self._eval_batch(trainable, non_trainable, xb, weights)
            loss += float(batch_loss)
            mse += float(batch_mse)
        return loss / len(x), mse / len(x)

    def finish(self):
        trainable, non_trainable, optimizer = self._state
        if self.mesh is not None:
            # The model's weights on one device again, as Keras made them.
            trainable, non_trainable, optimizer = jax.device_get(self._state)
        for variable, value in zip(self.model.trainable_variables, trainable):
            variable.assign(value)
        for variable, value in zip(self.model.non_trainable_variables, non_trainable):
            variable.assign(value)
        for variable, value in zip(self.optimizer.variables, optimizer):
            variable.assign(value)
