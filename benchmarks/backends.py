"""aepca's classic recipe on each Keras backend, alternating fresh processes.

JAX trains through aepca's compiled chunks; TensorFlow and PyTorch through Keras' own
train step, one train_on_batch call a batch (aepca.training.fit_runner). Each run is the benchmark worker's
``classic`` task (``benchmarks/worker.py``) with ``KERAS_BACKEND`` set, on all of MNIST.

    .venv/bin/python benchmarks/backends.py [--repeats 3] [--epochs 2] [--out docs]

writes ``backends.json`` and ``backends.md`` into ``--out``. Seconds per epoch are the
median of the epochs after each run's first (which includes compilation); ratios are to
the JAX run of the same repeat.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

from report import fmt, machine_section, table
from run import ROOT, derive, load_average, machine, spawn, summarise

BACKENDS = ("jax", "tensorflow", "torch")
METRICS = ("epoch_s", "first_epoch_s", "final_test_mse", "peak_rss_mib", "process_wall_s")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per backend (default 3)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run, at least 2 (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for backends.json/.md (default docs/)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.epochs < 2:
        parser.error(f"--repeats must be at least 1 and --epochs at least 2; received {args.repeats} and {args.epochs}")
    return args


def render(results: dict) -> str:
    summary, settings = results["summary"], results["settings"]
    rows = [
        ("seconds per epoch (after the first)", lambda e: f"{fmt(e['epoch_s'])} ({e['epoch_s_ratio']:.2f}x)"),
        ("first epoch, includes compilation (s)", lambda e: fmt(e["first_epoch_s"])),
        (f"test MSE after {settings['epochs']} epochs", lambda e: fmt(e["final_test_mse"], 5)),
        ("peak RSS of the process (MiB)", lambda e: fmt(e["peak_rss_mib"], 0)),
        ("whole process, start to exit (s)", lambda e: fmt(e["process_wall_s"], 1)),
    ]
    lines = [
        "# aepca on each Keras backend",
        "",
        f"Measured {results['date']} by the command below; do not edit by hand.",
        "",
        "```",
        results["command"],
        "```",
        "",
        f"The classic recipe (784-512-128-2-128-512-784, batch 128, Adam) on all of MNIST, {settings['epochs']} epochs "
        f"per run, {settings['repeats']} run(s) per backend in fresh processes, backends alternating run by run; medians. "
        "JAX trains through aepca's compiled chunks, TensorFlow and PyTorch through Keras' train step (`train_on_batch`). "
        "In parentheses: the median over repeats of the ratio to the JAX run of the same repeat.",
        "",
    ]
    lines += table(["", *BACKENDS], [[label, *(cell(summary[b]) for b in BACKENDS)] for label, cell in rows])
    lines += ["", "Every run:", ""]
    lines += table(
        ["backend", "seed", "epoch seconds", "test MSE per epoch"],
        [[r["key"], r["seed"], ", ".join(fmt(s) for s in r["epoch_seconds"]), ", ".join(fmt(v, 5) for v in r["test_mse"])]
         for r in results["runs"]],
    )
    lines += ["", *machine_section(results)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> Path:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.time()
    load_before = load_average()
    runs = []
    for repeat in range(args.repeats):
        for backend in BACKENDS:
            spec = {"n_train": None, "n_test": None, "epochs": args.epochs, "seed": repeat}
            run = derive(spawn("classic", spec, backend))
            run.update(key=backend, repeat=repeat)
            runs.append(run)
            print(f"{backend} seed={repeat}: epochs {', '.join(f'{s:.2f}' for s in run['epoch_seconds'])} s, "
                  f"test MSE {run['final_test_mse']:.5f}", flush=True)
    results = {
        "command": shlex.join([".venv/bin/python", "benchmarks/backends.py", *argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": time.time() - started,
        "settings": {"repeats": args.repeats, "epochs": args.epochs, "backends": list(BACKENDS)},
        "machine": {**machine(), "load_average_before": load_before, "load_average_after": load_average()},
        "runs": runs,
        "summary": summarise(runs, BACKENDS, METRICS),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backends.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "backends.md").write_text(render(results))
    print(f"wrote {args.out / 'backends.json'} and {args.out / 'backends.md'}")
    return args.out


if __name__ == "__main__":
    main()
