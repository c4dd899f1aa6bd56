import numpy as np
import pytest
from sklearn.datasets import make_s_curve

from aepca.data import DATASETS, load_dataset, load_mnist
from aepca.data.synthetic import curves, low_rank, s_curve, swiss_roll
from conftest import float_tolerance


@pytest.mark.parametrize(
    ("make", "n_features"),
    [
        (lambda seed: s_curve(50, noise=0.1, seed=seed), 3),
        (lambda seed: swiss_roll(50, noise=0.1, seed=seed), 3),
        (lambda seed: low_rank(50, n_features=8, rank=2, noise=0.1, seed=seed), 8),
        (lambda seed: curves(50, seed=seed), 784),
    ],
)
def test_seeded_80_20_split(make, n_features):
    data, again, other = make(0), make(0), make(1)
    assert data.x_train.shape == (40, n_features) and data.x_test.shape == (10, n_features)
    assert data.x_train.dtype == data.x_test.dtype == np.float32
    np.testing.assert_array_equal(data.x_train, again.x_train)
    assert not np.array_equal(data.x_train, other.x_train)
    assert isinstance(data.notes["intrinsic_dimension"], int) and data.notes["units"]


def test_s_curve_labels_are_the_manifold_coordinate():
    data = s_curve(30, noise=0.0, seed=3)
    X, t = make_s_curve(30, noise=0.0, random_state=3)
    order = np.argsort(X[:, 0])
    ours = np.concatenate([data.x_train, data.x_test])
    labels = np.concatenate([data.y_train, data.y_test])
    mine = np.argsort(ours[:, 0])
    # scikit-learn's float64 points and coordinates, stored as float32: one rounding at their largest.
    np.testing.assert_allclose(ours[mine], X[order], rtol=0, atol=float_tolerance(np.float32, np.abs(X).max()))
    np.testing.assert_allclose(labels[mine], t[order], rtol=0, atol=float_tolerance(np.float32, np.abs(t).max()))


def test_low_rank_without_noise_has_the_requested_rank():
    data = low_rank(60, n_features=10, rank=3, noise=0.0, seed=0)
    singular = np.linalg.svd(data.x_train.astype(np.float64), compute_uv=False)
    # Beyond the rank, only the rounding to float32 (a change of norm at most that of the rows' rounding).
    assert singular[2] > 1.0 and singular[3] < float_tolerance(np.float32, np.linalg.norm(data.x_train.astype(np.float64)))


def test_curves_are_anti_aliased_strokes_inside_the_frame():
    data = curves(40, seed=0)
    images = data.x_train.reshape(-1, 28, 28)
    assert data.image_shape == (28, 28) and data.y_train is None
    assert images.min() == 0.0 and images.max() == 1.0
    assert (images.max(axis=(1, 2)) == 1.0).all()  # every image holds a curve
    assert ((images > 0) & (images < 1)).any()  # grey edge pixels: anti-aliased
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    assert (border == 0).all()
    assert data.notes["intrinsic_dimension"] == 6
    assert data.notes["provenance"].startswith("approximate: regenerated from the paper's description")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: low_rank(50, n_features=5, rank=5), r"rank < n_features=5.*rank=5"),
        (lambda: low_rank(50, noise=-1.0), r"noise=-1\.0"),
        (lambda: s_curve(noise=float("nan")), r"noise=nan"),
        (lambda: swiss_roll(n_samples=3), r"integer >= 10.*n_samples=3"),
        (lambda: curves(n_samples=2.5), r"n_samples=2\.5"),
        (lambda: load_dataset("faces"), r"expected one of \['breast_cancer', 'curves', 'diabetes', 'digits', 'low_rank', 'mnist', 's_curve', "
                                          r"'swiss_roll', 'wine'\]"),
    ],
)
def test_invalid_parameters(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("s_curve", {"n_samples": 20}), ("swiss_roll", {"n_samples": 20}), ("low_rank", {"n_samples": 20}),
     ("curves", {"n_samples": 20})],
)
def test_registry(name, kwargs):
    data = load_dataset(name, **kwargs)
    assert data.name == name and data.x_train.dtype == np.float32


def test_registry_keeps_mnist():
    assert DATASETS["mnist"] is load_mnist
