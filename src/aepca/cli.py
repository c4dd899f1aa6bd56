"""The ``aepca`` command line: a thin layer over the library's experiments.

Every subcommand parses its arguments, calls the library and prints a table;
the output folder's life cycle (lock, checkpoint, resume, results moved into
place) is the library's :class:`aepca.experiments.run.Run`. Every stop ends
with one line on stderr and an exit status that tells why: 2 for bad input or
usage, 130 for Ctrl-C or SIGTERM, 1 for anything else (the error's type and
message, and the file holding its traceback). Heavy imports happen inside the
handlers so that ``aepca --help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
import time
from pathlib import Path

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE: the status of a command whose reader went away (| head)
# Rows read at a time (aepca.data.sources.BLOCK_ROWS, not imported: --help imports nothing heavy).
BLOCK_ROWS = 65536
# When the command started (a --time-budget counts from here).
STARTED = time.monotonic()


class UsageError(ValueError):
    """A command-line argument that cannot work."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UsageError(f"{message} (see {self.prog} --help)")


def int_at_least(minimum: int, description: str):
    """An argparse type for integers >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, received {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {description}, received {value}")
        return value

    return parse


positive_int = int_at_least(1, "a positive integer")
non_negative_int = int_at_least(0, "an integer >= 0")
# Seconds per unit of a duration, by each name the unit goes by: "90 sec", "10min", "2 hours".
DURATION_UNITS = {**dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
                  **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
                  **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600)}
DURATION_TERM = r"(\d+(?:\.\d+)?)\s*([a-z]*)"


def duration(text: str) -> float:
    """Seconds in a duration: numbers, each with an optional unit, s (the default), m or h, or their words
    (90, 90s, 10m, 10min, 1.5h, 1h30m)."""
    lowered = text.lower()
    terms = re.findall(DURATION_TERM, lowered) if re.fullmatch(rf"\s*(?:{DURATION_TERM}\s*)+", lowered) else []
    # A unit of no known name makes the sum NaN, refused like 0.
    seconds = sum(float(number) * DURATION_UNITS.get(unit or "s", math.nan) for number, unit in terms)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration such as 90s, 10m, 1h or 1h30m, received {text!r}")
    return seconds


def widths(text: str) -> list[int]:
    """Comma-separated positive integers, in the given order."""
    try:
        values = [positive_int(part) for part in text.split(",") if part.strip()]
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers: {error}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, received {text!r}")
    return values


def int_list(text: str) -> list[int]:
    """Comma-separated positive integers, sorted without repeats."""
    return sorted(set(widths(text)))


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, received {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, received {value}")
    return value


def image_shape(text: str) -> tuple[int, ...]:
    """``HxW`` or ``HxWxC`` as a tuple of positive integers."""
    try:
        values = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        values = ()
    if len(values) not in (2, 3) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW or HxWxC with positive integers, received {text!r}")
    return values


def nonempty_path(text: str) -> Path:
    """A path, never empty: ``--out ""`` (an unset shell variable, say) would be the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, received {text!r}")
    return Path(text)


