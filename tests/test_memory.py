"""Memory: host arrays XLA can share, row gathers, the process settings, no TensorFlow import on save."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from aepca._memory import (
    XLA_CPU_ALIGNMENT,
    aligned_empty,
    is_aligned,
    mean_of_rows,
    take_rows,
    to_device,
)


@pytest.mark.parametrize("shape", [(1,), (3, 5), (1000, 784)])
def test_aligned_empty_is_aligned_and_contiguous(shape):
    array = aligned_empty(shape, np.float32)
    assert array.shape == shape and array.dtype == np.float32
    assert array.ctypes.data % XLA_CPU_ALIGNMENT == 0 and array.flags.c_contiguous and array.flags.writeable


def test_to_device_shares_aligned_memory_on_cpu():
    x = aligned_empty((500, 16), np.float32)
    x[...] = np.arange(x.size, dtype=np.float32).reshape(x.shape)
    on_device = to_device(x)
    assert on_device.unsafe_buffer_pointer() == x.ctypes.data
    np.testing.assert_array_equal(np.asarray(on_device), x)


def test_to_device_copies_unaligned_memory_into_an_aligned_buffer():
    raw = np.zeros(16 * 100 + 1, dtype=np.float32)
    x = raw[1:].reshape(100, 16)  # 4 bytes past an aligned start
    x[...] = 3.0
    assert not is_aligned(x)
    on_device = to_device(x)
    assert on_device.unsafe_buffer_pointer() % XLA_CPU_ALIGNMENT == 0
    np.testing.assert_array_equal(np.asarray(on_device), x)


def test_take_rows_equals_fancy_indexing_into_aligned_memory():
    x = np.arange(7 * 5, dtype=np.float32).reshape(7, 5)
    rows = np.array([6, 0, 3, 3])
    taken = take_rows(x, rows)
    np.testing.assert_array_equal(taken, x[rows])
    assert is_aligned(taken) and taken.dtype == np.float32


def test_mean_of_rows_equals_the_mean_of_the_gathered_rows():
    x = np.random.default_rng(0).random((1000, 6)).astype(np.float32)
    rows = np.random.default_rng(1).permutation(1000)[:777]
    # Blocks of 100 rows: eight partial sums, the last one short.
    np.testing.assert_allclose(mean_of_rows(x, rows, block_rows=100), x[rows].mean(axis=0, dtype=np.float64), rtol=1e-13)
    np.testing.assert_array_equal(mean_of_rows(x), x.mean(axis=0, dtype=np.float64))
    assert mean_of_rows(x, rows).dtype == np.float64


@pytest.mark.parametrize("gather", [take_rows, mean_of_rows])
@pytest.mark.parametrize("bad", [[0, 7], [-1, 2]])
def test_row_gathers_refuse_rows_out_of_range_instead_of_clipping(gather, bad):
    x = np.zeros((7, 3), np.float32)
    with pytest.raises(ValueError, match=r"row indices in \[0, 7\)"):
        gather(x, np.array(bad))


def test_mnist_arrays_are_aligned_for_sharing(mnist):
    assert is_aligned(mnist.x_train) and is_aligned(mnist.x_test)


def test_huge_page_advice_is_switched_off_in_a_fresh_process():
    done = subprocess.run(
        [sys.executable, "-c", "from numpy._core import multiarray\n"
         "from aepca._memory import skip_huge_page_advice\n"
         "print(skip_huge_page_advice(), multiarray._get_madvise_hugepage())"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]


SAVE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from aepca import Autoencoder, load_model

    X = np.random.default_rng(0).random((64, 6)).astype(np.float32)
    model = Autoencoder(recipe="classic", n_components=2, hidden=(4,), epochs=1, batch_size=32, random_state=0).fit(X)
    loaded = load_model(model.save(sys.argv[1]))
    print(json.dumps({"tensorflow_imported": "tensorflow" in sys.modules,
                      "same": bool(np.array_equal(loaded.transform(X), model.transform(X)))}))
    """
)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="only matters with TensorFlow installed")
def test_saving_on_jax_does_not_import_tensorflow(tmp_path):
    # Keras would import TensorFlow (seconds, ~300 MB) just to check types while saving.
    env = {"KERAS_BACKEND": "jax", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", SAVE_SCRIPT, str(tmp_path / "model")], capture_output=True,
                          text=True, timeout=300, env=env, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"tensorflow_imported": False, "same": True}
