"""Hinton & Salakhutdinov, "Reducing the dimensionality of data with neural networks"
(Science 313:504, 2006): the MNIST and curves results, reproduced and then beaten.

The paper's error is the squared error summed over the 784 pixels (values in [0, 1])
and averaged over the test images; every row here reports that number. Rows:

* PCA and "logistic PCA" with the paper's code sizes;
* the paper's deep autoencoder, RBM-pretrained (:func:`aepca.rbm.pretrain_stack`,
  :func:`aepca.rbm.unroll`) and fine-tuned on cross-entropy, and the same network from a
  random initialisation with the same fine-tuning (the paper's point: without
  pretraining, deep logistic autoencoders train poorly);
* aepca's own recipe at the same code size, chosen by a small measurement
  (docs/hinton2006.md), with its best weights kept on a validation split of the
  training images, never on the test set; and the same network with each code
  refined through the decoder (:mod:`aepca.refine`);
* Figure 3: the 2-D codes of a 784-1000-500-250-2 autoencoder beside PCA's first two
  components for 500 training digits of each class;
* the curves data set (regenerated, so only approximately the paper's) with the
  784-400-200-100-50-25-6 network beside PCA.

Deviations from the paper are listed in :data:`DEVIATIONS` and written into every report.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aepca.data import load_dataset, load_mnist
from aepca.metrics import mse
from aepca.pca import PCA
from aepca.validation import invalid_value

__all__ = [
    "FULL",
    "PAPER",
    "QUICK",
    "Hinton2006Result",
    "Protocol",
    "reproduce_hinton2006",
    "summed_pca_errors",
    "write_hinton2006_outputs",
]

# Layer widths above the 784 inputs. Figure 3's network differs from the 30-D one only in
# its code, so it reuses the 30-D stack's lower RBMs.
MNIST_SIZES = (1000, 500, 250, 30)
FIG3_CODE = 2
CURVES_SIZES = (400, 200, 100, 50, 25, 6)
FIG3_PER_CLASS = 500
# The best-of-aepca recipe keeps its best weights on this share of the training images
# (5,000 of MNIST's 60,000).
VALIDATION_FRACTION = 1 / 12
# Refining codes costs ``refine_steps`` decoder passes per image, so the refined row's
# train error is measured on the first this-many training images.
REFINED_TRAIN_ROWS = 10000

# Average summed squared error per test image, from the paper. MNIST: the table in the
# text and Fig. 2B (3.00, 8.01, 13.87). Curves: Fig. 2A's caption (deep autoencoder with
# 6 units 1.44, logistic PCA with 6 components 7.64, PCA with 18 components 5.90); our
# curves are regenerated from the description, so those are only a rough guide.
PAPER = {
    "mnist": {"autoencoder": 3.00, "logistic_pca": 8.01, "pca": 13.87},
    "curves": {"autoencoder": 1.44, "logistic_pca": 7.64, "pca_18": 5.90},
}

DEVIATIONS = (
    "Fine-tuning uses Adam (learning rate 1e-3, mini-batches of 1,000, cross-entropy) "
    "instead of the paper's conjugate gradients (3 line searches per mini-batch of 1,000).",
    "Everything is computed in float32 (the paper used Matlab's float64).",
    "Training images are reshuffled every epoch, for the RBMs and for fine-tuning; the "
    "authors' code visits fixed mini-batches in a fixed order.",
    "The 30-D and 2-D MNIST networks share their three lower RBMs (same architecture, data "
    "and settings); only the top RBM differs. Each row's fit seconds count the shared "
    "layers in full.",
    "'Logistic PCA' is a linear encoder with a logistic decoder started at PCA and trained "
    "with Adam on cross-entropy (aepca.rbm.logistic_pca), not the paper's alternating fit.",
    "The curves images are regenerated from the paper's description (parabolas through "
    "three random points), not the original files, and split 80/20; the paper's curves "
    "numbers are shown as a rough guide only.",
)


@dataclass(frozen=True)
class Protocol:
    """How much training each part of the reproduction gets.

    ``n_train``/``n_test`` keep the first MNIST images (None: all 60,000 / 10,000);
    ``curves_samples`` is the size of the curves set before its 80/20 split.
    """

    rbm_epochs: int
    finetune_epochs: int
    best_epochs: int
    logistic_epochs: int
    curves_samples: int
    curves_finetune_epochs: int
    refine_steps: int
    n_train: int | None = None
    n_test: int | None = None
    finetune_batch_size: int = 1000
    finetune_learning_rate: float = 1e-3
    logistic_batch_size: int = 100
    logistic_learning_rate: float = 1e-3

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The paper: 50 RBM epochs per layer, 200 fine-tuning epochs; 25,000 curves images
# (20,000 for training, as in the paper).
FULL = Protocol(rbm_epochs=50, finetune_epochs=200, best_epochs=60, logistic_epochs=50,
                curves_samples=25000, curves_finetune_epochs=200, refine_steps=300)
# Minutes on two CPU cores: a few epochs everywhere and a curves subset, whose small
# network gets more fine-tuning epochs (8 steps each) for the same time.
QUICK = Protocol(rbm_epochs=3, finetune_epochs=5, best_epochs=5, logistic_epochs=5,
                 curves_samples=10000, curves_finetune_epochs=30, refine_steps=100)

# aepca's own recipe for the 30-D MNIST code, chosen by the measurements in
# docs/hinton2006.md: ELU hidden layers, linear code, logistic output, cross-entropy,
# Adam at a 1e-3 peak with warm-up and cosine decay, best weights kept on the validation
# split.
BEST_RECIPE = dict(activation="elu", batch_size=128, learning_rate=1e-3, warmup_epochs=1.0,
                   loss="binary_crossentropy")


# The printed table's columns and the row keys they show.
_TABLE_COLUMNS = {"data": "data", "method": "method", "code": "code", "test error": "test_error",
                  "paper": "paper", "train error": "train_error", "epochs": "epochs",
                  "fit s": "fit_seconds", "training": "training"}


@dataclass
class Hinton2006Result:
    """Everything the reproduction measured, ready for tables, figures and JSON."""

    rows: list[dict]
    settings: dict
    histories: dict = field(default_factory=dict)
    fig3: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def table_rows(self) -> list[dict]:
        """The rows as printed: errors per image, the paper's beside them."""
        return [{column: row[key] for column, key in _TABLE_COLUMNS.items()} for row in self.rows]

    def to_json(self) -> dict:
        return {"rows": self.rows, "settings": self.settings, "paper": PAPER,
                "deviations": list(DEVIATIONS), "notes": self.notes,
                "histories": self.histories}


