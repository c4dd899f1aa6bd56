"""The training loop: agreement with plain ``model.fit``, best weights, divergence, config checks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from aepca.data import EpochBatches, open_source
from aepca.models import build_autoencoder
from aepca.pca import PCA
from aepca._keras import keras
from aepca.training import (
    DivergenceError,
    TrainConfig,
    make_optimizer,
    steps_per_epoch,
    train,
)

from aepca.training.fit_runner import KerasFitRunner
from aepca.training.jax_runner import JaxRunner
from conftest import float_tolerance

# 70 rows in batches of 16: the last batch of each epoch is partial (6 rows).
N_ROWS, N_FEATURES, BATCH = 70, 10, 16
# Two programs of the same 10 steps (2 epochs) round differently: each step can add a float32
# rounding to losses and weights of order one.
STEPS_TOLERANCE = float_tolerance(np.float32, 1.0, 2 * math.ceil(N_ROWS / BATCH))


@pytest.fixture
def x(small_tabular):
    return small_tabular[:N_ROWS]


def _tiny_net(seed=0, **kwargs):
    return build_autoencoder(N_FEATURES, 2, hidden=(6,), output_activation="linear", seed=seed, **kwargs)


def _assert_weights_close(a, b, rtol=STEPS_TOLERANCE, atol=STEPS_TOLERANCE):
    assert len(a) == len(b)
    for wa, wb in zip(a, b):
        np.testing.assert_allclose(wa, wb, rtol=rtol, atol=atol)


def _fit_reference(model, x, config):
    """The slow reference: Keras' own ``fit``, fed aepca's shuffles in order."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate), loss="mse")
    losses = []
    for epoch in range(config.epochs):
        positions, weights = EpochBatches(open_source(x), seed=config.seed, epoch=epoch, lanes=1,
                                          batch_size=config.batch_size).positions()
        order = positions[weights > 0]
        result = model.fit(x[order], x[order], batch_size=config.batch_size, epochs=1, shuffle=False, verbose=0)
        losses.append(result.history["loss"][-1])
    return losses


def test_compiled_loop_matches_plain_keras_fit(x):
    config = TrainConfig(epochs=2, batch_size=BATCH, learning_rate=1e-2, seed=3, chunks_per_epoch=2)
    ours, reference = _tiny_net(), _tiny_net()
    initial = ours.autoencoder.get_weights()
    _assert_weights_close(initial, reference.autoencoder.get_weights(), rtol=0, atol=0)

    epochs_seen = []
    history = train(
        ours.autoencoder, x, config=config, progress=True,
        callbacks=(lambda epoch, logs, snapshot: epochs_seen.append((epoch, snapshot().epoch, len(logs["loss"]))),),
    )
    reference_losses = _fit_reference(reference.autoencoder, x, config)

    assert epochs_seen == [(1, 1, 1), (2, 2, 2)]
    np.testing.assert_allclose(history["loss"], reference_losses, rtol=STEPS_TOLERANCE)
    assert history["loss"][1] < history["loss"][0]
    _assert_weights_close(ours.autoencoder.get_weights(), reference.autoencoder.get_weights())
    # Training really moved the weights, so the comparison above means something.
    assert not np.allclose(ours.autoencoder.get_weights()[0], initial[0], atol=1e-3)
    assert history["lr_scale"] == [1.0, 1.0]
    assert len(history["seconds"]) == 2 and history["seconds"][1] >= history["seconds"][0] > 0
    assert history["val_loss"] == [] and "best_val_loss" not in history


