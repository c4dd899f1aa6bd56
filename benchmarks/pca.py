"""Exact PCA against scikit-learn's: the solver its ``PCA`` picks, its full SVD, and ``IncrementalPCA``.

    .venv/bin/python benchmarks/pca.py [--repeats 3] [--out docs]

In one process, contenders alternating within each repeat, the minimum over repeats (and the
median of aepca's time over the default solver's, repeat by repeat):
- MNIST's 60,000 x 784 training images (float32), k=30;
- 1,000,000 x 128 float32 rows (standard normal columns scaled from 3 down to 0.03, offset 5), k=16;
- the same 1M rows through ``partial_fit`` in blocks of 65,536 (aepca; ``IncrementalPCA``'s own);
- a wide table: 500 x 5,000 float32 (20 latent factors plus noise), k=10, fewer rows than features;
- streamed: the embedding folder of ``benchmarks/scale.py`` (16 Parquet files of 65,536 x 256),
  read alone, fitted by aepca's ``PCA(16)`` and by ``IncrementalPCA(16).partial_fit`` per block.
Explained variances are compared with a float64 eigendecomposition of the float64 covariance
(the float64 SVD of the centred rows for the wide table, which aepca solves through their Gram matrix).
Writes ``pca.json`` and ``pca.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sklearn
from sklearn.decomposition import PCA as ScikitPCA
from sklearn.decomposition import IncrementalPCA

from aepca.data import load_dataset
from aepca.data.sources import open_source
from aepca.pca import PCA
from scale import write_files

BLOCK_ROWS = 65_536
INCREMENTAL_BATCH = 10_000


def wide_rows() -> np.ndarray:
    rng = np.random.default_rng(0)
    scales = np.geomspace(3.0, 0.03, 128).astype(np.float32)
    return rng.standard_normal((1_000_000, 128), dtype=np.float32) * scales + np.float32(5.0)


def wide_table() -> np.ndarray:
    rng = np.random.default_rng(1)
    latent = rng.standard_normal((500, 20)) * np.geomspace(5.0, 0.5, 20)
    return (latent @ rng.standard_normal((20, 5000)) + 0.1 * rng.standard_normal((500, 5000))).astype(np.float32)


def float64_variances(X: np.ndarray) -> np.ndarray:
    """Every explained variance, largest first, from the float64 covariance of ``X`` (from the SVD of
    its centred rows when there are fewer rows than columns)."""
    centred = X.astype(np.float64)
    centred -= centred.mean(axis=0)
    if len(X) < X.shape[1]:
        return np.linalg.svd(centred, compute_uv=False) ** 2 / (len(X) - 1)
    return np.linalg.eigvalsh(centred.T @ centred / (len(X) - 1))[::-1]


def partial_fits(estimator, X: np.ndarray):
    """``partial_fit`` a block at a time, then one learned attribute read: aepca solves only then."""
    for start in range(0, len(X), BLOCK_ROWS):
        estimator.partial_fit(X[start : start + BLOCK_ROWS])
    estimator.components_  # noqa: B018 - the solve, timed with the rest
    return estimator


def streamed_fit(estimator, source):
    for block in source.iter_blocks():
        estimator.partial_fit(block)
    return estimator


def read_alone(source):
    for _ in source.iter_blocks():
        pass


def timed(contenders: dict, repeats: int) -> dict:
    """Each contender's seconds per repeat, the contenders alternating, and its last result."""
    seconds, results = {name: [] for name in contenders}, {}
    for _ in range(repeats):
        for name, run in contenders.items():
            started = time.perf_counter()
            results[name] = run()
            seconds[name].append(time.perf_counter() - started)
    return {"seconds": seconds, "results": results}


def in_memory_case(name: str, X: np.ndarray, k: int, repeats: int, full_svd: bool) -> dict:
    contenders = {
        "aepca": lambda: PCA(k).fit(X),
        "sklearn_default": lambda: ScikitPCA(k).fit(X),
        "incremental": lambda: IncrementalPCA(k, batch_size=INCREMENTAL_BATCH).fit(X),
        "aepca_partial_fit": lambda: partial_fits(PCA(k), X),
    }
    if full_svd:
        contenders["sklearn_full"] = lambda: ScikitPCA(k, svd_solver="full").fit(X)
    run = timed(contenders, repeats)
    reference = float64_variances(X)[:k]
    case = {"data": name, "shape": list(X.shape), "dtype": str(X.dtype), "k": k,
            "sklearn_solver": run["results"]["sklearn_default"]._fit_svd_solver, "contenders": {}}
    for contender, seconds in run["seconds"].items():
        variances = np.asarray(run["results"][contender].explained_variance_, dtype=np.float64)
        case["contenders"][contender] = {
            "seconds": seconds, "best_s": min(seconds),
            "max_relative_variance_error": float(np.max(np.abs(variances / reference - 1))),
        }
    ratios = [a / s for a, s in zip(run["seconds"]["aepca"], run["seconds"]["sklearn_default"])]
    case["aepca_over_default"] = {"per_repeat": ratios, "median": float(np.median(ratios)),
                                  "of_best": case["contenders"]["aepca"]["best_s"] / case["contenders"]["sklearn_default"]["best_s"]}
    return case


