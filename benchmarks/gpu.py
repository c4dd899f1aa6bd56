"""The GPU benchmark: aepca's compiled training against a plain PyTorch loop, same card, same run.

Both train the classic recipe's network on MNIST: 784-512-128-2-128-512-784, ELU, linear
code, sigmoid output, Glorot-uniform weights and zero biases, Adam at 1e-3 (Keras' epsilon,
1e-7), MSE, batch 128, 5 epochs, the test set scored after every epoch. All data sits on
the GPU, and float32 matrix products run in TF32 for both (each library's own switch). Runs
alternate, aepca then PyTorch, in one process; the first run of each pays for compilation
(aepca) or CUDA and cuBLAS start-up (PyTorch) and is reported apart.

    python3 benchmarks/gpu.py [--repeats 3] [--epochs 5] [--n-train N] [--time-budget DURATION]
                              [--out docs/benchmarks-gpu.json]

``--time-budget`` first runs ``aepca compare --code-dim 2 --time-budget DURATION`` on MNIST in a
fresh process (before this one takes the card) and records what the budget chose and bought.

``benchmarks/report.py`` renders the JSON into the GPU section of docs/benchmarks.md.

On the project's GPU machine (Python 3.12 with JAX and PyTorch, no Keras), Keras and the two
packages it needs that are missing there travel as wheels. Here, once:

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 -d .whl keras==3.15.1 namex==0.1.0 optree==0.20.0

and there (carrying ``.whl``):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl \\
        && PYTHONPATH=/tmp/site:src python3 benchmarks/gpu.py --time-budget 5m --out $OUT/benchmarks-gpu.json

A call may run 10 minutes and a session has 15 minutes of the machine, its start included: a
budget of 5 minutes leaves room for the benchmark, the start and the transfers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import versions  # benchmarks/, beside this file

SIZES = (784, 512, 128, 2, 128, 512, 784)
BATCH, LEARNING_RATE, EPSILON = 128, 1e-3, 1e-7
PACKAGES = ("jax", "jaxlib", "keras", "torch", "numpy")


def load_mnist(n_train):
    from aepca.data import load_dataset

    data = load_dataset("mnist", n_train=n_train)
    return data.x_train, data.x_test


# aepca -----------------------------------------------------------------------------------
def run_aepca(x_train, x_test, epochs: int, seed: int) -> dict:
    """The product path: the estimator with the classic recipe, the test set as its X_val."""
    from aepca.estimator import Autoencoder

    estimator = Autoencoder(2, recipe="classic", epochs=epochs, random_state=seed)
    started = time.perf_counter()
    estimator.fit(x_train, X_val=x_test)
    fit_s = time.perf_counter() - started
    history = estimator.history_
    return {
        "fit_s": fit_s,
        "loop_s": history["seconds"][-1],
        "epoch_s": _per_epoch(history["seconds"]),
        "test_mse": history["val_mse"],
        "final_test_mse": -estimator.score(x_test),
    }


def _per_epoch(cumulative):
    return [b - a for a, b in zip([0.0, *cumulative], cumulative)]


def run_budget(duration: str) -> dict:
    """``aepca compare --code-dim 2 --time-budget DURATION`` on MNIST in a fresh process: the wall
    time from start to exit, the test MSEs, and the budget's record of what it chose."""
    arguments = ["compare", "--code-dim", "2", "--time-budget", duration, "--no-progress"]
    with tempfile.TemporaryDirectory(prefix="aepca-gpu-budget-") as folder:
        out = Path(folder) / "run"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aepca", *arguments, "--out", str(out)], check=True)
        wall_s = time.perf_counter() - started
        metrics = json.loads((out / "metrics.json").read_text())
    autoencoder = metrics["autoencoder"]
    return {"command": "aepca " + " ".join(arguments), "wall_s": wall_s, "test_mse": autoencoder["test_mse"],
            "pca_test_mse": metrics["pca"]["test_mse"], "epochs": autoencoder["epochs"],
            "settings": autoencoder["settings"], "budget": autoencoder["budget"]}


