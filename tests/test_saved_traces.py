"""Traced training programs saved on disk (``aepca._saved_traces``): the same
training whether traced, saved or loaded, and a different file whenever the
traced program could differ."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from aepca import _saved_traces
from aepca.models import build_autoencoder
from aepca.training import TrainConfig, train

import keras  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "jax") != "jax", reason="the JAX training path only")

CONFIG = TrainConfig(epochs=2, batch_size=16, learning_rate=1e-2, seed=3, chunks_per_epoch=2)


@pytest.fixture
def x(small_tabular):
    return small_tabular[:70]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Saved traces go to a folder of this test's own (``None``: not saved)."""
    chosen = {"folder": tmp_path / "traced"}
    monkeypatch.setattr(_saved_traces, "saved_traces_folder", lambda: chosen["folder"])
    return chosen


@pytest.fixture
def exports(monkeypatch):
    """The names of the functions traced for saving, in order."""
    import jax

    calls = []
    export = jax.export.export

    def counted(function, *args, **kwargs):
        calls.append(function.__wrapped__.__name__)
        return export(function, *args, **kwargs)

    monkeypatch.setattr(jax.export, "export", counted)
    return calls


def trained(x, seed=0, activation="elu", config=CONFIG):
    net = build_autoencoder(x.shape[1], 2, hidden=(6,), activation=activation, output_activation="linear", seed=seed)
    history = train(net.autoencoder, x, x_val=x[:20], config=config)
    return net.autoencoder.get_weights(), history


def saved_files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_saved_trace_trains_exactly_like_a_fresh_trace(x, folder, exports):
    folder["folder"], traced_dir = None, folder["folder"]
    fresh_weights, fresh_history = trained(x)
    assert not exports

    folder["folder"] = traced_dir
    saved_weights, saved_history = trained(x)
    assert exports == ["train_chunk", "eval_batch"] and len(saved_files(traced_dir)) == 2
    loaded_weights, loaded_history = trained(x)
    assert len(exports) == 2, "the second run traced again instead of loading the saved programs"

    for name, history in (("saved", saved_history), ("loaded", loaded_history)):
        assert history["loss"] == fresh_history["loss"], name
        assert history["val_loss"] == fresh_history["val_loss"], name
    for fresh, saved, loaded in zip(fresh_weights, saved_weights, loaded_weights, strict=True):
        np.testing.assert_array_equal(saved, fresh)
        np.testing.assert_array_equal(loaded, fresh)


def test_starting_values_and_optimizer_numbering_share_a_saved_trace(x, folder, exports):
    trained(x, seed=0)
    trained(x, seed=1)  # other initializer seeds; Keras names this optimizer adam_1
    assert exports == ["train_chunk", "eval_batch"] and len(saved_files(folder["folder"])) == 2


@pytest.mark.parametrize(
    "change",
    [
        {"activation": "tanh"},
        {"config": TrainConfig(**{**CONFIG.to_dict(), "loss": "binary_crossentropy"})},
        {"config": TrainConfig(**{**CONFIG.to_dict(), "beta_2": 0.99})},
        {"config": TrainConfig(**{**CONFIG.to_dict(), "batch_size": 8})},
        {"config": TrainConfig(**{**CONFIG.to_dict(), "schedule": "cosine"})},
    ],
    ids=["activation", "loss", "optimizer", "shapes", "schedule"],
)
def test_anything_the_trace_reads_gets_its_own_file(x, folder, exports, change):
    trained(x)
    trained(x, **change)
    assert exports.count("train_chunk") == 2 and len(saved_files(folder["folder"])) == len(exports)


def test_other_code_gets_its_own_file(x, folder, exports, monkeypatch):
    trained(x)
    loaded_code = _saved_traces._loaded_code
    monkeypatch.setattr(_saved_traces, "_loaded_code", lambda: [*loaded_code(), ("keras.edited", "dense.py", (1, 2))])
    trained(x)
    assert exports == ["train_chunk", "eval_batch"] * 2 and len(saved_files(folder["folder"])) == 4


def scaled_elu(x):
    return keras.activations.elu(x) * 1.5


def test_code_from_outside_the_traced_packages_is_never_saved(x, folder, exports):
    assert scaled_elu.__module__.partition(".")[0] not in _saved_traces.TRACED_PACKAGES
    weights, _ = trained(x, activation=scaled_elu)
    assert not exports and saved_files(folder["folder"]) == []
    assert all(np.isfinite(w).all() for w in weights)


def test_an_unreadable_saved_trace_is_traced_again_and_replaced(x, folder, exports):
    expected, _ = trained(x)
    for saved in folder["folder"].iterdir():
        saved.write_bytes(b"not a program")
    weights, _ = trained(x)
    assert exports == ["train_chunk", "eval_batch"] * 2
    assert all(saved.stat().st_size > len(b"not a program") for saved in folder["folder"].iterdir())
    for got, want in zip(weights, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_an_unwritable_folder_trains_unsaved(x, folder, exports, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    folder["folder"] = blocker / "traced"
    weights, _ = trained(x)
    assert exports == ["train_chunk", "eval_batch"] and not (blocker / "traced").exists()
    assert all(np.isfinite(w).all() for w in weights)


def test_traces_are_saved_only_beside_a_local_jax_cache(tmp_path):
    assert _saved_traces.folder_beside(None) is None
    assert _saved_traces.folder_beside(str(tmp_path)) == tmp_path / _saved_traces.FOLDER
    assert _saved_traces.folder_beside("gs://bucket/cache") is None


def test_without_flatbuffers_training_runs_unsaved(x, folder, exports, monkeypatch):
    """jax.export needs flatbuffers to write a program; JAX does not require it."""
    monkeypatch.setitem(sys.modules, "flatbuffers", None)  # import flatbuffers now fails
    monkeypatch.delitem(sys.modules, "jax._src.export.serialization", raising=False)
    _, history = trained(x)
    assert not exports and saved_files(folder["folder"]) == []
    assert len(history["loss"]) == CONFIG.epochs and all(np.isfinite(history["loss"]))
