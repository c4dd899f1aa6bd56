"""The MNIST digits, bundled with the package and verified on every load.

See ``MNIST_PROVENANCE.md`` beside the data file for where the bytes come
from, their licence and how ``scripts/build_mnist.py`` converted them.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np

from aepca.data._dataset import Dataset

# First 16 hex digits of the SHA-256 of each C-contiguous array.
MNIST_SHA256 = {
    "x_train": "741c988805d008ac",
    "y_train": "1feba77c54802fa5",
    "x_test": "6d87418db22cc802",
    "y_test": "ddeff807876a9661",
}
SHAPES = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (10000, 28, 28), "y_test": (10000,)}


def array_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def verify_mnist_arrays(arrays: dict[str, np.ndarray], source: str) -> None:
    """Raise ``ValueError`` unless the four arrays are exactly canonical MNIST."""
    for name, prefix in MNIST_SHA256.items():
        if name not in arrays:
            raise ValueError(f"{source} has no array {name!r}; expected {sorted(MNIST_SHA256)}.")
        array = arrays[name]
        if array.shape != SHAPES[name] or array.dtype != np.uint8:
            raise ValueError(
                f"{source}: {name} has shape {array.shape} and dtype {array.dtype}, "
                f"expected {SHAPES[name]} uint8."
            )
        if not array_digest(array).startswith(prefix):
            raise ValueError(
                f"{source}: {name} does not match the canonical MNIST checksum "
                f"(SHA-256 starting {prefix}); the file is corrupt or a different data set."
            )


def load_mnist_arrays() -> dict[str, np.ndarray]:
    """The bundled uint8 arrays, checksum-verified."""
    with resources.files("aepca.data").joinpath("mnist.npz").open("rb") as fh:
        with np.load(fh, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in MNIST_SHA256}
    verify_mnist_arrays(arrays, "bundled mnist.npz")
    return arrays


def load_mnist(n_train: int | None = None, n_test: int | None = None) -> Dataset:
    """MNIST flattened to 784 features scaled by 1/255, the canonical split.

    ``n_train`` / ``n_test`` keep the first images only (for quick runs).
    """
    arrays = load_mnist_arrays()
    scale = np.float32(1.0 / 255.0)
    x_train = arrays["x_train"][:n_train].reshape(-1, 784).astype(np.float32) * scale
    x_test = arrays["x_test"][:n_test].reshape(-1, 784).astype(np.float32) * scale
    return Dataset(
        name="mnist",
        x_train=x_train,
        x_test=x_test,
        y_train=arrays["y_train"][:n_train],
        y_test=arrays["y_test"][:n_test],
        image_shape=(28, 28),
        notes={"units": "pixel intensity / 255"},
    )