def streamed_case(repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="aepca-bench-pca-") as tmp:
        write_files(Path(tmp), 16, 256)
        source = open_source(tmp)
        run = timed({
            "read_alone": lambda: read_alone(source),
            "aepca": lambda: PCA(16).fit(source),
            "incremental": lambda: streamed_fit(IncrementalPCA(16), source),
        }, repeats)
        rows = source.to_array()
    reference = float64_variances(rows)[:16]
    case = {"data": "16 Parquet files of 65,536 x 256 float32 (benchmarks/scale.py)", "rows": len(rows), "k": 16,
            "contenders": {}}
    for contender, seconds in run["seconds"].items():
        entry = {"seconds": seconds, "best_s": min(seconds), "rows_per_s": len(rows) / min(seconds)}
        if contender != "read_alone":
            variances = np.asarray(run["results"][contender].explained_variance_, dtype=np.float64)
            entry["max_relative_variance_error"] = float(np.max(np.abs(variances / reference - 1)))
        case["contenders"][contender] = entry
    return case


NAMES = {
    "aepca": "aepca `PCA(k).fit`",
    "sklearn_default": "scikit-learn `PCA(k)` (its default solver)",
    "sklearn_full": 'scikit-learn `PCA(k, svd_solver="full")`',
    "incremental": f"scikit-learn `IncrementalPCA(k, batch_size={INCREMENTAL_BATCH:,})`",
    "aepca_partial_fit": f"aepca `partial_fit`, blocks of {BLOCK_ROWS:,}, then solved",
    "read_alone": "reading the blocks alone",
}


def report(results: dict) -> str:
    lines = ["# Exact PCA against scikit-learn", "",
             f"Made by `{results['command']}` on {results['date']} ({results['machine']}; {results['versions']}).",
             "One process; contenders alternate within each repeat; best of "
             f"{results['repeats']} repeats. Relative error: the largest over the k explained variances, against a "
             "float64 eigendecomposition of the float64 covariance.", ""]
    for case in results["in_memory"]:
        shape = " x ".join(f"{n:,}" for n in case["shape"])
        lines += [f"## {case['data']}: {shape} {case['dtype']}, k={case['k']}", "",
                  f"scikit-learn's default solver here: `{case['sklearn_solver']}`.", "",
                  "| contender | fit (s) | relative error of explained variances |", "|---|---:|---:|"]
        for name, entry in case["contenders"].items():
            lines.append(f"| {NAMES[name]} | {entry['best_s']:.3f} | {entry['max_relative_variance_error']:.1e} |")
        ratio = case["aepca_over_default"]
        lines += ["", f"aepca over scikit-learn's default: {ratio['of_best']:.2f}x (best times); per repeat "
                  + ", ".join(f"{r:.2f}" for r in ratio["per_repeat"]) + f" (median {ratio['median']:.2f}).", ""]
    streamed = results["streamed"]
    lines += [f"## Streamed: {streamed['data']}, k={streamed['k']}", "",
              "| contender | seconds | rows/s | relative error of explained variances |", "|---|---:|---:|---:|"]
    for name, entry in streamed["contenders"].items():
        error = entry.get("max_relative_variance_error")
        lines.append(f"| {NAMES[name]} | {entry['best_s']:.2f} | {entry['rows_per_s']:,.0f} | "
                     f"{'—' if error is None else f'{error:.1e}'} |")
    read, fitted = streamed["contenders"]["read_alone"], streamed["contenders"]["aepca"]
    lines += ["", f"aepca's streamed PCA runs at {fitted['rows_per_s'] / read['rows_per_s']:.0%} of the rate of "
              "reading the files alone.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = parser.parse_args()
    results = {
        "command": shlex.join([".venv/bin/python", "benchmarks/pca.py", *sys.argv[1:]]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "versions": {"numpy": np.__version__, "scikit-learn": sklearn.__version__, "python": platform.python_version()},
        "repeats": args.repeats,
        "in_memory": [
            in_memory_case("MNIST training images", load_dataset("mnist").x_train, 30, args.repeats, full_svd=True),
            in_memory_case("Synthetic rows", wide_rows(), 16, args.repeats, full_svd=False),
            in_memory_case("A wide table", wide_table(), 10, args.repeats, full_svd=True),
        ],
        "streamed": streamed_case(args.repeats),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pca.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "pca.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
