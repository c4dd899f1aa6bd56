"""Saving and loading models: ``model.keras`` (the network) and ``aepca.json`` (everything else).

Nothing from the files is executed or unpickled: Keras loads the network in
``safe_mode`` and the metadata is JSON. A folder is written atomically (a
staging folder swapped into place, so readers see the old folder or the new
one, complete, whatever stops the writer), and read back only when its format
version matches and its weights match the SHA-256 recorded beside them.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from aepca import __version__
from aepca._files import check_can_write, remove, replace_dir, staging_folder
from aepca._keras import keras
from aepca.data.columns import ColumnSpec
from aepca.models import weights_of
from aepca.preprocessing import Scaler
from aepca.recipes import DEFAULTS, SETTINGS
from aepca.validation import describe_names, invalid_value

MODEL_FILE = "model.keras"
METADATA_FILE = "aepca.json"
FORMAT_VERSION = 1


def weights_digest(model) -> str:
    digest = hashlib.sha256()
    for weight in weights_of(model):
        digest.update(np.ascontiguousarray(weight, dtype=np.float32).tobytes())
    return digest.hexdigest()


def write_model_folder(path, model, metadata: dict) -> Path:
    """Write ``model`` and ``metadata`` (with the format, versions and weight digest added) into ``path``."""
    if not all(np.all(np.isfinite(w)) for w in weights_of(model)):
        raise ValueError("The model has non-finite weights and is not saved; retrain with a lower learning_rate.")
    path = Path(path)
    _check_replaceable(path)
    staging = staging_folder(path)
    try:
        model.save(staging / MODEL_FILE)
        metadata = {
            "format": FORMAT_VERSION, "aepca_version": __version__, "keras_version": keras.__version__,
            "backend": keras.backend.backend(), **metadata, "weights_sha256": weights_digest(model),
        }
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        replace_dir(staging, path)
    finally:
        remove(staging)  # nothing, or what a swap left there
    return path


def _check_replaceable(path: Path) -> None:
    """Refuse to save over anything but a model folder: the save replaces the whole folder."""
    if path.is_file():
        raise invalid_value("path", "a folder to save the model in", f"{path}, a file", "Choose a new or empty folder.")
    others = sorted(entry.name for entry in path.iterdir() if entry.name not in (MODEL_FILE, METADATA_FILE)) if path.is_dir() else []
    if others:
        raise invalid_value("path", f"a new or empty folder, or a model folder to replace (only {MODEL_FILE} and {METADATA_FILE})",
                            f"{path}, which holds {describe_names(others)}",
                            "Choose another folder: saving replaces the whole folder.")
    check_can_write(path.parent, f"path {path}")


def read_model_folder(path) -> tuple:
    """The network and the metadata of a folder written by :func:`write_model_folder`, or of the one
    such folder inside ``path`` (the ``model/`` of an ``aepca compare`` run's folder), or holding
    ``path`` (one of its two files), checked."""
    path = Path(path)
    fix = "Pass the folder written by Autoencoder.save, or an aepca compare run's folder (--out)."
    if not path.exists():
        raise FileNotFoundError(f"No such model folder: {path} (looked for from {Path.cwd()}). {fix}")
    if path.is_file():
        if path.name not in (MODEL_FILE, METADATA_FILE):
            raise invalid_value("path", f"a model folder (it holds {MODEL_FILE} and {METADATA_FILE})", f"{path}, a file", fix)
        path = path.parent
    inside = sorted(path.glob(f"*/{METADATA_FILE}")) if path.is_dir() and not (path / METADATA_FILE).exists() else []
    if len(inside) == 1:
        path = inside[0].parent
    model_file, metadata_file = path / MODEL_FILE, path / METADATA_FILE
    for file in (model_file, metadata_file):
        if not file.is_file():
            raise FileNotFoundError(
                f"{file} does not exist; pass the folder written by Autoencoder.save (it holds "
                f"{MODEL_FILE} and {METADATA_FILE})."
            )
    try:
        metadata = json.loads(metadata_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{metadata_file} is not valid JSON ({error}); the model folder is corrupt.") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{metadata_file} has format {metadata.get('format') if isinstance(metadata, dict) else None!r}, "
            f"expected {FORMAT_VERSION}; re-save the model with this aepca version ({__version__})."
        )
    try:
        model = keras.saving.load_model(model_file, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for corrupt archives.
        raise ValueError(f"{model_file} could not be loaded safely: {error}") from None
    if weights_digest(model) != metadata.get("weights_sha256"):
        raise ValueError(
            f"{model_file} does not match the weights' SHA-256 recorded in {metadata_file}; "
            "the file was modified or corrupted. Re-save the model from a trusted source."
        )
    if model.input_shape[-1] != metadata.get("n_features_in"):
        raise ValueError(
            f"{model_file} takes {model.input_shape[-1]} features but the metadata says "
            f"{metadata.get('n_features_in')}; the model folder is inconsistent."
        )
    return model, metadata


def model_to_bytes(model) -> bytes:
    """The ``.keras`` file of ``model`` as bytes (for pickling)."""
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / MODEL_FILE
        model.save(file)
        return file.read_bytes()


def model_from_bytes(data: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / MODEL_FILE
        file.write_bytes(data)
        return keras.saving.load_model(file, compile=False, safe_mode=True)


def estimator_metadata(estimator) -> dict:
    """Everything but the network that a fitted ``Autoencoder`` needs to be applied again."""
    # A saved model is applied to new data: the paths of the run that made it do not travel.
    params = {**estimator.json_params(), "checkpoint_dir": None}
    return {
        "params": params,
        "settings": estimator.json_settings(),
        "n_features_in": int(estimator.n_features_in_),
        "feature_names_in": [str(n) for n in getattr(estimator, "feature_names_in_", [])] or None,
        "output_activation": estimator.output_activation_,
        "init": estimator.init_,
        "scaler": estimator.scaler_.to_dict(),
        "network_scale": estimator.network_scale_,
        "columns": None if estimator.columns_ is None else estimator.columns_.to_dict(),
        "image_shape": None if estimator.image_shape_ is None else list(estimator.image_shape_),
        "history": estimator.history_,
    }


def restore_estimator(estimator_class, metadata: dict):
    """An ``estimator_class`` with the fitted state ``metadata`` describes (the network is set by the caller)."""
    params = dict(metadata["params"])
    unknown = set(params) - set(estimator_class().get_params())
    if unknown:
        raise ValueError(f"The model metadata has unknown parameters {sorted(unknown)}; it was written by another aepca version.")
    if params.get("hidden") is not None:
        params["hidden"] = tuple(params["hidden"])
    estimator = estimator_class(**{**params, "checkpoint_dir": None})
    estimator.n_features_in_ = metadata["n_features_in"]
    if metadata.get("feature_names_in"):
        estimator.feature_names_in_ = np.asarray(metadata["feature_names_in"], dtype=object)
    estimator.output_activation_ = metadata["output_activation"]
    estimator.init_ = metadata.get("init", estimator.init)
    estimator.scaler_ = Scaler.from_dict(metadata["scaler"])
    # Models saved before recipes were sized stored every setting as a parameter.
    settings = metadata.get("settings") or {key: metadata["params"].get(key, DEFAULTS[key]) for key in SETTINGS}
    estimator.settings_ = {**settings, "hidden": tuple(settings["hidden"])}
    # Models saved before the network scale existed took the error space as it is.
    estimator.network_scale_ = float(metadata.get("network_scale", 1.0))
    estimator.history_ = metadata["history"]
    estimator.columns_ = None if metadata.get("columns") is None else ColumnSpec.from_dict(metadata["columns"])
    estimator.image_shape_ = None if metadata.get("image_shape") is None else tuple(metadata["image_shape"])
    return estimator


def skip_tensorflow_probe() -> None:
    """Tell Keras, for this whole process, that TensorFlow is unavailable (off the TensorFlow backend,
    when TensorFlow is not imported yet).

    Keras' serialisation answers whether TensorFlow is available by importing it, which makes a model's
    first save slow where TensorFlow is installed (docs/benchmarks.md). Keras layers that need TensorFlow
    break after this, so only the ``aepca`` command's entry point calls it, never the library.
    """
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        return
    from keras.src.utils import module_utils  # Keras' own probe

    if getattr(module_utils.tensorflow, "_available", True) is None:
        module_utils.tensorflow._available = False
