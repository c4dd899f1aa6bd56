"""An interrupted run, resumed, ends exactly where an uninterrupted one does.

Interruptions are raised from the per-epoch checkpoint callback, after a known
epoch, so no test races the training: in process for the estimator and the
command line, and once in a subprocess that blocks after epoch 1 until the test
sends it SIGTERM (the signal path of ``aepca.cli.main``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import BLOCKING_CHILD, terminate_when

from aepca import Autoencoder
from aepca.checkpoint import CHECKPOINT_FILE, Checkpointer, checkpoint_epoch
from aepca.cli import EXIT_INTERRUPTED, EXIT_USAGE, main

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
    # Same backend, seed, batches and optimizer state: the same compiled steps, the same numbers.
    np.testing.assert_allclose(resumed.history_["loss"], reference.history_["loss"], rtol=1e-6)
    for got, expected in zip(resumed.model_.get_weights(), reference.model_.get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(resumed.transform(X), reference.transform(X), rtol=1e-6, atol=1e-6)


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


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A CSV and the autoencoder's metrics of an uninterrupted ``aepca compare`` on it."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    csv = write_csv(folder / "data.csv")
    assert main(compare_args(csv, folder / "full")) == 0
    return csv, json.loads((folder / "full" / "metrics.json").read_text())["autoencoder"]


def resume_and_check(out, uninterrupted, capsys, stop_after, resumed_after):
    """``aepca compare --resume out`` ends with the uninterrupted run's numbers,
    training only the epochs after ``resumed_after``."""
    _, full = uninterrupted
    epochs_run = stop_after(None)
    assert main(["compare", "--resume", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    assert epochs_run == list(range(resumed_after + 1, EPOCHS + 1))
    assert not (out / "checkpoint").exists()
    again = json.loads((out / "metrics.json").read_text())["autoencoder"]
    assert len(again["history"]["loss"]) == EPOCHS
    assert again["history"]["loss"] == pytest.approx(full["history"]["loss"], rel=1e-6)
    assert again["test_mse"] == pytest.approx(full["test_mse"], rel=1e-6)


def test_interrupted_command_says_so_once_and_resumes_to_the_uninterrupted_result(tmp_path, capsys, uninterrupted, stop_after):
    csv, _ = uninterrupted
    out = tmp_path / "interrupted"
    stop_after(STOP_AFTER)
    capsys.readouterr()
    assert main(compare_args(csv, out)) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.splitlines() == [interrupted_line(out)]
    assert checkpoint_epoch(out / "checkpoint" / "random") == STOP_AFTER
    assert not (out / "metrics.json").exists()

    resume_and_check(out, uninterrupted, capsys, stop_after, resumed_after=STOP_AFTER)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["compare", "--resume", str(tmp_path / "nothing")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no checkpoint found" in err and len(err.strip().splitlines()) == 1


# The signal path, in a process of its own (conftest.BLOCKING_CHILD) ----------------------


def test_sigterm_stops_the_command_with_one_line_and_a_resumable_checkpoint(tmp_path, capsys, uninterrupted, stop_after):
    csv, _ = uninterrupted
    out, marker = tmp_path / "interrupted", tmp_path / "blocked"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-c", BLOCKING_CHILD, str(marker), *compare_args(csv, out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # The child imports JAX and compiles first.
    stderr = terminate_when(process, marker.exists, "blocking after epoch 1")
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert stderr.splitlines() == [interrupted_line(out)]  # one line, no traceback
    assert checkpoint_epoch(out / "checkpoint" / "random") == 1
    assert not (out / "metrics.json").exists()

    resume_and_check(out, uninterrupted, capsys, stop_after, resumed_after=1)
