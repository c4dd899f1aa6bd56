"""Why an autoencoder did not beat PCA: measured facts and the problems they show.

:func:`measure` gathers facts about a trained autoencoder: its hidden units
on a sample of training rows (saturated or dead), its code layer's
activation, its training loss per epoch against two references in the error
space (reconstructing every row by the mean, and PCA), how far its learning
rate let the weights move, divergence retries, and whether the columns
share one unit. :func:`diagnose` turns the facts past their thresholds into
problems, each a dict ``{"problem", "evidence", "fix"}``; only problems that
were found are reported. docs/diagnostics.md catalogues each mistake with
the numbers behind the thresholds.
"""

from __future__ import annotations

import math

import numpy as np

from aepca.preprocessing import shares_one_unit
from aepca.selection import TIE
from aepca.validation import plural

# A unit is saturated when its output lies within this distance of an
# asymptote of its activation on at least SATURATED_SHARE of the sample.
SATURATION_MARGIN = 0.01
SATURATED_SHARE = 0.95
# Activations that are zero or flat for negative inputs. Such a unit is dead
# when its slope stays below DEAD_SLOPE (1% of its slope for positive inputs)
# on every sample row (relu below zero, elu below about -4.6): a mildly
# negative ELU unit still learns, so "never positive" alone is not dead.
RECTIFIERS = frozenset({"relu", "relu6", "elu", "selu", "leaky_relu", "gelu", "silu", "swish", "celu", "softplus"})
DEAD_SLOPE = 0.01
# Bounds of the saturating activations.
BOUNDED = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "hard_tanh": (-1.0, 1.0)}
# Report units as a problem from this share of the hidden units on.
UNIT_PROBLEM_SHARE = 0.25
# The training loss still falling by more than this share per epoch over
# the recent epochs (see recent_improvement) means training stopped too
# early, unless validation chose the stop (more epochs would then overfit).
STILL_FALLING = 0.01
# Learning rate too low: the loss fell by less than SLOW_DROP from the first
# epoch to the last, is still above PCA's, and learning_rate x steps (the
# most that Adam, whose steps are about learning_rate long, can move any
# weight) is below LOW_TRAVEL of the weights' typical size: the network is
# still about where it started, and more epochs at that rate barely help.
SLOW_DROP = 0.1
LOW_TRAVEL = 0.1
# Learning rate too high: the weights could move far (travel above
# LOW_TRAVEL), yet the network recovered less than STALL_PROGRESS of what
# PCA gains over reconstructing every row by the mean, and its loss stopped
# falling, ended RISE above its lowest epoch, or a UNIT_PROBLEM_SHARE of its
# hidden units are dead or saturated (what large steps do to them). Past
# STALL_PROGRESS a rise alone is mini-batch noise, not evidence.
STALL_PROGRESS = 0.25
RISE = 0.05
# Or an epoch's loss exceeded EXPLODED times the mean's error: the weights
# blew up (an untrained network's loss is within a few times that error).
EXPLODED = 100.0
# The rate a fix suggests: tenfold away from the current one, or Adam's
# usual rate (the classic recipe's) where that is further.
TYPICAL_LEARNING_RATE = 1e-3
SAMPLE_ROWS = 2000
# Problems that check_comparison reports even when the autoencoder beat
# PCA: they make the compared numbers themselves misleading.
MISLEADING_NUMBERS = frozenset({"columns in mixed units, errors measured unscaled"})


def beats(candidate_mse: float, reference_mse: float) -> bool:
    """Whether ``candidate_mse`` is below ``reference_mse`` by more than a float32 tie."""
    return candidate_mse < reference_mse * (1 - TIE)


def _hidden_layers(model):
    """The hidden Dense layers of an aepca autoencoder, by sub-model."""
    from aepca._keras import keras

    for part in ("encoder", "decoder"):
        submodel = model.get_layer(part)
        layers = [
            layer for layer in submodel.layers
            if isinstance(layer, keras.layers.Dense) and layer.name.startswith(f"{part}_") and layer.name[len(part) + 1:].isdigit()
        ]
        yield submodel, layers


