"""aepca.experiments.hinton2006 and ``aepca reproduce hinton2006``."""

import dataclasses
import json
import math

import numpy as np
import pytest

from aepca.cli import main
from aepca.experiments import hinton2006
from aepca.experiments.hinton2006 import (
    PAPER,
    reproduce_hinton2006,
    summed_pca_errors,
)
from conftest import mse_tolerance, pca_rounding

TINY = dict(n_train=400, n_test=100, rbm_epochs=1, finetune_epochs=1, best_epochs=1,
            logistic_epochs=1, curves_samples=200, curves_finetune_epochs=1, refine_steps=2)

# Every part of the pipeline, on a sliver of the data and with shallower stacks: most of
# the run is compilation, one per RBM layer and per network, whatever the widths.
SMALL_SIZES = dict(MNIST_SIZES=(32, 30), CURVES_SIZES=(16, 6))


def expected_rows(mnist_sizes, curves_sizes):
    arch = lambda sizes: "-".join(map(str, (784, *sizes)))  # noqa: E731
    return [
        ("mnist", "PCA", 30, PAPER["mnist"]["pca"]),
        ("mnist", "logistic PCA", 30, PAPER["mnist"]["logistic_pca"]),
        ("mnist", f"autoencoder {arch(mnist_sizes)}, RBM-pretrained", 30, PAPER["mnist"]["autoencoder"]),
        ("mnist", "same network, no pretraining", 30, None),
        ("mnist", f"aepca best: {arch(mnist_sizes)}", 30, None),
        ("mnist", f"aepca best, refined codes: {arch(mnist_sizes)}", 30, None),
        ("mnist", "PCA", 2, None),
        ("mnist", f"autoencoder {arch((*mnist_sizes[:-1], 2))}, RBM-pretrained", 2, None),
        ("curves", "PCA", 6, None),
        ("curves", "PCA", 18, PAPER["curves"]["pca_18"]),
        ("curves", "logistic PCA", 6, PAPER["curves"]["logistic_pca"]),
        ("curves", f"autoencoder {arch(curves_sizes)}, RBM-pretrained", 6, PAPER["curves"]["autoencoder"]),
    ]


def test_pca_on_full_mnist_matches_the_paper(mnist):
    errors = summed_pca_errors(mnist.x_train, mnist.x_test, (30,))
    _, test_error, _ = errors[30]
    assert round(test_error, 2) == 13.87


def test_summed_pca_errors_are_pixel_sums(mnist_small):
    x_train, x_test = mnist_small
    from aepca.pca import PCA

    pca = PCA(5).fit(x_train)
    reconstruction = pca.inverse_transform(pca.transform(x_test))
    expected = np.mean(np.sum(np.square(reconstruction - x_test.astype(np.float64)), axis=1))
    train_error, test_error, _ = summed_pca_errors(x_train, x_test, (2, 5))[5]
    # A summed error is a mean one times the 784 pixels: within 784 times a curve value's rounding.
    direction = pca_rounding(x_train, 5, pca.all_explained_variance_).direction
    tolerance = x_test.shape[1] * mse_tolerance(x_test, pca.mean_, k=5, direction=direction)
    assert test_error == pytest.approx(expected, rel=0, abs=tolerance)
    assert train_error < test_error


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(n_train=5), "n_train"),
        (dict(finetune_epochs=0), "finetune_epochs"),
        (dict(curves_samples=2.5), "curves_samples"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_overrides_fail_before_any_work(overrides, match):
    with pytest.raises(ValueError, match=f"invalid value for {match}"):
        reproduce_hinton2006(quick=True, progress=False, **overrides)


@pytest.mark.slow
def test_quick_command_on_a_subset_writes_every_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hinton2006, "QUICK", dataclasses.replace(hinton2006.QUICK, **TINY))
    for name, sizes in SMALL_SIZES.items():
        monkeypatch.setattr(hinton2006, name, sizes)
    out = tmp_path / "run"

    assert main(["reproduce", "hinton2006", "--quick", "--out", str(out), "--no-progress"]) == 0

    printed = capsys.readouterr().out
    assert "paper" in printed and "13.87" in printed and f"wrote {out}/" in printed
    names = {path.name for path in out.iterdir()}
    assert {"table.json", "hinton2006.md", "report.html", "fig3_codes.png",
            "loss_pretrained_30.png"} <= names
    assert not list(tmp_path.glob(".aepca-staging-*"))

    table = json.loads((out / "table.json").read_text())
    got = [(row["data"], row["method"], row["code"], row["paper"]) for row in table["rows"]]
    assert got == expected_rows(SMALL_SIZES["MNIST_SIZES"], SMALL_SIZES["CURVES_SIZES"])
    for row in table["rows"]:
        assert math.isfinite(row["test_error"]) and row["test_error"] > 0
        assert row["fit_seconds"] >= 0
    assert table["settings"]["mode"] == "quick"
    assert table["settings"]["mnist"] == {"n_train": 400, "n_test": 100,
                                          "best_recipe_validation": 34}
    assert table["settings"]["fig3_points"] == 400  # fewer than 500 per class in 400 images
    assert any("Adam" in text for text in table["deviations"])
    report = (out / "report.html").read_text()
    assert "Differs from the paper" in report and "13.87" in report
    markdown = (out / "hinton2006.md").read_text()
    assert "| mnist | PCA | 30 |" in markdown


def test_cli_rejects_unknown_reproduction(capsys):
    assert main(["reproduce", "lecun1998"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_cli_rejects_unwritable_out_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["reproduce", "hinton2006", "--quick", "--out", str(blocker)]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_full_quick_run_pretrained_network_beats_pca():
    result = reproduce_hinton2006(quick=True, progress=False)
    got = [(row["data"], row["method"], row["code"], row["paper"]) for row in result.rows]
    assert got == expected_rows(hinton2006.MNIST_SIZES, hinton2006.CURVES_SIZES)
    pca, pretrained = result.rows[0], result.rows[2]
    assert round(pca["test_error"], 2) == 13.87
    assert pretrained["test_error"] < pca["test_error"]
