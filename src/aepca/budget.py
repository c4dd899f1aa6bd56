"""The network a time budget buys: settings chosen from the run's own measured speed.

``plan`` is the rule docs/recipes.md describes. It times a few training steps of each
candidate network on this machine (random rows of the data's width: a step's cost depends on
shapes only) and takes the largest that still gets ``MIN_EPOCHS`` epochs in the time left for
training, with epochs filling it and early stopping after annealing. Small data (below
``recipes.LARGE_ROWS`` rows) keeps ``fast``'s network and early stopping; a larger network may
follow it (``larger_follows``). Training stops at the deadline whatever the estimate
(``TrainConfig.deadline``). ``compare`` spends what training leaves on refining the codes it
encodes (``plan_refinement``).
"""

from __future__ import annotations

import json
import math
import numbers
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from aepca import distributed
from aepca._files import write_atomic
from aepca.recipes import LARGE_ROWS, VALIDATION_SPLIT
from aepca.validation import invalid_value

# Candidate networks for large data, largest first: the deep network of Hinton and
# Salakhutdinov's MNIST autoencoder (1000-500-250), then fast's (the classic 512-128).
CANDIDATES = ((1000, 500, 250), (512, 128))
# Peak learning rates of candidates that do not train well at fast's 8e-3 (docs/recipes.md).
LEARNING_RATES = {(1000, 500, 250): 1e-3}
# Fewer epochs than this and a larger network is not worth its cost.
MIN_EPOCHS = 10
# Training stops once this many epochs have not lowered the validation error, leaving the time to
# refinement; then the best weights train ANNEAL_EPOCHS more at a rate falling linearly to 0 (docs/recipes.md).
PATIENCE_EPOCHS, ANNEAL_EPOCHS = 10, 20
# What follows training (scoring, figures, the report), as a share of the budget, at least FLOOR_SECONDS.
AFTER_TRAINING_SHARE, FLOOR_SECONDS = 0.08, 10.0
# A pass over rows encoded after training (scores, neighbours, figures) costs about this share of a
# training step's time a row (docs/recipes.md); the time kept after training is at least their pass's.
PASS_SHARE = 2 / 3
# The share of the measured speed planned on: validation passes, and steps slower than the probe's.
SAFETY = 0.9
# Small data whose folds the budget cannot hold is judged on a validation split when the split holds at
# least this many rows (the floor of fast's validation rows, docs/recipes.md); fewer, the deadline stops the folds.
MIN_SPLIT_ROWS = 50
# Steps timed per candidate (after as many that compile), in chunks of about the length training runs
# them in. Fewer, at least MIN_PROBE_STEPS, for networks of more than PROBE_WEIGHT_STEPS / PROBE_STEPS
# weights: a step's time grows with the weights, and a wide table's probe should take little time and
# memory (docs/recipes.md).
PROBE_STEPS, PROBE_CHUNKS, MIN_PROBE_STEPS, PROBE_WEIGHT_STEPS = 100, 2, 2, 3e8
# Where training fills the budget (trains_to_deadline), compare leaves this share of it (after what precedes
# training), and what training leaves of its own, to code refinement (elsewhere, whatever training leaves;
# docs/recipes.md). At least MIN_REFINE_STEPS steps or none; more than MAX_REFINE_STEPS add little.
REFINE_SHARE, MIN_REFINE_STEPS, MAX_REFINE_STEPS = 0.35, 20, 300
# Steps per row of the two refinement probes (each timed after a call that compiles): their
# difference gives a row-step, the first also what a row costs besides its steps (the encoder, the check).
PROBE_REFINE_STEPS = (2, 12)
# Each timed this many times, the median taken (one timing alone can be far off), on this many rows (the
# probes' time is taken from refinement's; docs/recipes.md).
PROBE_REFINE_REPEATS, PROBE_REFINE_ROWS = 3, 2048
# The plans kept beside a run's checkpoints: the run's, and that of a larger network following fast's.
PLAN_FILE, LARGER_PLAN_FILE = "budget-plan.json", "budget-plan-larger.json"


class StepTime(NamedTuple):
    """A candidate network's measured seconds per optimizer step, and for compiling its training."""

    step: float
    compile: float


