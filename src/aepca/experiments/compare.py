"""PCA and an autoencoder on the same data, the same split, the same error space.

The error space is the data after the chosen scaling (:class:`aepca.preprocessing.Scaler`):
PCA is fitted on every scaled training row, so it is the best linear baseline
for the MSE reported, and both methods are scored there. Per-column errors in
the data's original units are recorded beside.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from aepca.data import Dataset
from aepca.experiments.diagnostics import beats, check_comparison
from aepca.metrics import column_mse, mse
from aepca.recipes import Recipe, get_recipe
from aepca.pca import PCA, equivalent_components
from aepca.preprocessing import Scaler, shares_one_unit
from aepca.validation import invalid_value

# How close a linear autoencoder must come to PCA for the sanity check to pass.
LINEAR_TOLERANCE = 0.02
N_CODE_POINTS = 5000
# Columns listed in the report, by the autoencoder's error in original units.
WORST_COLUMNS = 10


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


def percent(share: float) -> str:
    """A share as a percentage with one decimal, or two significant digits below 0.1%."""
    value = 100 * share
    return f"{value:.1f}%" if abs(value) >= 0.1 else f"{value:.2g}%"


def versions() -> dict:
    """Versions of Python and of the libraries a result depends on."""
    found = {"python": platform.python_version()}
    for package in ("aepca", "keras", "jax", "tensorflow-cpu", "tensorflow", "torch", "numpy", "scikit-learn"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def check_code_dim(code_dim: int, n_features: int) -> None:
    if not isinstance(code_dim, (int, np.integer)) or code_dim < 1 or code_dim >= n_features:
        raise invalid_value(
            "code_dim",
            f"an integer from 1 to {n_features - 1} (fewer than the {n_features} features)",
            f"code_dim={code_dim!r}",
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
    record: dict | None = None,
    **overrides,
) -> Comparison:
    """Fit PCA and an autoencoder with ``code_dim`` components on ``dataset``.

    Both are fitted and scored in the error space chosen by ``scale``; the
    metrics say which space, and why when ``scale="auto"``. ``record`` (e.g.
    the command line and input paths) is stored with the run's record.
    ``overrides`` replace recipe settings (any :class:`aepca.Autoencoder`
    parameter).
    """
    from aepca.estimator import Autoencoder

    recipe = get_recipe(recipe)
    check_code_dim(code_dim, dataset.n_features)
    x_train, x_test = dataset.x_train, dataset.x_test

    scaler = Scaler(scale).fit(x_train)
    space_train, space_test = scaler.transform(x_train), scaler.transform(x_test)
    started = time.perf_counter()
    pca = PCA(code_dim).fit(space_train)
    pca_seconds = time.perf_counter() - started
    pca_curve = pca.mse_by_components(space_test)
    pca_test_recon = scaler.inverse_transform(pca.inverse_transform(pca.transform(space_test)).astype(np.float32))

    given = {key: value for key, value in {"epochs": epochs, **overrides}.items() if value is not None}
    estimator = Autoencoder(n_components=code_dim, recipe=recipe, scale=scale, random_state=seed, verbose=progress, **given)
    started = time.perf_counter()
    estimator.fit(x_train, X_val=x_test if recipe.monitor_test else None, columns=dataset.columns, image_shape=dataset.image_shape)
    ae_seconds = time.perf_counter() - started
    ae_test_recon = estimator.reconstruct(x_test)
    ae_test_mse = mse(space_test, scaler.transform(ae_test_recon))

    from aepca.backend import backend_name

    history = {key: value for key, value in estimator.history_.items() if isinstance(value, list)}
    units = scaler.units
    if scaler.method_ == "none" and "units" in dataset.notes:
        units = f"{units} ({dataset.notes['units']})"
    metrics = {
        "dataset": dataset.name,
        "n_train": int(len(x_train)),
        "n_test": int(len(x_test)),
        "n_features": int(dataset.n_features),
        "n_components": int(code_dim),
        "recipe": recipe.name,
        "backend": backend_name(),
        "seed": seed,
        "scale": scaler.method_,
        "scale_reason": scaler.reason_,
        "units": units,
        "validation": _validation(recipe, estimator.settings_),
        "pca": {
            "train_mse": pca.reconstruction_mse(space_train),
            "test_mse": float(pca_curve[code_dim]),
            "fit_seconds": pca_seconds,
            "test_mse_by_components": [float(v) for v in pca_curve[: min(len(pca_curve), 101)]],
        },
        "autoencoder": {
            "train_mse": -estimator.score(x_train),
            "test_mse": ae_test_mse,
            # A resumed fit's epochs before the interruption count too.
            "fit_seconds": max(ae_seconds, estimator.history_["training_seconds"]),
            "epochs": len(history.get("loss", [])),
            "epochs_reason": estimator.history_.get("epochs_reason"),
            "history": history,
            "pca_equivalent_components": equivalent_components(pca_curve, ae_test_mse),
            # With init="auto", whether the random or the PCA start was kept, and why.
            "init": estimator.init_,
            "selection": estimator.history_.get("selection"),
            "settings": {**estimator.settings_, "hidden": list(estimator.settings_["hidden"])},
            "params": estimator.json_params(),
        },
        "column_test_mse_original_units": {
            "columns": [str(name) for name in (dataset.feature_names or range(dataset.n_features))],
            "pca": column_mse(x_test, pca_test_recon).tolist(),
            "autoencoder": column_mse(x_test, ae_test_recon).tolist(),
        },
        "run": _record(dataset, scaler, estimator, record),
    }
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(len(x_test), size=min(N_CODE_POINTS, len(x_test)), replace=False))
    comparison = Comparison(
        metrics=metrics,
        pca_codes=pca.transform(space_test[shown]),
        ae_codes=estimator.transform(x_test[shown]),
        pca_reconstruction=pca_test_recon,
        ae_reconstruction=ae_test_recon,
        code_indices=shown,
        estimator=estimator,
    )
    comparison.notes.extend(_notes(metrics, estimator.settings_))
    comparison.diagnostics.extend(check_comparison(metrics, estimator, x_train, seed))
    return comparison


def _validation(recipe: Recipe, settings: dict) -> str:
    if recipe.monitor_test:
        return "test split (monitored, never used for selection)"
    if settings["init"] == "auto" and settings["folds"] >= 2:
        return f"{settings['folds']} folds of the training split"
    if settings["validation_fraction"]:
        return f"{settings['validation_fraction']:.0%} of the training split"
    return "none"


def _record(dataset: Dataset, scaler: Scaler, estimator, record: dict | None) -> dict:
    """What a reader needs to reproduce the run: inputs, preprocessing, scaling, epochs, versions."""
    preprocessing = [str(item) for item in dataset.notes.get("preprocessing", [])]
    constant = int(np.sum(np.ptp(dataset.x_train, axis=0) == 0))
    if constant:
        preprocessing.append(f"{constant} constant column(s) kept (they cost PCA and the autoencoder nothing)")
    preprocessing.append(f"error space: scale={scaler.method_} ({scaler.reason_})")
    shape = display_shape(dataset)
    if shape is not None:
        how = "the data's shape" if dataset.image_shape else "a square of non-negative columns of one unit; --image-shape sets it"
        preprocessing.append(f"rows drawn as {'x'.join(map(str, shape))} images ({how})")
    return {
        **(record or {}),
        "rows": {"train": int(len(dataset.x_train)), "test": int(len(dataset.x_test))},
        "columns": int(dataset.n_features),
        "preprocessing": preprocessing,
        "epochs": estimator.history_.get("epochs_reason"),
        "init": estimator.init_,
        "versions": versions(),
    }


def display_shape(dataset: Dataset) -> tuple | None:
    """The image shape to draw rows with: the data's own, or a square one when
    at least 64 non-negative columns of one unit make a square (a flat table
    of pixels)."""
    if dataset.image_shape is not None:
        return dataset.image_shape
    side = math.isqrt(dataset.n_features)
    if side * side != dataset.n_features or side < 8 or dataset.x_train.min() < 0:
        return None
    return (side, side) if shares_one_unit(dataset.x_train)[0] else None


def worst_columns(columns: dict, n: int = WORST_COLUMNS) -> list[dict]:
    """The ``n`` columns with the largest autoencoder error, PCA's beside."""
    ae = np.asarray(columns["autoencoder"])
    order = np.argsort(-ae, kind="stable")[:n]
    return [
        {"column": columns["columns"][i], "PCA test MSE": columns["pca"][i], "AE test MSE": float(ae[i])}
        for i in order
    ]