def test_keras_fit_runner_matches_the_compiled_loop(x):
    """The path other backends take gives the same numbers (run here on the current backend)."""
    config = TrainConfig(epochs=2, batch_size=BATCH, learning_rate=1e-2, seed=3)
    ours, fallback = _tiny_net(), _tiny_net()
    x_val = x[:20] + 0.5
    history = train(ours.autoencoder, x, x_val=x_val, config=config)
    fallback_history = KerasFitRunner(fallback.autoencoder, open_source(x), x_val, config).run(progress=False, callbacks=(), resume=None)
    for key in ("loss", "val_loss", "val_mse"):
        np.testing.assert_allclose(history[key], fallback_history[key], rtol=STEPS_TOLERANCE)
    _assert_weights_close(ours.autoencoder.get_weights(), fallback.autoencoder.get_weights())


@pytest.mark.parametrize("runner", ["compiled", "keras_fit"])
def test_rows_held_in_memory_train_as_the_same_rows_read_from_a_file(x, runner, tmp_path):
    """Rows in memory stay on the device and others are read as they go, but the batches,
    hence the weights, are the same (one order for every form)."""
    np.save(tmp_path / "x.npy", x)
    streamed = open_source(tmp_path / "x.npy", block_rows=16)
    assert not streamed.in_memory
    config = TrainConfig(epochs=2, batch_size=BATCH, learning_rate=1e-2, seed=3, chunks_per_epoch=2)
    in_memory, from_file = _tiny_net(), _tiny_net()
    if runner == "compiled":
        history = train(in_memory.autoencoder, open_source(x, block_rows=16), config=config)
        expected = train(from_file.autoencoder, streamed, config=config)
    else:
        history = KerasFitRunner(in_memory.autoencoder, open_source(x, block_rows=16), None, config).run(
            progress=False, callbacks=(), resume=None)
        expected = KerasFitRunner(from_file.autoencoder, streamed, None, config).run(progress=False, callbacks=(), resume=None)
    # The same float32 operations on the same batches: equal to a few float32 roundings of the losses' scale.
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=8 * np.finfo(np.float32).eps)
    _assert_weights_close(in_memory.autoencoder.get_weights(), from_file.autoencoder.get_weights(),
                          rtol=64 * np.finfo(np.float32).eps, atol=64 * np.finfo(np.float32).eps)


def test_validation_metrics_match_the_trained_model(x):
    x_val = x[:37] * 1.5  # not a multiple of any batch size: exercises the masked last batch
    net = _tiny_net()
    history = train(net.autoencoder, x, x_val=x_val, config=TrainConfig(epochs=1, batch_size=BATCH, learning_rate=1e-2))
    reconstruction = keras.ops.convert_to_numpy(net.autoencoder(x_val, training=False)).astype(np.float64)
    expected = float(np.mean(np.square(reconstruction - x_val)))
    # A float32 mean of 370 squares, relative to itself.
    rel = float_tolerance(np.float32, 1.0, np.sqrt(x_val.size))
    assert history["val_mse"][0] == pytest.approx(expected, rel=rel)
    assert history["val_loss"][0] == pytest.approx(expected, rel=rel)  # loss="mse"


def test_chunking_does_not_change_the_result(x):
    # 70 steps of one row: split in chunks, the last chunk ends with padding steps that must do nothing.
    results = []
    for chunks in (1, 3):
        net = _tiny_net()
        config = TrainConfig(epochs=1, batch_size=1, learning_rate=1e-3, chunks_per_epoch=chunks)
        results.append((train(net.autoencoder, x, config=config)["loss"], net.autoencoder.get_weights()))
    # Each of the 70 steps may round differently in another chunk.
    tolerance = float_tolerance(np.float32, 1.0, N_ROWS)
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=tolerance)
    _assert_weights_close(results[0][1], results[1][1], rtol=tolerance, atol=tolerance)


