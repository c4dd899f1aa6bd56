"""What ``aepca compare`` imports is installed by ``pip install aepca`` alone.

The test extra installs more (TensorFlow, PyTorch, pyarrow) and they bring their
own dependencies, so a package the command needs but aepca does not declare
would go unnoticed by every other test (filelock, which JAX needs for the
command's size-limited compilation cache, is one). Here a small comparison runs
as the ``aepca`` command in a fresh process, and every package it imported must
be aepca itself or come with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import packages_distributions, requires

import numpy as np
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Imported when present, each in a try/except by the package that imports it.
OPTIONAL_IMPORTS = {
    "_distutils_hack": "setuptools' hook, installed by site when setuptools is",
    "certifi": "requests, which keras imports when present",
    "charset_normalizer": "numpy.f2py.crackfortran",
    "flatbuffers": "jax._src.export.serialization",
    "idna": "requests, which keras imports when present",
    "pyarrow": "pandas.compat.pyarrow",
    "requests": "keras' RemoteMonitor callback (imported, never run here)",
    "urllib3": "requests, which keras imports when present",
}

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from aepca.cli import console

    sys.argv = ["aepca", *sys.argv[1:]]
    try:
        console()
    except SystemExit as stop:
        if stop.code:
            raise
    print(json.dumps(sorted({name.partition(".")[0] for name, module in sys.modules.items() if module is not None})))
    """
)


def installed_with(distribution: str) -> set[str]:
    """``distribution`` and everything its requirements pull in, extras left out."""
    found, pending = set(), [distribution]
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        found.add(name)
        for text in requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return found


def test_compare_imports_only_what_aepca_installs(tmp_path):
    data = tmp_path / "data.csv"
    rows = np.random.default_rng(0).standard_normal((300, 6))
    np.savetxt(data, rows, delimiter=",", header="a,b,c,d,e,f", comments="")
    env = {**os.environ, "KERAS_BACKEND": "jax", "AEPCA_COMPILATION_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-c", SCRIPT, "compare", str(data), "--recipe", "classic", "--hidden", "4", "--epochs", "1",
               "--no-progress", "--out", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert any((tmp_path / "cache").iterdir()), "nothing was cached: the check would miss the cache's imports"

    imported = json.loads(result.stdout.strip().splitlines()[-1])
    providers = packages_distributions()
    allowed = installed_with("aepca")
    undeclared = {
        module: providers[module]
        for module in imported
        if module in providers
        and module not in OPTIONAL_IMPORTS
        and not any(canonicalize_name(d) in allowed for d in providers[module])
    }
    assert not undeclared, f"imported by `aepca compare` but not installed with aepca: {undeclared}"
