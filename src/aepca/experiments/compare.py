"""PCA and an autoencoder on the same data, the same split, the same units."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aepca.data import Dataset
from aepca.experiments.recipes import Recipe, get_recipe
from aepca.pca import PCA, equivalent_components
from aepca.preprocessing import Scaler

# How close a linear autoencoder must come to PCA for the sanity check to pass.
LINEAR_TOLERANCE = 0.02
N_CODE_POINTS = 5000


@dataclass
class Comparison:
    """Everything a comparison measured, ready for tables, figures and JSON."""

    metrics: dict
    pca_codes: np.ndarray
    ae_codes: np.ndarray
    pca_reconstruction: np.ndarray
    ae_reconstruction: np.ndarray
    code_indices: np.ndarray
    notes: list = field(default_factory=list)
    diagnostics: list = field(default_factory=list)
    estimator: object = None

    def table_rows(self) -> list[dict]:
        pca, ae = self.metrics["pca"], self.metrics["autoencoder"]
        k = self.metrics["n_components"]
        return [
            {
                "method": f"PCA (k={k})",
                "train MSE": pca["train_mse"],
                "test MSE": pca["test_mse"],
                "PCA-equivalent components": k,
                "fit seconds": pca["fit_seconds"],
            },
            {
                "method": f"Autoencoder ({self.metrics['recipe']}, k={k})",
                "train MSE": ae["train_mse"],
                "test MSE": ae["test_mse"],
                "PCA-equivalent components": ae["pca_equivalent_components"],
                "fit seconds": ae["fit_seconds"],
            },
        ]


BLOCK_ROWS = 2048


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared difference in float64, a block of rows at a time (no
    float64 copy of whole data sets)."""
    a, b = np.asarray(a), np.asarray(b)
    total = sum(
        float(np.sum(np.square(a[i : i + BLOCK_ROWS].astype(np.float64) - b[i : i + BLOCK_ROWS])))
        for i in range(0, len(a), BLOCK_ROWS)
    )
    return total / a.size


def reconstruction_mse(reconstruct, x: np.ndarray) -> float:
    """MSE of ``reconstruct(x)``, a block of rows at a time: the full-size
    reconstruction and its float64 error never exist at once."""
    blocks = (x[i : i + BLOCK_ROWS] for i in range(0, len(x), BLOCK_ROWS))
    return sum(mse(reconstruct(block), block) * block.size for block in blocks) / x.size


def check_code_dim(code_dim: int, n_features: int) -> None:
    if not isinstance(code_dim, (int, np.integer)) or code_dim < 1 or code_dim >= n_features:
        raise ValueError(
            f"Received an invalid value for code_dim, expected an integer from 1 to "
            f"{n_features - 1} (fewer than the {n_features} features). Received: code_dim={code_dim!r}"
        )