def test_restore_best_keeps_the_initial_weights_when_training_only_hurts():
    # Exactly rank-3 data: a PCA-initialised k=3 model starts at zero error, so every step hurts.
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((N_FEATURES, 3)))
    data = (rng.standard_normal((120, 3)) @ basis.T).astype(np.float32)
    x_train, x_val = data[:90], data[90:]
    pca = PCA(n_components=3).fit(x_train)
    net = build_autoencoder(N_FEATURES, 3, hidden=(8,), output_activation="linear", seed=0, pca=(pca.components_, pca.mean_))
    initial = net.autoencoder.get_weights()
    config = TrainConfig(epochs=2, batch_size=BATCH, learning_rate=0.5, restore_best=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # must not be a divergence case
        history = train(net.autoencoder, x_train, x_val=x_val, config=config)
    # Zero up to the square of a float32 reconstruction's rounding (10-term sums).
    assert history["best_val_loss"] < float_tolerance(np.float32, np.abs(x_val).max(), N_FEATURES) ** 2
    # Every epoch ended clearly worse than the start, so the start must be what is kept.
    assert len(history["val_loss"]) == 2
    assert min(history["val_loss"]) > 100 * history["best_val_loss"] + 1e-6
    _assert_weights_close(net.autoencoder.get_weights(), initial, rtol=0, atol=0)


def _rank_3_from_pca():
    """Exactly rank-3 data and a network started at its PCA, with its initial weights: every epoch hurts,
    so patience runs out at once."""
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((N_FEATURES, 3)))
    data = (rng.standard_normal((120, 3)) @ basis.T).astype(np.float32)
    pca = PCA(n_components=3).fit(data[:90])
    net = build_autoencoder(N_FEATURES, 3, hidden=(8,), output_activation="linear", seed=0, pca=(pca.components_, pca.mean_))
    initial = [np.array(v) for v in net.autoencoder.trainable_variables]
    return data, net, initial


def test_running_out_of_patience_anneals_from_the_best_weights(monkeypatch):
    data, net, initial = _rank_3_from_pca()
    started_from, rates = [], []
    run_epoch = JaxRunner.run_epoch

    def recorded(self, epoch, lr_scale, tick):
        started_from.append([self.host(w) for w in self.state()[0]])
        rates.append(lr_scale)
        return run_epoch(self, epoch, lr_scale, tick)

    monkeypatch.setattr(JaxRunner, "run_epoch", recorded)
    config = TrainConfig(epochs=50, batch_size=BATCH, learning_rate=0.5, restore_best=True, patience=2, anneal_epochs=3)
    history = train(net.autoencoder, data[:90], x_val=data[90:], config=config)
    # Two epochs of patience, then three at 1, 2/3 and 1/3 of the scheduled rate, starting from the best (initial) weights.
    assert history["annealed_from"] == 2 and history["stopped_early"] == 5 and len(history["loss"]) == 5
    assert rates == pytest.approx([1, 1, 1, 2 / 3, 1 / 3], rel=float_tolerance(np.float64))
    _assert_weights_close(started_from[2], initial, rtol=0, atol=0)


def test_the_state_kept_when_annealing_starts_is_the_best_weights():
    """What a checkpoint holds (and a diverging next epoch restarts from) as annealing starts:
    the best weights it went back to, not the last epoch's."""
    data, net, initial = _rank_3_from_pca()
    kept = {}
    config = TrainConfig(epochs=50, batch_size=BATCH, learning_rate=0.5, restore_best=True, patience=2, anneal_epochs=3)
    train(net.autoencoder, data[:90], x_val=data[90:], config=config,
          callbacks=(lambda epoch, history, snapshot: kept.setdefault(epoch, snapshot().trainable),))
    _assert_weights_close(kept[2], initial, rtol=0, atol=0)
    assert not all(np.array_equal(a, b) for a, b in zip(kept[1], initial))


def _linear_net():
    return build_autoencoder(N_FEATURES, 3, hidden=(), activation="linear", output_activation="linear", seed=0)


