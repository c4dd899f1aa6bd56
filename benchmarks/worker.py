"""One benchmark run, in the fresh process that ``benchmarks/run.py`` starts for it.

Usage (by run.py only): ``python benchmarks/worker.py TASK SPEC_JSON RESULT_PATH`` with
``AEPCA_BENCH_T0`` set to the parent's ``time.time()`` taken just before it spawned this
process, so "seconds since process start" includes interpreter start-up and every import.
The result is written as JSON to RESULT_PATH (stdout is left to the libraries' chatter).

Tasks: ``reference`` (Keras on whatever ``KERAS_BACKEND`` the parent set, the recipe as it is
usually copied), ``classic`` and ``fast`` (aepca's recipes, through its public estimator),
``imports``, ``gemm`` (numpy's and XLA's rate on one layer's product) and
``epoch_pair`` (aepca's classic epoch against the same network in plain JAX).

aepca is driven through its public API only: ``aepca.estimator.Autoencoder``,
``aepca.training.train`` and the documented ``history_``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np

T0 = float(os.environ["AEPCA_BENCH_T0"])
EVAL_BATCH = 8192


def since_start() -> float:
    return time.time() - T0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def load_mnist(spec):
    from aepca.data import load_dataset

    data = load_dataset("mnist", n_train=spec["n_train"], n_test=spec["n_test"])
    return data.x_train, data.x_test


def mse(reconstruction, x) -> float:
    return float(np.mean(np.square(np.asarray(reconstruction, np.float64) - np.asarray(x, np.float64))))


def keras_device(backend: str) -> str:
    """The device Keras computes on for ``backend``: "cpu" or the accelerator's kind."""
    if backend == "jax":
        import jax

        return jax.devices()[0].platform
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if backend == "torch":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return backend


# Training ------------------------------------------------------------------------------
def run_reference(spec) -> dict:
    started = time.perf_counter()
    import keras
    from keras import layers

    import_s = time.perf_counter() - started
    x_train, x_test = load_mnist(spec)
    keras.utils.set_random_seed(spec["seed"])

    class Clock(keras.callbacks.Callback):
        """Per-epoch wall time from the start of fit's loop (validation pass included), and
        when the first epoch ended, in seconds since process start."""

        def __init__(self):
            super().__init__()
            self.first_epoch_done = None
            self.seconds, self.loss, self.val_loss = [], [], []

        def on_train_begin(self, logs=None):
            self.begin = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.begin)
            if self.first_epoch_done is None:
                self.first_epoch_done = since_start()
            self.loss.append(float(logs["loss"]))
            self.val_loss.append(float(logs["val_loss"]))

    clock = Clock()
    fit_start = since_start()
    fit_started = time.perf_counter()
    model = keras.Sequential(
        [
            keras.Input(shape=(784,)),
            layers.Dense(512, activation="elu"),
            layers.Dense(128, activation="elu"),
            layers.Dense(2, activation="linear"),
            layers.Dense(128, activation="elu"),
            layers.Dense(512, activation="elu"),
            layers.Dense(784, activation="sigmoid"),
        ]
    )
    model.compile(loss="mean_squared_error", optimizer=keras.optimizers.Adam())
    model.fit(
        x_train, x_train, batch_size=128, epochs=spec["epochs"], validation_data=(x_test, x_test),
        callbacks=[clock], verbose=0,
    )
    fit_wall_s = time.perf_counter() - fit_started
    final = mse(model.predict(x_test, batch_size=EVAL_BATCH, verbose=0), x_test)
    return {
        "import_s": import_s,
        "fit_start_s": fit_start,
        "first_epoch_done_s": clock.first_epoch_done,
        "first_epoch_done_source": "Keras on_epoch_end callback",
        "compilation_cache": "none",
        "fit_wall_s": fit_wall_s,
        "seconds": clock.seconds,
        "loss": clock.loss,
        "test_mse": clock.val_loss,  # the loss is MSE and validation data is the test set
        "final_test_mse": final,
        "n_params": int(model.count_params()),
        "device": keras_device(keras.backend.backend()),
    }


