"""An interrupted run, resumed, ends exactly where an uninterrupted one does."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from aepca.checkpoint import checkpoint_epoch

# Enough epochs that the run is still going when the test interrupts it at epoch 3.
EPOCHS = 100


def write_csv(path, n_rows=3000, n_features=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, 3)) @ rng.normal(size=(3, n_features))
    x += 0.1 * rng.normal(size=x.shape)
    header = ",".join([f"f{i}" for i in range(n_features)] + ["y"])
    rows = [",".join(f"{v:.6f}" for v in row) + f",{int(row[0] > 0)}" for row in x]
    path.write_text("\n".join([header, *rows]) + "\n")


def compare_command(csv, out, *extra, launcher=(sys.executable, "-m", "aepca")):
    return [
        *launcher, "compare", str(csv), "--label-column", "y", "--hidden", "32",
        "--epochs", str(EPOCHS), "--recipe", "classic", "--out", str(out), "--no-progress", *extra,
    ]


def wait_for_epoch(folder, epoch, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the run ended before epoch {epoch}: {process.communicate()}")
        if checkpoint_epoch(folder) >= epoch:
            return
        time.sleep(0.01)
    pytest.fail(f"no checkpoint of epoch {epoch} within {timeout} s")


ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


# A shell without job control starts background jobs with SIGINT ignored, and
# children inherit that (a CI run launched with `&` did), so Python installs no
# Ctrl-C handler. The interrupted run restores it first, as a terminal would find
# it, then runs the command line exactly as `python -m aepca` does. (Not through
# preexec_fn: forking the multithreaded JAX test process can deadlock.)
INTERRUPTIBLE = (
    sys.executable, "-c",
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from aepca.cli import main; sys.exit(main())",
)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    csv = folder / "data.csv"
    write_csv(csv)
    reference = subprocess.run(compare_command(csv, folder / "full"), capture_output=True, text=True, env=ENV)
    assert reference.returncode == 0, reference.stderr
    return csv, json.loads((folder / "full" / "metrics.json").read_text())["autoencoder"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, signum):
    csv, full = uninterrupted
    env = ENV
    out = tmp_path / "interrupted"
    process = subprocess.Popen(compare_command(csv, out, launcher=INTERRUPTIBLE), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # One checkpoint folder per network trained; the classic recipe trains one, from a random start.
    wait_for_epoch(out / "checkpoint" / "random", 3, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"aepca compare --resume {out}" in stderr
    assert "Traceback" not in stderr
    assert not (out / "metrics.json").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "aepca", "compare", "--resume", str(out), "--no-progress"],
        capture_output=True, text=True, env=env,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not (out / "checkpoint").exists()

    again = json.loads((out / "metrics.json").read_text())["autoencoder"]
    # Same backend, same seed, same batches and optimizer state: the compiled
    # steps are deterministic on CPU, so the results agree to float32 round-off.
    assert again["test_mse"] == pytest.approx(full["test_mse"], rel=1e-6)
    assert again["history"]["loss"] == pytest.approx(full["history"]["loss"], rel=1e-6)
    assert len(again["history"]["loss"]) == EPOCHS


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    from aepca.cli import main

    assert main(["compare", "--resume", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint found" in err and len(err.strip().splitlines()) == 1
