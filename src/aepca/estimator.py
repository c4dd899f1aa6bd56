"""``Autoencoder``: a scikit-learn transformer backed by a Keras 3 autoencoder."""

from __future__ import annotations

import math
import os
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from aepca import distributed
from aepca.checkpoint import Checkpointer, load_checkpoint, run_fingerprint
from aepca.data.columns import ColumnSpec
from aepca.data.readers import iter_row_blocks
from aepca.data.sources import RowSource, open_source
from aepca.metrics import sample_mse
from aepca.models import AutoencoderNet, build_autoencoder, check_activation, predict, split_autoencoder, weights_of
from aepca.pca import PCA
from aepca.persistence import estimator_metadata, model_from_bytes, model_to_bytes, read_model_folder, restore_estimator, write_model_folder
from aepca.prefetch import prefetch
from aepca.preprocessing import Scaler, network_scaling
from aepca.recipes import RECIPES, SETTINGS, Recipe, get_recipe
from aepca.refine import refine_codes
from aepca.selection import CLEAR_IMPROVEMENT_Z, FOLD_Z, paired_evidence
from aepca.statistics import scan
from aepca.training import LOSSES, OPTIMIZERS, SCHEDULES, TrainConfig, best_epoch, steps_per_epoch, train
from aepca.validation import check_codes, describe_names, invalid_value, plural

MIN_VALIDATION_ROWS = 50


class Autoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Nonlinear PCA: a deep autoencoder with the scikit-learn transformer API.

    ``transform`` gives the code (the nonlinear principal components),
    ``inverse_transform`` decodes codes back to the data's own units, and
    ``score`` is the negative reconstruction MSE (higher is better) in the
    error space chosen by ``scale``, so it compares directly with
    :class:`aepca.PCA` fitted on the same scaled data.

    The network trains on the error space's rows divided by one typical
    scale, and (with a linear output) standardises each column inside its
    first layer and undoes that at its output: its loss is exactly that
    space's MSE, and training does not depend on the data's units.

    Parameters
    ----------
    n_components : int, default=2
        Size of the code layer.
    recipe : {"fast", "classic", "linear"} or aepca.recipes.Recipe, default="fast"
        Named settings sized to the data (see :mod:`aepca.recipes` and
        docs/recipes.md); the same default as the ``aepca`` command. Every
        setting below left at None takes the recipe's value; ``settings_``
        holds the values used.
    hidden : tuple of int or None
        Encoder hidden layer widths; the decoder mirrors them.
    activation : str or None
        Hidden activation (any Keras activation name).
    output_activation : str or None
        ``"auto"`` is ``"sigmoid"`` when the (scaled) training data lies in
        [0, 1] and the network is randomly initialised, else ``"linear"``.
    code_activation : str or None
        The code layer's activation. Linear is right for nonlinear PCA; a
        bounded one (tanh, sigmoid) is a common mistake that the diagnoses
        name. A PCA start is always linear.
    init : {"random", "pca", "auto"} or None
        ``"pca"`` starts the network exactly at PCA's solution (a PCA layer
        plus zero-initialised nonlinear residual branches): training can only
        improve on PCA. ``"auto"`` trains a randomly initialised network and
        keeps it only when it is clearly better than PCA on held-out rows
        (``folds``, or the validation rows); otherwise PCA wins: with folds
        the model is PCA itself, with a validation split a PCA-initialised
        network trained on. ``init_`` records which was kept and
        ``history_["selection"]`` the evidence.
    output_bias : {"zeros", "mean"} or None
        How a randomly initialised network's output starts: at zero, or at
        the training mean (a standardised linear output starts there anyway).
    scale : {"none", "auto", "minmax", "standard"}, default="none"
        The error space: per-feature scaling learned on the training data
        (see :class:`aepca.preprocessing.Scaler`) in which the network is
        trained and ``score`` measured. Reconstructions are in the original
        units.
    epochs, batch_size, learning_rate, optimizer, beta_2, schedule, warmup_epochs, loss : or None
        Training settings; see :class:`aepca.training.TrainConfig`. An
        explicit ``epochs`` is exact (no step floor, no early stopping unless
        those are given too).
    min_steps : int or None
        Train at least this many optimizer steps (more epochs on small data).
    validation_fraction : float or None
        Share of the training rows held out to monitor (and, with
        ``restore_best``, select) the weights.
    restore_best : bool or None
        Keep the weights with the lowest validation loss, the initial ones
        included; a PCA-initialised network then keeps its start unless the
        trained weights are clearly better on validation
        (``CLEAR_IMPROVEMENT_Z``).
    patience : int or None
        Stop after this many epochs without a lower validation loss
        (``epochs`` is then the cap).
    folds : int or None
        With ``init="auto"``: decide between the network and PCA on this
        many folds of all training rows (each fold held out once, the
        network trained on the rest and stopped on it), keeping the network
        when its held-out errors are lower than PCA's by more than
        ``FOLD_Z`` standard errors; it is then trained once more on every
        row for the folds' median best epoch count. 0: use the validation
        split.
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation, shuffling and the validation split.
    verbose : bool, default=False
        Show a progress bar while training.
    checkpoint_dir : str, path or None, default=None
        Write a checkpoint there after every epoch, and resume from the one
        found there (written by the same settings on the same data), ending
        with the same weights as an uninterrupted fit.
    refine_steps : int, default=0
        After encoding, improve each sample's code by this many Adam steps on
        its reconstruction loss through the decoder (see :mod:`aepca.refine`):
        better codes and reconstructions on new data, at the cost of that many
        decoder passes in ``transform`` and ``reconstruct``. JAX, TensorFlow
        and PyTorch backends. Training and the checks during ``fit`` use the
        plain encoder.
    devices : int, default=1
        Train on this many of the devices JAX sees (GPUs; or CPU devices, with
        ``XLA_FLAGS=--xla_force_host_platform_device_count=N``), each taking an
        equal share of every batch, so ``batch_size`` must be a multiple of it.
        The steps are those of one device. In a run of several processes
        (:mod:`aepca.distributed`), the devices of each. JAX backend only.
    lanes : int or None, default=None
        For rows streamed from a :class:`aepca.data.sources.RowSource`: how
        many read streams make up each batch (see
        :class:`aepca.training.TrainConfig`). The batches depend on it, not
        on the number of processes; None: ``devices`` times the processes.

    Attributes
    ----------
    model_, encoder_, decoder_ : keras.Model
    scaler_ : aepca.preprocessing.Scaler
        The error space.
    network_scale_ : float
        The network's inputs are the error space's rows divided by this.
    history_ : dict
        Per-epoch ``loss``, ``val_loss``, ``val_mse`` (in the error space's
        units), ``seconds``; ``epochs_reason`` says why that many epochs ran.
    settings_ : dict
        Every training setting used: the recipe's, sized to the data, and the arguments given.
    output_activation_ : str
    init_ : str
        How the kept network was started ("random" or "pca").
    n_features_in_ : int
    """

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "recipe": [StrOptions(set(RECIPES)), Recipe],
        "hidden": ["array-like", None],
        "activation": [str, None],
        "output_activation": [str, None],
        "code_activation": [str, None],
        "init": [StrOptions({"random", "pca", "auto"}), None],
        "output_bias": [StrOptions({"zeros", "mean"}), None],
        "scale": [StrOptions({"none", "auto", "minmax", "standard"})],
        "epochs": [Interval(Integral, 1, None, closed="left"), None],
        "min_steps": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), None],
        "optimizer": [StrOptions(set(OPTIMIZERS)), None],
        "beta_2": [Interval(Real, 0, 1, closed="neither"), None],
        "schedule": [StrOptions(set(SCHEDULES)), None],
        "warmup_epochs": [Interval(Real, 0, None, closed="left"), None],
        "loss": [StrOptions(set(LOSSES)), None],
        "validation_fraction": [Interval(Real, 0, 1, closed="left"), None],
        "restore_best": ["boolean", None],
        "patience": [Interval(Integral, 1, None, closed="left"), None],
        "folds": [Interval(Integral, 0, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "checkpoint_dir": [str, os.PathLike, None],
        "refine_steps": [Interval(Integral, 0, None, closed="left")],
        "devices": [Interval(Integral, 1, None, closed="left")],
        "lanes": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        n_components=2,
        *,
        recipe="fast",
        hidden=None,
        activation=None,
        output_activation=None,
        code_activation=None,
        init=None,
        output_bias=None,
        scale="none",
        epochs=None,
        min_steps=None,
        batch_size=None,
        learning_rate=None,
        optimizer=None,
        beta_2=None,
        schedule=None,
        warmup_epochs=None,
        loss=None,
        validation_fraction=None,
        restore_best=None,
        patience=None,
        folds=None,
        random_state=None,
        verbose=False,
        checkpoint_dir=None,
        refine_steps=0,
        devices=1,
        lanes=None,
    ):
        self.n_components = n_components
        self.recipe = recipe
        self.hidden = hidden
        self.activation = activation
        self.output_activation = output_activation
        self.code_activation = code_activation
        self.init = init
        self.output_bias = output_bias
        self.scale = scale
        self.epochs = epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.beta_2 = beta_2
        self.schedule = schedule
        self.warmup_epochs = warmup_epochs
        self.loss = loss
        self.validation_fraction = validation_fraction
        self.restore_best = restore_best
        self.patience = patience
        self.folds = folds
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.refine_steps = refine_steps
        self.devices = devices
        self.lanes = lanes

    # Fitting -----------------------------------------------------------------
    def fit(self, X, y=None, *, X_val=None, columns=None, image_shape=None):
        """Fit on ``X``; ``X_val`` (optional) is monitored each epoch.

        ``X`` is an array or table, or rows read a block at a time: a
        :class:`aepca.data.sources.RowSource` or the path of a ``.npy`` or
        ``.parquet`` file, folder or glob pattern (see :func:`aepca.open_source`).
        ``columns`` (an :class:`aepca.data.columns.ColumnSpec`) says how a
        table's columns became ``X``'s: the model keeps it and applies it to
        new tables and files. ``image_shape`` is kept for showing rows.
        """
        if isinstance(X, (RowSource, str, os.PathLike)):
            return self._fit_source(X if isinstance(X, RowSource) else open_source(X), X_val, columns, image_shape)
        self._validate_params()
        X = validate_data(self, X, dtype=np.float32, ensure_min_samples=2)
        if columns is not None and len(columns.feature_names) != X.shape[1]:
            raise invalid_value(
                "columns", f"a specification of {X.shape[1]} features", f"{len(columns.feature_names)} features",
                "Pass the specification X was read with.",
            )
        self.columns_ = columns
        self.image_shape_ = None if image_shape is None else tuple(int(d) for d in image_shape)
        n_rows, n_features = X.shape
        self._check_n_components(n_features)
        self.settings_ = self._settings(n_rows, n_features)
        settings = self.settings_
        self._training_seconds = []
        seed = self._seed()
        self.scaler_ = Scaler(self.scale).fit(X)
        X_space = self.scaler_.transform(X)
        # Data in [0, 1] are fed as they are (a sigmoid output can reproduce them).
        self.network_scale_ = 1.0 if self.scaler_.unit_interval_ else network_scaling(X_space)[2]
        X_net = self.network_inputs(X_space)
        if settings["init"] == "auto" and settings["folds"] >= 2 and X_val is None:
            net, self.history_ = self._fit_by_folds(X_space, X_net, seed)
            return self._finish(net)
        train_rows, X_monitor = self._split_validation(X_net, X_val, seed)
        # The PCA is fitted on every training row: exactly the PCA it is compared with.
        return self._finish(self._fit_init(X_net, train_rows, X_monitor, seed, lambda: PCA(self.n_components).fit(X_space)))

    def _fit_source(self, source: RowSource, X_val, columns, image_shape):
        """``fit`` on rows streamed from ``source``: one pass gives the error
        space, the PCA and the network's scaling; training then reads blocks
        as it goes. Several processes each read their share."""
        self._validate_params()
        self.columns_ = source.columns if columns is None else columns
        shape = image_shape if image_shape is not None else source.image_shape
        self.image_shape_ = None if shape is None else tuple(int(d) for d in shape)
        self.n_features_in_ = source.n_features
        self.__dict__.pop("feature_names_in_", None)
        self._check_n_components(source.n_features)
        self.settings_ = self._settings(source.n_rows, source.n_features)
        if self.settings_["init"] == "auto" and self.settings_["folds"] >= 2 and X_val is None:
            # Folds take rows at random; recipes use them on few rows only, which fit in memory.
            return self.fit(source.to_array(), columns=self.columns_, image_shape=self.image_shape_)
        self._training_seconds = []
        seed = self._seed()
        statistics = scan(source)
        self.scaler_ = Scaler(self.scale).fit(statistics.summary)
        space = statistics.in_scaled_space(self.scaler_.offset_, self.scaler_.scale_)
        self.network_scale_ = 1.0 if self.scaler_.unit_interval_ else network_scaling(space.summary)[2]
        d = source.n_features
        # The statistics of the rows the network takes, for building it (see _build).
        self._stream_summary = space.summary.in_scaled_space(np.zeros(d), np.full(d, self.network_scale_))
        try:
            X_net = source.map(self._source_network_inputs)
            train, X_monitor = self._split_source(X_net, X_val, seed)
            net = self._fit_init(train, None, X_monitor, seed, lambda: PCA.from_accumulator(space.accumulator, self.n_components))
        finally:
            del self._stream_summary
        return self._finish(net)

    def _source_network_inputs(self, block: np.ndarray) -> np.ndarray:
        return self.network_inputs(self.scaler_.transform(block))

    def _split_source(self, X_net: RowSource, X_val, seed):
        """The streamed rows to train on and the validation rows (``None``: none):
        ``X_val``, or a seeded hash of the row numbers (the same on every run)."""
        if X_val is not None:
            if not isinstance(X_val, RowSource):
                X_val = validate_data(self, X_val, dtype=np.float32, reset=False)
                return X_net, self.network_inputs(self.scaler_.transform(X_val))
            return X_net, X_val.map(self._source_network_inputs)
        fraction = self.settings_["validation_fraction"]
        if fraction == 0:
            return X_net, None
        train, held_out = X_net.kept(fraction, seed, "validation"), X_net.held_out(fraction, seed, "validation")
        if min(train.n_rows, held_out.n_rows) < 1:
            raise invalid_value(
                "validation_fraction", "a share leaving at least one row on each side",
                f"validation_fraction={fraction} with {X_net.n_rows} rows",
            )
        return train, held_out

    def _fit_init(self, X_net, train_rows, X_monitor, seed, fit_pca):
        """Train the network the settings' ``init`` asks for; with ``"auto"``, a
        random start kept only when clearly better than PCA (``fit_pca()``, fitted
        on every training row: exactly the PCA it is compared with) on held-out rows."""
        init = self.settings_["init"]
        if init != "auto":
            net, self.history_ = self._fit_network(init, X_net, train_rows, X_monitor, seed, fit_pca() if init == "pca" else None)
            return net
        net, self.history_ = self._fit_network("random", X_net, train_rows, X_monitor, seed, None)
        # Fitted only now, so the first training step does not wait for it.
        pca = fit_pca()
        judge = X_net if X_monitor is None else X_monitor
        selection = paired_evidence(self._pca_errors(pca, judge), self._errors(net, judge), CLEAR_IMPROVEMENT_Z)
        selection["held_out"] = "training rows" if X_monitor is None else f"{_n_rows(judge)} validation rows"
        if not selection["kept_network"]:
            # The nonlinear network is not clearly better than PCA: start
            # again from PCA itself, which training can only improve on.
            net, self.history_ = self._fit_network("pca", X_net, train_rows, X_monitor, seed, pca)
        self.history_["selection"] = selection
        return net

    def _seed(self) -> int:
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    def _check_n_components(self, n_features: int) -> None:
        if self.n_components > n_features:
            raise invalid_value(
                "n_components", "at most the number of features",
                f"n_components={self.n_components}, n_features={n_features}", "Choose a smaller code size.",
            )

    def _finish(self, net):
        # Every network's training time, including epochs run before a resume.
        self.history_["training_seconds"] = float(sum(self._training_seconds))
        del self._training_seconds
        self._set_net(net)
        return self

    def _settings(self, n_rows: int, n_features: int) -> dict:
        """The recipe's settings for data of this size, with the arguments given."""
        given = {name: getattr(self, name) for name in SETTINGS}
        settings = get_recipe(self.recipe).settings(n_rows, n_features, self.n_components, **given)
        settings["hidden"] = tuple(int(h) for h in settings["hidden"])
        check_activation(settings["activation"])
        check_activation(settings["code_activation"], "code_activation")
        if settings["output_activation"] != "auto":
            check_activation(settings["output_activation"], "output_activation")
        return settings

    def _fit_by_folds(self, X_space, X_net, seed):
        """Decide between a randomly started network and PCA on ``folds`` folds
        of every training row; returns the kept model and its history."""
        folds = self.settings_["folds"]
        n_rows = len(X_net)
        if n_rows < 2 * folds:
            raise invalid_value(
                "folds", f"at most half the {n_rows} training rows", f"folds={folds}", "Use fewer folds or more rows.",
            )
        fold_of = np.random.default_rng(seed).permutation(n_rows) % folds
        network_errors, pca_errors = np.empty(n_rows), np.empty(n_rows)
        best_epochs, fold_gains = [], []
        for fold in range(folds):
            held_out = np.flatnonzero(fold_of == fold)
            rows = np.flatnonzero(fold_of != fold)
            X_held_out = X_net[held_out]
            net, history = self._fit_network("random", X_net, rows, X_held_out, seed, None, tag=f"fold-{fold}")
            pca = PCA(self.n_components).fit(X_space[rows])
            network_errors[held_out] = self._errors(net, X_held_out)
            pca_errors[held_out] = self._pca_errors(pca, X_held_out)
            best_epochs.append(best_epoch(history))
            fold_gains.append(1 - network_errors[held_out].mean() / pca_errors[held_out].mean())
        selection = paired_evidence(pca_errors, network_errors, FOLD_Z)
        selection.update(held_out=f"{folds} folds of {n_rows} training rows", fold_gains=fold_gains,
                         folds_below=int(sum(gain > 0 for gain in fold_gains)), best_epochs=best_epochs)
        if selection["kept_network"]:
            epochs = max(1, int(np.median(best_epochs)))
            net, history = self._fit_network("random", X_net, None, None, seed, None, epochs=epochs, tag="all")
            history["epochs_reason"] = (
                f"{epochs} epochs on every training row: the median epoch with the lowest held-out loss over "
                f"{folds} folds {best_epochs}"
            )
        else:
            # PCA is exactly the model: a PCA-initialised network, untrained.
            self.init_ = "pca"
            net = self._build(X_net, None, seed, PCA(self.n_components).fit(X_space))
            history = {"loss": [], "val_loss": [], "val_mse": [], "seconds": [], "lr_scale": [], "init": "pca",
                       "epochs_reason": "0 epochs: PCA was kept (the network was not clearly better on the folds)"}
        history["selection"] = selection
        return net, history

    def network_inputs(self, X_space):
        """Rows of the error space (``scaler_.transform(X)``) as the network takes them:
        divided by ``network_scale_``."""
        if self.network_scale_ == 1.0:
            return X_space
        return (X_space / np.float32(self.network_scale_)).astype(np.float32, copy=False)

    def _fit_network(self, init, X, train_rows, X_monitor, seed, pca, *, epochs=None, tag=None):
        """Build and train one network started as ``init``; returns it and its history.

        It trains on the rows ``train_rows`` of ``X`` (all of them when ``None``)
        for the settings' epochs, or exactly ``epochs``; ``tag`` names its
        checkpoint folder (default: ``init``).
        """
        self.init_ = init
        net = self._build(X, train_rows, seed, None if init == "random" else pca)
        start = weights_of(net.autoencoder)
        n_train = _n_rows(X) if train_rows is None else len(train_rows)
        epochs = self._epochs(n_train) if epochs is None else epochs
        history = self._in_space_units(self._train(net, X, train_rows, X_monitor, seed, epochs, tag or init))
        self._training_seconds.append(history["seconds"][-1] if history["seconds"] else 0.0)
        history["init"] = init
        history["epochs_reason"] = self._epochs_reason(n_train, epochs, history)
        if init == "pca" and self.settings_["restore_best"] and X_monitor is not None:
            history["kept_start"] = self._keep_start_unless_clearly_better(net.autoencoder, start, X_monitor)
        return net, history

    def _in_space_units(self, history: dict) -> dict:
        """Training's losses (of rows divided by ``network_scale_``) in the error space's units."""
        factor = self.network_scale_**2
        keys = ["val_mse"] + (["loss", "val_loss", "best_val_loss", "start_val_loss"] if self.settings_["loss"] == "mse" else [])
        for key in keys:
            if isinstance(history.get(key), list):
                history[key] = [value * factor for value in history[key]]
            elif key in history:
                history[key] *= factor
        return history

    def _errors(self, net: AutoencoderNet, X_net) -> np.ndarray:
        """Per-sample MSE of ``net`` in the error space, for rows as the network takes them."""
        return sample_mse(X_net, lambda block: predict(net.autoencoder, block)) * self.network_scale_**2

    def _pca_errors(self, pca: PCA, X_net) -> np.ndarray:
        c = self.network_scale_
        return sample_mse(X_net, lambda block: pca.inverse_transform(pca.transform(block * c)) / c) * c**2

    def _keep_start_unless_clearly_better(self, model, start, X_monitor) -> bool:
        """Go back to the starting (PCA) weights unless the trained ones are clearly better.

        Selecting the best epoch on the validation rows favours weights that
        are better there by chance, so a trained model may still be worse than
        its PCA start on new data. Returns whether the start was kept.
        """
        errors = lambda: sample_mse(X_monitor, lambda block: predict(model, block))  # noqa: E731
        trained = weights_of(model)
        trained_errors = errors()
        model.set_weights(start)
        if paired_evidence(errors(), trained_errors, CLEAR_IMPROVEMENT_Z)["kept_network"]:
            model.set_weights(trained)
            return False
        return True

    def _split_validation(self, X, X_val, seed):
        """The rows of ``X`` to train on (``None``: all of them) and the scaled
        validation rows (``None``: no validation)."""
        if X_val is not None:
            X_val = validate_data(self, X_val, dtype=np.float32, reset=False)
            return None, self.network_inputs(self.scaler_.transform(X_val))
        fraction = self.settings_["validation_fraction"]
        if fraction == 0:
            return None, None
        # Enough rows for the paired improvement test to mean something.
        n_val = max(int(round(fraction * len(X))), min(MIN_VALIDATION_ROWS, len(X) // 5))
        if n_val < 1 or n_val >= len(X):
            raise invalid_value(
                "validation_fraction", "a share leaving at least one row on each side",
                f"validation_fraction={fraction} with {len(X)} rows",
            )
        order = np.random.default_rng(seed).permutation(len(X))
        # Training reads its rows of X in place.
        return order[n_val:], X[order[:n_val]]

    def _resolve_output_activation(self) -> str:
        if self.settings_["output_activation"] != "auto":
            return self.settings_["output_activation"]
        if self.scaler_.unit_interval_:
            return "sigmoid"
        return "linear"

    def _build(self, X, train_rows, seed, pca: PCA | None) -> AutoencoderNet:
        """Build the network (PCA-initialised when ``pca`` is given); override for other architectures."""
        settings = self.settings_
        self.output_activation_ = "linear" if pca is not None else self._resolve_output_activation()
        standardise = None
        streamed = isinstance(X, RowSource)
        if self.output_activation_ == "linear":
            # Fixed layers standardise each column of the rows the network takes.
            mean, scale, typical = network_scaling(self._stream_summary if streamed else X)
            standardise = (mean * typical, scale * typical)
        if pca is None and standardise is None and settings["output_bias"] == "mean":
            output_mean = self._stream_summary.mean if streamed else (
                X if train_rows is None else X[train_rows]).mean(axis=0, dtype=np.float64)
        else:
            output_mean = None
        return build_autoencoder(
            X.n_features if streamed else X.shape[1],
            self.n_components,
            hidden=settings["hidden"],
            activation=settings["activation"],
            output_activation=self.output_activation_,
            code_activation=settings["code_activation"],
            seed=seed,
            pca=None if pca is None else (pca.components_, pca.mean_),
            output_mean=output_mean,
            standardise=standardise,
            data_scale=self.network_scale_,
        )

    def _epochs(self, n_train: int) -> int:
        settings = self.settings_
        if settings["min_steps"] is None:
            return settings["epochs"]
        return max(settings["epochs"], math.ceil(settings["min_steps"] / steps_per_epoch(n_train, settings["batch_size"])))

    def _epochs_reason(self, n_train: int, epochs: int, history: dict) -> str:
        settings = self.settings_
        ran = len(history.get("loss", []))
        if "stopped_early" in history:
            return (
                f"{ran} epochs: the validation loss had not improved for {settings['patience']} epochs "
                f"(cap {epochs})"
            )
        if epochs == settings["epochs"]:
            return f"{epochs} epochs, as set"
        if epochs > settings["epochs"] and settings["min_steps"]:
            per_epoch = steps_per_epoch(n_train, settings["batch_size"])
            return (
                f"{epochs} epochs instead of {settings['epochs']}: {n_train} training rows make {per_epoch} steps "
                f"per epoch, and at least {settings['min_steps']} optimizer steps (min_steps) are run"
            )
        return f"{epochs} epochs"

    def _train_config(self, seed, epochs) -> TrainConfig:
        settings = self.settings_
        return TrainConfig(
            epochs=epochs,
            batch_size=settings["batch_size"],
            learning_rate=float(settings["learning_rate"]),
            optimizer=settings["optimizer"],
            beta_2=float(settings["beta_2"]),
            schedule=settings["schedule"],
            warmup_epochs=float(settings["warmup_epochs"]),
            loss=settings["loss"],
            seed=seed,
            restore_best=bool(settings["restore_best"]),
            patience=settings["patience"],
            devices=int(self.devices),
            lanes=None if self.lanes is None else int(self.lanes),
        )

    def _train(self, net: AutoencoderNet, X, train_rows, X_monitor, seed, epochs, tag) -> dict:
        """The learning step; variants override this and reuse everything else."""
        callbacks, resume = (), None
        if self.checkpoint_dir is not None:
            # One folder per network trained (init="auto" may train several).
            folder = Path(self.checkpoint_dir) / tag
            # Settings that do not change training do not invalidate a checkpoint.
            params = {k: v for k, v in self.json_params().items() if k not in ("verbose", "checkpoint_dir", "refine_steps")}
            run = {"params": params, "settings": self.json_settings(), "init": self.init_, "seed": seed}
            if isinstance(X, RowSource):  # the batches depend on the lanes
                run["lanes"] = self.lanes or self.devices * distributed.process_count()
            fingerprint = run_fingerprint(run, (X, train_rows, X_monitor))
            resume = load_checkpoint(folder, fingerprint)
            # Only the first process writes; every process resumes from the same files.
            callbacks = (Checkpointer(folder, fingerprint),) if distributed.is_writer() else ()
        return train(
            net.autoencoder,
            X,
            rows=train_rows,
            x_val=X_monitor,
            config=self._train_config(seed, epochs),
            progress=bool(self.verbose),
            callbacks=callbacks,
            resume=resume,
        )

    def _set_net(self, net: AutoencoderNet) -> None:
        self.model_, self.encoder_, self.decoder_ = net.autoencoder, net.encoder, net.decoder
        self._n_features_out = self.n_components

    # Transforms --------------------------------------------------------------
    def column_spec(self):
        """How this model reads a table or file: the specification it was trained
        with, or its features by name (``x0, x1, ...`` for arrays)."""
        check_is_fitted(self)
        if getattr(self, "columns_", None) is not None:
            return self.columns_
        names = getattr(self, "feature_names_in_", None)
        names = tuple(str(n) for n in names) if names is not None else tuple(f"x{i}" for i in range(self.n_features_in_))
        return ColumnSpec(columns=names, feature_names=names)

    def _rows(self, X) -> np.ndarray:
        """``X`` as float32 rows in the training columns' order: a file path's
        rows, or a table read through the model's column specification (a
        DataFrame is aligned by column name; extra columns are ignored)."""
        check_is_fitted(self)
        if isinstance(X, (str, os.PathLike)):
            blocks = [features for _, features in iter_row_blocks(X, self.column_spec())]
            X = np.concatenate(blocks) if blocks else np.zeros((0, self.n_features_in_), np.float32)
        elif (getattr(self, "columns_", None) is not None and hasattr(X, "columns")) or _is_arrow_table(X):
            X = self.column_spec().apply(X)
        names = getattr(self, "feature_names_in_", None)
        if names is not None and hasattr(X, "columns"):
            missing = [name for name in names if name not in X.columns]
            if missing:
                raise ValueError(
                    f"X lacks {plural(len(missing), 'column')} the model was trained on: {describe_names(missing)}. "
                    "Pass rows with every training column (their order and extra columns do not matter)."
                )
            X = X[list(names)]
        return validate_data(self, X, dtype=np.float32, reset=False)

    def _by_block(self, source: RowSource, method, width: int):
        """``method`` applied to each block of a row source, the results concatenated."""
        parts = [method(block) for block in prefetch(source.iter_blocks())]
        return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)

    def transform(self, X):
        """The code of each sample, shape ``(n_samples, n_components)``; a row
        source is read a block at a time."""
        if isinstance(X, RowSource):
            return self._by_block(X, self.transform, self.n_components)
        rows = self._rows(X)  # first: it says so when the model is not fitted
        return self._codes(self.network_inputs(self.scaler_.transform(rows)))

    def _codes(self, X_net):
        codes = predict(self.encoder_, X_net)
        if not self.refine_steps:
            return codes
        return refine_codes(self.decoder_, X_net, codes, steps=int(self.refine_steps), loss=self.settings_["loss"])

    def inverse_transform(self, X):
        """Decode codes back to reconstructions in the data's original units."""
        check_is_fitted(self)
        codes = check_codes(X, self.n_components)
        return self.scaler_.inverse_transform(self._from_network(predict(self.decoder_, codes)))

    def _from_network(self, X_net):
        if self.network_scale_ == 1.0:
            return X_net
        return X_net * np.float32(self.network_scale_)

    def reconstruct_scaled(self, X_space):
        """Reconstructions of rows of the error space (``scaler_.transform(X)``), in that space."""
        X_net = self.network_inputs(X_space)
        if self.refine_steps:
            return self._from_network(predict(self.decoder_, self._codes(X_net)))
        return self._from_network(predict(self.model_, X_net))

    def reconstruct(self, X):
        """``inverse_transform(transform(X))`` in one pass, in the data's units."""
        if isinstance(X, RowSource):
            return self._by_block(X, self.reconstruct, self.n_features_in_)
        rows = self._rows(X)
        return self.scaler_.inverse_transform(self.reconstruct_scaled(self.scaler_.transform(rows)))

    def reconstruct_with_errors(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Each row's reconstruction (in the data's units) and its MSE in the error space, in one pass."""
        rows = self._rows(X)
        reconstructions = []

        def reconstruct_and_keep(block):
            reconstruction = self.reconstruct_scaled(block)
            reconstructions.append(self.scaler_.inverse_transform(reconstruction))
            return reconstruction

        errors = sample_mse(self.scaler_.transform(rows), reconstruct_and_keep)
        if not reconstructions:
            return np.zeros((0, self.n_features_in_), np.float32), errors
        return np.concatenate(reconstructions), errors

    def score_samples(self, X):
        """Negative per-sample reconstruction MSE in the error space (see ``scale``)."""
        if isinstance(X, RowSource):
            return self._by_block(X, self.score_samples, 0).reshape(-1)
        rows = self._rows(X)
        return -sample_mse(self.scaler_.transform(rows), self.reconstruct_scaled)

    def score(self, X, y=None):
        """Negative reconstruction MSE over all entries, in the error space (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # Persistence -------------------------------------------------------------
    def save(self, path) -> Path:
        """Write ``path/model.keras`` and ``path/aepca.json`` (atomically; see :mod:`aepca.persistence`)."""
        check_is_fitted(self)
        return write_model_folder(path, self.model_, estimator_metadata(self))

    def json_params(self) -> dict:
        """``get_params()`` as JSON values (a RandomState becomes None, paths strings)."""
        params = self.get_params()
        if params["hidden"] is not None:
            params["hidden"] = [int(h) for h in params["hidden"]]
        if isinstance(params["recipe"], Recipe):
            params["recipe"] = params["recipe"].name
        if not isinstance(params["random_state"], (int, type(None))):
            params["random_state"] = None
        params["checkpoint_dir"] = None if params["checkpoint_dir"] is None else str(params["checkpoint_dir"])
        return params

    def json_settings(self) -> dict:
        """``settings_`` as JSON values (``hidden`` a list)."""
        return {**self.settings_, "hidden": list(self.settings_["hidden"])}

    def __getstate__(self):
        # Keras models are stored as .keras bytes so a pickle is portable.
        state = self.__dict__.copy()
        model = state.pop("model_", None)
        state.pop("encoder_", None)
        state.pop("decoder_", None)
        if model is not None:
            state["_model_bytes"] = model_to_bytes(model)
        return state

    def __setstate__(self, state):
        model_bytes = state.pop("_model_bytes", None)
        self.__dict__.update(state)
        if model_bytes is not None:
            self._set_net(split_autoencoder(model_from_bytes(model_bytes)))


def _n_rows(X) -> int:
    return X.n_rows if isinstance(X, RowSource) else len(X)


def _is_arrow_table(X) -> bool:
    return type(X).__module__.startswith("pyarrow") and hasattr(X, "schema")


def load_model(path) -> Autoencoder:
    """Load a model saved by :meth:`Autoencoder.save`, checked (see :mod:`aepca.persistence`).

    The loaded model knows nothing of the run that made it (``checkpoint_dir`` is None).
    """
    model, metadata = read_model_folder(path)
    estimator = restore_estimator(Autoencoder, metadata)
    estimator._set_net(split_autoencoder(model))
    return estimator