class BudgetTooSmall(ValueError):
    """A time budget that leaves no time to train: the run needs ``needed`` seconds besides training. The
    budget is named as Python's parameter, or as the command line's ``flag`` (``--time-budget``)."""

    def __init__(self, budget: float, needed: float, flag: str | None = None):
        self.needed = needed
        name, given = ("time_budget", f"time_budget={budget:g}") if flag is None else (flag, f"{flag} {budget:g}s")
        super().__init__(str(invalid_value(name, f"more than the {needed:.0f} s this run needs besides training",
                                           given, "Give the run a larger budget.")))

    def of_budget(self, budget: float, spent: float, share: float = 0.0, flag: str | None = None) -> BudgetTooSmall:
        """The same refusal said of the ``budget`` this one was cut from: ``spent`` seconds of it went
        before, and ``share`` of the rest was kept back."""
        return BudgetTooSmall(budget, spent + self.needed / (1 - share), flag)


def plan(settings: dict, given: dict, *, n_rows: int, n_train: int, budget: float, elapsed, step_seconds,
         fits, encoded_rows: int = 0) -> tuple[dict, dict]:
    """The settings a run of ``budget`` seconds gets, and the record of why.

    ``n_rows`` are the training rows, ``n_train`` those the network trains on (less its validation rows);
    ``settings`` the recipe's for this data; ``given`` the estimator's explicit arguments, which win over
    the plan. ``elapsed()`` is the run's time so far, ``step_seconds(hidden)`` measures a :class:`StepTime`
    (its time counts as spent) and ``fits(hidden)`` says whether a network's training fits in memory.
    ``encoded_rows`` rows are encoded after training, within the budget.
    """
    after = reserved_after_training(budget)
    record = {"budget_s": budget, "reserved_after_training_s": round(after, 2)}
    _check_time_left(budget, elapsed(), after)
    if n_rows >= LARGE_ROWS:
        def after_training(step: float) -> float:  # with a network of this step time
            return reserved_after_training(budget, PASS_SHARE * step / settings["batch_size"] * encoded_rows)

        sized, chosen = sized_to_time(settings, given, n_train, lambda: budget - elapsed(), step_seconds, fits,
                                      after_training)
        after = chosen.pop("after_training_s")
        _check_time_left(budget, elapsed(), after)
        record["reserved_after_training_s"] = round(after, 2)
        return sized, {**record, "spent_before_training_s": round(elapsed(), 2), **chosen}
    record["chose"] = (f"fast's network {list(settings['hidden'])} and its early stopping, which ends training "
                       f"before the budget on data of {n_rows} rows; the deadline stops it otherwise")
    if larger_follows(settings, given, n_rows):
        record["chose"] += ("; then, in the time it leaves, the network the large-data rule sizes to that time, "
                            "kept when its validation error is lower")
    folds = settings["folds"]
    if folds >= 2:
        # The folds' network is measured: the first fold's share of the time needs its compilation besides.
        probe = step_seconds(tuple(settings["hidden"]))
        _check_time_left(budget, elapsed(), after)
        record["step_s"] = {str(list(settings["hidden"])): round(probe.step, 6)}
        record["compile_s"] = round(probe.compile, 3)
        if given.get("folds") is None and n_rows * VALIDATION_SPLIT >= MIN_SPLIT_ROWS:
            # fast's folds train 2 x folds + 1 networks (fitting.start_folds): when their step caps do not fit,
            # a validation split judges. They compile twice: the folds' program (folds of one size share it),
            # then the final network's.
            steps = settings["epochs"] * (2 * folds * math.ceil(n_rows * (1 - 1 / folds) / settings["batch_size"])
                                          + math.ceil(n_rows / settings["batch_size"]))
            needed = steps * probe.step + 2 * probe.compile
            available = budget - elapsed() - after
            if needed > SAFETY * available:
                settings = {**settings, "folds": 0, "validation_fraction": VALIDATION_SPLIT}
                record["chose"] += (f"; judged on a validation split of {VALIDATION_SPLIT:.0%} of the rows instead of "
                                    f"{folds} folds, whose {steps} steps at most and two compilations ({needed:.0f} s "
                                    f"at {probe.step * 1e3:.2f} ms a step and {probe.compile:.1f} s a compilation) the "
                                    f"{available:.0f} s left do not hold")
    return settings, record


