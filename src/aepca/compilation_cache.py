"""JAX's compiled programs kept on disk, so that a repeated run skips compiling them.

Opt-in for Python users; the ``aepca`` command turns it on for its own process.
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock, Timeout

from aepca.backend import backend_name

CACHE_ENV = "AEPCA_COMPILATION_CACHE"
CACHE_OFF = ("0", "off", "false", "no")
# JAX evicts the least recently used programs beyond this size.
MAX_CACHE_BYTES = 512 * 2**20
# How JAX names a program's file and its access-time file in the folder, and the lock it takes on it.
PROGRAM_SUFFIX, ACCESS_SUFFIX, LOCK_NAME = "-cache", "-atime", ".lockfile"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aepca" / "jax"


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Keep JAX's compiled programs on disk; returns the folder, or ``None`` where no cache applies.

    A repeated run with the same network shapes then loads its programs
    instead of compiling them. ``directory`` defaults to
    ``$AEPCA_COMPILATION_CACHE``, then ``$XDG_CACHE_HOME/aepca/jax``
    (``~/.cache/aepca/jax``); ``AEPCA_COMPILATION_CACHE=off`` switches it off.
    The cache holds at most ``MAX_CACHE_BYTES`` and may be deleted at any time.
    A cache already configured in JAX is left as it is. This changes JAX's
    configuration for the whole process; call it before anything is compiled.
    Nothing is cached off the JAX backend, or where the folder is not writable.
    """
    if backend_name() != "jax":
        return None
    import jax

    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return Path(configured)
    setting = os.environ.get(CACHE_ENV, "")
    if directory is None and setting.lower() in CACHE_OFF:
        return None
    path = Path(directory or setting or default_cache_dir()).expanduser()
    try:
        # Private: JAX trusts its cache's contents as code.
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None  # an optimisation only: run uncached rather than fail
    if not os.access(path, os.W_OK):
        return None
    _drop_unfinished_programs(path)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_compilation_cache_max_size", MAX_CACHE_BYTES)
    # Small programs too: a run compiles many, and they add up.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path


def _drop_unfinished_programs(path: Path) -> None:
    """Delete programs in ``path`` that have no access-time file (a run killed between JAX's two
    writes, or a process that cached there without a size bound): JAX's size bound reads every
    program's access time, so one such program makes every later write fail with a warning."""
    try:
        with FileLock(path / LOCK_NAME, timeout=10):  # JAX's lock: no program is half-written meanwhile
            names = set(os.listdir(path))
            for name in names:
                key = name.removesuffix(PROGRAM_SUFFIX)
                if key != name and key + ACCESS_SUFFIX not in names:
                    (path / name).unlink(missing_ok=True)
    except (OSError, Timeout):
        pass  # an optimisation only: JAX then warns of the programs it cannot write