def names(text: str) -> list[str]:
    """Comma-separated column names or glob patterns (``a,b,emb*``)."""
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated column names or patterns, received {text!r}")
    return values


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", type=nonempty_path,
                        help="your data: a .csv (or .csv.gz), .tsv, .txt, .xlsx, .jsonl, .npy, .npz, .parquet, .arrow/.feather, .h5 or .fvecs/.fbin file, a folder or glob "
                             "of them, or images (default: --dataset)")
    parser.add_argument("--dataset", default=None,
                        help="a bundled data set when no PATH is given: mnist (default), scikit-learn's digits, wine, "
                             "breast_cancer and diabetes, or a synthetic curves, low_rank, s_curve or swiss_roll")
    parser.add_argument("--label-column", action="append", metavar="NAME",
                        help="column holding labels: kept out of the features; repeat for more (the first colours plots)")
    parser.add_argument("--id-column", metavar="NAME", help="column identifying the rows: kept beside them, never a feature")
    parser.add_argument("--columns", type=names, action="extend", metavar="A,B,emb*",
                        help="the feature columns, by name or glob pattern (default: all but labels and the id column)")
    parser.add_argument("--drop-columns", type=names, action="extend", metavar="A,B,tmp*",
                        help="columns left out of the features, by name or glob pattern")
    parser.add_argument("--no-header", action="store_true",
                        help="the CSV's first line is data, not column names (detected when it holds only numbers)")
    parser.add_argument("--test", type=nonempty_path, help="a separate test file with the same columns (instead of --test-size)")
    parser.add_argument("--test-size", type=fraction, help="share of PATH's rows held out for testing (default: 0.2)")
    parser.add_argument("--scale", choices=["auto", "minmax", "standard", "none"], default="auto",
                        help="per-feature scaling seen by both methods, the space their errors are measured and compared in "
                             "(default: auto)")
    parser.add_argument("--drop-constant", action="store_true",
                        help="drop constant columns (by default they are kept; they cost nothing)")
    parser.add_argument("--impute", choices=["mean"], help="fill missing values with the training mean instead of failing")
    parser.add_argument("--na-values", type=names, metavar="A,B",
                        help="cell values that mark a missing value besides empty cells and NaN, e.g. '?' (a saved "
                             "model reads new rows the same way)")
    parser.add_argument("--categorical", choices=["refuse", "onehot"], default="refuse",
                        help="text and categorical columns: refused (default; a boolean column is a 0/1 number), or one "
                             "indicator per category of the training rows, booleans included (onehot; reconstructions "
                             "decode each to its most likely category)")
    parser.add_argument("--max-categories", type=int_at_least(2, "an integer >= 2"), default=50, metavar="N",
                        help="with --categorical onehot, a column of more distinct training values is refused "
                             "(names, free text, dates; default: 50)")
    parser.add_argument("--image-shape", type=image_shape, metavar="HxW[xC]",
                        help="rows of PATH are images of this shape, e.g. 8x8 or 32x32x3 (shown as pictures in the figures); "
                             "image files are resized to it (C: 1 greyscale, 3 colour)")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", choices=["classic", "fast", "linear"], default=None,
                        help="training recipe (default: fast; compare on MNIST defaults to classic, the recipe it reproduces)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the recipe's)")
    parser.add_argument("--hidden", type=widths, default=None, metavar="W1,W2,...",
                        help="encoder hidden widths, mirrored by the decoder (default: the recipe's, 512,128)")
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                        help="rows per optimizer step, a multiple of devices x processes (default: the recipe's)")
    parser.add_argument("--refine-steps", type=non_negative_int, default=None, metavar="N",
                        help="refine each code by N gradient steps through the decoder when encoding "
                             "(better reconstructions of new data, N decoder passes each; default: 0)")
    parser.add_argument("--devices", type=positive_int, default=None, metavar="N",
                        help="split every batch across N of the devices JAX sees, e.g. GPUs "
                             "(the same steps as one device; default: 1)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed for the split, weights and shuffling (default: 0)")
    add_progress_argument(parser)


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show progress bars (default: when stderr is a terminal, so that logs get none)")


def shows_progress(args) -> bool:
    return sys.stderr.isatty() if args.progress is None else args.progress


def add_out_arguments(parser: argparse.ArgumentParser, default: Path | None, shown: str) -> None:
    parser.add_argument("--out", type=nonempty_path, default=default, help=f"output folder (default: {shown})")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out (by default it is kept and the command refuses)")


def add_run_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """What a training command's run shares: its output folder, resuming, neighbours and scale."""
    add_out_arguments(parser, Path(out), out)
    parser.add_argument("--resume", type=nonempty_path, metavar="DIR",
                        help="continue an interrupted run from the checkpoint in DIR (other arguments come from that run)")
    add_neighbour_arguments(parser)
    add_scale_arguments(parser)


