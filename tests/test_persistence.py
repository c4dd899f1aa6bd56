"""The model folder: models saved by the previous version load, a loaded model carries no old paths,
and a save stopped anywhere leaves the old model or the new one, complete."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from aepca.estimator import Autoencoder, load_model
from aepca.persistence import METADATA_FILE
from conftest import float_tolerance

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_model_saved_by_the_previous_version_gives_the_same_codes():
    # Written by aepca at d036705 (before error spaces and recipes as parameters).
    model = load_model(FIXTURES / "model-d036705")
    X = np.load(FIXTURES / "model-d036705-input.npy")
    # Computed on another CPU: float32 layers of 5 and 4 inputs (encoder), then 2 and 4 (decoder), may
    # round differently, at the inputs' largest magnitude.
    largest = np.abs(X).max()
    np.testing.assert_allclose(model.transform(X), np.load(FIXTURES / "model-d036705-codes.npy"), rtol=0,
                               atol=float_tolerance(np.float32, largest, 5 + 4))
    np.testing.assert_allclose(model.reconstruct(X), np.load(FIXTURES / "model-d036705-reconstruction.npy"), rtol=0,
                               atol=float_tolerance(np.float32, largest, 5 + 4 + 2 + 4))
    assert model.settings_["hidden"] == (4,) and model.settings_["folds"] == 0 and model.network_scale_ == 1.0
    assert model.checkpoint_dir is None  # it was saved with /tmp/somewhere/old-run


def test_a_loaded_model_forgets_the_run_that_made_it(tmp_path):
    X = np.random.default_rng(0).random((100, 4)).astype(np.float32)
    fitted = Autoencoder(2, recipe="classic", hidden=(4,), epochs=1, random_state=0, checkpoint_dir=tmp_path / "ckpt").fit(X)
    fitted.save(tmp_path / "model")
    assert json.loads((tmp_path / "model" / METADATA_FILE).read_text())["params"]["checkpoint_dir"] is None
    assert load_model(tmp_path / "model").checkpoint_dir is None


def test_a_model_saved_under_faults_is_the_old_or_the_new_one_complete(tmp_path, monkeypatch):
    """A fault at every file-system operation of a save (an error instead of it, or Ctrl-C right after
    it): the folder always loads, checked against its weights' digest, as the old model or the new."""
    from test_faults import each_fault, operations_of

    from aepca.persistence import read_model_folder

    X = np.random.default_rng(0).random((60, 4)).astype(np.float32)
    old, new = (Autoencoder(2, recipe="classic", hidden=(4,), epochs=1, random_state=seed).fit(X) for seed in (0, 1))
    path = tmp_path / "model"
    digests = set()
    for model in (new, old):
        model.save(path)
        digests.add(json.loads((path / METADATA_FILE).read_text())["weights_sha256"])
    assert len(digests) == 2

    def complete():
        assert read_model_folder(path)[1]["weights_sha256"] in digests

    n = operations_of(monkeypatch, lambda: new.save(path), check=complete)
    for mode, at, faults in each_fault(monkeypatch, n):
        old.save(path)
        faults.run(lambda: new.save(path))
        assert faults.fired, (mode, at)
        complete()
    # Beside it at most this process's temporary folders, where removing them was the failing step
    # (a later save removes them once this process is gone).
    assert all(f".tmp-{os.getpid()}@" in name for name in os.listdir(tmp_path) if name != "model")


def test_saving_replaces_a_model_folder_but_never_a_folder_of_other_files_or_a_file(tmp_path):
    X = np.random.default_rng(0).random((60, 4)).astype(np.float32)
    model = Autoencoder(2, recipe="classic", hidden=(4,), epochs=1, random_state=0).fit(X)
    model.save(tmp_path / "model")
    model.save(tmp_path / "model")  # a model folder is replaced
    (tmp_path / "empty").mkdir()
    model.save(tmp_path / "empty")
    notes = tmp_path / "data" / "notes.txt"
    notes.parent.mkdir()
    notes.write_text("kept")
    with pytest.raises(ValueError, match=r"Received: .*data, which holds 'notes\.txt'\. Choose another folder"):
        model.save(notes.parent)
    with pytest.raises(ValueError, match=r"Received: .*notes\.txt, a file\."):
        model.save(notes)
    assert os.listdir(notes.parent) == ["notes.txt"] and notes.read_text() == "kept"
    # A folder under a file: named as given, not by a temporary name, and nothing is written.
    with pytest.raises(NotADirectoryError, match=r"^path .*notes\.txt/model: .*notes\.txt is a file, not a folder; choose another path\.$"):
        model.save(notes / "model")
    assert os.listdir(notes.parent) == ["notes.txt"]
