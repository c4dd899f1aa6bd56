"""An interrupted run, resumed, ends exactly where an uninterrupted one does.

Interruptions are raised from the per-epoch checkpoint callback, after a known
epoch, so no test races the training: in process for the estimator and the
command line, and in a subprocess that blocks after epoch 1 until the test
sends it SIGTERM (the signal path of ``aepca.cli.main``). A checkpoint is never lost:
a resume with other data is refused naming what differs, and the checkpoint stays.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import BLOCKING_CHILD, float_tolerance, optimizer_steps, terminate_when

from aepca import Autoencoder
from aepca.checkpoint import CHECKPOINT_FILE, Checkpointer, checkpoint_epoch, describe_differences
from aepca.cli import EXIT_INTERRUPTED, EXIT_USAGE, main
from aepca.training import TrainState

EPOCHS = 4
STOP_AFTER = 2  # the interrupted runs stop right after this epoch's checkpoint


@pytest.fixture
def stop_after(monkeypatch):
    """``stop_after(n)``: from now on the checkpoint callback writes its checkpoint,
    records the epoch, then raises KeyboardInterrupt after epoch ``n`` (never for None).
    Returns the list of epochs recorded."""
    original = Checkpointer.__call__

    def install(stop_epoch):
        epochs = []

        def call(self, epoch, history, snapshot):
            original(self, epoch, history, snapshot)
            epochs.append(epoch)
            if epoch == stop_epoch:
                raise KeyboardInterrupt

        monkeypatch.setattr(Checkpointer, "__call__", call)
        return epochs

    return install


# The estimator ---------------------------------------------------------------------------
def data(seed=0):
    rng = np.random.default_rng(seed)
    x = np.tanh(rng.standard_normal((160, 2)) @ rng.standard_normal((2, 6)))
    return (x + 0.05 * rng.standard_normal(x.shape)).astype(np.float32)


def estimator(**params):
    return Autoencoder(**{"n_components": 2, "recipe": "classic", "hidden": (8,), "epochs": EPOCHS, "batch_size": 32,
                          "random_state": 0, **params})


def test_interrupted_fit_resumes_to_the_uninterrupted_weights(tmp_path, stop_after):
    X = data()
    reference = estimator().fit(X)
    folder = tmp_path / "checkpoint"

    stop_after(STOP_AFTER)
    with pytest.raises(KeyboardInterrupt):
        estimator(checkpoint_dir=folder).fit(X)
    # One folder per network trained; the classic recipe trains one, from a random start.
    assert checkpoint_epoch(folder / "random") == STOP_AFTER

    epochs_run = stop_after(None)
    resumed = estimator(checkpoint_dir=folder).fit(X)
    assert epochs_run == list(range(STOP_AFTER + 1, EPOCHS + 1))  # restarted after the checkpoint's epoch
    assert len(resumed.history_["loss"]) == EPOCHS
    # Same backend, seed, batches and optimizer state: the same compiled steps, the same numbers, up to
    # one float32 rounding per step should a step round otherwise (relative to the values' largest).
    rtol = float_tolerance(np.float32, 1.0, optimizer_steps(reference, len(X)))
    np.testing.assert_allclose(resumed.history_["loss"], reference.history_["loss"], rtol=rtol)
    for got, expected in zip(resumed.model_.get_weights(), reference.model_.get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=rtol * np.abs(expected).max())
    codes = reference.transform(X)
    np.testing.assert_allclose(resumed.transform(X), codes, rtol=0, atol=rtol * max(1.0, np.abs(codes).max()))


def test_epochs_are_written_as_their_writing_time_allows_and_the_last_when_training_ends(monkeypatch, tmp_path):
    import aepca.checkpoint

    clock, written = [0.0], []

    def save(folder, state, fingerprint):
        written.append(state.epoch)
        clock[0] += 1.0  # a write takes 1 s: the next is written 20 s after it at the earliest

    monkeypatch.setattr(aepca.checkpoint, "monotonic", lambda: clock[0])
    monkeypatch.setattr(aepca.checkpoint, "save_checkpoint", save)
    checkpointer = Checkpointer(tmp_path, {})
    for epoch in range(1, 26):
        checkpointer(epoch, {}, lambda e=epoch: TrainState([], [], [], e, 1.0))
        clock[0] += 2.0  # an epoch takes 2 s
    checkpointer.close()
    checkpointer.close()  # nothing left to write
    assert written == [1, 11, 21, 25]


def test_an_interrupted_fit_writes_its_last_finished_epoch_however_recent_the_last_write(tmp_path, stop_after,
                                                                                         monkeypatch):
    import aepca.checkpoint

    monkeypatch.setattr(aepca.checkpoint, "WRITE_INTERVAL", 1e9)  # as training goes, the first epoch alone
    stop_after(3)
    with pytest.raises(KeyboardInterrupt):
        estimator(checkpoint_dir=tmp_path).fit(data())
    assert checkpoint_epoch(tmp_path / "random") == 3


def test_a_checkpoint_of_other_settings_or_data_is_refused(tmp_path):
    X = data()
    folder = tmp_path / "checkpoint"
    estimator(epochs=1, checkpoint_dir=folder).fit(X)
    assert checkpoint_epoch(folder / "random") == 1
    for other, X_other in ((estimator(epochs=1, random_state=1, checkpoint_dir=folder), X),
                           (estimator(epochs=1, checkpoint_dir=folder), X + 1)):
        with pytest.raises(ValueError, match="written by a run with other settings or data"):
            other.fit(X_other)
    assert checkpoint_epoch(folder / "random") == 1  # left as it was

    (folder / "random" / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is unreadable.*delete the folder to start over"):
        estimator(epochs=1, checkpoint_dir=folder).fit(X)


# The command line ------------------------------------------------------------------------
def write_csv(path, n_rows=150, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, 2)) @ rng.normal(size=(2, n_features))
    x += 0.1 * rng.normal(size=x.shape)
    header = ",".join([f"f{i}" for i in range(n_features)] + ["y"])
    rows = [",".join(f"{v:.6f}" for v in row) + f",{int(row[0] > 0)}" for row in x]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def compare_args(csv, out):
    return ["compare", str(csv), "--label-column", "y", "--hidden", "8", "--epochs", str(EPOCHS),
            "--recipe", "classic", "--out", str(out), "--no-progress"]


def interrupted_line(out):
    return f"aepca: interrupted; checkpoint kept in {out / 'checkpoint'}. Continue with: aepca compare --resume {out}"


# One worker runs the module, so its fixtures are built once (pytest-xdist's loadgroup).
pytestmark = pytest.mark.xdist_group("resume")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A CSV and the autoencoder's metrics of an uninterrupted ``aepca compare`` on it."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    csv = write_csv(folder / "data.csv")
    assert main(compare_args(csv, folder / "full")) == 0
    return csv, json.loads((folder / "full" / "metrics.json").read_text())["autoencoder"]


def resume_and_check(out, full, capsys, stop_after, resumed_after):
    """``aepca compare --resume out`` ends with the uninterrupted run's numbers (``full``: its autoencoder
    metrics), training only the epochs after ``resumed_after``."""
    epochs_run = stop_after(None)
    assert main(["compare", "--resume", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    assert epochs_run == list(range(resumed_after + 1, EPOCHS + 1))
    assert f"note: Training resumed from the checkpoint of epoch {resumed_after};" in capsys.readouterr().out
    assert not (out / "checkpoint").exists()
    again = json.loads((out / "metrics.json").read_text())["autoencoder"]
    assert again["resumed_at"] == resumed_after
    assert len(again["history"]["loss"]) == EPOCHS
    # One float32 rounding per step (at most EPOCHS epochs of write_csv's 150 rows).
    rtol = float_tolerance(np.float32, 1.0, EPOCHS * math.ceil(150 / full["settings"]["batch_size"]))
    assert again["history"]["loss"] == pytest.approx(full["history"]["loss"], rel=rtol)
    assert again["test_mse"] == pytest.approx(full["test_mse"], rel=rtol)


def test_interrupted_command_says_so_once_and_resumes_to_the_uninterrupted_result(tmp_path, capsys, uninterrupted, stop_after):
    csv, full = uninterrupted
    out = tmp_path / "interrupted"
    stop_after(STOP_AFTER)
    capsys.readouterr()
    assert main(compare_args(csv, out)) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.splitlines() == [interrupted_line(out)]
    assert checkpoint_epoch(out / "checkpoint" / "random") == STOP_AFTER
    assert not (out / "metrics.json").exists()

    resume_and_check(out, full, capsys, stop_after, resumed_after=STOP_AFTER)


def test_an_interrupted_sweep_resumes_to_the_uninterrupted_result(tmp_path, capsys, uninterrupted, stop_after):
    csv, compared = uninterrupted
    args = ["sweep", str(csv), "--label-column", "y", "--code-dims", "1,2", "--hidden", "8", "--epochs", str(EPOCHS),
            "--recipe", "classic", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    full = json.loads((tmp_path / "full" / "sweep.json").read_text())["rows"]
    out = tmp_path / "interrupted"
    stop_after(STOP_AFTER)  # in the first code size's training
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.splitlines() == [
        f"aepca: interrupted; checkpoint kept in {out / 'checkpoint'}. Continue with: aepca sweep --resume {out}"]
    assert checkpoint_epoch(out / "checkpoint" / "k1" / "random") == STOP_AFTER

    epochs_run = stop_after(None)
    assert main(["sweep", "--resume", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    # The first size from its checkpoint on, the second from the start.
    assert epochs_run == [*range(STOP_AFTER + 1, EPOCHS + 1), *range(1, EPOCHS + 1)]
    assert "note: k=1: training resumed from the checkpoint of epoch 2." in capsys.readouterr().out
    assert not (out / "checkpoint").exists()
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [row["resumed_at"] for row in rows] == [STOP_AFTER, None]
    # One float32 rounding per step, as for compare (the same rows, recipe and batches).
    rtol = float_tolerance(np.float32, 1.0, EPOCHS * math.ceil(150 / compared["settings"]["batch_size"]))
    for got, expected in zip(rows, full, strict=True):
        assert got["autoencoder_test_mse"] == pytest.approx(expected["autoencoder_test_mse"], rel=rtol)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["compare", "--resume", str(tmp_path / "nothing")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no checkpoint found" in err and len(err.strip().splitlines()) == 1


def test_resume_of_a_finished_run_says_so(tmp_path, capsys, uninterrupted, stop_after):
    csv, full = uninterrupted
    out = tmp_path / "run"
    stop_after(STOP_AFTER)
    assert main(compare_args(csv, out)) == EXIT_INTERRUPTED
    resume_and_check(out, full, capsys, stop_after, resumed_after=STOP_AFTER)
    capsys.readouterr()
    assert main(["compare", "--resume", str(out)]) == EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == [
        f"aepca: error: --resume {out}: that run finished (metrics.json, report.html, model); there is nothing to "
        "resume. Run it again with --overwrite, or choose another --out."
    ]


# Interrupted by SIGTERM, refused with other data, resumed with the original ---------------------
# (the signal path in a process of its own: conftest.BLOCKING_CHILD)
def interrupt_in_a_child(args: list[str], out: Path, tmp_path) -> None:
    """Run the command ``args`` in a child that stops after epoch 1, and SIGTERM it there."""
    marker = tmp_path / "blocked"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-c", BLOCKING_CHILD, str(marker), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # The child imports JAX and compiles first.
    stderr = terminate_when(process, marker.exists, "blocking after epoch 1")
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert stderr.splitlines() == [interrupted_line(out)]  # one line, no traceback
    assert checkpoint_epoch(out / "checkpoint" / "random") == 1
    assert not (out / "metrics.json").exists()


def assert_refused_keeping_the_checkpoint(out: Path, capsys, naming: str) -> None:
    """``--resume out`` exits 2 with one line naming ``naming`` as what differs; the checkpoint stays."""
    arguments = (out / "checkpoint" / "args.json").read_text()
    assert main(["compare", "--resume", str(out), "--no-progress"]) == EXIT_USAGE
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("aepca: error: The checkpoint in "), lines
    assert "was written by a run with other settings or data (" in lines[0] and naming in lines[0], lines[0]
    assert lines[0].endswith(f"checkpoint kept in {out / 'checkpoint'}: once the cause is fixed, continue with: "
                             f"aepca compare --resume {out}"), lines[0]
    assert checkpoint_epoch(out / "checkpoint" / "random") == 1
    assert (out / "checkpoint" / "args.json").read_text() == arguments


def test_sigterm_keeps_a_checkpoint_that_other_data_cannot_resume_and_the_original_data_does(
        tmp_path, capsys, uninterrupted, stop_after):
    original, full = uninterrupted
    csv, out = tmp_path / "data.csv", tmp_path / "interrupted"
    shutil.copyfile(original, csv)
    interrupt_in_a_child(compare_args(csv, out), out, tmp_path)

    lines = original.read_text().splitlines()
    first = lines[1].split(",")
    csv.write_text("\n".join([lines[0], ",".join([f"{float(first[0]) + 0.5:.6f}", *first[1:]]), *lines[2:]]) + "\n")
    # The rows in memory differ: the inputs of the fingerprint (training or validation rows) say so.
    assert_refused_keeping_the_checkpoint(out, capsys, naming=" rows.")

    shutil.copyfile(original, csv)
    resume_and_check(out, full, capsys, stop_after, resumed_after=1)


# Streamed: a folder of Parquet parts -----------------------------------------------------------
def write_parts(folder: Path, n_parts=2, rows=200, n_features=6, seed=0) -> Path:
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(2, n_features))
    for k in range(n_parts):
        x = (rng.normal(size=(rows, 2)) @ basis + 0.1 * rng.normal(size=(rows, n_features))).astype(np.float32)
        pq.write_table(pa.table({f"f{i}": x[:, i] for i in range(n_features)}), folder / f"part-{k}.parquet")
    return folder


def streamed_args(folder, out):
    return ["compare", str(folder), "--hidden", "8", "--epochs", str(EPOCHS), "--recipe", "classic",
            "--out", str(out), "--no-progress"]


@pytest.fixture(scope="module")
def uninterrupted_streamed(tmp_path_factory):
    """A folder of two Parquet parts and the autoencoder's metrics of an uninterrupted streamed compare on it."""
    folder = write_parts(tmp_path_factory.mktemp("streamed") / "parts")
    out = folder.parent / "full"
    assert main(streamed_args(folder, out)) == 0
    return folder, json.loads((out / "metrics.json").read_text())["autoencoder"]


