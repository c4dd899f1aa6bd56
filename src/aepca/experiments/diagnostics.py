"""Why an autoencoder did not beat PCA: measured facts and the problems they show.

:func:`measure` gathers facts about a trained autoencoder (saturated or dead
hidden units on a sample of training rows, divergence retries, how much the
last epoch still improved, how different the feature scales are);
:func:`diagnose` turns the facts past their thresholds into problems, each a
dict ``{"problem", "evidence", "fix"}``. Only problems that were found are
reported.
"""

from __future__ import annotations

import math

import numpy as np

from aepca.preprocessing import shares_one_unit

# A unit is saturated when its output lies within this distance of an
# asymptote of its activation on at least SATURATED_SHARE of the sample.
SATURATION_MARGIN = 0.01
SATURATED_SHARE = 0.95
# Activations that are zero or flat for negative inputs: a unit whose
# pre-activation is never positive on the sample is dead (it passes no
# gradient worth the name).
RECTIFIERS = frozenset({"relu", "relu6", "elu", "selu", "leaky_relu", "gelu", "silu", "swish", "celu", "softplus"})
# Bounds of the saturating activations.
BOUNDED = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "hard_tanh": (-1.0, 1.0)}
# Report units as a problem from this share of the hidden units on.
UNIT_PROBLEM_SHARE = 0.25
# The last epoch lowering the training loss by more than this share means
# training stopped while the loss was still falling.
STILL_FALLING = 0.01
SAMPLE_ROWS = 2000
# A model that kept its PCA start matches PCA only to float32 round-off: a
# relative gain below this is a tie, not a win.
TIE = 1e-6


def beats(candidate_mse: float, reference_mse: float) -> bool:
    """Whether ``candidate_mse`` is below ``reference_mse`` by more than a float32 tie."""
    return candidate_mse < reference_mse * (1 - TIE)


def _hidden_layers(model):
    """The hidden Dense layers of an aepca autoencoder, by sub-model."""
    from aepca._backend import load_keras

    keras = load_keras()

    for part in ("encoder", "decoder"):
        submodel = model.get_layer(part)
        layers = [
            layer for layer in submodel.layers
            if isinstance(layer, keras.layers.Dense) and layer.name.startswith(f"{part}_") and layer.name[len(part) + 1:].isdigit()
        ]
        yield submodel, layers


def _activation_name(layer) -> str:
    activation = layer.activation
    return getattr(activation, "__name__", str(activation))


def unit_facts(estimator, x_scaled: np.ndarray) -> dict:
    """Shares of saturated and dead hidden units of ``estimator`` on ``x_scaled``.

    ``x_scaled`` are training rows in the estimator's error space.
    """
    from aepca._backend import load_keras
    from aepca.models import predict, without_gradients

    keras = load_keras()

    x_net = estimator._to_network(x_scaled)
    codes = predict(estimator.encoder_, x_net)
    inputs = {"encoder": x_net, "decoder": codes}
    n_units = n_saturated = n_dead = 0
    activations = set()
    for submodel, layers in _hidden_layers(estimator.model_):
        if not layers:
            continue
        probe = keras.Model(submodel.input, [layer.input for layer in layers])
        with without_gradients():
            layer_inputs = probe(inputs[submodel.name], training=False)
        layer_inputs = layer_inputs if isinstance(layer_inputs, (list, tuple)) else [layer_inputs]
        for layer, layer_input in zip(layers, layer_inputs):
            kernel, bias = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
            pre = np.asarray(keras.ops.convert_to_numpy(layer_input), dtype=np.float64) @ kernel + bias
            name = _activation_name(layer)
            activations.add(name)
            n_units += pre.shape[1]
            if name in RECTIFIERS:
                n_dead += int(np.sum(np.all(pre <= 0.0, axis=0)))
            elif name in BOUNDED:
                low, high = BOUNDED[name]
                out = np.asarray(keras.ops.convert_to_numpy(layer.activation(pre.astype(np.float32))), dtype=np.float64)
                near = (out - low <= SATURATION_MARGIN * (high - low)) | (high - out <= SATURATION_MARGIN * (high - low))
                n_saturated += int(np.sum(np.mean(near, axis=0) >= SATURATED_SHARE))
    return {
        "hidden_activations": sorted(activations),
        "hidden_units": n_units,
        "sample_rows": int(len(x_scaled)),
        "saturated_fraction": n_saturated / n_units if n_units else 0.0,
        "dead_fraction": n_dead / n_units if n_units else 0.0,
    }


def last_epoch_improvement(history: dict, final_loss: float | None = None) -> float | None:
    """Relative drop of the training loss over the last epoch.

    With one epoch there is no earlier epoch loss; the epoch's mean loss is
    then compared with ``final_loss``, the loss of the trained weights (which
    the mean over a still-improving epoch exceeds).
    """
    losses = [v for v in history.get("loss", []) if math.isfinite(v)]
    if len(losses) >= 2:
        before, after = losses[-2], losses[-1]
    elif len(losses) == 1 and final_loss is not None:
        before, after = losses[0], final_loss
    else:
        return None
    return (before - after) / before if before > 0 else 0.0


