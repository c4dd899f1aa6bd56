"""aepca: deep autoencoders as a measured replacement for PCA.

Keras, JAX and matplotlib load when first used, so ``import aepca`` is quick.
"""

__version__ = "0.1.0"

_LAZY = {
    "Autoencoder": "aepca.estimator",
    "PCA": "aepca.pca",
    "enable_compilation_cache": "aepca.compilation_cache",
    "load_dataset": "aepca.data",
    "load_model": "aepca.estimator",
    "open_source": "aepca.data.sources",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aepca' has no attribute {name!r}")