def compare(
    dataset: Dataset,
    *,
    code_dim: int = 2,
    recipe: str | Recipe = "classic",
    epochs: int | None = None,
    seed: int = 0,
    scale: str = "auto",
    progress: bool = False,
    **overrides,
) -> Comparison:
    """Fit PCA and an autoencoder with ``code_dim`` components on ``dataset``.

    Both see the same scaled training data; every error is reported in the
    data's original units. ``overrides`` replace recipe settings (any
    :class:`aepca.Autoencoder` parameter).
    """
    from aepca.estimator import Autoencoder

    recipe = get_recipe(recipe)
    check_code_dim(code_dim, dataset.n_features)
    x_train, x_test = dataset.x_train, dataset.x_test

    scaler = Scaler(scale).fit(x_train)
    started = time.perf_counter()
    pca = PCA(code_dim).fit(scaler.transform(x_train))
    pca_seconds = time.perf_counter() - started

    def pca_reconstruct(x):
        return scaler.inverse_transform(pca.inverse_transform(pca.transform(scaler.transform(x))).astype(np.float32))

    pca_test_recon = pca_reconstruct(x_test)
    weights = None if scaler.method_ == "none" else np.square(scaler.scale_)
    pca_curve = pca.mse_by_components(scaler.transform(x_test), feature_weights=weights)

    params = recipe.estimator_params(epochs=epochs, **overrides)
    estimator = Autoencoder(n_components=code_dim, scale=scale, random_state=seed, verbose=progress, **params)
    started = time.perf_counter()
    estimator.fit(x_train, X_val=x_test if recipe.monitor_test else None)
    ae_seconds = time.perf_counter() - started
    ae_test_recon = estimator.reconstruct(x_test)
    ae_test_mse = mse(ae_test_recon, x_test)

    from aepca._backend import keras_backend

    history = {key: value for key, value in estimator.history_.items() if isinstance(value, list)}
    metrics = {
        "dataset": dataset.name,
        "n_train": int(len(x_train)),
        "n_test": int(len(x_test)),
        "n_features": int(dataset.n_features),
        "n_components": int(code_dim),
        "recipe": recipe.name,
        "backend": keras_backend(),
        "seed": seed,
        "scale": scaler.method_,
        "units": dataset.notes.get("units", "original units"),
        "validation": "test split (monitored, never used for selection)" if recipe.monitor_test else (
            f"{params.get('validation_fraction', 0):.0%} of the training split" if params.get("validation_fraction") else "none"
        ),
        "pca": {
            "train_mse": reconstruction_mse(pca_reconstruct, x_train),
            "test_mse": mse(pca_test_recon, x_test),
            "fit_seconds": pca_seconds,
            "test_mse_by_components": [float(v) for v in pca_curve[: min(len(pca_curve), 101)]],
        },
        "autoencoder": {
            "train_mse": reconstruction_mse(estimator.reconstruct, x_train),
            "test_mse": ae_test_mse,
            "fit_seconds": ae_seconds,
            "epochs": len(history.get("loss", [])),
            "history": history,
            "pca_equivalent_components": equivalent_components(pca_curve, ae_test_mse),
            # With init="auto", whether the random or the PCA start was kept.
            "init": estimator.init_,
            "params": estimator.json_params(),
        },
    }
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(len(x_test), size=min(N_CODE_POINTS, len(x_test)), replace=False))
    comparison = Comparison(
        metrics=metrics,
        pca_codes=pca.transform(scaler.transform(x_test[shown])),
        ae_codes=estimator.transform(x_test[shown]),
        pca_reconstruction=pca_test_recon,
        ae_reconstruction=ae_test_recon,
        code_indices=shown,
        estimator=estimator,
    )
    comparison.notes.extend(_notes(metrics, params))
    from aepca.experiments.diagnostics import check_comparison

    comparison.diagnostics.extend(check_comparison(metrics, estimator, x_train, seed))
    return comparison


def _notes(metrics: dict, params: dict) -> list[str]:
    pca, ae = metrics["pca"]["test_mse"], metrics["autoencoder"]["test_mse"]
    k = metrics["n_components"]
    notes = []
    if ae < pca:
        notes.append(
            f"The autoencoder's test MSE is {100 * (1 - ae / pca):.1f}% below PCA's at k={k}; "
            f"PCA needs {metrics['autoencoder']['pca_equivalent_components']} components to match it."
        )
    else:
        notes.append(f"The autoencoder did not beat PCA at k={k} (test MSE {ae:.4g} vs {pca:.4g}).")
    if params.get("activation") == "linear" and params.get("output_activation") in ("linear", None):
        gap = ae / pca - 1
        verdict = "passes" if gap <= LINEAR_TOLERANCE else "fails"
        notes.append(
            f"Linear sanity check {verdict}: a linear autoencoder should converge to PCA; its test MSE "
            f"is {100 * gap:+.2f}% from PCA's (tolerance {100 * LINEAR_TOLERANCE:.0f}%)."
        )
    return notes


def write_outputs(comparison: Comparison, dataset: Dataset, folder: Path, *, save_model: bool = True) -> dict:
    """Write metrics.json, the figures, report.html (and the model) into ``folder``."""
    from aepca import plots
    from aepca.report import write_report

    folder = Path(folder)
    metrics = comparison.metrics
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    labels = None if dataset.y_test is None else np.asarray(dataset.y_test)[comparison.code_indices]
    figures = [
        ("2-D codes of the test set: PCA and the autoencoder", plots.plot_codes(
            comparison.pca_codes, comparison.ae_codes, labels,
            folder / "codes.png", title=f"{dataset.name}: codes (k={metrics['n_components']})")),
        ("Test images: originals, PCA and autoencoder reconstructions", plots.plot_reconstructions(
            dataset.x_test, comparison.pca_reconstruction, comparison.ae_reconstruction,
            folder / "reconstructions.png", image_shape=dataset.image_shape, n=10,
            pca_mse=metrics["pca"]["test_mse"], ae_mse=metrics["autoencoder"]["test_mse"])),
        ("Loss per epoch, with PCA's test MSE for reference", plots.plot_loss(
            metrics["autoencoder"]["history"], folder / "loss.png",
            pca_test_mse=metrics["pca"]["test_mse"], units=metrics["units"])),
    ]
    write_report(
        folder / "report.html",
        title=f"PCA vs autoencoder on {dataset.name}",
        metrics=metrics,
        figures=figures,
        table_rows=comparison.table_rows(),
        notes=comparison.notes,
        diagnostics=comparison.diagnostics,
    )
    if save_model and comparison.estimator is not None:
        comparison.estimator.save(folder / "model")
    return metrics
