"""A time budget: the rule that sizes the network (with a stand-in for the measured speed), the
deadline that ends training, the plan kept for a resumed run, the command's duration argument."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from aepca import budget
from aepca.cli import EXIT_USAGE, main
from aepca.recipes import get_recipe

# MNIST-sized: 57,000 training rows, 446 steps of 128 rows an epoch.
ROWS = 57_000
STEP_SECONDS = {(1000, 500, 250): 0.016, (512, 128): 0.005, (64,): 0.001, (256, 128): 0.002}


def _measured(step, compile_seconds=0.0):
    """A stand-in for the measured speed: ``step`` seconds a step, whatever the network."""
    return lambda hidden, **_: budget.StepTime(step, compile_seconds)


def _plan(seconds, given=None, n_rows=ROWS, elapsed=5.0, n_train=None, compile_seconds=0.0, fits=lambda hidden: True,
          encoded_rows=0):
    given = given or {}
    # As the estimator resolves them: the recipe's settings, explicit arguments winning.
    settings = get_recipe("fast").settings(n_rows, 784, 2, **given)
    return budget.plan(settings, given, n_rows=n_rows, n_train=n_train or n_rows, budget=seconds,
                       elapsed=lambda: elapsed,
                       step_seconds=lambda hidden: budget.StepTime(STEP_SECONDS[hidden], compile_seconds), fits=fits,
                       encoded_rows=encoded_rows)


def test_a_budget_buys_the_largest_network_that_gets_its_epochs():
    settings, record = _plan(600)
    # 600 s less 5 spent and 48 after training (8%), 90% of it at 16 ms a step, 446 steps an epoch.
    assert settings["hidden"] == (1000, 500, 250) and settings["epochs"] == int(0.9 * 547 / (0.016 * 446)) == 68
    assert settings["learning_rate"] == budget.LEARNING_RATES[(1000, 500, 250)]
    assert settings["patience"] == budget.PATIENCE_EPOCHS and settings["anneal_epochs"] == budget.ANNEAL_EPOCHS
    assert "68 epochs" in record["chose"] and record["reserved_after_training_s"] == 48.0
    # Ten epochs of the deep network do not fit in a minute: the classic network gets them, at fast's rate.
    settings, record = _plan(60)
    assert settings["hidden"] == (512, 128) and settings["epochs"] == int(0.9 * 45 / (0.005 * 446))
    assert settings["learning_rate"] == get_recipe("fast").settings(ROWS, 784, 2)["learning_rate"]
    assert set(record["step_s"]) == {"[1000, 500, 250]", "[512, 128]"}


def test_candidates_whose_training_does_not_fit_in_memory_are_left_out_and_named():
    settings, record = _plan(600, fits=lambda hidden: hidden != (1000, 500, 250))
    assert settings["hidden"] == (512, 128) and record["step_s"] == {"[512, 128]": 0.005}
    assert "left out, their training not fitting in memory: [[1000, 500, 250]]" in record["chose"]
    # A network the user gave is the only one timed: no candidate is left out, or named.
    settings, record = _plan(600, given={"hidden": (64,)}, fits=lambda hidden: hidden == (64,))
    assert settings["hidden"] == (64,) and "left out" not in record["chose"]


def test_a_wide_networks_speed_is_probed_on_fewer_steps_and_rows(monkeypatch):
    from aepca import models, training

    probed = []

    def timed_train(model, rows, config):
        probed.append(rows.n_rows)
        return {"seconds": [3.0, 4.0]}

    monkeypatch.setattr(models, "build_autoencoder", lambda *args, **kwargs: SimpleNamespace(autoencoder=None))
    monkeypatch.setattr(training, "train", timed_train)
    settings = get_recipe("fast").settings(300, 20_000, 2)
    # MNIST's candidates take every probe step; a network of 160 million weights the fewest, and
    # the random rows of that many steps only.
    assert budget.probe_steps(models.parameter_count(784, (1000, 500, 250), 30)) == budget.PROBE_STEPS
    step = budget.measure_step((4000, 128), n_features=20_000, n_components=2, settings=settings)
    assert probed == [settings["batch_size"] * budget.MIN_PROBE_STEPS]
    assert step == budget.StepTime(1.0 / budget.MIN_PROBE_STEPS, 2.0)


@pytest.mark.parametrize(("n_rows", "needed"), [(300, 75), (ROWS, 135)])  # fast's network probed; both candidates
def test_probes_that_take_what_the_budget_left_end_the_run_with_a_refusal(n_rows, needed):
    clock = [5.0]

    def slow_probe(hidden):
        clock[0] += 60.0  # steps of seconds each: a very wide table's network
        return budget.StepTime(1.0, 5.0)

    settings = get_recipe("fast").settings(n_rows, 784, 2)
    with pytest.raises(budget.BudgetTooSmall, match=f"expected more than the {needed} s this run needs besides training"):
        budget.plan(settings, {}, n_rows=n_rows, n_train=n_rows, budget=60, elapsed=lambda: clock[0],
                    step_seconds=slow_probe, fits=lambda hidden: True)


def test_a_budget_that_holds_less_than_an_epoch_trains_one_and_says_so():
    # 20 s less 5 spent and 10 after training leave 5 s: 0.9 * 5 / (0.016 * 446) = 0.6 of the deep network's epochs.
    settings, record = _plan(20, given={"hidden": (1000, 500, 250)})
    assert settings["epochs"] == 1 and "1 epoch, the least a run trains" in record["chose"]


def test_time_to_encode_millions_of_rows_after_training_is_kept_from_training():
    # MNIST's 78,000 encoded rows (2/3 x 16 ms / 128 rows each: 6.5 s, with the 10 s floor) fit in the 8% kept.
    assert _plan(600, encoded_rows=78_000) == _plan(600)
    # 5,000,000 rows take 417 s with the deep network, more than 5 minutes leave, 130 s with the classic one.
    settings, record = _plan(300, encoded_rows=5_000_000)
    after = 10 + 2 / 3 * 0.005 / 128 * 5_000_000
    assert settings["hidden"] == (512, 128) and record["reserved_after_training_s"] == pytest.approx(after, abs=0.01)
    assert settings["epochs"] == int(0.9 * (300 - 5 - after) / (0.005 * 446))
    # Where they leave no time to train, the budget is refused rather than overrun.
    with pytest.raises(budget.BudgetTooSmall, match=f"more than the {5 + after:.0f} s this run needs besides training"):
        _plan(120, encoded_rows=5_000_000, given={"hidden": (512, 128)})


def test_rows_encoded_after_fitting_must_be_a_count():
    from aepca import Autoencoder

    with pytest.raises(ValueError, match=r"encoded_rows, expected an integer >= 0\. Received: encoded_rows=-1"):
        Autoencoder(2, time_budget=60).fit(np.zeros((10, 3), np.float32), encoded_rows=-1)


def test_explicit_arguments_win_over_the_plan():
    settings, _ = _plan(600, given={"hidden": (64,), "epochs": 3, "learning_rate": 0.1})
    assert settings["hidden"] == (64,) and settings["epochs"] == 3 and settings["learning_rate"] == 0.1
    # A given network gets the epochs its own step time affords.
    settings, record = _plan(600, given={"hidden": (64,)})
    assert settings["epochs"] == int(0.9 * 547 / (0.001 * 446)) and set(record["step_s"]) == {"[64]"}


def test_small_data_keeps_fast_and_its_early_stopping():
    fast = get_recipe("fast").settings(1_000, 784, 2)
    settings, record = _plan(240, n_rows=1_000)
    assert settings == fast and "early stopping" in record["chose"] and "in the time it leaves" not in record["chose"]


def test_the_rows_trained_on_decide_between_the_rules_before_the_validation_split():
    # 20,500 training rows take fast's large-data settings; 19,475 left by its 5% split take the same rule.
    settings, record = _plan(600, n_rows=20_500, n_train=19_475)
    assert settings["hidden"] == (1000, 500, 250) and "early stopping" not in record["chose"]


@pytest.mark.parametrize("n_rows, given, follows", [
    (10_000, {}, True),  # judged on fast's validation split
    (4_000, {}, False),  # judged on folds
    (10_000, {"hidden": (64,)}, False), (10_000, {"epochs": 5}, False),  # the user chose
    (ROWS, {}, False),  # large data: the rule sizes the network itself
])
def test_a_larger_network_follows_fasts_only_on_a_validation_split_the_user_left_to_the_rule(n_rows, given, follows):
    settings = get_recipe("fast").settings(n_rows, 784, 2, **given)
    assert budget.larger_follows(settings, given, n_rows) is follows
    assert budget.trains_to_deadline(settings, given, n_rows) is (follows or n_rows >= ROWS)
    assert ("in the time it leaves" in _plan(600, given=given, n_rows=n_rows)[1]["chose"]) is follows


def test_the_larger_network_trains_in_the_time_fasts_leaves_and_the_lower_on_validation_is_kept(
        monkeypatch, low_rank_data, tmp_path):
    from aepca import Autoencoder

    x = low_rank_data(n_samples=5_000, n_features=6, rank=2, seed=0)
    monkeypatch.setattr(budget, "CANDIDATES", ((24, 12),))
    monkeypatch.setattr(budget, "measure_step", _measured(0.05))  # the time left holds dozens of 32-step epochs
    fitted = Autoencoder(1, patience=1, anneal_epochs=1, time_budget=120, checkpoint_dir=tmp_path,
                         random_state=0).fit(x)
    larger = fitted.history_["budget"]["larger"]
    assert "network [24, 12]" in larger["chose"] and larger["step_s"] == {"[24, 12]": 0.05}
    losses = larger["held_out_loss"]
    assert larger["kept"] == min(losses, key=losses.get)
    kept_hidden = (24, 12) if larger["kept"] == "larger" else get_recipe("fast").settings(5_000, 6, 1)["hidden"]
    assert fitted.settings_["hidden"] == kept_hidden
    assert any(tuple(weight.shape) == kept_hidden for weight in fitted.model_.weights)  # the encoder's second kernel
    # Its plan is kept beside the checkpoints, for a resumed run.
    assert (tmp_path / budget.LARGER_PLAN_FILE).exists()


@pytest.mark.parametrize("fits", [True, False])
def test_a_larger_network_follows_only_when_its_training_fits_in_memory(monkeypatch, low_rank_data, fits):
    from aepca import fitting
    from aepca.data import open_source

    x = low_rank_data(n_samples=600, n_features=6, rank=2, seed=0)
    large = get_recipe("fast").settings(ROWS, 6, 1)["hidden"]
    monkeypatch.setattr(fitting, "network_fits", lambda n_features, hidden, n_components: fits or tuple(hidden) != large)
    monkeypatch.setattr(budget, "measure_step", _measured(0.05))
    # Judged on a validation split, as from 5,000 rows: a larger network would follow.
    given = {"folds": 0, "validation_fraction": 0.2}
    settings = fitting.resolve_settings("fast", given, len(x), 6, 1)
    fit = fitting.Fit.prepare(open_source(x), None, n_components=1, settings=settings, scale="none", seed=0, params={})
    fit.plan_budget(120.0, given, time.monotonic(), "fast")
    assert (fit.larger is not None) is fits
    assert ("larger" in fit.budget) is not fits
    if not fits:
        assert fit.budget["larger"] == {"why": f"the larger network {list(large)} does not fit in memory to train"}


def test_small_data_is_judged_on_a_validation_split_when_the_budget_holds_no_folds():
    fast = get_recipe("fast").settings(4_000, 784, 2)
    assert fast["folds"] == 5 and fast["epochs"] == 120  # at most 6,000 steps of 50 an epoch (3,200 rows, batches of 64)
    # Eleven networks (each fold's twice, then the final one) of at most 120 epochs:
    # 120 * (2 * 5 * 50 + 63) = 67,560 steps at 2 ms.
    settings, record = _plan(180, n_rows=4_000)  # 0.9 * (180 - 5 - 10) s hold their 135 s
    assert settings == fast and record["step_s"] == {"[256, 128]": 0.002}
    settings, record = _plan(120, n_rows=4_000)  # 0.9 * (120 - 5 - 10) s do not
    assert settings == {**fast, "folds": 0, "validation_fraction": 0.2}
    assert "a validation split of 20% of the rows instead of 5 folds, whose 67560 steps at most and two compilations (135 s" in record["chose"]
    # Their two compilations count too: 135 s of steps and 2 x 10 s do not fit in 0.9 * 165 s.
    settings, record = _plan(180, n_rows=4_000, compile_seconds=10.0)
    assert settings["folds"] == 0 and record["compile_s"] == 10.0
    # Folds the user asked for are kept.
    settings, _ = _plan(60, given={"folds": 5}, n_rows=4_000)
    assert settings["folds"] == 5


def test_a_fit_whose_budget_holds_no_folds_trains_once_judged_on_a_validation_split(monkeypatch, low_rank_data):
    from aepca import Autoencoder

    x = low_rank_data(n_samples=300, n_features=6, rank=2, seed=0)
    monkeypatch.setattr(budget, "measure_step", _measured(1.0))  # a second a step: no folds fit
    fitted = Autoencoder(2, hidden=(8,), time_budget=600, random_state=0).fit(x)
    assert fitted.settings_["folds"] == 0 and fitted.settings_["validation_fraction"] == 0.2
    held_out = int(fitted.history_["selection"]["held_out"].removesuffix(" validation rows"))
    assert 40 <= held_out <= 80  # a seeded hash holds out about 20% of the 300 rows
    assert "validation split" in fitted.history_["budget"]["chose"]


def test_a_budget_smaller_than_the_run_needs_is_refused():
    with pytest.raises(ValueError, match=r"time_budget, expected more than the 15 s this run needs besides training\. "
                                         r"Received: time_budget=12"):
        _plan(12)


def test_training_stops_at_the_deadline():
    from aepca.data import open_source
    from aepca.models import build_autoencoder
    from aepca.training import TrainConfig, train

    rows = np.random.default_rng(0).random((64, 6), dtype=np.float32)
    net = build_autoencoder(6, 2, hidden=(4,), output_activation="linear", seed=0)
    # A deadline already past: the first epoch runs, no second one would end in time.
    history = train(net.autoencoder, open_source(rows), config=TrainConfig(epochs=5, batch_size=16,
                                                                          deadline=time.monotonic() - 1))
    assert len(history["loss"]) == 1 and history["stopped_at_deadline"] == 1


def test_a_resumed_run_gets_the_plan_its_checkpoints_were_made_with(tmp_path):
    made = []

    def make_plan():
        made.append(1)
        return {"hidden": (1000, 500, 250), "epochs": 68}, {"budget_s": 600.0, "chose": "measured"}

    first = budget.planned(tmp_path, make_plan)
    again = budget.planned(tmp_path, make_plan)
    assert again == first and first[0]["hidden"] == (1000, 500, 250) and len(made) == 1
    # Without a checkpoint folder every fit plans.
    budget.planned(None, make_plan)
    assert len(made) == 2


@pytest.mark.parametrize("text", ["0", "-5m", "ten minutes", "10d", "5ms", "m", "1h-30m"])
def test_the_command_refuses_a_bad_duration_in_one_line(text, capsys):
    assert main(["compare", f"--time-budget={text}"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "--time-budget" in err and "90s, 10m, 1h or 1h30m" in err and "\n" not in err


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1.5h", 5400), ("45", 45), ("10min", 600),
                                           ("1h30m", 5400), ("2 hours 5 sec", 7205), ("90 Seconds", 90)])
def test_durations_read_as_seconds(text, seconds):
    from aepca.cli import build_parser

    assert build_parser().parse_args(["compare", "--time-budget", text]).time_budget == seconds


def test_refinement_gets_the_steps_its_time_affords_within_bounds():
    from aepca import Autoencoder

    rows = np.random.default_rng(0).random((200, 6), dtype=np.float32)
    estimator = Autoencoder(2, recipe="classic", hidden=(4,), epochs=1, random_state=0).fit(rows)
    plenty = budget.plan_refinement(estimator, rows[:64], n_rows=200, seconds=1e9)
    assert plenty["refine_steps"] == estimator.refine_steps == budget.MAX_REFINE_STEPS
    # Less time than MIN_REFINE_STEPS steps of 200 rows take: no refinement.
    none = budget.plan_refinement(estimator, rows[:64], n_rows=200, seconds=1e-9)
    assert none["refine_steps"] == estimator.refine_steps == 0 and none["row_step_s"] > 0
    # No time left at all: no refinement, and no time spent finding out.
    estimator.set_params(refine_steps=5)
    spent = budget.plan_refinement(estimator, rows[:64], n_rows=200, seconds=-3.0)
    assert spent == {"refine_steps": 0, "why": "training left no time for it"} and estimator.refine_steps == 0


def _probed(monkeypatch, seconds):
    """plan_refinement's record for 100 sampled rows of 1,000 encoded, on a clock that each transform
    call moves on: a compiling call, then the timed ones, for 2 steps (once slow by chance), then for 12."""
    clock, durations = [0.0], iter([9.0, 0.2, 0.1, 0.1, 9.0, 0.6, 0.6, 0.6])

    class Estimator:
        refine_steps = 0

        def set_params(self, refine_steps):
            self.refine_steps = refine_steps

        def transform(self, rows):
            clock[0] += next(durations)

    monkeypatch.setattr(budget, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    assert budget.PROBE_REFINE_STEPS == (2, 12) and budget.PROBE_REFINE_REPEATS == 3
    return budget.plan_refinement(Estimator(), np.zeros((100, 3)), n_rows=1_000, seconds=seconds)


def test_a_refinement_step_is_timed_by_the_median_of_repeated_probes(monkeypatch):
    # (0.6 - 0.1) s over 10 more steps of 100 rows; the first timing alone would say (0.6 - 0.2) s.
    assert _probed(monkeypatch, 600.0)["row_step_s"] == pytest.approx(0.5 / 10 / 100)


def test_the_probes_time_comes_out_of_refinements(monkeypatch):
    # 20.2 s of probing leave 9.8 of 30 s: 0.9 * 9.8 s / 1,000 rows = 8.8 ms a row, 17 steps of 0.5 ms (a row
    # costs nothing besides: 1 ms less 2 steps), fewer than MIN_REFINE_STEPS; the whole 30 s would afford 54.
    record = _probed(monkeypatch, 30.0)
    assert record["seconds"] == pytest.approx(9.8) and record["refine_steps"] == 0


def test_a_budget_on_small_data_refines_the_codes_of_fasts_network(low_rank_data):
    from aepca.data import Dataset
    from aepca.experiments.compare import compare

    x = low_rank_data(n_samples=300, n_features=6, rank=2, seed=0)
    options = dict(code_dim=2, hidden=(16,), epochs=3, init="random", neighbours=0, seed=0)
    alone = compare(Dataset("table", x[:240], x[240:]), **options).metrics["autoencoder"]
    comparison = compare(Dataset("table", x[:240], x[240:]), time_budget=3600, **options)
    timed = comparison.metrics["autoencoder"]
    # The same network (training ends long before the deadline), its codes refined by what the time left
    # affords: the most steps, as an hour affords them many times over.
    assert timed["budget"]["refine"]["refine_steps"] == budget.MAX_REFINE_STEPS
    assert timed["test_mse"] < 0.95 * alone["test_mse"]
    # The record says what the budget bought: the network's own codes give the error it has without one.
    assert alone["test_mse_unrefined"] is None
    assert timed["test_mse_unrefined"] == pytest.approx(alone["test_mse"], rel=1e-6)
    assert f"against {alone['test_mse']:.4g} from the network's own codes" in " ".join(comparison.notes)


def test_compare_refuses_a_small_budget_naming_the_budget_it_was_given(low_rank_data):
    from aepca.data import Dataset
    from aepca.experiments.compare import compare

    x = low_rank_data(n_samples=300, n_features=6, rank=2, seed=0)
    # The fit gets what reading and splitting left of it; the refusal speaks of the budget given.
    with pytest.raises(budget.BudgetTooSmall, match=r"besides training\. Received: time_budget=0\.5\. "):
        compare(Dataset("table", x[:240], x[240:]), code_dim=2, time_budget=0.5)


def test_under_a_budget_each_fold_gets_an_equal_share_of_the_time_left_the_first_its_compilation_besides(monkeypatch, low_rank_data):
    from aepca import Autoencoder, fitting

    x = low_rank_data(n_samples=300, n_features=6, rank=2, seed=0)
    # The folds fit; compiling their network takes 30 s (a stand-in), which the first fold gets besides its share.
    monkeypatch.setattr(budget, "measure_step", _measured(1e-6, compile_seconds=30.0))
    calls, fit_network = [], fitting.Fit.fit_network

    def recording(self, *args, deadline=None, **kwargs):
        calls.append((time.monotonic(), deadline, self.deadline))
        return fit_network(self, *args, deadline=deadline, **kwargs)

    monkeypatch.setattr(fitting.Fit, "fit_network", recording)
    Autoencoder(2, hidden=(8,), epochs=2, time_budget=600, random_state=0).fit(x)
    # Each of 5 folds twice, then (when kept) the network on every row by the fit's own deadline.
    assert len(calls) in (10, 11) and all(share is None for _, share, _ in calls[10:])
    for done, (now, share, deadline) in enumerate(calls[:10]):
        compiling = 30.0 if done == 0 else 0.0
        assert share == pytest.approx(now + compiling + (deadline - now - compiling) / (2 * 5 + 1 - done), abs=0.5)


def test_a_runs_first_epoch_which_compiles_does_not_end_training_before_the_deadline(monkeypatch):
    from aepca.data import open_source
    from aepca.models import build_autoencoder
    from aepca.training import TrainConfig, loop, train

    # The loop's clock: the first epoch takes 100 s (compiling), each later one 1 ms; the deadline is a minute
    # away, so another 100 s epoch would miss it and 1 ms epochs do not.
    ticks = iter([0.0, 100.0, 100.001, 100.002, 100.003])
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: next(ticks), monotonic=time.monotonic))
    rows = np.random.default_rng(0).random((64, 6), dtype=np.float32)
    net = build_autoencoder(6, 2, hidden=(4,), output_activation="linear", seed=0)
    history = train(net.autoencoder, open_source(rows), config=TrainConfig(epochs=3, batch_size=16,
                                                                          deadline=time.monotonic() + 60))
    assert len(history["loss"]) == 3 and "stopped_at_deadline" not in history


def test_a_table_too_small_for_a_validation_split_keeps_its_folds():
    # 200 rows: a 20% split would hold 40, below MIN_SPLIT_ROWS; the deadline stops the folds instead.
    settings, record = _plan(15.5, n_rows=200)
    assert settings["folds"] == 5 and "validation split" not in record["chose"]