def add_neighbour_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("neighbours kept (recall@K, for embeddings and vector indexes)")
    group.add_argument("--neighbours", type=non_negative_int, default=10, metavar="K",
                       help="recall@K of each test query's K nearest training rows, searched in each method's codes and "
                            "reconstructions against exact neighbours in the error space (default: 10, at most the training rows; 0: off)")
    group.add_argument("--neighbour-queries", type=positive_int, default=1000, metavar="N",
                       help="test rows used as queries, a seeded choice (default: 1000)")
    group.add_argument("--metric", choices=["euclidean", "cosine", "auto"], default="auto",
                       help="distance for the neighbours and --select-by recall (default: auto, the one the data declares, else cosine when the rows have unit length)")
    group.add_argument("--select-by", choices=["mse", "recall"], default="mse",
                       help="what the keep-or-fallback rule judges on held-out rows: per-row MSE, or recall@10 "
                            "of neighbours searched in the codes (keep the network only where it keeps more; default: mse)")


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data bigger than memory, more than one process or machine")
    group.add_argument("--stream", action="store_true",
                       help="read PATH (.npy, .parquet, .arrow or CSV) a block at a time instead of into memory "
                            "(always so for a folder or a glob pattern such as 'parts/*.parquet')")
    group.add_argument("--lanes", type=positive_int, default=None, metavar="N",
                       help="read streams making up each batch; the batches depend on it, not on the processes "
                            "(default: devices x processes)")
    group.add_argument("--block-rows", type=positive_int, default=None, metavar="N",
                       help=f"rows read at a time, the unit of the shuffle and of sharing among processes; "
                            f"the order depends on it, not on how files cut the rows (default: {BLOCK_ROWS}, fewer "
                            "for rows of over 1,024 values: 256 MiB a block)")
    group.add_argument("--processes", type=positive_int, default=None, metavar="N",
                       help="train with N local worker processes, each taking its share of the rows (PATH is streamed)")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="join a multi-machine run: the address of process 0 (with --num-processes, --process-id)")
    group.add_argument("--num-processes", type=positive_int, default=None, metavar="N", help="processes in the run, on all machines")
    group.add_argument("--process-id", type=non_negative_int, default=None, metavar="I", help="this process's number, 0 to N-1")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aepca", description="Deep autoencoders vs PCA, measured on the same data and split.")
    from aepca import __version__

    parser.add_argument("--version", action="version", version=f"aepca {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    compare = commands.add_parser("compare", help="train PCA and an autoencoder, print a table, write figures and a report")
    add_data_arguments(compare)
    compare.add_argument("--code-dim", type=positive_int, default=2, help="code size k for both methods (default: 2)")
    add_training_arguments(compare)
    compare.add_argument("--time-budget", type=duration, default=None, metavar="DURATION",
                         help="the whole command's wall time, e.g. 90s, 10m, 1h30m: the network and its epochs are sized "
                              "to it from the measured speed, what training leaves refines the codes (docs/recipes.md); "
                              "default: none, the recipe's settings")
    add_run_arguments(compare, "runs/compare")
    compare.set_defaults(handler=run_compare)

    sweep = commands.add_parser("sweep", help="PCA and an autoencoder at several code sizes: table, curve, report")
    add_data_arguments(sweep)
    sweep.add_argument("--code-dims", type=int_list, default=None, metavar="K1,K2,...",
                       help=f"code sizes to train (default: {','.join(map(str, DEFAULT_CODE_DIMS))}, "
                            "those below the number of features)")
    add_training_arguments(sweep)
    sweep.add_argument("--time-budget", type=duration, default=None, metavar="DURATION",
                       help="the whole command's wall time, e.g. 10m: each code size in turn gets an equal share of what "
                            "the sizes before it left, spent as compare's --time-budget; default: none")
    add_run_arguments(sweep, "runs/sweep")
    sweep.set_defaults(handler=run_sweep)

    reproduce = commands.add_parser("reproduce", help="reproduce a published result: table beside the paper's numbers, figures, report")
    reproduce.add_argument("paper", choices=["hinton2006"], help="which result (hinton2006: Hinton & Salakhutdinov, Science 2006)")
    reproduce.add_argument("--quick", action="store_true", help="a few epochs everywhere and data subsets: minutes on a CPU, not the paper's protocol")
    reproduce.add_argument("--seed", type=non_negative_int, default=0, help="random seed for weights, shuffling and splits (default: 0)")
    add_out_arguments(reproduce, None, "runs/PAPER")
    add_progress_argument(reproduce)
    reproduce.set_defaults(handler=run_reproduce)

    for name, handler, what in (
        ("encode", run_encode, "write the codes of every row of DATA (ids first), read and written in blocks"),
        ("reconstruct", run_reconstruct, "write every row's reconstruction and its error (the anomaly score), in blocks"),
    ):
        apply = commands.add_parser(name, help=what)
        apply.add_argument("model", type=nonempty_path, help="a model folder (Autoencoder.save's, or the --out folder of aepca compare, whose model/ is read)")
        apply.add_argument("data", type=nonempty_path,
                           help="rows to apply it to: .csv/.tsv/.txt, .xlsx, .jsonl, .parquet, .arrow/.feather, .npy, .npz, .h5 or .fvecs/.fbin with the "
                                "training columns, a folder or glob of such files, or images (a row each)")
        apply.add_argument("--out", type=nonempty_path, required=True,
                           help="output file: .parquet, .arrow, .feather, .h5, .npy or .fvecs/.fbin (ids beside them), .csv, .tsv, .jsonl or .xlsx")
        apply.add_argument("--block-rows", type=positive_int, default=None, metavar="N",
                           help=f"rows read and written at a time (default: {BLOCK_ROWS}, fewer for rows of over 1,024 values)")
        apply.add_argument("--overwrite", action="store_true", help="replace an existing --out file (and the ids and categories files beside it)")
        apply.add_argument("--split", choices=["train", "test"],
                           help="the half to read of a file that holds its own split (mnist.npz; an ANN-benchmarks "
                                "HDF5 file's train and test)")
        apply.set_defaults(handler=handler)
    return parser


def check_data_arguments(args) -> None:
    if args.path is not None:
        if args.dataset is not None:
            raise UsageError("give either PATH or --dataset, not both")
        return
    for option in ("label_column", "id_column", "columns", "drop_columns", "no_header", "test", "test_size", "impute",
                   "image_shape", "na_values"):
        if getattr(args, option):
            raise UsageError(f"--{option.replace('_', '-')} applies to your own data file (PATH) only")
    if args.categorical != "refuse":
        raise UsageError("--categorical applies to your own data file (PATH) only")


def is_streamed(args) -> bool:
    """Whether the command reads its data as a stream: asked for, a folder or
    pattern, or a run of several processes."""
    if getattr(args, "path", None) is None:
        return False
    from aepca.data.sources import is_source_path

    return bool(args.stream or is_source_path(args.path) or args.num_processes or args.coordinator)


def check_run_arguments(args) -> None:
    """What can be told of PATH, --test and the streaming options before the run starts."""
    if args.path is None and args.stream:  # a bundled data set is held in memory; several processes share it out
        raise UsageError("--stream reads your own files (PATH) a block at a time; give PATH")
    from aepca.data.formats import check_exists
    from aepca.data.sources import is_source_path

    for path in (args.path, args.test):  # a mistyped name refused before the run takes --out's lock
        if path is not None and not is_source_path(path):
            check_exists(path)
    if (args.coordinator is None) != (args.num_processes is None) or (args.coordinator is None) != (args.process_id is None):
        raise UsageError("--coordinator, --num-processes and --process-id go together")
    if args.process_id is not None and args.process_id >= args.num_processes:
        raise UsageError(f"--process-id must be below --num-processes={args.num_processes}, received {args.process_id}")


def open_data_source(args, split: str | None = None):
    """PATH (a file, folder or pattern) as a row source, with the column options; ``split``: the rows of a
    file that holds its own split (:func:`own_split`)."""
    from aepca.data.sources import open_source

    return open_source(
        str(args.path), columns=args.columns, drop_columns=args.drop_columns, id_column=args.id_column,
        label_columns=args.label_column, no_header=True if args.no_header else None, block_rows=args.block_rows,
        image_shape=args.image_shape, split=split, categorical=args.categorical, max_categories=args.max_categories,
        na_values=args.na_values,
    )


def own_split(args) -> bool:
    """Whether PATH, streamed without --test, holds its own train/test split (mnist.npz's layout, an
    ANN-benchmarks HDF5 file), whose two halves are then the training and the test rows."""
    from aepca.data.formats import holds_split

    return args.test is None and args.path is not None and holds_split(args.path)


def read_data(args):
    """The data set named by the data arguments, split into train and test."""
    check_data_arguments(args)
    if args.path is not None:
        from aepca.data.readers import load_user_data

        return load_user_data(
            args.path, test=args.test, test_size=args.test_size, label_columns=args.label_column,
            id_column=args.id_column, columns=args.columns, drop_columns=args.drop_columns,
            no_header=True if args.no_header else None, seed=args.seed, drop_constant=args.drop_constant,
            impute=args.impute, image_shape=args.image_shape, categorical=args.categorical,
            max_categories=args.max_categories, na_values=args.na_values,
        )
    from aepca.data import load_dataset

    return load_dataset(args.dataset or "mnist")


def run_record(args) -> dict:
    """The command line and input files, for the run's record."""
    import shlex

    inputs = [str(Path(path).resolve()) for path in (args.path, args.test) if path is not None]
    return {
        "command": shlex.join(["aepca", args.command, *args.argv]),
        "inputs": inputs or [f"bundled data set {args.dataset or 'mnist'}"],
    }


def format_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    headers = list(rows[0])
    cells = [[_format_cell(row.get(h)) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def _format_cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def resumed_args(args, argv: list[str]):
    """The arguments ``argv`` of the interrupted run in ``args.resume`` (its args.json), parsed."""
    resumed = build_parser().parse_args([args.command, *argv])
    resumed.argv, resumed.out, resumed.resume = argv, args.resume, args.resume
    # How to show the run and where its processes meet are this command's choice; what to compute is the
    # interrupted run's.
    resumed.progress = args.progress
    for option in JOIN_OPTIONS.values():
        setattr(resumed, option, getattr(args, option))
    return resumed


def output_run(args, *, writer: bool = True):
    """The run in ``--out``: locked, its results moved into place all at once; a compare or a sweep is
    checkpointed (resumable with ``--resume``). ``writer=False``: another process of a multi-process run."""
    from aepca.experiments.run import Run

    return Run(args.out, argv=args.argv if args.command in RESUMABLE_COMMANDS else None, command=args.command,
               resume=getattr(args, "resume", None) is not None, overwrite=args.overwrite, writer=writer)


def read_input(args):
    """The data the arguments name: a :class:`Dataset` (bundled, or one file read whole, with its
    cleaning options) or a row source read a block at a time (a folder, a pattern, ``--stream``,
    several processes). Both go through the same comparison."""
    if is_streamed(args):
        return open_data_source(args, "train" if own_split(args) else None)
    return read_data(args)


def describe_input(data, what: str) -> str:
    from aepca import distributed
    from aepca.data import Dataset
    from aepca.validation import plural

    processes = plural(distributed.process_count(), "process", "processes")
    if isinstance(data, Dataset):
        shared = f"; {processes}" if distributed.process_count() > 1 else ""
        return f"{data.name}: {len(data.x_train)} train / {len(data.x_test)} test, {data.n_features} features; {what}{shared}"
    return (f"{data.name}: {plural(data.n_rows, 'row')} in {plural(data.n_blocks, 'block')} (streamed), "
            f"{plural(data.n_features, 'feature')} read; {what}; {processes}")


@contextlib.contextmanager
def time_budget_left(args):
    """What is left of ``--time-budget`` (None without one), counted from the command's start; a budget
    the run refuses is said of ``--time-budget``."""
    from aepca.budget import BudgetTooSmall

    spent = time.monotonic() - STARTED
    try:
        yield None if args.time_budget is None else args.time_budget - spent
    except BudgetTooSmall as error:
        raise error.of_budget(args.time_budget, spent, flag="--time-budget") from None


def run_compare(args) -> int:
    """``compare``: with several processes every one computes and only the first writes."""
    from aepca import distributed
    from aepca.experiments.compare import check_code_dim, compare, default_recipe, write_outputs

    writer = distributed.is_writer()
    with output_run(args, writer=writer) as run:
        data = read_input(args)
        check_code_dim(args.code_dim, data.n_features, name="--code-dim")
        recipe = args.recipe or default_recipe(data, args.time_budget)
        if writer:
            print(describe_input(data, f"code size {args.code_dim}; recipe {recipe}"), flush=True)
        with time_budget_left(args) as time_budget:
            comparison = compare(data, code_dim=args.code_dim, recipe=recipe, time_budget=time_budget,
                                 **experiment_options(args, run, writer))
        if writer:
            with run.staged() as staging:
                write_outputs(comparison, staging)
    # Every process waits for the results to be written before it leaves the run.
    distributed.barrier("compare written")
    if writer:
        print_results(comparison.table_rows(), comparison.notes, comparison.diagnostics,
                      f"{args.out}/ (metrics.json, codes.png, reconstructions.png, loss.png, report.html, model/)")
    return 0


def streamed_test(args):
    """The test rows of a streamed run: --test's file, or the test half of a file that holds its own split;
    None where they are read with the data (or held out of it)."""
    if not is_streamed(args):
        return None
    if own_split(args):
        return open_data_source(args, "test")
    return None if args.test is None else str(args.test)


def experiment_options(args, run, writer: bool) -> dict:
    """compare's and sweep's keywords that come straight from the arguments."""
    return {
        "test": streamed_test(args), "test_size": args.test_size,
        "epochs": args.epochs, "seed": args.seed, "scale": args.scale, "progress": writer and shows_progress(args),
        "checkpoint_dir": str(run.checkpoint), "record": run_record(args),
        "hidden": None if args.hidden is None else tuple(args.hidden), "refine_steps": args.refine_steps,
        "batch_size": args.batch_size, "devices": args.devices, "lanes": args.lanes, "block_rows": args.block_rows,
        "neighbours": args.neighbours, "neighbour_queries": args.neighbour_queries, "metric": args.metric,
        "select_by": args.select_by,
        # Streamed rows learn their cleaning in compare (data read into memory was cleaned as it was read).
        **({"categorical": args.categorical, "impute": args.impute, "drop_constant": args.drop_constant}
           if is_streamed(args) else {}),
    }


def print_results(rows: list[dict], notes, diagnostics, wrote: str, footnote="(fit seconds include compilation)") -> None:
    """A finished run's table, its footnote, notes and diagnoses, and what it wrote where."""
    print(format_table(rows))
    print(footnote)
    for note in notes:
        print(f"note: {note}")
    for item in diagnostics:
        print(f"diagnosis: {item['problem']} ({item['evidence']}); fix: {item['fix']}")
    print(f"wrote {wrote}")


DEFAULT_CODE_DIMS = (1, 2, 3, 5, 10, 20, 30)


def run_sweep(args) -> int:
    from aepca import distributed

    writer = distributed.is_writer()
    say = print if writer else (lambda *_, **__: None)
    with output_run(args, writer=writer) as run:
        data = read_input(args)
        from aepca.experiments.sweep import check_code_dims, sweep, write_sweep_outputs

        default_dims = [k for k in DEFAULT_CODE_DIMS if k < data.n_features] or [1]
        code_dims = check_code_dims(args.code_dims or default_dims, data.n_features, name="--code-dims")
        # The sweep's claim is "never worse than PCA", which the PCA-started recipe keeps.
        recipe = args.recipe or "fast"
        say(describe_input(data, f"code sizes {','.join(map(str, code_dims))}; recipe {recipe}"), flush=True)

        def report_row(row):
            say(f"k={row['k']}: PCA {row['pca_test_mse']:.4g}, autoencoder {row['autoencoder_test_mse']:.4g}", flush=True)

        with time_budget_left(args) as time_budget:
            result = sweep(data, code_dims, recipe=recipe, on_row=report_row, time_budget=time_budget,
                           **experiment_options(args, run, writer))
        if writer:
            with run.staged() as staging:
                write_sweep_outputs(result, staging)
    distributed.barrier("sweep written")
    if writer:
        print_results(result.table_rows(), result.notes(), result.diagnostics,
                      f"{args.out}/ (sweep.json, sweep.png, report.html)")
    return 0


def run_reproduce(args) -> int:
    def report_row(row):
        paper = "" if row["paper"] is None else f" (paper {row['paper']:.2f})"
        print(f"{row['data']}: {row['method']}, code {row['code']}: {row['test_error']:.2f}{paper}, "
              f"{row['fit_seconds']:.0f} s", flush=True)

    with output_run(args) as run:
        from aepca.experiments.hinton2006 import reproduce_hinton2006, write_hinton2006_outputs

        print(f"reproducing {args.paper} ({'quick' if args.quick else 'full protocol'}, seed {args.seed})", flush=True)
        result = reproduce_hinton2006(quick=args.quick, seed=args.seed, progress=shows_progress(args), on_row=report_row)
        with run.staged() as staging:
            files = write_hinton2006_outputs(result, staging)
    print_results(result.table_rows(), result.notes, (), f"{args.out}/ ({', '.join(files)})",
                  "(squared error summed over features, averaged over test images; fit seconds include compilation; "
                  f"total {result.settings['total_seconds']:.0f} s)")
    return 0


def run_encode(args) -> int:
    return _apply(args, "encode_file", "codes")


def run_reconstruct(args) -> int:
    return _apply(args, "reconstruct_file", "reconstructions and errors")


def _apply(args, function: str, what: str) -> int:
    import aepca.apply
    from aepca.validation import plural

    aepca.apply.check_output(args.out, overwrite=args.overwrite)
    from aepca.estimator import load_model

    model = load_model(args.model)
    written = getattr(aepca.apply, function)(model, args.data, args.out, block_rows=args.block_rows, overwrite=args.overwrite,
                                             split=args.split)
    print(f"wrote {what} of {plural(written['rows'], 'row')}: {', '.join(written['files'])}")
    for note in written["notes"]:
        print(f"note: {note}")
    return 0


def _interrupt(signum, frame):
    """Ctrl-C or SIGTERM (a scheduler stopping the job): stop the run, which keeps its checkpoint and
    says how to continue. From now on another one ends the process at once (:func:`_stop_now`)."""
    for other in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(other) is _interrupt:
            signal.signal(other, _stop_now)
    raise KeyboardInterrupt


def _stop_now(signum, frame):
    """A second Ctrl-C or SIGTERM while the first one's clean-up runs: end at once and quietly. Nothing
    saved is lost (every file is replaced atomically) and the next run in the folder finishes the
    clean-up."""
    os.write(2, b"aepca: interrupted\n")
    os._exit(EXIT_INTERRUPTED)


def main(argv: list[str] | None = None, *, tune_process: bool = False) -> int:
    """Run one command; returns its exit status (:func:`report`).

    It changes no process-wide setting unless ``tune_process`` (the ``aepca``
    command's own entry point, :func:`console`): then, once the arguments are
    valid, :func:`tune_command_process` runs before the command. The handlers
    of SIGINT and SIGTERM are its own while it runs.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    # A signal ignored by whoever started the command (a background job's SIGINT) stays ignored.
    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(signum) is not signal.SIG_IGN}
    args = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        # What the run computes, without where its processes meet (that may change on --resume).
        args.argv = without_join_options(argv[1:])
        if not getattr(args, "command", None):
            parser.print_help()
            return EXIT_USAGE
        if getattr(args, "resume", None) is not None:
            from aepca.experiments.run import stored_arguments

            args = resumed_args(args, stored_arguments(args.resume, args.command))
        if args.command == "reproduce" and args.out is None:
            args.out = Path("runs") / args.paper
        if args.command in STREAMING_COMMANDS:
            check_run_arguments(args)  # before anything slow starts
        if args.command in RUN_COMMANDS and is_first_process(args):
            from aepca.experiments.run import check_available

            check_available(args.out)  # a busy --out stops the command now, not after imports or workers
        if getattr(args, "processes", None) and args.coordinator is None:
            from aepca.launch import run_workers

            # Workers write to the launcher through pipes, so they show bars only when told to.
            return run_workers([*argv, "--progress"] if shows_progress(args) else argv, args.processes)
        if tune_process:
            tune_command_process()
        if args.command in STREAMING_COMMANDS:
            join_processes(args)
        return args.handler(args)
    except (Exception, KeyboardInterrupt) as error:
        return report(error, args)
    finally:
        _give_back(previous)


def _give_back(handlers: dict) -> None:
    """Put back the signal handlers main found. A signal that comes meanwhile raises its
    KeyboardInterrupt (the command's handler) once every one is back, not between them."""
    try:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    except KeyboardInterrupt:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        raise


# Bad input or usage: exit status 2 and the error's own line.
USAGE_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError, IsADirectoryError)
MAX_MESSAGE = 500


def report(error: BaseException, args=None) -> int:
    """Print the one line that says why the command stopped (stderr); return the exit status that tells it:
    130 interrupted, 2 bad input or usage (a missing optional dependency included), 141 (quietly) when
    whoever read the output stopped reading, 1 anything else, with the error's type and the file its
    traceback was written to."""
    from aepca._files import signals_deferred

    if isinstance(error, BrokenPipeError) and _output_closed():
        return EXIT_OUTPUT_CLOSED  # quietly, as commands end whose output is no longer read
    with signals_deferred(redeliver=False):  # a second Ctrl-C while saying so changes nothing
        status, line = _outcome(error, args)
        print(line, file=sys.stderr, flush=True)
    return status


def _output_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll says POLLERR)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no stdout to ask
        return False


def _outcome(error: BaseException, args) -> tuple[int, str]:
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED, f"aepca: {error}" if str(error) else "aepca: interrupted"
    from aepca.launch import WorkerFailed

    if isinstance(error, WorkerFailed):
        return error.status, f"aepca: error: {error}"
    message = one_line(error)
    memory = memory_exhausted(error)
    if memory is None and (isinstance(error, USAGE_ERRORS) or (isinstance(error, ImportError) and "pip install" in message)):
        return EXIT_USAGE, f"aepca: error: {message or type(error).__name__}"
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    kind = f"{type(error).__name__}: {message}" if message else type(error).__name__
    where = write_traceback(error)
    if memory is not None:
        return EXIT_ERROR, f"aepca: error: out of memory: {memory} ({kind}); {memory_advice(args)} (full traceback in {where})"
    return EXIT_ERROR, f"aepca: error: {kind} (full traceback in {where})"


def one_line(error: BaseException) -> str:
    """``error``'s message and notes (a kept checkpoint, ...) on one line."""
    parts = [text for text in (" ".join(str(part).split()) for part in (error, *getattr(error, "__notes__", ()))) if text]
    return "; ".join([*(part.removesuffix(".") for part in parts[:-1]), *parts[-1:]])


def memory_exhausted(error: BaseException) -> str | None:
    """Which memory ran out, when ``error`` says one did: XLA's RESOURCE_EXHAUSTED (the device JAX
    computes on) or Python's MemoryError."""
    if isinstance(error, MemoryError):
        return "the process's memory (RAM) is full"
    text = str(error)
    if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower():
        return "the memory of the device JAX computes on (a GPU's, or RAM on a CPU) is full"
    return None


def memory_advice(args) -> str:
    command = getattr(args, "command", None)
    if command in ("encode", "reconstruct"):
        now = args.block_rows or f"{BLOCK_ROWS}, or fewer for rows of over 1,024 values"
        return f"read fewer rows at a time with --block-rows N (now {now})"
    if command == "reproduce":
        return "try --quick, or a machine with more memory"
    return ("train on smaller batches (Autoencoder(batch_size=...) from Python), split each batch across devices "
            "with --devices N, or read the rows a block at a time with --stream")


def write_traceback(error: BaseException) -> str:
    """The full traceback of ``error`` in a new file of the system's temporary folder: its path (or why not)."""
    import tempfile
    import traceback

    try:
        fd, path = tempfile.mkstemp(prefix="aepca-error-", suffix=".txt")
        with os.fdopen(fd, "w") as file:
            file.write("".join(traceback.format_exception(error)))
    except OSError as problem:
        return f"none: it could not be written ({problem.strerror})"
    return path


# Commands that read data as a stream and may run as several processes.
STREAMING_COMMANDS = ("compare", "sweep")
# Commands that write an output folder (a Run).
RUN_COMMANDS = ("compare", "sweep", "reproduce")
# Those whose training is checkpointed, to continue with --resume.
RESUMABLE_COMMANDS = ("compare", "sweep")
JOIN_OPTIONS = {"--coordinator": "coordinator", "--num-processes": "num_processes", "--process-id": "process_id"}


def without_join_options(argv: list[str]) -> list[str]:
    """``argv`` less the options saying where the processes of a run meet."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in JOIN_OPTIONS:
            skip = True
        elif arg.split("=", 1)[0] not in JOIN_OPTIONS:
            kept.append(arg)
    return kept


def is_first_process(args) -> bool:
    """Whether this process is the only one or the first (the writer) of its run, before any joining."""
    from aepca.launch import cluster_processes

    return not getattr(args, "process_id", None) and cluster_processes() == 1


def join_processes(args) -> None:
    """Join a multi-process run when this process is one of several: given
    ``--coordinator``, or started as one of a SLURM or Open MPI job's tasks."""
    from aepca.launch import cluster_processes

    if args.coordinator is None and cluster_processes() == 1:
        return
    import jax

    from aepca import distributed

    if args.devices and args.devices > 1 and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        # CPU devices of this process (ignored where it has GPUs).
        jax.config.update("jax_num_cpu_devices", args.devices)
    # JAX's preemption service would take SIGTERM from the command's own handler (checkpoint, then stop).
    jax.config.update("jax_enable_preemption_service", False)
    from aepca.experiments.run import ARGS_FILE, CHECKPOINT_DIR

    def lost_note() -> str:
        """What the line of a run ended by a lost host adds: the first process's checkpoint, if any."""
        checkpoint = args.out / CHECKPOINT_DIR
        if not distributed.is_writer() or not (checkpoint / ARGS_FILE).is_file():
            return ""
        return f"; checkpoint kept in {checkpoint}: once every host is back, continue with: aepca {args.command} --resume {args.out}"

    distributed.initialize(args.coordinator, args.num_processes, args.process_id, lost_note=lost_note)
    args.stream = True


def console() -> None:
    """The ``aepca`` command: :func:`main` in a process tuned for it."""
    try:
        status = main(tune_process=True)
    except KeyboardInterrupt:
        # A Ctrl-C or SIGTERM after the outcome was said, before main gave its handlers back (a worker
        # stopped by its launcher as it reports a lost peer): the process stops quietly.
        status = EXIT_INTERRUPTED
    if status == EXIT_OUTPUT_CLOSED:  # so that the interpreter's last flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    # What is left is the interpreter's shutdown (threads joined, modules freed): a Ctrl-C or SIGTERM
    # there ends the process at once, quietly, with the command's status.
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, lambda number, frame: os._exit(status))
    sys.exit(status)


def tune_command_process() -> None:
    """The command's process-wide settings, measured in docs/benchmarks.md.

    Keras runs on JAX unless ``KERAS_BACKEND`` says otherwise (chosen before
    anything imports Keras), JAX keeps compiled programs on disk
    (``AEPCA_COMPILATION_CACHE=off`` switches that off), and off the TensorFlow
    backend Keras is told that TensorFlow is not available: it would otherwise
    import it whenever a model is saved, only to check that no object is one of
    its types.
    """
    from aepca.backend import DEFAULT_BACKEND

    # Keras reads its backend once, when first imported: this process's choice unless the user made one.
    if not os.environ.get("KERAS_BACKEND") and "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = DEFAULT_BACKEND
    from aepca.compilation_cache import enable_compilation_cache
    from aepca.persistence import skip_tensorflow_probe

    enable_compilation_cache()
    skip_tensorflow_probe()


if __name__ == "__main__":
    console()
