"""Rows streamed from disk, and training on several processes: the numbers of one process, one device.

Data are small Parquet folders (a ``fixed_size_list<float32>[16]`` column ``emb``) written
once per module. Each command line runs once, in a module-scoped fixture, and its results
are shared by the tests; the subprocesses are ``python -m aepca`` with JAX (the multi-process
runtime's backend) and a compilation cache private to this module.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import BLOCKING_CHILD, float_tolerance, mse_tolerance, pca_rounding, terminate_when, xla_flags

from aepca.checkpoint import checkpoint_epoch
from aepca.cli import EXIT_INTERRUPTED, EXIT_USAGE, main
from aepca.data.sources import open_source
from aepca.pca import PCA

# One worker runs the module, so its command lines run once (pytest-xdist's loadgroup).
pytestmark = pytest.mark.xdist_group("streaming")

FEATURES = 16
# Rows read at a time: the unit of the order and of the processes' shares, whatever the files.
BLOCK_ROWS = 1000
# 6,000 rows in files of 2,000, 2,000 and 2,000 rows, row groups of 500: 6 blocks of 1,000.
EVEN_PARTS = (2000, 2000, 2000)
EVEN_ROW_GROUP = 500
EVEN_BLOCKS = 6
# Files of 6,000, 100 and 100 rows in one row group each: 7 blocks, six of 1,000 and one of 200,
# so the two lanes read 4 and 3 blocks, of 4,000 or 3,200 and 3,000 rows.
UNEQUAL_PARTS = (6000, 100, 100)
UNEQUAL_BLOCKS = [1000] * 6 + [200]
# What every training command line here shares: one small network, one epoch by default.
TRAINING = ["--recipe", "classic", "--hidden", "32", "--block-rows", str(BLOCK_ROWS), "--no-progress"]
RUN_TIMEOUT_S = 300
OUTPUT_FILES = {"metrics.json", "codes.png", "reconstructions.png", "loss.png", "report.html", "model"}


# Data --------------------------------------------------------------------------------------
def write_parts(folder: Path, sizes, row_group: int, seed: int) -> np.ndarray:
    """Parquet files ``part-K.parquet`` of ``sizes`` rows (rank 4 through tanh, plus noise),
    in row groups of ``row_group`` rows; returns every row, in file order."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((4, FEATURES))
    parts = []
    for k, n in enumerate(sizes):
        latent = rng.standard_normal((n, 4)) * np.array([3.0, 2.0, 1.0, 0.5])
        rows = (np.tanh(latent @ basis / 2) + 0.05 * rng.standard_normal((n, FEATURES))).astype(np.float32)
        emb = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), FEATURES)
        pq.write_table(pa.table({"emb": emb}), folder / f"part-{k}.parquet", row_group_size=row_group)
        parts.append(rows)
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def even_folder(tmp_path_factory):
    """(folder, all its rows): 6,000 rows x 16 features in 12 row groups of 500."""
    folder = tmp_path_factory.mktemp("even") / "parts"
    return folder, write_parts(folder, EVEN_PARTS, EVEN_ROW_GROUP, seed=0)


@pytest.fixture(scope="module")
def unequal_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unequal") / "parts"
    write_parts(folder, UNEQUAL_PARTS, max(UNEQUAL_PARTS), seed=1)
    return folder


# Command lines -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """The environment of ``python -m aepca``: this interpreter's path, JAX, one CPU device,
    and a compilation cache of this module's own (later runs reuse earlier runs' programs)."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(sys.path),
        KERAS_BACKEND="jax",
        XLA_FLAGS=xla_flags(),
        AEPCA_COMPILATION_CACHE=str(tmp_path_factory.mktemp("jax-cache")),
    )
    return env


