"""Which Keras backend aepca uses, and importing Keras on it without changing the process's settings.

The backend is ``KERAS_BACKEND`` when it is set; else that of a Keras already
imported; else JAX, which trains aepca's networks fastest. The choice is made
for Keras' own import only: ``os.environ`` is restored right after it, so
child processes and the user's configuration are left as they were.
"""

import os
import sys

DEFAULT_BACKEND = "jax"


def backend_name() -> str:
    """The backend aepca's Keras runs on, or will run on, without importing Keras."""
    imported = sys.modules.get("keras")
    if imported is not None and hasattr(imported, "backend"):
        return imported.backend.backend()
    return os.environ.get("KERAS_BACKEND") or DEFAULT_BACKEND


def import_keras():
    """The ``keras`` module, imported on :func:`backend_name`'s backend if it is not imported yet."""
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        import keras

        return keras
    # Keras reads its backend from this variable once, while it is imported, and
    # offers no other way to choose one; it is set for that import only.
    previous = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = DEFAULT_BACKEND
    try:
        import keras
    finally:
        if previous is None:
            del os.environ["KERAS_BACKEND"]
        else:
            os.environ["KERAS_BACKEND"] = previous
    return keras
