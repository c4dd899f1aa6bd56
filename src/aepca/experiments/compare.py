"""PCA and an autoencoder on the same data, the same split, the same error space.

The error space is the data after the chosen scaling (:class:`aepca.preprocessing.Scaler`):
PCA is fitted on every scaled training row, so it is the best linear baseline
for the MSE reported, and both methods are scored there. Per-column errors in
the data's original units are recorded beside.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from aepca import distributed
from aepca import neighbours as neighbour_search
from aepca.budget import (PROBE_REFINE_ROWS, REFINE_SHARE, BudgetTooSmall, plan_refinement, reserved_after_training,
                          trains_to_deadline)
from aepca.data import Dataset
from aepca.data.columns import MAX_CATEGORIES, ColumnSpec, cleaning_notes, column_notes
from aepca.data.formats import holds_split
from aepca.data.order import TEST_SALT, held_out_mask
from aepca.data.readers import resolved_test_size
from aepca.data.sources import RowSource, interleaved_source, learn_cleaning, open_source
from aepca.experiments.diagnostics import SAMPLE_ROWS as DIAGNOSED_ROWS, check_comparison
from aepca.models import PREDICT_BATCH
from aepca.pca import PCA, equivalent_components
from aepca.preprocessing import RowMoments, Scaler, shares_one_unit
from aepca.recipes import SETTINGS, Recipe, get_recipe
from aepca.selection import BOOTSTRAP_ROWS, PairedErrors
from aepca.validation import describe_names, invalid_value, plural

# How close a linear autoencoder must come to PCA for the sanity check to pass.
LINEAR_TOLERANCE = 0.02
# Test rows shown in the figures, and training rows kept to judge how to draw rows and what went wrong.
N_CODE_POINTS = 5000
SAMPLE_ROWS = 20_000
# The most blocks of test rows the figures' rows are taken from (a pass over a stream's test rows costs more),
# and the rows of them whose reconstructions are drawn.
FIGURE_BLOCKS, RECONSTRUCTED_ROWS = 8, 10
# PCA sizes the autoencoder is compared with row by row on the test rows (and the curve recorded).
MAX_COMPARED_SIZE = 100
# Round-off of float32 sums of d products, squared, times this margin: below it errors are rounding.
ROUNDOFF_MARGIN = 16
# Columns listed in the report, by the autoencoder's error in original units.
WORST_COLUMNS = 10


@dataclass
class Comparison:
    """Everything a comparison measured, ready for tables, figures and JSON."""

    metrics: dict
    shown: Dataset  # the rows the figures show: a sample of training rows, the first test rows
    pca_codes: np.ndarray
    ae_codes: np.ndarray
    pca_reconstruction: np.ndarray
    ae_reconstruction: np.ndarray
    notes: list = field(default_factory=list)
    diagnostics: list = field(default_factory=list)
    estimator: object = None

    def table_rows(self) -> list[dict]:
        ae, k = self.metrics["autoencoder"], self.metrics["n_components"]
        rows = []
        for name, method, equivalent in ((f"PCA (k={k})", self.metrics["pca"], k),
                                         (f"Autoencoder ({self.metrics['recipe']}, k={k})", ae,
                                          ae["pca_equivalent_components"])):
            row = {"method": name, "train MSE": method["train_mse"], "test MSE": method["test_mse"],
                   "PCA-equivalent components": equivalent, "fit seconds": method["fit_seconds"]}
            if "categories" in self.metrics:
                row["category accuracy"] = method["category_accuracy"]
            rows.append({**row, **neighbour_search.recall_columns(method)})
        return rows


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


def check_code_dim(code_dim: int, n_features: int, *, name: str = "code_dim", given=None) -> None:
    """Refuse a code size outside 1 to ``n_features - 1``; ``name`` and ``given`` (the value the
    caller was given, by default ``code_dim``) word the error."""
    if n_features < 2:
        raise invalid_value("data", "at least 2 features, so that a code of fewer can be learned",
                            f"data of {plural(n_features, 'feature')}",
                            "There is nothing to compress: add features.")
    if not isinstance(code_dim, (int, np.integer)) or code_dim < 1 or code_dim >= n_features:
        sizes = "an integer" if given is None else "integers"
        raise invalid_value(name, f"{sizes} from 1 to {n_features - 1} (fewer than the {n_features} features)",
                            f"{name}={code_dim if given is None else given!r}")


def default_recipe(data, time_budget: float | None = None) -> str:
    """The recipe ``compare`` uses unless told: ``classic`` on the bundled MNIST (the recipe it
    reproduces) without a time budget (a budget sizes fast's network), ``fast`` on everything else;
    the command follows the same rule."""
    return "classic" if time_budget is None and isinstance(data, Dataset) and data.name == "mnist" else "fast"


def compare(
    data,
    *,
    test=None,
    test_size: float | None = None,
    code_dim: int = 2,
    recipe: str | Recipe | None = None,
    epochs: int | None = None,
    seed: int = 0,
    scale: str = "auto",
    progress: bool = False,
    columns=None,
    drop_columns=None,
    id_column: str | None = None,
    label_columns=None,
    no_header: bool | None = None,
    image_shape=None,
    na_values=None,
    categorical: str = "refuse",
    max_categories: int = MAX_CATEGORIES,
    impute: str | None = None,
    drop_constant: bool = False,
    record: dict | None = None,
    block_rows: int | None = None,
    neighbours: int = neighbour_search.DEFAULT_K,
    neighbour_queries: int = neighbour_search.DEFAULT_QUERIES,
    metric: str = "auto",
    **overrides,
) -> Comparison:
    """Fit PCA and an autoencoder with ``code_dim`` components on the same rows and split.

    ``data`` is a :class:`Dataset` (with its own test rows), or any input
    :func:`aepca.open_source` takes: an array, table, file, folder or pattern
    (test rows: ``test``, the same forms, or ``test_size``, default 0.2, of the rows chosen
    by a seeded hash of their numbers). Every form is read the same way, a block at a
    time: one pass over the training rows fits the error space and the PCA, the
    network trains, and one pass over the test rows scores both. Both are
    fitted and scored in the error space chosen by ``scale``; ``record`` (e.g.
    the command line and input files) is stored with the run's record.
    ``block_rows`` rows are read at a time (arrays and files opened here; None:
    :func:`aepca.open_source`'s choice): the unit of the shuffle, so the order depends on it.
    ``neighbours`` (K; 0: off), ``neighbour_queries`` and ``metric`` set the recall@K of
    each method (:func:`aepca.neighbours.compare_methods`), recorded as its ``"neighbours"``.
    ``columns``, ``drop_columns``, ``id_column``, ``label_columns``, ``no_header``, ``image_shape`` and
    ``na_values`` read a file's or a table's columns as :func:`aepca.open_source` does (the command's options).
    ``categorical="onehot"`` encodes text, categorical and boolean columns of at most
    ``max_categories`` values as indicators learned on the training rows (the data, a file or a
    table, is read and split in memory); each method's record then holds its ``category_accuracy``
    and ``numeric_test_mse``, and ``"categories"`` the columns and unseen test cells. ``impute="mean"``
    (missing values: the training rows' column means) and ``drop_constant`` are learned the same way, or,
    for a row source of files, in a pass of their own over its training rows, which also narrows the
    categories it was opened with (``open_source(path, categorical="onehot")``) to the training rows'.
    ``overrides`` replace recipe settings (any :class:`aepca.Autoencoder` parameter); a
    ``time_budget`` (seconds) counts from this call, and what training leaves of it (at least
    ``budget.REFINE_SHARE`` where training fills it) goes to refining the codes compare encodes
    (:mod:`aepca.budget`).
    """
    from aepca.backend import backend_name
    from aepca.estimator import Autoencoder
    from aepca.fitting import resolve_settings

    called = time.monotonic()
    check_overrides(overrides)
    recipe = get_recipe(recipe or default_recipe(data, overrides.get("time_budget")))
    data, test, test_size = read_rows(
        data, test, test_size, seed, block_rows, columns=columns, drop_columns=drop_columns, id_column=id_column,
        label_columns=label_columns, no_header=no_header, image_shape=image_shape, na_values=na_values,
        categorical=categorical, max_categories=max_categories, impute=impute, drop_constant=drop_constant)
    train, test, held_out, shown = _split(data, test, test_size, seed, block_rows)
    # Indicators and numbers share no unit: under auto a table with categories is standardised, so each
    # indicator weighs as much as a numeric column (the weighting measured in docs/categorical.md).
    standardised_categories = scale == "auto" and shown.columns is not None and bool(shown.columns.categories)
    scale = "standard" if standardised_categories else scale
    check_code_dim(code_dim, train.n_features)
    neighbour_search.check_neighbour_settings(neighbours, neighbour_queries, metric)
    given = {key: value for key, value in {"epochs": epochs, **overrides}.items() if value is not None}
    whole_budget = given.get("time_budget")
    # What a budget leaves after training goes to refining the codes compare encodes (aepca.budget): where
    # training would fill the budget it gets part of it, elsewhere early stopping ends training long before.
    refining = whole_budget is not None and "refine_steps" not in given
    if whole_budget is not None:  # counted from this call: reading and splitting took part of it
        settings = resolve_settings(recipe, {key: given.get(key) for key in SETTINGS}, train.n_rows, train.n_features, code_dim)
        share = REFINE_SHARE if refining and trains_to_deadline(settings, given, train.n_rows) else 0.0
        spent = time.monotonic() - called
        given["time_budget"] = max(whole_budget - spent, 1e-3) * (1 - share)
    estimator = Autoencoder(n_components=code_dim, recipe=recipe, scale=scale, metric=metric, random_state=seed,
                            verbose=progress, **given)
    # Rows encoded below: every training and test row, the neighbour queries, the test rows the
    # figures show and the training rows the diagnoses reconstruct.
    encoded = (train.n_rows + test.n_rows + min(test.n_rows, neighbour_queries) * bool(neighbours)
               + len(shown.x_test) + min(len(shown.x_train), DIAGNOSED_ROWS))
    started = time.perf_counter()
    try:
        estimator.fit(train, X_val=test if recipe.monitor_test else None, columns=shown.columns, image_shape=shown.image_shape,
                      encoded_rows=encoded)
    except BudgetTooSmall as error:  # said of the budget the caller gave, not of the fit's part of it
        raise error.of_budget(whole_budget, spent, share) from None
    ae_seconds = time.perf_counter() - started
    if refining and _pca_itself(estimator):
        estimator.history_["budget"]["refine"] = {"refine_steps": 0, "why": "PCA's codes are the best for its decoder"}
    elif refining:
        sample = test.read(0)[:PROBE_REFINE_ROWS]
        estimator.history_["budget"]["refine"] = plan_refinement(
            estimator, sample, encoded,
            whole_budget - (time.monotonic() - called) - reserved_after_training(whole_budget))
    scaler, pca = estimator.scaler_, estimator.pca_
    if standardised_categories:
        scaler.reason_ = "auto: a table with categorical columns, its indicators standardised like any column"
    scores = _score_test(test, scaler, pca, estimator)
    n = train.n_rows
    # PCA's training error is what its discarded directions hold (population variance).
    pca_train_mse = float(np.sum(pca.all_explained_variance_[code_dim:]) * (n - 1) / n / train.n_features)
    # The neighbours' pass over the training rows runs the network on each: it gives the training MSE too.
    found, ae_train_mse = (neighbour_search.compare_methods(train, test, estimator, k=neighbours, queries=neighbour_queries,
                                                            metric=metric, declared=shown.notes.get("distance"), seed=seed)
                           if neighbours else ({}, None))
    if ae_train_mse is None:
        with distributed.read_share(train) as blocks:
            ae_train_mse = -float(distributed.all_sum(sum(np.sum(estimator.score_samples(rows)) for rows in blocks)) / n)

    history = {key: value for key, value in estimator.history_.items() if isinstance(value, list)}
    units = scaler.units
    if scaler.method_ == "none" and "units" in shown.notes:
        units = f"{units} ({shown.notes['units']})"
    metrics = {
        "dataset": shown.name,
        "n_train": int(train.n_rows),
        "n_test": int(test.n_rows),
        "n_features": int(train.n_features),
        "n_components": int(code_dim),
        "recipe": recipe.name,
        "backend": backend_name(),
        "seed": seed,
        "scale": scaler.method_,
        "scale_reason": scaler.reason_,
        "units": units,
        "validation": _validation(recipe, estimator.settings_),
        # How the rows were read: blocks of block_rows, shared out over the processes.
        "reading": {"blocks": int(train.n_blocks), "block_rows": int(train.block_rows), "in_memory": train.in_memory,
                    "processes": distributed.process_count()},
        "pca": {
            "train_mse": pca_train_mse,
            "test_mse": float(scores["pca_curve"][code_dim]),
            "fit_seconds": estimator.history_["statistics_seconds"],
            "test_mse_by_components": [float(v) for v in scores["pca_curve"][: MAX_COMPARED_SIZE + 1]],
        },
        "autoencoder": {
            "train_mse": ae_train_mse,
            "test_mse": scores["ae_test_mse"],
            # With refined codes (refine_steps), the test MSE of the encoder's own codes (None without).
            "test_mse_unrefined": scores["ae_test_mse_unrefined"],
            # A resumed fit's epochs before the interruption count too.
            "fit_seconds": max(ae_seconds, estimator.history_["training_seconds"]),
            "epochs": len(history.get("loss", [])),
            "epochs_reason": estimator.history_.get("epochs_reason"),
            # The epoch whose checkpoint a resumed run started from.
            "resumed_at": estimator.history_.get("resumed_at"),
            "history": history,
            "pca_equivalent_components": equivalent_components(scores["pca_curve"], scores["ae_test_mse"]),
            # With init="auto", whether the random or the PCA start was kept, and why.
            "init": estimator.init_,
            "selection": estimator.history_.get("selection"),
            # Under a time budget: what it measured and chose (aepca.budget).
            "budget": estimator.history_.get("budget"),
            "settings": estimator.json_settings(),
            "params": estimator.json_params(),
        },
        "column_test_mse_original_units": {
            "columns": [str(name) for name in (shown.feature_names or range(train.n_features))],
            "pca": scores["pca_columns"].tolist(),
            "autoencoder": scores["ae_columns"].tolist(),
            # What turns a column's MSE into the error space's (1 / scale^2): the order of the report's worst columns.
            "error_space_weights": (1.0 / np.square(scaler.scale_.astype(np.float64))).tolist(),
        },
    }
    # The paired difference of per-row test errors, autoencoder - PCA, with its 95% interval.
    metrics["comparison"] = comparison_interval(scores["paired"], code_dim, seed)
    # Test rows unlike the training rows (another file in other units): said, not refused.
    metrics["test_rows_departure"] = scores["departure"]
    if "categories" in scores:
        metrics["categories"] = _category_record(scores["categories"], estimator.column_spec(), test.n_rows)
        for method in ("pca", "autoencoder"):
            metrics[method].update(metrics["categories"].pop(method))
    metrics["run"] = _record(shown, train, test, held_out, estimator, record)
    if found:
        metrics["pca"]["neighbours"], metrics["autoencoder"]["neighbours"] = found["pca"], found["autoencoder"]
    pca_codes = pca.transform(scaler.transform(shown.x_test))
    ae_codes = estimator.transform(shown.x_test)  # encoded (and refined) once for both figures
    return Comparison(
        metrics=metrics,
        shown=shown,
        pca_codes=pca_codes,
        ae_codes=ae_codes,
        pca_reconstruction=scaler.inverse_transform(pca.inverse_transform(pca_codes).astype(np.float32)),
        ae_reconstruction=estimator.inverse_transform(ae_codes),
        estimator=estimator,
        notes=_notes(metrics, estimator.settings_),
        diagnostics=check_comparison(metrics, estimator, shown.x_train, seed),
    )


# How compare() and sweep() read a file's or a table's columns (open_source's keywords), and the cleaning they
# learn on its training rows (load_user_data's besides), at their defaults.
COLUMN_OPTIONS = {"columns": None, "drop_columns": None, "id_column": None, "label_columns": None, "no_header": None,
                  "image_shape": None, "na_values": None}
CLEANING = {"categorical": "refuse", "max_categories": MAX_CATEGORIES, "impute": None, "drop_constant": False}
READING = {**COLUMN_OPTIONS, **CLEANING}
# The cleaning a row source of files learns in a pass of its own over the training rows (its categories,
# learned on all its rows when it was opened, narrowed to those the training rows hold).
STREAMED_CLEANING = ("categorical", "impute", "drop_constant")

# compare()'s own names for the Autoencoder parameters it sets.
OWN_NAMES = {"n_components": "code_dim", "random_state": "seed", "verbose": "progress"}


def check_overrides(overrides: dict, function: str = "compare", also=()) -> None:
    """``TypeError`` naming a keyword that is neither an Autoencoder parameter nor in ``also`` (and the
    closest that is), before any data is read."""
    from aepca.estimator import Autoencoder

    accepted = [name for name in Autoencoder._get_param_names() if name not in OWN_NAMES] + list(also)
    for name in overrides:
        if name in OWN_NAMES:
            raise TypeError(f"{function}() takes {OWN_NAMES[name]}= for the Autoencoder's {name}")
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}{hint}; besides its own it takes "
                            "aepca.Autoencoder's parameters")


def read_rows(data, test, test_size: float | None, seed: int, block_rows: int | None = None, **reading):
    """``data``, ``test`` and ``test_size`` with the data opened as :func:`compare` reads it (``reading``:
    keys of ``READING``): a :class:`Dataset` or row source as it is (a row source of files read again with
    the cleaning it is asked for, learned on its training rows: :func:`_cleaned`); data to clean read and
    split in memory (the cleaning learned on the training rows), and a file holding its own split
    (:func:`holds_split`) as that split, by :func:`load_user_data`; anything else as a row source."""
    reading = {**READING, **reading}
    # Given unless the default itself (an array of column names compares by element, so not by ==).
    asked = {name: value for name, value in reading.items()
             if value is not READING[name] and not (isinstance(value, str | int) and value == READING[name])}
    if isinstance(data, Dataset | RowSource):
        # A row source of files learns these in a pass over its training rows.
        refused = {name: value for name, value in asked.items()
                   if not (isinstance(data, RowSource) and data.reads_files and name in STREAMED_CLEANING)}
        if refused:
            name, value = next(iter(refused.items()))
            raise invalid_value(name, f"none beside a {type(data).__name__}, whose columns and rows are read as they are",
                                f"{name}={value!r}", "Pass the file or table itself, or give the option where it was read.")
        return _cleaned(data, test, test_size, seed, asked) if asked else (data, test, test_size)
    if asked.keys() & CLEANING.keys() or isinstance(data, str | os.PathLike) and holds_split(data):
        from aepca.data.readers import load_user_data

        return load_user_data(data, test=test, test_size=test_size, seed=seed, **reading), None, None
    return open_source(data, block_rows=block_rows, **{name: reading[name] for name in COLUMN_OPTIONS}), test, test_size


def _cleaned(data: RowSource, test, test_size: float | None, seed: int, cleaning: dict):
    """A row source of files and its test rows (a row source; a file is opened with the data's columns
    later) read with the ``cleaning`` (categories, impute, drop_constant) learned in a pass over its training
    rows: those :func:`_split` keeps."""
    test_size = resolved_test_size(test_size, None if test is None else "a test set")
    train = data if test is not None else data.split(test_size, seed, TEST_SALT)[0]
    spec = learn_cleaning(train, impute=cleaning.get("impute"), drop_constant=cleaning.get("drop_constant", False))
    return data.respecified(spec), test.respecified(spec) if isinstance(test, RowSource) else test, test_size


def _split(data, test, test_size: float | None, seed: int, block_rows: int):
    """The training and test rows as row sources, how the test rows were chosen, and a small
    :class:`Dataset` of what the figures show (a sample of training rows, the first test rows)."""
    if isinstance(data, Dataset):
        if test is not None:
            raise invalid_value("test", "None for a Dataset (it holds its test rows)", "a test set", "Drop test=.")
        resolved_test_size(test_size, "the data set")
        named = {"name": data.name, "feature_names": data.feature_names, "block_rows": block_rows,
                 "distance": data.notes.get("distance")}
        if data.split is None:
            train, test_rows = (interleaved_source(rows, **named) for rows in (data.x_train, data.x_test))
            held_out = "the data set's test split"
        else:  # a file split by the hash: its rows back in file order, as when it is streamed
            n_rows = len(data.x_train) + len(data.x_test)
            in_test = held_out_mask(n_rows, *data.split, TEST_SALT)
            source = interleaved_source(data.x_train, data.x_test, in_test, **named)
            train, test_rows = source.split(*data.split, TEST_SALT)
            held_out = f"{data.split[0]:.0%} by a hash of the row numbers seeded with {data.split[1]}"
        labels = data.y_test
        about = {"name": data.name, "notes": dict(data.notes), "image_shape": data.image_shape,
                 "feature_names": data.feature_names, "columns": data.columns}
    else:  # a row source (read_rows)
        test_size = resolved_test_size(test_size, None if test is None else "a test set")
        if test is not None:
            train = data
            test_rows = test if isinstance(test, RowSource) else open_source(
                test, spec=data.columns, block_rows=block_rows)
            held_out = "the test file"
        else:
            train, test_rows = data.split(test_size, seed, TEST_SALT)
            held_out = f"{test_size:.0%} by a hash of the row numbers seeded with {seed}"
        labels, notes = None, {"units": f"original units of {data.name}"}
        preprocessing = [*data.notes, *(column_notes(data.columns) if data.columns is not None else [])]
        if preprocessing:
            notes["preprocessing"] = preprocessing
        if data.columns is not None:
            notes.update(cleaning_notes(data.columns))
        if data.distance is not None:
            notes["distance"] = data.distance
        about = {"name": data.name, "notes": notes, "image_shape": train.image_shape,
                 "feature_names": tuple(train.feature_names), "columns": train.columns}
    shown_rows, shown_labels, positions = _figure_rows(test_rows, N_CODE_POINTS)
    if labels is not None:
        shown_labels = np.asarray(labels)[positions]
    shown = Dataset(x_train=_figure_rows(train, SAMPLE_ROWS)[0] if train.n_blocks else shown_rows, x_test=shown_rows,
                    y_test=shown_labels, **about)
    return train, test_rows, held_out, shown


def _pca_itself(estimator) -> bool:
    """Whether the fitted model is PCA: a PCA start left untrained, or gone back to."""
    history = estimator.history_
    return estimator.init_ == "pca" and (not history["loss"] or bool(history.get("kept_start")))


def _score_test(test: RowSource, scaler: Scaler, pca: PCA, estimator) -> dict:
    """One pass over the test rows: PCA's error for every code size, both methods' errors per
    column in original units, the autoencoder's in the error space, the paired per-row
    errors of the autoencoder and of PCA at each code size up to ``MAX_COMPARED_SIZE``, and notes
    on test rows unlike the training rows (:meth:`Scaler.departure_notes`)."""
    d = test.n_features
    spec = estimator.column_spec()
    categories = np.zeros(6) if spec.categories else None
    sizes = min(d, MAX_COMPARED_SIZE) + 1
    curve = np.zeros(d + 1)
    sums = {"ae": 0.0, "ae_unrefined": 0.0, "pca_columns": np.zeros(d), "ae_columns": np.zeros(d)}
    # Errors below the float32 rounding of a sum of d products at the values' magnitude (in the error
    # space) are round-off: a network kept at its PCA start then ties with PCA where PCA's error is 0.
    mean_square = float(np.mean(np.square(pca.mean_)) + pca.all_explained_variance_.sum() / d)
    roundoff = ROUNDOFF_MARGIN * d * np.finfo(np.float32).eps ** 2 * mean_square
    paired = PairedErrors(sizes, keep_rows=test.n_rows < BOOTSTRAP_ROWS, roundoff=roundoff)
    directions = pca.all_components_[: sizes - 1]
    moments = RowMoments(d, shift=scaler.mean_)
    with distributed.read_share(test) as blocks:
        for block in blocks:
            moments.add(block)
            # A block in parts of one network call: float64 errors of a whole block would take several times its memory.
            for start in range(0, len(block), PREDICT_BATCH):
                rows = block[start : start + PREDICT_BATCH]
                space = scaler.transform(rows)
                curve += pca.mse_by_components(space) * len(rows)
                pca_space = pca.inverse_transform(pca.transform(space))
                pca_rows = scaler.inverse_transform(pca_space.astype(np.float32))
                ae_space = estimator.reconstruct_scaled(space)
                ae_errors = np.square(ae_space.astype(np.float64) - space).mean(axis=1)
                centred = space.astype(np.float64) - pca.mean_
                captured = np.cumsum(np.square(centred @ directions.T), axis=1)
                # A wide table's PCA has fewer directions than sizes: past them, nothing more is captured.
                captured = np.pad(captured, ((0, 0), (0, sizes - 1 - len(directions))), mode="edge")
                total = np.einsum("ij,ij->i", centred, centred)[:, None]
                paired.add(ae_errors, np.maximum(np.hstack([total, total - captured]), 0.0) / d)
                sums["ae"] += float(ae_errors.sum())
                if estimator.refine_steps:  # the encoder's codes too: what refining them bought
                    unrefined = estimator.reconstruct_scaled(space, refine=False)
                    sums["ae_unrefined"] += float(np.square(unrefined.astype(np.float64) - space).mean(axis=1).sum())
                sums["pca_columns"] += np.square(pca_rows.astype(np.float64) - rows).sum(axis=0)
                sums["ae_columns"] += np.square(scaler.inverse_transform(ae_space).astype(np.float64) - rows).sum(axis=0)
                if categories is not None:
                    categories += _category_sums(spec, rows, space, pca_rows, pca_space, scaler.inverse_transform(ae_space),
                                                 ae_space)
    totals = distributed.all_sum(np.concatenate([curve, [sums["ae"], sums["ae_unrefined"]], sums["pca_columns"],
                                                 sums["ae_columns"]])) / test.n_rows
    kept = None if paired.rows is None else distributed.all_rows(paired.kept_rows())
    return {
        "pca_curve": totals[: d + 1],
        "ae_test_mse": float(totals[d + 1]),
        "ae_test_mse_unrefined": float(totals[d + 2]) if estimator.refine_steps else None,
        "pca_columns": totals[d + 3 : 2 * d + 3],
        "ae_columns": totals[2 * d + 3 :],
        **({} if categories is None else {"categories": distributed.all_sum(categories)}),
        "paired": paired.merged(distributed.all_sum(paired.to_array()), kept),
        "departure": scaler.departure_notes(_of_every_process(moments), "The test rows"),
    }


def _of_every_process(moments: RowMoments) -> RowMoments:
    """The moments of every process's rows."""
    merged = RowMoments(len(moments.sums), shift=moments.shift)
    totals = distributed.all_sum(np.concatenate([[moments.count], moments.sums, moments.squares]))
    merged.count, merged.sums, merged.squares = int(totals[0]), *np.split(totals[1:], 2)
    merged.low = distributed.all_rows(moments.low[None, :]).min(axis=0)
    merged.high = distributed.all_rows(moments.high[None, :]).max(axis=0)
    return merged


def comparison_interval(paired: PairedErrors, code_dim: int, seed: int) -> dict:
    """The autoencoder against PCA at ``code_dim`` on the test rows, with 95% intervals and the
    verdict they word, and the range of PCA sizes it is plausibly equivalent to: from the first
    size it is not clearly below to the first size it is clearly above (``MAX_COMPARED_SIZE + 1``:
    more than that)."""
    found = paired.interval(code_dim, seed)
    verdicts = [paired.interval(size, seed)["verdict"] for size in range(paired.n_sizes)]
    beyond = paired.n_sizes
    found["pca_equivalent_interval"] = [
        next((size for size, verdict in enumerate(verdicts) if verdict != "below"), beyond),
        next((size for size, verdict in enumerate(verdicts) if verdict == "above"), beyond),
    ]
    found["verdict"] = found["verdict"] if found["verdict"] == "equal within noise" else f"{found['verdict']} PCA"
    found["pca_sizes_compared"] = paired.n_sizes - 1
    return found


def _numeric_positions(spec: ColumnSpec, n_features: int) -> np.ndarray:
    """The positions of the features that are not category indicators."""
    indicators = [positions for positions, _ in spec.category_groups().values()]
    return np.setdiff1d(np.arange(n_features), np.concatenate(indicators) if indicators else [])


def _category_sums(spec: ColumnSpec, rows, space, pca_rows, pca_space, ae_rows, ae_space) -> np.ndarray:
    """For one block of test rows: categorical cells recovered by PCA and by the autoencoder (the largest
    reconstructed indicator, in the data's units), cells of a training category, unseen cells, and both
    methods' summed squared errors of the numeric columns in the error space."""
    numeric = _numeric_positions(spec, rows.shape[1])
    pca_counts, ae_counts = spec.category_counts(rows, pca_rows), spec.category_counts(rows, ae_rows)
    squared = [np.square(reconstruction[:, numeric].astype(np.float64) - space[:, numeric]).sum()
               for reconstruction in (pca_space, ae_space)]
    return np.array([pca_counts[0], ae_counts[0], ae_counts[1], ae_counts[2], *squared], dtype=np.float64)


def _category_record(sums: np.ndarray, spec: ColumnSpec, n_rows: int) -> dict:
    """What the test rows say of the categorical columns: each method's category accuracy (share of the cells
    of a training category decoded to it) and numeric-column MSE in the error space, and the unseen cells."""
    recovered_pca, recovered_ae, known, unseen, squared_pca, squared_ae = sums
    n_numeric = len(_numeric_positions(spec, len(spec.feature_names)))
    numeric_mse = (lambda squared: float(squared / (n_rows * n_numeric)) if n_numeric else None)  # noqa: E731
    accuracy = (lambda recovered: float(recovered / known) if known else None)  # noqa: E731
    return {
        "encoding": "onehot: one 0/1 indicator per category of the training rows, scaled like any column",
        "columns": {name: list(categories) for name, categories in spec.categories.items()},
        "cells": int(known + unseen),
        "unseen_cells": int(unseen),
        "pca": {"category_accuracy": accuracy(recovered_pca), "numeric_test_mse": numeric_mse(squared_pca)},
        "autoencoder": {"category_accuracy": accuracy(recovered_ae), "numeric_test_mse": numeric_mse(squared_ae)},
    }


def _figure_rows(source: RowSource, n: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """About ``n`` rows of ``source`` spread evenly over it (from at most ``FIGURE_BLOCKS`` blocks, evenly
    spaced), their labels and their positions, for figures: rows sorted by class (a folder per class)
    still show every class."""
    blocks = _evenly_spaced(source.n_blocks, FIGURE_BLOCKS)
    sizes = source.block_sizes[blocks]
    starts = np.cumsum(source.block_sizes) - source.block_sizes
    rows, labels, positions = [], [], []
    for block, size, share in zip(blocks, sizes, _shares(n, sizes)):
        taken = _evenly_spaced(size, share)
        rows.append(source.read(block)[taken])
        block_labels = source.labels(block)
        labels.append(None if block_labels is None else block_labels[taken])
        positions.append(starts[block] + taken)
    if not rows:
        return np.zeros((0, source.n_features), np.float32), None, np.zeros(0, int)
    has_labels = all(part is not None for part in labels)
    return np.concatenate(rows), (np.concatenate(labels) if has_labels else None), np.concatenate(positions)


def _evenly_spaced(size: int, count: int) -> np.ndarray:
    """``count`` positions (at most ``size``) spread evenly over ``range(size)``, the first and last included."""
    return np.unique(np.linspace(0, size - 1, min(count, size)).round().astype(int))


def _shares(n: int, sizes: np.ndarray) -> np.ndarray:
    """Rows to take of blocks of ``sizes``, ``n`` in all (at most every row), in proportion to their size."""
    total = int(sizes.sum())
    if total <= n:
        return sizes
    return np.diff(np.round(np.concatenate([[0], np.cumsum(sizes)]) * (n / total)).astype(int))


def _validation(recipe: Recipe, settings: dict) -> str:
    if recipe.monitor_test:
        return "test split (monitored, never used for selection)"
    if settings["init"] == "auto" and settings["folds"] >= 2:
        return f"{settings['folds']} folds of the training split"
    if settings["validation_fraction"]:
        return f"{settings['validation_fraction']:.0%} of the training split"
    return "none"


def _record(shown: Dataset, train: RowSource, test: RowSource, held_out: str, estimator, record: dict | None) -> dict:
    """What a reader needs to reproduce the run: inputs, preprocessing, scaling, epochs, versions."""
    scaler = estimator.scaler_
    preprocessing = [str(item) for item in shown.notes.get("preprocessing", [])]
    if "dropped_constant_columns" in shown.notes:
        dropped = shown.notes["dropped_constant_columns"]
        preprocessing.append(f"{plural(len(dropped), 'constant column')} of the training rows dropped: {describe_names(dropped)}")
    if "impute" in shown.notes:
        preprocessing.append(f"missing values filled with the {shown.notes['impute']}")
    if not train.in_memory:
        preprocessing.append(f"read from {train.name} a block of {train.block_rows} rows at a time")
    preprocessing.append(f"test rows: {held_out}")
    constant = int(np.sum(estimator.pca_.feature_variance_ == 0))
    if constant:
        preprocessing.append(f"{plural(constant, 'constant column')} kept (they cost PCA and the autoencoder nothing)")
    preprocessing.append(f"error space: scale={scaler.method_} ({scaler.reason_})")
    shape = display_shape(shown)
    if shape is not None:
        how = "the data's shape" if shown.image_shape else "a square of non-negative columns of one unit; --image-shape sets it"
        preprocessing.append(f"rows drawn as {'x'.join(map(str, shape))} images ({how})")
    return {
        **(record or {}),
        "rows": {"train": int(train.n_rows), "test": int(test.n_rows)},
        "columns": int(train.n_features),
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
    """The ``n`` columns with the largest autoencoder error in the error space (so that mixed units rank by
    the share of each column's spread left, not by its unit), PCA's beside, both in original units."""
    ae = np.asarray(columns["autoencoder"])
    order = np.argsort(-ae * np.asarray(columns["error_space_weights"]), kind="stable")[:n]
    return [
        {"column": columns["columns"][i], "PCA test MSE": columns["pca"][i], "AE test MSE": float(ae[i])}
        for i in order
    ]


def selection_note(selection: dict) -> str:
    """What the keep-or-fallback rule kept, and on what evidence."""
    gain = selection["gain"]
    if selection.get("criterion", "mse") != "mse":
        by = f" ({selection['metric']} distance)" if "metric" in selection else ""  # absent from earlier records
        where = (f"{selection['network_recall']:.3f} vs PCA's {selection['pca_recall']:.3f} in {selection['criterion']}{by} "
                 f"on {selection['held_out']}")
    elif selection.get("reference_error") == 0.0:  # absent from records made before it was kept
        where = f"at an error of {selection['candidate_error']:.3g} against PCA's 0 on {selection['held_out']}"
    elif gain < -1:  # over twice PCA's error (or PCA's near 0): a ratio says more than a percentage
        where = f"{1 - gain:.3g} times PCA's error on {selection['held_out']}"
    else:
        where = f"{percent(abs(gain))} {'below' if gain >= 0 else 'above'} PCA on {selection['held_out']}"
    if "fold_gains" in selection:
        folds = len(selection["fold_gains"])
        below = selection["folds_below"]
        where += f" ({'each fold' if below == folds else f'{below} of {folds} folds'} below)"
    z = "z undefined" if selection["z"] is None else f"z = {selection['z']:.2f}"
    if selection["kept_network"]:
        return f"Kept the network: {where}; {z} > {selection['z_threshold']:g}."
    if "cut_short" in selection:
        return f"Kept PCA: the network was {where}; {z} > {selection['z_threshold']:g}, but {selection['cut_short']}."
    return f"Kept PCA: the network was {where}, not clearly better ({z}, needs > {selection['z_threshold']:g})."


def verdict_note(comparison: dict, k: int) -> str:
    """The test comparison in words, from its interval."""
    relative = lambda ratio: f"{percent(abs(ratio - 1))} {'above' if ratio > 1 else 'below'}"  # noqa: E731
    low, high = comparison["ratio_interval"]
    if comparison.get("within_roundoff"):  # absent from records made before it was kept
        note = (f"At k={k} the autoencoder and PCA both reconstruct the test rows to float32 round-off: "
                f"{comparison['verdict']}")
    elif comparison["verdict"] == "equal within noise" and (low - 1) * (high - 1) > 0:
        # An interval clear of a tie, for a difference below selection.TIE: a network kept at its PCA start.
        note = (f"At k={k} the autoencoder's test MSE equals PCA's to float32 round-off ({relative(comparison['ratio'])}): "
                f"{comparison['verdict']}")
    else:
        note = (f"At k={k} the autoencoder's test MSE is {relative(comparison['ratio'])} PCA's, 95% interval "
                f"{relative(low)} to {relative(high)} ({comparison['method']}): {comparison['verdict']}")
    if comparison["verdict"] == "above PCA":
        return note + "."
    low_k, high_k = comparison["pca_equivalent_interval"]
    compared = comparison.get("pca_sizes_compared", high_k)  # absent from records made before it was kept
    if high_k > compared:  # no PCA compared is clearly better
        return note + f"; PCA needs at least {low_k} components to match it (none of up to {compared} is clearly better)."
    return note + f"; PCA needs {low_k if low_k == high_k else f'{low_k} to {high_k}'} components to match it."


def category_note(metrics: dict) -> str:
    """The categorical test cells each method decodes to their category, and those no method can."""
    found = metrics["categories"]
    accuracies = [metrics[key]["category_accuracy"] for key in ("pca", "autoencoder")]
    pca, ae = ("-" if accuracy is None else percent(accuracy) for accuracy in accuracies)
    shares = f"PCA {pca}, autoencoder {ae}"
    note = (f"Category accuracy (test cells decoded to their category, the largest reconstructed indicator): {shares} "
            f"of {found['cells'] - found['unseen_cells']} cells in {plural(len(found['columns']), 'categorical column')}")
    if found["unseen_cells"]:
        note += (f"; {plural(found['unseen_cells'], 'cell')} held a category unseen in training or none (all-zero indicators), "
                 "not counted")
    return note + "."


def units_note(record: dict) -> str:
    """What the errors are measured in, and why there (a comparison's or a sweep's record)."""
    return f"MSE in {record['units']}; error space {record['scale']} ({record['scale_reason']})."


def _notes(metrics: dict, settings: dict) -> list[str]:
    pca, ae = metrics["pca"], metrics["autoencoder"]
    notes = [units_note(metrics)]
    if "categories" in metrics:
        notes.append(category_note(metrics))
    if ae.get("selection"):
        notes.append(selection_note(ae["selection"]))
    notes.append(verdict_note(metrics["comparison"], metrics["n_components"]))
    notes.extend(metrics["test_rows_departure"])
    if ae.get("resumed_at") is not None:
        notes.append(f"Training resumed from the checkpoint of epoch {ae['resumed_at']}; the epochs before it ran in the "
                     "interrupted run.")
    budget = ae.get("budget")
    if budget:
        notes.append(f"Time budget {budget['budget_s']:.0f} s for training: {budget['chose']}{larger_note(budget)}; "
                     f"{ae['epochs_reason']}{refine_note(ae)}.")
    if "neighbours" in ae:
        notes.append(neighbour_search.recall_note(pca["neighbours"], ae["neighbours"], ae["test_mse"] < pca["test_mse"]))
    if settings.get("activation") == "linear" and settings.get("output_activation") in ("linear", None):
        gap = ae["test_mse"] / pca["test_mse"] - 1
        verdict = "passes" if gap <= LINEAR_TOLERANCE else "fails"
        notes.append(f"Linear sanity check {verdict}: a linear autoencoder should converge to PCA; its test MSE "
                     f"is {100 * gap:+.2f}% from PCA's (tolerance {100 * LINEAR_TOLERANCE:.0f}%).")
    return notes


def refine_note(ae: dict) -> str:
    """How a budget refined the autoencoder's codes (aepca.budget), and what that bought, or ''."""
    refine = ae["budget"].get("refine")
    if refine is None:
        return ""
    if "why" in refine:
        return f"; codes not refined: {refine['why']}"
    note = (f"; codes refined by {refine['refine_steps']} steps, what {refine['seconds']:.0f} s afford for "
            f"{refine['encoded_rows']} encoded rows at {refine['row_step_s'] * 1e6:.1f} us a row-step")
    unrefined = ae.get("test_mse_unrefined")  # absent from records made before it was kept
    if refine["refine_steps"] and unrefined:
        gain = 1 - ae["test_mse"] / unrefined
        note += (f": test MSE {ae['test_mse']:.4g} against {unrefined:.4g} from the network's own codes "
                 f"({percent(abs(gain))} {'lower' if gain >= 0 else 'higher'})")
    return note


def larger_note(budget: dict) -> str:
    """What came of the larger network a budget trains after fast's on smaller data (aepca.budget), or ''."""
    larger = budget.get("larger")
    if larger is None:
        return ""
    if "kept" not in larger:
        return f"; no larger network: {larger['why']}"
    loss = larger["held_out_loss"]
    kept = "the larger network" if larger["kept"] == "larger" else "fast's network"
    return (f"; then {larger['chose']}; kept {kept} (validation loss {loss['larger']:.4g} against fast's "
            f"{loss['fast']:.4g})")


def write_outputs(comparison: Comparison, folder: Path, *, save_model: bool = True) -> dict:
    """Write metrics.json, the figures, report.html (and the model) into ``folder``."""
    from aepca import plots
    from aepca.report import write_report

    folder = Path(folder)
    metrics = comparison.metrics
    dataset = comparison.shown
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    # Rows spread over the shown ones: data sorted by class shows its variety.
    samples = _evenly_spaced(len(dataset.x_test), RECONSTRUCTED_ROWS)
    shown_rows = [rows[samples] for rows in (dataset.x_test, comparison.pca_reconstruction, comparison.ae_reconstruction)]
    scaler, units, image_shape = comparison.estimator.scaler_, None, display_shape(dataset)
    if image_shape is None and scaler.method_ != "none":
        # Columns in other units are drawn in the error space, where they are compared: in their own
        # units the widest column flattens the others.
        shown_rows, units = [scaler.transform(rows) for rows in shown_rows], metrics["units"]
    figures = [
        ("2-D codes of the test set: PCA and the autoencoder", plots.plot_codes(
            comparison.pca_codes, comparison.ae_codes, dataset.y_test,
            folder / "codes.png", title=f"{dataset.name}: codes (k={metrics['n_components']})")),
        (f"Test {'images' if image_shape else 'rows (each column a point)'}: originals, PCA and "
         f"autoencoder reconstructions{f' in {units}' if units else ''}", plots.plot_reconstructions(
            *shown_rows, folder / "reconstructions.png", image_shape=image_shape, n=RECONSTRUCTED_ROWS,
            pca_mse=metrics["pca"]["test_mse"], ae_mse=metrics["autoencoder"]["test_mse"],
            feature_names=dataset.feature_names, units=units)),
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
            f"The {plural(min(WORST_COLUMNS, metrics['n_features']), 'column')} the autoencoder reconstructs worst in "
            "the error space (test MSE in original units). The error space weighs each column by its spread, so a "
            "network better overall there can be worse than PCA on some columns in their own units",
            worst_columns(metrics["column_test_mse_original_units"]),
        )],
        record=metrics["run"],
    )
    if save_model and comparison.estimator is not None:
        comparison.estimator.save(folder / "model")
    return metrics
