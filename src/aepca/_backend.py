"""Choose the Keras backend before Keras is first imported.

JAX is the default because it trained aepca's networks fastest on CPU; a
``KERAS_BACKEND`` set by the user always wins.
"""

import os

DEFAULT_BACKEND = "jax"


def set_default_backend() -> None:
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)


def keras_backend() -> str:
    set_default_backend()
    import keras

    return keras.backend.backend()
