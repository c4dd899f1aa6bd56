"""One command run's output folder: its lock, checkpoint, resume arguments and results.

A :class:`Run` owns ``OUT`` from start to end::

    OUT/checkpoint/            training checkpoints and args.json (the arguments to resume with)
    OUT/.aepca-staging/        results being written (results/), then the record that commits them
    OUT/metrics.json, ...      the results, each file and folder replaced in one atomic step
    ../.OUT.aepca-lock(.pid)   the lock held for the whole run, and who holds it

Nothing saved is lost by a failure: the checkpoint is removed only once the results are in place,
and on any error or interruption the checkpoint and ``OUT`` stay (a checkpoint holding nothing but
args.json, of a run that failed before training, is removed with the folder it created). Results
are committed by a record written once they are complete: a process killed while moving them
leaves the record, and the next run in ``OUT`` finishes the move before anything else, so the
results are never a mix of two runs; a record-less staging folder is the unfinished work of a
failed run and is removed.

The lock is ``fcntl`` based (filelock): it dies with its process, so a killed run's lock is taken
over by the next one. Its file lies beside ``OUT`` and is never deleted (deleting a lock file lets
two processes hold "the" lock on two files).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

from aepca._files import (
    check_can_write,
    move_into_place,
    remove,
    remove_leftovers,
    signals_deferred,
    sync_folder,
    write_atomic,
)

CHECKPOINT_DIR = "checkpoint"
ARGS_FILE = "args.json"
STAGING_DIR = ".aepca-staging"
_RESULTS = "results"
_ASIDE = "old"
_COMMIT = "commit.json"
# What an earlier run leaves in its folder.
RESULT_FILES = ("metrics.json", "sweep.json", "report.html", "model")


class FolderInUse(FileExistsError):
    """Another process is running in the output folder (it holds the folder's lock)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with the line saying what was kept and how to continue."""


# Checks before any work ----------------------------------------------------------------------
def _results_in(out: Path) -> list[str]:
    return [name for name in RESULT_FILES if (out / name).exists()]


def check_writable(out, *, overwrite: bool = True) -> Path:
    """Raise a clear error now, before any work, if ``out`` cannot be written,
    or holds an earlier run's results and ``overwrite`` is false."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder; choose a folder path.")
    earlier = _results_in(out)
    if earlier and not overwrite:
        raise FileExistsError(
            f"--out {out} already holds a run ({', '.join(earlier)}); pass --overwrite to replace it, "
            "or choose another --out."
        )
    return check_can_write(out, f"--out {out}")


# The lock --------------------------------------------------------------------------------------
class _FolderLock:
    """The lock of one output folder, and a small file naming its holder."""

    def __init__(self, out: Path):
        self.out = Path(out)
        real = self.out.resolve()  # one lock whichever way the folder is named
        self.path = real.parent / f".{real.name}.aepca-lock"
        self.holder = real.parent / f".{real.name}.aepca-lock.pid"
        self._lock = None

    def acquire(self, command: str | None) -> _FolderLock:
        """Take the lock, or raise :class:`FolderInUse` naming the holder; ``command`` is recorded
        as the holder's (None: a probe, released at once and recording nothing)."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.path), timeout=0)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except Timeout:
            raise FolderInUse(
                f"{self.out} is in use by another aepca run ({self._holder()}); wait for it to end, "
                "or choose another --out."
            ) from None
        except OSError as error:
            raise PermissionError(
                f"--out {self.out}: its lock {self.path} cannot be made ({error.strerror}); "
                "choose a folder you can write to."
            ) from None
        self._lock = lock
        if command is not None:
            try:
                record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command}
                write_atomic(self.holder, json.dumps(record).encode())
            except BaseException:
                self.release()
                raise
        return self

    def _holder(self) -> str:
        try:
            record = json.loads(self.holder.read_text())
            return f"process {record['pid']} on {record['host']}: {record['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "a process that has not recorded its id yet"

    def release(self) -> None:
        if self._lock is None:
            return
        try:
            self.holder.unlink(missing_ok=True)
        finally:
            self._lock.release()
            self._lock = None


def check_available(out) -> None:
    """Raise :class:`FolderInUse` now if another process runs in ``out`` (before slow work: imports,
    workers); the run itself takes the lock when it starts."""
    lock = _FolderLock(out)
    if lock.path.exists():  # no one holds a lock whose file is missing, and probing would leave one behind
        lock.acquire(None).release()


# Committing results ----------------------------------------------------------------------------
def _identity(path: Path) -> list[int] | None:
    try:
        stat = os.lstat(path)
    except FileNotFoundError:
        return None
    return [stat.st_dev, stat.st_ino]