def _check_time_left(budget: float, spent: float, after: float) -> None:
    """Refuse a budget that leaves no time to train: spent before the plan, or by its probes (networks of
    costly steps: wide data)."""
    if budget - spent - after <= 0:
        raise BudgetTooSmall(budget, spent + after)


def sized_to_time(settings: dict, given: dict, n_train: int, available, step_seconds, fits,
                  after_training=lambda step: 0.0) -> tuple[dict, dict]:
    """The large-data rule: the first candidate network whose training ``fits`` in memory (or the given
    one) that gets ``MIN_EPOCHS`` epochs of ``n_train`` rows in ``SAFETY`` of ``available()`` seconds, less
    ``after_training(step)`` for a network of that step time, with epochs filling them, and the record of
    why (its measured step times, what it chose, and the seconds kept after training,
    ``after_training_s``). Where no candidate fits (very wide data), the recipe's network, whose memory
    was checked."""
    steps_per_epoch = math.ceil(n_train / settings["batch_size"])
    measured = {}
    if given.get("hidden") is not None:
        candidates, too_large = [tuple(given["hidden"])], []
    else:
        too_large = [hidden for hidden in CANDIDATES if not fits(hidden)]
        candidates = [hidden for hidden in CANDIDATES if hidden not in too_large] or [tuple(settings["hidden"])]
    for hidden in candidates:
        seconds = measured[hidden] = step_seconds(hidden).step
        after = after_training(seconds)
        left = available() - after
        epochs = int(SAFETY * left / (seconds * steps_per_epoch))
        if epochs >= MIN_EPOCHS:
            break
    fill = (f"{epochs} epochs of {steps_per_epoch} steps at {seconds * 1e3:.2f} ms a step fill the {left:.0f} s left "
            "for training" if epochs >= 1 else
            f"1 epoch, the least a run trains, though the {max(left, 0):.0f} s left for training hold less")
    sized = {"hidden": hidden, "epochs": max(1, epochs), "min_steps": None, "patience": PATIENCE_EPOCHS,
             "anneal_epochs": ANNEAL_EPOCHS, "learning_rate": LEARNING_RATES.get(hidden, settings["learning_rate"])}
    chosen = {key: value for key, value in sized.items() if given.get(key) is None}
    return {**settings, **chosen}, {
        "step_s": {str(list(h)): round(s, 6) for h, s in measured.items()}, "after_training_s": after,
        "chose": f"network {list(hidden)} at a peak learning rate of {sized['learning_rate']:g}: {fill}"
                 + (f"; left out, their training not fitting in memory: {list(map(list, too_large))}" if too_large else "")}


def larger_follows(settings: dict, given: dict, n_rows: int) -> bool:
    """Whether, under a budget, a larger network may follow fast's small one: on fewer than ``LARGE_ROWS``
    training rows judged on a validation split, unless the network or its epochs were given."""
    return (n_rows < LARGE_ROWS and settings["init"] == "auto" and settings["folds"] < 2
            and settings["validation_fraction"] > 0 and given.get("hidden") is None and given.get("epochs") is None)


def trains_to_deadline(settings: dict, given: dict, n_rows: int) -> bool:
    """Whether training under a budget fills it (large data, or a larger network following fast's)
    rather than ending where early stopping ends it."""
    return n_rows >= LARGE_ROWS or larger_follows(settings, given, n_rows)


def reserved_after_training(budget: float, encoding: float = 0.0) -> float:
    """The seconds of a ``budget`` kept for what follows training, where encoding rows takes ``encoding``."""
    return max(AFTER_TRAINING_SHARE * budget, FLOOR_SECONDS + encoding)


def planned(checkpoint_dir, make_plan, name: str = PLAN_FILE) -> tuple[dict, dict]:
    """``make_plan()``, or the plan an interrupted run made in ``checkpoint_dir`` (file ``name``), so
    that its resumed training has the settings its checkpoints were made with."""
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / name
    if path is not None and path.exists():
        saved = json.loads(path.read_text())
        return {**saved["settings"], "hidden": tuple(saved["settings"]["hidden"])}, saved["record"]
    settings, record = make_plan()
    # Every process has the same plan; the first writes it (after all have looked for one).
    if path is not None and distributed.is_writer():
        write_atomic(path, json.dumps({"settings": {**settings, "hidden": list(settings["hidden"])},
                                       "record": record}).encode())
    return settings, record


