"""One fit of an :class:`aepca.Autoencoder`, and the ways its network can start.

A :class:`Fit` holds what every start shares: the network's rows (a row source
of the error space divided by the network scale), the rows it trains on and
monitors, the error space, the PCA of every training row, the settings and the
seed. ``STARTS`` maps each start to a function returning the kept network, its
history and the evidence it was kept on; the estimator only picks one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

from aepca import budget, distributed
from aepca.checkpoint import Checkpointer, load_checkpoint, run_fingerprint
from aepca.data.order import VALIDATION_SALT, hash_edges
from aepca.data.sources import RowSource
from aepca.metrics import sample_mse
from aepca.neighbours import DEFAULT_K, code_recall_misses, query_positions, take_rows
from aepca.models import (AutoencoderNet, build_autoencoder, check_activation, check_hidden, check_network_fits, network_fits,
                          predict, weights_of)
from aepca.pca import PCA
from aepca.preprocessing import ColumnSummary, ErrorSpace, network_scaling
from aepca.recipes import LARGE_ROWS, get_recipe
from aepca.selection import CLEAR_IMPROVEMENT_Z, FOLD_Z, paired_evidence
from aepca.statistics import MAX_HELD_BYTES, scan
from aepca.training import TrainConfig, best_epoch, steps_per_epoch, train
from aepca.validation import check_spread, invalid_value, plural

# The salt of the folds' split of the training rows.
FOLD_SALT = "folds"
# With select_by="recall", the held-out rows (a seeded sample of at most this many) in which neighbours are sought.
SELECTION_ROWS = 20_000
# Parameters that change neither training nor its data: a checkpoint written with other values resumes
# (a time budget acts through the settings it chose, which the checkpoint's fingerprint holds).
NOT_TRAINING = ("verbose", "checkpoint_dir", "refine_steps", "time_budget")


class HeldOutLosses(NamedTuple):
    """PCA's and the network's losses on held-out rows, as the keep-or-fallback rule judges them (lower is
    better), and with ``select_by="recall"`` the distance the neighbours were sought by and why."""

    pca: np.ndarray
    network: np.ndarray
    metric: tuple[str, str] | None = None


@dataclass
class Trained:
    """A kept network: how it started, its history (in the error space's units) and output activation."""

    net: AutoencoderNet
    history: dict
    init: str
    output_activation: str


@dataclass
class Fit:
    """What the starts of one fit share.

    ``rows``: every training row as the network takes it; ``train`` the rows it
    trains on and ``monitor`` those it is validated on (an array, a row source,
    or None); ``summary`` the summary of ``rows``; ``pca`` the PCA of every
    training row in the error space; ``start_name`` the entry of ``STARTS`` to run.
    """

    n_components: int
    settings: dict
    seed: int
    space: ErrorSpace
    summary: ColumnSummary
    rows: RowSource
    train: RowSource
    monitor: np.ndarray | RowSource | None
    pca: PCA
    run: dict
    start_name: str = "random"
    devices: int = 1
    lanes: int | None = None
    verbose: bool = False
    checkpoint_dir: str | None = None
    select_by: str = "mse"
    metric: str = "auto"
    deadline: float | None = None
    budget: dict | None = None
    larger: tuple[dict, dict] | None = None
    statistics_seconds: float = 0.0
    training_seconds: list = field(default_factory=list)

    @classmethod
    def prepare(cls, source: RowSource, X_val: RowSource | None, *, n_components: int, settings: dict, scale: str,
                seed: int, params: dict, **options) -> Fit:
        """One pass over ``source`` (the training rows) gives the error space ``scale`` chooses, the
        PCA, the network's scaling and the validation rows (the settings' share, held out by a seeded
        hash; or ``X_val``); ``options`` are the remaining fields (devices, lanes, verbose,
        checkpoint_dir, select_by, metric)."""
        start = "folds" if settings["init"] == "auto" and settings["folds"] >= 2 and X_val is None else settings["init"]
        validation = settings["validation_fraction"] if X_val is None and start != "folds" else 0.0
        started = time.perf_counter()
        kept, held_out = validation_split(source, validation, seed) if validation else (source, None)
        # Validation rows that fit in memory are kept from the one pass; others are read each epoch.
        hold = held_out.admits if held_out is not None and fits_in_memory(held_out) else None
        statistics = scan(source, hold=hold)
        check_spread(statistics.summary.low, statistics.summary.high, source.name, source.feature_names)
        space = ErrorSpace.fit(scale, statistics.summary)
        in_space = statistics.in_scaled_space(space.scaler.offset_, space.scaler.scale_)
        pca = PCA.from_accumulator(in_space.accumulator, n_components)
        seconds = time.perf_counter() - started
        rows = source.map(space.network_rows)
        train_rows, monitor = rows, None if X_val is None else held_in_memory(X_val.map(space.network_rows))
        if held_out is not None:
            train_rows = kept.map(space.network_rows)
            monitor = held_in_memory(held_out.map(space.network_rows),
                                     None if statistics.held is None else space.network_rows(statistics.held))
        return cls(n_components=n_components, settings=settings, seed=seed, space=space,
                   summary=space.network_summary(in_space.summary), rows=rows, train=train_rows, monitor=monitor,
                   pca=pca, run={"params": params, "settings": json_settings(settings), "seed": seed}, start_name=start,
                   statistics_seconds=seconds, **options)

    def plan_budget(self, seconds: float, given: dict, started: float, recipe=None, encoded_rows: int = 0) -> None:
        """Size the network and epochs to a time budget of ``seconds`` counted from ``started``
        (``time.monotonic()``; see :mod:`aepca.budget`) and set the deadline; ``given`` are the
        settings the user set, which the plan keeps. ``recipe``'s settings for large data are those
        of the larger network that may follow fast's on smaller data (``larger_network``);
        ``encoded_rows`` rows are encoded after the fit, within the budget."""

        def make_plan():
            # Every process plans on the same numbers (their mean), so all choose the same settings.
            return budget.plan(self.settings, given, n_rows=self.rows.n_rows, n_train=self.train.n_rows, budget=seconds,
                               elapsed=lambda: distributed.mean_of(time.monotonic() - started),
                               step_seconds=self._step_seconds(self.settings), fits=self._fits,
                               encoded_rows=encoded_rows)

        large = None
        if recipe is not None and budget.larger_follows(self.settings, given, self.rows.n_rows):
            large = resolve_settings(recipe, given, LARGE_ROWS, self.rows.n_features, self.n_components, check_memory=False)
        self.settings, self.budget = budget.planned(self.checkpoint_dir, make_plan)
        if large is not None:
            if self._fits(large["hidden"]):
                self.larger = ({**large, "validation_fraction": self.settings["validation_fraction"]}, given)
            else:  # wide data
                self.budget["larger"] = {"why": f"the larger network {list(large['hidden'])} does not fit in memory to train"}
        self.deadline = budget.deadline_after(seconds, started, self.budget)
        self.run["settings"] = json_settings(self.settings)
        if self.start_name == "folds" and self.settings["folds"] < 2:
            # The budget holds no folds: a random start judged on a validation split, as fast's from FOLD_ROWS rows.
            fraction = self.settings["validation_fraction"]
            self.start_name = "auto"
            self.train, held_out = validation_split(self.rows, fraction, self.seed)
            self.monitor = held_in_memory(held_out)

    def _step_seconds(self, settings: dict):
        """The step and compile times of a network of given widths trained with ``settings``, the
        processes' means (:func:`aepca.budget.measure_step`)."""
        measure = partial(budget.measure_step, n_features=self.rows.n_features, n_components=self.n_components,
                          settings=settings)
        return lambda hidden: budget.StepTime(*map(distributed.mean_of, measure(hidden)))

    def _fits(self, hidden: tuple) -> bool:
        """Whether a network of these hidden widths trains within memory on these rows."""
        return network_fits(self.rows.n_features, hidden, self.n_components)

    def larger_network(self, first: Trained, judge) -> Trained:
        """Under a budget, after fast's network ``first``: the network the large-data rule sizes to the
        time left, trained on the same rows from the same seed; the one of lower loss on ``judge``
        is kept, and the budget's record says which (docs/recipes.md)."""
        large, given = self.larger

        def left() -> float:
            return distributed.mean_of(self.deadline - time.monotonic())

        # Less than the reserve after training is too little to time the candidates in.
        if "stopped_at_deadline" in first.history or left() < budget.FLOOR_SECONDS:
            self.budget["larger"] = {"why": "fast's network left no time for another"}
            return first
        settings, record = budget.planned(
            self.checkpoint_dir, lambda: budget.sized_to_time(large, given, self.train.n_rows, left, self._step_seconds(large), self._fits),
            budget.LARGER_PLAN_FILE)
        record.pop("after_training_s", None)  # it trains to the deadline planned with the first network
        if settings["epochs"] < budget.MIN_EPOCHS:
            self.budget["larger"] = {**record, "why": f"no candidate gets {budget.MIN_EPOCHS} epochs in the time left"}
            return first
        larger = replace(self, settings=settings, run={**self.run, "settings": json_settings(settings)})
        second = larger.fit_network("random", self.train, self.monitor, None, tag="larger")
        losses = {name: float(np.mean(self.held_out_losses(self.pca, trained.net, judge).network))
                  for name, trained in (("fast", first), ("larger", second))}
        kept = "larger" if losses["larger"] < losses["fast"] else "fast"
        self.budget["larger"] = {**record, "held_out_loss": losses, "kept": kept}
        if kept == "fast":
            return first
        self.settings, self.run = larger.settings, larger.run
        return second

    def start(self) -> Trained:
        """The network the settings' start keeps, its history noting what the pass before training
        and training itself took (epochs run before a resume included)."""
        trained = STARTS[self.start_name](self)
        trained.history["training_seconds"] = float(sum(self.training_seconds))
        trained.history["statistics_seconds"] = self.statistics_seconds
        if self.budget is not None:
            trained.history["budget"] = self.budget
        return trained

    # Networks ------------------------------------------------------------------
    def build(self, pca: PCA | None, fold_mean: np.ndarray | None = None) -> tuple[AutoencoderNet, str]:
        """A network started at ``pca``'s solution, or randomly when None, and its output activation.
        Where it starts its output at a mean, a fold's network starts at ``fold_mean``, that of the rows
        it trains on; its fixed scaling stays every training row's, so all folds run the same programs."""
        settings = self.settings
        output = settings["output_activation"]
        if pca is not None or output == "auto":
            output = "sigmoid" if pca is None and self.space.scaler.unit_interval_ else "linear"
        standardise = None
        if output == "linear":
            # Fixed layers standardise each column of the rows the network takes.
            mean, scale, typical = network_scaling(self.summary)
            standardise = (mean * typical, scale * typical)
        output_mean = None
        if pca is None and (standardise is not None or settings["output_bias"] == "mean"):
            # A fold's network at its own rows' mean; else every training row's, where a standardised
            # output starts without a bias.
            output_mean = fold_mean if fold_mean is not None or standardise is not None else self.summary.mean
        net = build_autoencoder(
            self.rows.n_features, self.n_components, hidden=settings["hidden"], activation=settings["activation"],
            output_activation=output, code_activation=settings["code_activation"], seed=self.seed,
            pca=None if pca is None else (pca.components_, pca.mean_), output_mean=output_mean,
            standardise=standardise, data_scale=self.space.network_scale,
        )
        return net, output

    def fit_network(self, init: str, train_rows: RowSource, monitor, pca: PCA | None, *, epochs: int | None = None,
                    tag: str | None = None, deadline: float | None = None,
                    fold_mean: np.ndarray | None = None) -> Trained:
        """Build a network started as ``init`` (a fold's output at ``fold_mean``, see :meth:`build`) and
        train it on ``train_rows`` for the settings' epochs (or exactly ``epochs``); ``tag`` names its
        checkpoint folder (default: ``init``); ``deadline`` (``time.monotonic()``) ends its training
        sooner than the fit's own."""
        net, output = self.build(pca, fold_mean)
        start = weights_of(net.autoencoder)
        epochs = self._epochs(train_rows.n_rows) if epochs is None else epochs
        history = self._train(net, train_rows, monitor, init, epochs, tag or init, deadline or self.deadline)
        self.training_seconds.append(history["seconds"][-1] if history["seconds"] else 0.0)
        for key in ("val_mse", *(("loss", "val_loss", "best_val_loss", "start_val_loss") if self.settings["loss"] == "mse" else ())):
            if key in history:
                history[key] = self.space.in_space_units(history[key])
        history["init"] = init
        history["epochs_reason"] = self._epochs_reason(train_rows.n_rows, epochs, history)
        if init == "pca" and self.settings["restore_best"] and monitor is not None:
            history["kept_start"] = self._keep_start_unless_clearly_better(net.autoencoder, start, monitor)
        return Trained(net, history, init, output)

    def untrained_pca(self, reason: str) -> Trained:
        """PCA itself as the model: a PCA-started network, not trained."""
        net, output = self.build(self.pca)
        history = {"loss": [], "val_loss": [], "val_mse": [], "seconds": [], "lr_scale": [], "init": "pca",
                   "epochs_reason": f"0 epochs: {reason}"}
        return Trained(net, history, "pca", output)

    def _train(self, net: AutoencoderNet, train_rows: RowSource, monitor, init: str, epochs: int, tag: str,
               deadline: float | None) -> dict:
        lanes = self.lanes or self.devices * distributed.process_count()
        callbacks, resume = (), None
        if self.checkpoint_dir is not None:
            folder = Path(self.checkpoint_dir) / tag
            fingerprint = run_fingerprint({**self.run, "init": init, "lanes": lanes, "epochs": epochs},
                                          {"training rows": train_rows, "validation rows": monitor})
            resume = load_checkpoint(folder, fingerprint)
            # Only the first process writes; every process resumes from the same files.
            callbacks = (Checkpointer(folder, fingerprint),) if distributed.is_writer() else ()
        settings = self.settings
        config = TrainConfig(
            epochs=epochs, batch_size=settings["batch_size"], learning_rate=float(settings["learning_rate"]),
            optimizer=settings["optimizer"], beta_2=float(settings["beta_2"]), schedule=settings["schedule"],
            warmup_epochs=float(settings["warmup_epochs"]), loss=settings["loss"], seed=self.seed,
            restore_best=bool(settings["restore_best"]), patience=settings["patience"],
            anneal_epochs=settings.get("anneal_epochs"), devices=int(self.devices),
            lanes=lanes, deadline=deadline,
        )
        return train(net.autoencoder, train_rows, x_val=monitor, config=config, progress=self.verbose,
                     callbacks=callbacks, resume=resume)

    def _epochs(self, n_train: int) -> int:
        settings = self.settings
        if settings["min_steps"] is None:
            return settings["epochs"]
        return max(settings["epochs"], math.ceil(settings["min_steps"] / steps_per_epoch(n_train, settings["batch_size"])))

    def _epochs_reason(self, n_train: int, epochs: int, history: dict) -> str:
        settings = self.settings
        if "stopped_at_deadline" in history:
            return f"{len(history['loss'])} epochs: the time budget's deadline came (planned {epochs})"
        if "annealed_from" in history:
            return (f"{len(history['loss'])} epochs: the validation loss had not improved for {settings['patience']} "
                    f"epochs by epoch {history['annealed_from']}, then {len(history['loss']) - history['annealed_from']} "
                    f"more from the best weights at a learning rate falling linearly to 0 (cap {epochs})")
        if "stopped_early" in history:
            return (f"{len(history['loss'])} epochs: the validation loss had not improved for {settings['patience']} "
                    f"epochs (cap {epochs})")
        if epochs == settings["epochs"]:
            return f"{epochs} epochs, as set"
        if epochs > settings["epochs"] and settings["min_steps"]:
            return (f"{epochs} epochs instead of {settings['epochs']}: {n_train} training rows make "
                    f"{steps_per_epoch(n_train, settings['batch_size'])} steps per epoch, and at least "
                    f"{settings['min_steps']} optimizer steps (min_steps) are run")
        return f"{epochs} epochs"

    def _keep_start_unless_clearly_better(self, model, start, monitor) -> bool:
        """Go back to the starting (PCA) weights unless the trained ones are clearly better.

        Selecting the best epoch on the validation rows favours weights that are
        better there by chance, so a trained model may still be worse than its
        PCA start on new data. Returns whether the start was kept.
        """
        trained = weights_of(model)
        trained_errors = sample_mse(monitor, lambda block: predict(model, block))
        model.set_weights(start)
        if paired_evidence(sample_mse(monitor, lambda block: predict(model, block)), trained_errors,
                           CLEAR_IMPROVEMENT_Z)["kept_network"]:
            model.set_weights(trained)
            return False
        return True

    # Errors ----------------------------------------------------------------------
    def errors(self, net: AutoencoderNet, rows) -> np.ndarray:
        """Each row's MSE in the error space, for rows as the network takes them."""
        return self.space.in_space_units(sample_mse(rows, lambda block: predict(net.autoencoder, block)))

    def pca_errors(self, pca: PCA, rows) -> np.ndarray:
        """Each row's MSE of ``pca`` (fitted in the error space), for rows as the network takes them."""
        space = self.space
        return space.in_space_units(sample_mse(rows, lambda block: space.to_network(
            pca.inverse_transform(pca.transform(space.from_network(block))).astype(np.float32))))

    def held_out_losses(self, pca: PCA, net: AutoencoderNet, rows) -> HeldOutLosses:
        """PCA's and the network's per-row losses on held-out ``rows`` (as the network takes them), as
        the keep-or-fallback rule judges them (``select_by``): each row's MSE in the error space; or
        with ``"recall"`` each query row's share of its ``DEFAULT_K`` nearest neighbours missed when
        searching the codes (:func:`aepca.neighbours.code_recall_misses`: exact neighbours among the
        held-out rows in the error space, by ``metric``, whose ``"auto"`` takes the distance the data
        declares; at most ``SELECTION_ROWS`` of them, a seeded sample, 1,000 of those the queries)."""
        if self.select_by == "mse":
            return HeldOutLosses(self.pca_errors(pca, rows), self.errors(net, rows))
        if isinstance(rows, RowSource):
            rows = take_rows(rows, query_positions(rows.n_rows, SELECTION_ROWS, self.seed))
        elif len(rows) > SELECTION_ROWS:
            rows = rows[query_positions(len(rows), SELECTION_ROWS, self.seed)]
        space_rows = self.space.from_network(rows)
        misses, metric = code_recall_misses(
            space_rows, {"pca": pca.transform(space_rows), "network": predict(net.encoder, rows)},
            metric=self.metric, declared=self.rows.distance, seed=self.seed)
        return HeldOutLosses(misses["pca"], misses["network"], metric)

    def judged(self, losses: HeldOutLosses, z_threshold: float) -> dict:
        """:func:`aepca.selection.paired_evidence` on ``held_out_losses``, naming what was judged."""
        selection = paired_evidence(losses.pca, losses.network, z_threshold)
        selection["criterion"] = "mse" if self.select_by == "mse" else f"recall@{DEFAULT_K} of the codes"
        if self.select_by == "recall":
            selection.update(pca_recall=float(1 - np.mean(losses.pca)), network_recall=float(1 - np.mean(losses.network)),
                             metric=losses.metric[0], metric_reason=losses.metric[1])
        return selection


# Starts ------------------------------------------------------------------------------


def start_random(fit: Fit) -> Trained:
    return fit.fit_network("random", fit.train, fit.monitor, None)


def start_pca(fit: Fit) -> Trained:
    return fit.fit_network("pca", fit.train, fit.monitor, fit.pca)


def start_auto(fit: Fit) -> Trained:
    """A random start, kept only when clearly better than PCA on the validation rows (else the
    training rows); otherwise a PCA start, which training can only improve on."""
    trained = fit.fit_network("random", fit.train, fit.monitor, None)
    judge = fit.train if fit.monitor is None else fit.monitor
    if fit.larger is not None:
        trained = fit.larger_network(trained, judge)
    selection = fit.judged(fit.held_out_losses(fit.pca, trained.net, judge), CLEAR_IMPROVEMENT_Z)
    selection["held_out"] = "training rows" if fit.monitor is None else f"{_n_rows(judge)} validation rows"
    if not selection["kept_network"]:
        # Under a time budget the time went to the random start: PCA itself is the fallback.
        trained = (fit.fit_network("pca", fit.train, fit.monitor, fit.pca) if fit.deadline is None else
                   fit.untrained_pca(f"PCA was kept (the network, trained {len(trained.history['loss'])} epochs, "
                                     f"was not clearly better; the time budget was spent)"))
    trained.history["selection"] = selection
    return trained


def start_folds(fit: Fit) -> Trained:
    """Decide between a random start and PCA on ``folds`` folds of every training row. Each fold's
    network is first trained on the other rows and stopped on the fold, which gives its best epoch
    count; the evidence is cross-fitted: each fold's network trained again for the other folds' median
    best epoch count and scored on the fold, so no fold's score chose its own epochs (a network stopped
    at its best epoch on the rows it is scored on looks better than it is: docs/recipes.md).
    A kept network is trained once more on every row for the folds' median best epoch count, else PCA
    itself is the model (also when a time budget's deadline cuts that training short of every epoch
    count the folds were judged at)."""
    folds = fit.settings["folds"]
    views = fold_views(fit.rows, folds, fit.seed)
    pcas = [PCA(fit.n_components).fit(train_rows.map(fit.space.from_network)) for train_rows, _ in views]
    held_rows = [held_out.to_array() for _, held_out in views]  # folds are for few rows

    def trained_on(fold: int, done: int, **how) -> Trained:
        # Under a time budget each of the 2 x folds fits, and the final fit on every row, gets an equal share
        # of the time left, the first its compilation besides (the plan's measure), which would otherwise end
        # it after an epoch. The network's output starts at the mean of its own training rows, where PCA is
        # centred: started at every training row's, it knew the held-out rows' mean (on 96 rows of noise it
        # won every fold by 2%).
        share = None
        if fit.deadline is not None:
            now = time.monotonic()
            compiling = (fit.budget or {}).get("compile_s", 0.0) if done == 0 else 0.0
            share = now + compiling + (fit.deadline - now - compiling) / (2 * folds + 1 - done)
        return fit.fit_network("random", views[fold][0], pca=None, deadline=share,
                               fold_mean=fit.space.to_network(pcas[fold].mean_), **how)

    best_epochs = [best_epoch(trained_on(fold, fold, monitor=held_rows[fold], tag=f"fold-{fold}").history)
                   for fold in range(folds)]
    cross_epochs = [max(1, int(np.median(best_epochs[:fold] + best_epochs[fold + 1 :]))) for fold in range(folds)]
    by_fold = []
    for fold in range(folds):
        trained = trained_on(fold, folds + fold, monitor=None, epochs=cross_epochs[fold], tag=f"cross-{fold}")
        by_fold.append(fit.held_out_losses(pcas[fold], trained.net, held_rows[fold]))
    fold_gains = [1 - losses.network.mean() / losses.pca.mean() if losses.pca.mean() > 0 else 0.0 for losses in by_fold]
    pooled = HeldOutLosses(*(np.concatenate([getattr(losses, name) for losses in by_fold]) for name in ("pca", "network")),
                           by_fold[0].metric)
    selection = fit.judged(pooled, FOLD_Z)
    selection.update(held_out=f"{folds} folds of {fit.rows.n_rows} training rows", fold_gains=fold_gains,
                     folds_below=int(sum(gain > 0 for gain in fold_gains)), best_epochs=best_epochs,
                     cross_fitted_epochs=cross_epochs)
    if selection["kept_network"]:
        epochs = max(1, int(np.median(best_epochs)))
        trained = fit.fit_network("random", fit.rows, None, None, epochs=epochs, tag="all")
        reached = len(trained.history["loss"])
        if reached < min(cross_epochs):
            # A time budget's deadline cut it short of every epoch count the folds were judged at.
            selection.update(kept_network=False, cut_short=f"its training on every row reached {reached} of "
                                                           f"{epochs} epochs before the time budget's deadline")
            trained = fit.untrained_pca(f"PCA was kept (the network was clearly better on the folds, but "
                                        f"{selection['cut_short']})")
        else:
            cut = "" if reached == epochs else f" ({epochs} planned; the time budget's deadline came)"
            trained.history["epochs_reason"] = (
                f"{reached} epochs on every training row: the median epoch with the lowest held-out loss over "
                f"{folds} folds {best_epochs}{cut}"
            )
    else:
        trained = fit.untrained_pca("PCA was kept (the network was not clearly better on the folds)")
    trained.history["selection"] = selection
    return trained


# Each start by name; "folds" is init="auto" judged on folds instead of a validation split.
STARTS = {"random": start_random, "pca": start_pca, "auto": start_auto, "folds": start_folds}


def fold_views(rows: RowSource, folds: int, seed: int) -> list[tuple[RowSource, RowSource]]:
    """``folds`` (training, held-out) views of ``rows``: the rows ranked by a seeded hash of their
    indices, cut into equal parts, so every fold holds n/folds rows (from metadata alone)."""
    if rows.n_rows < 2 * folds:
        raise invalid_value("folds", f"at most half the {rows.n_rows} training rows", f"folds={folds}",
                            "Use fewer folds (folds=0 judges the network on a validation split instead) or more rows.")
    ranks = [f * rows.n_rows // folds for f in range(1, folds)]
    # Hashes are multiples of 2**-53, so these differences and sums are exact.
    edges = [0.0, *hash_edges(lambda: rows.iter_row_hashes(seed, FOLD_SALT), rows.n_rows, ranks), 1.0]
    return [(rows.kept(high - low, seed, FOLD_SALT, low), rows.held_out(high - low, seed, FOLD_SALT, low))
            for low, high in zip(edges[:-1], edges[1:])]


def resolve_settings(recipe, given: dict, n_rows: int, n_features: int, n_components: int, *,
                     check_memory: bool = True) -> dict:
    """The recipe's settings for data of this size, with the ``given`` ones that are not None, checked
    (the network's memory only with ``check_memory``)."""
    if n_components > n_features:
        raise invalid_value("n_components", "at most the number of features",
                            f"n_components={n_components}, n_features={n_features}", "Choose a smaller code size.")
    settings = get_recipe(recipe).settings(n_rows, n_features, n_components, **given)
    folds = settings["folds"]
    if folds and given.get("folds") is None and n_rows < 2 * folds:  # folds=N given: fold_views says why
        raise invalid_value("X", f"at least {2 * folds} training rows (the {get_recipe(recipe).name} recipe judges "
                                 f"the network against PCA on {folds} folds of 2 rows or more)",
                            plural(n_rows, "training row"), "Provide more rows; in a comparison, hold fewer out "
                            "for testing (--test-size, test_size=).")
    settings["hidden"] = check_hidden(settings["hidden"])
    if check_memory:
        check_network_fits(n_features, settings["hidden"], n_components)
    check_activation(settings["activation"])
    check_activation(settings["code_activation"], "code_activation")
    if settings["output_activation"] != "auto":
        check_activation(settings["output_activation"], "output_activation")
    return settings


def json_settings(settings: dict) -> dict:
    """Settings as JSON values (``hidden`` a list)."""
    return {**settings, "hidden": list(settings["hidden"])}


def validation_split(rows: RowSource, fraction: float, seed: int) -> tuple[RowSource, RowSource]:
    """The (training, validation) views of ``rows`` (``fraction`` held out by a seeded hash), leaving rows
    on each side."""
    kept, held_out = rows.split(fraction, seed, VALIDATION_SALT)
    if min(held_out.n_rows, kept.n_rows) < 1:
        raise invalid_value("validation_fraction", "a share leaving at least one row on each side",
                            f"validation_fraction={fraction} with {rows.n_rows} rows")
    return kept, held_out


def fits_in_memory(rows: RowSource) -> bool:
    """Whether ``rows`` (float32) take at most ``MAX_HELD_BYTES``."""
    return rows.n_rows * rows.n_features * 4 <= MAX_HELD_BYTES


def held_in_memory(rows: RowSource, held: np.ndarray | None = None):
    """Validation rows as an array when they fit in memory (``held``: already read), else the view."""
    if held is not None:
        return held
    return rows.to_array() if fits_in_memory(rows) else rows


def _n_rows(rows) -> int:
    return rows.n_rows if isinstance(rows, RowSource) else len(rows)
