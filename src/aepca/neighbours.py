"""Exact nearest neighbours and recall@K: does a compression keep each row's neighbours?

People store codes (or reconstructions) in a vector index and search them; what
they need to know is whether each item's K nearest neighbours survive. Here the
true neighbours are found exactly in the error space, and the same search is
run in a method's codes and in its reconstructions; recall@K is the share of
the true K found among the K returned.

The search is exact and reads the database a block at a time, keeping a running
top-K per query (``numpy.argpartition``): memory is bounded by a query block
times a database block, so the database may be a streamed
:class:`aepca.data.sources.RowSource`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from aepca.data.sources import RowSource
from aepca.validation import invalid_value

METRICS = ("euclidean", "cosine", "auto")
DEFAULT_K = 10
DEFAULT_QUERIES = 1000
# "auto" takes cosine when every row's length is within this of 1: float32 rows
# normalised to length 1 are within a few 1e-7; text files round further.
UNIT_TOLERANCE = 1e-3
# Rows compared at a time: a 1024 x 8192 float32 distance block is 32 MiB.
QUERY_BLOCK = 1024
DATABASE_BLOCK = 8192


def check_neighbour_settings(k, queries, metric: str) -> None:
    """One-line errors for a bad K (>= 0; 0 switches the measurement off), query count (>= 1) or metric."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise invalid_value("neighbours", "an integer >= 0 (0 switches the measurement off)", f"neighbours={k!r}")
    if isinstance(queries, bool) or not isinstance(queries, (int, np.integer)) or queries < 1:
        raise invalid_value("neighbour_queries", "an integer >= 1", f"neighbour_queries={queries!r}")
    if metric not in METRICS:
        raise invalid_value("metric", f"one of {', '.join(METRICS)}", f"metric={metric!r}")


# The metric "auto" takes from a distance the data declares (an ANN-benchmarks HDF5 file's attribute).
DECLARED_METRICS = {"angular": "cosine", "cosine": "cosine", "euclidean": "euclidean"}


def resolve_metric(metric: str, rows: np.ndarray, declared: str | None = None) -> tuple[str, str]:
    """The metric to search with and why: ``"auto"`` is the one the data declares (``declared``, a key of
    ``DECLARED_METRICS``), else cosine when every row of ``rows`` has length 1 (within ``UNIT_TOLERANCE``),
    else euclidean."""
    check_neighbour_settings(0, 1, metric)
    if metric != "auto":
        return metric, "as set"
    if declared in DECLARED_METRICS:
        return DECLARED_METRICS[declared], f"auto: the data's distance is {declared}"
    lengths = np.linalg.norm(np.asarray(rows, np.float64), axis=1)
    if len(lengths) and np.all(np.abs(lengths - 1) <= UNIT_TOLERANCE):
        return "cosine", "auto: the rows have unit length"
    return "euclidean", "auto: the rows do not all have unit length"


def _prepared(rows, metric: str) -> np.ndarray:
    """Rows in float32 (for cosine scaled to unit length in float64 first; a zero row stays zero).
    float32 distances rank rows as float64 ones do unless two distances differ by less than
    about 1e-7 of the rows' squared length: a near tie, which recall counts either way."""
    rows = np.asarray(rows, np.float64 if metric == "cosine" else np.float32)
    if metric == "cosine":
        lengths = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = rows / np.where(lengths > 0, lengths, 1.0)
    return np.ascontiguousarray(rows, np.float32)