def test_a_streamed_run_refused_on_a_changed_part_resumes_on_the_original(tmp_path, capsys, uninterrupted_streamed,
                                                                          stop_after):
    import pyarrow.parquet as pq

    original, full = uninterrupted_streamed
    folder, out = tmp_path / "parts", tmp_path / "interrupted"
    shutil.copytree(original, folder)
    # Interrupted in this process (a real signal's way out: test_sigterm_keeps_a_checkpoint_...).
    stop_after(1)
    assert main(streamed_args(folder, out)) == EXIT_INTERRUPTED
    capsys.readouterr()
    assert checkpoint_epoch(out / "checkpoint" / "random") == 1 and not (out / "metrics.json").exists()

    part = folder / "part-1.parquet"
    kept = shutil.copy2(part, tmp_path / "part-1.kept")  # the bytes and the modification time
    table = pq.read_table(part)
    values = table.column("f0").to_numpy().copy()
    values[10] += 0.5
    pq.write_table(table.set_column(0, "f0", [values]), part)
    assert_refused_keeping_the_checkpoint(out, capsys, naming="part-1.parquet")

    shutil.copy2(kept, part)
    resume_and_check(out, full, capsys, stop_after, resumed_after=1)


def test_a_run_resumes_from_a_copy_of_its_folder_and_data_elsewhere(tmp_path, capsys, uninterrupted_streamed,
                                                                    stop_after, monkeypatch):
    """Data and run folder copied to another place (another disk, another machine) together, the run
    named by relative paths: the copy resumes, since a checkpoint fingerprints the data's content."""
    original, full = uninterrupted_streamed
    here, there = tmp_path / "here", tmp_path / "there"
    shutil.copytree(original, here / "data" / "parts")
    monkeypatch.chdir(here)
    stop_after(STOP_AFTER)
    assert main(streamed_args(Path("data/parts"), Path("runs/out"))) == EXIT_INTERRUPTED
    capsys.readouterr()
    shutil.copytree(here, there)
    shutil.rmtree(here)
    monkeypatch.chdir(there)
    resume_and_check(Path("runs/out"), full, capsys, stop_after, resumed_after=STOP_AFTER)


