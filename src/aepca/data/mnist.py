"""The MNIST digits, bundled with the package and verified on every load.

See ``MNIST_PROVENANCE.md`` beside the data file for where the bytes come
from, their licence and how ``scripts/build_mnist.py`` converted them.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from aepca._files import temporary_file
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
    # Hashed through the buffer protocol: .tobytes() would copy the array first.
    return hashlib.sha256(np.ascontiguousarray(array)).hexdigest()


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
    source = "bundled mnist.npz"
    with resources.files("aepca.data").joinpath("mnist.npz").open("rb") as fh:
        arrays = _read_mnist_npz(fh, source)
    verify_mnist_arrays(arrays, source)
    return arrays


def _scaled(images: np.ndarray) -> np.ndarray:
    """``images`` flattened and scaled by 1/255 in one pass (uint8 cast to float32, then multiplied in
    float32), with no full-size temporary."""
    flat = np.empty((len(images), int(np.prod(images.shape[1:]))), np.float32)
    np.multiply(images.reshape(len(images), -1), np.float32(1.0 / 255.0), out=flat, casting="unsafe")
    return flat


def load_mnist(n_train: int | None = None, n_test: int | None = None) -> Dataset:
    """MNIST flattened to 784 features scaled by 1/255, the canonical split.

    ``n_train`` / ``n_test`` keep the first images only (for quick runs).
    """
    return _mnist_dataset(load_mnist_arrays(), n_train, n_test, {})


def _mnist_dataset(arrays: dict[str, np.ndarray], n_train: int | None, n_test: int | None, notes: dict) -> Dataset:
    return Dataset(
        name="mnist",
        x_train=_scaled(arrays["x_train"][:n_train]),
        x_test=_scaled(arrays["x_test"][:n_test]),
        # Copies: the read arrays are read-only views of the inflated bytes.
        y_train=arrays["y_train"][:n_train].copy(),
        y_test=arrays["y_test"][:n_test].copy(),
        image_shape=(28, 28),
        notes={"units": "pixel intensity / 255", **notes},
    )


# The standard IDX file names (yann.lecun.com); some mirrors write ".idx"
# instead of "-idx", and most ship them gzipped.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_UBYTE = 0x08  # IDX type code for unsigned bytes
_CORRUPT_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)
MAX_DOWNLOAD_BYTES = 256 * 2**20  # mnist.npz is ~11 MiB; refuse to fill the disk
_CHUNK_BYTES = 2**20


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse one IDX file of unsigned bytes (optionally gzipped) with ``ndim`` dimensions."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except _CORRUPT_ERRORS as err:
        raise ValueError(f"{path} cannot be read ({err}); it may be truncated or corrupt. Download it again.") from None
    header = 4 + 4 * ndim
    expected_magic = (_IDX_UBYTE << 8) | ndim
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != expected_magic:
        found = "no header" if magic is None else f"magic number 0x{magic:08x}"
        raise ValueError(
            f"{path} has {found}, expected 0x{expected_magic:08x} (IDX, unsigned bytes, {ndim}-D). "
            "It is not this MNIST file, or it is compressed without a .gz extension."
        )
    if len(data) < header:
        raise ValueError(f"{path} ends inside its IDX header; it is truncated. Download it again.")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    size = len(data) - header
    if size != math.prod(shape):
        raise ValueError(
            f"{path}: the IDX header declares shape {shape} ({math.prod(shape)} bytes) but {size} bytes "
            "follow; the file is truncated or corrupt. Download it again."
        )
    # Copy: a frombuffer view of bytes is read-only, unlike the bundled arrays.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _find_idx(folder: Path, stem: str) -> Path:
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, f"{stem}.gz", dotted, f"{dotted}.gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"{folder} has no {stem} or {stem}.gz. Put the four MNIST IDX files "
        f"({', '.join(IDX_FILES.values())}, optionally .gz) in that folder."
    )


def _read_mnist_npz(file, source: str) -> dict[str, np.ndarray]:
    """The MNIST arrays found in a .npz archive (a path or a binary file object)."""
    try:
        with np.load(file, allow_pickle=False) as archive:
            return {name: archive[name] for name in MNIST_SHA256 if name in archive.files}
    except _CORRUPT_ERRORS as err:
        raise ValueError(f"{source} is not a readable .npz file or has a damaged array ({err}); it may be truncated "
                         "or corrupt. Download it again.") from None


def load_mnist_file(path, n_train: int | None = None, n_test: int | None = None) -> Dataset:
    """MNIST from the user's own copy, verified against the bundled checksums.

    ``path`` is the Keras ``mnist.npz`` (arrays ``x_train``, ``y_train``,
    ``x_test``, ``y_test``) or a folder holding the four IDX files
    (``train-images-idx3-ubyte[.gz]`` and so on).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file or folder: {path}. Check the path.")
    if path.is_dir():
        arrays = {name: _read_idx(_find_idx(path, stem), 3 if name.startswith("x") else 1)
                  for name, stem in IDX_FILES.items()}
    elif path.suffix.lower() == ".npz":
        arrays = _read_mnist_npz(path, str(path))
    else:
        raise ValueError(
            f"Received an invalid value for the MNIST path, expected a .npz file or a folder of IDX files. "
            f"Received: {path}. Pass the Keras mnist.npz or the folder that holds the IDX files."
        )
    verify_mnist_arrays(arrays, str(path))
    return _mnist_dataset(arrays, n_train, n_test, {"source": str(path)})


def _copy_limited(response, out, url: str) -> None:
    total = 0
    while chunk := response.read(_CHUNK_BYTES):
        total += len(chunk)
        if total > MAX_DOWNLOAD_BYTES:
            raise ValueError(
                f"{url} sent more than {MAX_DOWNLOAD_BYTES // 2**20} MiB, far more than mnist.npz (~11 MiB). "
                "Check the URL."
            )
        out.write(chunk)


def download_mnist(url: str, dest, *, timeout: float = 30) -> Path:
    """Download a Keras-format ``mnist.npz`` from ``url`` to ``dest`` and verify it.

    The bytes go to a temporary file beside ``dest``, which replaces ``dest``
    atomically only once the checksums match, so ``dest`` is never partial.
    ``dest`` may be a folder (the file is then ``mnist.npz`` inside it).
    Returns the final path.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(
            f"Received an invalid value for url, expected an http:// or https:// URL. Received: url={url!r}. "
            "For a local copy use load_mnist_file(path)."
        )
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / "mnist.npz"
    fd, tmp = temporary_file(dest)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    _copy_limited(response, out, url)
            except urllib.error.HTTPError as err:
                raise ValueError(f"Downloading {url} failed: HTTP {err.code} {err.reason}. Check the URL.") from None
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
                reason = getattr(err, "reason", None) or err
                raise ConnectionError(
                    f"Downloading {url} failed: {reason}. Check the network and the URL, or fetch mnist.npz "
                    "another way and use load_mnist_file(path)."
                ) from None
        verify_mnist_arrays(_read_mnist_npz(tmp, f"download from {url}"), f"download from {url}")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
