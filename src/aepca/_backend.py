"""Choose the Keras backend before Keras is first imported.

JAX is the default because it trained aepca's networks fastest on CPU; a
``KERAS_BACKEND`` set by the user always wins.
"""

import os
import sys

DEFAULT_BACKEND = "jax"


def set_default_backend() -> None:
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)


def load_keras():
    """Import Keras on aepca's default backend and return the module.

    Every aepca module imports Keras through here, so the backend is chosen
    and the TensorFlow probe below is tamed before any model exists.
    """
    set_default_backend()
    import keras

    if keras.backend.backend() != "tensorflow":
        _probe_tensorflow_only_if_imported()
    return keras


def _probe_tensorflow_only_if_imported() -> None:
    # Keras asks "is TensorFlow available?" while serialising any model (to
    # recognise tf.TensorShape and friends) and answers by importing it: on the
    # JAX backend with TensorFlow merely installed, every save cost ~3 s and
    # ~300 MB (measured, Keras 3.15). A TensorFlow object can only exist once
    # TensorFlow has been imported, so answering from sys.modules changes no
    # result, and a user who imports TensorFlow later gets Keras' usual probe.
    from keras.src.utils import module_utils

    probe = module_utils.tensorflow
    if type(probe) is not module_utils.LazyModule:
        return  # Keras changed this internal; keep its own behaviour.

    class _ImportedOnlyProbe(module_utils.LazyModule):
        @property
        def available(self):
            if self.module is None and probe.name not in sys.modules:
                return False
            return module_utils.LazyModule.available.fget(self)

    probe.__class__ = _ImportedOnlyProbe


def keras_backend() -> str:
    return load_keras().backend.backend()
