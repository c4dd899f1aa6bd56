"""Training on JAX: compiled chunks of an epoch through Keras' stateless API.

A ``jax.lax.scan`` runs many optimizer steps per call, so Python sees the loop
only a few times per epoch (often enough for a progress bar). Rows held in
memory stay on the device and each chunk takes the indices of its batches;
streamed rows (a :class:`aepca.data.sources.RowSource`) arrive as the
chunk's batches themselves, read and assembled by a background thread while
the previous chunk trains. Several processes (JAX's multi-process runtime)
each stream their own lanes of every batch into one global batch.
"""

from __future__ import annotations

import contextlib
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from aepca import distributed
from aepca.data.sources import RowSource
from aepca.models import shared_program
from aepca.prefetch import prefetch
from aepca.training.config import EVAL_BATCH, LOSSES, mse_per_sample
from aepca.training.loop import Runner
from aepca.validation import invalid_value, plural

# Chunks of at least this many steps: fewer dispatches on small data.
MIN_CHUNK_STEPS = 20
# The most bytes of streamed rows one chunk carries (bounds host and device memory).
MAX_CHUNK_BYTES = 16 * 2**20


def data_parallel_mesh(n_devices: int):
    """A one-axis mesh over the first ``n_devices`` devices of every process; ``None`` for one device in all."""
    processes = jax.process_count()
    if n_devices == 1 and processes == 1:
        return None
    local = jax.local_devices()
    if n_devices > len(local):
        cpu = all(device.platform == "cpu" for device in local)
        raise invalid_value(
            "devices", f"at most the {plural(len(local), 'device')} JAX sees ({', '.join(str(d) for d in local)})",
            f"devices={n_devices}",
            "On a CPU train on one (--devices 1, devices=1): it computes on every core; "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N makes N, to try a multi-device run."
            if cpu else "Choose at most that many, or make more visible (CUDA_VISIBLE_DEVICES).",
        )
    by_process = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    chosen = [d for p in range(processes) for d in [d for d in by_process if d.process_index == p][:n_devices]]
    return jax.sharding.Mesh(np.array(chosen), ("batch",))


