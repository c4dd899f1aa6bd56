"""Each diagnosis is provoked on small data, and only what is found is reported.

The catalogue makes each classic mistake on purpose and checks that the
diagnosis names it (and not a look-alike); the healthy runs check that
nothing else is named. docs/diagnostics.md gives the numbers behind them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from aepca.data import Dataset, digits, load_mnist, low_rank, sklearn_table
from aepca.estimator import Autoencoder
from aepca.experiments import diagnostics
from aepca.experiments.compare import compare
from conftest import float_tolerance

SMALL_NET = (16, 8)
MNIST_ROWS = 1000
TOO_HIGH, TOO_LOW = "learning rate too high", "learning rate too low"
STILL_FALLING = "training stopped while the loss was still falling"
MIXED_UNITS = "columns in mixed units, errors measured unscaled"
LOST = "did not beat PCA"


def metrics(beats: bool, k: int = 2) -> dict:
    return {"pca": {"test_mse": 1.0}, "autoencoder": {"test_mse": 0.5 if beats else 2.0}, "n_components": k}


def problems(estimator, x, *, beats=True) -> list[str]:
    scaled = estimator.scaler_.transform(x)
    return [item["problem"] for item in diagnostics.diagnose(metrics(beats), estimator, scaled, estimator.scaler_)]


def everything_found(comparison) -> dict:
    """Every problem diagnose() finds in a comparison, by name (compare()
    itself shows them only when the autoencoder did not beat PCA), from the
    facts compare() measured."""
    estimator, facts = comparison.estimator, comparison.metrics["autoencoder"]["health"]
    found = diagnostics.diagnose(comparison.metrics, estimator, None, estimator.scaler_, facts=facts)
    return {item["problem"]: item for item in found}


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(n_train=MNIST_ROWS, n_test=500)


def dataset(name: str, mnist: Dataset) -> Dataset:
    if name == "mnist":
        return mnist
    return digits() if name == "digits" else sklearn_table(name)


# A small table trained as aepca would (its fast recipe's network and rate), for a fixed 60 epochs on
# all rows: seconds, and a plateau (wine's loss falls 0.2-0.3% an epoch at the end on four splits,
# against the 1% of "still falling"; after 30 epochs 0.85-1.01%, either side of it by the split).
TABLE_SETTINGS = dict(recipe="fast", epochs=60, folds=0)

# (mistake, data, compare() settings, the problem that names it, look-alikes it must not be called)
CATALOGUE = [
    ("too high a learning rate", "mnist", dict(recipe="classic", epochs=2, learning_rate=1.0),
     TOO_HIGH, (TOO_LOW, STILL_FALLING)),
    ("too high a learning rate, exploding loss", "digits", dict(recipe="classic", epochs=2, learning_rate=1.0),
     TOO_HIGH, (TOO_LOW, STILL_FALLING)),
    ("too low a learning rate", "mnist", dict(recipe="classic", epochs=2, learning_rate=1e-6),
     TOO_LOW, (TOO_HIGH, STILL_FALLING)),
    ("saturating sigmoid hidden units", "mnist", dict(recipe="classic", epochs=2, activation="sigmoid", learning_rate=0.1),
     "saturated hidden units", (TOO_LOW, STILL_FALLING)),
    # Named from the data and the scale alone: any network will do.
    ("mixed units measured unscaled", "wine", dict(recipe="fast", hidden=SMALL_NET, epochs=2, folds=0, scale="none",
                                                   init="random"), MIXED_UNITS, ()),
    ("too few epochs", "mnist", dict(recipe="classic", epochs=1), STILL_FALLING, (TOO_HIGH, TOO_LOW)),
    ("a bounded code layer", "mnist", dict(recipe="classic", epochs=2, code_activation="tanh"),
     "nonlinear code layer", (TOO_HIGH, TOO_LOW)),
]


@pytest.mark.parametrize(
    "data, settings, named, look_alikes", [case[1:] for case in CATALOGUE], ids=[case[0] for case in CATALOGUE]
)
def test_catalogue_of_mistakes(mnist, data, settings, named, look_alikes):
    data = dataset(data, mnist)
    comparison = compare(data, code_dim=2, **settings)
    reported = [item["problem"] for item in comparison.diagnostics]
    assert named in reported
    assert not set(look_alikes) & set(reported)
    found = everything_found(comparison)
    if named in (TOO_HIGH, TOO_LOW):
        # The fix names the value and a better one.
        assert f"learning_rate from {settings['learning_rate']:g} to about 0.001" in found[named]["fix"]
    if named == "nonlinear code layer":
        assert "uses tanh: codes are squeezed into (-1, 1)" in found[named]["evidence"]
        assert "code_activation='linear'" in found[named]["fix"]


# (name, data, settings, whether the fast suite runs it: one MNIST recipe and one table there)
HEALTHY = [
    ("mnist classic", "mnist", dict(recipe="classic", epochs=2), False),
    ("mnist fast", "mnist", dict(recipe="fast", epochs=2, folds=0), True),
    ("breast cancer", "breast_cancer", dict(TABLE_SETTINGS, scale="standard"), False),
    ("wine", "wine", dict(TABLE_SETTINGS, scale="standard"), True),
    ("diabetes", "diabetes", dict(TABLE_SETTINGS, scale="standard"), False),
]


@pytest.mark.parametrize("data, settings", [
    pytest.param(data, settings, id=name, marks=() if fast else pytest.mark.slow) for name, data, settings, fast in HEALTHY
])
def test_no_false_alarms(mnist, data, settings):
    allowed = {LOST, STILL_FALLING} if data == "mnist" else {LOST}
    data = dataset(data, mnist)
    found = set(everything_found(compare(data, code_dim=2, **settings)))
    # After a couple of MNIST epochs the loss is still falling (by 9-54% per
    # epoch): saying so is right, not an alarm. The tables train to a plateau.
    assert found <= allowed


@pytest.fixture(scope="module")
def x():
    return low_rank(n_samples=300, n_features=6, rank=3, noise=0.1, seed=0).x_train


@pytest.fixture(scope="module")
def unscaled(x):
    # A 1,000-fold larger first column, everything offset far from zero, not scaled.
    return x * np.array([1000.0, 1, 1, 1, 1, 1], dtype=np.float32) + 1e5


def fit(x, **params):
    return Autoencoder(n_components=2, recipe="classic", hidden=SMALL_NET, random_state=0, **params).fit(x)


@pytest.fixture(scope="module")
def scaled_tanh(unscaled):
    return fit(unscaled, scale="standard", activation="tanh", epochs=1)


def test_misleading_numbers_are_reported_even_when_the_autoencoder_wins(unscaled, scaled_tanh):
    estimator = fit(unscaled, scale="none", epochs=1)
    won = diagnostics.check_comparison(metrics(True), estimator, unscaled, seed=0)
    assert [item["problem"] for item in won] == [MIXED_UNITS]
    assert "differ" in won[0]["evidence"] and "scale='standard'" in won[0]["fix"]
    lost = diagnostics.check_comparison(metrics(False), estimator, unscaled, seed=0)
    assert [item["problem"] for item in lost][-2:] == [MIXED_UNITS, LOST]
    assert lost[-1]["fix"] == "fix the problems above first"
    # Scaled, the same columns are one unit's: nothing misleading to report.
    assert diagnostics.check_comparison(metrics(True), scaled_tanh, unscaled, seed=0) == []


def test_saturated_units(unscaled, scaled_tanh):
    estimator = scaled_tanh
    # Scaled data is healthy; the same network fed the unscaled rows saturates.
    assert "saturated hidden units" not in problems(estimator, unscaled)
    raw = diagnostics.unit_facts(estimator, unscaled)
    assert raw["saturated_fraction"] >= diagnostics.UNIT_PROBLEM_SHARE
    assert raw["hidden_activations"] == ["tanh"]


def test_divergence(x):
    # At 1,000 the loss overflows in the first epoch; the retry at 100 stays finite.
    with pytest.warns(RuntimeWarning, match="non-finite"):
        estimator = fit(x, scale="standard", epochs=1, learning_rate=1000.0)
    assert estimator.history_["lr_scale"] == [pytest.approx(0.1, rel=float_tolerance(np.float64))]  # 1 x 0.1
    found = diagnostics.diagnose(metrics(True), estimator, estimator.scaler_.transform(x), estimator.scaler_)
    divergence = next(item for item in found if item["problem"] == "training diverged")
    assert "0.1 x the learning rate 1000" in divergence["evidence"]
    assert "lower learning_rate to at most 100" in divergence["fix"]
    # Divergence already says to lower the rate; it is not said twice.
    assert TOO_HIGH not in [item["problem"] for item in found]


def test_compare_reports_facts_always_and_problems_when_pca_wins():
    dataset = low_rank(n_samples=300, n_features=6, rank=3, noise=0.1, seed=0)
    # Linear data at k = rank: nothing to gain on PCA.
    comparison = compare(dataset, code_dim=3, recipe="fast", hidden=SMALL_NET, epochs=5, folds=0)
    health = comparison.metrics["autoencoder"]["health"]
    assert health["dead_fraction"] == 0.0 and health["saturated_fraction"] == 0.0
    assert health["hidden_units"] == 2 * sum(SMALL_NET)
    assert health["code_activation"] == "linear"
    assert json.loads(json.dumps(health, allow_nan=False)) == health
    assert [item["problem"] for item in comparison.diagnostics] == [LOST]
    assert set(comparison.diagnostics[0]) == {"problem", "evidence", "fix"}
    assert comparison.diagnostics[0]["fix"].startswith("no training problem was found: the data may be close to linear")
    # A healthy model that beats PCA has nothing to report.
    sample = comparison.estimator.scaler_.transform(dataset.x_train)
    assert diagnostics.diagnose(metrics(True), comparison.estimator, sample, comparison.estimator.scaler_) == []


def test_recent_improvement():
    rel = float_tolerance(np.float64, 1.0, 4)  # a few float64 operations: means, a difference, a ratio
    assert diagnostics.recent_improvement({"loss": [2.0, 1.0]}) == pytest.approx(0.5, rel=rel)
    assert diagnostics.recent_improvement({"loss": [2.0]}, final_loss=1.5) == pytest.approx(0.25, rel=rel)
    assert diagnostics.recent_improvement({"loss": [2.0]}) is None
    # Eight epochs: the last two against the two before, per epoch.
    assert diagnostics.recent_improvement({"loss": [9, 9, 9, 9, 4.0, 4.0, 3.0, 3.0]}) == pytest.approx(0.125, rel=rel)
