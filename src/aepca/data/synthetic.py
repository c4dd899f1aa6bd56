"""Synthetic data sets with a known intrinsic dimension.

Each generator returns a :class:`Dataset` split 80/20 by a seeded shuffle.
"""

from __future__ import annotations

import numbers

import numpy as np

from aepca.data._dataset import Dataset
from aepca.data.readers import split_dataset
from aepca.validation import invalid_value

IMAGE_SIDE = 28


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise invalid_value(
            name, f"an integer >= {minimum}", f"{name}={value!r}", f"Pass a whole number of at least {minimum}."
        )
    return int(value)


def _check_noise(noise) -> float:
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not noise >= 0 or not np.isfinite(noise):
        raise invalid_value("noise", "a finite number >= 0", f"noise={noise!r}", "Use e.g. 0.05.")
    return float(noise)


def low_rank(
    n_samples: int = 5000, n_features: int = 50, rank: int = 5, noise: float = 0.1, seed: int = 0
) -> Dataset:
    """Gaussian data on a random ``rank``-dimensional subspace plus isotropic noise.

    PCA's home ground: with ``noise=0`` ``rank`` components reconstruct it
    exactly. Labels are the first latent coordinate (for colouring plots).
    """
    n_samples = _check_int("n_samples", n_samples, 10)
    n_features = _check_int("n_features", n_features, 2)
    rank = _check_int("rank", rank, 1)
    noise = _check_noise(noise)
    if rank >= n_features:
        raise invalid_value(
            "rank", f"rank < n_features={n_features}", f"rank={rank}", "Lower rank or add features."
        )
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_samples, rank))
    basis, _ = np.linalg.qr(rng.standard_normal((n_features, rank)))  # orthonormal columns
    X = latent @ basis.T + noise * rng.standard_normal((n_samples, n_features))
    notes = {"units": "arbitrary (unit-variance latent factors)", "intrinsic_dimension": rank, "noise_std": noise}
    return split_dataset("low_rank", X, latent[:, 0].astype(np.float32), seed, notes=notes)


def _manifold(name: str, make, n_samples: int, noise: float, seed: int, **kwargs) -> Dataset:
    n_samples = _check_int("n_samples", n_samples, 10)
    X, t = make(n_samples, noise=_check_noise(noise), random_state=seed, **kwargs)
    notes = {"units": "arbitrary (scikit-learn generator)", "intrinsic_dimension": 2,
             "labels": "position along the manifold (colour)"}
    return split_dataset(name, X, t.astype(np.float32), seed, feature_names=("x", "y", "z"), notes=notes)


def s_curve(n_samples: int = 5000, noise: float = 0.05, seed: int = 0) -> Dataset:
    """scikit-learn's S-curve: a 2-D sheet bent in 3-D, labelled by its main coordinate."""
    from sklearn.datasets import make_s_curve  # here: only this data set needs it

    return _manifold("s_curve", make_s_curve, n_samples, noise, seed)


def swiss_roll(n_samples: int = 5000, noise: float = 0.05, seed: int = 0, hole: bool = False) -> Dataset:
    """scikit-learn's Swiss roll: a 2-D sheet rolled up in 3-D, labelled by its roll coordinate."""
    from sklearn.datasets import make_swiss_roll

    return _manifold("swiss_roll", make_swiss_roll, n_samples, noise, seed, hole=hole)


# Curves stay this far from the border so the anti-aliased stroke is never cut.
_MARGIN = 2.0
_CURVE_SAMPLES = 128
_STROKE_RADIUS = 1.5  # pixels; ink falls from 1 at 0.5 px to 0 at 1.5 px


def _curve_points(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3, 2)`` random points whose quadratic through them stays inside the image."""
    low, high = _MARGIN, IMAGE_SIDE - 1 - _MARGIN
    points = np.empty((n, 3, 2))
    todo = np.arange(n)
    while todo.size:  # rejection sampling: a few rounds, not a loop per image
        candidates = rng.uniform(low, high, size=(todo.size, 3, 2))
        path = _quadratic_through(candidates, np.linspace(0.0, 1.0, _CURVE_SAMPLES))
        inside = ((path >= low) & (path <= high)).all(axis=(1, 2))
        points[todo[inside]] = candidates[inside]
        todo = todo[~inside]
    return points


def _quadratic_through(points: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points ``(n, len(t), 2)`` on the parabola through P0 (t=0), P1 (t=1/2), P2 (t=1)."""
    p0, p1, p2 = points[:, 0, None], points[:, 1, None], points[:, 2, None]
    control = 2.0 * p1 - 0.5 * (p0 + p2)  # Bezier control point that puts P1 at t=1/2
    t = t[None, :, None]
    return (1 - t) ** 2 * p0 + 2 * t * (1 - t) * control + t**2 * p2


