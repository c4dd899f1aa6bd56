"""PCA and the autoencoder across code sizes: one :func:`compare` per size.

PCA's test error for every code size comes from one fit
(:meth:`aepca.PCA.mse_by_components`); the autoencoder is trained once per
requested size on the same split, scaling and seed.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from aepca.budget import BudgetTooSmall
from aepca.experiments.compare import READING, check_code_dim, check_overrides, compare, read_rows, selection_note, units_note
from aepca.neighbours import recall_columns, recall_note
from aepca.recipes import Recipe, get_recipe
from aepca.validation import invalid_value

@dataclass
class SweepResult:
    """A sweep's header (data, recipe, units), one row per code size and PCA's whole curve."""

    header: dict
    rows: list[dict]
    pca_test_mse_by_components: list[float]
    diagnostics: list[dict] = field(default_factory=list)

    def table_rows(self) -> list[dict]:
        return [
            {
                "k": row["k"],
                "PCA test MSE": row["pca_test_mse"],
                "AE test MSE": row["autoencoder_test_mse"],
                "AE / PCA": row["autoencoder_test_mse"] / row["pca_test_mse"] if row["pca_test_mse"] > 0 else None,
                "PCA-equivalent components": row["pca_equivalent_components"],
                "verdict (95%)": row["comparison"]["verdict"],
                "AE train MSE": row["autoencoder_train_mse"],
                "fit seconds": row["fit_seconds"],
                **recall_columns({"neighbours": row.get("pca_neighbours")}, "PCA "),
                **recall_columns({"neighbours": row.get("autoencoder_neighbours")}, "AE "),
            }
            for row in self.rows
        ]

    def notes(self) -> list[str]:
        notes = [units_note(self.header)]
        for verdict in ("below PCA", "equal within noise", "above PCA"):
            sizes = [str(row["k"]) for row in self.rows if row["comparison"]["verdict"] == verdict]
            if sizes:
                notes.append(f"The autoencoder's test MSE is {verdict} (95% interval of the paired difference) "
                             f"at k = {', '.join(sizes)}.")
        notes.extend(f"k={row['k']}: {selection_note(row['selection'])}" for row in self.rows if row.get("selection"))
        notes.extend(f"k={row['k']}: training resumed from the checkpoint of epoch {row['resumed_at']}."
                     for row in self.rows if row.get("resumed_at") is not None)
        notes.extend(f"k={row['k']}: {recall_note(row['pca_neighbours'], row['autoencoder_neighbours'], row['autoencoder_test_mse'] < row['pca_test_mse'])}"
                     for row in self.rows if row.get("autoencoder_neighbours"))
        return notes

    def to_dict(self) -> dict:
        return {**self.header, "pca_test_mse_by_components": self.pca_test_mse_by_components, "rows": self.rows}


def check_code_dims(code_dims, n_features: int, name: str = "code_dims") -> list[int]:
    """Sorted, distinct code sizes, each from 1 to ``n_features - 1`` (``name`` words the error)."""
    dims = sorted(set(code_dims)) if isinstance(code_dims, (list, tuple, set, range, np.ndarray)) else None
    if not dims:
        raise invalid_value(
            name, "a non-empty list of code sizes", f"{name}={code_dims!r}", "Pass e.g. [1, 2, 5]."
        )
    for k in dims:
        check_code_dim(k, n_features, name=name, given=dims)
    return [int(k) for k in dims]


def sweep(
    data,
    code_dims,
    *,
    test=None,
    test_size: float | None = None,
    recipe: str | Recipe = "fast",
    epochs: int | None = None,
    seed: int = 0,
    scale: str = "auto",
    progress: bool = False,
    on_row: Callable[[dict], None] | None = None,
    record: dict | None = None,
    time_budget: float | None = None,
    **overrides,
) -> SweepResult:
    """Train PCA and the autoencoder for each code size in ``code_dims``.

    ``data``, ``test`` and ``test_size`` are those of :func:`aepca.experiments.compare.compare`
    (any input form), used for every size with the same ``recipe``, ``epochs``, ``seed``
    and ``scale`` (and estimator ``overrides``; a ``checkpoint_dir`` holds a folder
    ``kK`` per code size, so an interrupted sweep resumes where it stopped); ``on_row`` is
    called with each row as soon as it is done. ``neighbours``, ``neighbour_queries`` and
    ``metric`` (keywords of ``compare``) give each row's ``pca_neighbours`` and
    ``autoencoder_neighbours`` (recall@K). A ``time_budget`` (seconds, counted from this call) is
    shared out: each code size in turn gets an equal share of what the sizes before it left, as
    :func:`compare`'s ``time_budget``.
    """
    called = time.monotonic()
    # The keywords compare() takes besides the Autoencoder's, less those sweep() sets itself.
    check_overrides(overrides, "sweep", set(inspect.signature(compare).parameters) - set(inspect.signature(sweep).parameters)
                    - {"code_dim"})
    recipe = get_recipe(recipe)
    # Opened once, for every code size.
    reading = {key: overrides.pop(key) for key in READING if key in overrides}  # read here, once
    data, test, test_size = read_rows(data, test, test_size, seed, overrides.get("block_rows"), **reading)
    dims = check_code_dims(code_dims, data.n_features)
    rows, diagnostics, header, curve = [], [], None, None
    checkpoints = overrides.pop("checkpoint_dir", None)
    for i, k in enumerate(dims):
        budget = {}
        if time_budget is not None:
            spent = time.monotonic() - called
            budget = {"time_budget": max(time_budget - spent, 1e-3) / (len(dims) - i)}
        try:
            comparison = compare(
                data, test=test, test_size=test_size, code_dim=k, recipe=recipe, epochs=epochs, seed=seed, scale=scale,
                progress=progress, record=record, checkpoint_dir=None if checkpoints is None else str(Path(checkpoints) / f"k{k}"),
                **budget, **overrides
            )
        except BudgetTooSmall as error:  # said of the sweep's budget: this share, and as much for each size left
            raise BudgetTooSmall(time_budget, spent + error.needed * (len(dims) - i)) from None
        metrics = comparison.metrics
        pca, ae = metrics["pca"], metrics["autoencoder"]
        if header is None:
            header = {
                key: metrics[key]
                for key in ("dataset", "n_train", "n_test", "n_features", "recipe", "backend", "seed", "scale",
                            "scale_reason", "units", "validation", "run")
            }
            # Epochs and the start kept differ by code size: they are in the rows.
            header["run"] = {key: value for key, value in header["run"].items() if key not in ("epochs", "init")}
            header["code_dims"] = dims
            header["params"] = {key: value for key, value in ae["params"].items() if key != "n_components"}
            curve = pca["test_mse_by_components"]
        row = {
            "k": k,
            "pca_test_mse": pca["test_mse"],
            "autoencoder_test_mse": ae["test_mse"],
            "pca_equivalent_components": ae["pca_equivalent_components"],
            "comparison": metrics["comparison"],
            "pca_train_mse": pca["train_mse"],
            "autoencoder_train_mse": ae["train_mse"],
            "fit_seconds": ae["fit_seconds"],
            "pca_fit_seconds": pca["fit_seconds"],
            "epochs": ae["epochs"],
            "epochs_reason": ae["epochs_reason"],
            "resumed_at": ae["resumed_at"],
            "kept_pca_start": comparison.estimator.history_.get("kept_start"),
            "selection": ae["selection"],
            # Under a time budget: this size's share, and what it measured and chose (aepca.budget).
            "budget": ae["budget"],
            # Recall@K searching each method's codes and reconstructions (absent with neighbours=0).
            **({"pca_neighbours": pca["neighbours"], "autoencoder_neighbours": ae["neighbours"]} if "neighbours" in ae else {}),
            "diagnoses": [item["problem"] for item in comparison.diagnostics],
        }
        rows.append(row)
        diagnostics.extend({**item, "problem": f"k={k}: {item['problem']}"} for item in comparison.diagnostics)
        if on_row is not None:
            on_row(row)
    return SweepResult(header=header, rows=rows, pca_test_mse_by_components=curve, diagnostics=diagnostics)


def write_sweep_outputs(result: SweepResult, folder) -> dict:
    """Write sweep.json, sweep.png and report.html into ``folder``; return the JSON written."""
    from aepca.plots import plot_sweep
    from aepca.report import write_report

    folder, data, header = Path(folder), result.to_dict(), result.header
    (folder / "sweep.json").write_text(json.dumps(data, indent=2))
    png = plot_sweep(result.rows, folder / "sweep.png", title=f"{header['dataset']}: test MSE vs code size", units=header["units"])
    write_report(
        folder / "report.html",
        title=f"PCA vs autoencoder across code sizes on {header['dataset']}",
        metrics=data,
        figures=[("Test MSE against code size k; ≈N: principal components PCA needs for the autoencoder's MSE", png)],
        table_rows=result.table_rows(),
        notes=result.notes(),
        diagnostics=result.diagnostics,
        record=header["run"],
    )
    return data
