"""``Autoencoder``: a scikit-learn transformer backed by a Keras 3 autoencoder.

A thin façade: every input becomes a row source at the public boundary
(:func:`as_source`), :mod:`aepca.fitting` fits, and the fitted attributes are
assigned at the end, all at once.
"""

from __future__ import annotations

import os
import time
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from aepca.budget import check_encoded_rows
from aepca.data.columns import ColumnSpec
from aepca.data.sources import RowSource
from aepca.fitting import NOT_TRAINING, Fit, json_settings, resolve_settings
from aepca.inputs import new_rows, opened, training_rows
from aepca.metrics import sample_mse
from aepca.models import PREDICT_BATCH, predict, split_autoencoder
from aepca.neighbours import METRICS
from aepca.persistence import estimator_metadata, model_from_bytes, model_to_bytes, read_model_folder, restore_estimator, write_model_folder
from aepca.preprocessing import ErrorSpace
from aepca.recipes import RECIPES, SETTINGS, Recipe
from aepca.refine import refine_codes
from aepca.training import LOSSES, OPTIMIZERS, SCHEDULES
from aepca.validation import check_codes, invalid_value


class Autoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Nonlinear PCA: a deep autoencoder with the scikit-learn transformer API.

    ``transform`` gives the code (the nonlinear principal components),
    ``inverse_transform`` decodes codes back to the data's own units, and
    ``score`` is the negative reconstruction MSE (higher is better) in the
    error space chosen by ``scale``, so it compares directly with
    :class:`aepca.PCA` fitted on the same scaled data.

    The network trains on the error space's rows divided by one typical scale,
    and (with a linear output) standardises each column inside its first layer and
    undoes that at its output: its loss is that space's MSE, whatever the units.

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
        The code layer's activation: linear is right for nonlinear PCA; a bounded
        one (tanh, sigmoid) is a mistake the diagnoses name. A PCA start is linear.
    init : {"random", "pca", "auto"} or None
        ``"pca"`` starts exactly at PCA's solution (a PCA layer plus zero-initialised
        residual branches). ``"auto"`` keeps a random start only when it is clearly
        better than PCA on held-out rows (``folds`` or the validation rows), else PCA
        (with folds PCA itself, else a PCA-started network trained on); ``init_`` and
        ``history_["selection"]`` record which and why.
    select_by, metric : {"mse", "recall"}, default="mse"; {"auto", "euclidean", "cosine"}, default="auto"
        What ``init="auto"`` judges on held-out rows: each row's MSE, or the recall@10 of its
        neighbours in the codes, sought by ``metric`` (:meth:`aepca.fitting.Fit.held_out_losses`;
        auto: the distance the data declares, else cosine for unit-length rows, else euclidean).
    output_bias : {"zeros", "mean"} or None
        How a randomly initialised network's output starts: at zero, or at
        the training mean (a standardised linear output starts there anyway).
    scale : {"none", "auto", "minmax", "standard"}, default="none"
        The error space: per-feature scaling learned on the training data
        (:class:`aepca.preprocessing.Scaler`), where the network is trained and
        ``score`` measured; reconstructions are in the original units.
    epochs, batch_size, learning_rate, optimizer, beta_2, schedule, warmup_epochs, loss : or None
        Training settings; see :class:`aepca.training.TrainConfig`. An
        explicit ``epochs`` is exact (no step floor, no early stopping unless
        those are given too).
    min_steps : int or None
        Train at least this many optimizer steps (more epochs on small data).
    validation_fraction : float or None
        Share of the training rows held out to monitor (with ``restore_best``,
        select) the weights: chosen by a seeded hash of the row numbers.
    restore_best : bool or None
        Keep the weights with the lowest validation loss, the initial ones included
        (a PCA start unless clearly beaten, ``CLEAR_IMPROVEMENT_Z``).
    patience : int or None
        Stop after this many epochs without a lower validation loss
        (``epochs`` is then the cap).
    anneal_epochs : int or None
        With ``patience``: when it runs out, train this many more epochs from the best
        weights at a learning rate falling linearly towards 0, then stop.
    folds : int or None
        With ``init="auto"``: judge the network against PCA on this many folds of
        the training rows (kept when better by more than ``FOLD_Z`` standard errors),
        then retrain it on every row for the folds' median best epoch count. 0: use
        the validation split.
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation, shuffling and the validation split.
    verbose : bool, default=False
        Show a progress bar while training.
    checkpoint_dir : str, path or None, default=None
        Keep a checkpoint of the last finished epoch there (see :class:`aepca.checkpoint.Checkpointer`)
        and resume from the one found there (same settings, same data): the weights of an uninterrupted fit.
    refine_steps : int, default=0
        ``transform`` and ``reconstruct`` improve each code by this many Adam steps
        on its reconstruction loss through the decoder (:mod:`aepca.refine`).
    devices : int, default=1
        Train on this many of the devices JAX sees per process (on CPUs,
        ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` makes N), each taking an
        equal share of every batch (``batch_size`` a multiple of it). JAX only.
    lanes : int or None, default=None
        How many read streams make up each batch (:class:`aepca.data.order.EpochBatches`),
        which depend on it alone; None: ``devices`` times the processes.
    time_budget : float or None, default=None
        Seconds ``fit`` may take: network and epochs sized to the run's measured
        speed, training stopped at the deadline (:mod:`aepca.budget`); an explicit
        ``hidden`` or ``epochs`` wins; ``history_["budget"]`` says what and why.

    Attributes
    ----------
    model_, encoder_, decoder_ : keras.Model
    scaler_ : aepca.preprocessing.Scaler
        The error space.
    network_scale_ : float
        The network's inputs are the error space's rows divided by this.
    pca_ : aepca.PCA
        The PCA of every training row in the error space: the linear baseline the
        network is judged against (and falls back to). Not kept by :meth:`save`.
    history_ : dict
        Per-epoch ``loss``, ``val_loss``, ``val_mse`` (in the error space's units),
        ``seconds``; ``epochs_reason`` (why that many epochs); ``statistics_seconds``
        (the pass fitting the error space and PCA) and ``training_seconds``; ``resumed_at``
        (a run resumed from a checkpoint: that checkpoint's epoch).
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
        "select_by": [StrOptions({"mse", "recall"})],
        "metric": [StrOptions(set(METRICS))],
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
        "anneal_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "folds": [Interval(Integral, 0, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "checkpoint_dir": [str, os.PathLike, None],
        "refine_steps": [Interval(Integral, 0, None, closed="left")],
        "devices": [Interval(Integral, 1, None, closed="left")],
        "lanes": [Interval(Integral, 1, None, closed="left"), None],
        "time_budget": [Interval(Real, 0, None, closed="neither"), None],
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
        select_by="mse",
        metric="auto",
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
        anneal_epochs=None,
        folds=None,
        random_state=None,
        verbose=False,
        checkpoint_dir=None,
        refine_steps=0,
        devices=1,
        lanes=None,
        time_budget=None,
    ):
        self.n_components = n_components
        self.recipe = recipe
        self.hidden = hidden
        self.activation = activation
        self.output_activation = output_activation
        self.code_activation = code_activation
        self.init = init
        self.select_by = select_by
        self.metric = metric
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
        self.anneal_epochs = anneal_epochs
        self.folds = folds
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.refine_steps = refine_steps
        self.devices = devices
        self.lanes = lanes
        self.time_budget = time_budget

    # Fitting -----------------------------------------------------------------
    def fit(self, X, y=None, *, X_val=None, columns=None, image_shape=None, encoded_rows=0):
        """Fit on ``X``; ``X_val`` (optional, the same forms) is monitored each epoch.

        ``X`` is an array, a DataFrame or Arrow table, a :class:`aepca.data.sources.RowSource`,
        or a ``.npy``/``.npz``/``.parquet``/``.arrow``/``.csv`` file, folder or glob (:func:`aepca.open_source`):
        every form is read a block at a time, and the same rows and seed give the same model.
        ``columns`` (a :class:`aepca.data.columns.ColumnSpec`) says how a table's columns became
        ``X``'s, for new tables; ``image_shape`` is kept for showing rows; a ``time_budget`` leaves time
        to encode ``encoded_rows`` rows once fitted. A failed or interrupted fit changes nothing.
        """
        started, encoded_rows = time.monotonic(), check_encoded_rows(encoded_rows)
        self._validate_params()
        source, names = training_rows(X, self)
        if columns is not None and len(columns.feature_names) != source.n_features:
            raise invalid_value("columns", f"a specification of {source.n_features} features",
                                f"{len(columns.feature_names)} features", "Pass the specification X was read with.")
        if source.n_rows < 2:
            raise invalid_value("X", "at least 2 samples", f"n_samples={source.n_rows} in {source.name}", "Pass more rows.")
        given, n_components = {name: _python(getattr(self, name)) for name in SETTINGS}, int(self.n_components)
        settings = resolve_settings(self.recipe, given, source.n_rows, source.n_features, n_components)
        if X_val is not None:
            X_val = new_rows(X_val, n_features=source.n_features, names=names,
                             spec=columns if columns is not None else source.columns)
        fit = Fit.prepare(
            source, X_val, n_components=n_components, settings=settings, scale=self.scale,
            seed=int(check_random_state(self.random_state).randint(2**31 - 1)),
            params={k: v for k, v in self.json_params().items() if k not in NOT_TRAINING},
            devices=int(self.devices), lanes=self.lanes, verbose=bool(self.verbose), checkpoint_dir=self.checkpoint_dir,
            select_by=self.select_by, metric=self.metric,
        )
        if self.time_budget is not None:
            fit.plan_budget(float(self.time_budget), given, started, self.recipe, encoded_rows)
        trained = fit.start()
        # All at once, so that an exception or Ctrl-C above leaves a fitted estimator as it was.
        fitted = {
            "n_features_in_": source.n_features, "settings_": fit.settings, "scaler_": fit.space.scaler,
            "network_scale_": fit.space.network_scale, "pca_": fit.pca, "history_": trained.history, "init_": trained.init,
            "output_activation_": trained.output_activation,
            "columns_": columns if columns is not None else source.columns,
            "image_shape_": None if (image_shape or source.image_shape) is None else tuple(int(d) for d in image_shape or source.image_shape),
        }
        self.__dict__.pop("feature_names_in_", None)
        self.__dict__.update(fitted if names is None else {**fitted, "feature_names_in_": names})
        self._set_net(trained.net)
        return self

    def _set_net(self, net) -> None:
        self.model_, self.encoder_, self.decoder_ = net.autoencoder, net.encoder, net.decoder
        self._n_features_out = self.n_components

    # Transforms --------------------------------------------------------------
    @property
    def space_(self) -> ErrorSpace:
        """The error space and the network's view of it."""
        check_is_fitted(self)
        return ErrorSpace(self.scaler_, self.network_scale_)

    def column_spec(self):
        """How this model reads a table or file: the specification it was trained
        with, or its features by name (``x0, x1, ...`` for arrays)."""
        check_is_fitted(self)
        if getattr(self, "columns_", None) is not None:
            return self.columns_
        names = getattr(self, "feature_names_in_", None)
        names = tuple(str(n) for n in names) if names is not None else tuple(f"x{i}" for i in range(self.n_features_in_))
        return ColumnSpec(columns=names, feature_names=names)

    def _new_rows(self, X) -> RowSource:
        """New rows of any form as a row source of the training features (see :func:`aepca.inputs.new_rows`)."""
        check_is_fitted(self)
        # A DataFrame is read by name when the model was fitted on a table, else by position.
        by_name = self.columns_ is not None or not hasattr(X, "columns")
        return new_rows(X, n_features=self.n_features_in_, names=getattr(self, "feature_names_in_", None),
                        spec=self.column_spec() if by_name else None, estimator=self)

    def _by_block(self, X, method, width: int) -> np.ndarray:
        """``method`` (of float32 rows) applied to ``X`` a block at a time, in parts of one network call's rows
        (``PREDICT_BATCH``), the results concatenated: memory is bounded by one block (the result aside)."""
        parts = [method(block[start : start + PREDICT_BATCH]) for block in self._new_rows(X).iter_blocks()
                 for start in range(0, len(block), PREDICT_BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)

    def transform(self, X):
        """The code of each sample, shape ``(n_samples, n_components)``."""
        space = self.space_
        return self._by_block(X, lambda rows: self._codes(space.network_rows(rows)), self.n_components)

    def _codes(self, X_net):
        codes = predict(self.encoder_, X_net)
        if not self.refine_steps:
            return codes
        return refine_codes(self.decoder_, X_net, codes, steps=int(self.refine_steps), loss=self.settings_["loss"])

    def inverse_transform(self, X):
        """Decode codes (an array, or codes in any form a row source takes) back to
        reconstructions in the data's original units."""
        check_is_fitted(self)
        X = opened(X)
        if isinstance(X, RowSource):
            parts = [self.inverse_transform(block) for block in X.iter_blocks()]
            return np.concatenate(parts) if parts else np.zeros((0, self.n_features_in_), np.float32)
        codes = check_codes(X, self.n_components)
        return self.scaler_.inverse_transform(self.space_.from_network(predict(self.decoder_, codes)))

    def reconstruct_scaled(self, X_space, *, refine: bool = True):
        """Rows of the error space reconstructed there (``refine=False``: from the encoder's own codes)."""
        space = self.space_
        X_net = space.to_network(X_space)
        if self.refine_steps and refine:
            return space.from_network(predict(self.decoder_, self._codes(X_net)))
        return space.from_network(predict(self.model_, X_net))

    def reconstruct(self, X):
        """``inverse_transform(transform(X))`` in one pass, in the data's units."""
        scaler = self.space_.scaler
        return self._by_block(X, lambda rows: scaler.inverse_transform(self.reconstruct_scaled(scaler.transform(rows))),
                              self.n_features_in_)

    def reconstruct_with_errors(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Each row's reconstruction (in the data's units) and its MSE in the error space, in one pass."""
        scaler = self.space_.scaler
        reconstructions, errors = [np.zeros((0, self.n_features_in_), np.float32)], [np.zeros(0)]
        for block in self._new_rows(X).iter_blocks():
            space_rows = scaler.transform(block)
            reconstruction = self.reconstruct_scaled(space_rows)
            reconstructions.append(scaler.inverse_transform(reconstruction))
            errors.append(sample_mse(space_rows, reconstruction))
        return np.concatenate(reconstructions), np.concatenate(errors)

    def score_samples(self, X):
        """Negative per-sample reconstruction MSE in the error space (see ``scale``)."""
        scaler = self.space_.scaler
        return self._by_block(X, lambda rows: -sample_mse(scaler.transform(rows), self.reconstruct_scaled), 0).reshape(-1)

    def score(self, X, y=None):
        """Negative reconstruction MSE over all entries, in the error space (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.input_tags.sparse = True  # rows made dense a block at a time
        return tags

    # Persistence -------------------------------------------------------------
    def save(self, path) -> Path:
        """Write ``path/model.keras`` and ``path/aepca.json`` (atomically; see :mod:`aepca.persistence`)
        into a new or empty folder, or over a model folder; a folder of other files is refused.
        ``pca_`` is not saved: it describes the training data, not the model applied to new rows."""
        check_is_fitted(self)
        return write_model_folder(path, self.model_, estimator_metadata(self))

    def json_params(self) -> dict:
        """``get_params()`` as JSON values (a RandomState becomes None, paths strings)."""
        params = {name: _python(value) for name, value in self.get_params().items()}
        params.update(
            hidden=None if params["hidden"] is None else [int(h) for h in params["hidden"]],
            recipe=params["recipe"].name if isinstance(params["recipe"], Recipe) else params["recipe"],
            random_state=params["random_state"] if isinstance(params["random_state"], (int, type(None))) else None,
            checkpoint_dir=None if params["checkpoint_dir"] is None else str(params["checkpoint_dir"]))
        return params

    def json_settings(self) -> dict:
        """``settings_`` as JSON values (``hidden`` a list)."""
        return json_settings(self.settings_)

    def __getstate__(self):
        # Keras models are stored as .keras bytes so a pickle is portable.
        state = {key: value for key, value in self.__dict__.items() if key not in ("model_", "encoder_", "decoder_")}
        if "model_" in self.__dict__:
            state["_model_bytes"] = model_to_bytes(self.model_)
        return state

    def __setstate__(self, state):
        model_bytes = state.pop("_model_bytes", None)
        self.__dict__.update(state)
        if model_bytes is not None:
            self._set_net(split_autoencoder(model_from_bytes(model_bytes)))


def load_model(path) -> Autoencoder:
    """Load a model saved by :meth:`Autoencoder.save` (from its folder, or from a folder holding it,
    such as an ``aepca compare`` run's), checked (see :mod:`aepca.persistence`).

    The loaded model knows nothing of the run that made it (``checkpoint_dir`` is None, no ``pca_``).
    """
    model, metadata = read_model_folder(path)
    estimator = restore_estimator(Autoencoder, metadata)
    estimator._set_net(split_autoencoder(model))
    return estimator


def _python(value):
    """A NumPy scalar (``np.int64(2)`` from ``np.arange`` or a grid search) as the Python number it holds;
    anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value