class RunningNeighbours:
    """The ``k`` nearest database rows of each query among those added so far.

    ``add`` takes the database a block at a time, in order; ``indices`` are
    positions in that order. ``query_positions`` (the queries' own positions
    in the database, when they are among its rows) excludes each query from
    its own neighbours.
    """

    def __init__(self, queries, k: int, metric: str, *, query_positions=None):
        if metric not in ("euclidean", "cosine"):
            raise invalid_value("metric", "euclidean or cosine (resolve auto first)", f"metric={metric!r}")
        self.k, self.metric = int(k), metric
        # Scaled so that one product gives each score: -2 q.x (euclidean, plus |x|^2) or -q.x (cosine).
        self._scaled_queries = _prepared(queries, metric) * np.float32(-2.0 if metric == "euclidean" else -1.0)
        self.query_positions = None if query_positions is None else np.asarray(query_positions, np.int64)
        self._scores = np.full((len(self._scaled_queries), self.k), np.inf, np.float32)
        self._indices = np.full((len(self._scaled_queries), self.k), -1, np.int64)
        self.seen = 0

    def add(self, rows) -> None:
        rows = _prepared(rows, self.metric)
        for start in range(0, len(rows), DATABASE_BLOCK):
            block = rows[start : start + DATABASE_BLOCK]
            positions = np.arange(self.seen + start, self.seen + start + len(block))
            # Squared distances less each query's own squared length (the same for all its candidates).
            lengths = np.einsum("ij,ij->i", block, block) if self.metric == "euclidean" else None
            for q in range(0, len(self._scaled_queries), QUERY_BLOCK):
                scores = self._scaled_queries[q : q + QUERY_BLOCK] @ block.T
                if lengths is not None:
                    scores += lengths
                if self.query_positions is not None:
                    scores[self.query_positions[q : q + QUERY_BLOCK, None] == positions[None, :]] = np.inf
                self._merge(slice(q, q + QUERY_BLOCK), scores, positions)
        self.seen += len(rows)

    def _merge(self, queries: slice, scores: np.ndarray, positions: np.ndarray) -> None:
        kth = self._scores[queries].max(axis=1)
        if np.isinf(kth).any() and scores.shape[1] > self.k:
            # The block's own best k, then those against the k kept: no copy of the whole block.
            best = np.argpartition(scores, self.k - 1, axis=1)[:, : self.k]
            scores, positions = np.take_along_axis(scores, best, axis=1), positions[best]
        else:
            # Only rows closer than a query's k-th kept can enter: after the first blocks, a few.
            rows, columns = np.divmod(np.flatnonzero(scores < kth[:, None]), scores.shape[1])
            counts = np.bincount(rows, minlength=len(scores))
            slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
            entering = np.full((len(scores), max(int(counts.max(initial=0)), 1)), np.inf, np.float32)
            entering_positions = np.full(entering.shape, -1, np.int64)
            entering[rows, slot], entering_positions[rows, slot] = scores[rows, columns], positions[columns]
            scores, positions = entering, entering_positions
        candidates = np.concatenate([self._scores[queries], scores], axis=1)
        indices = np.concatenate([self._indices[queries], positions], axis=1)
        best = np.argpartition(candidates, self.k - 1, axis=1)[:, : self.k]
        self._scores[queries] = np.take_along_axis(candidates, best, axis=1)
        self._indices[queries] = np.take_along_axis(indices, best, axis=1)

    @property
    def indices(self) -> np.ndarray:
        """``(n_queries, k)`` database positions, nearest first."""
        needed = self.k + (self.query_positions is not None)
        if self.seen < needed:
            raise invalid_value("neighbours", f"fewer than the {self.seen} database rows searched",
                                f"neighbours={self.k}", "Search more rows or ask for fewer neighbours.")
        order = np.argsort(self._scores, axis=1, kind="stable")
        return np.take_along_axis(self._indices, order, axis=1)


def nearest_neighbours(queries, database, k: int, metric: str = "euclidean", *, query_positions=None) -> np.ndarray:
    """Exact ``k`` nearest rows of ``database`` (an array or a row source, read a block at a time)
    for each query, as ``(n_queries, k)`` row positions, nearest first; ``metric`` "euclidean",
    "cosine" or "auto" (see :func:`resolve_metric`, judged on the queries)."""
    metric = resolve_metric(metric, queries)[0]
    search = RunningNeighbours(queries, k, metric, query_positions=query_positions)
    for block in database.iter_blocks() if isinstance(database, RowSource) else [np.asarray(database)]:
        search.add(block)
    return search.indices