def _activation_name(layer) -> str:
    """The name of a layer's activation; layers without one (a PCA start's
    Add) are linear."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    return getattr(activation, "__name__", str(activation))


def _to_numpy(values) -> np.ndarray:
    from aepca._keras import ops

    return np.asarray(ops.convert_to_numpy(values), dtype=np.float64)


def _near_bounds(activation_name: str, out: np.ndarray) -> np.ndarray:
    """Where outputs of a bounded activation lie within the margin of a bound."""
    low, high = BOUNDED[activation_name]
    margin = SATURATION_MARGIN * (high - low)
    return (out - low <= margin) | (high - out <= margin)


def _slope(activation, pre: np.ndarray) -> np.ndarray:
    """The activation's slope at ``pre``, by central differences scaled to
    ``pre`` (so float32 still resolves them far from zero)."""
    step = 1e-3 * np.maximum(1.0, np.abs(pre))
    up = _to_numpy(activation((pre + step).astype(np.float32)))
    down = _to_numpy(activation((pre - step).astype(np.float32)))
    return (up - down) / (2 * step)


def unit_facts(estimator, x_scaled: np.ndarray) -> dict:
    """Shares of saturated and dead hidden units of ``estimator`` on ``x_scaled``,
    and the typical size of their weights.

    ``x_scaled`` are training rows in the estimator's error space.
    """
    from aepca._keras import keras
    from aepca.models import predict, without_gradients

    x_net = estimator.space_.to_network(x_scaled)
    codes = predict(estimator.encoder_, x_net)
    inputs = {"encoder": x_net, "decoder": codes}
    n_units = n_saturated = n_dead = 0
    activations, kernels = set(), []
    for submodel, layers in _hidden_layers(estimator.model_):
        if not layers:
            continue
        probe = keras.Model(submodel.input, [layer.input for layer in layers])
        with without_gradients():
            layer_inputs = probe(inputs[submodel.name], training=False)
        layer_inputs = layer_inputs if isinstance(layer_inputs, (list, tuple)) else [layer_inputs]
        for layer, layer_input in zip(layers, layer_inputs):
            kernel, bias = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
            kernels.append(np.abs(kernel).ravel())
            pre = _to_numpy(layer_input) @ kernel + bias
            name = _activation_name(layer)
            activations.add(name)
            n_units += pre.shape[1]
            if name in RECTIFIERS:
                n_dead += int(np.sum(np.all(np.abs(_slope(layer.activation, pre)) < DEAD_SLOPE, axis=0)))
            elif name in BOUNDED:
                near = _near_bounds(name, _to_numpy(layer.activation(pre.astype(np.float32))))
                n_saturated += int(np.sum(np.mean(near, axis=0) >= SATURATED_SHARE))
    return {
        "hidden_activations": sorted(activations),
        "hidden_units": n_units,
        "sample_rows": int(len(x_scaled)),
        "saturated_fraction": n_saturated / n_units if n_units else 0.0,
        "dead_fraction": n_dead / n_units if n_units else 0.0,
        # The median absolute hidden-layer weight: what a learning step is measured against.
        "weight_scale": float(np.median(np.concatenate(kernels))) if kernels else None,
    }


def code_facts(estimator, x_scaled: np.ndarray) -> dict:
    """The code layer's activation and, for a bounded one, the share of code
    values within the saturation margin of its bounds on ``x_scaled``."""
    from aepca.models import predict

    name = _activation_name(estimator.encoder_.get_layer("code"))
    near = None
    if name in BOUNDED and len(x_scaled):
        codes = np.asarray(predict(estimator.encoder_, estimator.space_.to_network(x_scaled)), dtype=np.float64)
        near = float(np.mean(_near_bounds(name, codes)))
    return {"code_activation": name, "code_near_bounds": near}


def _loss_curve(history: dict, final_loss: float | None) -> list[float]:
    """The finite per-epoch training losses; after a single epoch, followed by
    ``final_loss`` (the trained weights' loss, which the mean over a
    still-changing epoch differs from)."""
    losses = [float(v) for v in history.get("loss", []) if math.isfinite(v)]
    if len(losses) == 1 and final_loss is not None:
        losses.append(final_loss)
    return losses


def recent_improvement(history: dict, final_loss: float | None = None) -> float | None:
    """Relative drop of the training loss per epoch over the recent epochs.

    The mean loss of the last quarter of the epochs (at least one) is
    compared with that of the quarter before, per epoch: on small data an
    epoch is a few noisy steps, so one epoch's change says little. With one
    epoch there is no earlier epoch loss; the epoch's mean loss is then
    compared with ``final_loss``, the loss of the trained weights (which the
    mean over a still-improving epoch exceeds).
    """
    curve = _loss_curve(history, final_loss)
    if len(curve) < 2:
        return None
    window = max(1, len(curve) // 4)
    before, after = np.mean(curve[-2 * window : -window]), np.mean(curve[-window:])
    return float((before - after) / before / window) if before > 0 else 0.0


def loss_facts(metrics: dict, estimator, x: np.ndarray, final_mse: float | None) -> dict:
    """The training loss's course against the mean's and PCA's errors, and how
    far the learning rate let the weights move."""
    history = estimator.history_
    settings = estimator.settings_  # the recipe's, sized to the data, with the arguments given
    final_loss = final_mse if settings["loss"] == "mse" else None
    curve = _loss_curve(history, final_loss)
    # Reconstructing every row by the sample's mean: the total variance per value.
    mean_error = float(np.mean(np.var(x, axis=0, dtype=np.float64))) if len(x) else None
    pca_error = metrics["pca"].get("train_mse")
    progress = None
    if final_mse is not None and mean_error is not None and pca_error is not None and mean_error > pca_error:
        progress = (mean_error - final_mse) / (mean_error - pca_error)
    learning_rate, batch_size, epochs_cap = settings["learning_rate"], settings["batch_size"], settings["epochs"]
    travel = steps = None
    if learning_rate is not None and batch_size and metrics.get("n_train"):
        from aepca.training import steps_per_epoch

        per_epoch = steps_per_epoch(int(metrics["n_train"]), int(batch_size))
        lr_scales = [float(s) for s in history.get("lr_scale", [])]
        steps = per_epoch * len(lr_scales)
        travel = float(learning_rate) * per_epoch * sum(lr_scales)
    best = min(curve) if curve else None
    return {
        "learning_rate": None if learning_rate is None else float(learning_rate),
        "steps": steps,
        # The most that Adam (steps about learning_rate long) can move any weight.
        "max_weight_travel": travel,
        "final_mse": final_mse,
        "mean_error": mean_error,
        "pca_train_mse": pca_error,
        # 0: no better than the mean; 1: as good as PCA (on the training rows).
        "progress_to_pca": progress,
        "loss_drop": (curve[0] - curve[-1]) / curve[0] if len(curve) >= 2 and curve[0] > 0 else None,
        # How far the last loss sits above the lowest epoch's.
        "above_best": (curve[-1] - best) / best if len(curve) >= 2 and best > 0 else None,
        "peak_to_mean_error": max(curve) / mean_error if curve and final_loss is not None and mean_error else None,
        "recent_improvement": recent_improvement(history, final_loss),
        # Validation stopped training before its epoch cap (patience, or the
        # folds' best epoch count): more epochs would then overfit.
        "stopped_by_validation": "stopped_early" in history or len(history.get("loss", [])) < (epochs_cap or 0),
    }


def measure(metrics: dict, estimator, x_train_scaled_sample: np.ndarray, scaler) -> dict:
    """Every fact the diagnoses read, JSON-ready (it goes into the metrics)."""
    x = np.asarray(x_train_scaled_sample, dtype=np.float32)
    history = estimator.history_
    final_mse = None
    if len(x):
        reconstruction = np.asarray(estimator.reconstruct_scaled(x), dtype=np.float64)
        final_mse = float(np.mean(np.square(reconstruction - x)))
    losses = history.get("loss", [])
    lr_scales = history.get("lr_scale", [])
    one_unit, unit_reason = shares_one_unit(scaler.inverse_transform(x)) if len(x) else (True, "no rows")
    units = unit_facts(estimator, x)
    facts = {**units, **code_facts(estimator, x), **loss_facts(metrics, estimator, x, final_mse)}
    travel, scale = facts["max_weight_travel"], units["weight_scale"]
    facts.update({
        "travel_to_weights": travel / scale if travel is not None and scale else None,
        "non_finite_losses": int(sum(not math.isfinite(v) for v in losses)),
        "min_lr_scale": float(min(lr_scales)) if lr_scales else 1.0,
        "epochs": len(losses),
        "scale": scaler.method_,
        "one_unit": one_unit,
        "one_unit_reason": unit_reason,
        "beats_pca": beats(metrics["autoencoder"]["test_mse"], metrics["pca"]["test_mse"]),
    })
    return facts


def _suggested_rate(learning_rate: float, higher: bool) -> float:
    """A rate to try: tenfold away from ``learning_rate``, or Adam's usual
    rate where that is further."""
    if higher:
        return max(10 * learning_rate, TYPICAL_LEARNING_RATE)
    return min(learning_rate / 10, TYPICAL_LEARNING_RATE)


def _learning_rate_problems(facts: dict, diverged: bool) -> list[dict]:
    """The too-high or too-low learning rate problem, if any."""
    rate, travel = facts["learning_rate"], facts["travel_to_weights"]
    progress, drop = facts["progress_to_pca"], facts["loss_drop"]
    improvement, above_best = facts["recent_improvement"], facts["above_best"]
    if rate is None or travel is None or drop is None or progress is None:
        return []
    reference = (
        f"{facts['final_mse'] / facts['mean_error']:.3g}x the error of reconstructing every row by the mean "
        f"({facts['mean_error']:.4g}; PCA's is {facts['pca_train_mse'] / facts['mean_error']:.3g}x)"
    )
    moves = (
        f"at learning_rate {rate:g}, {facts['steps']} Adam steps move a weight by at most about "
        f"{facts['max_weight_travel']:.2g}, {travel:.3g}x the hidden weights' typical size {facts['weight_scale']:.2g}"
    )
    if travel < LOW_TRAVEL and drop < SLOW_DROP and progress < 1:
        return [{
            "problem": "learning rate too low",
            "evidence": (
                f"over {plural(facts['epochs'], 'epoch')} the training loss fell only {drop:.2%} and ended at {reference}; "
                f"{moves}: the network is still about where it started"
            ),
            "fix": f"raise learning_rate from {rate:g} to about {_suggested_rate(rate, higher=True):g}",
        }]
    stalled = improvement is not None and improvement < STILL_FALLING
    rose = above_best is not None and above_best > RISE
    broken = max(facts["dead_fraction"], facts["saturated_fraction"]) >= UNIT_PROBLEM_SHARE
    peak = facts["peak_to_mean_error"]
    exploded = peak is not None and peak > EXPLODED
    if diverged or travel < LOW_TRAVEL or progress >= STALL_PROGRESS or not (stalled or rose or broken or exploded):
        return []
    how = f"the training loss {'stopped falling' if stalled else 'is still falling'} at {reference}"
    if exploded:
        how += f", after peaking at {peak:.3g}x that error"
    if rose:
        how += f", {above_best:.1%} above its lowest epoch"
    if broken:
        how += f", with {max(facts['dead_fraction'], facts['saturated_fraction']):.0%} of the hidden units dead or saturated"
    return [{
        "problem": "learning rate too high",
        "evidence": f"{how}; {moves}",
        "fix": f"lower learning_rate from {rate:g} to about {_suggested_rate(rate, higher=False):g}",
    }]


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
            "fix": "lower learning_rate, scale the inputs (scale='standard'), or use activation='elu'",
        })
    if facts["dead_fraction"] >= UNIT_PROBLEM_SHARE:
        found.append({
            "problem": "dead hidden units",
            "evidence": (
                f"{facts['dead_fraction']:.0%} of the {facts['hidden_units']} hidden units ({activations}) have a "
                f"slope below {DEAD_SLOPE:g} on all {facts['sample_rows']} sampled training rows"
            ),
            "fix": "lower learning_rate, scale the inputs (scale='standard'), or use init='pca'",
        })
    diverged = bool(facts["non_finite_losses"] or facts["min_lr_scale"] < 1)
    if diverged:
        rate = facts["learning_rate"]
        found.append({
            "problem": "training diverged",
            "evidence": (
                f"the loss became non-finite and training restarted its epoch at {facts['min_lr_scale']:g} x "
                f"the learning rate {rate:g}"
            ),
            "fix": f"lower learning_rate to at most {rate * facts['min_lr_scale']:g}, "
                   "or scale the data (scale='standard')",
        })
    rate_problems = _learning_rate_problems(facts, diverged)
    found.extend(rate_problems)
    improvement = facts["recent_improvement"]
    # With a learning rate problem, more epochs at that rate are not the fix.
    if improvement is not None and improvement > STILL_FALLING and not rate_problems and not facts["stopped_by_validation"]:
        found.append({
            "problem": "training stopped while the loss was still falling",
            "evidence": (
                f"after {plural(facts['epochs'], 'epoch')} the training loss was still falling by {improvement:.1%} per "
                f"epoch (threshold {STILL_FALLING:.0%})"
            ),
            "fix": f"train for more epochs (e.g. --epochs {max(2 * facts['epochs'], 10)})",
        })
    if facts["code_activation"] != "linear":
        bounded, near = BOUNDED.get(facts["code_activation"]), facts["code_near_bounds"]
        squeeze = "part of the code space is bent or cut off, so fewer rows can be told apart"
        if bounded:
            squeeze = f"codes are squeezed into ({bounded[0]:g}, {bounded[1]:g})"
            if near is not None:
                squeeze += (
                    f"; {near:.0%} of the sampled code values lie within {SATURATION_MARGIN:.0%} of those "
                    "bounds, where rows crowd together"
                )
        found.append({
            "problem": "nonlinear code layer",
            "evidence": f"the code layer uses {facts['code_activation']}: {squeeze}",
            "fix": "use a linear code (code_activation='linear'); nonlinearity belongs in the hidden layers",
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
                "fix the problems above first" if found else
                "no training problem was found: the data may be close to linear at this code size (PCA is then "
                "the right model), or the network needs more epochs or data"
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

    The measured facts always go into ``metrics["autoencoder"]["health"]``.
    When the autoencoder did not beat PCA every problem found is returned;
    when it did, only those that make the compared numbers misleading
    (``MISLEADING_NUMBERS``): the others did not matter enough to show.
    """
    scaler = estimator.scaler_
    sample = scaler.transform(sample_rows(x_train, seed))
    facts = measure(metrics, estimator, sample, scaler)
    metrics["autoencoder"]["health"] = facts
    found = diagnose(metrics, estimator, sample, scaler, facts=facts)
    return found if not facts["beats_pca"] else [item for item in found if item["problem"] in MISLEADING_NUMBERS]
