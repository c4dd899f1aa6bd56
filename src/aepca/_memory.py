"""Host arrays that XLA's CPU client can use in place.

``jax.device_put(x, may_alias=True)`` on the CPU backend shares ``x``'s memory
instead of copying it, but only when the buffer is 64-byte aligned; numpy
places large arrays 16 bytes past a page boundary, so a training set of
MNIST's size (188 MB as float32) was copied once more onto the "device".
"""

from __future__ import annotations

import numpy as np

XLA_CPU_ALIGNMENT = 64


def aligned_empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(n_bytes + XLA_CPU_ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % XLA_CPU_ALIGNMENT
    return raw[start : start + n_bytes].view(dtype).reshape(shape)


def is_aligned(x: np.ndarray) -> bool:
    return x.flags.c_contiguous and x.ctypes.data % XLA_CPU_ALIGNMENT == 0


def checked_rows(rows, n_samples: int) -> np.ndarray:
    """``rows`` as an array, once it is known to be a non-empty 1-D array of
    integer row indices in ``[0, n_samples)``."""
    rows = np.asarray(rows)
    integers = rows.size > 0 and np.issubdtype(rows.dtype, np.integer)
    low, high = (int(rows.min()), int(rows.max())) if integers else (None, None)
    if rows.ndim != 1 or not integers or low < 0 or high >= n_samples:
        raise ValueError(
            f"Received an invalid value for rows, expected a non-empty 1-D array of row indices "
            f"in [0, {n_samples}). Received: rows with shape {rows.shape} and dtype {rows.dtype}"
            + (f", from {low} to {high}" if integers else "")
        )
    return rows


# The gathers below write with mode="clip", in place (the default "raise"
# buffers a whole copy first), so the range it would not check is checked first.
def take_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``x[rows]`` written straight into an aligned array, so that
    :func:`to_device` can share it instead of copying it once more."""
    rows = checked_rows(rows, len(x))
    return np.take(x, rows, axis=0, out=aligned_empty((len(rows), *x.shape[1:]), x.dtype), mode="clip")


def mean_of_rows(x: np.ndarray, rows: np.ndarray | None = None, block_rows: int = 8192) -> np.ndarray:
    """Column means of ``x[rows]`` (every row when ``rows`` is None) summed in
    float64, gathering a block of rows at a time into one reused buffer instead
    of the whole selection. (A fresh buffer per block is fresh memory to fault
    in: 0.15-0.2 s for MNIST's 54,000 training rows, against ~0.05 s.)"""
    if rows is None:
        return x.mean(axis=0, dtype=np.float64)
    rows = checked_rows(rows, len(x))
    total = np.zeros(x.shape[1:], dtype=np.float64)
    buffer = np.empty((min(block_rows, len(rows)), *x.shape[1:]), x.dtype)
    for start in range(0, len(rows), block_rows):
        block = rows[start : start + block_rows]
        total += np.take(x, block, axis=0, out=buffer[: len(block)], mode="clip").sum(axis=0, dtype=np.float64)
    return total / len(rows)


def to_device(x: np.ndarray):
    """``x`` as a JAX array, sharing its memory on CPU where possible."""
    import jax

    if jax.default_backend() != "cpu":
        return jax.device_put(x)
    if not is_aligned(x):
        aligned = aligned_empty(x.shape, x.dtype)
        aligned[...] = x
        x = aligned
    # The array is only read by the compiled steps, never donated or written.
    return jax.device_put(x, may_alias=True)


def skip_huge_page_advice() -> bool:
    """Stop numpy from advising transparent huge pages for its large arrays.

    Where the kernel honours that advice by compacting memory on the spot (the
    common ``enabled=madvise``, ``defrag=madvise`` setting), the first write
    to a large new array can stall: measured here, filling a new 188 MB array
    took 0.42-0.72 s with the advice and 0.10-0.14 s without, and scaling
    MNIST on load 0.04-0.88 s against 0.12-0.17 s. Process-wide, so only the
    command line calls it; returns whether numpy offered the switch.
    """
    try:
        from numpy._core import multiarray
    except ImportError:
        return False
    switch = getattr(multiarray, "_set_madvise_hugepage", None)
    if switch is None:
        return False
    switch(False)
    return True


def set_process_memory_options() -> None:
    """The command line's process-wide memory settings, in one place so that
    benchmarks of it set their process up the same way.

    glibc's allocator keeps its own defaults. Setting its mmap and trim
    thresholds to 1 MiB once lowered the peak of ``aepca compare``, but with
    the row-block work since, it saved only ~100 MiB (733 against 828-854 MiB)
    and cost ~7 s of its run (33-35 s against 26-28 s): every reused row block
    and XLA buffer above 1 MiB came back as fresh memory to fault in.
    """
    skip_huge_page_advice()
