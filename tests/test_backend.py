"""Start-up helpers in ``aepca._backend``: deferred imports and the compilation cache.

Each case runs in a fresh interpreter: both act on a process's first import or compile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

jax_only = pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "jax") != "jax", reason="JAX's cache only")


def run_python(code: str, **env) -> dict:
    environment = {k: v for k, v in os.environ.items() if k not in ("AEPCA_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    environment.update(env, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=environment, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


DEFERRED = ("scipy.stats", "matplotlib", "matplotlib.pyplot", "matplotlib.patches", "h5py", "requests")


def test_start_up_defers_unused_modules_until_used(tmp_path):
    report = run_python(
        f"""
        import json, sys
        import numpy as np
        import aepca.estimator, aepca.data  # Keras, scikit-learn and the data sets
        kinds = {{name: type(sys.modules[name]).__name__ for name in {DEFERRED!r}}}
        not_imported = "sklearn.datasets" not in sys.modules
        import scipy.stats
        half = float(scipy.stats.norm.cdf(0.0))
        # Saving and loading a model use h5py: it loads then.
        x = np.random.default_rng(0).random((20, 4)).astype(np.float32)
        fitted = aepca.estimator.Autoencoder(1, recipe="classic", hidden=(3,), epochs=1, random_state=0).fit(x)
        loaded = aepca.load_model(fitted.save({str(tmp_path / "model")!r}))
        same = bool(np.array_equal(loaded.transform(x), fitted.transform(x)))
        print(json.dumps({{"kinds": kinds, "not_imported": not_imported, "half": half, "same": same,
                          "loaded": {{name: type(sys.modules[name]).__name__ for name in ("scipy.stats", "h5py")}}}}))
        """
    )
    assert report["kinds"] == dict.fromkeys(DEFERRED, "_DeferredModule")
    assert report["not_imported"]
    assert report["half"] == 0.5 and report["same"]
    assert report["loaded"] == {"scipy.stats": "module", "h5py": "module"}


@jax_only
def test_tpu_attention_kernels_are_deferred_on_jax_and_still_work_when_used():
    report = run_python(
        """
        import json, sys
        import aepca.estimator
        from aepca._backend import DEFERRED_WITH_JAX_KERAS
        kinds = [type(sys.modules[name]).__name__ for name in DEFERRED_WITH_JAX_KERAS]
        from keras.src.backend.jax import nn
        mask = nn.splash_attention_mask.CausalMask(shape=(4, 4))
        print(json.dumps({"kinds": kinds, "mask": mask.shape,
                          "after": [type(sys.modules[name]).__name__ for name in DEFERRED_WITH_JAX_KERAS]}))
        """
    )
    assert report["kinds"] == ["_DeferredModule", "_DeferredModule"]
    assert report["mask"] == [4, 4]
    assert report["after"][1] == "module"


def test_modules_imported_before_keras_stay_as_they_are():
    report = run_python(
        """
        import json, sys
        import scipy.stats
        import aepca.estimator
        print(json.dumps({"kind": type(sys.modules["scipy.stats"]).__name__}))
        """
    )
    assert report["kind"] == "module"


CACHED_FIT = """
    import json, os, sys
    import numpy as np
    from aepca import _backend
    directory = _backend.enable_compilation_cache({directory})
    from aepca import Autoencoder
    X = np.random.default_rng(0).random((128, 6)).astype(np.float32)
    model = Autoencoder(recipe="classic", n_components=2, hidden=(4,), epochs=2, batch_size=32, random_state=0).fit(X)
    print(json.dumps({{"directory": None if directory is None else str(directory),
                      "files": sorted(os.listdir(directory)) if directory else [],
                      "codes": model.transform(X).tolist()}}))
"""


@jax_only
def test_compilation_cache_is_written_then_reused_with_identical_results(tmp_path):
    first = run_python(CACHED_FIT.format(directory="None"), AEPCA_COMPILATION_CACHE=str(tmp_path / "c"))
    assert first["directory"] == str(tmp_path / "c")
    assert any(name.startswith("jit_train_chunk") for name in first["files"]), first["files"]
    assert "aepca-traced" in first["files"]  # the chunk's trace, saved beside it (aepca._saved_traces)
    second = run_python(CACHED_FIT.format(directory="None"), AEPCA_COMPILATION_CACHE=str(tmp_path / "c"))
    training_programs = lambda run: [n for n in run["files"] if n.startswith(("jit_train_chunk", "jit__uniform"))]  # noqa: E731
    assert training_programs(second) == training_programs(first)  # loaded, not compiled again
    assert second["codes"] == first["codes"]


@jax_only
def test_compilation_cache_is_off_when_switched_off_or_unwritable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    report = run_python(
        f"""
        import json, jax, os
        from aepca._backend import enable_compilation_cache
        answers = {{}}
        for setting in ("off", "0", "OFF"):
            os.environ["AEPCA_COMPILATION_CACHE"] = setting
            answers[setting] = enable_compilation_cache()
        answers["unwritable"] = enable_compilation_cache({str(blocker / "cache")!r})
        answers["jax_setting"] = jax.config.jax_compilation_cache_dir
        print(json.dumps(answers))
        """
    )
    assert report == {"off": None, "0": None, "OFF": None, "unwritable": None, "jax_setting": None}


@jax_only
def test_compilation_cache_leaves_a_users_jax_setting_alone(tmp_path):
    report = run_python(CACHED_FIT.format(directory=repr(str(tmp_path / "mine"))),
                        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "users"))
    assert report["directory"] == str(tmp_path / "users")
    assert not (tmp_path / "mine").exists()


def test_compilation_cache_does_not_apply_to_other_backends(monkeypatch):
    from aepca import _backend

    monkeypatch.setattr(_backend, "_backend_in_use", lambda: "tensorflow")
    assert _backend.enable_compilation_cache("/nonexistent/never-created") is None


def test_load_while_importing_loads_on_a_second_thread_and_raises_its_errors(tmp_path):
    report = run_python(
        """
        import json, sys, threading
        from aepca._backend import load_while_importing

        def load(n):
            return {"n": n, "thread": threading.current_thread() is not threading.main_thread()}

        def fail():
            raise ValueError("unreadable file")

        loaded = load_while_importing(load, 3)
        ready = {"estimator": "aepca.estimator" in sys.modules,
                 "cache": sys.modules["jax"].config.jax_compilation_cache_dir if "jax" in sys.modules else None}
        try:
            load_while_importing(fail)
        except ValueError as error:
            raised = str(error)
        print(json.dumps({"loaded": loaded, "ready": ready, "raised": raised}))
        """,
        AEPCA_COMPILATION_CACHE=str(tmp_path / "cache"),
    )
    assert report["loaded"] == {"n": 3, "thread": True}
    expected_cache = str(tmp_path / "cache") if os.environ.get("KERAS_BACKEND", "jax") == "jax" else None
    assert report["ready"] == {"estimator": True, "cache": expected_cache}
    assert report["raised"] == "unreadable file"
