"""Data sets: the bundled MNIST, scikit-learn's 8x8 digits and tables, readers for users' files, row sources streamed
a block at a time, synthetic sets."""

import difflib
import functools
from pathlib import Path

from aepca.data._dataset import Dataset
from aepca.data.columns import ColumnSpec
from aepca.data.digits import digits
from aepca.data.mnist import MNIST_SHA256, array_digest, download_mnist, load_mnist, load_mnist_file
from aepca.data.readers import Table, load_user_data, read_table
from aepca.data.order import EpochBatches, epoch_blocks, epoch_steps, lane_blocks, row_hash
from aepca.data.sources import RowSource, is_source_path, open_source, source_files
from aepca.data.synthetic import curves, low_rank, s_curve, swiss_roll
from aepca.data.tables import TABLES, sklearn_table
from aepca.validation import invalid_value

__all__ = [
    "ColumnSpec",
    "DATASETS",
    "Dataset",
    "EpochBatches",
    "MNIST_SHA256",
    "RowSource",
    "Table",
    "array_digest",
    "curves",
    "digits",
    "download_mnist",
    "epoch_blocks",
    "epoch_steps",
    "is_source_path",
    "lane_blocks",
    "load_dataset",
    "load_mnist",
    "load_mnist_file",
    "load_user_data",
    "low_rank",
    "open_source",
    "read_table",
    "row_hash",
    "s_curve",
    "sklearn_table",
    "source_files",
    "swiss_roll",
]

# Named data sets; each loader's keyword defaults are its standard size, and
# digits, scikit-learn's tables and the synthetic sets are split 80/20 by a shuffle seeded with ``seed``.
DATASETS = {
    "mnist": load_mnist,
    "digits": digits,
    **{name: functools.partial(sklearn_table, name) for name in TABLES},
    "curves": curves,
    "low_rank": low_rank,
    "s_curve": s_curve,
    "swiss_roll": swiss_roll,
}


def load_dataset(name: str, **kwargs) -> Dataset:
    """Load a named data set (one of :data:`DATASETS`) as a :class:`Dataset`."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise invalid_value("dataset", f"one of {sorted(DATASETS)}", f"dataset={name!r}", _unknown_dataset_fix(name)) from None
    return loader(**kwargs)


def _unknown_dataset_fix(name) -> str:
    """How to go on from a name that is not a bundled set: a path given in its place, or a misspelling."""
    own_data = "give your own data as the path argument (aepca compare PATH), or to load_user_data(path) in Python."
    if isinstance(name, str) and (Path(name).suffix or "/" in name or Path(name).exists()):
        return f"{name!r} is a path, not a bundled data set: {own_data}"
    close = difflib.get_close_matches(str(name), DATASETS, n=1)
    return f"Did you mean {close[0]!r}? Or {own_data}" if close else f"Or {own_data}"
