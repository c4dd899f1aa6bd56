"""``KERAS_BACKEND=tensorflow`` works end to end (in a subprocess: a backend is fixed per process)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# find_spec, not importorskip: importing TensorFlow here would cost seconds for nothing.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="the tensorflow extra is not installed")

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import aepca
    from aepca import Autoencoder, load_model
    import keras

    rng = np.random.default_rng(0)
    X = (rng.standard_normal((200, 3)) @ rng.standard_normal((3, 10))).astype(np.float32)
    model = Autoencoder(n_components=2, hidden=(8,), epochs=2, batch_size=32, random_state=0).fit(X)
    codes = model.transform(X)
    loaded = load_model(model.save(sys.argv[1]))
    print(json.dumps({
        "backend": keras.backend.backend(),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "codes_shape": list(codes.shape),
        "codes_finite": bool(np.isfinite(codes).all()),
        "loaded_equal": bool(np.array_equal(loaded.transform(X), codes)),
        "saved_backend": json.load(open(sys.argv[1] + "/aepca.json"))["backend"],
        "epochs": len(model.history_["loss"]),
        "loss": model.history_["loss"],
        "score": model.score(X),
        "X": X.tolist(),
        "refined_codes": loaded.set_params(refine_steps=20).transform(X).tolist(),
    }))
    """
)


def test_fit_transform_save_load_on_tensorflow(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "model")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "tensorflow" and report["saved_backend"] == "tensorflow"
    assert report["tensorflow_imported"]
    assert report["codes_shape"] == [200, 2] and report["codes_finite"]
    assert report["loaded_equal"]
    assert report["epochs"] == 2 and report["loss"][1] < report["loss"][0]
    assert report["score"] < 0

    # Code refinement on TensorFlow gives the JAX path's codes for the same saved network.
    if os.environ.get("KERAS_BACKEND", "jax") == "jax":
        from aepca import load_model

        X = np.asarray(report["X"], dtype=np.float32)
        here = load_model(tmp_path / "model").set_params(refine_steps=20).transform(X)
        np.testing.assert_allclose(np.asarray(report["refined_codes"]), here, rtol=1e-4, atol=1e-4)
