"""The output folder of a run (``aepca.experiments.run.Run``): one run at a time, nothing saved lost
by a failure, results in place all at once, and what a killed run left recovered by the next start.

The library tests train nothing; two command-line tests run the ``aepca`` command in a child process
(conftest.BLOCKING_CHILD) to hold a folder while the test acts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import BLOCKING_CHILD, dead_pid

from aepca.cli import EXIT_INTERRUPTED, EXIT_USAGE, main
from aepca.experiments.run import (
    CHECKPOINT_DIR,
    STAGING_DIR,
    FolderInUse,
    Interrupted,
    Run,
    check_available,
    recover,
    stored_arguments,
)

CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1"}


def wait_for(condition, what: str, process: subprocess.Popen, timeout_s: float = 300) -> None:
    """Wait until ``condition()``; fail if ``process`` ends first or ``what`` takes over ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the process ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:g} s"
        time.sleep(0.02)


def save_progress(run: Run) -> None:
    """What training writes into the checkpoint folder after an epoch."""
    (run.checkpoint / "random").mkdir()
    (run.checkpoint / "random" / "checkpoint.npz").write_bytes(b"epoch 1")


def commit(run: Run, value: str) -> None:
    with run.staged() as staging:
        (staging / "metrics.json").write_text(json.dumps(value))
        (staging / "model").mkdir()
        (staging / "model" / "weights").write_text(value)


# One run per folder ----------------------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from aepca.experiments.run import Run

    out, ready = Path(sys.argv[1]), Path(sys.argv[2])
    with Run(out, argv=["data.csv"]):
        ready.write_text("holding")
        while True:
            time.sleep(0.05)
