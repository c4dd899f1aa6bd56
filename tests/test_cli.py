"""The ``aepca`` command line: help, argument errors (one line, exit status 2), a small real run.

Bad data and output folders are in test_bad_input.py; interruptions and --resume
in test_resume.py, the output folder's lock in test_run.py. Exit statuses: 2 bad input,
130 interrupted, 1 anything else (with its type and a traceback file).
"""

from __future__ import annotations

import errno
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aepca.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED, EXIT_USAGE, build_parser, main
from aepca.data import open_source
from aepca.plots import read_figure_data


def _write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return path


@pytest.fixture
def four_columns(tmp_path):
    values = np.round(np.random.default_rng(0).random((12, 4)), 3)
    return _write_csv(tmp_path / "four.csv", ["a", "b", "c", "d"], values.tolist())


# Help --------------------------------------------------------------------------------
def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: aepca") and "compare" in out


def test_compare_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: aepca compare")
    for option in ("--code-dim", "--recipe", "--epochs", "--out", "--dataset", "--label-column", "--scale"):
        assert option in out
    from aepca.data import DATASETS

    assert [name for name in DATASETS if name not in out] == []  # --dataset's help names every bundled set


def test_the_command_and_python_read_the_same_blocks_by_default():
    from aepca.apply import encode_file
    from aepca.experiments.compare import compare

    # None: open_source's choice by the rows' width, for the command and Python alike.
    for function in (compare, open_source, encode_file):
        assert inspect.signature(function).parameters["block_rows"].default is None, function.__name__
    for command in (["compare"], ["sweep"], ["encode", "model", "x.csv", "--out", "c.csv"]):
        assert build_parser().parse_args(command).block_rows is None


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == EXIT_USAGE
    assert capsys.readouterr().out.startswith("usage: aepca")


