"""How often the fast recipe's keep-or-fallback rule keeps a network that is
not better than PCA, and falls back to PCA when the network is better.

Each replicate draws a table of ``--rows`` training rows (and a large
independent test set) from a 2-D Gaussian latent mapped into 10 columns by
``z1, z2`` plus ``strength`` times the nonlinear terms ``z1^2 - 1`` and
``z1 z2``, with noise. At strength 0 the table is Gaussian and PCA is the
best possible k=2 reconstruction, so every kept network is a false keep. At
a strength where the recipe's network is truly better by some margin, every
fallback is a false fallback. The truth of each replicate is the network's
gain measured on 20,000 new rows. Writes JSON lines and prints a summary.

    .venv/bin/python benchmarks/keep_rule.py --strength 0 --replicates 20 > docs/results/keep-rule-null.jsonl
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

N_FEATURES = 10
TEST_ROWS = 20_000


def table(n_rows: int, strength: float, seed: int, mixing_seed: int = 0) -> np.ndarray:
    mixing = np.random.default_rng(mixing_seed).standard_normal((4, N_FEATURES))
    latent = np.random.default_rng(seed).standard_normal((n_rows, 2))
    z1, z2 = latent.T
    terms = np.column_stack([z1, z2, strength * (z1**2 - 1), strength * z1 * z2])
    noise = 0.3 * np.random.default_rng(seed + 10_000).standard_normal((n_rows, N_FEATURES))
    return (terms @ mixing + noise).astype(np.float32)


def replicate(n_rows: int, strength: float, seed: int) -> dict:
    from aepca.estimator import Autoencoder
    from aepca.pca import PCA

    x_train, x_test = table(n_rows, strength, seed), table(TEST_ROWS, strength, seed + 1)
    model = Autoencoder(2, random_state=seed).fit(x_train)
    pca = PCA(2).fit(x_train)
    selection = model.history_["selection"]
    # The truth: what the rule's candidate network does on new rows. When PCA was
    # kept, the candidate is trained here the way the rule would have trained it.
    candidate = model
    if not selection["kept_network"]:
        epochs = max(1, int(np.median(selection["best_epochs"])))
        candidate = Autoencoder(2, init="random", folds=0, epochs=epochs, random_state=seed).fit(x_train)
    return {
        "strength": strength,
        "rows": n_rows,
        "seed": seed,
        "kept_network": selection["kept_network"],
        "z": selection["z"],
        "held_out_gain": selection["gain"],
        "true_gain": 1 - candidate.score(x_test) / pca.score(x_test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strength", type=float, default=0.0)
    parser.add_argument("--rows", type=int, default=455)
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args()
    results = []
    for seed in range(args.first_seed, args.first_seed + args.replicates):
        result = replicate(args.rows, args.strength, seed)
        results.append(result)
        print(json.dumps(result), flush=True)
    kept = np.array([r["kept_network"] for r in results])
    gains = np.array([r["true_gain"] for r in results])
    summary = {
        "strength": args.strength, "rows": args.rows, "replicates": len(results),
        "kept": int(kept.sum()), "mean_true_gain": float(gains.mean()),
        "false_keeps": int(np.sum(kept & (gains <= 0))), "fallbacks_on_a_better_network": int(np.sum(~kept & (gains > 0))),
    }
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")  # this program's process: JAX unless set
    main()
