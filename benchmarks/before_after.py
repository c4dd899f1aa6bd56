"""The default ``aepca compare`` (MNIST, classic recipe) before and after a change, and the
value of each process-wide setting the ``aepca`` command keeps.

    .venv/bin/python benchmarks/before_after.py [--before REV] [--repeats 3] [--out docs]

Contenders, each a fresh ``aepca compare --no-progress`` process with its own JAX
compilation cache (empty when the benchmark starts, so each one's first run compiles and
is reported apart):

- ``before``: the source at ``--before``, run as its own command was;
- ``after``: this tree's command (``aepca.cli:console``);
- ``after, no neighbours``: the same with ``--neighbours 0`` (what measuring recall@10 costs);
- ``after, no cache``: the same with ``AEPCA_COMPILATION_CACHE=off``;
- ``after, untuned``: ``aepca.cli.main`` called as a library user would, so no cache and
  Keras imports TensorFlow to save the model (its difference to ``no cache`` is that guard).

A second part times what the library keeps for Python users: a default-recipe fit of
scikit-learn's wine table (five folds and a final fit of one network structure, hundreds
of epochs of a few steps each) in a fresh process without a disk cache, by the source at
``--before`` and by this tree, the latter with the networks' compiled programs shared
within the process and without (``aepca.models.MAX_SHARED_PROGRAMS = 0``).

The contenders alternate run by run. Reported: the process's wall time, the classic epoch
(median of ``history.seconds`` differences after the first epoch, from ``metrics.json``)
and the test MSE. Writes ``before_after.json`` and ``before_after.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = ("before", "after", "after, no neighbours", "after, no cache", "after, untuned")
UNTUNED = "import sys; from aepca.cli import main; sys.exit(main())"


def command(contender: str, before_src: Path, out: Path, cache: Path) -> tuple[list[str], dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    env["AEPCA_COMPILATION_CACHE"] = "off" if contender in ("after, no cache", "after, untuned") else str(cache)
    args = ["compare", "--no-progress", "--out", str(out)]
    if contender == "before":
        env["PYTHONPATH"] = str(before_src)
        return [sys.executable, "-m", "aepca", *args], env
    if contender == "after, untuned":  # as from Python, on JAX as its user chose
        return [sys.executable, "-c", UNTUNED, *args], {**env, "KERAS_BACKEND": "jax"}
    if contender == "after, no neighbours":
        args += ["--neighbours", "0"]
    return [sys.executable, "-m", "aepca", *args], env


SMALL_TABLE_FIT = """
import json, sys, time
import numpy as np
from sklearn.datasets import load_wine
from aepca import Autoencoder, models
if sys.argv[1] == "not shared":
    models.MAX_SHARED_PROGRAMS = 0
X = load_wine().data.astype(np.float32)
started = time.perf_counter()
model = Autoencoder(2, scale="standard", random_state=0).fit(X)
print(json.dumps({"fit_s": time.perf_counter() - started, "training_s": model.history_["training_seconds"],
                  "score": model.score(X)}))
