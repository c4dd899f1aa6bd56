"""Choose the Keras backend before Keras is first imported, and make it start fast.

JAX is the default because it trained aepca's networks fastest on CPU; a
``KERAS_BACKEND`` set by the user always wins.
"""

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from aepca._deferred import defer_import

DEFAULT_BACKEND = "jax"

# Imported eagerly by optional integrations but used only inside functions:
# scikit-learn reaches scipy.stats from sklearn.base (via sklearn.utils.fixes);
# Keras 3.15 imports pyplot and matplotlib.patches for its image galleries,
# h5py for its legacy .h5 format and requests for its RemoteMonitor callback.
# -X importtime counts ~1.6 s of every start for them (it inflates many small
# imports, so the real saving is less), so aepca registers them as deferred
# modules (aepca._deferred), run on first use by whoever uses them (saving a
# .keras file loads h5py then). scipy.stats is deferred when aepca is imported
# (before any scikit-learn import), the others just before Keras (so that
# plain ``import aepca`` does not load them).
DEFERRED_AT_IMPORT = ("scipy.stats",)
DEFERRED_WITH_KERAS = ("matplotlib.pyplot", "matplotlib.patches", "h5py", "requests")
# Keras' JAX backend imports Pallas' TPU splash-attention kernels for
# dot_product_attention on TPUs, which no aepca network calls: 0.18 s imported
# alone after JAX; in two runs of 16 alternating pairs, aepca's imports took a
# median 0.12 and 0.26 s less with them deferred. Deferred only once JAX is imported,
# so that JAX itself is never a placeholder.
DEFERRED_WITH_JAX_KERAS = tuple(
    f"jax.experimental.pallas.ops.tpu.splash_attention.splash_attention_{part}" for part in ("kernel", "mask")
)

CACHE_ENV = "AEPCA_COMPILATION_CACHE"
CACHE_OFF = ("0", "off", "false", "no")
# Every program is stored, however quick its compile (JAX's default skips
# those under 1 s). The small ones add up: when weight initialisers still
# compiled one program per shape (before aepca._initial_values), caching them
# too took ~0.35 s more off a repeated start (classic network: 1.6-1.8 s from
# fit to the first chunk done at 0.1 s, 1.2-1.4 s at 0), and the weight draw,
# the state copy and the forward pass's blocks are such programs still.
CACHE_MIN_COMPILE_SECONDS = 0.0

Loaded = TypeVar("Loaded")


def set_default_backend() -> None:
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)


def load_keras():
    """Import Keras on aepca's default backend and return the module.

    Every aepca module imports Keras through here, so the backend is chosen
    and the TensorFlow probe below is tamed before any model exists.
    """
    set_default_backend()
    if "keras" not in sys.modules:
        deferred = DEFERRED_WITH_KERAS
        if _backend_in_use() == "jax":
            import jax  # noqa: F401  (Keras imports it next in any case)

            deferred += DEFERRED_WITH_JAX_KERAS
        for name in deferred:
            defer_import(name)
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


def _backend_in_use() -> str:
    """Keras' backend, without importing Keras when it is not loaded yet."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    set_default_backend()
    return os.environ["KERAS_BACKEND"]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aepca" / "jax"


def enable_compilation_cache(directory: "str | os.PathLike | None" = None) -> "Path | None":
    """Keep JAX's compiled programs on disk so later runs skip compilation.

    A repeated run (same network shapes, batch size and JAX version) then
    starts 0.3-1.5 s sooner on CPU (docs/benchmarks.md): the training chunks
    load instead of compiling, and their traces too (``aepca._saved_traces``
    keeps them in the cache's ``aepca-traced`` folder). Returns the directory
    in use, or ``None`` where no cache applies (not the JAX backend, switched
    off, or not writable).

    ``directory`` defaults to ``$AEPCA_COMPILATION_CACHE``, then
    ``$XDG_CACHE_HOME/aepca/jax`` (``~/.cache/aepca/jax``). Setting
    ``AEPCA_COMPILATION_CACHE=off`` switches it off. A cache the user already
    configured in JAX (``JAX_COMPILATION_CACHE_DIR``) is left as it is. Call it
    before anything is compiled: JAX sets its cache up once, at the first
    compilation. Entries are ~200 kB per network shape; the directory may be
    deleted at any time.
    """
    if _backend_in_use() != "jax":
        return None
    import jax

    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return Path(configured)
    setting = os.environ.get(CACHE_ENV, "")
    if directory is None and setting.lower() in CACHE_OFF:
        return None
    path = Path(directory or setting or default_cache_dir()).expanduser()
    try:
        # Private: JAX trusts its cache's contents as code.
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None  # an optimisation only: run uncached rather than fail
    if not os.access(path, os.W_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)
    return path


def load_while_importing(load: Callable[..., Loaded], *args) -> Loaded:
    """``load(*args)``, run on a second thread while this one prepares training.

    Preparing is turning the compilation cache on and importing aepca's
    estimator, which brings in JAX, Keras and scikit-learn: ~2 s of a start,
    nearly all of it holding the GIL. Reading the bundled MNIST (inflating,
    hashing, scaling) lets go of the GIL, so with two cores it is done before
    the imports are. Whatever ``load`` raises is raised here, after them.

    Import the modules ``load`` uses before calling this: imports on the two
    threads take turns with the GIL, and a loader that first imported
    ``aepca.data`` (and pandas with it) itself was done ~0.3 s after the
    libraries instead of ~0.6 s before them.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="aepca-load") as pool:
        loaded = pool.submit(load, *args)
        enable_compilation_cache()
        import aepca.estimator  # noqa: F401

        return loaded.result()
