import numpy as np
from sklearn.datasets import load_digits

from aepca.data import DATASETS, digits, load_dataset
from aepca.data.readers import split_indices


def test_digits_are_sklearns_8x8_images_split_80_20():
    data = load_dataset("digits")
    bunch = load_digits()
    assert DATASETS["digits"] is digits and data.name == "digits"
    assert data.x_train.shape == (1437, 64) and data.x_test.shape == (360, 64)
    assert data.x_train.dtype == data.x_test.dtype == np.float32
    assert np.issubdtype(data.y_train.dtype, np.integer) and data.image_shape == (8, 8)
    assert data.x_train.min() == 0.0 and data.x_train.max() == 16.0
    train, test = split_indices(1797, 0.2, 0, "digits")
    np.testing.assert_array_equal(data.x_train, bunch.data[train])
    np.testing.assert_array_equal(data.y_test, bunch.target[test])
    assert data.notes["units"] == "pixel darkness (0-16)"
    assert "load_digits" in data.notes["provenance"]


def test_digits_split_is_seeded():
    first, again, other = digits(seed=3), digits(seed=3), digits(seed=4)
    np.testing.assert_array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.x_test, other.x_test)
