"""Modules registered now and executed at their first real use.

Keras and scikit-learn import some optional integrations eagerly that aepca
never touches (see ``aepca._backend``). Registering such a module as
*deferred* puts a placeholder in ``sys.modules``: ``import name`` is then
free, and the module's code runs the first time anything but its import
metadata is read.

A package is deferred with the submodule that made it needed: Keras imports
``matplotlib.pyplot`` and ``from matplotlib import patches``, and running
matplotlib's own ``__init__`` for them was what deferring pyplot alone left
(0.13-0.27 s imported by itself; ~0.05-0.1 s of aepca's start, where Keras and
pandas load some of its dependencies anyway). Two rules keep a deferred
package correct when something else imports from it:

* a deferred submodule is handed out as the package's attribute without
  running the package (``from matplotlib import patches``,
  ``import matplotlib.pyplot as plt``);
* any other submodule runs the package first, as a normal import would
  (:class:`_RunDeferredPackages`). Running the submodule first instead broke
  packages whose ``__init__`` imports that same submodule (``h5py._hl.files``).

Like ``importlib.util.LazyLoader``, a module runs under a lock at its first
use; two threads that each first use a different deferred module, while one
of them imports the other's submodule, could in principle wait on each other.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
import types


def defer_import(name: str) -> None:
    """Register ``name`` (and any package above it not imported yet) as deferred.

    Nothing happens if it is already imported or cannot be found.
    """
    if name in sys.modules:
        return
    spec = _spec_without_running(name)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return
    package, _, child = name.rpartition(".")
    if package:
        defer_import(package)
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _DeferredModule
    sys.modules[name] = module
    if package:
        # ModuleType.__setattr__: this does not run a deferred package.
        setattr(sys.modules[package], child, module)
    if not any(isinstance(finder, _RunDeferredPackages) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RunDeferredPackages())


def _spec_without_running(name: str):
    """``importlib.util.find_spec``, except that it imports no package above ``name``."""
    package = name.rpartition(".")[0]
    if not package:
        try:
            return importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
    imported = sys.modules.get(package)
    package_spec = _spec_without_running(package) if imported is None else getattr(imported, "__spec__", None)
    locations = getattr(package_spec, "submodule_search_locations", None)
    return None if locations is None else importlib.machinery.PathFinder.find_spec(name, list(locations))


def is_deferred(module) -> bool:
    """Whether ``module`` is a placeholder whose code has not run yet."""
    return type(module) is _DeferredModule


def _run(module: _DeferredModule) -> None:
    with _DeferredModule._lock:
        if type(module) is not _DeferredModule:
            return
        module.__class__ = types.ModuleType
        try:
            module.__spec__.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module.__name__, None)  # as a failed import leaves it
            raise


class _DeferredModule(types.ModuleType):
    """A module whose code runs at the first access to anything but its import metadata.

    Unlike ``importlib.util.LazyLoader``, a later ``import`` statement (which
    reads ``__spec__``, and ``__path__`` for ``from package import x``) does
    not run it: only real use does.
    """

    _METADATA = frozenset(("__spec__", "__name__", "__loader__", "__package__", "__path__", "__file__", "__class__"))
    _lock = threading.RLock()

    def __getattribute__(self, attr):
        if attr in _DeferredModule._METADATA:
            return super().__getattribute__(attr)
        if type(self) is _DeferredModule:
            child = super().__getattribute__("__dict__").get(attr)
            if type(child) is _DeferredModule:
                return child
            _run(self)
        return getattr(self, attr)


class _RunDeferredPackages:
    """A meta path finder for submodules of deferred packages: their loader runs
    the package first, as a normal import would have, and hands over the
    submodule if the package imported it itself.

    The package runs when the submodule is loaded, not here: finders are
    called under the import system's global lock, and a package run there
    would block every other thread's imports.
    """

    def find_spec(self, name, path=None, target=None):
        package = sys.modules.get(name.rpartition(".")[0])
        if not is_deferred(package) or path is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _PackageFirst(spec.loader, package)
        return spec

    def invalidate_caches(self):
        pass


class _PackageFirst:
    """A submodule's loader that runs its deferred package before loading it."""

    def __init__(self, loader, package):
        self.loader, self.package = loader, package
        self.imported = self.imported_spec = None

    def create_module(self, spec):
        _run(self.package)
        self.imported = sys.modules.get(spec.name)
        if self.imported is not None:
            # The package imported this submodule itself: that module is the one.
            self.imported_spec = self.imported.__spec__
            return self.imported
        return self.loader.create_module(spec)

    def exec_module(self, module):
        if self.imported is not None:
            module.__spec__ = self.imported_spec  # loading set this loader's spec on it
            return
        # The module keeps the loader that found it, not this wrapper.
        module.__spec__.loader = module.__loader__ = self.loader
        self.loader.exec_module(module)
