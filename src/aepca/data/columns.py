"""Which columns of a table are features, labels or an identifier, and how new rows become features.

A :class:`ColumnSpec` is learned on the training rows and is JSON-able, so a
saved model can re-apply it to new data: columns are matched by name, list
columns (embeddings) are expanded into ``NAME[0], NAME[1], ...``, categorical
columns (with ``categorical="onehot"``) into one indicator ``NAME=CATEGORY`` per
category seen in training, and missing values are filled as in training.
"""

from __future__ import annotations

import fnmatch
import math
import shlex
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from aepca.validation import check_features, describe_names, invalid_value, plural, shorten

# Column lists in messages show this many names, then "and N more".
SHOWN = 10
# A column of n distinct values falls in order by chance with probability
# 2/n!: below one in a million from 10 rows on, so order there means a row id.
MIN_ORDER_ROWS = 10


def _column_means(features: pd.DataFrame) -> pd.Series:
    """Column means skipping NaN, taken over values divided by the column's largest finite magnitude, so
    that values near float64's largest average to a finite mean (then refused for their size, not as missing).
    Booleans count as 0 and 1."""
    features = features.astype(np.float64)
    scale = features.abs().where(np.isfinite(features)).max()
    scale = scale.where(scale > 0, 1.0)
    return features.div(scale).mean() * scale


# How missing values may be filled: with the training rows' column means (FeatureSummary.mean).
IMPUTE_METHODS = ("mean",)
SPEC_FORMAT = "aepca.columns"
SPEC_VERSION = 1
# What becomes of text and categorical feature columns: refused (with the flags that handle them; a
# boolean column is then a 0/1 number), or one indicator column per category learned on the training
# rows, booleans included.
CATEGORICAL = ("refuse", "onehot")
# More distinct training values than this and a column is not taken for categories (names, free text, dates).
MAX_CATEGORIES = 50


def indicator(name: str, category: str) -> str:
    """The feature name of the indicator of ``category`` in the categorical column ``name``."""
    return f"{name}={category}"


def is_categorical(dtype) -> bool:
    """Text, pandas categorical, dates and booleans: columns that ``categorical="onehot"`` encodes."""
    return not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)


def category_cells(column: pd.Series) -> np.ndarray:
    """A column's cells as category names (strings; None where missing), whatever its dtype."""
    return column.astype("string").to_numpy(dtype=object, na_value=None)


def numbers_if_all(column: pd.Series) -> pd.Series | None:
    """``column`` as numbers when every cell present is one (text such as ``"3.5"`` too), else None."""
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if numbers.notna().sum() == column.notna().sum() else None


def _marked_missing(frame: pd.DataFrame, names, na_values: tuple[str, ...]) -> pd.DataFrame:
    """``frame`` with the cells of the columns ``names`` that read as one of ``na_values`` (say ``?``) made
    missing, and each of those columns then holding numbers alone read as numbers; ``frame`` itself as it is."""
    changed = {}
    for name in names:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column.dtype):
            continue
        marked = column.mask(column.astype("string").isin(na_values))
        numbers = numbers_if_all(marked)
        changed[name] = marked if numbers is None else numbers
    return frame.assign(**changed) if changed else frame


def check_impute(impute) -> None:
    if impute is not None and impute not in IMPUTE_METHODS:
        raise invalid_value("impute", f"one of {[None, *IMPUTE_METHODS]}", f"impute={impute!r}", "Use 'mean' or leave it unset.")


def check_categorical(categorical, max_categories) -> None:
    if categorical not in CATEGORICAL:
        raise invalid_value("categorical", f"one of {list(CATEGORICAL)}", f"categorical={categorical!r}",
                            "Use 'onehot' to encode text columns as indicators, or 'refuse'.")
    if isinstance(max_categories, bool) or not isinstance(max_categories, int | np.integer) or max_categories < 2:
        raise invalid_value("max_categories", "an integer >= 2", f"max_categories={max_categories!r}",
                            f"Use e.g. {MAX_CATEGORIES}.")


def expanded(name: str, length: int | None) -> list[str]:
    """The feature names of a source column: itself, or ``NAME[i]`` for a list column of ``length`` numbers."""
    return [name] if length is None else [f"{name}[{i}]" for i in range(length)]


def _cells(length: int | None) -> str:
    return "single values" if length is None else f"lists of {length} numbers"


def _is_pattern(text: str) -> bool:
    return any(char in text for char in "*?[")