"""
SMALL_TABLE_CONTENDERS = ("before, shared", "after, shared", "after, not shared")


def small_table_fit(contender: str, before_src: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("AEPCA_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR",
                                                           "PYTHONPATH")}
    env["KERAS_BACKEND"] = "jax"  # as its user chose
    if contender.startswith("before"):
        env["PYTHONPATH"] = str(before_src)
    sharing = contender.partition(", ")[2]
    done = subprocess.run([sys.executable, "-c", SMALL_TABLE_FIT, sharing], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"small-table fit ({contender}) failed:\n{done.stderr[-3000:]}")
    return {"contender": contender, **json.loads(done.stdout.strip().splitlines()[-1])}


def run_once(contender: str, before_src: Path, caches: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="aepca-before-after-") as tmp:
        out = Path(tmp) / "out"
        argv, env = command(contender, before_src, out, caches / contender.replace(",", "").replace(" ", "-"))
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{contender} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        metrics = json.loads((out / "metrics.json").read_text())
    seconds = metrics["autoencoder"]["history"]["seconds"]
    epochs = [b - a for a, b in zip(seconds, seconds[1:])]
    return {
        "contender": contender, "wall_s": wall, "epoch_s": statistics.median(epochs), "first_epoch_s": seconds[0],
        "fit_s": metrics["autoencoder"]["fit_seconds"], "test_mse": metrics["autoencoder"]["test_mse"],
        "pca_test_mse": metrics["pca"]["test_mse"],
    }


# What the change removed, with what each mechanism saved when it was measured alone (earlier
# runs of the benchmark of that time, on this machine); the table above measures them together.
REMOVED = (
    ("placeholder modules and an import hook (`_deferred.py`)",
     "ran scipy.stats, matplotlib.pyplot/patches, h5py, requests and Pallas' TPU kernels only at first use: "
     "~1.6 s of every start by `-X importtime` (which inflates small imports), 0.12-0.26 s for the TPU kernels"),
    ("traced training programs saved beside JAX's cache (`_saved_traces.py`)",
     "tracing the classic chunk 0.45-0.55 s of each repeated start, loading its saved trace 0.02-0.03 s"),
    ("initial weights and optimizer slots without a program per shape (`_initial_values.py`)",
     "building the classic network 0.52 -> 0.32 s and its optimizer 0.09 -> 0.03 s, cache filled"),
    ("MNIST read on a second thread while the libraries imported, with a hand-written .npz reader",
     "the read overlapped ~2 s of imports (0.4 s alone)"),
    ("64-byte-aligned host arrays shared with XLA's CPU client (`_memory.py`)",
     "one copy of the training set fewer (188 MB for MNIST); its time was not measured apart"),
    ("column means through one reused buffer (`mean_of_rows`)",
     "0.15-0.2 s -> ~0.05 s for MNIST's 54,000 training rows"),
    ("numpy's transparent-huge-page advice switched off in the command",
     "filling a new 188 MB array 0.42-0.72 s -> 0.10-0.14 s on this kernel's settings"),
    ("the Keras TensorFlow probe answered from `sys.modules`, by re-classing a Keras object in every process",
     "a model's first save 3.7 s and ~400 MB less with TensorFlow installed (measured 2026-12-02); now only "
     "in the command's own process (`after, untuned` shows its value)"),
)


def render(result: dict) -> str:
    runs = result["runs"]
    warm = [r for r in runs if r["repeat"] > 0]
    med = lambda c, key: statistics.median(r[key] for r in warm if r["contender"] == c)  # noqa: E731
    ratio = lambda c, key: statistics.median(  # noqa: E731
        r[key] / next(s[key] for s in warm if s["repeat"] == r["repeat"] and s["contender"] == "after")
        for r in warm if r["contender"] == c
    )
    lines = [
        "## Before and after: the default `aepca compare`",
        "",
        f"Measured {result['date']} by `{result['command']}`; `before` is `{result['before']}`. "
        f"Medians of {result['repeats']} runs per contender with a filled compilation cache, contenders "
        "alternating run by run; in parentheses the median ratio to `after` in the same repeat. "
        "First runs (empty cache) are listed below.",
        "",
        "| contender | whole command (s) | classic epoch (s) | first epoch (s) | test MSE |",
        "|---|---|---|---|---|",
    ]
    for c in CONTENDERS:
        lines.append(
            f"| {c} | {med(c, 'wall_s'):.2f} ({ratio(c, 'wall_s'):.3f}x) | {med(c, 'epoch_s'):.3f} ({ratio(c, 'epoch_s'):.3f}x) "
            f"| {med(c, 'first_epoch_s'):.2f} | {med(c, 'test_mse'):.5f} |"
        )
    lines += ["", "First run of each contender (its compilation cache empty; `no cache` and `untuned` never have one):", "",
              "| contender | whole command (s) | classic epoch (s) |", "|---|---|---|"]
    for r in runs:
        if r["repeat"] == 0:
            lines.append(f"| {r['contender']} | {r['wall_s']:.2f} | {r['epoch_s']:.3f} |")
    lines += ["", "Every run:", "", "| repeat | contender | wall (s) | epoch (s) | fit (s) | test MSE |", "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['repeat']} | {r['contender']} | {r['wall_s']:.2f} | {r['epoch_s']:.3f} | {r['fit_s']:.2f} | {r['test_mse']:.6f} |")
    fits = result["small_table_fits"]
    fit_median = lambda key, contender: statistics.median(f[key] for f in fits if f["contender"] == contender)  # noqa: E731
    lines += ["", "### A default-recipe fit of wine from Python (programs shared within a process, or not)", "",
              "| | fit (s) | training loops (s) | every fit (s) |", "|---|---|---|---|"]
    for contender in SMALL_TABLE_CONTENDERS:
        every = ", ".join(f"{f['fit_s']:.1f}" for f in fits if f["contender"] == contender)
        lines.append(f"| {contender} | {fit_median('fit_s', contender):.1f} | {fit_median('training_s', contender):.1f} | {every} |")
    lines += ["", "### Removed, and what each saved when measured alone", "", "| mechanism | measured then |", "|---|---|"]
    lines += [f"| {what} | {value} |" for what, value in REMOVED]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="020045d", help="git revision to compare with (default: 020045d)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender after the first")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aepca-before-src-") as tmp:
        tree = Path(tmp)
        archive = subprocess.run(["git", "archive", args.before, "src"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        runs = []
        for repeat in range(args.repeats + 1):
            for contender in CONTENDERS:
                run = run_once(contender, tree / "src", tree / "caches")
                run["repeat"] = repeat
                runs.append(run)
                print(f"repeat {repeat} {contender}: {run['wall_s']:.2f} s, epoch {run['epoch_s']:.3f} s", flush=True)
        fits = []
        for repeat in range(args.repeats):
            for contender in SMALL_TABLE_CONTENDERS:
                fits.append(small_table_fit(contender, tree / "src"))
                print(f"small table, {contender}: fit {fits[-1]['fit_s']:.1f} s", flush=True)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "small_table_fits": fits,
        "command": shlex.join([".venv/bin/python", "benchmarks/before_after.py", *sys.argv[1:]]),
        # The commit itself: a name such as HEAD moves on.
        "before": subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.strip(),
        "repeats": args.repeats, "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "before_after.json").write_text(json.dumps(result, indent=1))
    (args.out / "before_after.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
