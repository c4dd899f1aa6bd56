from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from aepca.data.columns import ColumnSpec


@dataclass(frozen=True)
class Dataset:
    """A train/test split of 2-D float32 feature matrices with optional labels.

    ``image_shape`` is set for image data so that plots can show samples as
    pictures; ``feature_names`` names the columns of tabular data. Data read
    from a user's file also carries ``columns``, the :class:`ColumnSpec` that
    turns such a file into these features (a saved model re-applies it),
    ``ids_train`` / ``ids_test`` (the id column's values, row for row) and
    ``all_labels_train`` / ``all_labels_test`` (every label column by name;
    ``y_train`` / ``y_test`` are the first, which colours the plots).
    ``split`` is ``(test_size, seed)`` when the test rows are those that
    :func:`aepca.data.order.held_out_mask` holds out of the rows in file order:
    the rows can then be put back in that order, and are trained on as if streamed.
    """

    name: str
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    image_shape: tuple[int, int] | None = None
    feature_names: tuple[str, ...] | None = None
    notes: dict = field(default_factory=dict)
    columns: ColumnSpec | None = None
    ids_train: np.ndarray | None = None
    ids_test: np.ndarray | None = None
    all_labels_train: dict | None = None
    all_labels_test: dict | None = None
    split: tuple[float, int] | None = None

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