def _as_names(value) -> tuple[str, ...]:
    """A name or a sequence of names as a tuple (a lone string is one name, not its characters)."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


# --- list columns ------------------------------------------------------------------------------------


def _numeric(type_) -> bool:
    import pyarrow as pa

    return (pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_boolean(type_)
            or pa.types.is_decimal(type_))


def _as_numbers(array):
    """An Arrow array of decimals as numbers (pandas and NumPy would hold them as Python objects): whole ones
    (scale 0, up to 18 digits) as int64, so that an identifier among them is told apart as for integers, others
    as float64; any other array as it is."""
    import pyarrow as pa

    if not pa.types.is_decimal(array.type):
        return array
    whole = array.type.scale == 0 and array.type.precision <= 18
    return array.cast(pa.int64() if whole else pa.float64())


def _numeric_list(type_) -> bool:
    import pyarrow as pa

    is_list = pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_)
    return is_list and _numeric(type_.value_type)


def _describe_lengths(counts) -> str:
    pairs = sorted(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()), key=lambda p: -p[1])
    shown = ", ".join(f"{length} ({plural(rows, 'row')})" for length, rows in pairs[:5])
    return shown + (f" and {len(pairs) - 5} more lengths" if len(pairs) > 5 else "")


def _list_block(column, name: str, source: str) -> np.ndarray:
    """The rows of an Arrow list column as a (rows, length) array, from its flat values (no Python lists).

    A missing list becomes a row of NaN (a missing value like any other).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    counts = pc.value_counts(pc.list_value_length(column).drop_null())
    fix = f"Store one length in every row, or leave the column out with {drop_flag([name])}."
    if len(counts) > 1:
        raise ValueError(
            f"{source}: list column {name!r} holds lists of different lengths: {_describe_lengths(counts)}, "
            f"expected the same number of values in every row. {fix}"
        )
    length = counts.field("values")[0].as_py() if len(counts) else 0
    if length == 0:
        raise ValueError(f"{source}: list column {name!r} holds only empty or missing lists. {fix}")
    blocks = []
    for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
        # flatten() skips missing lists and honours slicing offsets.
        block = _as_numbers(chunk.flatten()).to_numpy(zero_copy_only=False).reshape(-1, length)
        if chunk.null_count:
            full = np.full((len(chunk), length), np.nan)
            full[chunk.is_valid().to_numpy(zero_copy_only=False)] = block
            block = full
        blocks.append(block)
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def arrow_columns(table, source: str) -> tuple[str, ...]:
    """A pyarrow table's (or schema's) column names, less the index columns pandas stored (row labels, as
    pandas reads them); each name once."""
    schema = getattr(table, "schema", table)
    check_unique_names(schema.names, source)
    index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
    return tuple(name for name in schema.names if name not in index)


def frame_from_arrow(table, source: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """A pyarrow Table or RecordBatch as a frame of single-value columns, and ``{list column: length}``.

    List columns of numbers become ``NAME[0], NAME[1], ...``; the frame's column order is not meaningful.
    """
    import pyarrow as pa

    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    names = arrow_columns(table, source)
    lists = [n for n in names if _numeric_list(table.schema.field(n).type)]
    scalar = table.select([n for n in names if n not in lists])
    scalar = pa.Table.from_arrays([_as_numbers(column) for column in scalar.columns], names=scalar.column_names)
    parts = [scalar.to_pandas(ignore_metadata=True)]
    lengths = {}
    for name in lists:
        block = _list_block(table.column(name), name, source)
        lengths[name] = block.shape[1]
        parts.append(pd.DataFrame(block, columns=expanded(name, block.shape[1]), copy=False))
    frame = pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]
    frame.columns = [str(c) for c in frame.columns]
    return frame, lengths


def _sequence_columns(frame: pd.DataFrame) -> list:
    """Object columns whose cells are lists or arrays (as pandas reads a Parquet list column)."""
    found = []
    for name in frame.columns[(frame.dtypes == object).to_numpy()]:
        column = frame[name]
        first = column.first_valid_index()
        if first is not None and isinstance(column[first], list | tuple | np.ndarray):
            found.append(name)
    return found