# --------------------------------------------------------------------------- errors


def summed_error(reconstruct: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> float:
    """Squared error summed over features, averaged over the rows of ``x`` (float64)."""
    return mse(x, lambda block: reconstruct(np.asarray(block, np.float64))) * x.shape[1]


def _keras_reconstruct(model):
    return lambda batch: model.predict(batch.astype(np.float32), batch_size=1000, verbose=0)


def _refined_reconstruct(net, steps: int, loss: str):
    """Reconstructions from the encoder's codes after ``steps`` refinement steps."""
    from aepca.refine import refine_codes

    def reconstruct(batch):
        batch = batch.astype(np.float32)
        codes = net.encoder.predict(batch, batch_size=1000, verbose=0)
        codes = refine_codes(net.decoder, batch, codes, steps=steps, loss=loss)
        return net.decoder.predict(codes, batch_size=1000, verbose=0)

    return reconstruct


def summed_pca_errors(x_train, x_test, code_sizes) -> dict[int, tuple[float, float, float]]:
    """``{k: (train_error, test_error, fit_seconds)}`` for PCA fitted on ``x_train``.

    Errors are the paper's: squared error summed over features, averaged over images.
    One fit gives every code size.
    """
    return _pca_errors(x_train, x_test, code_sizes)[1]


def _pca_errors(x_train, x_test, code_sizes):
    started = time.perf_counter()
    pca = PCA(max(code_sizes)).fit(x_train)
    seconds = time.perf_counter() - started
    n_features = x_train.shape[1]
    train_curve = pca.mse_by_components(x_train, max(code_sizes)) * n_features
    test_curve = pca.mse_by_components(x_test, max(code_sizes)) * n_features
    return pca, {k: (float(train_curve[k]), float(test_curve[k]), seconds) for k in code_sizes}


# --------------------------------------------------------------------------- training


def _finetune_config(protocol: Protocol, seed: int, epochs: int):
    from aepca.training import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=protocol.finetune_batch_size,
                       learning_rate=protocol.finetune_learning_rate, optimizer="adam",
                       loss="binary_crossentropy", seed=seed)