def _sync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` to disk, so committed results survive a crash of the machine."""
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError), open(os.path.join(root, name), "rb") as file:
                os.fsync(file.fileno())
        sync_folder(root)


def _commit(out: Path, staging: Path) -> None:
    """Record the staged results (flushed to disk) as complete, then move them into ``out``."""
    entries = {entry.name: _identity(entry) for entry in (staging / _RESULTS).iterdir()}
    write_atomic(staging / _COMMIT, json.dumps({"entries": entries}).encode(), durable=True)
    _roll_forward(out, staging, entries)


def _roll_forward(out: Path, staging: Path, entries: dict) -> None:
    """Move each committed entry not yet in ``out`` into place, then put the run's checkpoint aside
    (the run has finished). Entries are known by their inode, which renames keep, so a move cut
    short anywhere is finished correctly by calling this again."""
    aside = staging / _ASIDE
    aside.mkdir(exist_ok=True)
    for name, identity in entries.items():
        source, target = staging / _RESULTS / name, out / name
        if _identity(target) != identity and _identity(source) == identity:
            move_into_place(source, target, aside / name)
    if os.path.lexists(out / CHECKPOINT_DIR):
        remove(aside / CHECKPOINT_DIR)
        os.rename(out / CHECKPOINT_DIR, aside / CHECKPOINT_DIR)
    sync_folder(out)


def _committed_entries(staging: Path) -> dict | None:
    try:
        return json.loads((staging / _COMMIT).read_text())["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _recover(out: Path) -> None:
    """Finish what a run killed in ``out`` left: committed results moved into place (and their
    checkpoint removed), uncommitted ones and temporary files of dead writers removed."""
    staging = out / STAGING_DIR
    entries = _committed_entries(staging)
    if entries is not None:
        with signals_deferred():
            _roll_forward(out, staging, entries)
    remove(staging)
    remove_leftovers(out)
    for root, _, _ in os.walk(out / CHECKPOINT_DIR):
        remove_leftovers(root)


def recover(out) -> None:
    """:func:`_recover` under ``out``'s lock (:class:`FolderInUse` while a run is in it)."""
    lock = _FolderLock(out).acquire(None)
    try:
        _recover(Path(out))
    finally:
        lock.release()


# The run -------------------------------------------------------------------------------------
def _not_resumable(out: Path) -> Exception:
    finished = _results_in(out)
    if finished or _committed_entries(out / STAGING_DIR) is not None:
        return ValueError(
            f"--resume {out}: that run finished ({', '.join(finished) or 'results written'}); there is nothing to "
            "resume. Run it again with --overwrite, or choose another --out."
        )
    return FileNotFoundError(
        f"--resume {out}: no checkpoint found ({out / CHECKPOINT_DIR / ARGS_FILE} is missing); "
        "pass the --out folder of an interrupted run."
    )


def stored_arguments(out, command: str = "compare") -> list[str]:
    """The arguments of the interrupted ``aepca command`` run in ``out`` (its ``args.json``), to resume it."""
    out = Path(out)
    if _committed_entries(out / STAGING_DIR) is not None:
        raise _not_resumable(out)
    try:
        stored = json.loads((out / CHECKPOINT_DIR / ARGS_FILE).read_text())
    except FileNotFoundError:
        raise _not_resumable(out) from None
    except ValueError as error:
        raise ValueError(f"--resume {out}: {out / CHECKPOINT_DIR / ARGS_FILE} is not valid JSON ({error}).") from None
    # The command and its arguments; a list alone is a compare's (written before sweeps resumed).
    stored = {"command": "compare", "arguments": stored} if isinstance(stored, list) else stored
    argv = stored.get("arguments") if isinstance(stored, dict) else None
    if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
        raise ValueError(f"--resume {out}: {out / CHECKPOINT_DIR / ARGS_FILE} does not hold a list of arguments.")
    if stored.get("command", "compare") != command:
        raise ValueError(f"--resume {out}: that run is an aepca {stored['command']}; continue it with: "
                         f"aepca {stored['command']} --resume {out}")
    return argv


class Run:
    """One run of a command in the output folder ``out``, as a context manager.

    On entering, the folder is checked and locked, what a killed run left is recovered, and for a
    run that checkpoints (``argv`` given: the arguments to resume with, stored in args.json) the
    checkpoint folder is made, or, with ``resume``, found. Results are written in
    :meth:`staged`. On leaving, the lock is released; an interruption raises :class:`Interrupted`
    saying where the checkpoint is and how to continue, and any other error gets that as a note.

    ``overwrite``: replace the results and discard the checkpoint of an earlier run (refused
    otherwise). ``writer=False`` (processes other than the first of a multi-process run): only
    :attr:`checkpoint` is given; the first process owns the folder.
    """

    def __init__(self, out, *, argv: list[str] | None = None, command: str = "compare", resume: bool = False,
                 overwrite: bool = False, writer: bool = True):
        self.out = Path(out)
        self.argv = None if argv is None else list(argv)
        self.command = command
        self.resume = resume
        self.overwrite = overwrite
        self.writer = writer
        self.checkpoint: Path | None = self.out / CHECKPOINT_DIR if argv is not None or resume else None
        self._lock: _FolderLock | None = None
        self._created: list[Path] = []
        self._made_checkpoint = False
        self._committed = False

    # Entering ------------------------------------------------------------------------------
    def __enter__(self) -> Run:
        if not self.writer:
            return self
        check_writable(self.out)
        self._created = [folder for folder in (self.out, *self.out.parents) if not folder.exists()]
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            command = " ".join(["aepca", self.command, *(self.argv or [])])
            self._lock = _FolderLock(self.out).acquire(command)
            _recover(self.out)
            if self.resume:
                if not (self.out / CHECKPOINT_DIR / ARGS_FILE).is_file():
                    raise _not_resumable(self.out)
            else:
                self._start()
        except BaseException:
            self._leave(None)
            raise
        return self

    def _start(self) -> None:
        checkpoint = self.out / CHECKPOINT_DIR
        if not self.overwrite:
            if checkpoint.exists():
                raise FileExistsError(
                    f"--out {self.out} holds an interrupted run ({checkpoint}); continue it with "
                    f"aepca {self.command} --resume {self.out}, pass --overwrite to start over, or choose another --out."
                )
            check_writable(self.out, overwrite=False)
        remove(checkpoint)  # an earlier run's, replaced at the user's request
        if self.checkpoint is not None:
            write_atomic(self.checkpoint / ARGS_FILE,
                         json.dumps({"command": self.command, "arguments": self.argv}).encode(), durable=True)
            self._made_checkpoint = True

    # Results -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def staged(self):
        """A folder to write the results into. When the block ends normally they are moved into
        ``out`` (each entry in one atomic step, the whole set committed first so that a killed
        process's move is finished by the next run), and the run's checkpoint is removed."""
        if not self.writer:
            raise RuntimeError("Only the first process of a run writes its results.")
        staging = self.out / STAGING_DIR
        remove(staging)
        (staging / _RESULTS).mkdir(parents=True)
        try:
            yield staging / _RESULTS
        except BaseException:
            remove(staging)
            raise
        _sync_tree(staging / _RESULTS)
        with signals_deferred():  # a few renames: Ctrl-C waits for them
            _commit(self.out, staging)
            self._committed = True
        remove(staging)

    # Leaving -------------------------------------------------------------------------------
    def __exit__(self, kind, error, traceback) -> bool:
        if not self.writer:
            return False
        kept = self._leave(error)
        if kept and isinstance(error, KeyboardInterrupt) and not isinstance(error, Interrupted):
            raise Interrupted(
                f"interrupted; checkpoint kept in {self.checkpoint}. Continue with: aepca {self.command} --resume {self.out}"
            ) from None
        if kept and isinstance(error, Exception):
            error.add_note(f"checkpoint kept in {self.checkpoint}: once the cause is fixed, continue with: "
                           f"aepca {self.command} --resume {self.out}")
        return False

    def _leave(self, error) -> bool:
        """Settle the folder and release it; returns whether a checkpoint to resume from is kept."""
        kept = False
        try:
            if self._lock is not None:  # the folder is this run's to settle
                # A second Ctrl-C here would only cut the settling short.
                with signals_deferred(redeliver=error is None):
                    kept = self._settle(error)
        finally:
            if self._lock is not None:
                self._lock.release()
            for folder in self._created:  # deepest first; only those this run made, if empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
        return kept

    def _settle(self, error) -> bool:
        staging = self.out / STAGING_DIR
        entries = None if self._committed else _committed_entries(staging)
        if entries is not None:  # the move was cut short by an error: finish it, else the next run will
            with contextlib.suppress(OSError):
                _roll_forward(self.out, staging, entries)
                self._committed = True
        if entries is None or self._committed:
            remove(staging)
        checkpoint = self.out / CHECKPOINT_DIR
        if self.checkpoint is None or self._committed or not checkpoint.exists():
            return False
        if self._made_checkpoint and not isinstance(error, KeyboardInterrupt) and not _has_progress(checkpoint):
            remove(checkpoint)  # a run that failed before training saved nothing to resume
            return False
        return True


def _has_progress(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` holds training state (anything but args.json)."""
    return any(path.is_file() and path.name != ARGS_FILE for path in checkpoint.rglob("*"))
