"""Every input form becomes a row source here, once, at the public boundary.

Arrays and lists are checked as scikit-learn checks them; DataFrames, Arrow tables (and other libraries'
tables that export Arrow data, as polars does), SciPy sparse matrices (made dense a block at a time),
files, folders and patterns are read by :func:`aepca.open_source` (one reader per
format, with its errors); a :class:`aepca.data.sources.RowSource` is taken as it is.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
from scipy.sparse import issparse
from sklearn.utils.validation import _get_feature_names, check_array, validate_data

from aepca.data.formats import exports_arrow, is_pyarrow_table
from aepca.data.sources import RowSource, open_source
from aepca.validation import describe_names, invalid_value, plural


def is_arrow_table(X) -> bool:
    """A pyarrow Table, or another library's table read as one (:func:`aepca.data.formats.exports_arrow`)."""
    return is_pyarrow_table(X) or exports_arrow(X)


def _read_by_open_source(X) -> bool:
    """A path (file, folder, pattern), an Arrow table or a sparse matrix: forms only :func:`open_source` reads."""
    return isinstance(X, (str, os.PathLike)) or is_arrow_table(X) or issparse(X)


@contextlib.contextmanager
def numbers_expected():
    """Array checks whose text cells are said with the fix (NumPy says only which text it could not convert)."""
    try:
        yield
    except ValueError as error:
        if not str(error).startswith("could not convert string to float"):
            raise
        raise ValueError(
            f"X holds text where features must be numbers ({error}). Pass a DataFrame: its columns are read by "
            "name, those that are not numbers are named, and a model trained on a DataFrame ignores extra columns; "
            "or convert or drop the text."
        ) from None


def opened(X, spec=None):
    """Files, folders, patterns and Arrow tables as a row source (read by column name through ``spec``,
    a fitted model's :class:`aepca.data.columns.ColumnSpec`, when given); arrays and DataFrames as they
    are (for estimators that keep float64 arrays float64, as :class:`aepca.PCA` does), a DataFrame's
    columns checked to be numbers."""
    if _read_by_open_source(X):
        return open_source(X, spec=spec)
    if hasattr(X, "columns") and hasattr(X, "dtypes"):
        from aepca.data.columns import Selection, check_numeric, check_unique_names

        check_unique_names(list(X.columns), "X")
        # The message open_source gives a DataFrame (the Autoencoder's), with its options.
        check_numeric(X, "the DataFrame", Selection().advice())
    return X


def refuse_non_finite(X) -> None:
    """Raise the ``ValueError`` every input form gets for NaN, infinite or huge values, naming the first
    bad cell: ``X`` (rows that failed a cheaper check) is read as a row source, which checks each block."""
    for _ in (X if hasattr(X, "iter_blocks") else open_source(X)).iter_blocks():
        pass
    raise ValueError("X holds NaN, infinite or huge values (its statistics are not finite). Fill or remove those "
                     "rows and rescale huge values.")


def check_finite(rows: np.ndarray, given) -> np.ndarray:
    """``rows`` (checked out of ``given``, an array or a DataFrame) when every value is finite; else
    :func:`refuse_non_finite`'s error for ``given``, naming its column."""
    if not np.isfinite(rows).all():
        refuse_non_finite(given)
    return rows


def training_rows(X, estimator=None) -> tuple[RowSource, np.ndarray | None]:
    """Training rows of any form as a row source, and their feature names (a DataFrame's, else None)."""
    if isinstance(X, RowSource):
        return X, None
    if _read_by_open_source(X) or hasattr(X, "columns"):
        return open_source(X), _get_feature_names(X) if hasattr(X, "columns") else None
    with numbers_expected():
        # Values are checked as the source reads them, with the message every input form gets.
        rows = check_array(X, dtype=np.float32, ensure_min_samples=2, ensure_all_finite=False, estimator=estimator,
                           input_name="X")
    return open_source(rows), None


def check_has_columns(X, names) -> None:
    """``ValueError`` naming the training columns ``names`` that the table or file ``X`` lacks."""
    # A pyarrow table's .columns are its arrays: its names are .column_names.
    columns = X.column_names if hasattr(X, "column_names") else getattr(X, "columns", None)
    missing = [name for name in names if name not in columns] if columns is not None else []
    if missing:
        raise ValueError(
            f"X lacks {plural(len(missing), 'column')} the model was trained on: {describe_names(missing)}. "
            "Pass rows with every training column (their order and extra columns do not matter)."
        )


def new_rows(X, *, n_features: int, names=None, spec=None, estimator=None) -> RowSource:
    """Rows of any form given to a model (or as validation rows) as a row source of its features.

    With ``spec`` (the model's :class:`aepca.data.columns.ColumnSpec`), tables and files are read
    through it: columns matched by name, extra ones ignored. Arrays are taken by position, checked
    against ``estimator``'s fit as scikit-learn checks them (feature names included).
    """
    if isinstance(X, RowSource):
        source = X
    elif _read_by_open_source(X) or (spec is not None and hasattr(X, "columns")):
        if names is not None:
            check_has_columns(X, names)
        source = open_source(X, spec=spec)
    elif estimator is not None:
        with numbers_expected():
            source = open_source(validate_data(estimator, X, dtype=np.float32, reset=False, ensure_all_finite=False))
    else:
        source, found = training_rows(X)
        if names is not None and (found is None or list(found) != list(names)):
            received = (f"an array of {source.n_features} unnamed columns" if found is None
                        else f"columns {describe_names(list(found))}")
            raise invalid_value("X_val", f"the columns of X, in the same order: {describe_names(list(names))}",
                                received, "Pass validation rows as a table with X's columns.")
    if source.n_features != n_features:
        raise invalid_value("X", f"rows of the {n_features} training features", f"{source.n_features} features",
                            "Pass rows with the columns the model was trained on.")
    return source