def _finetune_text(protocol: Protocol, pretrained: bool, epochs: int) -> str:
    start = f"RBM {protocol.rbm_epochs} epochs/layer (CD-1, batch 100); " if pretrained else "random init (Glorot), "
    return (start + f"Adam {protocol.finetune_learning_rate:g}, batch {protocol.finetune_batch_size}, "
            f"{epochs} epochs, cross-entropy")


class _LayerTimer:
    """pretrain_stack's progress callable: notes when each layer finishes and, if asked,
    shows one bar over every layer's epochs."""

    def __init__(self, n_layers, epochs, show):
        self.started = time.perf_counter()
        self.finished: dict[int, float] = {}
        self.bar = None
        if show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=n_layers * epochs, desc="RBM pretraining", leave=False)

    def __call__(self, layer, epoch, error):
        self.finished[layer] = time.perf_counter() - self.started
        if self.bar is not None:
            self.bar.set_postfix(layer=layer, reconstruction_error=f"{error:.4g}", refresh=False)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _pretrain(x, sizes, protocol, seed, progress, shared=None):
    """RBM stack for ``sizes`` and the seconds each layer took to finish, cumulative.

    With ``shared=(lower_layers, lower_seconds)`` only the top RBM is trained, on the
    lower layers' hidden probabilities.
    """
    from aepca.rbm import pretrain_stack, train_rbm, up_pass

    if shared is None:
        timer = _LayerTimer(len(sizes), protocol.rbm_epochs, progress)
        try:
            layers = pretrain_stack(x, sizes, epochs=protocol.rbm_epochs, seed=seed,
                                    progress=timer)
        finally:
            timer.close()
        return layers, [timer.finished.get(i, 0.0) for i in range(len(sizes))]
    lower, lower_seconds = shared
    started = time.perf_counter()
    hidden = x
    for layer in lower:
        hidden = up_pass(layer, hidden)
    top = train_rbm(hidden, sizes[-1], hidden_type="gaussian", epochs=protocol.rbm_epochs,
                    seed=seed + 1)
    return [*lower, top], [*lower_seconds, lower_seconds[-1] + time.perf_counter() - started]


def _fit_pretrained(x, sizes, protocol, seed, progress, epochs, shared=None):
    """Pretrain, unroll and fine-tune; returns the net, the layers with their cumulative
    seconds (for sharing), the history and the total seconds."""
    from aepca.rbm import unroll
    from aepca.training import train

    layers, layer_seconds = _pretrain(x, sizes, protocol, seed, progress, shared)
    net = unroll(layers)
    started = time.perf_counter()
    history = train(net.autoencoder, x, config=_finetune_config(protocol, seed, epochs),
                    progress=progress)
    return net, (layers, layer_seconds), history, layer_seconds[-1] + time.perf_counter() - started


