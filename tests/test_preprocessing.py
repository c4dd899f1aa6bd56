import json
import re

import numpy as np
import pytest

from aepca.preprocessing import ColumnSummary, RowMoments, Scaler, network_scaling, shares_one_unit
from conftest import assert_within, float_tolerance, scaled_tolerance

RNG = np.random.default_rng(0)
PIXELS = RNG.uniform(0.0, 1.0, size=(50, 6)).astype(np.float32)
TABULAR = (RNG.standard_normal((50, 4)) * [1.0, 10.0, 1e3, 0.01] + [0.0, -5.0, 1e4, 3.0]).astype(np.float32)


@pytest.mark.parametrize(
    ("method", "X", "resolved"),
    [
        ("auto", PIXELS, "none"),
        ("auto", TABULAR, "standard"),
        ("minmax", TABULAR, "minmax"),
        ("standard", PIXELS, "standard"),
        ("none", TABULAR, "none"),
    ],
)
def test_round_trip(method, X, resolved):
    scaler = Scaler(method).fit(X)
    assert scaler.method_ == resolved
    assert scaler.offset_.dtype == np.float64 and scaler.scale_.dtype == np.float64
    Z = scaler.transform(X)
    assert Z.dtype == np.float32
    # There and back in float32: four roundings (subtract, divide, multiply, add) at each column's largest.
    assert_within(scaler.inverse_transform(Z), X, float_tolerance(np.float32, np.abs(X).max(axis=0), 4))
    assert_within(Z, (X - scaler.offset_) / scaler.scale_, scaled_tolerance(X, scaler.offset_, scaler.scale_))


def test_standard_gives_zero_mean_unit_variance():
    scaler = Scaler("standard").fit(TABULAR)
    Z = scaler.transform(TABULAR)
    # The values' own rounding, and float32 sums over sqrt(n) of them.
    tolerance = scaled_tolerance(TABULAR, scaler.offset_, scaler.scale_)
    tolerance = tolerance + float_tolerance(np.float32, np.abs(Z).max(axis=0), np.sqrt(len(Z)))
    assert_within(Z.mean(axis=0), 0.0, tolerance)
    assert_within(Z.std(axis=0), 1.0, tolerance)


def test_standard_matches_numpy_moments_across_chunks(monkeypatch):
    monkeypatch.setattr("aepca.preprocessing._CHUNK_ROWS", 7)
    scaler = Scaler("standard").fit(TABULAR)
    # Sums over sqrt(n) rows in float64, rounding at each column's largest magnitude.
    tolerance = float_tolerance(np.float64, np.abs(TABULAR).max(axis=0), np.sqrt(len(TABULAR)))
    assert_within(scaler.offset_, TABULAR.astype(np.float64).mean(axis=0), tolerance)
    assert_within(scaler.scale_, TABULAR.astype(np.float64).std(axis=0), tolerance)


def test_minmax_maps_training_data_to_unit_interval():
    scaler = Scaler("minmax").fit(TABULAR)
    Z = scaler.transform(TABULAR)
    tolerance = scaled_tolerance(TABULAR, scaler.offset_, scaler.scale_)
    assert_within(Z.min(axis=0), 0.0, tolerance)
    assert_within(Z.max(axis=0), 1.0, tolerance)
    assert scaler.unit_interval_


@pytest.mark.parametrize("method", ["minmax", "standard"])
def test_constant_column_gets_scale_one(method):
    X = np.column_stack([np.full(10, 7.0), np.arange(10.0)])
    scaler = Scaler(method).fit(X)
    assert scaler.scale_[0] == 1.0
    Z = scaler.transform(X)
    assert np.isfinite(Z).all() and (Z[:, 0] == 0).all()


@pytest.mark.parametrize(
    ("method", "X", "expected"),
    [("auto", PIXELS, True), ("auto", TABULAR, False), ("minmax", TABULAR, True), ("none", PIXELS, True),
     ("none", TABULAR, False), ("standard", PIXELS, False)],
)
def test_unit_interval(method, X, expected):
    assert Scaler(method).fit(X).unit_interval_ is expected


@pytest.mark.parametrize("method", ["auto", "minmax", "standard", "none"])
def test_to_dict_round_trips_exactly_through_json(method):
    scaler = Scaler(method).fit(TABULAR)
    restored = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert restored.method == method and restored.method_ == scaler.method_
    np.testing.assert_array_equal(restored.offset_, scaler.offset_)
    np.testing.assert_array_equal(restored.scale_, scaler.scale_)
    assert restored.unit_interval_ == scaler.unit_interval_
    np.testing.assert_array_equal(restored.mean_, scaler.mean_)
    np.testing.assert_array_equal(restored.std_, scaler.std_)
    np.testing.assert_array_equal(restored.transform(TABULAR), scaler.transform(TABULAR))


