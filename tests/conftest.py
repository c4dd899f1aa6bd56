"""Shared fixtures: the bundled MNIST (loaded once), a PCA fitted on all of it, small seeded data.

The tests run aepca as a library user gets it, on ``KERAS_BACKEND`` when whoever runs
them set it, else on JAX, as a user sets it (:func:`pytest_configure`, which also has XLA
compile the fast suite faster).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (seeded by each test's name): the suite passes or
# fails by the code alone. To explore further: --hypothesis-profile=default --hypothesis-seed=N.
settings.register_profile("aepca", derandomize=True, database=None)
settings.load_profile("aepca")


# Compiling is most of the fast suite's time and its computations are small: XLA compiles them at its
# lowest optimisation level with its classic code generator for fusions (docs/CONVENTIONS.md: 4:06 ->
# 2:50). Slow tests train for long, 60% slower so compiled, and keep XLA's defaults.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
# Under pytest-xdist the workers are the parallelism: each computes on one thread, instead of every
# worker's XLA and OpenBLAS thread pools contending for the same cores (docs/CONVENTIONS.md: -14%).
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false"
ONE_THREAD_BLAS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def pytest_configure(config):
    """``KERAS_BACKEND=jax`` unless set, the fast suite's XLA_FLAGS, and one thread per pytest-xdist
    worker, set before Keras, JAX and the workers start, so workers and child processes inherit them;
    what whoever runs the tests set, even an empty XLA_FLAGS, is kept (.ci/run reruns the numerical
    modules on XLA's defaults)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    workers = getattr(config.option, "numprocesses", None)
    one_thread = isinstance(workers, int) and workers > 1
    if config.getoption("markexpr") == "not slow":
        os.environ.setdefault("XLA_FLAGS", FAST_COMPILE + (f" {ONE_THREAD_XLA}" if one_thread else ""))
    if one_thread:
        for variable in ONE_THREAD_BLAS:
            os.environ.setdefault(variable, "1")
    # The commands the tests run keep JAX's compiled programs in a temporary folder, not in the user's
    # ~/.cache (aepca.compilation_cache), unless whoever runs the tests chose one: a folder per worker
    # (two processes writing one program at once get a warning from JAX), set before modules are read.
    from aepca.compilation_cache import CACHE_ENV

    if CACHE_ENV not in os.environ and (hasattr(config, "workerinput") or not one_thread):
        folder = tempfile.mkdtemp(prefix="aepca-tests-jax-")
        os.environ[CACHE_ENV] = folder
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


@pytest.fixture(scope="session", autouse=True)
def keras_without_its_tensorflow_probe():
    """Each worker's first model save would import TensorFlow to recognise its types (4 s): skipped, as
    the command skips it (persistence.skip_tensorflow_probe). Saving with the probe, and Keras layers
    that need TensorFlow, are tested in fresh interpreters (test_library_behaviour)."""
    from aepca.persistence import skip_tensorflow_probe

    skip_tensorflow_probe()


def xla_flags(devices: int = 1) -> str:
    """The XLA_FLAGS of a child process with ``devices`` CPU devices, compiling as this one does."""
    flags = [flag for flag in os.environ.get("XLA_FLAGS", "").split()
             if not flag.startswith("--xla_force_host_platform_device_count")]
    return " ".join(flags + ([f"--xla_force_host_platform_device_count={devices}"] if devices > 1 else []))


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


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """Every test leaves the process's SIGINT and SIGTERM handlers as it found them: the command's
    entry point, run in-process by some tests, sets handlers meant for a process about to end, and
    a later test's Ctrl-C would then end the test worker."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in handlers.items():
        if handler is not None:
            signal.signal(signum, handler)


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


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


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


# Tolerances ------------------------------------------------------------------------------------
# Results that take another path (another BLAS kernel, block size, device count) round differently.
# Every floating-point assertion allows for that, by an amount derived from the dtype, the data's
# scale and the operation (docs/CONVENTIONS.md), never "exactly zero".
ROUNDING_MARGIN = 4.0


def float_tolerance(dtype, scale=1.0, n_ops=1.0):
    """The rounding error of a computation in ``dtype``: ``4 * n_ops * eps(dtype) * scale``.

    ``scale`` is the size of the values that meet in the computation (the data's largest
    magnitude; for a sum of squares, their mean), not of the result: an error left after a
    projection cancels far below its own rounding error. ``scale=1`` gives a relative tolerance;
    an array of scales gives one tolerance per value.
    ``n_ops`` counts the roundings whose errors can add up: ``m`` for a short sum or dot product
    of ``m`` terms (the worst case), ``sqrt(m)`` for a long one, such as a sum over rows or over
    hundreds of features (independent rounding errors grow like a random walk, Higham and Mary
    2019, and NumPy and BLAS sum in blocks). The factor 4 covers the few roundings around them
    (a subtraction, a square, a division) and the two sides of the comparison.
    """
    return ROUNDING_MARGIN * float(n_ops) * float(np.finfo(dtype).eps) * np.asarray(scale, dtype=np.float64)[()]


def direction_sensitivity(eigenvalues, k=None) -> float:
    """How much the first ``k`` eigenvectors of a symmetric matrix move per relative rounding error
    of the matrix: its largest eigenvalue over the smallest gap that separates one of them from
    its neighbours (Davis-Kahan). Pass it as ``scale`` to :func:`float_tolerance`."""
    values = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1]
    k = len(values) if k is None else k
    gaps = -np.diff(values[: k + 1])
    return float(values[0] / gaps.min())


class PCARounding(NamedTuple):
    """What two PCA fits of the same rows may differ by when they add in other orders.

    ``mean``: sums over ``sqrt(n)`` rows of values up to the data's largest magnitude.
    ``variance``: the scatter's rounding (``sqrt(n)`` rows, then ``d`` terms in the eigensolver) at
    the largest eigenvalue (Weyl), times how much an offset magnifies centred values' errors.
    ``direction``: that over the smallest gap among the first ``k`` eigenvalues (Davis-Kahan).
    ``codes``: a code of a row moves with its direction, and rounds in a ``d``-term dot product.
    """

    mean: float
    variance: float
    direction: float
    codes: float


def pca_rounding(X: np.ndarray, k: int | None = None, eigenvalues=None) -> PCARounding:
    """The :class:`PCARounding` of fits of ``X`` (of its covariance's ``eigenvalues``, when known),
    read without copies of ``X`` (MNIST's is 60,000 x 784)."""
    X = np.asarray(X)
    n, d = X.shape
    mean = X.mean(axis=0, dtype=np.float64)
    low, high = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
    largest, spread = max(high.max(), -low.min()), max((high - mean).max(), (mean - low).max())
    if eigenvalues is None:
        eigenvalues = np.linalg.eigvalsh(np.cov(X, rowvar=False))
    n_ops, offset = np.sqrt(n) + d, largest / spread
    # The scatter's products are in the rows' precision.
    precision = np.float32 if X.dtype == np.float32 else np.float64
    direction = float_tolerance(precision, direction_sensitivity(eigenvalues, k) * offset, n_ops)
    # The longest centred row is at most the longest row plus the mean.
    longest = float(np.sqrt(np.einsum("ij,ij->i", X, X).max())) + float(np.linalg.norm(mean))
    return PCARounding(
        mean=float_tolerance(precision, largest, np.sqrt(n)),
        variance=float_tolerance(precision, np.max(eigenvalues) * offset, n_ops),
        direction=direction,
        codes=direction * longest + float_tolerance(np.float64, largest, d),
    )


def mse_tolerance(X: np.ndarray, mean: np.ndarray, weights=None, k: int = 0, direction: float = 0.0) -> float:
    """What an error curve of ``X`` may be off by. The total sum of squares about ``mean`` minus the
    captured one cancels, so it keeps the total's rounding (``d`` terms per row, ``sqrt(n)`` rows);
    ``k`` directions each off by ``direction`` move the captured share by up to ``2 k direction``."""
    n, d = X.shape
    mean_square = np.mean(np.square(np.asarray(X, dtype=np.float64) - mean) * (1.0 if weights is None else weights))
    return float_tolerance(np.float64, mean_square, d * np.sqrt(n)) + 2 * k * direction * mean_square


def scaled_tolerance(X, offset, scale) -> np.ndarray:
    """What each column of ``(X - offset) / scale`` computed in float32 may be off by, against float64,
    in scaled units: the offset's rounding to float32 at its own size, and the subtraction's, the
    scale's and the division's at the result's (at most ``|X - offset| / scale``)."""
    X = np.asarray(X, dtype=np.float64)
    return float_tolerance(np.float32, (np.abs(offset) + 3 * np.abs(X - offset).max(axis=0)) / scale)


def pca_start_rounding(X, offset, scale) -> np.ndarray:
    """What each column of a float32 PCA reconstruction (a network at its PCA start) of rows ``X`` may
    be off by, in the error space ``(X - offset) / scale``: the float32 scaling (:func:`scaled_tolerance`),
    then codes and reconstructions of ``d + 1`` terms each at the scaled rows' largest magnitude."""
    Z = (np.asarray(X, dtype=np.float64) - offset) / scale
    return scaled_tolerance(X, offset, scale) + float_tolerance(np.float32, np.abs(Z).max(), 2 * (Z.shape[1] + 1))


def adam_drift(learning_rate, steps, beta_1=0.9, beta_2=0.999) -> float:
    """The most ``steps`` Adam steps can move one weight, whatever the gradients.

    Step ``t`` moves it by ``learning_rate * sqrt(1 - beta_2**t) / (1 - beta_1**t) * |m_t| / sqrt(v_t)``
    (plus Keras' epsilon, which only shrinks it), and over the past gradients Cauchy-Schwarz gives
    ``|m_t| / sqrt(v_t) <= (1 - beta_1) / sqrt((1 - beta_2) (1 - beta_1**2 / beta_2))``. A test of
    starting weights can so train briefly and allow this, instead of a learning rate that rounds away.
    """
    t = np.arange(1, steps + 1)
    ratio = (1.0 - beta_1) / np.sqrt((1.0 - beta_2) * (1.0 - beta_1**2 / beta_2))
    return float(learning_rate * ratio * np.sum(np.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t)))


def forward_roundings(keras_model) -> int:
    """The roundings one output of a Keras model adds up: the inputs of every Dense kernel on its way."""
    return int(sum(np.shape(w)[0] for w in keras_model.get_weights() if np.ndim(w) == 2))


def optimizer_steps(estimator, n_rows: int) -> int:
    """The most optimizer steps a fitted ``Autoencoder``'s network took on ``n_rows`` training rows."""
    return len(estimator.history_["loss"]) * int(np.ceil(n_rows / estimator.settings_["batch_size"]))


def mse_shift(mse, delta) -> float:
    """How far an MSE of ``mse`` can move when each reconstructed value moves by at most ``delta``
    (one bound, or one per value): ``2 sqrt(mse) rms(delta) + ms(delta)`` (Cauchy-Schwarz)."""
    mean_square = float(np.mean(np.square(delta)))
    return 2.0 * float(np.sqrt(mse * mean_square)) + mean_square


def assert_within(actual, desired, tolerance, err_msg: str = "") -> None:
    """Assert ``|actual - desired| < tolerance`` elementwise. ``tolerance`` broadcasts (one per
    column, say), which ``np.testing.assert_allclose``'s single ``atol`` does not; NaN fails."""
    difference = np.abs(np.asarray(actual, dtype=np.float64) - np.asarray(desired, dtype=np.float64))
    np.testing.assert_array_less(difference, np.broadcast_to(tolerance, difference.shape), err_msg=err_msg)
