"""Write an experiment's results all at once, or not at all.

Results are written into a staging folder beside the destination and moved
into place only when the run succeeded, so an error or an interruption never
leaves half-written files in the output folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


# What an earlier run leaves in its folder.
RESULT_FILES = ("metrics.json", "sweep.json", "report.html", "model")


def check_writable(out, *, overwrite: bool = True) -> Path:
    """Raise a clear error now, before any work, if ``out`` cannot be written,
    or holds an earlier run's results and ``overwrite`` is false."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder; choose a folder path.")
    earlier = [name for name in RESULT_FILES if (out / name).exists()]
    if earlier and not overwrite:
        raise FileExistsError(
            f"--out {out} already holds a run ({', '.join(earlier)}); pass --overwrite to replace it, "
            "or choose another --out."
        )
    base = _existing_ancestor(out)
    if not base.is_dir():
        raise NotADirectoryError(f"--out {out}: {base} is a file, not a folder; choose another path.")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as error:
        raise PermissionError(f"--out {out} is not writable ({error.strerror}); choose a folder you can write to.") from None
    return base


@contextlib.contextmanager
def staged_output(out):
    """Yield a staging folder; on success move its entries into ``out``."""
    out = Path(out)
    base = check_writable(out)
    staging = Path(tempfile.mkdtemp(prefix=".aepca-staging-", dir=base))
    try:
        yield staging
        out.mkdir(parents=True, exist_ok=True)
        for entry in staging.iterdir():
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
