"""Traced programs kept on disk, so that a repeated run skips tracing them.

JAX's compilation cache stores compiled programs, but it is keyed by the
lowered program, so every run still traces its functions through Keras and
JAX and lowers them first. For the classic network's training chunk that took
0.45-0.55 s of each start on this project's 2-core CPU; a program saved with
``jax.export`` was loaded and lowered again in 0.02-0.03 s, and gave the same
loss to the last bit. Programs are saved beside JAX's cache, in its
``aepca-traced`` folder, and only while that cache is on (``aepca`` turns it
on; ``AEPCA_COMPILATION_CACHE=off`` turns both off).

A saved program must never stand in for a different one, so its file name is a
digest of everything tracing reads: the caller's description (for training,
the model's and optimizer's configurations and the loss), the arguments'
shapes and dtypes, every JAX option, Keras' global dtype settings, the
platform, the Python version, and the size and modification time of the file
of every loaded module of aepca, JAX, jaxlib, Keras, NumPy and ml_dtypes. A
description that names code from any other package (a custom layer or
activation) is not saved at all: that code's changes would not show in the
digest. An unreadable or stale file is traced again and replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from aepca._files import write_atomic

FOLDER = "aepca-traced"
SUFFIX = ".jaxexport"
# The code a traced program can depend on, besides the caller's own description.
TRACED_PACKAGES = ("aepca", "jax", "jaxlib", "keras", "ml_dtypes", "numpy")
# Bumped when what goes into the digest changes meaning.
DIGEST_VERSION = 1


def jit_with_saved_trace(function, example_args: tuple, *, description: dict | None, donate_argnums=()):
    """``jax.jit(function, donate_argnums=...)``, traced from disk when it was saved before.

    ``example_args`` are arrays or ``jax.ShapeDtypeStruct`` with the shapes and
    dtypes of every later call; ``description`` says what else ``function``'s
    trace depends on (``None``: never save it).
    """
    import jax

    jitted = jax.jit(function, donate_argnums=donate_argnums)
    folder = saved_traces_folder()
    if folder is None or description is None or not _can_serialize() or not _names_only_traced_packages(description):
        return jitted
    specs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), example_args)
    path = folder / f"{_digest(description, specs)}{SUFFIX}"
    exported = _load(path)
    if exported is None:
        exported = jax.export.export(jitted)(*specs)
        _save(path, exported.serialize())
    # The saved program is run even right after saving it, so that a run that
    # saves and a run that loads compile the very same program.
    def saved(*args):
        return exported.call(*args)

    # Named as the function: profiles and JAX's cache then say which program it is.
    saved.__name__, saved.__qualname__ = function.__name__, function.__qualname__
    return jax.jit(saved, donate_argnums=donate_argnums)


def saved_traces_folder() -> Path | None:
    """Where traced programs are saved: inside JAX's compilation cache, when it
    is on and on a local disk; ``None`` otherwise."""
    import jax

    return folder_beside(jax.config.jax_compilation_cache_dir)


def folder_beside(cache: str | None) -> Path | None:
    if not cache or "://" in str(cache):
        return None
    return Path(cache) / FOLDER


def _digest(description: dict, specs) -> str:
    import jax
    import keras

    facts = {
        "version": DIGEST_VERSION,
        "description": description,
        "arguments": [str(jax.tree.structure(specs)), [(a.shape, str(a.dtype)) for a in jax.tree.leaves(specs)]],
        "jax_options": sorted(jax.config.values.items()),
        "keras": [keras.config.floatx(), keras.config.epsilon(), keras.config.dtype_policy().name],
        "platform": [jax.default_backend(), sorted({device.device_kind for device in jax.local_devices()})],
        "python": sys.version,
        "code": _loaded_code(),
    }
    text = json.dumps(facts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _loaded_code() -> list:
    """(module, file, size, modification time) for every loaded module of the traced packages."""
    code = []
    for name, module in sorted(sys.modules.items()):
        if name.partition(".")[0] not in TRACED_PACKAGES:
            continue
        # __file__ is read without running a deferred module (aepca._deferred).
        path = getattr(module, "__file__", None)
        if path:
            try:
                stat = os.stat(path)
            except OSError:
                stat = None
            code.append((name, path, None if stat is None else (stat.st_size, stat.st_mtime_ns)))
    return code


def _can_serialize() -> bool:
    """Whether ``jax.export`` can write and read programs: it needs the
    flatbuffers package, an aepca dependency that JAX itself does not require,
    so an environment put together by hand may lack it. Without it, run unsaved."""
    return importlib.util.find_spec("flatbuffers") is not None


def _names_only_traced_packages(description) -> bool:
    """Whether every object a Keras configuration refers to by module comes from
    a traced package (Keras writes ``"module"`` for each layer, initializer,
    schedule and function it serialises)."""
    if isinstance(description, dict):
        module = description.get("module")
        if isinstance(module, str) and module.partition(".")[0] not in TRACED_PACKAGES:
            return False
        return all(_names_only_traced_packages(value) for value in description.values())
    if isinstance(description, (list, tuple)):
        return all(_names_only_traced_packages(value) for value in description)
    return True


def _load(path: Path):
    import jax

    try:
        return jax.export.deserialize(bytearray(path.read_bytes()))
    except Exception:  # absent, unreadable or from another JAX: trace again
        return None


def _save(path: Path, serialized: bytearray) -> None:
    # Saving only saves time: run unsaved rather than fail.
    with contextlib.suppress(OSError):
        write_atomic(path, bytes(serialized))
