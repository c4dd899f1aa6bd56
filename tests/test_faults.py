"""Saving under faults: whatever stops a writer, every file and folder it replaces is the complete old
one or the complete new one, and the next start makes the results one run's again.

Two ways of stopping the writer:

- in process, an injected fault at the k-th file-system operation, for every k: an ``OSError`` instead of
  the operation, or a ``KeyboardInterrupt`` right after it (the error paths and clean-ups run);
- a child process that saves again and again, killed with SIGKILL after a random delay (nothing runs
  after the kill), 50 times.

A "generation" is one run's results: ``metrics.json``, ``report.html`` and a ``model/`` folder of two
files, all holding the generation's number.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aepca import _files
from aepca._files import replace_dir, restore_aside, write_atomic
from aepca.experiments.run import CHECKPOINT_DIR, STAGING_DIR, Run, recover

# What the injector counts: every call that changes the file system (rmtree's unlinks and rmdirs
# included), and the folder swap.
OPERATIONS = ((os, "rename"), (os, "replace"), (os, "unlink"), (os, "rmdir"), (os, "mkdir"), (os, "fsync"),
              (_files, "exchange"))


class Injected(OSError):
    pass


class Faults:
    """Counts the file-system operations made while :meth:`run` runs an action. ``at=k`` (1-based):
    the k-th raises an ``OSError`` instead of running (``mode="error"``), or runs and then raises
    KeyboardInterrupt (``mode="interrupt"``, a Ctrl-C right after it). ``check`` runs before every
    operation: it sees the state a SIGKILL there would leave."""

    def __init__(self, monkeypatch, *, at: int | None = None, mode: str = "error", check=None):
        self.count, self.at, self.mode, self.check, self.fired = 0, at, mode, check, False
        self._armed = False
        for module, name in OPERATIONS:
            monkeypatch.setattr(module, name, self._wrap(getattr(module, name)))

    def run(self, action) -> bool:
        """Run ``action``; whether an injected fault stopped it (some are absorbed, as by
        ``mkdir(exist_ok=True)`` or a clean-up that tolerates failure)."""
        self._armed = True
        try:
            action()
        except (Injected, KeyboardInterrupt):
            return True
        finally:
            self._armed = False
        return False

    def _wrap(self, operation):
        def wrapped(*args, **kwargs):
            if not self._armed:
                return operation(*args, **kwargs)
            self.count += 1
            if self.check is not None:
                self._armed = False  # the check's own reading is not counted
                try:
                    self.check()
                finally:
                    self._armed = True
            if self.count != self.at:
                return operation(*args, **kwargs)
            self.fired = True
            if self.mode == "error":
                raise Injected(errno.EIO, "injected fault")
            try:
                return operation(*args, **kwargs)
            finally:
                raise KeyboardInterrupt  # noqa: B012 (the interruption wins, as a signal's would)

        return wrapped


def operations_of(monkeypatch, action, *, check=None) -> int:
    """How many counted operations ``action()`` makes when nothing fails (with ``check`` before each)."""
    with monkeypatch.context() as patch:
        faults = Faults(patch, check=check)
        assert not faults.run(action)
        return faults.count


def each_fault(monkeypatch, n_operations: int):
    """(mode, k, injector) for every operation k and both modes."""
    for mode in ("error", "interrupt"):
        for at in range(1, n_operations + 1):
            with monkeypatch.context() as patch:
                yield mode, at, Faults(patch, at=at, mode=mode)


# One generation of results -------------------------------------------------------------------
def write_generation(folder: Path, generation: int) -> None:
    (folder / "metrics.json").write_text(json.dumps({"generation": generation}))
    (folder / "report.html").write_text(f"<p>{generation}</p>")
    (folder / "model").mkdir()
    for name in ("a", "b"):
        (folder / "model" / name).write_text(str(generation))


def generations(out: Path) -> dict[str, int]:
    """The generation of each result in ``out``; fails the test on a missing or incomplete one."""
    found = {
        "metrics.json": json.loads((out / "metrics.json").read_text())["generation"],
        "report.html": int((out / "report.html").read_text()[3:-4]),
    }
    model = sorted(os.listdir(out / "model"))
    assert model == ["a", "b"], f"the model folder is incomplete: {model}"
    a, b = (int((out / "model" / name).read_text()) for name in model)
    assert a == b, f"the model folder mixes generations {a} and {b}"
    found["model"] = a
    return found


def save_generation(out: Path, generation: int, progress: dict | None = None) -> None:
    """A checkpointing run of ``generation``: training state saved, then results committed.
    ``progress["saved"]`` tells whether the training state was written."""
    with Run(out, argv=[str(generation)], overwrite=True) as run:
        write_atomic(run.checkpoint / "random" / "state.json", json.dumps(generation).encode(), durable=True)
        if progress is not None:
            progress["saved"] = True
        with run.staged() as staging:
            write_generation(staging, generation)


def assert_settled(out: Path, *, old: int, new: int, saved: bool) -> None:
    """After recovery: one generation's results; the checkpoint gone if they are the new run's,
    kept (with its training state) if they are not and the run had saved some."""
    found = set(generations(out).values())
    assert found in ({old}, {new}), f"results of several runs: {found}"
    state = out / CHECKPOINT_DIR / "random" / "state.json"
    if found == {new}:
        assert not (out / CHECKPOINT_DIR).exists()
    elif saved:
        assert json.loads(state.read_text()) == new
    assert not (out / STAGING_DIR).exists()


# Files -----------------------------------------------------------------------------------------
def test_a_file_replaced_under_faults_is_old_or_new(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    n = operations_of(monkeypatch, lambda: write_atomic(target, b"new", durable=True))
    assert n >= 3  # fsync, replace, and the folder's fsync at least
    for mode, at, faults in each_fault(monkeypatch, n):
        target.write_bytes(b"old")
        faults.run(lambda: write_atomic(target, b"new", durable=True))
        assert faults.fired, (mode, at)
        assert target.read_bytes() in (b"old", b"new"), (mode, at)
        # A temporary file is left only when its own removal was the failing step (then the next
        # writer removes it, once this process is gone).
        assert len(os.listdir(tmp_path)) == 1 or (mode, at) == ("error", n), (mode, at, os.listdir(tmp_path))
        for leftover in set(os.listdir(tmp_path)) - {"metrics.json"}:
            os.unlink(tmp_path / leftover)


# Folders ---------------------------------------------------------------------------------------
def model_folder(parent: Path, generation: int) -> Path:
    folder = _files.staging_folder(parent / "model")
    for name in ("a", "b"):
        (folder / name).write_text(str(generation))
    return folder


def model_generation(folder: Path) -> int:
    a, b = ((folder / name).read_text() for name in ("a", "b"))
    assert a == b, f"{folder} mixes {a} and {b}"
    return int(a)


@pytest.mark.parametrize("swap", ["exchange", "fallback"])
def test_a_folder_replaced_under_faults_is_old_or_new(tmp_path, monkeypatch, swap):
    if swap == "fallback":  # a system or file system without RENAME_EXCHANGE
        monkeypatch.setattr(_files, "exchange", lambda a, b: False)
    target, aside = tmp_path / "model", tmp_path / ".model.old"

    def at_every_instant():
        # With the swap the folder is always there; the fallback may leave it aside, complete.
        if swap == "exchange" or target.exists():
            assert model_generation(target) in (1, 2)
        else:
            assert model_generation(aside) == 1

    replace_dir(model_folder(tmp_path, 1), target)
    staging = model_folder(tmp_path, 2)
    n = operations_of(monkeypatch, lambda: replace_dir(staging, target), check=at_every_instant)
    for mode, at, faults in each_fault(monkeypatch, n):
        replace_dir(model_folder(tmp_path, 1), target)
        staging = model_folder(tmp_path, 2)  # outside the count: the save's own writing
        faults.run(lambda: replace_dir(staging, target))
        assert faults.fired, (mode, at)
        at_every_instant()
        _files.remove(staging)  # what the save's clean-up does (persistence.write_model_folder)
        restore_aside(target, aside)  # what the next save does first
        assert model_generation(target) in (1, 2), (mode, at)
        assert not aside.exists()


# A run's results and checkpoint ------------------------------------------------------------
def test_results_and_checkpoint_under_faults_are_one_runs(tmp_path, monkeypatch):
    """Every fault anywhere in a run (locking, args.json, checkpoint, staging, commit, release): each
    result is old or new and complete, and after the next start's recovery all are one run's, the
    checkpoint gone only if the results are the new run's."""
    template = tmp_path / "template"
    save_generation(template, 1)
    out = tmp_path / "out"

    def fresh():
        _files.remove(out)
        shutil.copytree(template, out)

    fresh()

    def at_every_instant():
        assert set(generations(out).values()) <= {1, 2}

    n = operations_of(monkeypatch, lambda: save_generation(out, 2), check=at_every_instant)
    assert set(generations(out).values()) == {2} and not (out / CHECKPOINT_DIR).exists()
    for mode, at, faults in each_fault(monkeypatch, n):
        fresh()
        progress = {"saved": False}
        stopped = faults.run(lambda: save_generation(out, 2, progress))
        assert faults.fired, (mode, at)
        at_every_instant()
        recover(out)  # the next start
        if not stopped:  # the fault hit a clean-up whose failure is tolerated
            assert set(generations(out).values()) == {2}, (mode, at)
        assert_settled(out, old=1, new=2, saved=progress["saved"])


