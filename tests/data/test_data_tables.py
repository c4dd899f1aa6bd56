import numpy as np
import pytest
from sklearn import datasets

from aepca.data import load_dataset
from aepca.data.readers import split_indices


@pytest.mark.parametrize(("name", "shape", "label"), [
    ("wine", (178, 13), "class_0"), ("breast_cancer", (569, 30), "malignant"), ("diabetes", (442, 10), None),
])
def test_scikit_learns_tables_are_split_80_20_with_names_and_labels(name, shape, label):
    data = load_dataset(name, seed=2)
    bunch = getattr(datasets, f"load_{name}")()
    train, test = split_indices(shape[0], 0.2, 2, name)
    assert data.name == name and data.x_train.dtype == np.float32 and data.n_features == shape[1]
    np.testing.assert_array_equal(data.x_train, bunch.data[train].astype(np.float32))
    np.testing.assert_array_equal(data.x_test, bunch.data[test].astype(np.float32))
    assert data.feature_names == tuple(bunch.feature_names)
    if label is None:  # diabetes: the disease's progression, a number
        np.testing.assert_array_equal(data.y_test, bunch.target[test].astype(np.float32))
    else:
        assert label in set(data.y_train) and list(data.y_test) == list(bunch.target_names[bunch.target[test]])
    assert data.notes["units"] and "scikit-learn's bundled copy" in data.notes["provenance"]

