"""PCA and an autoencoder compared on rows streamed from files bigger than memory.

The same comparison as :func:`aepca.experiments.compare.compare`, a block of
rows at a time: one pass over the training rows fits the error space and the
PCA, training reads blocks as it goes, and one pass over the test rows scores
both methods. Only the rows shown in figures are held. Several processes each
read their share of every pass.
"""

from __future__ import annotations

import time

import numpy as np

from aepca import distributed
from aepca.data import Dataset
from aepca.data.sources import RowSource, open_source
from aepca.experiments.compare import (
    N_CODE_POINTS,
    Comparison,
    _notes,
    _validation,
    check_code_dim,
    versions,
)
from aepca.experiments.diagnostics import check_comparison
from aepca.metrics import BLOCK_ROWS
from aepca.pca import PCA, equivalent_components
from aepca.preprocessing import Scaler
from aepca.recipes import Recipe, get_recipe
from aepca.statistics import scan

TEST_SALT = "test"


def split_source(source: RowSource, test, test_size: float, seed: int) -> tuple[RowSource, RowSource]:
    """Training and test rows: ``test`` (a path or source with the same columns), or the rows
    a hash of their row numbers seeded with ``seed`` holds out (``test_size`` of them)."""
    if test is not None:
        test = test if isinstance(test, RowSource) else open_source(test, columns=list(source.columns.columns) if source.columns else None)
        return source, test
    return source.kept(test_size, seed, TEST_SALT), source.held_out(test_size, seed, TEST_SALT)


def compare_streamed(
    source: RowSource,
    *,
    test=None,
    test_size: float = 0.2,
    code_dim: int = 2,
    recipe: str | Recipe = "fast",
    epochs: int | None = None,
    seed: int = 0,
    scale: str = "auto",
    progress: bool = False,
    record: dict | None = None,
    **overrides,
) -> tuple[Comparison, Dataset]:
    """Fit PCA and an autoencoder with ``code_dim`` components on streamed rows.

    Returns the comparison and a small :class:`Dataset` of the rows it shows
    (a sample of training rows, the test rows drawn), for the figures and report.
    """
    from aepca.estimator import Autoencoder

    recipe = get_recipe(recipe)
    check_code_dim(code_dim, source.n_features)
    held_out = "the test file" if test is not None else f"{test_size:.0%} by a hash of the row numbers seeded with {seed}"
    train, test = split_source(source, test, test_size, seed)

    started = time.perf_counter()
    statistics = scan(train)
    scaler = Scaler(scale).fit(statistics.summary)
    space = statistics.in_scaled_space(scaler.offset_, scaler.scale_)
    pca = PCA.from_accumulator(space.accumulator, code_dim)
    pca_seconds = time.perf_counter() - started

    given = {key: value for key, value in {"epochs": epochs, **overrides}.items() if value is not None}
    estimator = Autoencoder(n_components=code_dim, recipe=recipe, scale=scale, random_state=seed, verbose=progress, **given)
    started = time.perf_counter()
    estimator.fit(train, X_val=test if recipe.monitor_test else None)
    ae_seconds = time.perf_counter() - started

    scores = _score_test(test, scaler, pca, estimator)
    n = train.n_rows
    # PCA's training error is what its discarded directions hold (population variance).
    pca_train_mse = float(np.sum(pca.all_explained_variance_[code_dim:]) * (n - 1) / n / source.n_features)
    ae_train_mse = float(distributed.all_sum(sum(-np.sum(estimator.score_samples(rows)) for rows in distributed.read_share(train))) / n)

    from aepca.backend import backend_name

    history = {key: value for key, value in estimator.history_.items() if isinstance(value, list)}
    names = list(source.feature_names)
    metrics = {
        "dataset": source.name,
        "n_train": int(train.n_rows),
        "n_test": int(test.n_rows),
        "n_features": int(source.n_features),
        "n_components": int(code_dim),
        "recipe": recipe.name,
        "backend": backend_name(),
        "seed": seed,
        "scale": scaler.method_,
        "scale_reason": scaler.reason_,
        "units": scaler.units if scaler.method_ != "none" else f"{scaler.units} (original units of {source.name})",
        "validation": _validation(recipe, estimator.settings_),
        "streamed": {"blocks": int(source.n_blocks), "processes": distributed.process_count()},
        "pca": {
            "train_mse": pca_train_mse,
            "test_mse": float(scores["pca_curve"][code_dim]),
            "fit_seconds": pca_seconds,
            "test_mse_by_components": [float(v) for v in scores["pca_curve"][: min(len(scores["pca_curve"]), 101)]],
        },
        "autoencoder": {
            "train_mse": ae_train_mse,
            "test_mse": scores["ae_test_mse"],
            "fit_seconds": max(ae_seconds, estimator.history_["training_seconds"]),
            "epochs": len(history.get("loss", [])),
            "epochs_reason": estimator.history_.get("epochs_reason"),
            "history": history,
            "pca_equivalent_components": equivalent_components(scores["pca_curve"], scores["ae_test_mse"]),
            "init": estimator.init_,
            "selection": estimator.history_.get("selection"),
            "settings": estimator.json_settings(),
            "params": estimator.json_params(),
        },
        "column_test_mse_original_units": {
            "columns": names,
            "pca": scores["pca_columns"].tolist(),
            "autoencoder": scores["ae_columns"].tolist(),
        },
    }
    shown_rows, shown_labels = _first_rows(test, N_CODE_POINTS)
    space_shown = scaler.transform(shown_rows)
    preview = Dataset(
        name=source.name,
        x_train=statistics.summary.sample,
        x_test=shown_rows,
        y_test=shown_labels,
        image_shape=source.image_shape,
        feature_names=tuple(names),
        notes={"units": f"original units of {source.name}"},
        columns=source.columns,
    )
    metrics["run"] = {
        **(record or {}),
        "rows": {"train": int(train.n_rows), "test": int(test.n_rows)},
        "columns": int(source.n_features),
        "preprocessing": [
            f"streamed from {source.name}: {source.n_blocks} blocks, read a block at a time",
            f"test rows: {held_out}",
            f"error space: scale={scaler.method_} ({scaler.reason_})",
        ],
        "epochs": estimator.history_.get("epochs_reason"),
        "init": estimator.init_,
        "versions": versions(),
    }
    comparison = Comparison(
        metrics=metrics,
        pca_codes=pca.transform(space_shown),
        ae_codes=estimator.transform(shown_rows),
        pca_reconstruction=scaler.inverse_transform(pca.inverse_transform(pca.transform(space_shown)).astype(np.float32)),
        ae_reconstruction=estimator.reconstruct(shown_rows),
        code_indices=np.arange(len(shown_rows)),
        estimator=estimator,
    )
    comparison.notes.extend(_notes(metrics, estimator.settings_))
    comparison.diagnostics.extend(check_comparison(metrics, estimator, statistics.summary.sample, seed))
    return comparison, preview


