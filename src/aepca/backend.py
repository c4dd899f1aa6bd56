"""Which Keras backend aepca uses: the one Keras itself chooses, which aepca never changes.

Keras picks its backend once, when it is first imported: ``KERAS_BACKEND``, else the
``backend`` of its ``keras.json``, else TensorFlow. aepca changes no setting of the process
it is imported into; a program chooses for its own process, as the ``aepca`` command does
(:data:`DEFAULT_BACKEND` unless ``KERAS_BACKEND`` is set). JAX, installed with aepca, trains
its networks fastest (docs/backends.md).
"""

import os

DEFAULT_BACKEND = "jax"


def backend_name() -> str:
    """The backend aepca's Keras runs on (importing Keras if it is not imported yet)."""
    return import_keras().backend.backend()


def import_keras():
    """The ``keras`` module, on the backend Keras chose; a backend that is not installed is named,
    with the fix, instead of Keras' import error."""
    try:
        import keras
    except ModuleNotFoundError as error:
        missing = (error.name or "").partition(".")[0]
        if missing not in ("tensorflow", "torch", "jax"):
            raise
        where = "KERAS_BACKEND" if os.environ.get("KERAS_BACKEND") else "keras.json or Keras' default"
        raise ImportError(
            f"Keras is set to the {missing} backend ({where}), which is not installed. Set "
            f"KERAS_BACKEND={DEFAULT_BACKEND} before Keras is first imported (JAX comes with aepca and "
            f"trains fastest), or install aepca[{missing}]."
        ) from error
    return keras