def test_python_dash_m_help_in_a_subprocess():
    result = subprocess.run([sys.executable, "-m", "aepca", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: aepca") and "compare" in result.stdout
    assert "Traceback" not in result.stderr


# Bad arguments: exit 2, one line on stderr, nothing written -----------------------------
# (bad data files, code sizes and --out folders: test_bad_input.py)
def _assert_usage_error(capsys, argv, out, match):
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("aepca: error: ")
    assert match in err, err
    assert not out.exists() or not any(out.iterdir()), f"{out} was written to"


@pytest.mark.parametrize("name, fix", [
    ("imagenet", "Or give your own data as the path argument (aepca compare PATH)"),
    ("winee", "Did you mean 'wine'? Or give your own data as the path argument"),
    # --data FILE: argparse takes --data for --dataset.
    ("wine.csv.gz", "'wine.csv.gz' is a path, not a bundled data set: give your own data as the path argument"),
])
def test_unknown_dataset(capsys, tmp_path, name, fix):
    out = tmp_path / "out"
    _assert_usage_error(capsys, ["compare", "--data", name, "--out", str(out)], out,
                        "Received an invalid value for dataset, expected one of ['breast_cancer', 'curves', 'diabetes', "
                        f"'digits', 'low_rank', 'mnist', 's_curve', 'swiss_roll', 'wine']. Received: dataset={name!r}. {fix}")


@pytest.mark.parametrize("option, value, expected", [
    ("--code-dim", "0", "expected a positive integer, received 0"),
    ("--code-dim", "-3", "expected a positive integer, received -3"),
    ("--code-dim", "two", "expected a positive integer, received 'two'"),
    ("--refine-steps", "-1", "expected an integer >= 0, received -1"),
    ("--neighbours", "-1", "expected an integer >= 0, received -1"),
    ("--seed", "-1", "expected an integer >= 0, received -1"),
    ("--neighbour-queries", "0", "expected a positive integer, received 0"),
    ("--metric", "manhattan", "invalid choice: 'manhattan' (choose from 'euclidean', 'cosine', 'auto')"),
    ("--select-by", "loss", "invalid choice: 'loss' (choose from 'mse', 'recall')"),
    ("--test", "", "expected a path, received ''"),
])
def test_options_are_checked_with_one_prefixed_line(capsys, tmp_path, option, value, expected):
    out = tmp_path / "out"
    # The whole line: the "aepca: error:" prefix once, the option, the value, where to look.
    _assert_usage_error(capsys, ["compare", option, value, "--out", str(out)], out,
                        f"aepca: error: argument {option}: {expected} (see aepca compare --help)")


def test_an_empty_out_is_refused_not_taken_for_the_current_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--dataset", "wine", "--out", ""]) == EXIT_USAGE
    assert capsys.readouterr().err == "aepca: error: argument --out: expected a path, received '' (see aepca compare --help)\n"
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["8by8", "8x0", "2x2x3x1", "x"])
def test_image_shape_must_be_h_x_w(capsys, tmp_path, four_columns, value):
    out = tmp_path / "out"
    _assert_usage_error(capsys, ["compare", str(four_columns), "--image-shape", value, "--out", str(out)], out,
                        f"argument --image-shape: expected HxW or HxWxC with positive integers, received {value!r}")


def test_image_shape_reaches_the_data_and_needs_a_path(four_columns):
    from aepca.cli import UsageError, build_parser, check_data_arguments, read_data

    args = build_parser().parse_args(["compare", str(four_columns), "--image-shape", "2X2"])
    assert read_data(args).image_shape == (2, 2)
    with pytest.raises(UsageError, match=r"--image-shape applies to your own data file \(PATH\) only"):
        check_data_arguments(build_parser().parse_args(["compare", "--image-shape", "2x2"]))


def test_a_test_size_for_a_bundled_data_set_is_refused_not_ignored():
    from aepca.cli import UsageError, check_data_arguments

    with pytest.raises(UsageError, match=r"--test-size applies to your own data file \(PATH\) only"):
        check_data_arguments(build_parser().parse_args(["compare", "--dataset", "wine", "--test-size", "0.3"]))


def test_a_streamed_table_takes_image_shape_as_when_read_whole(four_columns, tmp_path):
    from aepca.cli import read_data, read_input
    from aepca.experiments.compare import compare

    for argv in ([], ["--stream"]):
        args = build_parser().parse_args(["compare", str(four_columns), "--image-shape", "2x2", *argv])
        assert (read_input(args) if argv else read_data(args)).image_shape == (2, 2)
    # A constant column dropped leaves 3 features for 4 pixels: refused, streamed or not, naming the fix.
    constant = _write_csv(tmp_path / "constant.csv", ["a", "b", "c", "d"], [[i % 3, i % 5, 1, i % 7] for i in range(12)])
    for stream in (False, True):
        data = open_source(constant, image_shape=(2, 2)) if stream else str(constant)
        with pytest.raises(ValueError, match=r"the 3 feature columns of constant.csv left after dropping 1 constant "
                                             r"column.*Keep the constant columns"):
            compare(data, drop_constant=True, **({} if stream else {"image_shape": (2, 2)}), code_dim=1, epochs=1)


def test_errors_in_a_subprocess_have_no_traceback(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "aepca", "compare", "--code-dim", "0", "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.strip().splitlines() == [
        "aepca: error: argument --code-dim: expected a positive integer, received 0 "
        "(see aepca compare --help)"
    ]
    assert not out.exists()


# A real run ------------------------------------------------------------------------------
def test_compare_on_a_csv_writes_every_file(capsys, tmp_path):
    """One real run: the default recipe on a small table, every output file, the run's record,
    and --refine-steps and --batch-size reaching the saved model."""
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((300, 2))
    features = latent @ rng.standard_normal((2, 5)) + 0.1 * rng.standard_normal((300, 5))
    labels = (latent[:, 0] > 0).astype(int)
    rows = [[*np.round(row, 4), label] for row, label in zip(features, labels)]
    csv = _write_csv(tmp_path / "data.csv", ["f0", "f1", "f2", "f3", "f4", "y"], rows)
    out = tmp_path / "run"

    status = main(["compare", str(csv), "--label-column", "y", "--epochs", "1", "--refine-steps", "7", "--batch-size", "16",
                   "--no-progress", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    # The test rows are those order.held_out_mask holds out: 20% of the 300.
    assert "data.csv: 240 train / 60 test, 5 features; code size 2; recipe fast" in captured.out
    assert "PCA (k=2)" in captured.out and "Autoencoder (fast, k=2)" in captured.out
    # Where the errors are measured, said once.
    assert captured.out.count("MSE in ") == 1
    names = {p.name for p in out.iterdir()}
    assert names == {"metrics.json", "codes.png", "reconstructions.png", "loss.png", "report.html", "model"}
    for name in ("codes.png", "reconstructions.png", "loss.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The table's rows are drawn against its own column names.
    assert read_figure_data(out / "reconstructions.png")["feature_names"] == ["f0", "f1", "f2", "f3", "f4"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["n_train"], metrics["n_test"], metrics["n_features"], metrics["n_components"]) == (240, 60, 5, 2)
    # --epochs 1 caps each fold's network; the kept model ran at most that many.
    assert metrics["recipe"] == "fast" and metrics["autoencoder"]["epochs"] <= 1
    assert metrics["autoencoder"]["selection"]["held_out"] == "5 folds of 240 training rows"
    record = metrics["run"]
    assert record["command"] == (f"aepca compare {csv} --label-column y --epochs 1 --refine-steps 7 --batch-size 16 "
                                 f"--no-progress --out {out}")
    assert record["inputs"] == [str(csv.resolve())] and record["rows"] == {"train": 240, "test": 60}
    assert sorted(os.listdir(out / "model")) == ["aepca.json", "model.keras"]
    params = json.loads((out / "model" / "aepca.json").read_text())["params"]
    assert (params["refine_steps"], params["batch_size"]) == (7, 16)


# An earlier run, a resumed run ----------------------------------------------------------
def test_an_earlier_run_in_out_is_kept_unless_overwrite(capsys, tmp_path, four_columns):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    assert main(["compare", str(four_columns), "--code-dim", "1", "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == f"aepca: error: --out {out} already holds a run (metrics.json); pass --overwrite to replace it, or choose another --out."
    assert (out / "metrics.json").read_text() == "{}"


def test_resume_takes_the_display_flags_of_the_resuming_command(tmp_path):
    from aepca.cli import build_parser, resumed_args
    from aepca.experiments.run import stored_arguments

    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "args.json").write_text(json.dumps(["data.csv", "--code-dim", "3", "--progress"]))
    args = build_parser().parse_args(["compare", "--resume", str(tmp_path), "--no-progress"])
    resumed = resumed_args(args, stored_arguments(tmp_path))
    assert resumed.progress is False and resumed.code_dim == 3 and resumed.out == resumed.resume == tmp_path
    unsaid = resumed_args(build_parser().parse_args(["compare", "--resume", str(tmp_path)]), stored_arguments(tmp_path))
    assert unsaid.progress is None  # the resuming command's default: bars on a terminal only


def test_progress_bars_show_by_default_only_where_stderr_is_a_terminal(monkeypatch):
    from aepca.cli import shows_progress

    for terminal in (False, True):
        monkeypatch.setattr(sys.stderr, "isatty", lambda terminal=terminal: terminal)
        for command in ("compare", "sweep"):
            assert shows_progress(build_parser().parse_args([command])) is terminal
            assert shows_progress(build_parser().parse_args([command, "--progress"])) is True
            assert shows_progress(build_parser().parse_args([command, "--no-progress"])) is False
        assert shows_progress(build_parser().parse_args(["reproduce", "hinton2006"])) is terminal


def test_a_launcher_on_a_terminal_tells_its_workers_to_show_bars(monkeypatch, tmp_path, four_columns):
    import aepca.launch

    told = []
    monkeypatch.setattr(aepca.launch, "run_workers", lambda argv, processes: told.append(argv) or 0)
    for terminal in (False, True):
        monkeypatch.setattr(sys.stderr, "isatty", lambda terminal=terminal: terminal)
        assert main(["compare", str(four_columns), "--processes", "2", "--out", str(tmp_path / "out")]) == 0
    assert [argv[-1] == "--progress" for argv in told] == [False, True]


# Exit statuses: 2 bad input, 130 interrupted, 1 anything else (with a traceback file) ----------
class XlaRuntimeError(RuntimeError):
    """Stands for jaxlib's error type; the out-of-memory message below is XLA's."""


XLA_OUT_OF_MEMORY = ("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1610612736 bytes.\n"
                     "BufferAssignment OOM Debugging.\nBufferAssignment stats: ...")
ENCODE = ["encode", "model", "data.csv", "--out", "codes.csv"]


def run_failing(monkeypatch, capsys, tmp_path, argv, error) -> tuple[int, str]:
    """``main(argv)`` with the subcommand's handler raising ``error``: (exit status, stderr's one line)."""
    import aepca.cli

    def handler(args):
        raise error

    monkeypatch.setattr(aepca.cli, f"run_{argv[0]}", handler)
    monkeypatch.chdir(tmp_path)
    status = main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return status, err.strip()


def traceback_file(line: str) -> str:
    """The traceback in the file the line names (the file is removed)."""
    found = re.search(r"\(full traceback in (/\S+)\)$", line)
    assert found, line
    path = Path(found.group(1))
    text = path.read_text()
    path.unlink()
    assert text.startswith("Traceback (most recent call last):"), text
    return text


@pytest.mark.parametrize("error", [
    ValueError("Received an invalid value for code_dim, expected at most 4. Received: code_dim=9"),
    FileNotFoundError("data.csv does not exist; check the path."),
    PermissionError("--out run is not writable (Permission denied); choose a folder you can write to."),
    FileExistsError("--out run already holds a run (metrics.json); pass --overwrite to replace it."),
    NotADirectoryError("--out run exists and is not a folder; choose a folder path."),
    ImportError("Reading x.parquet needs pyarrow, which is not installed. Install it with: pip install 'aepca[parquet]'"),
], ids=lambda error: type(error).__name__)
def test_bad_input_exits_2_with_its_own_line(monkeypatch, capsys, tmp_path, error):
    status, line = run_failing(monkeypatch, capsys, tmp_path, ["compare", "--out", "run"], error)
    assert (status, line) == (EXIT_USAGE, f"aepca: error: {error}")


@pytest.mark.parametrize("error", [
    RuntimeError("the index went past the end"),
    KeyError("weights"),
    OSError(errno.EIO, "Input/output error"),
    ImportError("cannot import name 'shared_program' from 'aepca.models'"),  # a broken install, not a missing extra
], ids=lambda error: type(error).__name__)
def test_any_other_error_exits_1_with_its_type_message_and_traceback(monkeypatch, capsys, tmp_path, error):
    status, line = run_failing(monkeypatch, capsys, tmp_path, ["compare", "--out", "run"], error)
    assert status == EXIT_ERROR
    assert line.startswith(f"aepca: error: {type(error).__name__}: {' '.join(str(error).split())} (full traceback in ")
    traceback = traceback_file(line)
    assert "in handler" in traceback and traceback.rstrip().endswith(f"{type(error).__name__}: {error}")


@pytest.mark.parametrize("argv, error, memory, advice", [
    (["compare", "--out", "run"], XlaRuntimeError(XLA_OUT_OF_MEMORY),
     "the memory of the device JAX computes on (a GPU's, or RAM on a CPU) is full", "--devices N"),
    (ENCODE, MemoryError(), "the process's memory (RAM) is full", "read fewer rows at a time with --block-rows N (now 65536"),
], ids=["XLA compare", "MemoryError encode"])
def test_running_out_of_memory_exits_1_naming_the_memory_and_what_to_try(monkeypatch, capsys, tmp_path, argv, error,
                                                                          memory, advice):
    status, line = run_failing(monkeypatch, capsys, tmp_path, argv, error)
    assert status == EXIT_ERROR
    assert line.startswith(f"aepca: error: out of memory: {memory} ({type(error).__name__}"), line
    assert advice in line
    traceback_file(line)


def test_output_no_longer_read_ends_the_command_quietly_with_141(monkeypatch, capsys, tmp_path):
    import aepca.cli

    read_end, write_end = os.pipe()
    os.close(read_end)  # as `aepca compare | head -1` once head has its line
    with os.fdopen(write_end, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)

        def handler(args):
            print("the table")
            sys.stdout.flush()

        monkeypatch.setattr(aepca.cli, "run_compare", handler)
        monkeypatch.chdir(tmp_path)
        assert main(["compare", "--out", "run"]) == EXIT_OUTPUT_CLOSED
        assert capsys.readouterr().err == ""
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, write_end)  # as console() does: the last flush goes nowhere
        os.close(devnull)


def test_an_interruption_exits_130(monkeypatch, capsys, tmp_path):
    assert run_failing(monkeypatch, capsys, tmp_path, ENCODE, KeyboardInterrupt()) == (EXIT_INTERRUPTED,
                                                                                       "aepca: interrupted")
