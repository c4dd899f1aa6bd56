"""Writing files so that readers never see a half-written one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path, data: bytes, *, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    The temporary file lies in the same folder, so ``os.replace`` is a rename
    on one file system. Missing parent folders are created. ``durable``
    flushes the bytes to disk before the rename, for files that must survive
    a crash (checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
