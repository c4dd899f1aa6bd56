"""The default recipe against PCA on scikit-learn's bundled tables and digits, and what a time
budget adds.

Each table is split 80/20 by a seeded shuffle and compared in standardised units at code sizes
1, 2 and 3, as ``aepca compare FILE --scale standard`` does; the digits as ``aepca compare
--dataset digits`` does. Prints one markdown row per comparison (test MSE ratio, what the
keep-or-fallback rule kept, seconds) and the median ratio. With ``--time-budget SECONDS`` each
comparison runs a second time under that budget (``aepca compare --time-budget``), and the row
gives its ratio to PCA and to ``fast``.

    .venv/bin/python benchmarks/tables.py [--time-budget 120]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")  # this program's process, before Keras loads: JAX unless set

from aepca.data import Dataset, load_dataset  # noqa: E402
from aepca.experiments.compare import compare, selection_note  # noqa: E402

TABLES = ("breast_cancer", "wine", "diabetes", "digits")


def table(name: str, seed: int) -> tuple[Dataset, str]:
    """The data set and the scale its command uses."""
    return load_dataset(name, seed=seed), "auto" if name == "digits" else "standard"


def timed_compare(dataset: Dataset, **options) -> tuple[dict, float]:
    started = time.perf_counter()
    metrics = compare(dataset, recipe="fast", **options).metrics
    return metrics, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--code-dims", default="1,2,3")
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--time-budget", type=float, default=None, help="seconds; also run each under this budget")
    args = parser.parse_args()
    budgeted = args.time_budget is not None
    ratios, gains = [], []
    extra = " AE / PCA with the budget | budget / fast | budget's refine steps | budget's seconds |" if budgeted else ""
    print(f"| table (train rows x columns) | k | AE / PCA test MSE | kept | seconds |{extra}")
    print("| --- " * (5 + 4 * budgeted) + "|")
    for name in args.tables.split(","):
        dataset, scale = table(name, args.seed)
        shape = f"{len(dataset.x_train)} x {dataset.x_train.shape[1]}"
        for k in map(int, args.code_dims.split(",")):
            options = dict(code_dim=k, scale=scale, seed=args.seed)
            metrics, seconds = timed_compare(dataset, **options)
            ratio = metrics["autoencoder"]["test_mse"] / metrics["pca"]["test_mse"]
            ratios.append(ratio)
            kept = selection_note(metrics["autoencoder"]["selection"])
            row = f"| {name} ({shape}) | {k} | {ratio:.3f} | {kept} | {seconds:.0f} |"
            if budgeted:
                timed, timed_seconds = timed_compare(dataset, time_budget=args.time_budget, **options)
                gain = timed["autoencoder"]["test_mse"] / metrics["autoencoder"]["test_mse"]
                gains.append(gain)
                steps = timed["autoencoder"]["budget"]["refine"]["refine_steps"]
                row += (f" {timed['autoencoder']['test_mse'] / timed['pca']['test_mse']:.3f} | {gain:.4f} | {steps} |"
                        f" {timed_seconds:.0f} |")
            print(row, flush=True)
    print(f"\nmedian AE / PCA: {np.median(ratios):.3f}, largest: {max(ratios):.4f}")
    if budgeted:
        print(f"budget / fast: median {np.median(gains):.4f}, largest {max(gains):.4f}")


if __name__ == "__main__":
    main()