""")


def test_the_lock_names_its_holder_and_is_taken_over_when_the_holder_is_killed(tmp_path):
    out, ready = tmp_path / "run", tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(ready)], env=CHILD_ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(ready.exists, "lock held", holder, timeout_s=60)
        named = rf"{out} is in use by another aepca run \(process {holder.pid} on .*: aepca compare data.csv\)"
        with pytest.raises(FolderInUse, match=named):
            check_available(out)
        with pytest.raises(FolderInUse, match=named), Run(out, argv=["other.csv"], overwrite=True):
            pass
        assert stored_arguments(out) == ["data.csv"]  # untouched by the refused runs
    finally:
        holder.kill()
        holder.communicate()
    # The lock died with its process; the folder is a resumable interrupted run.
    with Run(out, resume=True) as run:
        assert run.checkpoint == out / CHECKPOINT_DIR
        with pytest.raises(FolderInUse, match=rf"process {os.getpid()} "):
            check_available(out)
    check_available(out)


def test_a_command_refused_before_its_run_starts_leaves_no_lock_file(tmp_path, capsys):
    check_available(tmp_path / "free")  # the early probe of a folder no run has used
    assert main(["compare", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "out")]) == EXIT_USAGE
    assert "No such file" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


# Nothing saved is lost ---------------------------------------------------------------------------
def test_an_error_after_training_saved_something_keeps_the_checkpoint_and_says_how_to_continue(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError) as raised, Run(out, argv=["data.csv"]) as run:
        save_progress(run)
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory")
    assert raised.value.__notes__ == [
        f"checkpoint kept in {out / CHECKPOINT_DIR}: once the cause is fixed, continue with: aepca compare --resume {out}"
    ]
    assert (out / CHECKPOINT_DIR / "random" / "checkpoint.npz").read_bytes() == b"epoch 1"
    assert stored_arguments(out) == ["data.csv"]


def test_a_refused_resume_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), Run(out, argv=["data.csv"]) as run:
        save_progress(run)
        raise KeyboardInterrupt
    with pytest.raises(ValueError, match="other settings or data"), Run(out, resume=True):
        raise ValueError("The checkpoint was written by a run with other settings or data (data[0].digest: a -> b)")
    assert (out / CHECKPOINT_DIR / "random" / "checkpoint.npz").exists() and stored_arguments(out) == ["data.csv"]


def test_a_run_that_failed_before_saving_anything_leaves_no_trace(tmp_path):
    out = tmp_path / "new" / "run"
    with pytest.raises(ValueError, match="bad data"), Run(out, argv=["data.csv"]):
        raise ValueError("bad data")
    assert not out.exists()
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="bad data"), Run(earlier, argv=["data.csv"]):
        raise ValueError("bad data")
    assert sorted(os.listdir(earlier)) == ["keep.txt"]


def test_an_interruption_keeps_the_checkpoint_and_names_the_command_to_continue(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Interrupted) as raised, Run(out, argv=["data.csv", "--epochs", "3"]):
        raise KeyboardInterrupt
    assert str(raised.value) == (
        f"interrupted; checkpoint kept in {out / CHECKPOINT_DIR}. Continue with: aepca compare --resume {out}"
    )
    assert stored_arguments(out) == ["data.csv", "--epochs", "3"]


def test_the_checkpoint_goes_only_once_the_results_are_in_place(tmp_path):
    out = tmp_path / "run"
    with Run(out, argv=["data.csv"]) as run:
        commit(run, "first")
    with pytest.raises(OSError, match="disk full"), Run(out, argv=["data.csv"], overwrite=True) as run:
        save_progress(run)
        with run.staged() as staging:
            (staging / "metrics.json").write_text(json.dumps("second"))
            raise OSError("disk full")
    # The earlier results are as they were, beside the new run's checkpoint.
    assert json.loads((out / "metrics.json").read_text()) == "first"
    assert (out / "model" / "weights").read_text() == "first"
    assert (out / CHECKPOINT_DIR / "random" / "checkpoint.npz").exists()
    with Run(out, resume=True) as run:
        commit(run, "second")
        assert not (out / CHECKPOINT_DIR).exists()
    assert sorted(os.listdir(out)) == ["metrics.json", "model"]
    assert (out / "model" / "weights").read_text() == "second"


def test_a_ctrl_c_during_the_commit_waits_for_it(tmp_path, monkeypatch):
    import aepca.experiments.run as run_module

    commit_now = run_module._commit

    def interrupted_commit(out, staging):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the results are being moved
        commit_now(out, staging)

    monkeypatch.setattr(run_module, "_commit", interrupted_commit)
    # Ctrl-C as from a terminal, whoever started the tests (a background job ignores SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), Run(out, argv=["data.csv"]) as run:
        save_progress(run)
        commit(run, "done")
    # Delivered once the commit was complete: the results in place, the checkpoint gone.
    assert sorted(os.listdir(out)) == ["metrics.json", "model"]
    assert (out / "model" / "weights").read_text() == "done"


# Earlier runs, resume --------------------------------------------------------------------------
def test_an_earlier_run_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    with Run(out, argv=["a.csv"]) as run:
        commit(run, "first")
    with pytest.raises(FileExistsError, match=r"already holds a run \(metrics.json, model\); pass --overwrite"), \
            Run(out, argv=["b.csv"]):
        pass
    with pytest.raises(KeyboardInterrupt), Run(out, argv=["b.csv"], overwrite=True) as run:
        save_progress(run)
        raise KeyboardInterrupt
    with pytest.raises(FileExistsError, match=rf"holds an interrupted run .*continue it with aepca compare --resume {out}"), \
            Run(out, argv=["c.csv"]):
        pass
    assert stored_arguments(out) == ["b.csv"]
    with Run(out, argv=["c.csv"], overwrite=True) as run:  # starts over: the interrupted run's checkpoint goes
        assert not (run.checkpoint / "random").exists()
        commit(run, "third")
    assert json.loads((out / "metrics.json").read_text()) == "third"


def test_resume_needs_an_interrupted_run_and_says_when_it_finished(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        stored_arguments(tmp_path / "nothing")
    out = tmp_path / "run"
    with Run(out, argv=["a.csv"]) as run:
        commit(run, "done")
    finished = rf"--resume {out}: that run finished \(metrics.json, model\); there is nothing to resume"
    with pytest.raises(ValueError, match=finished):
        stored_arguments(out)
    with pytest.raises(ValueError, match=finished), Run(out, resume=True):
        pass
    assert json.loads((out / "metrics.json").read_text()) == "done"


def test_a_checkpoint_resumes_with_the_command_that_made_it(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Interrupted), Run(out, argv=["data.csv", "--code-dims", "1,2"], command="sweep") as run:
        save_progress(run)
        raise KeyboardInterrupt
    assert stored_arguments(out, "sweep") == ["data.csv", "--code-dims", "1,2"]
    with pytest.raises(ValueError, match=rf"^--resume {out}: that run is an aepca sweep; continue it with: "
                                         rf"aepca sweep --resume {out}$"):
        stored_arguments(out, "compare")


# What a killed run leaves --------------------------------------------------------------------------
def test_the_next_start_finishes_committed_results_and_removes_the_rest(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), Run(out, argv=["a.csv"]) as run:
        save_progress(run)
        raise KeyboardInterrupt
    host = socket.gethostname()
    dead, alive = f".checkpoint.npz.tmp-{dead_pid()}@{host}-abcd1234", f".checkpoint.npz.tmp-{os.getpid()}@{host}-abcd1234"
    for name in (dead, alive):
        (out / CHECKPOINT_DIR / "random" / name).write_bytes(b"half")
    # A run killed after writing its results, before committing them: they are dropped.
    (out / STAGING_DIR / "results").mkdir(parents=True)
    (out / STAGING_DIR / "results" / "metrics.json").write_text("uncommitted")
    recover(out)
    assert sorted(os.listdir(out)) == [CHECKPOINT_DIR]
    assert sorted(os.listdir(out / CHECKPOINT_DIR / "random")) == [alive, "checkpoint.npz"]  # a live writer's is kept
    # A run killed after committing, while moving: the move is finished and the checkpoint goes.
    staging = out / STAGING_DIR
    (staging / "results").mkdir(parents=True)
    (staging / "results" / "metrics.json").write_text('"committed"')
    identity = os.lstat(staging / "results" / "metrics.json")
    (staging / "commit.json").write_text(json.dumps({"entries": {"metrics.json": [identity.st_dev, identity.st_ino]}}))
    with pytest.raises(ValueError, match="that run finished"):
        stored_arguments(out)
    recover(out)
    assert sorted(os.listdir(out)) == ["metrics.json"]
    assert json.loads((out / "metrics.json").read_text()) == "committed"


def test_a_run_of_another_process_holds_only_the_checkpoint_path(tmp_path):
    out = tmp_path / "run"
    with Run(out, argv=["a.csv"], writer=False) as run:
        assert run.checkpoint == out / CHECKPOINT_DIR
        with pytest.raises(RuntimeError, match="Only the first process"), run.staged():
            pass
    assert not out.exists()


# The command ----------------------------------------------------------------------------------------
EPOCHS = 2


@pytest.fixture
def table(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 5)) + 0.1 * rng.normal(size=(200, 5))
    path = tmp_path / "data.csv"
    np.savetxt(path, rows, delimiter=",", header="a,b,c,d,e", comments="", fmt="%.6f")
    return path


def compare_args(data: Path, out: Path) -> list[str]:
    return ["compare", str(data), "--recipe", "classic", "--hidden", "8", "--epochs", str(EPOCHS), "--no-progress",
            "--out", str(out)]


def test_a_second_compare_into_a_running_out_exits_2_naming_the_first(tmp_path, table, capsys):
    out, marker = tmp_path / "run", tmp_path / "blocked"
    first = subprocess.Popen([sys.executable, "-c", BLOCKING_CHILD, str(marker), *compare_args(table, out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)
    try:
        wait_for(marker.exists, "epoch 1's checkpoint", first)
        for argv in (compare_args(table, out), compare_args(table, out) + ["--overwrite"],
                     ["compare", "--resume", str(out), "--no-progress"]):
            assert main(argv) == EXIT_USAGE
            line = capsys.readouterr().err.strip()
            assert "\n" not in line and f"is in use by another aepca run (process {first.pid} on " in line, line
        marker.with_name(marker.name + ".release").write_text("go on")
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, stderr
    assert sorted(os.listdir(out)) == ["codes.png", "loss.png", "metrics.json", "model", "reconstructions.png", "report.html"]
    assert len(json.loads((out / "metrics.json").read_text())["autoencoder"]["history"]["loss"]) == EPOCHS


# The command, blocked where a Ctrl-C may come while it ends: in its clean-up after a first Ctrl-C
# (the handler's), or in the interpreter's shutdown after it returned (an exit hook, as thread joins are).
ENDING_CHILD = textwrap.dedent("""
    import atexit, signal, sys, time
    from pathlib import Path
    import aepca.cli as cli

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal, whoever started the test
    marker, where = Path(sys.argv[1]), sys.argv[2]

    def block(state):
        marker.write_text(state)
        while True:
            time.sleep(0.01)

    def handler(args):
        if where == "shutdown":
            atexit.register(block, "shutting down")
            return 0
        try:
            block("running")
        finally:
            block("cleaning up")

    cli.run_encode = handler
    cli.tune_command_process = lambda: None  # nothing to tune for this handler
    sys.argv = ["aepca", "encode", "model", "data.csv", "--out", sys.argv[3]]
    cli.console()
