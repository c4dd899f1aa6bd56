"""Training with every batch split across devices: the steps of one device.

JAX fixes its device count when it starts, so the two-device runs happen in a
subprocess with two CPU devices (``--xla_force_host_platform_device_count``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from aepca.cli import EXIT_USAGE, main
from aepca.estimator import Autoencoder
from aepca.training import TrainConfig, train
from conftest import float_tolerance, xla_flags

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from aepca import Autoencoder, load_model
    from aepca.training import jax_runner
    from aepca.models import build_autoencoder
    from aepca.training import TrainConfig, train

    meshes = []
    data_parallel_mesh = jax_runner.data_parallel_mesh
    def recording_mesh(n_devices):
        mesh = data_parallel_mesh(n_devices)
        meshes.append(0 if mesh is None else mesh.size)
        return mesh
    jax_runner.data_parallel_mesh = recording_mesh

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((710, 4)) @ rng.standard_normal((4, 12))).astype(np.float32)
    # 710 rows in batches of 16 from two lanes of 8 rows: 45 steps, the last one partial, run as
    # two chunks of 23 steps, the last step of the second a padding step. The batches depend on
    # the lanes (by default the devices), so both runs read two.
    histories, weights = {}, {}
    for devices in (1, 2):
        net = build_autoencoder(12, 2, hidden=(8,), output_activation="linear", seed=0)
        config = TrainConfig(epochs=3, batch_size=16, learning_rate=1e-2, devices=devices, lanes=2)
        histories[devices] = train(net.autoencoder, x, x_val=x[:40], config=config)
        weights[devices] = [w.tolist() for w in net.autoencoder.get_weights()]

    estimator = Autoencoder(recipe="classic", n_components=2, hidden=(8,), epochs=2, batch_size=16, random_state=0, devices=2)
    estimator.fit(x, X_val=x[:40])
    loaded = load_model(estimator.save(sys.argv[1]))
    try:
        train(build_autoencoder(12, 2, hidden=(8,), seed=0).autoencoder, x, config=TrainConfig(batch_size=16, devices=4))
        too_many = None
    except ValueError as error:
        too_many = str(error)
    print(json.dumps({
        "meshes": meshes,
        "histories": {d: [h[k] for k in ("loss", "val_loss", "val_mse")] for d, h in histories.items()},
        "weights": weights,
        "estimator_val_mse": estimator.history_["val_mse"],
        "loaded_equal": bool(np.array_equal(loaded.transform(x), estimator.transform(x))),
        "loaded_devices": loaded.devices,
        "too_many": too_many,
    }))
    """
)


@pytest.mark.slow
def test_two_devices_take_the_steps_of_one(tmp_path):
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": xla_flags(devices=2),
        "AEPCA_COMPILATION_CACHE": "off",
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "model")], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # One device, then two, then the estimator's two; the refused four made no mesh.
    assert report["meshes"] == [0, 2, 2]
    one, two = report["histories"]["1"], report["histories"]["2"]
    assert len(one[0]) == 3 and one[0][2] < one[0][0]
    # The same batches and steps: only the order of float32 sums differs, which each of the
    # 3 x 45 steps can carry into losses and weights (at each weight array's largest).
    steps = 3 * 45
    np.testing.assert_allclose(two, one, rtol=float_tolerance(np.float32, 1.0, steps))
    for a, b in zip(report["weights"]["1"], report["weights"]["2"], strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0,
                                   atol=float_tolerance(np.float32, np.abs(a).max(), steps))
    assert len(report["estimator_val_mse"]) == 2 and all(np.isfinite(report["estimator_val_mse"]))
    assert report["loaded_equal"] and report["loaded_devices"] == 2
    assert report["too_many"] == (
        "Received an invalid value for devices, expected at most the 2 devices JAX sees (cpu:0, cpu:1). "
        "Received: devices=4. On a CPU train on one (--devices 1, devices=1): it computes on every core; "
        "XLA_FLAGS=--xla_force_host_platform_device_count=N makes N, to try a multi-device run."
    )


def test_more_devices_than_jax_sees_is_refused():
    x = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    with pytest.raises(ValueError, match=r"expected at most the 1 device JAX sees \(.*\)\. Received: devices=2\. On a CPU train on one "
                                         r"\(--devices 1, devices=1\)"):
        Autoencoder(recipe="classic", n_components=2, hidden=(4,), epochs=1, batch_size=16, devices=2).fit(x)


def test_devices_must_divide_the_batch():
    with pytest.raises(
        ValueError,
        match=r"Received an invalid value for devices, expected a divisor of batch_size=128 \(each device takes an "
        r"equal share of every batch\)\. Received: devices=3\. Use one of 1, 2, 4, 8, 16, 32, 64, 128, or a batch size "
        r"that is a multiple of 3 \(--batch-size, batch_size=\)\.$",
    ):
        TrainConfig(devices=3)
    # Three processes find no such divisor: the batch size is the way out.
    with pytest.raises(ValueError, match=r"Received: lanes=3\. Use one of 1, 2, 4, 8, 16, 32, 64, 128 that is a multiple of "
                                         r"devices x processes \(--lanes; by default that product\), or a batch size that "
                                         r"is a multiple of 3 \(--batch-size, batch_size=\)\.$"):
        TrainConfig(lanes=3)
    TrainConfig(lanes=3, batch_size=96)
    with pytest.raises(ValueError, match=r"The 'devices' parameter of Autoencoder must be an int in the range \[1, inf\)"):
        Autoencoder(devices=0).fit(np.zeros((10, 3), np.float32))


def test_one_device_is_the_default_and_changes_nothing():
    x = np.random.default_rng(1).standard_normal((70, 6)).astype(np.float32)
    from aepca.models import build_autoencoder

    runs = []
    for config in (TrainConfig(epochs=2, batch_size=16), TrainConfig(epochs=2, batch_size=16, devices=1)):
        net = build_autoencoder(6, 2, hidden=(4,), seed=0)
        runs.append(train(net.autoencoder, x, config=config)["loss"])
    assert runs[0] == runs[1]
    assert TrainConfig().devices == 1 and Autoencoder().devices == 1


def test_cli_refuses_more_devices_than_there_are(capsys, tmp_path):
    csv = tmp_path / "data.csv"
    rng = np.random.default_rng(0)
    np.savetxt(csv, rng.standard_normal((60, 5)), delimiter=",", header="a,b,c,d,e", comments="")
    out = tmp_path / "out"
    assert main(["compare", str(csv), "--devices", "2", "--epochs", "1", "--no-progress", "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("aepca: error: Received an invalid value for devices, expected at most the 1 device JAX")
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())