def _moments(X, scaler: Scaler) -> RowMoments:
    moments = RowMoments(X.shape[1], shift=scaler.mean_)
    moments.add(X)
    return moments


@pytest.mark.parametrize("method", ["auto", "minmax", "standard"])
def test_rows_like_the_training_rows_get_no_note(method, rng):
    training = rng.random((2000, 8)).astype(np.float32) * np.geomspace(1, 1000, 8).astype(np.float32)
    scaler = Scaler(method).fit(training)
    assert scaler.departure_notes(_moments(training, scaler)) == []
    assert scaler.departure_notes(_moments(training[:2], scaler)) == []  # two rows: a spread too rough to judge
    assert scaler.departure_notes(_moments(np.repeat(training[:1], 5, axis=0), scaler)) == []  # copies of one row


def test_columns_far_from_zero_for_their_spread_get_no_note_on_their_own_rows(rng):
    # Timestamps, coordinates: float32 squares of the raw values would lose the spread to rounding.
    training = (rng.normal(size=(100_000, 3)) * [1.0, 100.0, 0.1] + [1e5, 1.7e6, 1e4]).astype(np.float32)
    scaler = Scaler("standard").fit(training)
    assert scaler.departure_notes(_moments(training, scaler)) == []


@pytest.mark.parametrize(("factor", "what"), [(255.0, r"lie \d{3} training standard deviations from"),
                                               (1 / 255, r"vary \d{3} times less than the training rows")])
def test_rows_in_other_units_are_noted(factor, what, mnist_small):
    training, test = mnist_small
    scaler = Scaler().fit(training)
    notes = scaler.departure_notes(_moments(test * np.float32(factor), scaler))
    assert len(notes) == 1 and re.search(what, notes[0]) and "pixels divided by 255" in notes[0]