def run_aepca(spec, recipe_name) -> dict:
    started = time.perf_counter()
    from aepca.compilation_cache import enable_compilation_cache

    # As the `aepca` command does, before anything is compiled. run.py gives each recipe its
    # own folder (AEPCA_COMPILATION_CACHE), empty when the benchmark starts, so its first run
    # compiles everything and its later runs load from it.
    cache = enable_compilation_cache()
    cache_state = "none" if cache is None else "warm" if any(cache.iterdir()) else "cold"
    from aepca.estimator import Autoencoder
    from aepca.recipes import get_recipe

    x_train, x_test = load_mnist(spec)
    import keras  # already imported by aepca, on its backend

    imports_and_mnist_s = time.perf_counter() - started
    recipe = get_recipe(recipe_name)
    estimator = Autoencoder(2, recipe=recipe, epochs=spec["epochs"], random_state=spec["seed"])
    fit_start = since_start()
    fit_started = time.perf_counter()
    estimator.fit(x_train, X_val=x_test if recipe.monitor_test else None)
    fit_end = since_start()
    fit_wall_s = time.perf_counter() - fit_started
    history = estimator.history_
    seconds = list(history["seconds"])
    return {
        "imports_and_mnist_s": imports_and_mnist_s,
        "fit_start_s": fit_start,
        # aepca reports no time of its own inside fit; the first epoch's end is the end of fit
        # less the training time after it (history_["seconds"] is cumulative per epoch).
        "first_epoch_done_s": fit_end - (seconds[-1] - seconds[0]) if seconds else None,
        "first_epoch_done_source": "end of fit minus (seconds[-1] - seconds[0])",
        "compilation_cache": cache_state,
        "fit_wall_s": fit_wall_s,
        "seconds": seconds,
        "loss": history["loss"],
        # Only where the test set was monitored: fast validates on its own split of the training set.
        "test_mse": list(history["val_mse"]) if recipe.monitor_test else [],
        "val_mse": list(history["val_mse"]),
        "final_test_mse": -estimator.score(x_test),
        "n_params": int(estimator.model_.count_params()),
        "device": keras_device(keras.backend.backend()),
    }


# Imports -------------------------------------------------------------------------------
def run_imports(spec) -> dict:
    """Seconds since process start after each group of imports a training run needs, in the
    order aepca loads them (interpreter and numpy come first: this worker imports numpy).
    Keras imports on the backend run.py set in ``KERAS_BACKEND`` (JAX)."""
    import aepca  # noqa: F401

    marks = [("interpreter, numpy, `import aepca`", since_start())]
    import scipy.linalg  # noqa: F401

    marks.append(("scipy", since_start()))
    import sklearn.base  # noqa: F401
    import sklearn.utils.validation  # noqa: F401

    marks.append(("scikit-learn", since_start()))
    import jax  # noqa: F401

    marks.append(("jax, jaxlib", since_start()))
    import keras  # noqa: F401

    marks.append(("keras (with the pandas it imports)", since_start()))
    import aepca.data  # noqa: F401
    import aepca.estimator  # noqa: F401
    import aepca.recipes  # noqa: F401

    marks.append(("aepca's modules", since_start()))
    return {"marks": marks}


# GEMM ------------------------------------------------------------------------------------------
def run_gemm(spec) -> dict:
    m, k, n = spec["shape"]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    for _ in range(50):
        np.matmul(a, b, out=out)
    rates = sampled_gflops(lambda: np.matmul(a, b, out=out), 2.0 * m * k * n, spec["samples"], spec["sample_s"])
    xla_rates = xla_gemm_gflops(m, k, n, spec["samples"], spec["sample_s"])
    # The best sample: a floor should use the fastest rate the hardware actually delivered.
    return {"gflops": float(max(rates)), "gflops_samples": rates,
            "xla_gflops": float(max(xla_rates)), "xla_gflops_samples": xla_rates}


def sampled_gflops(call, flops_per_call: float, samples: int, sample_s: float) -> list[float]:
    """GFLOP/s of ``call`` in each of ``samples`` samples, each calling it for ``sample_s`` seconds."""
    rates = []
    for _ in range(samples):
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < sample_s:
            call()
            calls += 1
        rates.append(flops_per_call * calls / elapsed / 1e9)
    return rates


def xla_gemm_gflops(m, k, n, samples: int, sample_s: float) -> list[float]:
    """XLA's rate on the same product, each call a compiled loop over distinct left-hand
    matrices (so that nothing is hoisted out of it), as inside a training chunk."""
    import jax
    import jax.numpy as jnp

    per_call = 32
    rng = np.random.default_rng(1)
    lefts = jnp.asarray(rng.standard_normal((per_call, m, k), dtype=np.float32))
    right = jnp.asarray(rng.standard_normal((k, n), dtype=np.float32))

    @jax.jit
    def products(lefts, right):
        return jax.lax.scan(lambda carry, a: (carry + jnp.sum(a @ right), None), jnp.float32(0), lefts)[0]

    call = lambda: jax.block_until_ready(products(lefts, right))  # noqa: E731
    call()
    return sampled_gflops(call, 2.0 * m * k * n * per_call, samples, sample_s)


