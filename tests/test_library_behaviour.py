"""Importing and using aepca changes nothing outside aepca; the command tunes its own process only.

The process-wide facts are read in fresh interpreters, where aepca is the first to import Keras.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

import aepca.cli
import aepca.compilation_cache

jax_only = pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "jax") != "jax", reason="JAX's cache only")
# One worker runs the module, so its fresh-interpreter fixture runs once (pytest-xdist's loadgroup).
pytestmark = pytest.mark.xdist_group("library_behaviour")


def run_python(code: str, *, keras_home, **env) -> dict:
    """``code`` run in a fresh interpreter without any aepca or Keras setting; its last line, as JSON."""
    removed = ("KERAS_BACKEND", "AEPCA_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR")
    environment = {k: v for k, v in os.environ.items() if k not in removed}
    environment.update(env, KERAS_HOME=str(keras_home), PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=environment, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


USE_AEPCA = """
    import json, os, subprocess, sys
    import jax, numpy as np

    def process_state():
        finders = [f"{type(finder).__module__}.{type(finder).__qualname__}" for finder in sys.meta_path]
        return {"meta_path": finders, "environ": dict(os.environ),
                "jax": {name: repr(value) for name, value in jax.config.values.items()}}

    before = process_state()
    from aepca import Autoencoder, load_model
    x = np.random.default_rng(0).random((64, 5)).astype(np.float32)
    model = Autoencoder(2, hidden=(4,), epochs=1, random_state=0).fit(x)
    codes = model.transform(x)
    loaded = load_model(model.save(sys.argv[1]))
    after = process_state()
    import keras, matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('KERAS_BACKEND'))"],
                           capture_output=True, text=True).stdout.strip()
    print(json.dumps({
        "before": before, "after": after,
        "same_codes": bool(np.array_equal(loaded.transform(x), codes)),
        "aepca_module_types": sorted(name for name, module in sys.modules.items()
                                     if module is not None and not name.startswith("aepca")
                                     and type(module).__module__.startswith("aepca")),
        "backend": keras.backend.backend(),
        "string_lookup": np.asarray(keras.layers.StringLookup(vocabulary=["a", "b"])(np.array(["b", "a", "c"]))).tolist(),
        "pyplot_backend": plt.get_backend(),
        "child_keras_backend": child,
    }))
"""


THIRD_PARTY_IMPORTS = """
    import json, os, sys
    environ, finders = dict(os.environ), list(sys.meta_path)
    import keras, h5py  # on keras.json's JAX
    try:
        import tensorflow
    except ImportError:
        pass
    print(json.dumps({"environ": {k: v for k, v in os.environ.items() if environ.get(k) != v},
                      "meta_path": [f"{type(f).__module__}.{type(f).__qualname__}" for f in sys.meta_path if f not in finders]}))
"""


@pytest.fixture(scope="module")
def used(tmp_path_factory):
    """What a fresh interpreter saw around fitting, transforming, saving and loading a tiny model,
    and what importing Keras and the libraries Keras imports to save (TensorFlow, where installed,
    and h5py) changes by itself."""
    folder = tmp_path_factory.mktemp("use")
    # A user who chose JAX in Keras' configuration file, not in the environment.
    (folder / "keras-home").mkdir()
    (folder / "keras-home" / "keras.json").write_text(json.dumps({"backend": "jax"}))
    code = USE_AEPCA.replace("sys.argv[1]", repr(str(folder / "model")))
    # The two interpreters side by side: each spends most of its time importing TensorFlow.
    with ThreadPoolExecutor(2) as pool:
        used, third_party = pool.map(lambda script: run_python(script, keras_home=folder / "keras-home"),
                                     (code, THIRD_PARTY_IMPORTS))
    return {**used, "third_party": third_party}


def test_using_aepca_leaves_the_process_as_it_was(used):
    assert used["same_codes"]
    third_party = used["third_party"]
    assert sorted(used["after"]["meta_path"]) == sorted(used["before"]["meta_path"] + third_party["meta_path"])
    assert used["after"]["environ"] == {**used["before"]["environ"], **third_party["environ"]}
    assert used["after"]["jax"] == used["before"]["jax"]
    assert used["aepca_module_types"] == []


def test_aepca_uses_keras_configured_backend_and_exports_nothing_to_child_processes(used):
    assert used["backend"] == "jax"
    assert used["child_keras_backend"] == "None"


def test_keras_layers_needing_tensorflow_still_work(used):
    assert used["string_lookup"] == [2, 1, 0]


def test_matplotlib_backend_can_still_be_chosen(used):
    assert used["pyplot_backend"] == "svg"


BACKEND_CHOICE = """
    import json, sys
    if sys.argv[1] == "keras first":
        import keras
    from aepca.backend import backend_name
    from aepca._keras import keras
    print(json.dumps({"aepca": backend_name(), "keras": keras.backend.backend()}))
