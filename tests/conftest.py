"""Shared fixtures: the bundled MNIST (loaded once), a PCA fitted on all of it, small seeded data.

Nothing here selects a Keras backend or tunes the process: the tests run aepca as a
library user gets it, on ``KERAS_BACKEND`` when whoever runs them set it, else JAX.
"""

from __future__ import annotations

import signal
import textwrap
import time

import numpy as np
import pytest


def make_low_rank(n_samples=400, n_features=10, rank=3, noise=0.05, seed=0, *, scales=None) -> np.ndarray:
    """Seeded float32 data on a ``rank``-dimensional subspace plus isotropic noise.

    ``scales`` (length ``rank``) gives the latent factors distinct variances, so the
    principal directions are well separated and unique up to sign.
    """
    rng = np.random.default_rng(seed)
    scales = np.linspace(3.0, 1.0, rank) if scales is None else np.asarray(scales, dtype=np.float64)
    latent = rng.standard_normal((n_samples, rank)) * scales
    basis, _ = np.linalg.qr(rng.standard_normal((n_features, rank)))
    X = latent @ basis.T + noise * rng.standard_normal((n_samples, n_features))
    return X.astype(np.float32)


@pytest.fixture(scope="session")
def mnist():
    """The bundled, checksum-verified MNIST split (784 features in [0, 1]). Do not mutate."""
    from aepca.data import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="session")
def mnist_pca(mnist):
    """aepca's PCA fitted on all 60,000 training images (k=30; all directions are kept)."""
    from aepca.pca import PCA

    return PCA(n_components=30).fit(mnist.x_train)


@pytest.fixture(scope="session")
def mnist_small(mnist):
    """The first 2,000 training and 300 test images, as float32 copies."""
    return mnist.x_train[:2000].copy(), mnist.x_test[:300].copy()


@pytest.fixture(scope="session")
def low_rank_data():
    """The :func:`make_low_rank` factory, for tests that need other sizes."""
    return make_low_rank


@pytest.fixture
def small_tabular():
    """400 x 10 float32, rank 3 plus noise 0.05, seed 0 (a fresh copy per test)."""
    return make_low_rank()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# A child process running the aepca command (``python -c BLOCKING_CHILD MARKER ARGS...``) that,
# after writing epoch 1's checkpoint, writes MARKER and sleeps until signalled (or until a file
# MARKER.release appears: then it carries on): a test then cannot lose a race to a fast machine,
# and the command's own SIGTERM handling is the one tested.
BLOCKING_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from aepca.checkpoint import Checkpointer

    marker = Path(sys.argv[1])
    release = marker.with_name(marker.name + ".release")
    original = Checkpointer.__call__

    def call(self, epoch, history, snapshot):
        original(self, epoch, history, snapshot)
        if epoch == 1:
            marker.write_text("epoch 1 written")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if release.exists():
                    return
                time.sleep(0.05)
            sys.exit("never signalled")

    Checkpointer.__call__ = call
    from aepca.cli import console
    sys.argv = ["aepca", *sys.argv[2:]]
    console()
""")


def terminate_when(process, ready, what: str, timeout_s: float = 300) -> str:
    """Send SIGTERM to ``process`` once ``ready()`` is true; its stderr once it ended.

    Fails the test if the process ends first or ``what`` did not happen within
    ``timeout_s``; a process still running after 60 s more is killed.
    """
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"the process ended before {what}: {process.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout_s:g} s")
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        return process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