# aepca's epoch against the same network in plain JAX --------------------------------------
def run_epoch_pair(spec) -> dict:
    """Classic-recipe epochs of ``aepca.training.train`` and of the same network written in
    plain JAX (no Keras: dense layers, ELU, sigmoid, MSE and Adam by hand), from the same
    starting weights over the same batches: what aepca's path through Keras costs over the
    compiled program it could at best be. Both run in this one process, aepca's epochs first
    (``train`` runs all of its epochs in one call), then plain JAX's; the first epoch of each
    compiles its program and is not timed."""
    import jax
    import jax.numpy as jnp

    from aepca import training
    from aepca.data import EpochBatches, open_source
    from aepca.models import build_autoencoder

    x_train, _ = load_mnist(spec)
    epochs = spec["epochs"] + 1  # the first of each is compilation
    config = training.TrainConfig(epochs=epochs, batch_size=128, seed=spec["seed"])
    model = build_autoencoder(x_train.shape[1], 2, seed=spec["seed"]).autoencoder
    # Keras' Dense kernels and biases, in layer order: (kernel, bias) per layer, copied
    # before aepca trains the model in place.
    weights = [jnp.array(np.array(v.value)) for v in model.trainable_variables]
    layers = list(zip(weights[0::2], weights[1::2]))

    history = training.train(model, x_train, config=config)
    cumulative = history["seconds"]
    aepca_seconds = [b - a for a, b in zip(cumulative, cumulative[1:])]

    n_layers = len(layers)
    activations = [jax.nn.elu] * n_layers
    activations[n_layers // 2 - 1], activations[-1] = (lambda h: h), jax.nn.sigmoid
    learning_rate, beta_1, beta_2, epsilon = 1e-3, 0.9, 0.999, 1e-7  # Keras' Adam defaults

    def loss(layers, xb):
        h = xb
        for (kernel, bias), activation in zip(layers, activations):
            h = activation(h @ kernel + bias)
        return jnp.mean(jnp.square(h - xb))

    @jax.jit
    def epoch(state, x, batches):
        def step(state, idx):
            layers, m, v, t = state
            value, grads = jax.value_and_grad(loss)(layers, x[idx])
            t = t + 1.0
            m = jax.tree.map(lambda m, g: m + (1 - beta_1) * (g - m), m, grads)
            v = jax.tree.map(lambda v, g: v + (1 - beta_2) * (g * g - v), v, grads)
            size = learning_rate * jnp.sqrt(1 - beta_2**t) / (1 - beta_1**t)
            layers = jax.tree.map(lambda w, m, v: w - size * m / (jnp.sqrt(v) + epsilon), layers, m, v)
            return (layers, m, v, t), value

        return jax.lax.scan(step, state, batches)

    zeros = jax.tree.map(jnp.zeros_like, layers)
    plain_state = (layers, zeros, zeros, jnp.float32(0))
    x_device = jnp.asarray(x_train)
    batch_size = config.batch_size
    plain_seconds, plain_losses = [], []
    for index in range(epochs):
        # The batches aepca's epoch `index` visited (its shuffle is a pure function of seed
        # and epoch); whole batches only (a partial last batch would need aepca's masking).
        started = time.perf_counter()
        positions, weights = EpochBatches(open_source(x_train), seed=config.seed, epoch=index, lanes=1,
                                          batch_size=batch_size).positions()
        order = positions[weights > 0]
        batches = jnp.asarray(order[: (len(order) // batch_size) * batch_size].reshape(-1, batch_size))
        plain_state, losses = epoch(plain_state, x_device, batches)
        plain_losses.append(float(jnp.mean(losses)))  # blocks until the epoch is computed
        if index:
            plain_seconds.append(time.perf_counter() - started)
    return {"seconds": {"aepca": aepca_seconds, "plain_jax": plain_seconds},
            "loss": {"aepca": list(history["loss"]), "plain_jax": plain_losses},
            "steps_per_epoch": training.steps_per_epoch(len(x_train), batch_size), "seed": spec["seed"],
            "order": "aepca's epochs, then plain JAX's", "device": jax.devices()[0].platform}


TASKS = {
    "reference": run_reference,
    "classic": lambda spec: run_aepca(spec, "classic"),
    "fast": lambda spec: run_aepca(spec, "fast"),
    "imports": run_imports,
    "gemm": run_gemm,
    "epoch_pair": run_epoch_pair,
}


def main(task: str, spec_json: str, result_path: str) -> None:
    result = TASKS[task](json.loads(spec_json))
    result["peak_rss_mib"] = peak_rss_mib()
    result["process_s"] = since_start()
    with open(result_path, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main(*sys.argv[1:])