# A plain PyTorch loop ------------------------------------------------------------------------
def run_torch(x_train, x_test, epochs: int, seed: int) -> dict:
    """The same network and recipe as most PyTorch code would write it: nn.Sequential,
    torch.optim.Adam, a Python loop over shuffled batches of a GPU-resident tensor."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    layers = []
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        linear = nn.Linear(n_in, n_out)
        nn.init.xavier_uniform_(linear.weight)  # Keras' glorot_uniform
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        code, last = i == len(SIZES) // 2 - 1, i == len(SIZES) - 2
        if last:
            layers.append(nn.Sigmoid())
        elif not code:
            layers.append(nn.ELU())
    model = nn.Sequential(*layers).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, eps=EPSILON)
    x = torch.from_numpy(x_train).to(device)
    x_val = torch.from_numpy(x_test).to(device)

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    synchronize()
    started = time.perf_counter()
    cumulative, test_mse = [], []
    for _ in range(epochs):
        order = torch.randperm(len(x), device=device)
        model.train()
        for start in range(0, len(x), BATCH):
            xb = x[order[start : start + BATCH]]
            loss = nn.functional.mse_loss(model(xb), xb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            test_mse.append(float(nn.functional.mse_loss(model(x_val), x_val)))  # synchronises
        cumulative.append(time.perf_counter() - started)
    return {
        "loop_s": cumulative[-1],
        "epoch_s": _per_epoch(cumulative),
        "test_mse": test_mse,
        "final_test_mse": test_mse[-1],
    }


# Main ----------------------------------------------------------------------------------------
def set_tf32(with_torch: bool) -> str:
    import jax

    jax.config.update("jax_default_matmul_precision", "tensorfloat32")
    if not with_torch:
        return "TF32 (jax_default_matmul_precision='tensorfloat32')"
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    return "TF32 (jax_default_matmul_precision='tensorfloat32'; torch.backends.cuda.matmul.allow_tf32=True)"


def summarise(runs: list[dict], epochs: int) -> dict:
    """The first run is start-up (compilation, library warm-up); the others are timed."""
    timed = runs[1:] or runs
    later_epochs = [s for run in timed for s in run["epoch_s"][1:]]
    steady_epoch = statistics.median(later_epochs) if later_epochs else None
    return {
        "loop_s": statistics.median(run["loop_s"] for run in timed),
        "steady_epoch_s": steady_epoch,
        "steady_loop_s": None if steady_epoch is None else epochs * steady_epoch,
        # What the first run's first epoch took beyond a steady epoch: compilation for aepca,
        # CUDA and cuBLAS start-up for PyTorch.
        "start_up_s": None if steady_epoch is None else runs[0]["epoch_s"][0] - steady_epoch,
        "final_test_mse": statistics.median(run["final_test_mse"] for run in timed),
        "n_timed": len(timed),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (the first is start-up; default 3)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=None, help="first N training images (default all 60,000)")
    parser.add_argument("--aepca-only", action="store_true", help="skip PyTorch (a dry run where it is not installed)")
    parser.add_argument("--time-budget", default=None, metavar="DURATION",
                        help="first run `aepca compare --code-dim 2 --time-budget DURATION` on MNIST (e.g. 5m)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    # Before this process's JAX takes the card's memory.
    budget_run = run_budget(args.time_budget) if args.time_budget else None

    from aepca.compilation_cache import enable_compilation_cache

    # A fresh cache: the first aepca run compiles, the later ones load its programs, as a
    # user's second run would.
    cache = enable_compilation_cache(tempfile.mkdtemp(prefix="aepca-gpu-cache-"))
    import jax

    contenders = {"aepca": run_aepca} if args.aepca_only else {"aepca": run_aepca, "torch": run_torch}
    precision = set_tf32("torch" in contenders)
    x_train, x_test = load_mnist(args.n_train)
    runs = {name: [] for name in contenders}
    for repeat in range(args.repeats):
        for name, run in contenders.items():
            result = run(x_train, x_test, args.epochs, repeat)
            runs[name].append(result)
            print(f"{name} run {repeat + 1}: loop {result['loop_s']:.3f} s, epochs "
                  + ", ".join(f"{s:.3f}" for s in result["epoch_s"])
                  + f", final test MSE {result['final_test_mse']:.5f}", flush=True)
    summary = {name: summarise(group, args.epochs) for name, group in runs.items()}
    if "torch" in summary:
        summary["torch_over_aepca"] = {
            key: summary["torch"][key] / summary["aepca"][key]
            for key in ("loop_s", "steady_loop_s") if summary["torch"][key] and summary["aepca"][key]
        }
    results = {
        "command": "python3 benchmarks/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "card": _card(),
        "jax_devices": [str(d) for d in jax.devices()],
        "precision": precision,
        "compilation_cache": str(cache) if cache else None,
        "settings": {"repeats": args.repeats, "epochs": args.epochs, "n_train": len(x_train), "n_test": len(x_test),
                     "batch": BATCH, "learning_rate": LEARNING_RATE, "epsilon": EPSILON, "sizes": SIZES},
        "versions": versions(PACKAGES),
        "runs": runs,
        "summary": summary,
        "budget_run": budget_run,
    }
    for name, entry in summary.items():
        if name in contenders:
            steady, extra = (f"{entry[key]:.3f}" if entry[key] is not None else "-" for key in ("steady_epoch_s", "start_up_s"))
            print(f"{name}: loop {entry['loop_s']:.3f} s (median of {entry['n_timed']}), steady epoch {steady} s, "
                  f"first run's first epoch {extra} s longer")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out}")
    return results


def _card():
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    import jax

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    return getattr(gpus[0], "device_kind", str(gpus[0])) if gpus else None


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")  # this program's process: JAX unless set
    main()
