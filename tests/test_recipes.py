"""The keep-or-fallback rule's error rates, simulated on paired per-row errors.

Per-row errors of PCA are heavy-tailed (gamma, mean 1); the network's are
PCA's shrunk by the true gain plus per-row noise of spread 0.6 x the mean
error, about what the held-out folds of scikit-learn's tables show (0.3-0.9).
The end-to-end rates, with trained networks, are in docs/recipes.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from aepca.selection import FOLD_Z, paired_evidence

SPREAD = 0.6


def keep_rate(n_rows: int, gain: float, trials: int = 400, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    pca = rng.gamma(1.0, 1.0, size=(trials, n_rows))
    network = pca * (1 - gain) + SPREAD * rng.standard_normal((trials, n_rows))
    return float(np.mean([paired_evidence(p, a, FOLD_Z)["kept_network"] for p, a in zip(pca, network)]))


def test_a_network_no_better_than_pca_is_rarely_kept():
    # One-sided z > 2: about 2.3% by construction.
    assert keep_rate(455, 0.0) <= 0.05


@pytest.mark.parametrize(("n_rows", "gain"), [(455, 0.15), (1437, 0.10), (4000, 0.05)])
def test_a_clearly_better_network_is_kept(n_rows, gain):
    assert keep_rate(n_rows, gain) >= 0.9