# What a refusal names ------------------------------------------------------------------------------
def test_differences_name_the_setting_and_the_file():
    stored = {"settings": {"epochs": 5, "hidden": [8]}, "seed": 0,
              "data": [{"kind": "parquet", "files": [{"path": "/a/part-1.parquet", "rows": 10},
                                                     {"path": "/a/part-2.parquet", "rows": 10000}]}, None]}
    current = {"settings": {"epochs": 10, "hidden": [8]}, "seed": 0,
               "data": [{"kind": "parquet", "files": [{"path": "/a/part-2.parquet", "rows": 10001},
                                                      {"path": "/a/part-1.parquet", "rows": 10},
                                                      {"path": "/a/part-3.parquet", "rows": 1}]}, None]}
    assert describe_differences(stored, current) == [
        "settings.epochs: 5 -> 10",
        "data[0].files[part-2.parquet].rows: 10000 -> 10001",
        'data[0].files[part-3.parquet]: (absent) -> {"path":"/a/part-3.parquet","rows":1}',
    ]
    assert describe_differences(stored, stored) == []
    many = describe_differences({"a": list(range(10))}, {"a": list(range(1, 11))}, limit=3)
    assert many == ["a[0]: 0 -> 1", "a[1]: 1 -> 2", "and 8 more"]


def test_a_checkpoint_of_other_data_is_refused_naming_the_rows(tmp_path):
    X = data()
    folder = tmp_path / "checkpoint"
    estimator(epochs=1, checkpoint_dir=folder).fit(X)
    X[0, 0] += 1
    with pytest.raises(ValueError, match=r"other settings or data \(data\.training rows\.[a-z0-9_]+: "):
        estimator(epochs=1, checkpoint_dir=folder).fit(X)
