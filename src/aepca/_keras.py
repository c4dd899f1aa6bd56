"""Keras for aepca's modules, on the backend Keras chose (see :mod:`aepca.backend`)."""

from aepca.backend import import_keras

keras = import_keras()
ops = keras.ops
