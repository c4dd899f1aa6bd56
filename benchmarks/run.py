"""The one benchmark command: Keras reference vs aepca's recipes, the default command, the arithmetic floor.

    .venv/bin/python benchmarks/run.py [--repeats N] [--quick] [--out DIR]

Every run is its own fresh process (``benchmarks/worker.py``, which drives aepca through its
public API only), so imports, start-up and peak RSS belong to that run alone, and the
contenders alternate run by run (A B C A B C ...) so that slow phases of a shared machine hit
all of them alike. Ratios are taken within a repeat
and their median reported. Raw numbers and medians go to ``benchmarks.json``;
``benchmarks.md`` is rendered from that file by ``benchmarks/report.py`` and never edited.

``--quick`` is a smoke test: 6,000 training / 1,000 test images, 1 epoch, 1 repeat, output
to a temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import report

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "worker.py"

# Test MSE of PCA(2) on MNIST, and the level the classic recipe ends at after 5 epochs.
THRESHOLDS = {"pca2": 0.0557, "target": 0.0407}
TRAINING = ("reference", "classic", "fast")
BACKENDS = {"reference": "tensorflow", "classic": "jax", "fast": "jax"}
GEMM = {"shape": (128, 784, 512), "samples": 7, "sample_s": 0.3}
# Timed epochs per process of aepca.training.train against plain JAX (after one untimed epoch each).
EPOCH_PAIRS = 4
PACKAGES = ("keras", "jax", "jaxlib", "tensorflow-cpu", "tensorflow", "torch", "numpy", "scipy", "scikit-learn")


# JAX compilation caches, one per contender, all empty when the benchmark starts (set in main).
CACHE_ROOT: list[Path] = []


def cache_env(contender: str) -> dict:
    return {"AEPCA_COMPILATION_CACHE": str(CACHE_ROOT[0] / contender)} if CACHE_ROOT else {}


def spawn(task: str, spec: dict, backend: str = "jax") -> dict:
    with tempfile.TemporaryDirectory(prefix="aepca-bench-run-") as tmp:
        result_path = Path(tmp) / "result.json"
        env = dict(os.environ, KERAS_BACKEND=backend, **cache_env(task))
        started = time.time()
        env["AEPCA_BENCH_T0"] = repr(started)
        proc = subprocess.run(
            [sys.executable, str(WORKER), task, json.dumps(spec), str(result_path)],
            env=env, cwd=ROOT, capture_output=True, text=True,
        )
        wall_s = time.time() - started
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark run {task} {spec} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        result = json.loads(result_path.read_text())
    result.update(task=task, seed=spec.get("seed"), process_wall_s=wall_s)
    return result


def run_compare_command(quick: bool) -> dict:
    """The default ``aepca compare`` as a user runs it: its wall time and its own peak RSS."""
    command = [str(Path(sys.executable).with_name("aepca")), "compare", "--no-progress"]
    if quick:
        command += ["--epochs", "1"]
    with tempfile.TemporaryDirectory(prefix="aepca-bench-compare-") as tmp:
        log = Path(tmp) / "log.txt"
        with log.open("w") as sink:
            started = time.time()
            proc = subprocess.Popen(command + ["--out", str(Path(tmp) / "out")], cwd=ROOT, stdout=sink,
                                    stderr=subprocess.STDOUT, env=dict(os.environ, KERAS_BACKEND="jax", **cache_env("compare")))
            # wait4: this child's own rusage (ru_maxrss in KiB on Linux), not all children's maximum.
            _, status, usage = os.wait4(proc.pid, 0)
            wall_s = time.time() - started
        output = log.read_text().splitlines()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{shlex.join(command)} failed:\n" + "\n".join(output[-40:]))
    return {"command": shlex.join(["aepca", *command[1:]]), "wall_s": wall_s,
            "peak_rss_mib": usage.ru_maxrss / 1024, "output_tail": output[-6:]}


# Per-run derived numbers -------------------------------------------------------------
def epoch_seconds(cumulative: list[float]) -> list[float]:
    return [b - a for a, b in zip([0.0, *cumulative], cumulative)]


def time_to(run: dict, threshold: float):
    """Training-loop seconds at the end of the first epoch whose test MSE is below ``threshold``
    (None where it never was, or where the test MSE was not measured per epoch)."""
    for epoch, (value, seconds) in enumerate(zip(run["test_mse"], run["seconds"]), start=1):
        if value < threshold:
            return seconds, epoch
    return None, None


def derive(run: dict) -> dict:
    per_epoch = epoch_seconds(run["seconds"])
    # The reference (and any run off JAX) has no persistent cache: every one of its starts is
    # the same, so it counts in both start-up rows.
    cache = run["compilation_cache"]
    done = run["first_epoch_done_s"]
    derived = {
        "first_epoch_done_cold_s": done if cache in ("cold", "none") else None,
        "first_epoch_done_warm_s": done if cache in ("warm", "none") else None,
        "first_epoch_s": per_epoch[0] if per_epoch else None,
        "epoch_s": statistics.median(per_epoch[1:]) if len(per_epoch) > 1 else None,
        "train_loop_s": run["seconds"][-1] if per_epoch else None,
    }
    for name, threshold in THRESHOLDS.items():
        derived[f"time_to_{name}_s"], derived[f"epochs_to_{name}"] = time_to(run, threshold)
    run.update(epoch_seconds=per_epoch, **derived)
    return run


TRAINING_METRICS = (
    "first_epoch_done_cold_s", "first_epoch_done_warm_s", "fit_start_s", "epoch_s", "first_epoch_s", "train_loop_s",
    "fit_wall_s", "time_to_pca2_s", "time_to_target_s", "epochs_to_pca2", "epochs_to_target", "final_test_mse",
    "peak_rss_mib", "process_wall_s",
)


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs: list[dict], keys, metrics) -> dict:
    """Medians per contender, and per-repeat ratios to the first contender (median over repeats)."""
    groups = {key: [r for r in runs if r["key"] == key] for key in keys}
    baseline = groups[keys[0]]
    summary = {}
    for key, group in groups.items():
        entry = {"n_runs": len(group)}
        for metric in metrics:
            entry[metric] = median_or_none([r.get(metric) for r in group])
            entry[f"{metric}_reached"] = sum(r.get(metric) is not None for r in group)
            ratios = [
                r[metric] / b[metric]
                for r, b in zip(group, baseline)
                if r.get(metric) is not None and b.get(metric)
            ]
            entry[f"{metric}_ratio"] = statistics.median(ratios) if ratios else None
        summary[key] = entry
    return summary


# Machine facts -------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        return None


def gpus() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in listing.splitlines() if line.strip()]


def versions(packages=PACKAGES) -> dict:
    """Python's version and each installed package's among ``packages``."""
    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def git_revision() -> str | None:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=30
        ).stdout.strip() or None
    except OSError:
        return None


def machine() -> dict:
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory_gib(),
        "platform": platform.platform(),
        "gpus": gpus(),
        "versions": versions(),
        "git": git_revision(),
    }


def load_average():
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def command_line(argv) -> str:
    python = Path(sys.executable)
    try:
        python = python.relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join([str(python), "benchmarks/run.py", *argv])


# Main ----------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="runs per contender (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke test on a small subset, 1 epoch, written to a temp folder")
    parser.add_argument("--out", type=Path, default=None, help="folder for benchmarks.json/.md (default docs/)")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer; received {args.repeats}")
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="aepca-bench-")) if args.quick else ROOT / "docs"
    return args


def epochs_for(task: str, quick: bool) -> int | None:
    """The reference runs the copied recipe's 5 epochs; aepca's recipes run their own
    (None: the recipe's default), so each is timed as its users would run it."""
    if quick:
        return 1
    return 5 if task == "reference" else None


def main(argv=None) -> Path:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    data = {"n_train": 6000, "n_test": 1000} if args.quick else {"n_train": None, "n_test": None}
    load_before = load_average()
    started = time.time()
    cache_dir = tempfile.mkdtemp(prefix="aepca-bench-jax-cache-")
    CACHE_ROOT[:] = [Path(cache_dir)]

    def announce(i, total, label, text):
        print(f"[{i}/{total}] {label}: {text}", flush=True)

    training = []
    order = [(repeat, task) for repeat in range(args.repeats) for task in TRAINING]
    for i, (repeat, task) in enumerate(order, 1):
        run = derive(spawn(task, {**data, "epochs": epochs_for(task, args.quick), "seed": repeat}, BACKENDS[task]))
        run.update(key=task, repeat=repeat)
        training.append(run)
        announce(i, len(order), f"{task} seed={repeat}", report.describe_training_run(run))

    compare_runs = []
    for repeat in range(args.repeats):
        run = run_compare_command(args.quick)
        compare_runs.append(run)
        announce(repeat + 1, args.repeats, "aepca compare",
                 f"{run['wall_s']:.1f} s, peak RSS {run['peak_rss_mib']:.0f} MiB")

    imports = []
    for repeat in range(args.repeats):
        run = spawn("imports", {})
        run.update(repeat=repeat)
        imports.append(run)
        announce(repeat + 1, args.repeats, "imports", ", ".join(f"{name} {at:.2f} s" for name, at in run["marks"]))

    gemm = []
    for repeat in range(args.repeats):
        run = spawn("gemm", GEMM)
        run.update(repeat=repeat)
        gemm.append(run)
        announce(repeat + 1, args.repeats, "GEMM", f"numpy {run['gflops']:.1f}, XLA {run['xla_gflops']:.1f} GFLOP/s")

    epoch_pairs = []
    for repeat in range(args.repeats):
        run = spawn("epoch_pair", {**data, "epochs": 1 if args.quick else EPOCH_PAIRS, "seed": repeat})
        run.update(repeat=repeat)
        epoch_pairs.append(run)
        announce(repeat + 1, args.repeats, "classic epochs, aepca then plain JAX",
                 ", ".join(f"{a:.2f}/{p:.2f} s" for a, p in zip(run["seconds"]["aepca"], run["seconds"]["plain_jax"])))

    results = {
        "schema": 2,
        "command": command_line(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "duration_s": time.time() - started,
        "settings": {
            "repeats": args.repeats, **data, "thresholds": THRESHOLDS,
            "training_order": list(TRAINING), "backends": BACKENDS, "gemm": GEMM,
        },
        "machine": {**machine(), "load_average_before": load_before, "load_average_after": load_average()},
        "runs": {"training": training, "compare": compare_runs, "imports": imports,
                 "gemm": gemm, "epoch_pairs": epoch_pairs},
        "summary": {
            "training": summarise(training, TRAINING, TRAINING_METRICS),
            "compare": {"wall_s": median_or_none([r["wall_s"] for r in compare_runs]),
                        "peak_rss_mib": median_or_none([r["peak_rss_mib"] for r in compare_runs])},
            "imports": summarise_imports(imports),
            "floor": floor(gemm, training, data),
            "epoch_pairs": summarise_epoch_pairs(epoch_pairs),
        },
    }
    shutil.rmtree(cache_dir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "benchmarks.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    report.main(json_path)
    print(f"wrote {json_path} and {args.out / 'benchmarks.md'}")
    return args.out


def summarise_imports(imports: list[dict]) -> dict:
    """The median time (seconds since process start) at which each group of imports is done."""
    names = [name for name, _ in imports[0]["marks"]] if imports else []
    return {name: statistics.median(dict(run["marks"])[name] for run in imports) for name in names}


def floor(gemm: list[dict], training: list[dict], data: dict) -> dict:
    """6 flops per parameter per sample (2 forward, 4 backward) at the measured GEMM rate."""
    gflops = statistics.median(run["gflops"] for run in gemm)
    n_train = data["n_train"] or 60000
    per_contender = {}
    for key in TRAINING:
        runs = [r for r in training if r["key"] == key]
        n_params = runs[0]["n_params"]
        floor_s = 6 * n_params * n_train / (gflops * 1e9)
        epoch_s = median_or_none([r["epoch_s"] for r in runs]) or median_or_none([r["first_epoch_s"] for r in runs])
        per_contender[key] = {
            "n_params": n_params, "epoch_floor_s": floor_s,
            "epoch_s_over_floor": epoch_s / floor_s if epoch_s else None,
        }
    return {"gflops": gflops, "xla_gflops": median_or_none([run.get("xla_gflops") for run in gemm]),
            "gemm_shape": GEMM["shape"], "n_train": n_train, "contenders": per_contender}


def summarise_epoch_pairs(runs: list[dict]) -> dict:
    """Medians of both contenders' epochs and of the ratio within each pair (aepca's epoch k
    against plain JAX's epoch k of the same process: aepca's epochs first, then plain JAX's)."""
    aepca = [s for run in runs for s in run["seconds"]["aepca"]]
    plain = [s for run in runs for s in run["seconds"]["plain_jax"]]
    final_loss = [(run["loss"]["aepca"][-1], run["loss"]["plain_jax"][-1]) for run in runs]
    return {
        "aepca_epoch_s": median_or_none(aepca),
        "plain_jax_epoch_s": median_or_none(plain),
        "ratio": median_or_none([a / p for a, p in zip(aepca, plain)]),
        "pairs": len(aepca),
        "aepca_faster": sum(a < p for a, p in zip(aepca, plain)),
        "max_rel_diff_final_loss": max(abs(a - p) / p for a, p in final_loss),
    }


if __name__ == "__main__":
    main()