def _score_test(test: RowSource, scaler: Scaler, pca: PCA, estimator) -> dict:
    """One pass over the test rows: PCA's error for every code size and both methods'
    errors per column in original units, and the autoencoder's in the error space."""
    d = test.n_features
    curve = np.zeros(d + 1)
    sums = {"ae": 0.0, "pca_columns": np.zeros(d), "ae_columns": np.zeros(d)}
    for block in distributed.read_share(test):
        # A block in parts: the float64 errors of a whole block would take several times its memory.
        for start in range(0, len(block), BLOCK_ROWS):
            _add_errors(block[start : start + BLOCK_ROWS], scaler, pca, estimator, curve, sums)
    totals = distributed.all_sum(np.concatenate([curve, [sums["ae"]], sums["pca_columns"], sums["ae_columns"]])) / test.n_rows
    return {
        "pca_curve": totals[: d + 1],
        "ae_test_mse": float(totals[d + 1]),
        "pca_columns": totals[d + 2 : 2 * d + 2],
        "ae_columns": totals[2 * d + 2 :],
    }


def _add_errors(rows: np.ndarray, scaler: Scaler, pca: PCA, estimator, curve: np.ndarray, sums: dict) -> None:
    """Add one part's errors to the running sums of :func:`_score_test`."""
    space = scaler.transform(rows)
    curve += pca.mse_by_components(space) * len(rows)
    pca_rows = scaler.inverse_transform(pca.inverse_transform(pca.transform(space)).astype(np.float32))
    ae_space = estimator.reconstruct_scaled(space)
    sums["ae"] += float(np.square(ae_space.astype(np.float64) - space).mean(axis=1).sum())
    sums["pca_columns"] += np.square(pca_rows.astype(np.float64) - rows).sum(axis=0)
    sums["ae_columns"] += np.square(scaler.inverse_transform(ae_space).astype(np.float64) - rows).sum(axis=0)


def _first_rows(source: RowSource, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``n`` rows of ``source`` (and their labels), for figures."""
    rows, labels = [], []
    taken = 0
    for i in range(source.n_blocks):
        if taken >= n:
            break
        block = source.read(i)[: n - taken]
        rows.append(block)
        block_labels = source.labels(i)
        labels.append(None if block_labels is None else block_labels[: len(block)])
        taken += len(block)
    rows = np.concatenate(rows) if rows else np.zeros((0, source.n_features), np.float32)
    has_labels = labels and all(part is not None for part in labels)
    return rows, (np.concatenate(labels) if has_labels else None)