"""


@pytest.mark.parametrize(
    ("case", "env", "expected"),
    [
        ("aepca first", {}, "numpy"),  # keras.json's, as Keras chooses
        ("aepca first", {"KERAS_BACKEND": "jax"}, "jax"),
        ("keras first", {}, "numpy"),  # Keras imported already
    ],
)
def test_backend_is_the_one_keras_chooses(tmp_path, case, env, expected):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "numpy"}))
    report = run_python(BACKEND_CHOICE.replace("sys.argv[1]", repr(case)), keras_home=tmp_path, **env)
    assert report == {"aepca": expected, "keras": expected}
    assert json.loads((tmp_path / "keras.json").read_text()) == {"backend": "numpy"}


MISSING_BACKEND = """
    import json, sys
    sys.modules["tensorflow"] = None  # as where TensorFlow is not installed
    try:
        from aepca._keras import keras
    except ImportError as error:
        print(json.dumps({"error": str(error)}))
"""


def test_a_backend_keras_chose_but_is_not_installed_is_named_with_the_fix(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "tensorflow"}))
    assert run_python(MISSING_BACKEND, keras_home=tmp_path) == {"error": (
        "Keras is set to the tensorflow backend (keras.json or Keras' default), which is not installed. Set "
        "KERAS_BACKEND=jax before Keras is first imported (JAX comes with aepca and trains fastest), or install "
        "aepca[tensorflow].")}


COMMAND_PROCESS = """
    import json, sys
    import jax, numpy as np
    from aepca import cli
    hits = []
    jax.monitoring.register_event_listener(lambda event, **_: hits.append(event) if "cache_hits" in event else None)
    sys.argv = ["aepca", "encode", "no-such-model", "no-such-data.csv", "--out", "codes.npy"]
    try:
        cli.console()  # tunes the process, then refuses the missing model
    except SystemExit:
        pass
    from aepca import Autoencoder, models  # Keras, on the backend the command chose
    X = np.random.default_rng(0).random((128, 6)).astype(np.float32)
    fit = lambda: Autoencoder(2, recipe="classic", hidden=(4,), epochs=2, batch_size=32, random_state=0).fit(X)
    first = fit()
    first.save(sys.argv[1])
    hits_first = len(hits)
    # Compiled programs forgotten in memory: the second fit must find them on disk.
    jax.clear_caches()
    models._PROGRAMS.clear()
    second = fit()
    print(json.dumps({"tensorflow_imported": "tensorflow" in sys.modules, "cache": jax.config.jax_compilation_cache_dir,
                      "hits": [hits_first, len(hits) - hits_first],
                      "same_codes": bool(np.array_equal(first.transform(X), second.transform(X)))}))
"""


@jax_only
def test_the_command_caches_compilations_and_saves_without_importing_tensorflow(tmp_path):
    code = COMMAND_PROCESS.replace("sys.argv[1]", repr(str(tmp_path / "model")))
    report = run_python(code, keras_home=tmp_path, AEPCA_COMPILATION_CACHE=str(tmp_path / "cache"))
    assert (report["tensorflow_imported"], report["cache"]) == (False, str(tmp_path / "cache"))
    first_hits, second_hits = report["hits"]
    assert first_hits == 0 and second_hits > 0  # the second fit loads its programs
    assert report["same_codes"]


@pytest.mark.parametrize(
    ("argv", "tuned"),
    [(["--help"], False), (["--version"], False), (["compare", "--code-dim", "0"], False),
     (["encode", "no-such-model", "data.csv", "--out", "codes.npy"], True)],
)
def test_the_command_tunes_its_process_once_its_arguments_are_valid(monkeypatch, capsys, argv, tuned):
    calls = []
    monkeypatch.setattr(aepca.cli, "tune_command_process", lambda: calls.append(True))
    monkeypatch.setattr(sys, "argv", ["aepca", *argv])
    with pytest.raises(SystemExit):
        aepca.cli.console()
    assert calls == ([True] if tuned else [])


@jax_only
@pytest.mark.parametrize("setting", ["off", "0", "OFF"])
def test_compilation_cache_can_be_switched_off(monkeypatch, setting):
    import jax

    monkeypatch.setenv("AEPCA_COMPILATION_CACHE", setting)
    assert aepca.compilation_cache.enable_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir is None


@jax_only
def test_an_unwritable_compilation_cache_is_skipped(tmp_path):
    import jax

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert aepca.compilation_cache.enable_compilation_cache(blocker / "cache") is None
    assert jax.config.jax_compilation_cache_dir is None


@jax_only
def test_compilation_cache_leaves_a_users_jax_setting_alone(tmp_path):
    import jax

    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "users"))
    try:
        assert aepca.compilation_cache.enable_compilation_cache(tmp_path / "mine") == tmp_path / "users"
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
    assert not (tmp_path / "mine").exists()


@jax_only
def test_programs_left_without_their_access_time_are_dropped_from_the_cache(tmp_path):
    """JAX's size bound reads each program's access time: one left without it (a run killed between
    JAX's two writes) would make every later write fail, so the cache drops such programs."""
    import jax

    (tmp_path / "kept-cache").write_bytes(b"program")
    (tmp_path / "kept-atime").write_bytes(bytes(8))
    (tmp_path / "unfinished-cache").write_bytes(b"program")
    try:
        assert aepca.compilation_cache.enable_compilation_cache(tmp_path) == tmp_path
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith(".")) == ["kept-atime", "kept-cache"]


def test_compilation_cache_does_not_apply_to_other_backends(monkeypatch):
    monkeypatch.setattr(aepca.compilation_cache, "backend_name", lambda: "tensorflow")
    assert aepca.compilation_cache.enable_compilation_cache("/nonexistent/never-created") is None