def measure(metrics: dict, estimator, x_train_scaled_sample: np.ndarray, scaler) -> dict:
    """Every fact the diagnoses read, JSON-ready (it goes into the metrics)."""
    x = np.asarray(x_train_scaled_sample, dtype=np.float32)
    history = estimator.history_
    final_loss = None
    if estimator.loss == "mse" and len(x):
        reconstruction = np.asarray(estimator._reconstruct_space(x), dtype=np.float64)
        final_loss = float(np.mean(np.square(reconstruction - x)))
    losses = history.get("loss", [])
    lr_scales = history.get("lr_scale", [])
    one_unit, unit_reason = shares_one_unit(scaler.inverse_transform(x)) if len(x) else (True, "no rows")
    return {
        **unit_facts(estimator, x),
        "non_finite_losses": int(sum(not math.isfinite(v) for v in losses)),
        "min_lr_scale": float(min(lr_scales)) if lr_scales else 1.0,
        "last_epoch_improvement": last_epoch_improvement(history, final_loss),
        "epochs": len(losses),
        "scale": scaler.method_,
        "one_unit": one_unit,
        "one_unit_reason": unit_reason,
        "beats_pca": beats(metrics["autoencoder"]["test_mse"], metrics["pca"]["test_mse"]),
    }


def diagnose(metrics: dict, estimator, x_train_scaled_sample, scaler, facts: dict | None = None) -> list[dict]:
    """The problems found in a comparison's autoencoder, each ``{"problem", "evidence", "fix"}``.

    ``metrics`` is :func:`aepca.experiments.compare.compare`'s metrics dict,
    ``x_train_scaled_sample`` some training rows scaled by ``scaler`` (the
    estimator's). ``facts`` (from :func:`measure`) saves measuring twice.
    """
    facts = measure(metrics, estimator, x_train_scaled_sample, scaler) if facts is None else facts
    found = []
    activations = ", ".join(facts["hidden_activations"]) or "none"
    if facts["saturated_fraction"] >= UNIT_PROBLEM_SHARE:
        found.append({
            "problem": "saturated hidden units",
            "evidence": (
                f"{facts['saturated_fraction']:.0%} of the {facts['hidden_units']} hidden units ({activations}) "
                f"sit within {SATURATION_MARGIN:.0%} of their bounds on at least {SATURATED_SHARE:.0%} of "
                f"{facts['sample_rows']} training rows, so they pass almost no gradient"
            ),
            "fix": "scale the inputs (scale='standard'), lower learning_rate, or use activation='elu'",
        })
    if facts["dead_fraction"] >= UNIT_PROBLEM_SHARE:
        found.append({
            "problem": "dead hidden units",
            "evidence": (
                f"{facts['dead_fraction']:.0%} of the {facts['hidden_units']} hidden units ({activations}) are "
                f"never active on {facts['sample_rows']} training rows"
            ),
            "fix": "lower learning_rate, scale the inputs (scale='standard'), or use init='pca'",
        })
    if facts["non_finite_losses"] or facts["min_lr_scale"] < 1:
        found.append({
            "problem": "training diverged",
            "evidence": (
                f"the loss became non-finite and training restarted its epoch at {facts['min_lr_scale']:g} x "
                f"the learning rate {estimator.learning_rate:g}"
            ),
            "fix": f"lower learning_rate to at most {estimator.learning_rate * facts['min_lr_scale']:g}, "
                   "or scale the data (scale='standard')",
        })
    improvement = facts["last_epoch_improvement"]
    if improvement is not None and improvement > STILL_FALLING:
        found.append({
            "problem": "training stopped while the loss was still falling",
            "evidence": (
                f"the last of {facts['epochs']} epoch(s) still lowered the training loss by {improvement:.1%} "
                f"(threshold {STILL_FALLING:.0%})"
            ),
            "fix": f"train for more epochs (e.g. --epochs {max(2 * facts['epochs'], 10)})",
        })
    if facts["scale"] == "none" and not facts["one_unit"]:
        found.append({
            "problem": "columns in mixed units, errors measured unscaled",
            "evidence": f"{facts['one_unit_reason']}: the MSE is dominated by the columns with the largest spread",
            "fix": "measure errors in standardised units (scale='standard', --scale standard or auto)",
        })
    if not facts["beats_pca"]:
        pca, ae = metrics["pca"]["test_mse"], metrics["autoencoder"]["test_mse"]
        found.append({
            "problem": "did not beat PCA",
            "evidence": f"test MSE {ae:.4g} vs PCA's {pca:.4g} at k={metrics['n_components']}",
            "fix": (
                "fix the problems above if any; otherwise the data may be close to linear at this code size "
                "(PCA is then the right model), or the network needs more epochs or data"
            ),
        })
    return found


def sample_rows(x: np.ndarray, seed: int, n: int = SAMPLE_ROWS) -> np.ndarray:
    """Up to ``n`` rows of ``x`` drawn without replacement (sorted, seeded)."""
    if len(x) <= n:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), size=n, replace=False))]


def check_comparison(metrics: dict, estimator, x_train: np.ndarray, seed: int) -> list[dict]:
    """What :func:`aepca.experiments.compare.compare` reports.

    The measured facts always go into ``metrics["autoencoder"]["health"]``;
    the problems are returned only when the autoencoder did not beat PCA
    (otherwise they did not matter enough to show).
    """
    scaler = estimator.scaler_
    sample = scaler.transform(sample_rows(x_train, seed))
    facts = measure(metrics, estimator, sample, scaler)
    metrics["autoencoder"]["health"] = facts
    return [] if facts["beats_pca"] else diagnose(metrics, estimator, sample, scaler, facts=facts)