def _fit_random(x, protocol, seed, progress):
    from aepca.models import build_autoencoder
    from aepca.training import train

    net = build_autoencoder(x.shape[1], MNIST_SIZES[-1], hidden=MNIST_SIZES[:-1],
                            activation="sigmoid", output_activation="sigmoid", seed=seed)
    started = time.perf_counter()
    history = train(net.autoencoder, x,
                    config=_finetune_config(protocol, seed, protocol.finetune_epochs),
                    progress=progress)
    return net, history, time.perf_counter() - started


def _fit_best(x, protocol, seed, progress):
    from aepca.data.order import VALIDATION_SALT
    from aepca.data.sources import open_source
    from aepca.models import build_autoencoder
    from aepca.training import TrainConfig, train

    # The one split rule: the rows a seeded hash of their numbers holds out.
    rows = open_source(x)
    fit_rows, val_rows = rows.split(VALIDATION_FRACTION, seed, VALIDATION_SALT)
    val_rows = val_rows.to_array()
    net = build_autoencoder(x.shape[1], MNIST_SIZES[-1], hidden=MNIST_SIZES[:-1],
                            activation=BEST_RECIPE["activation"], output_activation="sigmoid",
                            seed=seed)
    config = TrainConfig(
        epochs=protocol.best_epochs, batch_size=BEST_RECIPE["batch_size"],
        learning_rate=BEST_RECIPE["learning_rate"], optimizer="adam", schedule="cosine",
        warmup_epochs=min(BEST_RECIPE["warmup_epochs"], protocol.best_epochs / 2),
        loss=BEST_RECIPE["loss"], seed=seed, restore_best=True,
    )
    started = time.perf_counter()
    history = train(net.autoencoder, fit_rows, x_val=val_rows, config=config, progress=progress)
    seconds = time.perf_counter() - started
    text = (f"{BEST_RECIPE['activation'].upper()}, Adam {config.learning_rate:g} with "
            f"{config.warmup_epochs:g}-epoch warm-up + cosine decay, batch {config.batch_size}, "
            f"{config.epochs} epochs, cross-entropy, best of {len(val_rows)} validation images")
    return net, history, seconds, text, len(val_rows)


def _fig3_indices(labels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 3])
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        chosen.append(rng.choice(rows, size=min(FIG3_PER_CLASS, len(rows)), replace=False))
    return np.sort(np.concatenate(chosen))


# --------------------------------------------------------------------------- the run


def _resolve_protocol(quick: bool, overrides: dict) -> Protocol:
    protocol = QUICK if quick else FULL
    minimums = {"n_train": 100, "n_test": 1, "curves_samples": 100}
    for name, value in overrides.items():
        if value is None:
            continue
        minimum = minimums.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise invalid_value(
                name, f"an integer >= {minimum}", f"{name}={value!r}", f"Pass a larger {name} or leave it out."
            )
        protocol = dataclasses.replace(protocol, **{name: int(value)})
    return protocol


