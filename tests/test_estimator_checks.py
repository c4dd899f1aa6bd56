"""scikit-learn's estimator conformance checks on a tiny, fast Autoencoder and on PCA.

Every check passes, so no failure is expected; a check that starts failing is a
regression to fix in the estimator, or to list here with its reason if it is
a genuine limitation of a neural-network transformer.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from aepca.estimator import Autoencoder
from aepca.pca import PCA

# check name -> why this estimator cannot pass it (none at present).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@parametrize_with_checks(
    [Autoencoder(recipe="classic", n_components=1, hidden=(4,), epochs=2, batch_size=16, random_state=0), PCA(n_components=1)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