def aepca(*args, env, timeout=RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aepca", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def run_compare(env, out: Path, *args) -> tuple[subprocess.CompletedProcess, dict]:
    """``aepca compare ARGS --out OUT`` that must succeed; returns the run and its metrics."""
    result = aepca("compare", *args, "--out", out, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def two_processes(even_folder, cli_env, tmp_path_factory):
    """``--processes 2``: two local workers of one CPU device each."""
    out = tmp_path_factory.mktemp("two-processes") / "run"
    result, metrics = run_compare(cli_env, out, even_folder[0], "--processes", 2, "--epochs", 1, *TRAINING)
    return result, metrics, out


@pytest.fixture(scope="module")
def two_devices(even_folder, cli_env, tmp_path_factory):
    """``--stream --devices 2``: one process, every batch split across two CPU devices."""
    out = tmp_path_factory.mktemp("two-devices") / "run"
    env = {**cli_env, "XLA_FLAGS": xla_flags(devices=2)}
    _, metrics = run_compare(env, out, even_folder[0], "--stream", "--devices", 2, "--epochs", 1, *TRAINING)
    return metrics, out


@pytest.fixture(scope="module")
def two_lanes(even_folder, cli_env, tmp_path_factory):
    """``--stream --lanes 2``: one process, one device, the batches of two read streams."""
    out = tmp_path_factory.mktemp("two-lanes") / "run"
    _, metrics = run_compare(cli_env, out, even_folder[0], "--stream", "--lanes", 2, "--epochs", 1, *TRAINING)
    return metrics, out


def model_weights(out: Path) -> list[np.ndarray]:
    """The saved model's weight arrays, read from its .keras file (loading the model would import TensorFlow)."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(out / "model" / "model.keras") as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as weights:
        found = []
        weights.visititems(lambda name, item: found.append((name, np.array(item))) if isinstance(item, h5py.Dataset) else None)
    return [array for _, array in sorted(found, key=lambda pair: pair[0])]


# 1. Streamed PCA is the PCA of all rows -----------------------------------------------------
def test_pca_of_a_streamed_folder_equals_pca_of_all_its_rows(even_folder):
    folder, rows = even_folder
    source = open_source(folder, block_rows=BLOCK_ROWS)
    assert (source.n_rows, source.n_features, source.n_blocks) == (len(rows), FEATURES, EVEN_BLOCKS)
    streamed, in_memory = PCA(n_components=4).fit(source), PCA(n_components=4).fit(rows)
    # The four directions of the data are well separated (variances ~4.2, 2.0, 0.79, 0.37, then 0.11),
    # so each is unique up to sign.
    signs = np.sign(np.sum(streamed.components_ * in_memory.components_, axis=1))
    rounding = pca_rounding(rows, 4)  # what fits adding in other orders may differ by
    np.testing.assert_allclose(streamed.components_ * signs[:, None], in_memory.components_, rtol=0, atol=rounding.direction)
    np.testing.assert_allclose(streamed.explained_variance_, in_memory.explained_variance_, rtol=0, atol=rounding.variance)
    np.testing.assert_allclose(streamed.all_explained_variance_, in_memory.all_explained_variance_,
                               rtol=0, atol=rounding.variance)
    np.testing.assert_allclose(streamed.mean_, in_memory.mean_, rtol=0, atol=rounding.mean)
    assert streamed.n_samples_seen_ == len(rows)


def test_a_glob_of_the_files_reads_the_rows_of_the_folder(even_folder):
    folder, rows = even_folder
    by_glob = open_source(str(folder / "part-*.parquet"))
    assert by_glob.n_blocks == open_source(folder).n_blocks
    np.testing.assert_array_equal(by_glob.to_array(), rows)


@pytest.fixture(scope="module")
def streamed_comparison(even_folder):
    """compare on the folder in this process (one epoch, errors in the data's own units),
    and the kept and held-out rows of its split, read into memory."""
    from aepca.experiments.compare import compare

    source = open_source(even_folder[0], block_rows=BLOCK_ROWS)
    comparison = compare(source, code_dim=2, epochs=1, seed=0, recipe="classic", hidden=(16,), scale="none")
    kept, held_out = (view.to_array() for view in source.split(0.2, 0, "test"))
    return comparison.metrics, kept, held_out


def test_streamed_pca_test_mse_is_in_memory_pca_on_the_kept_rows_scored_on_the_held_out(streamed_comparison):
    metrics, kept, held_out = streamed_comparison
    assert (metrics["n_train"], metrics["n_test"]) == (len(kept), len(held_out))
    assert 0.15 < len(held_out) / (len(kept) + len(held_out)) < 0.25
    in_memory = PCA(n_components=2).fit(kept)
    # Error curves of fits that add in other orders: their own rounding and their directions'.
    direction = pca_rounding(kept, 10, in_memory.all_explained_variance_).direction
    assert metrics["pca"]["test_mse"] == pytest.approx(
        in_memory.reconstruction_mse(held_out), rel=0, abs=mse_tolerance(held_out, in_memory.mean_, k=2, direction=direction))
    curve = in_memory.mse_by_components(held_out, 10)
    np.testing.assert_allclose(metrics["pca"]["test_mse_by_components"][:11], curve, rtol=0,
                               atol=mse_tolerance(held_out, in_memory.mean_, k=10, direction=direction))


def test_streamed_pca_train_mse_is_in_memory_pca_on_the_kept_rows(streamed_comparison):
    metrics, kept, _ = streamed_comparison
    in_memory = PCA(n_components=2).fit(kept)
    direction = pca_rounding(kept, 2, in_memory.all_explained_variance_).direction
    assert metrics["pca"]["train_mse"] == pytest.approx(
        in_memory.reconstruction_mse(kept), rel=0, abs=mse_tolerance(kept, in_memory.mean_, k=2, direction=direction))


# 2. Two processes take the steps of one process -----------------------------------------------
def training_rtol(metrics: dict) -> float:
    """Runs of the same steps that round differently (devices, processes, a resume): one float32
    rounding per optimizer step, relative to the losses, errors and weights."""
    autoencoder = metrics["autoencoder"]
    steps = autoencoder["epochs"] * math.ceil(metrics["n_train"] / autoencoder["settings"]["batch_size"])
    return float_tolerance(np.float32, 1.0, steps)


def assert_same_training(got: dict, expected: dict) -> None:
    rtol = training_rtol(expected)
    for key in ("n_train", "n_test"):
        assert got[key] == expected[key]
    got_ae, expected_ae = got["autoencoder"], expected["autoencoder"]
    for key in ("loss", "val_loss"):
        assert len(got_ae["history"][key]) == len(expected_ae["history"][key]) == 1
        np.testing.assert_allclose(got_ae["history"][key], expected_ae["history"][key], rtol=rtol, atol=0)
    assert got_ae["test_mse"] == pytest.approx(expected_ae["test_mse"], rel=rtol)


def test_two_processes_train_as_one_process_on_two_devices(two_processes, two_devices):
    _, metrics, _ = two_processes
    assert metrics["reading"] == {"blocks": EVEN_BLOCKS, "block_rows": BLOCK_ROWS, "in_memory": False, "processes": 2}
    assert two_devices[0]["reading"] == {**metrics["reading"], "processes": 1}
    assert_same_training(metrics, two_devices[0])


def test_two_processes_share_a_bundled_data_set_as_one_process_reading_two_lanes(cli_env, tmp_path):
    """A bundled data set, held in memory by every process, is shared out as files are."""
    settings = ["--dataset", "digits", "--epochs", 1, *TRAINING]
    result, metrics = run_compare(cli_env, tmp_path / "two", "--processes", 2, *settings)
    assert "digits: 1437 train / 360 test, 64 features; code size 2; recipe classic; 2 processes" in result.stdout
    _, one = run_compare(cli_env, tmp_path / "one", "--lanes", 2, *settings)
    assert (metrics["reading"]["processes"], one["reading"]["processes"]) == (2, 1)
    assert_same_training(metrics, one)


@pytest.mark.slow
def test_two_processes_train_as_one_device_reading_two_lanes(two_processes, two_lanes):
    assert_same_training(two_processes[1], two_lanes[0])


@pytest.mark.slow
def test_two_processes_fit_the_pca_of_one(two_processes, two_lanes, even_folder):
    _, metrics, _ = two_processes
    source = open_source(even_folder[0])
    kept, held_out = (view.to_array() for view in source.split(0.2, 0, "test"))
    assert metrics["scale"] == two_lanes[0]["scale"] == "none"  # auto: the columns share one unit
    pca = PCA(2).fit(kept)
    direction = pca_rounding(kept, 2, pca.all_explained_variance_).direction
    assert metrics["pca"]["test_mse"] == pytest.approx(
        pca.reconstruction_mse(held_out), rel=0, abs=mse_tolerance(held_out, pca.mean_, k=2, direction=direction))
    assert metrics["pca"]["train_mse"] == pytest.approx(
        two_lanes[0]["pca"]["train_mse"], rel=0, abs=mse_tolerance(kept, pca.mean_, k=2, direction=direction))


@pytest.mark.parametrize("other", ["two_devices", pytest.param("two_lanes", marks=pytest.mark.slow)])
def test_the_model_two_processes_save_has_the_weights_of_one_process(two_processes, other, request):
    _, other_out = request.getfixturevalue(other)
    got, expected = model_weights(two_processes[2]), model_weights(other_out)
    assert [w.shape for w in got] == [w.shape for w in expected]
    rtol = training_rtol(two_processes[1])
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * np.abs(b).max())


# 3. The launcher's output ----------------------------------------------------------------------
def test_two_processes_print_no_gloo_chatter(two_processes):
    result, _, _ = two_processes
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("[Gloo]")]
    assert lines[0].startswith(f"parts: {sum(EVEN_PARTS)} rows in {EVEN_BLOCKS} blocks (streamed)") and lines[0].endswith("2 processes")


def test_two_processes_write_the_result_folder_once(two_processes):
    result, _, out = two_processes
    assert {entry.name for entry in out.iterdir()} == OUTPUT_FILES  # no checkpoint, no staging folder
    assert not list(out.parent.glob(".aepca-staging-*")) and not list(out.glob(".aepca-staging-*"))
    assert sum(line.startswith("wrote ") for line in result.stdout.splitlines()) == 1
    assert sum(line.startswith("PCA (k=2)") for line in result.stdout.splitlines()) == 1


# 4. Unequal lanes --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def unequal_runs(unequal_folder, cli_env, tmp_path_factory):
    """The metrics of ``--processes 2`` on the blocks of 6,000, 100 and 100 rows."""
    _, two_processes = run_compare(cli_env, tmp_path_factory.mktemp("unequal-runs") / "processes", unequal_folder,
                                   "--processes", 2, "--epochs", 1, *TRAINING)
    return two_processes


@pytest.mark.slow
def test_two_processes_finish_on_unequal_lanes(unequal_folder, unequal_runs):
    assert open_source(unequal_folder, block_rows=BLOCK_ROWS).block_sizes.tolist() == UNEQUAL_BLOCKS
    metrics = unequal_runs  # run_compare checked the exit status: 0
    assert (metrics["reading"]["blocks"], metrics["reading"]["processes"]) == (len(UNEQUAL_BLOCKS), 2)
    assert metrics["n_train"] + metrics["n_test"] == sum(UNEQUAL_PARTS)
    history = metrics["autoencoder"]["history"]
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"] + history["val_loss"]).all()
    assert np.isfinite(metrics["autoencoder"]["test_mse"])


@pytest.mark.slow
def test_two_processes_on_unequal_shards_train_as_one_device_reading_two_lanes(unequal_runs, unequal_folder, cli_env, tmp_path):
    _, two_lanes = run_compare(cli_env, tmp_path / "lanes", unequal_folder, "--stream", "--lanes", 2, "--epochs", 1, *TRAINING)
    assert_same_training(unequal_runs, two_lanes)


@pytest.mark.slow
def test_two_processes_finish_on_data_of_one_block(cli_env, tmp_path):
    """One process reads every block, the other none: its share of the test rows is empty."""
    folder = tmp_path / "one"
    write_parts(folder, (200,), 200, seed=2)  # 40 test rows: kept for the bootstrap
    _, metrics = run_compare(cli_env, tmp_path / "run", folder, "--processes", 2, "--epochs", 1, *TRAINING)
    assert (metrics["reading"]["blocks"], metrics["reading"]["processes"]) == (1, 2)
    assert np.isfinite(metrics["autoencoder"]["test_mse"])


# 5. A worker killed ends the run -----------------------------------------------------------------
def child_pids(pid: int) -> list[int]:
    """The children of ``pid`` (from /proc, else pgrep)."""
    tasks = Path(f"/proc/{pid}/task")
    if tasks.is_dir():
        children = []
        for task in tasks.iterdir():
            try:
                children += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
        return children
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(child) for child in found.stdout.split()]


def process_id_of(pid: int) -> int | None:
    """The ``--process-id`` in ``pid``'s command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return None
    return int(argv[argv.index("--process-id") + 1]) if "--process-id" in argv else None


def test_killing_a_worker_ends_the_run_with_one_error_line(even_folder, cli_env, tmp_path):
    out = tmp_path / "run"
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    # A worker that fails on its lost peer writes its traceback to a file of TMPDIR: this test's.
    (temporary := tmp_path / "tmp").mkdir()
    with open(stdout, "w") as out_file, open(stderr, "w") as err_file:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "aepca", "compare", str(even_folder[0]), "--processes", "2", "--epochs", "50",
             *TRAINING, "--out", str(out)],
            stdout=out_file, stderr=err_file, env={**cli_env, "TMPDIR": str(temporary)},
        )
    workers = {}
    try:
        # Both workers alive and training: the first epoch's checkpoint is written.
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not (len(workers) == 2 and list(out.glob("checkpoint/*/checkpoint.npz"))):
            assert launcher.poll() is None, f"the run ended first: {stderr.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint of epoch 1 within the time allowed"
            workers = {process_id_of(pid): pid for pid in child_pids(launcher.pid)}
            workers.pop(None, None)
            time.sleep(0.1)
        assert sorted(workers) == [0, 1]
        os.kill(workers[1], signal.SIGKILL)
        killed = time.monotonic()
        status = launcher.wait(timeout=60)
        assert time.monotonic() - killed < 60
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        for pid in workers.values():  # none should be left; if one is, it is ours to end
            if process_id_of(pid) is not None:
                os.kill(pid, signal.SIGKILL)
    assert status != 0
    err = stderr.read_text()
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("aepca: error: worker 1 of 2 was killed by SIGKILL"), err[-3000:]
    assert [line for line in lines if line.startswith("aepca")] == lines[-1:], err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    # The other worker was stopped with the run, not left behind.
    assert process_id_of(workers[0]) is None
    assert not (out / "metrics.json").exists()


# 6. Interrupted and resumed ------------------------------------------------------------------------
# After writing epoch 1's checkpoint the child writes the marker file and sleeps until signalled
# (the test cannot lose a race to a fast machine), then runs the aepca command itself
# (aepca.cli.console, what ``python -m aepca`` runs), so its own SIGTERM handling is the one tested.
RESUME_EPOCHS = 3


@pytest.mark.slow
def test_an_interrupted_streamed_run_resumes_to_the_uninterrupted_result(even_folder, cli_env, tmp_path):
    folder = even_folder[0]
    args = ["compare", str(folder), "--stream", "--epochs", str(RESUME_EPOCHS), *TRAINING]
    _, full = run_compare(cli_env, tmp_path / "full", *args[1:])

    out, marker = tmp_path / "interrupted", tmp_path / "blocked"
    process = subprocess.Popen([sys.executable, "-c", BLOCKING_CHILD, str(marker), *args, "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env)
    stderr = terminate_when(process, marker.exists, "blocking after epoch 1", RUN_TIMEOUT_S)
    assert list(out.glob("checkpoint/*/checkpoint.npz"))
    assert process.returncode == EXIT_INTERRUPTED, stderr[-3000:]
    assert stderr.splitlines() == [
        f"aepca: interrupted; checkpoint kept in {out / 'checkpoint'}. Continue with: aepca compare --resume {out}"
    ]
    assert checkpoint_epoch(out / "checkpoint" / "random") == 1
    assert not (out / "metrics.json").exists()

    resumed = aepca("compare", "--resume", out, "--no-progress", env=cli_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (out / "checkpoint").exists()
    again = json.loads((out / "metrics.json").read_text())
    for key in ("loss", "val_loss"):
        assert len(again["autoencoder"]["history"][key]) == RESUME_EPOCHS
        np.testing.assert_allclose(again["autoencoder"]["history"][key], full["autoencoder"]["history"][key],
                                   rtol=training_rtol(full), atol=0)
    assert again["autoencoder"]["test_mse"] == pytest.approx(full["autoencoder"]["test_mse"], rel=training_rtol(full))
    source = open_source(folder)
    kept, held_out = (view.to_array() for view in source.split(0.2, 0, "test"))
    pca = PCA(2).fit(kept)
    direction = pca_rounding(kept, 2, pca.all_explained_variance_).direction
    assert again["pca"]["test_mse"] == pytest.approx(
        full["pca"]["test_mse"], rel=0, abs=mse_tolerance(held_out, pca.mean_, k=2, direction=direction))


# 7. Bad input: exit status 2 and one line -----------------------------------------------------------
@pytest.fixture(scope="module")
def folder_with_csv(even_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("with-csv") / "parts"
    folder.mkdir()
    (folder / "part-0.parquet").write_bytes((even_folder[0] / "part-0.parquet").read_bytes())
    (folder / "extra.csv").write_text("a,b\n1,2\n")
    return folder


@pytest.mark.parametrize(("case", "expected"), [
    ("stream without PATH", "--stream reads your own files (PATH) a block at a time; give PATH"),
    ("coordinator without --num-processes", "--coordinator, --num-processes and --process-id go together"),
    ("a folder holding a .csv", "parts mixes .csv and .parquet files (e.g. 'extra.csv', 'part-0.parquet')"),
])
def test_bad_streaming_input_exits_2_with_one_line(case, expected, even_folder, folder_with_csv, tmp_path, capsys):
    # In this process: a fresh one's single line is test_cli's (test_errors_in_a_subprocess_have_no_traceback).
    out = tmp_path / "run"
    args = {
        "stream without PATH": ["--stream"],
        "coordinator without --num-processes": [even_folder[0], "--coordinator", "127.0.0.1:1"],
        "a folder holding a .csv": [folder_with_csv, "--epochs", "1"],
    }[case]
    status = main(["compare", *map(str, args), "--out", str(out), "--no-progress"])
    printed, err = capsys.readouterr()
    assert status == EXIT_USAGE, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aepca: error: "), err[-3000:]
    assert expected in lines[0]
    assert printed == ""
    assert not out.exists()


@pytest.mark.slow
def test_an_interrupted_run_of_two_processes_resumes_to_the_uninterrupted_result(even_folder, cli_env, tmp_path):
    args = ["compare", str(even_folder[0]), "--processes", "2", "--epochs", "30", *TRAINING]
    _, full = run_compare(cli_env, tmp_path / "full", *args[1:])
    out = tmp_path / "interrupted"
    launcher = subprocess.Popen([sys.executable, "-m", "aepca", *args, "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env)
    stderr = terminate_when(launcher, lambda: list(out.glob("checkpoint/*/checkpoint.npz")), "checkpoint", RUN_TIMEOUT_S)
    assert launcher.returncode == EXIT_INTERRUPTED, stderr[-3000:]
    assert [line for line in stderr.splitlines() if line.startswith("aepca")] == [
        f"aepca: interrupted; checkpoint kept in {out / 'checkpoint'}. Continue with: aepca compare --resume {out}"
    ]
    # Resumed as it was run: two processes, the same lanes.
    resumed = aepca("compare", "--resume", out, "--no-progress", env=cli_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = json.loads((out / "metrics.json").read_text())
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(again["autoencoder"]["history"][key], full["autoencoder"]["history"][key],
                                   rtol=training_rtol(full), atol=0)
    assert again["autoencoder"]["test_mse"] == pytest.approx(full["autoencoder"]["test_mse"], rel=training_rtol(full))
    assert "--coordinator" not in again["run"]["command"]
