from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """A train/test split of 2-D float32 feature matrices with optional labels.

    ``image_shape`` is set for image data so that plots can show samples as
    pictures; ``feature_names`` names the columns of tabular data.
    """

    name: str
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    image_shape: tuple[int, int] | None = None
    feature_names: tuple[str, ...] | None = None
    notes: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]
