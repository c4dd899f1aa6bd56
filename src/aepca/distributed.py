"""Several processes fitting one model, on JAX's multi-process runtime.

Every process runs the same program on its share of the data; the few
numbers they must agree on (sums of errors, PCA statistics, per-row errors of
held-out rows) are exchanged here as bytes, so float64 values stay float64
whatever JAX's x64 setting. With one process every function is a no-op.
"""

from __future__ import annotations

import numpy as np

# Seconds without a heartbeat before a process counts as dead, and the most a
# process waits for the others at shutdown: a dead worker ends the run soon,
# not after JAX's minutes-long defaults.
HEARTBEAT_TIMEOUT_S = 10
SHUTDOWN_TIMEOUT_S = 10
INITIALIZATION_TIMEOUT_S = 60


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> None:
    """Join a multi-process run: the given coordinator (``HOST:PORT``), or with
    none given the cluster JAX detects (SLURM, Open MPI, Kubernetes)."""
    import jax

    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=INITIALIZATION_TIMEOUT_S,
        heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
        shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S,
    )


def process_count() -> int:
    import jax

    return jax.process_count()


def process_index() -> int:
    import jax

    return jax.process_index()


def is_writer() -> bool:
    """Whether this process writes results: only the first one does."""
    return process_index() == 0


def share(n_items: int) -> range:
    """The items (e.g. blocks of a pass over a file) this process takes: every n-th."""
    return range(process_index(), n_items, process_count())


def read_share(source):
    """This process's share of a row source's blocks (see :func:`share`), read ahead in a background
    thread: a :class:`aepca.prefetch.Prefetch`, to use as ``with read_share(source) as blocks: ...``."""
    from aepca.prefetch import prefetch

    return prefetch(source.iter_blocks(share(source.n_blocks)))


def _gather_bytes(values: np.ndarray) -> list[np.ndarray]:
    """Every process's ``values`` (same shape and dtype on all), in process order."""
    from jax.experimental import multihost_utils

    flat = np.ascontiguousarray(values).reshape(-1)
    gathered = np.asarray(multihost_utils.process_allgather(flat.view(np.uint8), tiled=False))
    return [row.view(flat.dtype).reshape(np.shape(values)) for row in gathered]


def all_sum(values) -> np.ndarray:
    """The element-wise float64 sum of ``values`` over every process."""
    values = np.asarray(values, dtype=np.float64)
    if process_count() == 1:
        return values
    return np.sum(_gather_bytes(values), axis=0)


def all_rows(values: np.ndarray) -> np.ndarray:
    """Every process's rows of ``values`` (any lengths), concatenated in process order."""
    values = np.asarray(values)
    if process_count() == 1:
        return values
    lengths = [int(n[0]) for n in _gather_bytes(np.array([len(values)], np.int64))]
    padded = np.zeros((max(lengths), *values.shape[1:]), values.dtype)
    padded[: len(values)] = values
    return np.concatenate([rows[:n] for rows, n in zip(_gather_bytes(padded), lengths)])


def host(array) -> np.ndarray:
    """A host copy of a JAX array that may span other processes' devices
    (it must then be replicated, as training state and totals are)."""
    if getattr(array, "is_fully_addressable", True):
        return np.array(array)
    return np.array(array.addressable_data(0))


def barrier(name: str) -> None:
    """Wait until every process got here."""
    if process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