def test_divergence_restores_the_epoch_and_retries_at_a_lower_rate():
    x = np.random.default_rng(0).standard_normal((64, N_FEATURES)).astype(np.float32)
    # At 1e7 the first epoch overflows float32; at 0.1 x that it stays finite.
    net = _linear_net()
    with pytest.warns(RuntimeWarning) as record:
        history = train(net.autoencoder, x, config=TrainConfig(epochs=2, batch_size=BATCH, learning_rate=1e7))
    messages = [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]
    assert messages == [
        "Loss became non-finite in epoch 1; restored the weights from the start of the epoch and "
        "retrying at 0.1 x the learning rate."
    ]
    assert history["lr_scale"] == [0.1, 0.1]
    assert all(math.isfinite(v) for v in history["loss"])
    # The retry restarted from the initial weights: it is the run at 1e6 from the start.
    same = _linear_net()
    expected = train(same.autoencoder, x, config=TrainConfig(epochs=2, batch_size=BATCH, learning_rate=1e6))
    # The same 8 steps in another program: a float32 rounding each, at the (large) weights' scale.
    rtol = float_tolerance(np.float32, 1.0, 2 * math.ceil(len(x) / BATCH))
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=rtol)
    weights = same.autoencoder.get_weights()
    _assert_weights_close(net.autoencoder.get_weights(), weights, rtol=0, atol=rtol * max(np.abs(w).max() for w in weights))


def test_divergence_raises_after_the_bounded_retries():
    x = np.random.default_rng(0).standard_normal((64, N_FEATURES)).astype(np.float32)
    net = _linear_net()
    initial = net.autoencoder.get_weights()
    config = TrainConfig(epochs=2, batch_size=BATCH, learning_rate=1e30, max_divergence_retries=2)
    with pytest.warns(RuntimeWarning) as record:
        with pytest.raises(
            DivergenceError,
            match=r"diverged \(non-finite loss\) in epoch 1 even at 0\.01 x the learning rate 1e\+30\. "
            r"Lower learning_rate or scale the data \(scale='standard'\)\.",
        ):
            train(net.autoencoder, x, config=config)
    retries = [str(w.message) for w in record if "retrying at" in str(w.message)]
    assert [m.split("retrying at ")[1] for m in retries] == ["0.1 x the learning rate.", "0.01 x the learning rate."]
    assert issubclass(DivergenceError, RuntimeError)
    # The model never received the non-finite weights.
    _assert_weights_close(net.autoencoder.get_weights(), initial, rtol=0, atol=0)


def test_cosine_schedule_warms_up_then_decays():
    config = TrainConfig(epochs=4, batch_size=10, learning_rate=0.1, schedule="cosine", warmup_epochs=1, min_lr_fraction=0.1)
    # 10 steps per epoch, 40 in all. Keras keeps the schedule itself in _learning_rate.
    schedule = make_optimizer(config, per_epoch=10)._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    lr = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    assert steps_per_epoch(100, 10) == 10 and steps_per_epoch(101, 10) == 11
    # A few float32 operations (a ratio, a cosine, a product, a sum) at the peak rate's scale.
    rel = float_tolerance(np.float32, 1.0, 4)
    assert lr(0) == pytest.approx(0.0, abs=0.1 * rel)
    assert lr(5) == pytest.approx(0.05, rel=rel)
    assert lr(10) == pytest.approx(0.1, rel=rel)
    assert lr(40) == pytest.approx(0.01, rel=rel)
    constant = make_optimizer(TrainConfig(learning_rate=0.3), per_epoch=10)
    assert float(keras.ops.convert_to_numpy(constant.learning_rate)) == pytest.approx(0.3, rel=float_tolerance(np.float32))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss": "l1"}, r"invalid value for loss, expected one of \['binary_crossentropy', 'mse'\]\. Received: loss='l1'"),
        ({"optimizer": "sgd"}, r"invalid value for optimizer, expected one of \['adam', 'adamw', 'nadam'\]\. Received: optimizer='sgd'"),
        ({"schedule": "step"}, r"invalid value for schedule, expected one of \['constant', 'cosine'\]\. Received: schedule='step'"),
        ({"epochs": 0}, r"invalid value for epochs, expected a positive integer\. Received: epochs=0"),
        ({"batch_size": 2.5}, r"invalid value for batch_size, expected a positive integer\. Received: batch_size=2\.5"),
        ({"chunks_per_epoch": -1}, r"invalid value for chunks_per_epoch, expected a positive integer\. Received: chunks_per_epoch=-1"),
        ({"learning_rate": 0.0}, r"invalid value for learning_rate, expected a positive finite number\. Received: learning_rate=0\.0"),
        ({"learning_rate": math.inf}, r"Received: learning_rate=inf"),
        ({"learning_rate": math.nan}, r"Received: learning_rate=nan"),
        ({"learning_rate": "1e-3"}, r"Received: learning_rate='1e-3'"),
        ({"beta_2": 1.0}, r"invalid value for beta_2, expected a number between 0 and 1 \(exclusive\)\. Received: beta_2=1\.0"),
        ({"beta_2": 0}, r"Received: beta_2=0"),
        ({"anneal_epochs": 0}, r"invalid value for anneal_epochs, expected a positive integer\. Received: anneal_epochs=0"),
    ],
)
def test_train_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "nadam"])
def test_beta_2_reaches_every_optimizer(optimizer):
    assert make_optimizer(TrainConfig(optimizer=optimizer, beta_2=0.95), per_epoch=1).beta_2 == 0.95
    assert make_optimizer(TrainConfig(optimizer=optimizer), per_epoch=1).beta_2 == 0.999


