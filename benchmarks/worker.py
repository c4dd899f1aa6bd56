"""One benchmark run, in the fresh process that ``benchmarks/run.py`` starts for it.

Usage (by run.py only): ``python benchmarks/worker.py TASK SPEC_JSON RESULT_PATH`` with
``AEPCA_BENCH_T0`` set to the parent's ``time.time()`` taken just before it spawned this
process, so "seconds since process start" includes interpreter start-up and every import.
The result is written as JSON to RESULT_PATH (stdout is left to the libraries' chatter).

Tasks: ``reference`` (Keras on whatever ``KERAS_BACKEND`` the parent set, the recipe as it is
usually copied), ``classic`` and ``fast`` (aepca's recipes), ``imports``, ``pca``, ``gemm`` (numpy's
and XLA's rate on one layer's product) and ``epoch_pair`` (aepca's classic epoch against the same
network in plain JAX).
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
# The reference's early probe interval: about aepca's chunk (a tenth of an epoch of batch 128).
EARLY_STEPS = 47


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


# Training ------------------------------------------------------------------------------
def run_reference(spec) -> dict:
    started = time.perf_counter()
    import keras
    from keras import layers

    import_s = time.perf_counter() - started
    x_train, x_test = load_mnist(spec)
    keras.utils.set_random_seed(spec["seed"])

    early = EarlyProbe(spec["early_threshold"])

    class Clock(keras.callbacks.Callback):
        """Per-epoch wall time (from the start of fit's loop), when the first batch ended, and
        the early test MSE every EARLY_STEPS batches of the first epoch."""

        def __init__(self):
            super().__init__()
            self.first_step = None
            self.epoch = 0
            self.seconds, self.loss, self.val_loss = [], [], []

        def on_train_begin(self, logs=None):
            self.begin = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.first_step is None:
                self.first_step = since_start()
            if self.epoch == 0 and not early.done and (batch + 1) % EARLY_STEPS == 0:
                early.record(
                    time.perf_counter() - self.begin,
                    lambda: mse(self.model.predict(x_test, batch_size=EVAL_BATCH, verbose=0), x_test),
                )

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.begin - early.spent)
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
    fit_wall_s = time.perf_counter() - fit_started - early.spent
    final = mse(model.predict(x_test, batch_size=EVAL_BATCH, verbose=0), x_test)
    import tensorflow as tf

    return {
        "import_s": import_s,
        "fit_start_s": fit_start,
        "first_step_s": clock.first_step,
        "first_step_steps": 1,
        "compilation_cache": "none",
        "fit_wall_s": fit_wall_s,
        "seconds": clock.seconds,
        "loss": clock.loss,
        "test_mse": clock.val_loss,  # the loss is MSE and validation data is the test set
        "early_test_mse": early.points,
        "final_test_mse": final,
        "n_params": int(model.count_params()),
        "device": "gpu" if tf.config.list_physical_devices("GPU") else "cpu",
    }


def run_aepca(spec, recipe_name) -> dict:
    started = time.perf_counter()
    from aepca._backend import enable_compilation_cache, load_while_importing
    from aepca._memory import set_process_memory_options

    # The process set up as the command line sets it up, MNIST read while the libraries
    # import. run.py gives each recipe a cache folder that is empty when the benchmark
    # starts, so its first run compiles everything and its later runs load from it.
    set_process_memory_options()
    import aepca.data  # noqa: F401  (as the command line does, not on the loading thread)

    x_train, x_test = load_while_importing(load_mnist, spec)
    cache = enable_compilation_cache()  # already on: this only returns its folder
    cache_state = "warm" if cache is not None and any(cache.iterdir()) else "cold"
    import jax

    from aepca import training
    from aepca.estimator import Autoencoder
    from aepca.recipes import get_recipe

    imports_and_mnist_s = time.perf_counter() - started
    stages = {}
    recipe = get_recipe(recipe_name)
    first_step = {}

    early = EarlyProbe(spec["early_threshold"])
    monitored = {}

    class FirstChunkRunner(training._JaxRunner):
        """aepca's runner, timing the stages up to its first compiled chunk of steps done
        and measuring the early test MSE after each chunk of the first epoch.

        The loop only returns to Python once per chunk, so the first chunk's end is the
        earliest point that can be seen from outside; JAX dispatches asynchronously, hence
        the explicit blocks. The first chunk is traced and compiled in two explicit steps
        (what the jitted call does in one) to time them apart; every chunk then runs the
        compiled program.
        """

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # init="auto" may train a second network; its start is not the process's start-up.
            stages.setdefault("runner_ready_s", since_start())
            train_chunk = self._train_chunk
            chunks_per_epoch = self._chunks(0)[0].shape[0]
            compiled = []

            def probed_chunk(*chunk_args):
                began = first_step.setdefault("began", time.perf_counter())
                if not compiled:
                    called, first = since_start(), "trace_s" not in stages
                    lowered = train_chunk.lower(*chunk_args)
                    traced = time.perf_counter()
                    compiled.append(lowered.compile())
                    if first:
                        stages.update(first_chunk_called_s=called, trace_s=traced - began,
                                      compile_s=time.perf_counter() - traced)
                result = jax.block_until_ready(compiled[0](*chunk_args))
                if "at" not in first_step:
                    first_step["at"] = since_start()
                    first_step["steps"] = int(chunk_args[2].shape[0])
                    if spec.get("first_chunk_only"):
                        raise FirstChunkDone
                if len(early.points) < chunks_per_epoch and not early.done:
                    trainable, non_trainable, _ = result[0]
                    early.record(
                        time.perf_counter() - began,
                        lambda: model_mse(self.model, trainable, non_trainable, monitored["x_test"]),
                    )
                else:
                    self._train_chunk = compiled[0]
                return result

            self._train_chunk = probed_chunk

    # A private name, patched here only: if it is renamed this fails loudly rather than
    # silently reporting no start-up time.
    assert hasattr(training, "_JaxRunner"), "aepca.training._JaxRunner is gone; update benchmarks/worker.py"
    training._JaxRunner = FirstChunkRunner

    probe = TestProbe(x_test) if not recipe.monitor_test else None

    class Benchmarked(Autoencoder):
        def _train(self, net, X, train_rows, X_monitor, seed):
            monitored["x_test"] = self.scaler_.transform(x_test)
            callbacks = (probe.bind(net.autoencoder, self.scaler_),) if probe else ()
            n_train = len(X) if train_rows is None else len(train_rows)
            return training.train(
                net.autoencoder, X, rows=train_rows, x_val=X_monitor, config=self._train_config(seed, n_train),
                callbacks=callbacks,
            )

    def start_up() -> dict:
        return {
            "fit_start_s": fit_start,
            "first_step_s": first_step.get("at"),
            "first_step_steps": first_step.get("steps"),
            "stages": {**stages, "fit_start_s": fit_start, "first_step_s": first_step.get("at")},
            "compilation_cache": cache_state,
        }

    estimator = Benchmarked(2, recipe=recipe, epochs=spec["epochs"], random_state=spec["seed"])
    fit_start = since_start()
    fit_started = time.perf_counter()
    try:
        estimator.fit(x_train, X_val=x_test if recipe.monitor_test else None)
    except FirstChunkDone:
        return start_up()
    probe_s = (probe.total_s if probe else 0.0) + early.spent
    fit_wall_s = time.perf_counter() - fit_started - probe_s
    history = estimator.history_
    # The early probes all ran inside the first epoch; the epoch probe ran after each epoch's
    # clock reading, so epoch k's cumulative time holds the probes of epochs before it.
    epoch_probes = probe.seconds if probe else [0.0] * len(history["seconds"])
    seconds = [s - early.spent - sum(epoch_probes[:k]) for k, s in enumerate(history["seconds"])]
    test_mse = probe.mse if probe else history["val_mse"]
    return {
        "imports_and_mnist_s": imports_and_mnist_s,
        **start_up(),
        "fit_wall_s": fit_wall_s,
        "seconds": seconds,
        "loss": history["loss"],
        "test_mse": test_mse,
        "val_mse": history["val_mse"],
        "test_mse_source": "benchmark probe after each epoch (excluded from times)" if probe else "history_['val_mse'] on the test set",
        "probe_s": probe_s,
        "early_test_mse": early.points,
        "final_test_mse": -estimator.score(x_test),
        "n_params": int(estimator.model_.count_params()),
        "device": jax.default_backend(),
    }


class FirstChunkDone(Exception):
    """Ends a start-up-only run (spec ``first_chunk_only``) once its first chunk is done."""


def model_mse(model, trainable, non_trainable, x) -> float:
    """Test MSE of a Keras model at the given weights (stateless, so training is undisturbed)."""
    squared = 0.0
    for start in range(0, len(x), EVAL_BATCH):
        xb = x[start : start + EVAL_BATCH]
        reconstruction, _ = model.stateless_call(trainable, non_trainable, xb, training=False)
        squared += float(np.sum(np.square(np.asarray(reconstruction, np.float64) - xb)))
    return squared / x.size


class EarlyProbe:
    """The test MSE at a finer grain than epochs early in training, until it falls below a
    threshold; its own time is kept in ``spent`` and left out of every time reported."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.points: list[tuple[float, float]] = []  # (training seconds so far, test MSE)
        self.spent = 0.0
        self.done = False

    def record(self, elapsed: float, measure) -> None:
        started = time.perf_counter()
        value = measure()
        self.points.append((elapsed - self.spent, value))
        self.done = value < self.threshold
        self.spent += time.perf_counter() - started


class TestProbe:
    """An aepca epoch callback measuring the test MSE of the current weights, and its own cost."""

    def __init__(self, x_test):
        self.x_test = x_test
        self.mse, self.seconds = [], []

    def bind(self, model, scaler):
        self.model, self.x = model, scaler.transform(self.x_test)
        return self

    def __call__(self, epoch, logs, snapshot):
        started = time.perf_counter()
        state = snapshot()
        self.mse.append(model_mse(self.model, state.trainable, state.non_trainable, self.x))
        self.seconds.append(time.perf_counter() - started)

    @property
    def total_s(self) -> float:
        return float(sum(self.seconds))


# Imports -------------------------------------------------------------------------------
def run_imports(spec) -> dict:
    """Seconds since process start after each group of imports a training run needs, in the
    order aepca loads them (interpreter and numpy come first: this worker imports numpy)."""
    import aepca  # noqa: F401  (registers its deferred imports first, as any aepca run does)

    marks = [("interpreter, numpy", since_start())]
    import scipy.linalg  # noqa: F401

    marks.append(("scipy", since_start()))
    import sklearn.base  # noqa: F401
    import sklearn.utils.validation  # noqa: F401

    marks.append(("scikit-learn", since_start()))
    import jax  # noqa: F401

    marks.append(("jax, jaxlib", since_start()))
    from aepca._backend import load_keras

    load_keras()
    marks.append(("keras (with the pandas it imports)", since_start()))
    import aepca.data  # noqa: F401
    import aepca.estimator  # noqa: F401
    import aepca.recipes  # noqa: F401

    marks.append(("aepca's modules", since_start()))
    return {"marks": marks}


# PCA and GEMM --------------------------------------------------------------------------
def run_pca(spec) -> dict:
    started = time.perf_counter()
    if spec["impl"] == "aepca":
        from aepca.pca import PCA

        pca = PCA(2)
    else:
        from sklearn.decomposition import PCA

        pca = PCA(2, svd_solver="full")
    import_s = time.perf_counter() - started
    x_train, x_test = load_mnist(spec)
    dtype = np.dtype(spec["dtype"])
    x_train, x_test = x_train.astype(dtype, copy=False), x_test.astype(dtype, copy=False)
    started = time.perf_counter()
    pca.fit(x_train)
    fit_s = time.perf_counter() - started
    return {
        "import_s": import_s,
        "fit_s": fit_s,
        "test_mse": mse(pca.inverse_transform(pca.transform(x_test)), x_test),
    }


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
    """Classic-recipe epochs of aepca's training runner and of the same network written in
    plain JAX (no Keras: dense layers, ELU, sigmoid, MSE and Adam by hand), alternating in
    one process from the same weights and over the same batches: what aepca's path through
    Keras costs over the compiled program it could at best be."""
    import jax
    import jax.numpy as jnp

    from aepca import training
    from aepca.models import build_autoencoder

    x_train, _ = load_mnist(spec)
    config = training.TrainConfig(batch_size=128, seed=spec["seed"])
    model = build_autoencoder(x_train.shape[1], 2, seed=spec["seed"]).autoencoder
    runner = training._JaxRunner(model, x_train, None, config)
    # Keras' Dense kernels and biases, in layer order: (kernel, bias) per layer.
    weights = [jnp.asarray(v.value) for v in model.trainable_variables]
    layers = list(zip(weights[0::2], weights[1::2]))
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
    steps = training.steps_per_epoch(len(x_train), config.batch_size)

    def plain_epoch(index):
        nonlocal plain_state
        order = runner.epoch_order(index)
        # Whole batches only (a partial last batch would need the runner's masking).
        batches = jnp.asarray(order[: (len(order) // config.batch_size) * config.batch_size].reshape(-1, config.batch_size))
        plain_state, losses = epoch(plain_state, x_device, batches)
        return float(jnp.mean(losses))

    def aepca_epoch(index):
        return runner.run_epoch(index, 1.0, lambda steps: None)

    seconds = {"aepca": [], "plain_jax": []}
    losses = {"aepca": [], "plain_jax": []}
    contenders = {"aepca": aepca_epoch, "plain_jax": plain_epoch}
    for index in range(spec["epochs"] + 1):
        # The first epoch of each compiles (or loads) its program: run, not timed.
        names = list(contenders) if index % 2 == 0 else list(reversed(contenders))
        for name in names:
            started = time.perf_counter()
            value = contenders[name](index)
            if index:
                seconds[name].append(time.perf_counter() - started)
            losses[name].append(value)
    return {"seconds": seconds, "loss": losses, "steps_per_epoch": steps, "seed": spec["seed"],
            "device": jax.default_backend()}


TASKS = {
    "reference": run_reference,
    "classic": lambda spec: run_aepca(spec, "classic"),
    "fast": lambda spec: run_aepca(spec, "fast"),
    "imports": run_imports,
    "pca": run_pca,
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