def test_without_the_folder_swap_the_next_start_restores_a_consistent_run(tmp_path, monkeypatch):
    monkeypatch.setattr(_files, "exchange", lambda a, b: False)
    out = tmp_path / "out"
    save_generation(out, 1)
    n = operations_of(monkeypatch, lambda: save_generation(out, 2))
    save_generation(out, 1)
    for _, _, faults in each_fault(monkeypatch, n):
        save_generation(out, 1)
        progress = {"saved": False}
        faults.run(lambda: save_generation(out, 2, progress))
        recover(out)
        assert_settled(out, old=1, new=2, saved=progress["saved"])


# SIGKILL ---------------------------------------------------------------------------------------
# Imports only what saving needs (no numpy, no Keras), so a child starts in a few tens of ms.
SAVING_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from aepca._files import write_atomic
    from aepca.experiments.run import Run

    out, first = Path(sys.argv[1]), int(sys.argv[2])
    print("ready", flush=True)
    for generation in range(first, first + 10**6):
        with Run(out, argv=[str(generation)], overwrite=True) as run:
            write_atomic(run.checkpoint / "random" / "state.json", json.dumps(generation).encode(), durable=True)
            with run.staged() as staging:
                (staging / "metrics.json").write_text(json.dumps({"generation": generation}))
                (staging / "report.html").write_text(f"<p>{generation}</p>")
                (staging / "model").mkdir()
                for name in ("a", "b"):
                    (staging / "model" / name).write_text(str(generation))