def to_frame(data, source: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """A pandas DataFrame, pyarrow Table or RecordBatch as single-value columns and ``{list column: length}``."""
    if not isinstance(data, pd.DataFrame):
        return frame_from_arrow(data, source)
    data = data.rename(columns=str)
    sequences = _sequence_columns(data)
    if not sequences:
        return data, {}
    try:
        import pyarrow as pa

        table = pa.Table.from_pandas(data[sequences], preserve_index=False)
    except (ImportError, ValueError, TypeError):  # mixed cells: left for the non-numeric check to report
        return data, {}
    lists, lengths = frame_from_arrow(table, source)
    rest = data.drop(columns=list(lengths)).reset_index(drop=True)
    return pd.concat([rest, lists.drop(columns=[c for c in sequences if c not in lengths])], axis=1), lengths


# --- checks --------------------------------------------------------------------------------------------


def _first_non_number(column: pd.Series):
    try:
        bad = column[pd.to_numeric(column, errors="coerce").isna() & column.notna()]
    except (TypeError, ValueError):  # cells pandas cannot even try (lists, arrays)
        bad = column.dropna()
    return bad.iloc[0] if len(bad) else None


def dtype_test(dtypes: pd.Series, test) -> dict:
    """``test`` of each column's dtype, by column name, evaluated once per distinct dtype (wide data has
    many columns of a few dtypes)."""
    results = {dtype: test(dtype) for dtype in set(dtypes)}
    return {name: results[dtype] for name, dtype in zip(dtypes.index.tolist(), dtypes.tolist())}


def check_numeric(frame: pd.DataFrame, source: str, fix: str, columns=None) -> None:
    """``ValueError`` naming every non-numeric column (of ``columns``; an example cell quoted short), with ``fix``."""
    dtypes = frame.dtypes if columns is None else frame.dtypes[list(columns)]
    text = [name for name, numeric in dtype_test(dtypes, pd.api.types.is_numeric_dtype).items() if not numeric]
    if not text:
        return
    example = _first_non_number(frame[text[0]])
    quoted = f" (e.g. {text[0]!r} holds {shorten(example)})" if example is not None else ""
    if _looks_missing(example):  # as '?' marks a missing value in many published tables
        fix = (f"If {example!r} marks a missing value, compare and sweep read it so with --na-values "
               f"{shlex.quote(example)} (na_values=) and fill it with --impute mean; a model trained so reads new "
               f"rows the same way. {fix}")
    raise ValueError(f"{source} has non-numeric columns {describe_names(text, SHOWN)}{quoted}. {fix}")


def _looks_missing(cell) -> bool:
    """A short cell of punctuation alone (``?``, ``-``, ``.``, ``--``): a code for a missing value."""
    return isinstance(cell, str) and 0 < len(cell.strip()) <= 3 and not any(ch.isalnum() for ch in cell)


def check_unique_names(names, source: str) -> None:
    """``ValueError`` when two of ``source``'s columns share a name: columns are read by name."""
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise ValueError(f"{source} has more than one column named {describe_names(repeated, SHOWN)}, and columns are "
                         "read by name. Give each column a name of its own.")


def check_missing(frame: pd.DataFrame, source: str, na_values: tuple[str, ...] = ()) -> None:
    counts = frame.isna().sum()
    counts = counts[counts > 0]
    if len(counts):
        kinds = f"NaN, empty cells or {describe_names(na_values)}" if na_values else "NaN or empty cells"
        raise ValueError(
            f"{source} has {plural(int(counts.sum()), 'missing value')} ({kinds}) in columns "
            f"{describe_names(list(counts.index))}. Fill them with the column mean using impute='mean' "
            "(--impute mean), or remove those rows."
        )


def drop_flag(names) -> str:
    """The option leaving ``names`` out of the features, as a shell takes it and as Python's parameter."""
    return f"--drop-columns {shlex.quote(','.join(map(str, names)))} (drop_columns=)"


# --- what the user asked for -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The columns a user named: features (``columns``, ``drop_columns``: names or ``fnmatch`` patterns),
    an ``id_column`` kept beside the rows and ``label_columns`` (the first colours plots)."""

    columns: tuple[str, ...] = ()
    drop_columns: tuple[str, ...] = ()
    id_column: str | None = None
    label_columns: tuple[str, ...] = ()
    na_values: tuple[str, ...] = ()

    @classmethod
    def of(cls, *, columns=None, drop_columns=None, id_column=None, label_column=None, label_columns=None,
           na_values=None):
        """The keyword arguments of the readers; ``label_column`` is one more label, placed first; ``na_values``:
        cell values that mark a missing value besides the empty cell, NaN and the like (``?``, ``-``)."""
        labels = tuple(dict.fromkeys(_as_names(label_column) + _as_names(label_columns)))
        return cls(_as_names(columns), _as_names(drop_columns), id_column, labels, _as_names(na_values))

    def trusted(self) -> set[str]:
        """Columns named in ``columns`` without a pattern: chosen as features, so never taken for ids."""
        return {name for name in self.columns if not _is_pattern(name)}

    def advice(self, categorical: str = "refuse") -> str:
        """The flags that handle unwanted columns, leaving out advice already followed."""
        steps = [] if categorical == "onehot" else ["encode categories with --categorical onehot"]
        steps += [
            "mark more labels by repeating --label-column" if self.label_columns
            else "keep labels out with --label-column NAME",
        ]
        if self.id_column is None:
            steps.append("keep row ids beside the codes with --id-column NAME")
        if self.columns:
            steps.append("take them out of --columns")
        else:
            steps.append(f"{'add them to' if self.drop_columns else 'leave them out with'} --drop-columns A,B "
                         "or choose features with --columns A,B,emb*")
        return (f"Features must be numbers: {'; '.join(steps)} "
                "(in Python: aepca.open_source(X, categorical=, label_columns=, id_column=, drop_columns=, columns=)).")

    def check_exists(self, sources: list[str], lists: dict, source: str) -> None:
        """``ValueError`` unless the label and id columns are single-value columns of the file."""
        named = [("label_column", n) for n in self.label_columns]
        named += [("id_column", self.id_column)] if self.id_column is not None else []
        for option, name in named:
            if name not in sources:
                raise invalid_value(option, f"one of the columns of {source}: {describe_names(sources, SHOWN)}",
                                    f"{option}={name!r}", "Check the spelling and case.")
            if name in lists:
                raise invalid_value(option, "a column of single values", f"{option}={name!r}, a list column of "
                                    f"{source}", "Pass a column with one value per row.")
        if self.id_column in self.label_columns:
            raise ValueError(
                f"{self.id_column!r} is passed both as id_column and as a label column; a column is one or the "
                "other. Pass it once."
            )

    def _match(self, patterns: tuple[str, ...], sources: list[str], option: str, source: str) -> list[str]:
        matched = []
        for pattern in patterns:
            hits = [name for name in sources if fnmatch.fnmatchcase(name, pattern)]
            if not hits:
                raise invalid_value(
                    option,
                    f"names or patterns (*, ?) of the columns of {source}: {describe_names(sources, SHOWN)}",
                    f"{option} entry {pattern!r}, which matches no column",
                    "Check the spelling and case.",
                )
            matched += [name for name in hits if name not in matched]
        return matched

    def select(self, frame: pd.DataFrame, sources: list[str], lists: dict, source: str,
               categorical: str = "refuse") -> ColumnSpec:
        """The spec's columns, ids and labels for ``frame`` (sources in file order), features checked numeric.

        With ``categorical="onehot"`` text, categorical and boolean features are marked categorical; their
        categories are learned on the training rows (:meth:`ColumnSpec.with_categories`).
        """
        self.check_exists(sources, lists, source)
        others = {*self.label_columns, self.id_column}
        candidates = [name for name in sources if name not in others]
        chosen = self._match(self.columns, sources, "columns", source) if self.columns else candidates
        dropped = set(self._match(self.drop_columns, sources, "drop_columns", source))
        allowed = set(candidates) - dropped  # sets: wide data has tens of thousands of columns
        chosen = [name for name in chosen if name in allowed]
        chosen_set = set(chosen)
        if not chosen:
            raise ValueError(
                f"{source} has no feature columns left besides labels, the id column and dropped columns "
                f"(its columns: {describe_names(sources, SHOWN)}). Keep at least one numeric column as a feature."
            )
        spec = ColumnSpec(
            columns=tuple(chosen),
            feature_names=tuple(f for name in chosen for f in expanded(name, lists.get(name))),
            list_lengths={name: lists[name] for name in chosen if name in lists},
            id_column=self.id_column,
            label_columns=self.label_columns,
            dropped_columns=tuple(name for name in candidates if name not in chosen_set),
            na_values=self.na_values,
        )
        frame = spec.marked_missing(frame)
        if categorical == "onehot":
            sequences = set(_sequence_columns(frame))  # lists of text: not categories
            categorical_dtype = dtype_test(frame.dtypes, is_categorical)
            spec = spec.with_pending_categories(
                [name for name in chosen if name not in lists and name not in sequences and categorical_dtype[name]])
        check_numeric(frame, source, self.advice(categorical), spec.feature_names)
        return spec


def _named_like_id(name: str) -> bool:
    lower = name.lower()
    return lower.endswith("id") or lower in ("key", "index")


def check_identifiers(frame: pd.DataFrame, spec: ColumnSpec, selection: Selection, source: str) -> None:
    """Refuse integer feature columns that look like row ids: unique, and in order or named like an id.

    ``frame`` holds the rows in file order. Columns named in ``columns`` are the user's choice and pass.
    """
    trusted = selection.trusted()
    integer = dtype_test(frame.dtypes, pd.api.types.is_integer_dtype)
    integers = [name for name in spec.columns if name not in trusted and name not in spec.list_lengths and integer[name]]
    if not integers:
        return
    # n distinct integers span at least n - 1: a cheap test that rules out most columns (e.g. pixels) at once.
    values = frame[integers]
    span = values.max().astype(np.float64) - values.min().astype(np.float64)
    found = {}
    for name in span.index[(span >= len(frame) - 1).to_numpy()]:
        column = frame[name]
        ordered = len(column) >= MIN_ORDER_ROWS and (column.is_monotonic_increasing or column.is_monotonic_decreasing)
        if (ordered or _named_like_id(name)) and column.is_unique:
            found[name] = "in order" if ordered else "named like an id"
    if not found:
        return
    names = list(found)
    # Names as a shell takes them ('Unnamed: 0', the index pandas writes).
    fixes = [f"keep it beside the codes with --id-column {shlex.quote(names[0])}"] if spec.id_column is None else []
    fixes += [f"leave it out with --drop-columns {shlex.quote(','.join(names))}",
              "choose the features with --columns (a name given there is a feature)"]
    options = "id_column=, drop_columns=, columns=" if spec.id_column is None else "drop_columns=, columns="
    raise ValueError(
        f"{source}: {'column' if len(names) == 1 else 'columns'} {describe_names(names, SHOWN)} "
        f"{'looks' if len(names) == 1 else 'look'} like a row identifier (unique integers, {found[names[0]]}), "
        f"not a measurement. Fix: {'; '.join(fixes)} (in Python: aepca.open_source(X, {options}))."
    )


# --- the specification -----------------------------------------------------------------------------------


def column_notes(spec: ColumnSpec) -> list[str]:
    """What the run's record says of how ``spec`` read the columns: the id column, the columns left out, list
    columns and categorical columns."""
    lines = [f"cells {describe_names(spec.na_values)} read as missing values"] if spec.na_values else []
    if spec.id_column is not None:
        lines.append(f"column {spec.id_column!r} kept beside the rows as their identifier, not as a feature")
    if spec.dropped_columns:
        lines.append(f"{plural(len(spec.dropped_columns), 'column')} left out: {describe_names(spec.dropped_columns)}")
    lines += [f"list column {name!r} read as {length} features {name}[0] to {name}[{length - 1}]"
              for name, length in spec.list_lengths.items()]
    lines += [f"categorical column {name!r} encoded as {plural(len(categories), 'indicator')} (the categories of the "
              "training rows; an unseen category gives all zeros)" for name, categories in spec.categories.items()]
    return lines


def cleaning_notes(spec: ColumnSpec) -> dict:
    """What a data set's notes say of the cleaning ``spec`` learned: constant columns kept (how many) or
    dropped (which), and how missing values are imputed."""
    notes = {}
    kept = sum(name in spec.feature_names for name in spec.constant_columns)
    dropped = [name for name in spec.constant_columns if name not in spec.feature_names]
    if kept:
        notes["constant_columns"] = kept
    if dropped:
        notes["dropped_constant_columns"] = dropped
    if spec.impute:
        notes["impute"] = f"{spec.impute} of the training rows"
    return notes


@dataclass(frozen=True)
class FeatureSummary:
    """Per feature of the training rows, missing values skipped: how many values there are, their mean,
    least and largest; what :meth:`ColumnSpec.cleaned` learns from, whether the rows came whole or in blocks."""

    count: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of_frame(cls, features: pd.DataFrame) -> FeatureSummary:
        return cls(features.notna().sum().to_numpy(), _column_means(features).to_numpy(np.float64),
                   features.min().to_numpy(np.float64), features.max().to_numpy(np.float64))

    @classmethod
    def of_blocks(cls, blocks, n_features: int) -> FeatureSummary:
        """Of float32 blocks of rows (NaN: missing), summed in float64."""
        count, total = np.zeros(n_features, np.int64), np.zeros(n_features)
        low, high = np.full(n_features, np.inf), np.full(n_features, -np.inf)
        for block in blocks:
            present = ~np.isnan(block)
            count += present.sum(axis=0)
            total += np.where(present, block, 0).sum(axis=0, dtype=np.float64)
            low = np.minimum(low, np.where(present, block, np.inf).min(axis=0, initial=np.inf))
            high = np.maximum(high, np.where(present, block, -np.inf).max(axis=0, initial=-np.inf))
        mean = np.divide(total, count, out=np.full(n_features, np.nan), where=count > 0)
        return cls(count, mean, np.where(count > 0, low, np.nan), np.where(count > 0, high, np.nan))


@dataclass(frozen=True)
class ColumnSpec:
    """How a table's columns become the model's features; learned on training rows, JSON-able, re-applied by name.

    ``columns``: the source columns read as features, in order; a list column ``NAME`` with
    ``list_lengths[NAME]`` numbers per row gives the features ``NAME[0], NAME[1], ...``; a categorical
    column with ``categories[NAME]`` (learned on the training rows, sorted) gives one 0/1 indicator
    ``NAME=CATEGORY`` per category, all 0 for a category unseen in training or a missing cell.
    ``feature_names``: the features kept, in order (``constant_columns`` were constant in training and
    are absent here when dropped). ``dropped_columns``: source columns left out by ``drop_columns`` or
    ``columns``. ``fill``: the value imputed per feature (``impute`` names how it was learned).
    ``image_shape``: for image files, the (height, width, channels: 1 or 3) every image is read at.
    ``na_values``: cell values read as missing besides the empty cell and NaN (``?``, say).
    """

    columns: tuple[str, ...]
    feature_names: tuple[str, ...]
    list_lengths: dict[str, int] = field(default_factory=dict)
    id_column: str | None = None
    label_columns: tuple[str, ...] = ()
    dropped_columns: tuple[str, ...] = ()
    constant_columns: tuple[str, ...] = ()
    impute: str | None = None
    fill: dict[str, float] = field(default_factory=dict)
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    image_shape: tuple[int, ...] | None = None
    na_values: tuple[str, ...] = ()

    def with_categories(self, cells: dict, source: str, max_categories: int = MAX_CATEGORIES,
                        rows: str = "the training rows") -> ColumnSpec:
        """The categories of the categorical columns, the distinct ``cells`` (per column: its cells, None where
        missing) found in ``rows``, and the features with their indicators; a column of more than
        ``max_categories`` distinct values is refused."""
        categories = {}
        for name in self.categories:
            found = pd.unique(pd.Series(list(cells[name]), dtype=object).dropna())
            flag = shlex.quote(name)
            fix = (f"Leave it out with --drop-columns {flag} (drop_columns=), keep it beside the rows with "
                   f"--label-column {flag} (label_columns=), or raise --max-categories (max_categories=) if its "
                   "values are categories.")
            if len(found) > max_categories:
                raise ValueError(
                    f"{source}: column {name!r} has {len(found)} distinct values in {rows}, more than "
                    f"max_categories={max_categories}: names, free text or dates are not categories. {fix}")
            if not len(found):
                raise ValueError(f"{source}: column {name!r} holds no values in {rows}. {fix}")
            categories[name] = tuple(sorted(found))
        learned = replace(self, categories=categories)
        return replace(learned, feature_names=tuple(learned._sources()))

    def with_pending_categories(self, names) -> ColumnSpec:
        """This specification with the source columns ``names`` categorical, their categories still to learn."""
        names = [name for name in names if name not in self.categories]
        if not names:
            return self
        return replace(self, categories={**self.categories, **dict.fromkeys(names, ())},
                       feature_names=tuple(f for f in self.feature_names if f not in names))

    def learn(self, frame: pd.DataFrame, source: str, *, drop_constant: bool, impute: str | None,
              max_categories: int = MAX_CATEGORIES) -> ColumnSpec:
        """Categories, fill values and constant columns learned on the training rows ``frame``."""
        frame = self.marked_missing(frame)
        spec = self
        if self.categories:
            spec = self.with_categories({name: category_cells(frame[name]) for name in self.categories}, source,
                                        max_categories)
        features = spec._encode(frame)[list(spec.feature_names)]
        summary = FeatureSummary.of_frame(features)
        spec.check_present(summary, source)
        if impute is None:
            check_missing(features, f"{source} (training rows)", self.na_values)  # counted where they were found
        return spec.cleaned(summary, source, drop_constant=drop_constant, impute=impute)

    def seen_categories(self, summary: FeatureSummary, source: str) -> tuple[ColumnSpec, FeatureSummary]:
        """The categories whose indicators are set in some of the training rows ``summary`` describes (this
        specification's categories were learned on more rows), and the summary of the features left."""
        position = {name: i for i, name in enumerate(self.feature_names)}
        seen = {name: [category for category in categories if summary.high[position[indicator(name, category)]] > 0]
                for name, categories in self.categories.items()}
        spec = self.with_categories(seen, source, max(map(len, self.categories.values())))  # fewer than learned
        kept = [position[name] for name in spec.feature_names]
        return spec, FeatureSummary(summary.count[kept], summary.mean[kept], summary.low[kept], summary.high[kept])

    def check_present(self, summary: FeatureSummary, source: str) -> None:
        """Refuse features with no value in the training rows (nothing to learn or impute from)."""
        empty = [name for name, count in zip(self.feature_names, summary.count) if not count]
        if empty:  # e.g. the unnamed column a trailing delimiter makes
            raise ValueError(f"{source} has columns with no values at all: {describe_names(empty)}. Leave them out "
                             f"with {drop_flag(empty)}.")

    def cleaned(self, summary: FeatureSummary, source: str, *, drop_constant: bool, impute: str | None) -> ColumnSpec:
        """This specification with the fill values (``impute``: the means) and constant columns of the
        training rows ``summary`` describes, those dropped with ``drop_constant``."""
        # Least and largest skip missing values, so a mean-imputed constant column stays constant.
        is_constant = summary.low == summary.high
        if is_constant.all():
            raise ValueError(f"Every feature column of {source} is constant. There is nothing to learn from.")
        constant = tuple(name for name, flag in zip(self.feature_names, is_constant) if flag)
        kept = tuple(name for name in self.feature_names if not (drop_constant and name in constant))
        fill = dict(zip(self.feature_names, map(float, summary.mean))) if impute is not None else {}
        return replace(self, feature_names=kept, constant_columns=constant, impute=impute,
                       fill={name: fill[name] for name in kept} if fill else {})

    def marked_missing(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (of these source columns, or some) with the cells of ``na_values`` missing, and a column of
        numbers and such cells read as numbers (:func:`_marked_missing`)."""
        if not self.na_values:  # every block read through pandas comes here
            return frame
        names = [name for name in self.columns if name not in self.list_lengths and name in frame.columns]
        return _marked_missing(frame, names, self.na_values)

    def checked_image_shape(self, requested: tuple, source: str) -> tuple:
        """``requested``, the shape of one image for flat rows of these features, if its product is their count."""
        n_features, n_dropped = len(self.feature_names), len(set(self.constant_columns) - set(self.feature_names))
        if math.prod(requested) != n_features:
            left = f" left after dropping {plural(n_dropped, 'constant column')}" if n_dropped else ""
            fix = ("Keep the constant columns (leave out drop_constant / --drop-constant) so that every pixel stays."
                   if n_dropped else
                   "Pass the shape of one image (labels excluded), or leave image_shape unset for tabular data.")
            raise invalid_value("image_shape", f"dimensions whose product is the {n_features} feature columns of "
                                f"{source}{left}", f"image_shape={requested!r}", fix)
        return requested

    def _expanded(self, name: str) -> list[str]:
        """The features of the source column ``name``: itself, its list's entries or its categories' indicators."""
        if name in self.categories:
            return [indicator(name, category) for category in self.categories[name]]
        return expanded(name, self.list_lengths.get(name))

    def _sources(self) -> dict[str, str]:
        return {f: name for name in self.columns for f in self._expanded(name)}

    def _encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with each categorical column replaced by its indicators (float32 0/1)."""
        if not self.categories:
            return frame
        parts = [frame.drop(columns=list(self.categories))]
        for name, categories in self.categories.items():
            hits = category_cells(frame[name])[:, None] == np.array(categories, dtype=object)[None, :]
            parts.append(pd.DataFrame(hits.astype(np.float32), columns=self._expanded(name), index=frame.index))
        return pd.concat(parts, axis=1)

    def category_groups(self) -> dict[str, tuple[np.ndarray, tuple[str, ...]]]:
        """Each categorical column's indicator positions among the features, and their categories (an
        indicator dropped as constant is absent from both)."""
        position = {name: i for i, name in enumerate(self.feature_names)}
        groups = {}
        for name, categories in self.categories.items():
            kept = [(position[f], category) for f, category in zip(self._expanded(name), categories) if f in position]
            groups[name] = (np.array([p for p, _ in kept], dtype=np.intp), tuple(c for _, c in kept))
        return groups

    def decode(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Each categorical column's most likely category for rows of features ``values`` (reconstructions in
        the data's units): the category of the largest indicator, as an object array of strings."""
        decoded = {}
        for name, (positions, categories) in self.category_groups().items():
            if not len(positions):  # its one category's indicator was dropped as constant
                decoded[name] = np.full(len(values), self.categories[name][0], dtype=object)
            else:
                decoded[name] = np.array(categories, dtype=object)[np.argmax(values[:, positions], axis=1)]
        return decoded

    def _indicator_cells(self, features: np.ndarray):
        """``(name, indicator positions, rows holding no category)`` per categorical column of rows of
        ``features`` (but one whose only indicator was dropped as constant): a category unseen in
        training or none gives every indicator 0."""
        for name, (positions, _) in self.category_groups().items():
            if len(positions):
                yield name, positions, features[:, positions].max(axis=1) <= 0.5

    def unseen_cells(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Per categorical column, which rows of ``features`` hold a category unseen in training or none."""
        return {name: unseen for name, _, unseen in self._indicator_cells(features)}

    def category_counts(self, truth: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
        """``[recovered, known, unseen]`` categorical cells of rows of features ``truth`` reconstructed as
        ``reconstruction``: cells whose largest reconstructed indicator is their category, cells of a category
        seen in training, and cells with every indicator 0 (unseen in training, or missing)."""
        counts = np.zeros(3, dtype=np.int64)
        for _, positions, unseen in self._indicator_cells(truth):
            found = np.argmax(reconstruction[:, positions], axis=1) == np.argmax(truth[:, positions], axis=1)
            counts += [np.sum(~unseen & found), np.sum(~unseen), np.sum(unseen)]
        return counts

    def check_names(self, names, source: str) -> None:
        """``ValueError`` unless ``names`` (a file's columns, lists unexpanded or expanded) hold every feature."""
        names = list(names)
        available = set(names)
        missing = [name for name in self.columns
                   if name not in available and not set(expanded(name, self.list_lengths.get(name))) <= available]
        if missing:
            # Columns named by position were fitted on unnamed ones, which a table's names cannot match.
            positional = list(self.columns) == [f"x{i}" for i in range(len(self.columns))]
            fix = (f"The model was fitted on unnamed columns (an array, a .npy or a headerless CSV): give its "
                   f"{len(self.columns)} columns in their order as one of those, or fit on the named table."
                   if positional else "Provide them under the names used in training.")
            raise ValueError(
                f"{source} lacks {'column' if len(missing) == 1 else 'columns'} {describe_names(missing, SHOWN)} "
                f"that the model reads as features (columns are matched by name; its columns: "
                f"{describe_names(names, SHOWN)}). {fix}"
            )

    def check_width(self, names, source: str) -> None:
        """``ValueError`` unless ``names``, given by position (``x0, x1, ...``: an array file's, a headerless
        CSV file's, images'), are as many as the training rows' columns: position then says which is which."""
        width = len({*self.columns, *self.dropped_columns, *self.label_columns} | ({self.id_column} - {None}))
        if len(names) != width:
            raise ValueError(
                f"{source} holds rows of {len(names)} values, but the training rows held {width}; their "
                "columns have no names, so they are matched by position. Pass rows shaped as the training rows."
            )

    def _check_cells(self, name: str, found: int | None, source: str) -> None:
        expected = self.list_lengths.get(name)
        if found != expected:
            raise ValueError(
                f"{source}: column {name!r} holds {_cells(found)}, but the model reads {_cells(expected)} from it. "
                "Provide the column in the shape used in training."
            )

    def features(self, data, source: str = "data") -> pd.DataFrame:
        """The feature columns of ``data`` (DataFrame, pyarrow Table or RecordBatch), in the spec's order."""
        pandas = isinstance(data, pd.DataFrame)
        names = [str(c) for c in data.columns] if pandas else data.column_names
        self.check_names(names, source)
        wanted = {*self.columns, *self.feature_names}
        keep = [c for c, name in zip(data.columns if pandas else names, names) if name in wanted]
        frame, lists = to_frame(data[keep] if pandas else data.select(keep), source)
        for name in self.columns:
            # Neither a list nor a single column: given as NAME[0], NAME[1], ..., which check_names matched.
            found = lists[name] if name in lists else (None if name in frame.columns else self.list_lengths.get(name))
            self._check_cells(name, found, source)
        return self._encode(self.marked_missing(frame))[list(self.feature_names)]

    def _arrow_values(self, table, source: str) -> np.ndarray | None:
        """Numeric Arrow columns straight to float32 (no pandas; a float32 list column is not copied); None
        when a column is absent or not numbers, left to :meth:`features` to report."""
        import pyarrow as pa

        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        pieces = []
        for name in self.columns:
            if name not in table.column_names or name in self.categories:
                return None
            column = table.column(name)
            if name in self.list_lengths and _numeric_list(column.type):
                piece = _list_block(column, name, source)
                self._check_cells(name, piece.shape[1], source)
            elif name not in self.list_lengths and _numeric(column.type):
                piece = column.cast(pa.float32(), safe=False).to_numpy(zero_copy_only=False).reshape(-1, 1)
            else:
                return None
            pieces.append(piece)
        values = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1, dtype=np.float32)
        values = np.ascontiguousarray(values, dtype=np.float32)
        expanded_names = list(self._sources())
        if list(self.feature_names) == expanded_names:
            return values
        return values[:, [expanded_names.index(name) for name in self.feature_names]]

    def fill_missing(self, values: np.ndarray) -> np.ndarray:
        """float32 features with NaN replaced by the values imputed in training (a copy, where there are any)."""
        missing = np.isnan(values) if self.fill else None
        if missing is None or not missing.any():
            return values
        return np.where(missing, np.array([self.fill[name] for name in self.feature_names], np.float32), values)

    def _numbers(self, data, source: str) -> pd.DataFrame:
        frame = self.features(data, source)
        check_numeric(frame, source, "Feature columns must hold numbers: convert them or fix the cells.")
        return frame

    def values(self, data, source: str = "data") -> np.ndarray:
        """float32 features of ``data`` (DataFrame, pyarrow Table or RecordBatch), a block of rows: columns
        aligned by name (extra ones ignored), list columns decoded, missing values imputed as in training
        (NaN where nothing was learned); magnitudes are not checked (past float32's range they are inf)."""
        with np.errstate(over="ignore"):
            values = None if isinstance(data, pd.DataFrame) else self._arrow_values(data, source)
            if values is None:
                values = np.ascontiguousarray(self._numbers(data, source).to_numpy(dtype=np.float32, na_value=np.nan))
            return self.fill_missing(values)

    def apply(self, data, source: str = "data") -> np.ndarray:
        """float32 features of ``data`` (as :meth:`values`), every value checked in float64 first: missing values
        left after imputation, infinities, huge values (one message per kind, naming the columns)."""
        frame = self._numbers(data, source)
        if self.fill:
            frame = frame.fillna(self.fill)
        check_missing(frame, source, self.na_values)
        return check_features(frame, name=source)

    def to_dict(self) -> dict:
        """A JSON-able dict (floats round-trip exactly through ``json``)."""
        return {
            "format": SPEC_FORMAT,
            "version": SPEC_VERSION,
            "columns": list(self.columns),
            "list_lengths": dict(self.list_lengths),
            "feature_names": list(self.feature_names),
            "id_column": self.id_column,
            "label_columns": list(self.label_columns),
            "dropped_columns": list(self.dropped_columns),
            "constant_columns": list(self.constant_columns),
            "impute": self.impute,
            "fill": dict(self.fill),
            "categories": {name: list(categories) for name, categories in self.categories.items()},
            "image_shape": None if self.image_shape is None else list(self.image_shape),
            "na_values": list(self.na_values),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ColumnSpec:
        """The spec :meth:`to_dict` wrote; ``ValueError`` for anything else."""
        if not isinstance(data, dict) or data.get("format") != SPEC_FORMAT or data.get("version") != SPEC_VERSION:
            found = (data.get("format"), data.get("version")) if isinstance(data, dict) else type(data).__name__
            raise invalid_value(
                "the column specification",
                f"a dict with format {SPEC_FORMAT!r} and version {SPEC_VERSION}",
                shorten(found),
                "Pass ColumnSpec.to_dict().",
            )
        try:
            spec = cls(
                columns=tuple(data["columns"]),
                feature_names=tuple(data["feature_names"]),
                list_lengths={str(k): int(v) for k, v in data["list_lengths"].items()},
                id_column=data["id_column"],
                label_columns=tuple(data["label_columns"]),
                dropped_columns=tuple(data["dropped_columns"]),
                constant_columns=tuple(data["constant_columns"]),
                impute=data["impute"],
                fill={str(k): float(v) for k, v in data["fill"].items()},
                # These three are absent from the specifications of older models.
                categories={str(k): tuple(str(c) for c in v) for k, v in data.get("categories", {}).items()},
                image_shape=tuple(int(d) for d in data["image_shape"]) if data.get("image_shape") else None,
                na_values=tuple(str(value) for value in data.get("na_values", ())),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise ValueError(
                f"The column specification is incomplete or malformed ({shorten(err)}). Pass ColumnSpec.to_dict()."
            ) from None
        unknown = [f for f in spec.feature_names if f not in spec._sources()]
        if unknown:
            raise ValueError(
                f"The column specification names features {describe_names(unknown)} that none of its columns "
                "give. Pass ColumnSpec.to_dict()."
            )
        return spec
