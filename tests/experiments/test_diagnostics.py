"""Each diagnosis is provoked on small data, and only what is found is reported."""

from __future__ import annotations

import numpy as np
import pytest

from aepca.data import low_rank
from aepca.estimator import Autoencoder
from aepca.experiments import diagnostics
from aepca.experiments.compare import compare

SMALL_NET = (16, 8)


def metrics(beats: bool, k: int = 2) -> dict:
    return {"pca": {"test_mse": 1.0}, "autoencoder": {"test_mse": 0.5 if beats else 2.0}, "n_components": k}


def problems(estimator, x, *, beats=True) -> list[str]:
    scaled = estimator.scaler_.transform(x)
    return [item["problem"] for item in diagnostics.diagnose(metrics(beats), estimator, scaled, estimator.scaler_)]


@pytest.fixture(scope="module")
def x():
    return low_rank(n_samples=300, n_features=6, rank=3, noise=0.1, seed=0).x_train


@pytest.fixture(scope="module")
def unscaled(x):
    # A 1,000-fold larger first column, everything offset far from zero, not scaled:
    # every first-layer unit sees about 100,000 x the sum of its weights.
    return x * np.array([1000.0, 1, 1, 1, 1, 1], dtype=np.float32) + 1e5


def fit(x, **params):
    return Autoencoder(n_components=2, hidden=SMALL_NET, random_state=0, **params).fit(x)


def test_dead_units_scales_and_still_falling(unscaled):
    estimator = fit(unscaled, scale="none", activation="relu", epochs=1)
    found = problems(estimator, unscaled)
    assert found == [
        "dead hidden units",
        "training stopped while the loss was still falling",
        "features on very different scales",
    ]
    facts = diagnostics.measure(metrics(True), estimator, unscaled, estimator.scaler_)
    assert facts["dead_fraction"] >= diagnostics.UNIT_PROBLEM_SHARE
    assert facts["feature_std_ratio"] >= diagnostics.SCALE_RATIO


def test_saturated_units(unscaled):
    estimator = fit(unscaled, scale="standard", activation="tanh", epochs=1)
    # Scaled data is healthy; the same network fed the unscaled rows saturates.
    assert "saturated hidden units" not in problems(estimator, unscaled)
    raw = diagnostics.unit_facts(estimator, unscaled)
    assert raw["saturated_fraction"] >= diagnostics.UNIT_PROBLEM_SHARE
    assert raw["hidden_activations"] == ["tanh"]


def test_divergence(x):
    # At 1,000 the loss overflows in the first epoch; the retry at 100 stays finite.
    with pytest.warns(RuntimeWarning, match="non-finite"):
        estimator = fit(x, scale="standard", epochs=1, learning_rate=1000.0)
    assert estimator.history_["lr_scale"] == [pytest.approx(0.1)]
    found = diagnostics.diagnose(metrics(True), estimator, estimator.scaler_.transform(x), estimator.scaler_)
    divergence = next(item for item in found if item["problem"] == "training diverged")
    assert "0.1 x the learning rate 1000" in divergence["evidence"]
    assert "lower learning_rate to at most 100" in divergence["fix"]


def test_compare_reports_facts_always_and_problems_when_pca_wins():
    dataset = low_rank(n_samples=300, n_features=6, rank=3, noise=0.1, seed=0)
    # Linear data at k = rank: nothing to gain on PCA, the PCA start is kept.
    comparison = compare(dataset, code_dim=3, recipe="fast", hidden=SMALL_NET)
    health = comparison.metrics["autoencoder"]["health"]
    assert health["dead_fraction"] == 0.0 and health["saturated_fraction"] == 0.0
    assert health["hidden_units"] == 2 * sum(SMALL_NET)
    assert comparison.estimator.history_["kept_start"] is True
    assert [item["problem"] for item in comparison.diagnostics] == ["did not beat PCA"]
    assert set(comparison.diagnostics[0]) == {"problem", "evidence", "fix"}
    # A healthy model that beats PCA has nothing to report.
    sample = comparison.estimator.scaler_.transform(dataset.x_train)
    assert diagnostics.diagnose(metrics(True), comparison.estimator, sample, comparison.estimator.scaler_) == []


def test_last_epoch_improvement():
    assert diagnostics.last_epoch_improvement({"loss": [2.0, 1.0]}) == pytest.approx(0.5)
    assert diagnostics.last_epoch_improvement({"loss": [2.0]}, final_loss=1.5) == pytest.approx(0.25)
    assert diagnostics.last_epoch_improvement({"loss": [2.0]}) is None