""")
TRIALS = 50
STRIDE = 10**6  # each trial's generations start at trial * STRIDE


def test_a_saving_process_killed_at_random_leaves_old_or_new(tmp_path):
    out = tmp_path / "out"
    save_generation(out, 0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    chooser = random.Random(0)
    for trial in range(1, TRIALS + 1):
        before = generations(out)
        child = subprocess.Popen([sys.executable, "-c", SAVING_CHILD, str(out), str(trial * STRIDE)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            assert child.stdout.readline() == b"ready\n", child.communicate()
            try:
                child.wait(timeout=chooser.uniform(0.0, 0.03))
            except subprocess.TimeoutExpired:
                pass
            assert child.poll() is None, child.communicate()  # saving until killed
        finally:
            child.kill()
            child.communicate()
        # As the kill left it: every result complete, from this trial or an earlier one.
        found = generations(out)
        assert all(value >= before[key] for key, value in found.items()), (trial, before, found)
        # The next start: the killed process's lock taken over, one run's results, no leftovers.
        recover(out)
        settled = set(generations(out).values())
        assert len(settled) == 1, (trial, settled)
        state = out / CHECKPOINT_DIR / "random" / "state.json"
        if state.exists():  # a run that had not committed: its checkpoint is newer than the results
            assert json.loads(state.read_text()) > settled.pop(), trial
        leftovers = [path for path in out.rglob("*") if ".tmp-" in path.name or path.name == STAGING_DIR]
        assert not leftovers, (trial, leftovers)
