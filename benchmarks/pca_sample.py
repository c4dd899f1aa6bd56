"""How much test error PCA fitted on a sample of blocks (``PCA(sample_rows=N)``) costs.

    .venv/bin/python benchmarks/pca_sample.py [--out docs]

For each data set and sample size: the relative excess test reconstruction MSE at
k = 2, 9, 30 of PCA fitted on the sampled blocks over PCA fitted on every training row,
for the block choice ``sample_rows`` makes (seed 0) and the worst of the same rule with
seeds 0-4. Data: synthetic rank-40 data plus noise (400,000 x 128, blocks of 8,192 rows)
and the bundled MNIST (60,000 x 784, blocks of 2,048 and 8,192 rows). Writes
``pca_sample.json`` and ``pca_sample.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from aepca.data import load_dataset
from aepca.data.sources import open_source
from aepca.pca import PCA

KS = (2, 9, 30)
SEEDS = (0, 1, 2, 3, 4)


def synthetic(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(np.random.default_rng(123).standard_normal((128, 40)))
    scales = np.geomspace(10.0, 0.5, 40)
    return ((rng.standard_normal((n, 40)) * scales) @ basis.T + 0.3 * rng.standard_normal((n, 128))).astype(np.float32)


def sampled_blocks(sizes: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """Whole blocks in a seeded order until ``rows`` are reached: the rule of ``sample_rows``."""
    order = np.random.default_rng(seed).permutation(len(sizes))
    taken = int(np.searchsorted(np.cumsum(sizes[order]), rows)) + 1
    return np.sort(order[:taken])


def excess(train: np.ndarray, test: np.ndarray, block_rows: int, samples: tuple[int, ...]) -> dict:
    full = PCA(max(KS)).fit(open_source(train, block_rows=block_rows)).mse_by_components(test, max(KS))
    source = open_source(train, block_rows=block_rows)
    rows = []
    for sample in samples:
        fitted = PCA(max(KS), sample_rows=sample).fit(source)
        seed0 = fitted.mse_by_components(test, max(KS))[list(KS)] / full[list(KS)] - 1
        worst = []
        for seed in SEEDS:
            blocks = sampled_blocks(source.block_sizes, sample, seed)
            part = np.concatenate([source.read(i) for i in blocks])
            worst.append(PCA(max(KS)).fit(part).mse_by_components(test, max(KS))[list(KS)] / full[list(KS)] - 1)
        rows.append({"sample_rows": sample, "rows_used": int(fitted.n_samples_seen_), "seed_0": seed0.tolist(),
                     "worst_of_seeds": np.max(worst, axis=0).tolist()})
    return {"full_test_mse": [float(full[k]) for k in KS], "samples": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = parser.parse_args()
    mnist = load_dataset("mnist")
    cases = {
        "synthetic rank 40 + noise, 400,000 x 128, blocks of 8,192": (synthetic(400_000, 0), synthetic(50_000, 1), 8192, (10_000, 50_000, 100_000)),
        "MNIST, 60,000 x 784, blocks of 2,048": (mnist.x_train, mnist.x_test, 2048, (10_000, 20_000, 50_000)),
        "MNIST, 60,000 x 784, blocks of 8,192": (mnist.x_train, mnist.x_test, 8192, (10_000, 20_000, 50_000)),
    }
    results = {"command": shlex.join([sys.executable, *sys.argv]), "date": datetime.date.today().isoformat(), "cases": {}}
    for name, (train, test, block_rows, samples) in cases.items():
        results["cases"][name] = excess(train, test, block_rows, samples)
        print(name, results["cases"][name], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pca_sample.json").write_text(json.dumps(results, indent=2))
    (args.out / "pca_sample.md").write_text(report(results))


def report(results: dict) -> str:
    lines = [
        "# PCA on a sample of blocks: the error it costs",
        "",
        f"Made by `{results['command']}` on {results['date']}.",
        "",
        "`PCA(sample_rows=N)` fits on whole blocks taken in a seeded order until N rows are reached. "
        "Each cell is the relative excess test MSE over PCA fitted on every training row, "
        "`mse_sampled / mse_full - 1`, for seed 0 (in brackets: the worst of seeds 0-4). "
        "Small negative values are noise of the test set.",
        "",
    ]
    for name, case in results["cases"].items():
        full = ", ".join(f"k={k}: {mse:.5g}" for k, mse in zip(KS, case["full_test_mse"]))
        lines += [f"## {name}", "", f"Full-fit test MSE: {full}.", "",
                  "| sample_rows (rows used) | " + " | ".join(f"k={k}" for k in KS) + " |",
                  "|---|" + "---:|" * len(KS)]
        for row in case["samples"]:
            cells = " | ".join(f"{a:.1e} ({b:.1e})" for a, b in zip(row["seed_0"], row["worst_of_seeds"]))
            lines.append(f"| {row['sample_rows']:,} ({row['rows_used']:,}) | {cells} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
