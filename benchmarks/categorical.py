"""How to weight one-hot indicators in the error space: plain standardising against FAMD's weighting.

A small panel of tables with categories: scikit-learn's bundled iris, wine, breast cancer and
diabetes with their class (or sex) column as a category, and two tables generated here with
pandas from a few latent factors (numbers and categories of 3 to 12 values, some rare). Each
table is split 80/20 by a seeded shuffle; the categories are learned on the training rows. The
numbers are standardised in every variant; the indicators are standardised like any column
(``standard``: centred and divided by sqrt(p (1 - p)), p the category's training frequency),
centred and divided by sqrt(p) (``famd``: the weighting of factor analysis of mixed data, as
in the ``prince`` library), or only centred (``unit``: 0/1 as they are, what ``--scale none``
gives them). PCA with k components is fitted on the training rows in each space
and the test rows are reconstructed; reported: the share of categorical test cells decoded to
their category (argmax of the reconstructed indicators in 0/1 units) and the test MSE of the
standardised numeric columns. PCA only: the weighting changes what both methods are fitted to,
and PCA is the exact optimum of that space.

    .venv/bin/python benchmarks/categorical.py
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
from sklearn import datasets

from aepca.data.readers import split_indices


def bundled(name: str, category: str) -> pd.DataFrame:
    loaded = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = loaded.frame.rename(columns=str)
    if category == "target":
        frame["target"] = frame["target"].map(lambda value: f"class {value}")
    else:  # diabetes' sex: two standardised values, a category in truth
        frame[category] = np.where(frame[category] > 0, "a", "b")
    return frame


def latent(seed: int, rows: int = 3000) -> pd.DataFrame:
    """Numbers and categories driven by 3 latent factors: a category is the argmax of noisy scores."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(rows, 3))
    columns = {f"x{i}": z @ rng.normal(size=3) + 0.5 * rng.normal(size=rows) for i in range(8)}
    for j, n_values in enumerate((3, 5, 12)):
        # Unequal offsets make some categories rare.
        scores = z @ rng.normal(size=(3, n_values)) + rng.normal(size=(rows, n_values)) - np.linspace(0, 2, n_values)
        columns[f"c{j}"] = pd.Series(scores.argmax(axis=1)).map(lambda value: f"v{value}").to_numpy()
    return pd.DataFrame(columns)


def panel(seed: int) -> dict[str, pd.DataFrame]:
    return {
        "iris (species)": bundled("iris", "target"),
        "wine (class)": bundled("wine", "target"),
        "breast cancer (diagnosis)": bundled("breast_cancer", "target"),
        "diabetes (sex)": bundled("diabetes", "sex"),
        "latent A (3/5/12 values)": latent(seed),
        "latent B (3/5/12 values)": latent(seed + 1),
    }


def encode(frame: pd.DataFrame, train: np.ndarray, weighting: str):
    """The training and test rows in the error space, its offsets and scales, and the indicator groups."""
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    text = [c for c in frame.columns if c not in numeric]
    blocks, groups, at = [frame[numeric].to_numpy(float)], [], len(numeric)
    for column in text:
        categories = sorted(frame[column].iloc[train].unique())
        blocks.append((frame[column].to_numpy()[:, None] == np.array(categories)[None, :]).astype(float))
        groups.append(np.arange(at, at + len(categories)))
        at += len(categories)
    values = np.hstack(blocks)
    mean = values[train].mean(axis=0)
    scale = values[train].std(axis=0)
    for group in groups if weighting != "standard" else ():
        scale[group] = np.sqrt(mean[group]) if weighting == "famd" else 1.0
    scale[scale == 0] = 1.0
    return values, mean, scale, len(numeric), groups


def measure(frame: pd.DataFrame, k: int, seed: int, weighting: str) -> tuple[float, float]:
    train, test = split_indices(len(frame), 0.2, seed, "table")
    values, mean, scale, n_numeric, groups = encode(frame, train, weighting)
    space = (values - mean) / scale
    _, _, vt = np.linalg.svd(space[train], full_matrices=False)
    basis = vt[:k]
    reconstruction = (space[test] @ basis.T @ basis) * scale + mean
    numeric_mse = float(np.mean(np.square(((reconstruction - values[test]) / scale)[:, :n_numeric])))
    hits = [np.argmax(reconstruction[:, g], axis=1) == np.argmax(values[test][:, g], axis=1) for g in groups]
    return float(np.mean(hits)), numeric_mse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--code-dims", default="1,2,4")
    args = parser.parse_args()
    weightings = ("standard", "famd", "unit")
    print("| table (rows) | k | category accuracy: standard | FAMD | unit | numeric test MSE: standard | FAMD | unit |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    totals = {weighting: [] for weighting in weightings}
    for name, frame in panel(args.seed).items():
        for k in map(int, args.code_dims.split(",")):
            results = {weighting: measure(frame, k, args.seed, weighting) for weighting in totals}
            for weighting, result in results.items():
                totals[weighting].append(result)
            print(row(f"{name} ({len(frame)})", k, [results[w] for w in weightings]))
    print(row("mean", "", [np.mean(totals[w], axis=0) for w in weightings]))


def row(name: str, k, results) -> str:
    accuracy = " | ".join(f"{result[0]:.3f}" for result in results)
    mse = " | ".join(f"{result[1]:.4f}" for result in results)
    return f"| {name} | {k} | {accuracy} | {mse} |"


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")  # this program's process: JAX unless set
    main()
