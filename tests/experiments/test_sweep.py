"""Sweeps across code sizes: rows, outputs and the ``aepca sweep`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aepca.cli import main
from aepca.data import low_rank
from aepca.experiments.sweep import check_code_dims, sweep, write_sweep_outputs
from aepca.preprocessing import Scaler
from conftest import mse_shift, mse_tolerance, pca_start_rounding

SMALL_NET = (16, 8)
ROW_KEYS = {
    "k", "pca_test_mse", "autoencoder_test_mse", "pca_equivalent_components", "pca_train_mse",
    "autoencoder_train_mse", "fit_seconds", "pca_fit_seconds", "epochs", "epochs_reason", "kept_pca_start",
    "selection", "diagnoses", "comparison",
}


# One worker runs the module, so its fixtures are built once (pytest-xdist's loadgroup).
pytestmark = pytest.mark.xdist_group("sweep")


@pytest.fixture(scope="module")
def dataset():
    return low_rank(n_samples=300, n_features=5, rank=2, noise=0.1, seed=0)


@pytest.fixture(scope="module")
def result(dataset):
    rows = []
    out = sweep(dataset, [4, 1, 1], recipe="fast", epochs=2, seed=0, hidden=SMALL_NET, on_row=rows.append)
    assert rows == out.rows
    return out


def test_rows_cover_each_code_size_once_and_never_lose_to_pca(result, dataset):
    assert [row["k"] for row in result.rows] == [1, 4]
    # Never worse up to rounding: a kept PCA start reconstructs in float32 (conftest.pca_start_rounding);
    # the curve of one fit and each comparison's PCA agree up to the curve's rounding (conftest.mse_tolerance).
    scaler = Scaler("auto").fit(dataset.x_train)
    rounding = pca_start_rounding(dataset.x_test, scaler.offset_, scaler.scale_)
    test = scaler.transform(dataset.x_test).astype(np.float64)
    curve_tolerance = mse_tolerance(test, test.mean(axis=0))
    for row in result.rows:
        assert set(row) >= ROW_KEYS
        assert row["autoencoder_test_mse"] <= row["pca_test_mse"] + mse_shift(row["pca_test_mse"], rounding)
        assert row["comparison"]["verdict"] in ("below PCA", "equal within noise")
        # PCA's curve from one fit agrees with each comparison's own PCA.
        assert result.pca_test_mse_by_components[row["k"]] == pytest.approx(row["pca_test_mse"], rel=0, abs=curve_tolerance)
    assert len(result.pca_test_mse_by_components) == dataset.n_features + 1
    assert result.header["dataset"] == "low_rank" and result.header["recipe"] == "fast"
    assert result.header["code_dims"] == [1, 4]


def test_write_outputs(result, tmp_path):
    written = write_sweep_outputs(result, tmp_path)
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data == json.loads(json.dumps(written))
    assert {"dataset", "recipe", "units", "rows", "pca_test_mse_by_components"} <= set(data)
    assert [row["k"] for row in data["rows"]] == [1, 4]
    assert (tmp_path / "sweep.png").read_bytes().startswith(b"\x89PNG")
    html = (tmp_path / "report.html").read_text()
    assert "PCA vs autoencoder across code sizes on low_rank" in html


def test_an_array_and_its_file_give_the_same_sweep(dataset, tmp_path):
    """Like compare, sweep takes any input form, and the same rows give the same results."""
    rows = np.concatenate([dataset.x_train, dataset.x_test])
    np.save(tmp_path / "rows.npy", rows)
    results = [sweep(data, [1], epochs=1, seed=0, hidden=SMALL_NET, neighbours=0).rows[0]
               for data in (rows, tmp_path / "rows.npy")]
    for key in ("pca_test_mse", "autoencoder_test_mse"):
        assert results[0][key] == pytest.approx(results[1][key], rel=1e-6)  # as compare's forms (tests/test_inputs.py)


@pytest.mark.parametrize("code_dims", [[], [0], [5], "1,2", None])
def test_code_dims_are_checked(code_dims):
    with pytest.raises(ValueError, match="invalid value for code_dims, "):
        check_code_dims(code_dims, 5)


@pytest.mark.slow
def test_cli_sweep(dataset, tmp_path, capsys):
    path = tmp_path / "table.csv"
    np.savetxt(path, dataset.x_train, delimiter=",", header="a,b,c,d,e", comments="")
    out = tmp_path / "run"
    status = main([
        "sweep", str(path), "--code-dims", "2,1", "--epochs", "1", "--hidden", "8", "--no-progress", "--out", str(out),
    ])
    printed = capsys.readouterr().out
    assert status == 0
    assert "code sizes 1,2; recipe fast" in printed and "PCA test MSE" in printed
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "sweep.json", "sweep.png"]
    assert [row["k"] for row in json.loads((out / "sweep.json").read_text())["rows"]] == [1, 2]


def test_cli_sweep_rejects_code_sizes_of_at_least_the_feature_count(dataset, tmp_path, capsys):
    path = tmp_path / "table.csv"
    np.savetxt(path, dataset.x_train, delimiter=",", header="a,b,c,d,e", comments="")
    status = main(["sweep", str(path), "--code-dims", "2,5", "--out", str(tmp_path / "run")])
    assert status == 2
    assert "invalid value for --code-dims, expected integers from 1 to 4 (fewer than the 5 features)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


class _Clock:
    """The sweep's clock: each comparison takes ``step`` seconds."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def monotonic(self) -> float:
        return self.now


def test_a_time_budget_gives_each_code_size_an_equal_share_of_what_is_left(dataset, monkeypatch):
    import aepca.experiments.sweep as sweep_module

    clock, given, compare = _Clock(step=6.0), [], sweep_module.compare

    def timed_compare(data, *, time_budget, **kwargs):  # records its share, trains without it (one epoch)
        given.append(time_budget)
        clock.now += clock.step
        return compare(data, **{**kwargs, "epochs": 1})

    monkeypatch.setattr(sweep_module, "time", clock)
    monkeypatch.setattr(sweep_module, "compare", timed_compare)
    result = sweep(dataset, [1, 2, 4], recipe="fast", hidden=SMALL_NET, time_budget=90.0)
    assert given == pytest.approx([90 / 3, (90 - 6) / 2, 90 - 12])
    assert [row["k"] for row in result.rows] == [1, 2, 4]


def test_a_budget_too_small_for_a_share_is_said_of_the_whole_sweep(dataset, monkeypatch):
    import aepca.experiments.sweep as sweep_module
    from aepca.budget import BudgetTooSmall

    def refusing_compare(data, *, time_budget, **kwargs):
        raise BudgetTooSmall(time_budget, needed=10.0)

    monkeypatch.setattr(sweep_module, "time", _Clock(step=0.0))
    monkeypatch.setattr(sweep_module, "compare", refusing_compare)
    with pytest.raises(BudgetTooSmall, match=r"more than the 30 s this run needs besides training.*time_budget=12"):
        sweep(dataset, [1, 2, 4], recipe="fast", time_budget=12.0)
