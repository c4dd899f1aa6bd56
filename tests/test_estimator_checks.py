"""scikit-learn's estimator conformance checks on a tiny, fast Autoencoder."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from aepca.estimator import Autoencoder

EXPECTED_FAILED_CHECKS = {}


@parametrize_with_checks(
    [Autoencoder(n_components=1, hidden=(4,), epochs=2, batch_size=16, random_state=0)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
