"""``KERAS_BACKEND=tensorflow`` and ``KERAS_BACKEND=torch`` work end to end (each in a
subprocess: a backend is fixed per process)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import float_tolerance, forward_roundings

# The package each backend needs, and the environment that keeps it quiet and on the CPU.
BACKENDS = {
    "tensorflow": ("tensorflow", {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}),
    "torch": ("torch", {"CUDA_VISIBLE_DEVICES": ""}),
}


def backend_param(backend):
    package, _ = BACKENDS[backend]
    # find_spec, not importorskip: importing TensorFlow or PyTorch here would cost seconds for nothing.
    missing = importlib.util.find_spec(package) is None
    # The fast suite runs TensorFlow; PyTorch, through the same model.fit path, runs with the slow tests.
    marks = [pytest.mark.skipif(missing, reason=f"{package} is not installed")] + ([pytest.mark.slow] if backend == "torch" else [])
    return pytest.param(backend, marks=marks)


SCRIPT = textwrap.dedent(
    """
    import json, sys, zipfile
    import numpy as np
    import aepca
    from aepca import Autoencoder, load_model
    from aepca.data import low_rank
    from aepca.experiments.compare import compare
    import keras

    rng = np.random.default_rng(0)
    X = (rng.standard_normal((200, 3)) @ rng.standard_normal((3, 10))).astype(np.float32)
    model = Autoencoder(recipe="classic", n_components=2, hidden=(8,), epochs=2, batch_size=32, random_state=0)
    model.fit(X, X_val=X[:50])
    codes = model.transform(X)
    try:
        Autoencoder(recipe="classic", n_components=2, hidden=(8,), epochs=1, batch_size=32, devices=2).fit(X)
        several_devices = None
    except ValueError as error:
        several_devices = str(error)
    loaded = load_model(model.save(sys.argv[1]))
    with zipfile.ZipFile(sys.argv[1] + "/model.keras") as saved:
        saved_config = json.loads(saved.read("config.json"))
    # The whole comparison: validation split, diagnostics and all. The tensors
    # that its predictions and diagnostics read may carry no record for
    # gradients (PyTorch keeps one unless told not to).
    converted = []
    convert_to_numpy = keras.ops.convert_to_numpy
    def recording_convert(x):
        converted.append(bool(getattr(x, "requires_grad", False)))
        return convert_to_numpy(x)
    keras.ops.convert_to_numpy = recording_convert
    comparison = compare(low_rank(n_samples=300, n_features=12, rank=3), recipe="fast", epochs=2, folds=2)
    keras.ops.convert_to_numpy = convert_to_numpy
    print(json.dumps({
        "backend": keras.backend.backend(),
        "package_imported": keras.backend.backend() in sys.modules,
        "codes_shape": list(codes.shape),
        "codes_finite": bool(np.isfinite(codes).all()),
        "loaded_equal": bool(np.array_equal(loaded.transform(X), codes)),
        "saved_backend": json.load(open(sys.argv[1] + "/aepca.json"))["backend"],
        "epochs": len(model.history_["loss"]),
        "val_loss": model.history_["val_loss"],
        "saved_compiled": bool(saved_config.get("compile_config")),
        "compare_mse": [comparison.metrics[key]["test_mse"] for key in ("pca", "autoencoder")],
        "compare_diagnostics": comparison.diagnostics,
        "converted": len(converted),
        "converted_with_gradients": sum(converted),
        "loss": model.history_["loss"],
        "several_devices": several_devices,
        "score": model.score(X),
        "X": X.tolist(),
        "refined_codes": loaded.set_params(refine_steps=20).transform(X).tolist(),
    }))
    """
)


@pytest.mark.parametrize("backend", [backend_param(name) for name in BACKENDS])
def test_fit_transform_save_load_on_another_backend(tmp_path, backend):
    env = {**os.environ, "KERAS_BACKEND": backend, **BACKENDS[backend][1]}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "model")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend and report["saved_backend"] == backend
    assert report["package_imported"]
    assert report["codes_shape"] == [200, 2] and report["codes_finite"]
    assert report["loaded_equal"]
    assert report["epochs"] == 2 and report["loss"][1] < report["loss"][0]
    assert report["several_devices"] == (
        f"Received an invalid value for devices, expected 1 on the {backend!r} backend: training splits batches "
        "over several devices on JAX only. Received: devices=2. Set KERAS_BACKEND=jax or devices=1."
    )
    assert len(report["val_loss"]) == 2 and all(np.isfinite(report["val_loss"]))
    # Trained through a compiled twin: the saved model carries no optimizer or loss, as on JAX.
    assert not report["saved_compiled"]
    assert all(np.isfinite(report["compare_mse"])) and isinstance(report["compare_diagnostics"], list)
    assert report["converted"] > 0 and report["converted_with_gradients"] == 0
    assert report["score"] < 0

    # Code refinement on this backend gives the JAX path's codes for the same saved network.
    if os.environ.get("KERAS_BACKEND", "jax") == "jax":
        from aepca import load_model

        X = np.asarray(report["X"], dtype=np.float32)
        loaded = load_model(tmp_path / "model")
        here = loaded.set_params(refine_steps=20).transform(X)
        # 20 steps, each a pass through the decoder's layers and back, rounding at the codes' size.
        np.testing.assert_allclose(np.asarray(report["refined_codes"]), here, rtol=0, atol=float_tolerance(
            np.float32, max(1.0, np.abs(here).max()), 20 * 2 * forward_roundings(loaded.decoder_)))
