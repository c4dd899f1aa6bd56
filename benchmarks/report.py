"""Render ``benchmarks.json`` (written by ``benchmarks/run.py``) as ``benchmarks.md``.

    .venv/bin/python benchmarks/report.py docs/benchmarks.json

rewrites ``docs/benchmarks.md`` from the JSON alone (and ``benchmarks-gpu.json`` beside it,
from ``benchmarks/gpu.py``, when present), so no number in the markdown is ever typed by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BEFORE_AFTER_MD = "before_after.md"
GPU_JSON = "benchmarks-gpu.json"
TITLES = {
    "reference": "reference: Keras 3 `fit`, TensorFlow",
    "classic": "aepca `classic` (JAX)",
    "fast": "aepca `fast` (JAX)",
}


def fmt(value, digits=2, suffix=""):
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def with_ratio(entry, metric, digits=2, reached_of=None, baseline=False):
    text = fmt(entry.get(metric), digits)
    if reached_of is not None and entry.get(f"{metric}_reached", 0) < reached_of:
        text += f" ({entry.get(f'{metric}_reached', 0)}/{reached_of} runs)"
    ratio = entry.get(f"{metric}_ratio")
    if not baseline and ratio is not None and entry.get(metric) is not None:
        text += f" ({ratio:.2f}×)"
    return text


def describe_training_run(run: dict) -> str:
    """One line per run, for the progress output of run.py."""
    return (
        f"{len(run['seconds'])} epochs, first {fmt(run['first_epoch_s'])} s, "
        f"then {fmt(run['epoch_s'])} s/epoch, loop {fmt(run['train_loop_s'])} s, "
        f"first epoch done at {fmt(run['first_epoch_done_s'])} s since process start "
        f"({run['compilation_cache']} compilation cache), final test MSE {run['final_test_mse']:.5f}, "
        f"peak RSS {run['peak_rss_mib']:.0f} MiB"
    )


def table(header, rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def training_section(results) -> list[str]:
    settings = results["settings"]
    summary = results["summary"]["training"]
    keys = settings["training_order"]
    repeats = settings["repeats"]
    epochs = {key: max(len(r["seconds"]) for r in results["runs"]["training"] if r["key"] == key) for key in keys}
    thresholds = settings["thresholds"]
    n_train = settings["n_train"] or 60000
    n_test = settings["n_test"] or 10000

    def row(label, metric, digits=2):
        return [label, *(with_ratio(summary[key], metric, digits, baseline=key == keys[0]) for key in keys)]

    def threshold_row(name):
        cells = []
        for key in keys:
            entry = summary[key]
            text = with_ratio(entry, f"time_to_{name}_s", 2, repeats, baseline=key == keys[0])
            if entry.get(f"epochs_to_{name}") is not None:
                text += f", epoch {entry[f'epochs_to_{name}']:g}"
            cells.append(text)
        return [f"Test MSE first below {thresholds[name]} (s since the loop began)", *cells]

    lines = [
        f"## Training: MNIST ({n_train:,} train / {n_test:,} test), 784-512-128-2-128-512-784, batch 128",
        "",
        "Epochs: " + ", ".join(f"{TITLES[key]} {epochs[key]}" for key in keys) + " (each recipe as its users "
        "run it: the reference and `classic` are the copied 5-epoch recipe, `fast` stops at its own count).",
        "",
        f"Medians of {repeats} run(s) per contender, each in a fresh process, contenders alternating run by "
        "run. In parentheses: the median over repeats of the ratio to the reference run of the same "
        "repeat (below 1 = less time / memory / error than the reference).",
        "",
    ]
    lines += table(
        ["", *(TITLES[key] for key in keys)],
        [
            row("Process start → first epoch done, empty compilation cache (s)", "first_epoch_done_cold_s"),
            row("Process start → first epoch done, filled compilation cache (s)", "first_epoch_done_warm_s"),
            row("Process start → training called (imports, data, s)", "fit_start_s"),
            row("Seconds per epoch, median of the epochs after the first" if max(epochs.values()) > 1 else "Seconds per epoch (needs 2+ epochs)", "epoch_s"),
            row("First epoch, includes compilation (s)", "first_epoch_s"),
            row("Training loop, all epochs (s)", "train_loop_s"),
            row("Build + train, the whole `fit` (s)", "fit_wall_s"),
            threshold_row("pca2"),
            threshold_row("target"),
            row("Final test MSE", "final_test_mse", digits=5),
            row("Peak RSS of the process (MiB)", "peak_rss_mib", digits=0),
            row("Whole process, start to exit (s)", "process_wall_s"),
        ],
    )
    lines += [
        "",
        "How each number is taken:",
        "",
        "- Process start is the parent's `time.time()` just before it spawns the run (passed in "
        "`AEPCA_BENCH_T0`), so start-up includes interpreter start, imports and loading MNIST. "
        "aepca's runs use its public API only: `aepca.enable_compilation_cache()` first (as the "
        "`aepca` command does), `aepca.data.load_dataset`, then `aepca.Autoencoder(2, recipe=..., "
        "epochs=..., random_state=seed).fit(...)`; the reference imports Keras, then loads MNIST.",
        "- First epoch done (seconds since process start): for the reference, a Keras `on_epoch_end` "
        "callback at the end of its first epoch (validation pass included). aepca's estimator exposes "
        "no clock inside `fit`, so for aepca it is derived: the end of `fit` less the training time "
        "after the first epoch, `history_['seconds'][-1] - history_['seconds'][0]`. It therefore also "
        "holds what `fit` does after training (for `fast` on MNIST: comparing the network with PCA, "
        "and retraining from PCA should PCA win, whose history_ is then the one reported).",
        "- aepca keeps JAX's compiled programs on disk (`aepca.enable_compilation_cache`). Each recipe "
        "gets its own cache folder (`AEPCA_COMPILATION_CACHE`), empty when the benchmark starts, so its "
        "first run (seed 0) compiles everything (*empty compilation cache*) and its later runs load the "
        "programs (*filled*). Keras on TensorFlow has no such cache: all its runs count in both rows.",
        "- Epoch times are wall time from the start of the training loop to each epoch's end "
        "(Keras `on_train_begin` / `on_epoch_end`; aepca `history_['seconds']`), validation pass included. "
        "Times to a test MSE are at epoch-end resolution, not interpolated; "
        f"{thresholds['pca2']} is PCA(2)'s test MSE, {thresholds['target']} the level to reach.",
        "- Test MSE per epoch: the reference's `val_loss` (MSE on the test set, its validation data) and "
        "`classic`'s `history_['val_mse']` (the test set is its `X_val`). `fast` validates on its own split "
        "of the training set (5% on all of MNIST) and never sees the test set while training, so it has no test MSE per epoch and "
        "no time to a test MSE (—); only its final test MSE is reported.",
        "- Final test MSE: float64 mean over the test set of the trained model's reconstruction "
        "(the reference's `predict`; aepca's `-score(x_test)`; `fast` keeps its best weights on its "
        "validation split).",
        "- Peak RSS: the run's own `ru_maxrss` at exit. Threads: each library's default.",
        "- No progress bar for any contender (`verbose=0` / `verbose=False`).",
    ]
    return lines


def compare_section(results) -> list[str]:
    runs = results["runs"].get("compare")
    if not runs:
        return []
    summary = results["summary"]["compare"]
    lines = [
        "## The default command: `aepca compare`",
        "",
        f"`{runs[0]['command']} --out TMP` (MNIST, classic recipe, PCA and autoencoder, figures, report, "
        "saved model), each run a fresh process; peak RSS is that process's own `ru_maxrss` (`os.wait4`). "
        "The first run starts with an empty compilation cache, the later ones find the first run's programs.",
        "",
    ]
    lines += table(
        ["", "median", "every run"],
        [
            ["wall time, start to exit (s)", fmt(summary["wall_s"], 1), ", ".join(fmt(r["wall_s"], 1) for r in runs)],
            ["peak RSS (MiB)", fmt(summary["peak_rss_mib"], 0), ", ".join(fmt(r["peak_rss_mib"], 0) for r in runs)],
        ],
    )
    return lines


def imports_section(results) -> list[str]:
    marks = results["summary"].get("imports")
    if not marks:
        return []
    previous, rows = 0.0, []
    for name, at in marks.items():
        rows.append([name, fmt(at - previous), fmt(at)])
        previous = at
    n_runs = len(results["runs"].get("imports", []))
    lines = [
        "## Imports",
        "",
        "The imports a training run needs, group by group in the order aepca loads them, Keras on JAX "
        f"(each group timed after the ones above it in fresh processes; medians of {n_runs} run(s)):",
        "",
    ]
    return lines + table(["imports", "seconds", "done at (s since process start)"], rows)


def pca_section(results) -> list[str]:
    return ["## PCA", "", "Exact PCA against scikit-learn's default solver, its full SVD and `IncrementalPCA`, in "
            "memory and streamed: [pca.md](pca.md) (`benchmarks/pca.py`).", "",
            "## Image files", "", "Decoding once and JPEG's reduced-scale decoding, on a folder of photos: "
            "[images.md](images.md) (`benchmarks/images.py`)."]


def floor_section(results) -> list[str]:
    floor = results["summary"]["floor"]
    m, k, n = floor["gemm_shape"]
    quick = results["quick"]
    lines = [
        "## Arithmetic floor",
        "",
        f"numpy float32 GEMM {m}×{k} @ {k}×{n} (one layer's batch): {floor['gflops']:.1f} GFLOP/s "
        "(median over processes of each one's best of "
        f"{results['settings']['gemm']['samples']} timed samples). A training epoch needs at least "
        f"6 × parameters × {floor['n_train']:,} samples flops (2 forward, 4 backward per weight), so:",
        "",
    ]
    lines += table(
        ["", "parameters", "floor (s/epoch)", "measured s/epoch / floor"],
        [
            [TITLES[key], f"{c['n_params']:,}", fmt(c["epoch_floor_s"], 3), fmt(c["epoch_s_over_floor"], 1, "×")]
            for key, c in floor["contenders"].items()
        ],
    )
    if quick:
        lines += ["", "(One epoch only: the measured time is the first epoch, compilation included.)"]
    if floor.get("xla_gflops"):
        lines += ["", f"XLA, which runs aepca's and the plain-JAX epochs below, computes the same product at "
                  f"{floor['xla_gflops']:.1f} GFLOP/s (best of {results['settings']['gemm']['samples']} samples of "
                  "a compiled loop over distinct matrices, median over processes)."]
    lines += epoch_pairs_lines(results)
    return lines


def epoch_pairs_lines(results) -> list[str]:
    pairs = results["summary"].get("epoch_pairs")
    if not pairs:
        return []
    n_train = results["summary"]["floor"]["n_train"]
    skipped = n_train % 128
    return [
        "",
        "### aepca's epoch against the same network in plain JAX",
        "",
        f"The classic recipe's epoch through `aepca.training.train` (Keras' stateless API inside "
        f"compiled chunks of steps) and the same network written directly in JAX (dense layers, ELU, "
        f"sigmoid, MSE and Adam by hand, no Keras), from the same starting weights over the same batches. "
        f"`train` runs all its epochs in one call, so they cannot alternate: in each process aepca's epochs "
        f"run first, then plain JAX's, the first epoch of each (compilation) untimed; aepca's epoch times "
        f"are the differences of `history['seconds']`. Pairs are aepca's epoch k against plain JAX's "
        f"epoch k ({pairs['pairs']} pairs over {len(results['runs']['epoch_pairs'])} processes; the plain "
        f"version skips the last partial batch, {skipped} of {n_train:,} rows):",
        "",
        *table(
            ["", "s/epoch (median)"],
            [["aepca `classic`", fmt(pairs["aepca_epoch_s"])], ["plain JAX", fmt(pairs["plain_jax_epoch_s"])],
             ["aepca / plain JAX, median of the pairs' ratios",
              f"{pairs['ratio']:.3f} (aepca faster in {pairs['aepca_faster']} of {pairs['pairs']})"]],
        ),
        "",
        f"Their mean training losses over the last epoch differ by at most "
        f"{pairs['max_rel_diff_final_loss']:.1e} (relative; the plain version's mean leaves out the partial "
        "batch), a check that the two train the same network the same way.",
    ]


def runs_section(results) -> list[str]:
    lines = ["## Every run", ""]
    lines += table(
        ["#", "contender", "seed", "compilation cache", "first epoch done (s since start)", "first epoch (s)", "s/epoch",
         "loop (s)",
         "final test MSE", "peak RSS (MiB)"],
        [
            [i, r["key"], r["seed"], r.get("compilation_cache", "—"), fmt(r.get("first_epoch_done_s")), fmt(r["first_epoch_s"]),
             fmt(r["epoch_s"]),
             fmt(r["train_loop_s"]), fmt(r["final_test_mse"], 5), fmt(r["peak_rss_mib"], 0)]
            for i, r in enumerate(results["runs"]["training"], 1)
        ],
    )
    return lines


def machine_section(results) -> list[str]:
    machine = results["machine"]
    load = lambda values: "—" if values is None else ", ".join(f"{v:.2f}" for v in values)  # noqa: E731
    return [
        "## Machine",
        "",
        f"- CPU: {machine['cpu_model']}; {machine['logical_cpus']} logical CPUs, {machine['usable_cpus']} usable; "
        f"{fmt(machine['memory_gib'], 1)} GiB memory",
        f"- {machine['platform']}",
        "- " + ", ".join(f"{name} {version}" for name, version in machine["versions"].items()),
        f"- Load average (1, 5, 15 min) before: {load(machine['load_average_before'])}; "
        f"after: {load(machine['load_average_after'])}",
        f"- Source tree: `{machine['git']}`; the whole benchmark took {results['duration_s'] / 60:.1f} min",
    ]


def gpu_section(results, gpu=None) -> list[str]:
    gpus = results["machine"]["gpus"]
    devices = sorted({f"{r['key']}: {r['device']}" for r in results["runs"]["training"]})
    lines = ["## GPU", ""]
    if gpus:
        lines.append(f"GPU(s) detected for the runs above: {'; '.join(gpus)}. Devices the training runs used: {', '.join(devices)}.")
    else:
        lines.append("No GPU was available for the runs above (`nvidia-smi` found none); every number above is CPU-only.")
    lines.append("")
    if gpu is None:
        lines.append("`benchmarks/gpu.py` (aepca against a plain PyTorch loop on one card) has not been run on a GPU yet.")
        return lines
    aepca, torch = gpu["summary"]["aepca"], gpu["summary"].get("torch")
    settings = gpu["settings"]
    lines += [
        f"`{gpu['command']}` on **{gpu['card'] or 'CPU (no GPU found)'}**, {gpu['date']} ({', '.join(f'{k} {v}' for k, v in gpu['versions'].items())}): "
        f"the classic network, {settings['epochs']} epochs of {settings['n_train']:,} images in batches of {settings['batch']}, "
        f"the test set scored after each epoch; {gpu['precision']}. Medians of runs 2-{settings['repeats']} "
        "(the first run of each is start-up).",
        "",
    ]
    columns = [("aepca (compiled JAX)", aepca)] + ([("plain PyTorch loop", torch)] if torch else [])
    rows = [
        ("training loop, a later run (s)", "loop_s", 3),
        (f"{settings['epochs']} × the median later epoch (s)", "steady_loop_s", 3),
        ("first run's first epoch beyond a later one: compilation / CUDA start-up (s)", "start_up_s", 2),
        ("final test MSE", "final_test_mse", 5),
    ]
    lines += table(["", *(name for name, _ in columns)], [[label, *(fmt(entry[key], digits) for _, entry in columns)] for label, key, digits in rows])
    ratios = gpu["summary"].get("torch_over_aepca")
    if ratios:
        names = {"loop_s": "a later run's training loop", "steady_loop_s": f"{settings['epochs']} × the median later epoch"}
        lines += ["", "PyTorch's time over aepca's: " + ", ".join(f"{names[key]} {value:.1f}×" for key, value in ratios.items()) + "."]
    budget = gpu.get("budget_run")
    if budget:
        lines += ["", f"`{budget['command']}` on the same card: test MSE {budget['test_mse']:.5f} (PCA {budget['pca_test_mse']:.5f}) "
                      f"in {budget['wall_s']:.0f} s from start to exit; the plan: {budget['budget']['chose']}; "
                      f"{budget['epochs']} epochs run."]
    return lines


def render(results: dict, gpu: dict | None = None, before_after: str | None = None) -> str:
    """The markdown for ``results`` (benchmarks.json) and, when given, ``gpu``
    (benchmarks-gpu.json, written by ``benchmarks/gpu.py`` on a GPU machine) and
    ``before_after`` (before_after.md, written by ``benchmarks/before_after.py``)."""
    lines = [
        "# Benchmarks",
        "",
        f"Measured {results['date']} by the command below, then rendered from `benchmarks.json` by "
        "`benchmarks/report.py`; do not edit by hand. Rerun the command to update, or re-render with "
        "`.venv/bin/python benchmarks/report.py docs/benchmarks.json`.",
        "",
        "```",
        results["command"],
        "```",
        "",
    ]
    if results["quick"]:
        lines += [
            "> **Smoke run (`--quick`)**: a small subset, one epoch, one repeat. These numbers check that "
            "the benchmark works; they measure nothing.",
            "",
        ]
    for section in (training_section, compare_section, pca_section, floor_section, imports_section, runs_section,
                    machine_section):
        lines += section(results)
        lines.append("")
        if section is compare_section and before_after:
            lines += [before_after.rstrip(), ""]
    lines += gpu_section(results, gpu)
    lines.append("")
    return "\n".join(lines)


def load_gpu(folder: Path) -> dict | None:
    path = folder / GPU_JSON
    return json.loads(path.read_text()) if path.exists() else None


def main(json_path) -> Path:
    json_path = Path(json_path)
    markdown = json_path.with_suffix(".md")
    before_after = json_path.parent / BEFORE_AFTER_MD
    markdown.write_text(render(json.loads(json_path.read_text()), load_gpu(json_path.parent),
                               before_after.read_text() if before_after.exists() else None))
    return markdown


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: report.py PATH/benchmarks.json")
    print(f"wrote {main(sys.argv[1])}")