def test_train_config_to_dict_round_trips():
    config = TrainConfig(epochs=3, schedule="cosine", warmup_epochs=0.5)
    assert TrainConfig(**config.to_dict()) == config


def test_a_backend_without_training_gets_a_clear_error(x, monkeypatch):
    net = _tiny_net()
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
    with pytest.raises(ValueError, match=r"trains on the 'jax', 'tensorflow', 'torch' backends; Keras runs on 'numpy'"):
        train(net.autoencoder, x, config=TrainConfig(epochs=1, batch_size=BATCH))


def test_keras_fit_runner_leaves_the_model_uncompiled(x):
    """It fits a twin over the same layers, so the model saves as on JAX."""
    net = _tiny_net()
    runner = KerasFitRunner(net.autoencoder, open_source(x), None, TrainConfig(epochs=1, batch_size=BATCH))
    runner.run_epoch(0, 1.0, lambda steps: None)
    assert not net.autoencoder.compiled and runner.trainer.compiled
    for trained, own in zip(runner.trainer.trainable_variables, net.autoencoder.trainable_variables, strict=True):
        assert trained is own


def test_networks_of_one_structure_share_programs_without_sharing_results(x, monkeypatch):
    """Refits reuse the first fit's compiled programs: another seed or learning rate still trains
    exactly as alone, and a changed structure or schedule gets programs of its own."""
    from collections import OrderedDict

    from aepca import models

    def fit(seed=0, hidden=(8,), **settings):
        net = build_autoencoder(x.shape[1], 2, hidden=hidden, output_activation="linear", seed=seed)
        train(net.autoencoder, x, config=TrainConfig(epochs=2, batch_size=BATCH, seed=seed, **settings))
        return [np.asarray(w) for w in net.autoencoder.get_weights()]

    def alone(**settings):
        monkeypatch.setattr(models, "_PROGRAMS", OrderedDict())
        return fit(**settings)

    expected = {"seed 1": alone(seed=1), "rate 1e-2": alone(learning_rate=1e-2)}
    first = alone()
    programs = len(models._PROGRAMS)
    shared = {"seed 1": fit(seed=1), "rate 1e-2": fit(learning_rate=1e-2)}
    assert len(models._PROGRAMS) == programs
    for name, weights in shared.items():
        for a, b in zip(weights, expected[name], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
        assert not all(np.array_equal(a, b) for a, b in zip(weights, first, strict=True)), name
    fit(hidden=(6,))
    fit(schedule="cosine")
    assert len(models._PROGRAMS) == programs + 4  # each its training and evaluation programs
