"""Writing files and folders so that readers never see a half-written one, whatever stops the writer.

Every replacement is one ``rename``: a file through a temporary file beside it, a folder through a
staging folder swapped with the old one (Linux' ``renameat2(RENAME_EXCHANGE)``; elsewhere, or on a
file system without it, the old folder is moved aside first and put back by :func:`restore_aside`
if the writer stops between the two renames). Temporary names carry the writer's process id and
host (``.NAME.tmp-PID@HOST-XXXXXXXX``), so :func:`remove_leftovers` can clean what a killed writer
left without touching a live writer's files.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

_LEFTOVER = re.compile(r"^\..+\.tmp-(?P<pid>\d+)@(?P<host>.+)-[a-z0-9_]+$")


def check_can_write(path, named: str) -> Path:
    """The nearest existing folder at or above ``path``, checked now to take new files, so that a path
    that cannot be written stops a command before its work; ``named`` is how errors name the path."""
    path = Path(path)
    base = next((candidate for candidate in (path, *path.parents) if candidate.exists()), Path("."))
    if not base.is_dir():
        raise NotADirectoryError(f"{named}: {base} is a file, not a folder; choose another path.")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as error:
        raise PermissionError(f"{named} is not writable ({error.strerror}); choose a folder you can write to.") from None
    return base


def _temp_prefix(path: Path) -> str:
    """The prefix of a temporary name beside ``path``; makes its folder and clears what killed writers left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, path.name)
    return f".{path.name}.tmp-{os.getpid()}@{socket.gethostname()}-"


def write_atomic(path, data: bytes, *, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    The temporary file lies in the same folder, so ``os.replace`` is a rename
    on one file system. Missing parent folders are created. ``durable``
    flushes the bytes and the rename to disk, for files that must survive
    a crash (checkpoints).
    """
    path = Path(path)
    fd, tmp = temporary_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        # mkstemp creates 0600 files; results are meant to be shared.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        sync_folder(path.parent)
    return path


def temporary_file(path) -> tuple[int, Path]:
    """A new file beside ``path`` (its open descriptor and its path), named so that :func:`remove_leftovers`
    removes it should its writer be killed; what killed writers of ``path`` left is removed first."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path))
    return fd, Path(tmp)


def sync_folder(folder) -> None:
    """Flush ``folder``'s entries (renames into it) to disk, where the system allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def staging_folder(target) -> Path:
    """A new empty folder beside ``target`` (same file system), to be moved into place by :func:`replace_dir`."""
    target = Path(target)
    folder = Path(tempfile.mkdtemp(dir=target.parent, prefix=_temp_prefix(target)))
    folder.chmod(0o755)  # mkdtemp's 0700 would keep a saved model from other accounts
    return folder


def remove_leftovers(folder, name: str | None = None) -> None:
    """Remove the temporary files and folders in ``folder`` (those for ``name`` only, if given)
    that a writer on this host left when it was killed; a live writer's are kept."""
    host = socket.gethostname()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        found = _LEFTOVER.match(entry.name)
        mine = name is None or entry.name.startswith(f".{name}.tmp-")
        if found and mine and found["host"] == host and not _alive(int(found["pid"])):
            remove(Path(entry.path))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another account's process
        return True
    return True


def remove(path) -> None:
    """Remove a file or a folder tree; nothing if it is gone."""
    path = Path(path)
    if _is_dir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _is_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


# Folders ------------------------------------------------------------------------------------
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_exchange_unsupported: set[int] = set()  # devices whose file system refused RENAME_EXCHANGE


def exchange(a, b) -> bool:
    """Swap the entries ``a`` and ``b`` (both must exist) in one atomic step; False where the system
    or the file system cannot (then nothing changed)."""
    if not sys.platform.startswith("linux"):
        return False
    device = os.lstat(a).st_dev
    if device in _exchange_unsupported:
        return False
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:  # glibc before 2.28, or another C library
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        _exchange_unsupported.add(device)
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


@functools.cache
def _libc():
    """The C library this process runs on (None where it cannot be loaded)."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def move_into_place(source, target, aside) -> None:
    """Move ``source`` to ``target`` in one atomic step; what ``target`` held, if anything, ends at
    ``aside`` (a free path beside it, removed by the caller) or is gone (a file replaced by a file).

    A folder is swapped with :func:`exchange`; where that is unavailable the old entry is renamed
    to ``aside`` first, and a writer stopped between the two renames leaves ``target`` missing and
    the old entry at ``aside``, which :func:`restore_aside` puts back.
    """
    source, target, aside = Path(source), Path(target), Path(aside)
    if not os.path.lexists(target):
        os.rename(source, target)
    elif not _is_dir(source) and not _is_dir(target):
        os.replace(source, target)
    elif exchange(source, target):
        os.rename(source, aside)
    else:
        os.rename(target, aside)
        os.rename(source, target)


def restore_aside(target, aside) -> None:
    """Undo a :func:`move_into_place` stopped half-way: the old entry back at ``target`` if
    ``target`` is missing, else the old entry at ``aside`` removed."""
    target, aside = Path(target), Path(aside)
    if not os.path.lexists(aside):
        return
    if os.path.lexists(target):
        remove(aside)
    else:
        os.rename(aside, target)


def replace_dir(staging, target) -> None:
    """Move the folder ``staging`` to ``target``: readers see the old folder or the new one, complete.

    A copy left aside by an earlier writer that was killed is restored or removed first.
    """
    staging, target = Path(staging), Path(target)
    aside = target.with_name(f".{target.name}.old")
    restore_aside(target, aside)
    try:
        move_into_place(staging, target, aside)
    except BaseException:
        restore_aside(target, aside)
        raise
    remove(aside)


# Signals ------------------------------------------------------------------------------------
@contextlib.contextmanager
def signals_deferred(*, redeliver: bool = True):
    """Hold SIGINT and SIGTERM back while the block runs: a few steps that must not be cut apart.

    A signal received meanwhile is delivered to the previous handler when the block ends
    (``redeliver``), or dropped (the process is stopping already). Outside the main thread,
    where handlers cannot be set, the block runs as it is; so does a signal whose handler was
    installed outside Python (it could not be put back).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not None:
                previous[signum] = signal.signal(signum, lambda number, frame: received.append(number))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received and redeliver:
            signal.raise_signal(received[0])