def test_a_scaler_saved_without_the_training_moments_notes_nothing(mnist_small):
    training, test = mnist_small
    saved = Scaler().fit(training).to_dict()
    restored = Scaler.from_dict({key: value for key, value in saved.items() if key not in ("mean", "std")})
    assert restored.departure_notes(_moments(test * np.float32(255), restored)) == []


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: Scaler("zscore").fit(TABULAR), r"expected one of \['auto', 'minmax', 'standard', 'none'\].*method='zscore'"),
        (lambda: Scaler().transform(TABULAR), r"not fitted yet"),
        (lambda: Scaler().fit(TABULAR).transform(PIXELS), r"X has 6 features, but the model was fitted with 4"),
        (lambda: Scaler().fit(TABULAR).inverse_transform(np.ones((2, 3))), r"Z has 3 features"),
        (lambda: Scaler().fit(np.array([[np.nan]])), r"NaN"),
        (lambda: Scaler.from_dict({"method": "auto"}), r"missing \['method_', 'offset', 'scale', 'unit_interval'\]"),
        (lambda: Scaler.from_dict({"method": "auto", "method_": "bogus", "offset": [0.0], "scale": [1.0],
                                   "unit_interval": True}), r"method_='bogus'"),
        (lambda: Scaler.from_dict({"method": "auto", "method_": "none", "offset": [0.0], "scale": [1.0, 2.0],
                                   "unit_interval": True}), r"equal-length"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _mixed_units(rng):
    """Three columns measured in very different units (years, euros, a ratio)."""
    return np.column_stack([rng.normal(40, 12, 500), rng.normal(30000, 9000, 500), rng.normal(0.5, 0.1, 500)])


def test_auto_keeps_one_unit_data_as_it_is_and_says_why():
    from sklearn.datasets import load_digits

    # Pixels of 0-16 with near-constant border pixels: one unit, not a reason to standardise.
    scaler = Scaler("auto").fit(load_digits().data)
    assert scaler.method_ == "none"
    assert "standard deviations are within" in scaler.reason_
    assert scaler.units == "the data's own units"


def test_auto_standardises_mixed_units_and_says_why(rng):
    scaler = Scaler("auto").fit(_mixed_units(rng))
    assert scaler.method_ == "standard"
    assert "differ" in scaler.reason_ and "mixed units" in scaler.reason_
    assert "variance is 1" in scaler.units


@pytest.mark.parametrize("name", ["wine", "breast_cancer"])
def test_scikit_learns_tables_are_mixed_units(name):
    from sklearn import datasets

    assert shares_one_unit(getattr(datasets, f"load_{name}")().data)[0] is False


def test_standard_equals_scikit_learns_standard_scaler_with_a_constant_column(rng):
    from sklearn.preprocessing import StandardScaler

    X = np.column_stack([_mixed_units(rng), np.full(500, 7.0)])
    scaler = Scaler("standard").fit(X)  # float32 output against scikit-learn's float64
    assert_within(scaler.transform(X), StandardScaler().fit_transform(X), scaled_tolerance(X, scaler.offset_, scaler.scale_))


def test_network_scaling_makes_the_units_irrelevant(rng):
    X = _mixed_units(rng)
    mean, scale, typical = network_scaling(X)
    small_mean, small_scale, small_typical = network_scaling(X * 1e-6)
    # One more rounding per value; sums over sqrt(n) rows, relative to a column's spread its offset's.
    rtol = float_tolerance(np.float64, (np.abs(X).max(axis=0) / X.std(axis=0)).max(), np.sqrt(len(X)))
    np.testing.assert_allclose((mean, scale), (small_mean, small_scale), rtol=rtol)
    assert small_typical == pytest.approx(typical * 1e-6, rel=rtol)
    # Floored at a tenth of the typical scale: the ratio column is not blown up.
    assert scale.min() == pytest.approx(0.1)


# Column summaries: scaling without holding the rows --------------------------------
def _offset_rows(rng, n=1003):
    """Mixed units with large offsets (which expose a naive sum-of-squares update), as float32."""
    return (rng.standard_normal((n, 4)) * [1.0, 10.0, 1e3, 0.01] + [0.0, -5.0, 1e4, 3.0]).astype(np.float32)


def _assert_same_summary(a: ColumnSummary, b: ColumnSummary, tolerance: np.ndarray) -> None:
    assert a.n == b.n
    for field in ("mean", "std", "low", "high"):
        assert_within(getattr(a, field), getattr(b, field), tolerance, err_msg=field)


@pytest.mark.parametrize("method", ["auto", "minmax", "standard", "none"])
@pytest.mark.parametrize("name", ["pixels", "tabular"])
def test_scaler_fitted_on_a_summary_equals_scaler_fitted_on_the_array(method, name):
    X = {"pixels": PIXELS, "tabular": TABULAR}[name]
    from_summary = Scaler(method).fit(ColumnSummary.of(X))
    from_array = Scaler(method).fit(X)
    assert (from_summary.method_, from_summary.reason_, from_summary.unit_interval_) == (
        from_array.method_, from_array.reason_, from_array.unit_interval_
    )
    assert from_summary.n_features_in_ == X.shape[1]
    # Sums over sqrt(n) rows in float64, rounding at each column's largest magnitude.
    tolerance = float_tolerance(np.float64, np.abs(X).max(axis=0), np.sqrt(len(X)))
    assert_within(from_summary.offset_, from_array.offset_, tolerance)
    assert_within(from_summary.scale_, from_array.scale_, tolerance)


@pytest.mark.parametrize("name", ["digits", "wine"])
def test_shares_one_unit_decides_alike_from_a_summary(name):
    from sklearn import datasets

    X = getattr(datasets, f"load_{name}")().data
    assert shares_one_unit(ColumnSummary.of(X)) == shares_one_unit(X)


def test_summary_in_scaled_space_equals_summary_of_the_scaled_rows(rng):
    X = _offset_rows(rng)
    scaler = Scaler("standard").fit(X)
    scaled = ColumnSummary.of(X).in_scaled_space(scaler.offset_, scaler.scale_)
    # Against rows scaled in float32: equal up to their float32 rounding; the sample is scaled the same way.
    _assert_same_summary(scaled, ColumnSummary.of(scaler.transform(X)), scaled_tolerance(X, scaler.offset_, scaler.scale_))
    np.testing.assert_array_equal(scaled.sample, ColumnSummary.of(scaler.transform(X)).sample)


def test_network_scaling_of_a_summary_equals_that_of_the_array(rng):
    X = _mixed_units(rng).astype(np.float32)  # the network takes float32 rows
    from_summary, from_array = network_scaling(ColumnSummary.of(X)), network_scaling(X)
    np.testing.assert_array_equal(from_summary[0], from_array[0])
    np.testing.assert_array_equal(from_summary[1], from_array[1])
    assert from_summary[2] == from_array[2]
