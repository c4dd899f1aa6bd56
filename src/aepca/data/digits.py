"""scikit-learn's 8x8 handwritten digits: small real images that load offline.

A quick image data set for tests and demonstrations, a fraction of MNIST's
size (1,797 images of 64 pixels), shipped inside scikit-learn itself.
"""

from __future__ import annotations

import numpy as np

from aepca.data._dataset import Dataset
from aepca.data.readers import split_dataset

IMAGE_SHAPE = (8, 8)


def digits(seed: int = 0) -> Dataset:
    """The 1,797 8x8 digits of ``sklearn.datasets.load_digits``, split 80/20 by a shuffle seeded with ``seed``.

    Pixels stay in their original units, 0 to 16 (the number of dark pixels
    in a 4x4 block of the scanned 32x32 bitmap); labels are the digits 0-9.
    """
    from sklearn.datasets import load_digits  # here: only this data set needs it

    notes = {
        "units": "pixel darkness (0-16)",
        "provenance": (
            "scikit-learn's bundled copy (sklearn.datasets.load_digits) of the test set of the UCI "
            "Optical Recognition of Handwritten Digits data (Alpaydin & Kaynak, 1998): 32x32 bitmaps "
            "written by 13 people, reduced to 8x8 by counting the dark pixels in each 4x4 block"
        ),
    }
    bunch = load_digits()
    return split_dataset("digits", bunch.data, bunch.target.astype(np.int64), seed, image_shape=IMAGE_SHAPE, notes=notes)
