"""The model folder: models saved by the previous version load, and a loaded model carries no old paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aepca.estimator import Autoencoder, load_model
from aepca.persistence import METADATA_FILE

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_model_saved_by_the_previous_version_gives_the_same_codes():
    # Written by aepca at d036705 (before error spaces and recipes as parameters).
    model = load_model(FIXTURES / "model-d036705")
    X = np.load(FIXTURES / "model-d036705-input.npy")
    np.testing.assert_allclose(model.transform(X), np.load(FIXTURES / "model-d036705-codes.npy"), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.reconstruct(X), np.load(FIXTURES / "model-d036705-reconstruction.npy"), rtol=1e-5, atol=1e-4)
    assert model.settings_["hidden"] == (4,) and model.settings_["folds"] == 0 and model.network_scale_ == 1.0
    assert model.checkpoint_dir is None  # it was saved with /tmp/somewhere/old-run


def test_a_loaded_model_forgets_the_run_that_made_it(tmp_path):
    X = np.random.default_rng(0).random((100, 4)).astype(np.float32)
    fitted = Autoencoder(2, recipe="classic", hidden=(4,), epochs=1, random_state=0, checkpoint_dir=tmp_path / "ckpt").fit(X)
    fitted.save(tmp_path / "model")
    assert json.loads((tmp_path / "model" / METADATA_FILE).read_text())["params"]["checkpoint_dir"] is None
    assert load_model(tmp_path / "model").checkpoint_dir is None