def _render(paths: np.ndarray) -> np.ndarray:
    """Anti-aliased strokes: each pixel's ink depends on its distance to the nearest curve sample."""
    n, k, _ = paths.shape
    paths = paths.astype(np.float32)
    offsets = np.arange(-2, 3, dtype=np.int32)
    centre = np.rint(paths).astype(np.int32)  # (n, k, 2) as (x, y)
    cols = centre[..., 0, None, None] + offsets[None, :]  # (n, k, 1, 5)
    rows = centre[..., 1, None, None] + offsets[:, None]  # (n, k, 5, 1)
    # Squared offsets per axis (float32: int32 - float32 would promote to
    # float64), broadcast to the (n, k, 5, 5) patch only once.
    dx = cols.astype(np.float32) - paths[..., 0, None, None]
    dy = rows.astype(np.float32) - paths[..., 1, None, None]
    dist = np.sqrt(np.square(dx) + np.square(dy))
    ink = np.minimum(np.maximum(np.float32(_STROKE_RADIUS) - dist, 0.0), 1.0)
    flat = (np.arange(n, dtype=np.int64)[:, None, None, None] * IMAGE_SIDE + rows) * IMAGE_SIDE + cols
    images = np.zeros(n * IMAGE_SIDE * IMAGE_SIDE, dtype=np.float32)
    np.maximum.at(images, np.broadcast_to(flat, ink.shape).ravel(), ink.ravel())
    return images.reshape(n, IMAGE_SIDE * IMAGE_SIDE)


def curves(n_samples: int = 25000, seed: int = 0) -> Dataset:
    """The "curves" images of Hinton & Salakhutdinov (Science, 2006), regenerated.

    Approximate: built from the paper's description, not its files. Each
    28x28 image in [0, 1] shows a smooth curve (here the parabola) through
    three random 2-D points, so the set has intrinsic dimension 6. The
    default 25,000 images split into the paper's 20,000 training images and
    5,000 test images.
    """
    n_samples = _check_int("n_samples", n_samples, 10)
    rng = np.random.default_rng(seed)
    points = _curve_points(n_samples, rng)
    t = np.linspace(0.0, 1.0, _CURVE_SAMPLES)
    chunk = 2048  # bounds the (chunk, samples, 5, 5) temporaries
    images = np.concatenate(
        [_render(_quadratic_through(points[i : i + chunk], t)) for i in range(0, n_samples, chunk)]
    )
    notes = {
        "units": "ink intensity in [0, 1]",
        "intrinsic_dimension": 6,
        "provenance": (
            "approximate: regenerated from the paper's description (Hinton & Salakhutdinov, "
            "Science 2006: curves through three random 2-D points), not the original files"
        ),
    }
    return split_dataset("curves", images, None, seed, image_shape=(IMAGE_SIDE, IMAGE_SIDE), notes=notes)


def embeddings(
    n_samples: int = 100_000, n_features: int = 384, latent_dim: int = 16, noise: float = 0.01, seed: int = 0
) -> Dataset:
    """Unit-length "sentence embeddings": a smooth nonlinear map of a
    ``latent_dim``-dimensional Gaussian latent into ``n_features`` dimensions
    (a random one-hidden-layer tanh network), plus noise, each row normalised
    to length 1. Every column has the same small spread (about
    ``1 / sqrt(n_features)``), as in real embedding stores. Labels are the
    first latent coordinate.
    """
    n_samples = _check_int("n_samples", n_samples, 10)
    n_features = _check_int("n_features", n_features, 2)
    latent_dim = _check_int("latent_dim", latent_dim, 1)
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    width = 4 * max(latent_dim, 16)
    lift = rng.standard_normal((latent_dim, width)) * (1.5 / np.sqrt(latent_dim))
    offset = rng.uniform(-1.0, 1.0, width)
    mix = rng.standard_normal((width, n_features)) / np.sqrt(width)
    latent = rng.standard_normal((n_samples, latent_dim))
    X = np.tanh(latent @ lift + offset) @ mix + noise * rng.standard_normal((n_samples, n_features))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    notes = {"units": "embedding coordinates (rows of length 1)", "intrinsic_dimension": latent_dim, "noise_std": noise}
    return split_dataset("embeddings", X, latent[:, 0].astype(np.float32), seed, notes=notes)
