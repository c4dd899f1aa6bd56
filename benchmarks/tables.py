"""The default recipe against PCA on scikit-learn's bundled tables.

Each table is split 80/20 by a seeded shuffle and compared in standardised
units at code sizes 1, 2 and 3, as ``aepca compare FILE --scale standard``
does. Prints one markdown row per comparison (test MSE ratio, what the
keep-or-fallback rule kept, seconds) and the median ratio.

    .venv/bin/python benchmarks/tables.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn import datasets

from aepca.data import Dataset
from aepca.data.readers import split_indices
from aepca.experiments.compare import compare, selection_note

TABLES = ("breast_cancer", "wine", "diabetes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--code-dims", default="1,2,3")
    args = parser.parse_args()
    ratios = []
    print("| table (train rows x columns) | k | AE / PCA test MSE | kept | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for name in TABLES:
        x = getattr(datasets, f"load_{name}")().data.astype(np.float32)
        train, test = split_indices(len(x), 0.2, args.seed, name)
        dataset = Dataset(name, x[train], x[test])
        for k in map(int, args.code_dims.split(",")):
            started = time.perf_counter()
            metrics = compare(dataset, code_dim=k, recipe="fast", scale="standard", seed=args.seed).metrics
            seconds = time.perf_counter() - started
            ratio = metrics["autoencoder"]["test_mse"] / metrics["pca"]["test_mse"]
            ratios.append(ratio)
            kept = selection_note(metrics["autoencoder"]["selection"])
            print(f"| {name} ({len(train)} x {x.shape[1]}) | {k} | {ratio:.3f} | {kept} | {seconds:.0f} |", flush=True)
    print(f"\nmedian AE / PCA: {np.median(ratios):.3f}, largest: {max(ratios):.4f}")


if __name__ == "__main__":
    main()
