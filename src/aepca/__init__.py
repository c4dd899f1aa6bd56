"""aepca: deep autoencoders as a measured replacement for PCA.

Heavy modules (Keras, JAX, matplotlib) load only when first used, so the
command line starts quickly.
"""

from aepca._backend import DEFERRED_AT_IMPORT, set_default_backend
from aepca._deferred import defer_import

set_default_backend()
for _name in DEFERRED_AT_IMPORT:
    defer_import(_name)

__version__ = "0.1.0"

_LAZY = {
    "Autoencoder": "aepca.estimator",
    "PCA": "aepca.pca",
    "enable_compilation_cache": "aepca._backend",
    "load_dataset": "aepca.data",
    "load_model": "aepca.estimator",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aepca' has no attribute {name!r}")