class JaxRunner(Runner):
    """Compiled chunks of an epoch through Keras' stateless API.

    With several devices (``config.devices`` per process, on every process)
    each batch is split across them and the training state is replicated;
    XLA sums the gradients over the devices, so the steps are those of one
    device (the same batches, losses equal to float32 round-off).
    """

    def __init__(self, model, x, x_val, config):
        self.mesh = data_parallel_mesh(config.devices)
        # Rows already in memory stay on the device (one process); others are read as the epoch needs them.
        self.streamed = not (x.in_memory and jax.process_count() == 1)
        super().__init__(model, x, x_val, config, config.lanes or (1 if self.mesh is None else self.mesh.size))
        self.lanes_here = None if self.mesh is None else self._my_lanes()
        self.device = jax.local_devices()[0]
        self.x_device = None if self.streamed else self._put(self.x.to_array())
        self._state = self._on_device(jax.device_get((
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in self.optimizer.variables],
        )))
        # Programs shared by every run of one network structure, optimizer and loss. A constant
        # learning rate is optimizer state; a schedule's step counts are traced into the program.
        schedule = (config.schedule,) if config.schedule == "constant" else (
            config.schedule, config.learning_rate, config.warmup_epochs, config.min_lr_fraction, config.epochs,
            config.batch_size, self.per_epoch,
        )
        mesh_key = None if self.mesh is None else tuple(d.id for d in self.mesh.devices.flat)
        settings = (config.optimizer, config.beta_2, *schedule, config.loss, mesh_key)
        # Outputs placed on every device: any process can then read them.
        replicated = {} if self.mesh is None else {"out_shardings": self._sharding()}
        # The programs reach this model and optimizer only while this runner calls them (models.SharedProgram).
        self._train_chunk = shared_program(
            model, ("train", self.streamed, *settings),
            lambda live: jax.jit(self._make_train_chunk(live), donate_argnums=(0,), **replicated),
        ).bind(model=model, optimizer=self.optimizer)
        self._eval_batch = shared_program(
            model, ("evaluate", *settings), lambda live: jax.jit(self._make_eval_batch(live))
        ).bind(model=model)

    def _my_lanes(self) -> range:
        """The lanes this process reads: an equal, contiguous share, in process order."""
        if self.lanes % self.mesh.size:
            raise invalid_value(
                "lanes", f"a multiple of the {self.mesh.size} devices training together", f"lanes={self.lanes}",
            )
        share = self.lanes // jax.process_count()
        return range(jax.process_index() * share, (jax.process_index() + 1) * share)

    def _make_train_chunk(self, live):
        """The training chunk of any model and optimizer of this runner's structure and settings, as
        ``live.model`` and ``live.optimizer`` hold them when traced (it keeps neither, nor this runner)."""
        loss_per_sample = LOSSES[self.config.loss]

        def batch_loss(trainable, non_trainable, xb, weights):
            reconstruction, non_trainable = live.model.stateless_call(trainable, non_trainable, xb, training=True)
            total = jnp.sum(loss_per_sample(xb, reconstruction) * weights)
            # The mean over the real samples of a partial batch, as model.fit does.
            return total / jnp.maximum(jnp.sum(weights), 1.0), (non_trainable, total)

        grad = jax.value_and_grad(batch_loss, has_aux=True)

        streamed = self.streamed

        def train_chunk(state, x, batches, weights, lr_scale):
            """``batches``: each step's rows (streamed), or their indices into ``x``."""

            def step(state, batch):
                rows_or_indices, w = batch
                xb = rows_or_indices if streamed else x[rows_or_indices]

                def update(state):
                    trainable, non_trainable, opt = state
                    (_, (non_trainable, total)), grads = grad(trainable, non_trainable, xb, w)
                    new_trainable, opt = live.optimizer.stateless_apply(opt, grads, trainable)
                    # Adam's step is linear in the learning rate, so scaling the
                    # step scales the rate without recompiling.
                    new_trainable = [t + lr_scale * (n - t) for t, n in zip(trainable, new_trainable)]
                    return (new_trainable, non_trainable, opt), total

                def skip(state):
                    return state, jnp.zeros((), jnp.float32)

                # Padding steps (to equal chunk lengths) leave the state untouched.
                return jax.lax.cond(jnp.any(w > 0), update, skip, state)

            return jax.lax.scan(step, state, (batches, weights))

        return train_chunk

    def _make_eval_batch(self, live):
        """The evaluation of one batch by ``live.model`` (see :meth:`_make_train_chunk`)."""
        loss_per_sample = LOSSES[self.config.loss]

        def eval_batch(trainable, non_trainable, xb, weights):
            reconstruction, _ = live.model.stateless_call(trainable, non_trainable, xb, training=False)
            loss = jnp.sum(loss_per_sample(xb, reconstruction) * weights)
            mse = jnp.sum(mse_per_sample(xb, reconstruction) * weights)
            return loss, mse

        return eval_batch

    def state(self):
        return self._state

    def set_state(self, trainable, non_trainable, optimizer):
        self._state = self._on_device((list(trainable), list(non_trainable), list(optimizer)))

    def host(self, value) -> np.ndarray:
        return distributed.host(value)

    def _put(self, x: np.ndarray):
        """Rows held in memory on the training device, or on every device of the mesh."""
        return jax.device_put(x, self.device if self.mesh is None else self._sharding())

    def _sharding(self, *spec):
        """Arrays of the mesh: copied to every device, or split along the axes ``spec`` names."""
        return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(*spec))

    def _on_device(self, state):
        """Host ``state`` placed explicitly where the chunks' outputs are, so the
        chunk is lowered and compiled once, not once more for a default placement;
        on a mesh every process passes the same values."""
        if self.mesh is None:
            return jax.device_put(state, self.device)
        sharding = self._sharding()
        return jax.tree.map(
            lambda value: jax.make_array_from_callback(np.shape(value), sharding, lambda index: np.asarray(value)[index]),
            jax.device_get(state),
        )

    def _batches(self, array: np.ndarray, *spec):
        """One chunk's batches (steps first) from this process, as the global arrays the chunk takes.
        On one device, the host array itself: the compiled call copies it over for less than
        ``device_put`` and slicing on the device cost."""
        if self.mesh is None:
            return array
        sharding = self._sharding(*spec)
        if self.streamed:
            return jax.make_array_from_process_local_data(sharding, array)
        return jax.device_put(array, sharding)

    def _chunk_steps(self) -> int:
        """Steps per chunk: ``chunks_per_epoch`` chunks, at least MIN_CHUNK_STEPS steps
        each, and (streamed) at most MAX_CHUNK_BYTES of rows."""
        steps = self.per_epoch
        n_chunks = max(1, min(self.config.chunks_per_epoch, steps // MIN_CHUNK_STEPS))
        chunk_steps = math.ceil(steps / n_chunks)
        if self.streamed:
            row_bytes = 4 * self.x.n_features * self.config.batch_size
            chunk_steps = max(1, min(chunk_steps, MAX_CHUNK_BYTES // row_bytes))
        return chunk_steps

    def _indexed_chunks(self, epoch):
        """Each chunk's (rows, batch indices, weights, real steps) for rows held in memory."""
        positions, weights = self.epoch_batches(epoch).positions()
        steps, batch = positions.shape
        chunk_steps = self._chunk_steps()
        n_chunks = math.ceil(steps / chunk_steps)
        # Padded to whole chunks with steps of zero weights; int32 is what the chunks index with.
        shape = (n_chunks, chunk_steps, batch)
        indices = np.zeros(shape, dtype=np.int32)
        indices.reshape(-1, batch)[:steps] = positions
        padded_weights = np.zeros(shape, dtype=np.float32)
        padded_weights.reshape(-1, batch)[:steps] = weights
        indices = self._batches(indices, None, None, "batch")
        weights = self._batches(padded_weights, None, None, "batch")
        for chunk in range(n_chunks):
            yield self.x_device, indices[chunk], weights[chunk], min(chunk_steps, steps - chunk * chunk_steps)

    def _streamed_chunks(self, epoch):
        """Each chunk's (None, batch rows, weights, real steps) for streamed rows,
        read and assembled ahead in a background thread."""
        batches = self.epoch_batches(epoch, self.lanes_here)
        with prefetch(batches.chunks(self._chunk_steps())) as chunks:
            for rows, weights, real in chunks:
                yield None, self._batches(rows, None, "batch", None), self._batches(weights, None, "batch"), real

    def run_epoch(self, epoch, lr_scale, tick):
        totals = []
        # Closed on every way out (an error, Ctrl-C in a step): the streamed rows' reading stops with it.
        with contextlib.closing(self._streamed_chunks(epoch) if self.streamed else self._indexed_chunks(epoch)) as chunks:
            for x, batches, weights, real_steps in chunks:
                self._state, chunk_totals = self._train_chunk(self._state, x, batches, weights, np.float32(lr_scale))
                if totals:
                    # At most two chunks queued: streamed rows waiting on the device would otherwise pile up.
                    totals[-1].block_until_ready()
                totals.append(chunk_totals)
                tick(real_steps)
        return float(np.sum([np.sum(self.host(t), dtype=np.float64) for t in totals]) / self.n_train)

    def evaluate(self, x):
        if isinstance(x, RowSource):
            return self._evaluate_source(x)
        batches = self.val_batches if x is self.x_val else self._eval_batches(x)
        trainable, non_trainable, _ = self._state
        loss = mse = 0.0
        for xb, weights in batches:
            batch_loss, batch_mse = self._eval_batch(trainable, non_trainable, xb, weights)
            loss += float(batch_loss)
            mse += float(batch_mse)
        return loss / len(x), mse / len(x)

    @functools.cached_property
    def val_batches(self) -> list:
        """The validation rows' batches, made once: evaluated every epoch."""
        return self._eval_batches(self.x_val)

    def _eval_batches(self, x: np.ndarray) -> list:
        """``x`` on the device in equal batches of at most EVAL_BATCH rows (little padding), with
        weights: one compiled shape, the last batch padded and its padding masked out."""
        size = math.ceil(len(x) / math.ceil(len(x) / EVAL_BATCH))
        return [tuple(map(self._put, _padded(x[start : start + size], size))) for start in range(0, len(x), size)]

    def _evaluate_source(self, source: RowSource):
        """Mean loss and MSE over a stream: each process its share of the blocks,
        on one local device with a copy of the weights, the sums then added up."""
        trainable, non_trainable, _ = self._state
        if self.mesh is not None:
            trainable, non_trainable = jax.device_put(
                ([self.host(v) for v in trainable], [self.host(v) for v in non_trainable]), self.device
            )
        sums = np.zeros(2)
        with distributed.read_share(source) as blocks:
            for block in blocks:
                for start in range(0, len(block), EVAL_BATCH):
                    rows, weights = _padded(block[start : start + EVAL_BATCH], EVAL_BATCH)
                    batch_loss, batch_mse = self._eval_batch(trainable, non_trainable, jax.device_put(rows, self.device), weights)
                    sums += (float(batch_loss), float(batch_mse))
        loss, mse = distributed.all_sum(sums) / source.n_rows
        return float(loss), float(mse)

    def finish(self):
        trainable, non_trainable, _ = self.host_state()
        self.assign_weights(trainable, non_trainable)


def _padded(rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` padded with zero rows to ``size`` (one compiled shape), and weights masking the padding out."""
    weights = np.zeros(size, dtype=np.float32)
    weights[: len(rows)] = 1.0
    if len(rows) < size:
        rows = np.pad(rows, ((0, size - len(rows)), (0, 0)))
    return rows, weights
