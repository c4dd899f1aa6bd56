"""``aepca._deferred``: placeholders that run a module at its first use, on toy packages
whose modules record when they run."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import textwrap
import types

import pytest

from aepca._deferred import defer_import, is_deferred

LOG = "_aepca_deferred_test_log"


@pytest.fixture
def make_package(tmp_path, monkeypatch):
    """Write a package ``toy_<test>`` from {relative path: source}; every module appends
    its name to a shared log when it runs. Returns (package name, log)."""
    log = types.ModuleType(LOG)
    log.ran = []
    monkeypatch.setitem(sys.modules, LOG, log)
    monkeypatch.syspath_prepend(str(tmp_path))
    created = []

    def make(files: dict[str, str]) -> tuple[str, list]:
        name = f"toy_{len(created)}_{tmp_path.name}".replace("-", "_")
        for relative, source in {"__init__.py": "", **files}.items():
            path = tmp_path / name / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            module = ".".join([name, *relative.removesuffix(".py").split("/")]).removesuffix(".__init__")
            path.write_text(f"import {LOG}\n{LOG}.ran.append({module!r})\n" + textwrap.dedent(source))
        created.append(name)
        importlib.invalidate_caches()
        return name, log.ran

    yield make
    for name in list(sys.modules):
        if any(name == c or name.startswith(c + ".") for c in created):
            del sys.modules[name]


def test_runs_at_first_use_not_at_import(make_package):
    name, ran = make_package({"__init__.py": "VALUE = 3\n"})
    defer_import(name)
    module = importlib.import_module(name)
    assert is_deferred(module) and ran == []
    assert module.VALUE == 3 and ran == [name]
    assert not is_deferred(module)


def test_a_deferred_submodule_does_not_run_its_package(make_package):
    name, ran = make_package({"child.py": "VALUE = 1\n"})
    defer_import(f"{name}.child")
    assert is_deferred(sys.modules[name]) and is_deferred(sys.modules[f"{name}.child"])
    exec(f"from {name} import child\nimport {name}.child as same", namespace := {})
    assert namespace["child"] is namespace["same"] is sys.modules[f"{name}.child"]
    assert ran == []
    assert namespace["child"].VALUE == 1
    assert ran == [f"{name}.child"]


def test_another_submodule_runs_the_package_first(make_package):
    name, ran = make_package({"__init__.py": "", "deferred.py": "", "other.py": "VALUE = 2\n"})
    defer_import(f"{name}.deferred")
    assert importlib.util.find_spec(f"{name}.other") is not None and ran == []  # finding runs nothing
    other = importlib.import_module(f"{name}.other")
    assert ran == [name, f"{name}.other"]
    assert other.VALUE == 2 and not is_deferred(sys.modules[name])
    # The module keeps the loader that found it.
    assert isinstance(other.__loader__, importlib.machinery.SourceFileLoader)
    assert other.__spec__.loader is other.__loader__


def test_a_submodule_the_package_imports_itself_runs_once(make_package):
    # h5py's shape: the package's __init__ imports the very submodule asked for.
    name, ran = make_package({"__init__.py": "from .sub.leaf import VALUE\n", "sub/__init__.py": "", "sub/leaf.py": "VALUE = 5\n"})
    defer_import(name)
    leaf = importlib.import_module(f"{name}.sub.leaf")
    assert ran == [name, f"{name}.sub", f"{name}.sub.leaf"]
    package = sys.modules[name]
    assert package.VALUE == 5 and package.sub.leaf is leaf is sys.modules[f"{name}.sub.leaf"]
    assert leaf.__spec__.origin.endswith("leaf.py")


def test_a_failing_module_raises_at_use_and_is_forgotten(make_package):
    name, ran = make_package({"__init__.py": "raise RuntimeError('broken on purpose')\n"})
    defer_import(name)
    module = sys.modules[name]
    with pytest.raises(RuntimeError, match="broken on purpose"):
        module.anything
    assert name not in sys.modules


def test_missing_or_imported_names_are_left_alone(make_package):
    name, _ = make_package({})
    defer_import(f"{name}_missing")
    defer_import(f"{name}.missing")
    assert f"{name}_missing" not in sys.modules and f"{name}.missing" not in sys.modules
    assert name not in sys.modules  # its package is not deferred for a submodule it lacks
    imported = sys.modules["json"] if "json" in sys.modules else importlib.import_module("json")
    defer_import("json")
    assert sys.modules["json"] is imported