def measure_step(hidden: tuple, *, n_features: int, n_components: int, settings: dict) -> StepTime:
    """Seconds per optimizer step of a network of ``hidden`` widths, on random rows of this width,
    and for compiling its training."""
    from aepca.data.sources import open_source
    from aepca.models import build_autoencoder, parameter_count
    from aepca.training import TrainConfig, train

    batch_size = settings["batch_size"]
    steps = probe_steps(parameter_count(n_features, hidden, n_components))
    rows = np.random.default_rng(0).random((batch_size * steps, n_features), dtype=np.float32)
    net = build_autoencoder(n_features, n_components, hidden=hidden, activation=settings["activation"],
                            output_activation="linear", code_activation=settings["code_activation"], seed=0)
    config = TrainConfig(epochs=2, batch_size=batch_size, learning_rate=1e-4, optimizer=settings["optimizer"],
                         loss="mse", seed=0, chunks_per_epoch=PROBE_CHUNKS)
    seconds = train(net.autoencoder, open_source(rows), config=config)["seconds"]
    # The first epoch compiles; the second is steady.
    steady = seconds[1] - seconds[0]
    return StepTime(steady / steps, max(seconds[0] - steady, 0.0))


def probe_steps(weights: int) -> int:
    """Steps to time of a network of ``weights`` weights."""
    return max(MIN_PROBE_STEPS, min(PROBE_STEPS, int(PROBE_WEIGHT_STEPS // weights)))


def plan_refinement(estimator, sample: np.ndarray, n_rows: int, seconds: float) -> dict:
    """Set ``estimator.refine_steps`` to what encoding ``n_rows`` rows can afford in ``seconds``
    (less the timing itself), timed on ``sample`` (rows as the estimator takes them), when that is at
    least ``MIN_REFINE_STEPS``; return the record of why."""
    if not len(sample):
        return {"refine_steps": int(estimator.refine_steps), "why": "no rows to time refinement on"}
    if seconds <= 0:
        estimator.set_params(refine_steps=0)
        return {"refine_steps": 0, "why": "training left no time for it"}
    probing, row_seconds = time.monotonic(), []
    for steps in PROBE_REFINE_STEPS:
        estimator.set_params(refine_steps=steps)
        estimator.transform(sample)  # compiles
        timed = []
        for _ in range(PROBE_REFINE_REPEATS):
            started = time.monotonic()
            estimator.transform(sample)
            timed.append(time.monotonic() - started)
        row_seconds.append(distributed.mean_of(float(np.median(timed))) / len(sample))
    seconds -= distributed.mean_of(time.monotonic() - probing)
    (few, many), (few_seconds, many_seconds) = PROBE_REFINE_STEPS, row_seconds
    # Timings too close to tell apart (tiny networks): every second counted as a step's.
    row_step = (many_seconds - few_seconds) / (many - few) if many_seconds > few_seconds else many_seconds / many
    row = max(few_seconds - few * row_step, 0.0)
    affordable = int((SAFETY * seconds / n_rows - row) / row_step)
    steps = min(affordable, MAX_REFINE_STEPS) if affordable >= MIN_REFINE_STEPS else 0
    estimator.set_params(refine_steps=steps)
    return {"refine_steps": steps, "row_step_s": round(row_step, 12), "row_s": round(row, 12), "encoded_rows": n_rows,
            "seconds": round(seconds, 1)}


def check_encoded_rows(encoded_rows) -> int:
    """``encoded_rows`` (rows a caller encodes after fitting, within the budget), checked."""
    if isinstance(encoded_rows, bool) or not isinstance(encoded_rows, numbers.Integral) or encoded_rows < 0:
        raise invalid_value("encoded_rows", "an integer >= 0", f"encoded_rows={encoded_rows!r}",
                            "Pass how many rows you encode once fitted, or 0.")
    return int(encoded_rows)


def deadline_after(budget: float, started: float, record: dict) -> float:
    """The ``time.monotonic()`` by which training must end: the budget less what the plan's ``record``
    keeps for what follows training."""
    return started + budget - record["reserved_after_training_s"]
