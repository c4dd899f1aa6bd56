"""Keras for aepca's modules, imported on aepca's backend (see :mod:`aepca.backend`)."""

from aepca.backend import import_keras

keras = import_keras()
ops = keras.ops