def reproduce_hinton2006(
    *,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    n_train: int | None = None,
    n_test: int | None = None,
    rbm_epochs: int | None = None,
    finetune_epochs: int | None = None,
    best_epochs: int | None = None,
    logistic_epochs: int | None = None,
    curves_samples: int | None = None,
    curves_finetune_epochs: int | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> Hinton2006Result:
    """Run the reproduction (:data:`FULL` protocol, or :data:`QUICK` with ``quick=True``).

    Keyword overrides replace the protocol's settings (for tests and partial runs);
    ``on_row(row)`` is called as each row is measured. Returns a
    :class:`Hinton2006Result`.
    """
    from aepca.rbm import _check_int

    seed = _check_int(seed, "seed", minimum=0)
    protocol = _resolve_protocol(quick, dict(
        n_train=n_train, n_test=n_test, rbm_epochs=rbm_epochs, finetune_epochs=finetune_epochs,
        best_epochs=best_epochs, logistic_epochs=logistic_epochs, curves_samples=curves_samples,
        curves_finetune_epochs=curves_finetune_epochs,
    ))
    run_started = time.perf_counter()
    rows: list[dict] = []
    histories: dict = {}

    def add(data, method, code, test_error, train_error, paper, training, epochs, seconds):
        row = {"data": data, "method": method, "code": code, "test_error": test_error,
               "paper": paper, "train_error": train_error, "training": training,
               "epochs": epochs, "fit_seconds": seconds}
        rows.append(row)
        if on_row is not None:
            on_row(row)

    def add_pca(data, errors, k, paper):
        train_error, test_error, seconds = errors[k]
        add(data, "PCA", k, test_error, train_error, paper, "exact (float64 covariance)", None, seconds)

    def add_net(data, method, model, x_train, x_test, paper, training, history, seconds,
                key):
        reconstruct = _keras_reconstruct(model)
        histories[key] = {k: v for k, v in history.items() if isinstance(v, list)}
        add(data, method, model.get_layer("encoder").output.shape[-1],
            summed_error(reconstruct, x_test), summed_error(reconstruct, x_train), paper,
            training, len(history["loss"]), seconds)

    mnist = load_mnist(protocol.n_train, protocol.n_test)
    x, x_test = mnist.x_train, mnist.x_test
    paper = PAPER["mnist"]

    pca_model, pca = _pca_errors(x, x_test, (FIG3_CODE, MNIST_SIZES[-1]))
    add_pca("mnist", pca, MNIST_SIZES[-1], paper["pca"])

    _logistic_pca_row(add, "mnist", x, x_test, MNIST_SIZES[-1], paper["logistic_pca"],
                      protocol, seed)

    net, (layers, layer_seconds), history, seconds = _fit_pretrained(
        x, MNIST_SIZES, protocol, seed, progress, protocol.finetune_epochs)
    add_net("mnist", f"autoencoder {_arch(MNIST_SIZES)}, RBM-pretrained", net.autoencoder, x,
            x_test, paper["autoencoder"], _finetune_text(protocol, True, protocol.finetune_epochs),
            history, seconds, "pretrained_30")

    net, history, seconds = _fit_random(x, protocol, seed, progress)
    add_net("mnist", "same network, no pretraining", net.autoencoder, x, x_test, None,
            _finetune_text(protocol, False, protocol.finetune_epochs), history, seconds,
            "random_30")

    net, history, seconds, text, n_val = _fit_best(x, protocol, seed, progress)
    add_net("mnist", f"aepca best: {_arch(MNIST_SIZES)}", net.autoencoder, x, x_test, None, text,
            history, seconds, "best_30")
    _refined_row(add, net, x, x_test, protocol.refine_steps, len(history["loss"]), seconds)

    # Figure 3. The lower three RBMs are those of the 30-D stack; their time is counted in.
    shared = (layers[:-1], layer_seconds[:-1])
    fig3_sizes = (*MNIST_SIZES[:-1], FIG3_CODE)
    net2, _, history, seconds = _fit_pretrained(x, fig3_sizes, protocol, seed, progress,
                                                protocol.finetune_epochs, shared)
    add_pca("mnist", pca, FIG3_CODE, None)
    add_net("mnist", f"autoencoder {_arch(fig3_sizes)}, RBM-pretrained", net2.autoencoder, x,
            x_test, None, _finetune_text(protocol, True, protocol.finetune_epochs), history,
            seconds, "pretrained_2")
    shown = _fig3_indices(mnist.y_train, seed)
    fig3 = {"pca_codes": pca_model.transform(x[shown])[:, :FIG3_CODE],
            "ae_codes": net2.encoder.predict(x[shown], batch_size=1000, verbose=0),
            "labels": np.asarray(mnist.y_train)[shown]}

    _curves_rows(protocol, seed, progress, add, add_pca, add_net)

    from aepca.backend import backend_name

    settings = {
        "paper": "Hinton & Salakhutdinov, Science 313:504 (2006)",
        "error": "squared error summed over pixels, averaged over test images",
        "mode": "quick" if quick else "full",
        "seed": seed,
        "protocol": protocol.to_dict(),
        "best_recipe": dict(BEST_RECIPE, validation_fraction=VALIDATION_FRACTION),
        "mnist": {"n_train": int(len(x)), "n_test": int(len(x_test)),
                  "best_recipe_validation": int(n_val)},
        "backend": backend_name(),
        "dtype": "float32",
        "fig3_points": int(len(shown)),
        "total_seconds": time.perf_counter() - run_started,
    }
    return Hinton2006Result(rows=rows, settings=settings, histories=histories, fig3=fig3,
                            notes=_notes(rows, protocol))


def _refined_row(add, net, x, x_test, steps, epochs, fit_seconds):
    from aepca.refine import LEARNING_RATE

    started = time.perf_counter()
    reconstruct = _refined_reconstruct(net, steps, BEST_RECIPE["loss"])
    test_error = summed_error(reconstruct, x_test)
    train_rows = min(REFINED_TRAIN_ROWS, len(x))
    train_error = summed_error(reconstruct, x[:train_rows])
    seconds = fit_seconds + time.perf_counter() - started
    add("mnist", f"aepca best, refined codes: {_arch(MNIST_SIZES)}", MNIST_SIZES[-1], test_error,
        train_error, None,
        f"the network above; each code refined by {steps} Adam steps ({LEARNING_RATE:g}) on its "
        f"cross-entropy through the decoder; train error on the first {train_rows} training images",
        epochs, seconds)


def _logistic_pca_row(add, data, x, x_test, code, paper, protocol, seed):
    from aepca.rbm import logistic_pca

    started = time.perf_counter()
    logistic = logistic_pca(x, code, epochs=protocol.logistic_epochs,
                            batch_size=protocol.logistic_batch_size,
                            learning_rate=protocol.logistic_learning_rate, seed=seed)
    seconds = time.perf_counter() - started
    reconstruct = _keras_reconstruct(logistic.autoencoder)
    add(data, "logistic PCA", code, summed_error(reconstruct, x_test),
        summed_error(reconstruct, x), paper,
        f"PCA init, Adam {protocol.logistic_learning_rate:g}, batch "
        f"{protocol.logistic_batch_size}, cross-entropy", protocol.logistic_epochs, seconds)


def _curves_rows(protocol, seed, progress, add, add_pca, add_net):
    """Measure the curves rows and hand each to ``add`` / ``add_pca`` / ``add_net``."""
    curves = load_dataset("curves", n_samples=protocol.curves_samples, seed=seed)
    x, x_test = curves.x_train, curves.x_test
    paper = PAPER["curves"]
    code = CURVES_SIZES[-1]
    pca = summed_pca_errors(x, x_test, (code, 3 * code))
    for k, paper_value in ((code, None), (3 * code, paper["pca_18"])):
        add_pca("curves", pca, k, paper_value)
    _logistic_pca_row(add, "curves", x, x_test, code, paper["logistic_pca"], protocol, seed)
    epochs = protocol.curves_finetune_epochs
    net, _, history, seconds = _fit_pretrained(x, CURVES_SIZES, protocol, seed, progress, epochs)
    add_net("curves", f"autoencoder {_arch(CURVES_SIZES)}, RBM-pretrained", net.autoencoder,
            x, x_test, paper["autoencoder"], _finetune_text(protocol, True, epochs), history,
            seconds, "curves_pretrained_6")


def _arch(sizes) -> str:
    return "-".join(map(str, (784, *sizes)))


def _find(rows, data, method_start, code):
    return next((row for row in rows
                 if row["data"] == data and row["method"].startswith(method_start) and row["code"] == code), None)


def _notes(rows, protocol) -> list[str]:
    notes = []
    pca = _find(rows, "mnist", "PCA", MNIST_SIZES[-1])
    for start, name in ((f"autoencoder {_arch(MNIST_SIZES)}", "The RBM-pretrained network"),
                        ("same network", "The same network without pretraining"),
                        ("aepca best:", "aepca's best recipe"),
                        ("aepca best, refined", "aepca's best recipe with refined codes")):
        row = _find(rows, "mnist", start, MNIST_SIZES[-1])
        verdict = "beats" if row["test_error"] < pca["test_error"] else "does not beat"
        notes.append(f"{name} {verdict} PCA at {MNIST_SIZES[-1]} components on MNIST: "
                     f"{row['test_error']:.2f} vs {pca['test_error']:.2f} per test image "
                     f"after {row['epochs']} epochs.")
    if protocol.finetune_epochs < FULL.finetune_epochs or protocol.rbm_epochs < FULL.rbm_epochs:
        notes.append(
            f"Shortened protocol ({protocol.rbm_epochs} RBM epochs per layer, "
            f"{protocol.finetune_epochs} fine-tuning epochs, {protocol.best_epochs} for aepca's "
            f"recipe; the paper: {FULL.rbm_epochs} and {FULL.finetune_epochs}): the networks' "
            "errors are not the paper's protocol and sit above what full training reaches."
        )
    if protocol.n_train is not None or protocol.n_test is not None:
        notes.append(f"MNIST subset: the first {protocol.n_train or 60000} training and "
                     f"{protocol.n_test or 10000} test images.")
    notes.append("Sutskever et al. (2013) reached a training error of about 0.7 on the same "
                 "784-1000-500-250-30 network with later optimisers; see the train error "
                 "column.")
    return notes + [f"Differs from the paper: {text}" for text in DEVIATIONS]


# --------------------------------------------------------------------------- outputs


def _markdown(result: Hinton2006Result) -> str:
    rows = result.table_rows()
    headers = list(rows[0])

    def cell(value):
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.2f}"
        return str(value)

    lines = ["# Hinton & Salakhutdinov (2006), reproduced", "",
             f"Mode: {result.settings['mode']}; total {result.settings['total_seconds']:.0f} s. "
             "Errors: squared error summed over the 784 pixels, averaged over test images.", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(row[h]) for h in headers) + " |" for row in rows]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def write_hinton2006_outputs(result: Hinton2006Result, folder) -> list[str]:
    """Write table.json, hinton2006.md, fig3_codes.png, loss_*.png and report.html into
    ``folder`` (normally a staging folder); return the file names."""
    from aepca import plots
    from aepca.report import write_report

    folder = Path(folder)
    (folder / "table.json").write_text(
        json.dumps(result.to_json(), indent=2, default=lambda v: v.tolist()))
    (folder / "hinton2006.md").write_text(_markdown(result))
    figures = [(
        "Figure 3: 2-D codes of 500 training digits per class: PCA's first two components "
        f"and the {_arch((*MNIST_SIZES[:-1], FIG3_CODE))} RBM-pretrained autoencoder",
        plots.plot_codes(result.fig3["pca_codes"], result.fig3["ae_codes"],
                         result.fig3["labels"], folder / "fig3_codes.png",
                         title="MNIST, Hinton & Salakhutdinov Fig. 3", label_title="digit"),
    )]
    # The three 30-D MNIST networks, all trained on cross-entropy.
    for key, history in result.histories.items():
        if key.endswith("_30") and history.get("loss"):
            figures.append((f"Loss per epoch: {key.replace('_', ' ')}", plots.plot_loss(
                history, folder / f"loss_{key}.png", loss_name="mean cross-entropy per pixel")))
    write_report(folder / "report.html", title="Hinton & Salakhutdinov (2006), reproduced",
                 metrics=result.settings, figures=figures, table_rows=result.table_rows(),
                 notes=result.notes)
    return sorted(path.name for path in folder.iterdir())
