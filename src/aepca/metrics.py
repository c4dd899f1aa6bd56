"""Reconstruction errors in float64, computed a block of rows at a time: the
float64 errors of a whole data set at once would take several times its memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from aepca import distributed, neighbours
from aepca.data.sources import RowSource

# Errors are computed in float64 on parts of about PART_BYTES: the allocator reuses memory of that
# size, while larger copies are fresh pages from the kernel every time (2-6x slower on MNIST's rows).
PART_BYTES = 4 << 20

Reconstruction = np.ndarray | Callable[[np.ndarray], np.ndarray]


def squared_errors(x, reconstruction: Reconstruction) -> Iterator[np.ndarray]:
    """Squared errors in float64, a part of about ``PART_BYTES`` at a time; ``reconstruction`` is
    an array shaped like ``x`` or a function reconstructing rows, called on one network call's rows
    (``aepca.models.PREDICT_BATCH``) at a time."""
    if callable(reconstruction):
        # Imported here: a reconstruction function comes from code that loaded Keras (fitting, the
        # estimator), while arrays' errors, and importing this module, need no Keras.
        from aepca.models import PREDICT_BATCH

        for first in range(0, len(x), PREDICT_BATCH):
            rows = x[first : first + PREDICT_BATCH]
            yield from squared_errors(rows, reconstruction(rows))
        return
    step = part_rows(np.shape(x)[1])
    for start in range(0, len(x), step):
        yield np.square(np.asarray(reconstruction[start : start + step], np.float64) - x[start : start + step])


def part_rows(n_features: int) -> int:
    """Rows of ``n_features`` float64 values in about ``PART_BYTES``."""
    return max(1, PART_BYTES // (8 * max(int(n_features), 1)))


def sample_mse(x, reconstruction: Reconstruction) -> np.ndarray:
    """Each row's mean squared error. For a row source ``reconstruction`` is a
    function; its blocks are shared out over the processes and every process
    gets all rows' errors, in the same order."""
    if not isinstance(x, RowSource):
        errors = [block.mean(axis=1) for block in squared_errors(x, reconstruction)]
        return np.concatenate(errors) if errors else np.zeros(0)
    with distributed.read_share(x) as blocks:
        errors = [sample_mse(rows, reconstruction) for rows in blocks]
    return distributed.all_rows(np.concatenate(errors) if errors else np.zeros(0))


def column_mse(x, reconstruction: Reconstruction) -> np.ndarray:
    """Each column's mean squared error."""
    total = np.zeros(np.shape(x)[1])
    for block in squared_errors(x, reconstruction):
        total += block.sum(axis=0)
    return total / max(len(x), 1)


def mse(x, reconstruction: Reconstruction) -> float:
    """The mean squared error over every entry."""
    return float(column_mse(x, reconstruction).mean())


# Recall@K of neighbours searched in codes or reconstructions (see aepca.neighbours).
neighbour_recall = neighbours.neighbour_recall