def selection_note(selection: dict) -> str:
    """What the keep-or-fallback rule kept, and on what evidence."""
    gain = selection["gain"]
    if gain < -1:  # PCA's held-out error is near zero: a percentage above it says nothing
        where = f"far above PCA's near-zero error on {selection['held_out']}"
    else:
        where = f"{percent(abs(gain))} {'below' if gain >= 0 else 'above'} PCA on {selection['held_out']}"
    if "fold_gains" in selection:
        folds = len(selection["fold_gains"])
        below = selection["folds_below"]
        where += f" ({'each fold' if below == folds else f'{below} of {folds} folds'} below)"
    z = "z undefined" if selection["z"] is None else f"z = {selection['z']:.2f}"
    if selection["kept_network"]:
        return f"Kept the network: {where}; {z} > {selection['z_threshold']:g}."
    return f"Kept PCA: the network was {where}, not clearly better ({z}, needs > {selection['z_threshold']:g})."


def _notes(metrics: dict, settings: dict) -> list[str]:
    pca, ae = metrics["pca"]["test_mse"], metrics["autoencoder"]["test_mse"]
    k = metrics["n_components"]
    notes = [f"MSE in {metrics['units']}; error space chosen: {metrics['scale']} ({metrics['scale_reason']})."]
    if metrics["autoencoder"].get("selection"):
        notes.append(selection_note(metrics["autoencoder"]["selection"]))
    if beats(ae, pca):
        notes.append(
            f"The autoencoder's test MSE is {percent(1 - ae / pca)} below PCA's at k={k}; "
            f"PCA needs {metrics['autoencoder']['pca_equivalent_components']} components to match it."
        )
    else:
        notes.append(f"The autoencoder did not beat PCA at k={k} (test MSE {ae:.4g} vs {pca:.4g}).")
    if settings.get("activation") == "linear" and settings.get("output_activation") in ("linear", None):
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
            folder / "reconstructions.png", image_shape=display_shape(dataset), n=10,
            pca_mse=metrics["pca"]["test_mse"], ae_mse=metrics["autoencoder"]["test_mse"])),
        (f"Loss per epoch in {metrics['units']}, with PCA's test MSE in the same units", plots.plot_loss(
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
        tables=[(
            f"The {WORST_COLUMNS} columns the autoencoder reconstructs worst (test MSE in original units)",
            worst_columns(metrics["column_test_mse_original_units"]),
        )],
        record=metrics["run"],
    )
    if save_model and comparison.estimator is not None:
        comparison.estimator.save(folder / "model")
    return metrics