""")


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_interrupt_during_clean_up_ends_the_command_quietly(tmp_path, second):
    marker = tmp_path / "state"
    child = subprocess.Popen([sys.executable, "-c", ENDING_CHILD, str(marker), "clean-up", str(tmp_path / "codes.csv")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)
    try:
        wait_for(lambda: marker.exists() and marker.read_text() == "running", "the command running", child, 60)
        child.send_signal(signal.SIGINT)
        wait_for(lambda: marker.read_text() == "cleaning up", "the clean-up", child, 60)
        child.send_signal(second)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == EXIT_INTERRUPTED
    assert stderr == "aepca: interrupted\n"


def test_an_interrupt_while_the_process_shuts_down_ends_it_quietly_with_the_commands_status(tmp_path):
    marker = tmp_path / "state"
    child = subprocess.Popen([sys.executable, "-c", ENDING_CHILD, str(marker), "shutdown", str(tmp_path / "codes.csv")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)
    try:
        wait_for(marker.exists, "the shutdown", child, 60)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert (child.returncode, stderr) == (0, "")


def test_a_signal_just_after_the_outcome_was_said_ends_the_command_quietly(tmp_path, monkeypatch, capsys):
    """As a launcher stops a worker that is reporting its lost peer: the signal comes after the
    error line, while the command still holds its handlers."""
    import aepca.cli as cli

    said = cli.report

    def report_then_signalled(error, args=None):
        status = said(error, args)
        signal.raise_signal(signal.SIGTERM)
        return status

    monkeypatch.setattr(cli, "report", report_then_signalled)
    monkeypatch.setattr(sys, "argv", ["aepca", "encode", str(tmp_path / "no-model"), "data.csv", "--out", "codes.npy"])
    status = None
    try:
        cli.console()
    except KeyboardInterrupt:
        pytest.fail("the signal left the command as a KeyboardInterrupt (a traceback)")
    except SystemExit as stopped:
        status = stopped.code
    assert status == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err.startswith("aepca: error:") and len(err.splitlines()) == 1, err


def test_a_signal_while_main_gives_its_handlers_back_leaves_them_as_they_were(tmp_path, monkeypatch):
    """main called in-process (a library user's): the signal interrupts the caller, whose handlers stay its own."""
    import aepca.cli as cli

    real = cli.signal
    found = {signum: real.getsignal(signum) for signum in (real.SIGINT, real.SIGTERM)}

    class SignalledOnGivingBack:
        """The signal module, with a SIGTERM as main puts back the first handler it found."""

        raised = False

        def __getattr__(self, name):
            return getattr(real, name)

        def signal(self, signum, handler):
            if handler in found.values() and not self.raised:
                self.raised = True
                real.raise_signal(real.SIGTERM)
            return real.signal(signum, handler)

    monkeypatch.setattr(cli, "signal", SignalledOnGivingBack())
    with pytest.raises(KeyboardInterrupt):
        cli.main(["encode", str(tmp_path / "no-model"), "data.csv", "--out", str(tmp_path / "codes.npy")])
    assert {signum: real.getsignal(signum) for signum in found} == found