def recall_per_query(found: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Each query's share of its true neighbours (``true``, ``(n, k)``) among those ``found`` (``(n, k)``)."""
    found, true = np.asarray(found), np.asarray(true)
    if found.shape != true.shape:
        raise invalid_value("found", f"neighbour positions shaped like the true ones {true.shape}", f"shape {found.shape}")
    hits = (found[:, :, None] == true[:, None, :]).any(axis=2).sum(axis=1)
    return hits / max(true.shape[1], 1)


def neighbour_recall(query_codes, database_codes, true_neighbours, k: int | None = None,
                     metric: str = "euclidean", *, per_query: bool = False):
    """Recall@``k``: the mean share of each query's true ``k`` nearest neighbours (``true_neighbours``,
    database positions, nearest first, e.g. from :func:`nearest_neighbours` on the original rows)
    that an exact ``k``-nearest search of ``database_codes`` (an array or a row source) finds for
    ``query_codes``. ``k`` defaults to ``true_neighbours``' width; ``per_query`` returns each query's recall.
    """
    true = np.asarray(true_neighbours)[:, : k or None]
    if true.ndim != 2 or len(true) != len(query_codes):
        raise invalid_value("true_neighbours", f"one row of positions per query ({len(query_codes)})",
                            f"shape {np.shape(true_neighbours)}")
    recalls = recall_per_query(nearest_neighbours(query_codes, database_codes, true.shape[1], metric), true)
    return recalls if per_query else float(recalls.mean())


def take_rows(source: RowSource, positions: np.ndarray) -> np.ndarray:
    """The rows of ``source`` at sorted reading-order ``positions``, read a block at a time."""
    taken, at = [], 0
    for block in source.iter_blocks():
        inside = positions[(positions >= at) & (positions < at + len(block))]
        taken.append(block[inside - at])
        at += len(block)
    return np.concatenate(taken) if taken else np.zeros((0, source.n_features), np.float32)


def query_positions(n_rows: int, queries: int, seed: int) -> np.ndarray:
    """A seeded choice of ``min(queries, n_rows)`` row positions, sorted."""
    rng = np.random.default_rng([seed, 0x6E6E])  # a stream of its own: no other choice shares it
    return np.sort(rng.choice(n_rows, size=min(queries, n_rows), replace=False))


# A method as the search sees it: a block of error-space rows -> (codes, reconstructions in the error space).
Method = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def measure(train: RowSource, test: RowSource, to_space: Callable[[np.ndarray], np.ndarray], methods: dict[str, Method],
            *, k: int = DEFAULT_K, queries: int = DEFAULT_QUERIES, metric: str = "auto", declared: str | None = None,
            seed: int = 0, observe: Callable[[str, np.ndarray, np.ndarray], None] | None = None) -> dict:
    """Recall@``k`` of each method: ``queries`` test rows (a seeded choice) search the training rows
    (``to_space`` maps rows to the error space) in one pass over them. True neighbours are exact in
    the error space; each method's codes and reconstructions are searched for the same queries
    (``metric`` and ``declared``: :func:`resolve_metric`'s). Returns ``{name: {"k", "queries", "metric",
    "metric_reason", "recall_codes", "recall_reconstructions", "seconds"}}`` (with ``"k_reason"`` when there were fewer than ``k``
    training rows, each then searched for all of them), the seconds being the whole measurement's; every
    method after the first also gets ``"paired_with_first"``: the mean per-query difference of
    its recall from the first method's, and that mean's standard error, for codes and reconstructions.
    ``observe(name, rows, rebuilt)``, if given, sees each piece of training rows in the error space and
    what a method returned for them as reconstructions (e.g. to sum errors in the same pass)."""
    started = time.perf_counter()
    # A K of more neighbours than there are training rows is cut to all of them (a table of few rows).
    asked, k = k, min(k, train.n_rows)
    query_rows = to_space(take_rows(test, query_positions(test.n_rows, queries, seed)))
    metric, reason = resolve_metric(metric, query_rows, declared)
    truth = RunningNeighbours(query_rows, k, metric)
    searches = {}
    for name, method in methods.items():
        codes, rebuilt = method(query_rows)
        searches[name] = (RunningNeighbours(codes, k, metric), RunningNeighbours(rebuilt, k, metric), method)
    for block in train.iter_blocks():
        # A database block's rows at a time: a method's reconstructions of a whole source block
        # would set the run's peak memory.
        for start in range(0, len(block), DATABASE_BLOCK):
            space = to_space(block[start : start + DATABASE_BLOCK])
            truth.add(space)
            for name, (in_codes, in_rebuilt, method) in searches.items():
                codes, rebuilt = method(space)
                if observe is not None:
                    observe(name, space, rebuilt)
                in_codes.add(codes)
                in_rebuilt.add(rebuilt)
    true = truth.indices
    recalls = {name: (recall_per_query(in_codes.indices, true), recall_per_query(in_rebuilt.indices, true))
               for name, (in_codes, in_rebuilt, _) in searches.items()}
    seconds = time.perf_counter() - started
    first_name = next(iter(recalls))
    first = recalls[first_name]
    records = {}
    for name, (codes, rebuilt) in recalls.items():
        records[name] = {"k": int(k), "queries": len(query_rows), "metric": metric, "metric_reason": reason,
                         "recall_codes": float(codes.mean()), "recall_reconstructions": float(rebuilt.mean()),
                         "seconds": seconds}
        if k < asked:
            records[name]["k_reason"] = f"K cut from {asked} to the {k} training rows"
        if name != first_name:
            records[name]["paired_with_first"] = {
                f"{what}_{stat}": value for what, ours, theirs in (("codes", codes, first[0]), ("reconstructions", rebuilt, first[1]))
                for stat, value in zip(("difference", "standard_error"), _paired(ours - theirs))
            }
    return records


def _paired(differences: np.ndarray) -> tuple[float, float]:
    error = differences.std(ddof=1) / np.sqrt(len(differences)) if len(differences) > 1 else float("inf")
    return float(differences.mean()), float(error)


def compare_methods(train: RowSource, test: RowSource, estimator, *, k: int = DEFAULT_K, queries: int = DEFAULT_QUERIES,
                    metric: str = "auto", declared: str | None = None, seed: int = 0) -> tuple[dict, float]:
    """:func:`measure` for a fitted :class:`aepca.Autoencoder` and its ``pca_`` (``{"pca": ..., "autoencoder": ...}``),
    and the network's MSE over the training rows in the error space (the pass runs the network on
    every one, so it needs no pass of its own). The network's reconstructions are decoded from the
    same codes that are searched, as ``reconstruct`` does. PCA's
    reconstructions ``mean + codes @ components`` are searched in k + 1 coordinates with the same
    lengths, distances and angles (exact, as its directions are orthonormal): their coordinates
    along the directions, ``codes + components @ mean``, and the length of the mean's part
    outside them; a d-dimensional search of them would cost as much as the true neighbours'."""
    from aepca.metrics import sample_mse
    from aepca.models import predict

    space, pca = estimator.space_, estimator.pca_
    components, mean = pca.components_, pca.mean_
    along = components @ mean
    outside = float(np.linalg.norm(mean - along @ components))

    def pca_method(rows):
        codes = pca.transform(rows)
        return codes, np.hstack([codes + along, np.full((len(codes), 1), outside)])

    def network_method(rows):
        codes = estimator._codes(space.to_network(rows))
        return codes, space.from_network(predict(estimator.decoder_, codes))

    total = [0.0]  # the training rows' per-row MSE, summed

    def observe(name, rows, rebuilt):
        if name == "autoencoder":
            total[0] += float(sample_mse(rows, rebuilt).sum())

    records = measure(train, test, space.scaler.transform, {"pca": pca_method, "autoencoder": network_method},
                      k=k, queries=queries, metric=metric, declared=declared, seed=seed, observe=observe)
    return records, total[0] / max(train.n_rows, 1)


def recall_columns(record: dict, prefix: str = "") -> dict:
    """Table cells of a method's ``neighbours`` record (none when not measured)."""
    found = record.get("neighbours")
    if not found:
        return {}
    return {f"{prefix}recall@{found['k']} codes": found["recall_codes"],
            f"{prefix}recall@{found['k']} reconstructions": found["recall_reconstructions"]}


def recall_verdict(network: dict, what: str) -> int:
    """+1 when the network's recall (``what``: "codes" or "reconstructions") is above PCA's by more
    than two standard errors of the paired per-query difference, -1 when below, 0 within noise."""
    paired = network.get("paired_with_first", {})
    difference, error = paired.get(f"{what}_difference", 0.0), paired.get(f"{what}_standard_error", float("inf"))
    return 0 if abs(difference) <= 2 * error else int(np.sign(difference))


def recall_note(pca: dict, network: dict, mse_lower: bool) -> str:
    """What the neighbours say beside the MSE (``mse_lower``: the network's test MSE is below PCA's):
    both methods' recall, searching codes and reconstructions, and where MSE and recall disagree."""

    def verdict(what: str) -> str:
        sign = recall_verdict(network, what)
        difference = network["paired_with_first"][f"{what}_difference"]
        return "equal to PCA's within noise" if sign == 0 else f"{'above' if sign > 0 else 'below'} PCA's by {abs(difference):.3f}"

    disagree = ""
    if mse_lower and recall_verdict(network, "codes") < 0:
        disagree = " The autoencoder's MSE is lower, yet searching its codes finds fewer neighbours than PCA's: for an index of codes, PCA is the better choice."
    elif not mse_lower and recall_verdict(network, "codes") > 0:
        disagree = " The autoencoder's MSE is not lower, yet searching its codes finds more neighbours than PCA's."
    cut = f"; {pca['k_reason']}" if "k_reason" in pca else ""
    return (f"Neighbours kept (recall@{pca['k']} of {pca['queries']} test rows' nearest training rows, "
            f"{pca['metric']} distance, {pca['metric_reason']}{cut}): searching codes, PCA {pca['recall_codes']:.3f}, "
            f"autoencoder {network['recall_codes']:.3f} ({verdict('codes')}); searching reconstructions, "
            f"PCA {pca['recall_reconstructions']:.3f}, autoencoder {network['recall_reconstructions']:.3f} "
            f"({verdict('reconstructions')}); {pca['seconds']:.1f} s.{disagree}")


def code_recall_misses(rows: np.ndarray, codes_by_method: dict[str, np.ndarray], *, k: int = DEFAULT_K,
                       queries: int = DEFAULT_QUERIES, metric: str = "auto", declared: str | None = None,
                       seed: int = 0) -> tuple[dict[str, np.ndarray], tuple[str, str]]:
    """The keep-or-fallback rule's evidence for ``select_by="recall"``: for up to ``queries`` of the
    held-out ``rows`` (a seeded choice), each query's share of its true ``k`` nearest neighbours among
    the other held-out rows (exact, in the error space) that a search of each method's codes of the
    same rows misses (``1 - recall``; lower is better, so the rule's paired test applies unchanged);
    and the distance searched with and why (``metric`` and ``declared`` as :func:`resolve_metric` takes them)."""
    rows = np.asarray(rows)
    k = min(k, len(rows) - 1)
    chosen = query_positions(len(rows), queries, seed)
    metric, reason = resolve_metric(metric, rows[chosen], declared)
    true = nearest_neighbours(rows[chosen], rows, k, metric, query_positions=chosen)
    misses = {name: 1 - recall_per_query(nearest_neighbours(codes[chosen], codes, k, metric, query_positions=chosen), true)
              for name, codes in codes_by_method.items()}
    return misses, (metric, reason)
