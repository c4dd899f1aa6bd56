"""Recall@K: exact neighbours found a block at a time, the measurement in compare and sweep,
and select_by="recall" in the keep-or-fallback rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from aepca._keras import keras
from aepca.cli import main
from aepca.data import open_source
from aepca.data.sources import interleaved_source
from aepca.data.synthetic import embeddings
from aepca.experiments.compare import compare
from aepca.fitting import Fit, Trained, resolve_settings, start_auto
from aepca.metrics import neighbour_recall
from aepca.models import AutoencoderNet
from aepca.neighbours import nearest_neighbours, query_positions, recall_per_query, resolve_metric, take_rows
from aepca.selection import CLEAR_IMPROVEMENT_Z
from conftest import float_tolerance, forward_roundings, mse_shift

# Recall is a share of k=10 neighbours averaged over queries; brute force and the blocked search
# may break a float rounding tie differently, so they agree to within one neighbour in a hundred.
RECALL_TOLERANCE = 0.01


@pytest.fixture(scope="module")
def store():
    """Unit-length "embeddings": 1,500 rows x 48 features."""
    return embeddings(n_samples=1500, n_features=48, latent_dim=6, seed=3)


def brute_force(database, queries, k, metric):
    return NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(database).kneighbors(
        queries, return_distance=False)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_blocked_search_finds_the_brute_force_neighbours_of_a_streamed_database(monkeypatch, store, metric):
    """The database is read a block of 200 rows at a time and searched in blocks of 64 rows."""
    monkeypatch.setattr("aepca.neighbours.DATABASE_BLOCK", 64)
    monkeypatch.setattr("aepca.neighbours.QUERY_BLOCK", 50)
    source = open_source(store.x_train, block_rows=200)
    assert source.n_blocks > 1
    found = nearest_neighbours(store.x_test, source, 10, metric)
    expected = brute_force(store.x_train, store.x_test, 10, metric)
    assert recall_per_query(found, expected).mean() >= 1 - RECALL_TOLERANCE


def test_neighbour_recall_matches_scikit_learn_on_codes(store):
    """Recall of a 4-d random projection's neighbours, against the same computation by brute force."""
    projection = np.random.default_rng(0).standard_normal((48, 4))
    true = brute_force(store.x_train, store.x_test, 10, "euclidean")
    ours = neighbour_recall(store.x_test @ projection, store.x_train @ projection, true, 10)
    found = brute_force(store.x_train @ projection, store.x_test @ projection, 10, "euclidean")
    expected = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, true)])
    assert ours == pytest.approx(expected, abs=RECALL_TOLERANCE)
    assert 0.05 < ours < 0.95  # a measurement that could fail either way


def test_a_query_among_the_database_is_not_its_own_neighbour(store):
    rows = store.x_train[:300]
    chosen = np.array([0, 17, 299])
    found = nearest_neighbours(rows[chosen], rows, 5, "euclidean", query_positions=chosen)
    assert not (found == chosen[:, None]).any()
    expected = brute_force(rows, rows[chosen], 6, "euclidean")[:, 1:]  # itself first, at distance 0
    assert recall_per_query(found, expected).mean() >= 1 - RECALL_TOLERANCE


def test_auto_metric_is_cosine_only_for_unit_length_rows(store):
    assert resolve_metric("auto", store.x_test) == ("cosine", "auto: the rows have unit length")
    assert resolve_metric("auto", 2 * store.x_test)[0] == "euclidean"
    assert resolve_metric("euclidean", store.x_test) == ("euclidean", "as set")


def test_auto_metric_is_the_one_the_data_declares(store):
    """An ANN-benchmarks file's distance (angular for glove: cosine) decides "auto"; a set metric wins."""
    assert resolve_metric("auto", 2 * store.x_test, "angular") == ("cosine", "auto: the data's distance is angular")
    assert resolve_metric("auto", store.x_test, "euclidean") == ("euclidean", "auto: the data's distance is euclidean")
    assert resolve_metric("auto", store.x_test, "hamming")[0] == "cosine"  # not one searched: the rows decide
    assert resolve_metric("euclidean", store.x_test, "angular") == ("euclidean", "as set")


def test_take_rows_reads_the_chosen_rows_a_block_at_a_time(store):
    source = open_source(store.x_train, block_rows=128)
    positions = query_positions(source.n_rows, 40, seed=5)
    np.testing.assert_array_equal(take_rows(source, positions), store.x_train[positions])


@pytest.mark.parametrize("arguments, message", [
    ({"neighbours": -1}, "neighbours=-1"),
    ({"neighbour_queries": 0}, "neighbour_queries=0"),
    ({"metric": "manhattan"}, "metric='manhattan'"),
])
def test_compare_refuses_bad_neighbour_settings_before_fitting(store, arguments, message):
    with pytest.raises(ValueError, match=message):
        compare(store, code_dim=2, epochs=1, **arguments)


def test_compare_records_recall_equal_to_a_brute_force_search(store):
    """The recorded recall of both methods, recomputed with scikit-learn on the same rows: the
    seeded queries, the training rows, PCA's and the network's codes and reconstructions."""
    comparison = compare(store, code_dim=3, recipe="classic", hidden=(16,), epochs=2, seed=1, scale="none", neighbours=10,
                         neighbour_queries=150)
    metrics, estimator = comparison.metrics, comparison.estimator
    queries = store.x_test[query_positions(len(store.x_test), 150, seed=1)]
    true = brute_force(store.x_train, queries, 10, "cosine")
    pca = estimator.pca_
    spaces = {
        "pca": (pca.transform, lambda rows: pca.inverse_transform(pca.transform(rows))),
        "autoencoder": (estimator.transform, estimator.reconstruct),
    }
    for name, (encode, rebuild) in spaces.items():
        record = metrics[name]["neighbours"]
        assert (record["k"], record["queries"], record["metric"]) == (10, 150, "cosine")
        assert record["metric_reason"] == "auto: the rows have unit length" and record["seconds"] > 0
        for key, transform in (("recall_codes", encode), ("recall_reconstructions", rebuild)):
            found = brute_force(transform(store.x_train), transform(queries), 10, "cosine")
            assert record[key] == pytest.approx(recall_per_query(found, true).mean(), abs=RECALL_TOLERANCE), (name, key)
    # The network's training MSE comes from the same pass: equal to score's up to float32 rounding
    # (each value as far as one pass through the network rounds, conftest.mse_shift).
    delta = float_tolerance(np.float32, np.abs(store.x_train).max(), np.sqrt(forward_roundings(estimator.model_)))
    assert metrics["autoencoder"]["train_mse"] == pytest.approx(
        -estimator.score(store.x_train), rel=0, abs=mse_shift(metrics["autoencoder"]["train_mse"], delta))
    table = comparison.table_rows()
    assert table[0]["recall@10 codes"] == metrics["pca"]["neighbours"]["recall_codes"]
    assert table[1]["recall@10 reconstructions"] == metrics["autoencoder"]["neighbours"]["recall_reconstructions"]
    assert any(note.startswith("Neighbours kept (recall@10 of 150 test rows'") for note in comparison.notes)


def test_methods_see_the_training_rows_a_database_block_at_a_time(monkeypatch):
    import aepca.neighbours as neighbours

    monkeypatch.setattr(neighbours, "DATABASE_BLOCK", 64)
    rows = np.random.default_rng(0).random((400, 3)).astype(np.float32)
    seen = []

    def same(x):  # codes and reconstructions: the rows themselves
        seen.append(len(x))
        return x, x

    train = open_source(rows[:300])  # one block of 300 rows
    found = neighbours.measure(train, open_source(rows[300:]), lambda x: x, {"pca": same}, k=5, queries=50)
    assert max(seen) == 64 and sum(seen) == 50 + 300  # the queries once, then the 300 rows in pieces
    assert found["pca"]["recall_codes"] == 1.0  # the pieces' neighbours merged as the whole block's


def test_a_k_above_the_training_rows_searches_all_of_them_and_says_so():
    from aepca.neighbours import measure, recall_note

    rows = np.random.default_rng(0).random((10, 3)).astype(np.float32)
    same = lambda x: (x, x)  # noqa: E731 - codes and reconstructions: the rows themselves
    found = measure(open_source(rows[:6]), open_source(rows[6:]), lambda x: x, {"pca": same, "autoencoder": same}, k=10)
    assert found["pca"]["k"] == 6 and found["pca"]["recall_codes"] == 1.0
    assert "K cut from 10 to the 6 training rows" in recall_note(found["pca"], found["autoencoder"], mse_lower=False)


def test_neighbours_zero_switches_the_measurement_off(store):
    comparison = compare(store, code_dim=2, recipe="classic", hidden=(8,), epochs=1, neighbours=0)
    assert "neighbours" not in comparison.metrics["pca"] and "neighbours" not in comparison.metrics["autoencoder"]
    assert not any("recall@" in column for column in comparison.table_rows()[0])


# The keep-or-fallback rule judged on recall -------------------------------------------------------------


def scrambling_identity(n_features: int, n_components: int) -> AutoencoderNet:
    """A "network" that reconstructs every row exactly (no MSE at all) while its codes scramble
    neighbourhoods: each code is the sine of a steep random projection."""
    projection = np.random.default_rng(1).standard_normal((n_features, n_components)).astype(np.float32) * 500
    rows = keras.Input((n_features,))
    codes = keras.layers.Lambda(lambda x: keras.ops.sin(keras.ops.matmul(x, projection)))(rows)
    copy = keras.layers.Lambda(lambda x: x * 1.0)(rows)
    encoder, autoencoder = keras.Model(rows, codes), keras.Model(rows, copy)
    return AutoencoderNet(autoencoder=autoencoder, encoder=encoder, decoder=autoencoder)


def scrambler_judged(monkeypatch, source, **options) -> Trained:
    """init="auto" on validation rows (``options``: Fit's) between PCA and the scrambling network."""
    settings = resolve_settings("fast", {"init": "auto", "folds": 0, "validation_fraction": 0.3, "epochs": 1},
                                source.n_rows, source.n_features, 3)
    fit = Fit.prepare(source, None, n_components=3, settings=settings, scale="none", seed=0, params={}, **options)

    def fit_network(self, init, *args, **kwargs):
        if init == "random":
            return Trained(scrambling_identity(source.n_features, 3), {}, "random", "linear")
        return self.untrained_pca("a PCA start")

    monkeypatch.setattr(Fit, "fit_network", fit_network)
    return start_auto(fit)


@pytest.mark.parametrize("select_by, kept", [("mse", "random"), ("recall", "pca")])
def test_a_network_better_on_mse_that_scrambles_neighbours_is_kept_only_by_mse(monkeypatch, store, select_by, kept):
    """init="auto" on validation rows: the scrambling network wins on MSE (zero error), so the MSE
    rule keeps it; the recall rule sees its codes find fewer neighbours than PCA's and keeps PCA."""
    trained = scrambler_judged(monkeypatch, open_source(store.x_train), select_by=select_by)
    selection = trained.history["selection"]
    assert trained.init == kept and selection["z_threshold"] == CLEAR_IMPROVEMENT_Z
    if select_by == "recall":
        assert selection["criterion"] == "recall@10 of the codes"
        assert selection["network_recall"] < selection["pca_recall"] and not selection["kept_network"]
    else:
        assert selection["criterion"] == "mse" and selection["kept_network"]


@pytest.mark.parametrize("metric, declared, lengths, searched", [
    ("auto", "angular", 2.0, ("cosine", "auto: the data's distance is angular")),
    ("auto", None, 2.0, ("euclidean", "auto: the rows do not all have unit length")),
    ("euclidean", "angular", 1.0, ("euclidean", "as set")),
])
def test_the_recall_rule_seeks_neighbours_by_the_metric_set_else_the_one_the_data_declares(
        monkeypatch, store, metric, declared, lengths, searched):
    """As the reported neighbours are sought: a set metric, else the data's declared distance, else by the rows' lengths."""
    source = interleaved_source(lengths * store.x_train, distance=declared)
    selection = scrambler_judged(monkeypatch, source, select_by="recall", metric=metric).history["selection"]
    assert (selection["metric"], selection["metric_reason"]) == searched


def test_recall_rule_on_folds_records_its_evidence(store):
    """select_by="recall" through the estimator on few rows (folds): the evidence is recall, and the
    decision is the paired rule's on it."""
    from aepca import Autoencoder

    model = Autoencoder(n_components=3, select_by="recall", init="auto", folds=3, epochs=2, random_state=0)
    model.fit(store.x_train[:600])
    selection = model.history_["selection"]
    assert selection["criterion"] == "recall@10 of the codes" and selection["rows"] == 600
    assert selection["kept_network"] == (selection["z"] is not None and selection["z"] > selection["z_threshold"])
    assert model.init_ == ("random" if selection["kept_network"] else "pca")


# The command ---------------------------------------------------------------------------------------------


def test_compare_flags_reach_metrics_json(capsys, tmp_path, store):
    data = tmp_path / "store.npy"
    np.save(data, store.x_train[:800])
    out = tmp_path / "run"
    status = main(["compare", str(data), "--code-dim", "2", "--epochs", "1", "--scale", "none", "--neighbours", "5",
                   "--neighbour-queries", "40", "--metric", "euclidean", "--select-by", "recall", "--no-progress",
                   "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("pca", "autoencoder"):
        record = metrics[name]["neighbours"]
        assert (record["k"], record["queries"], record["metric"], record["metric_reason"]) == (5, 40, "euclidean", "as set")
        # The table printed shows the recorded numbers (4 significant digits).
        assert f"{record['recall_codes']:.4g}" in captured.out
    assert metrics["autoencoder"]["params"]["select_by"] == "recall"
    assert metrics["autoencoder"]["selection"]["criterion"] == "recall@10 of the codes"
    # The keep rule searched by the --metric set, not by auto's cosine for these unit-length rows.
    assert metrics["autoencoder"]["selection"]["metric"] == "euclidean"
    assert "recall@5 codes" in captured.out and "note: Neighbours kept (recall@5" in captured.out
    assert "recall@5 codes" in (out / "report.html").read_text()


@pytest.mark.slow
def test_sweep_rows_carry_both_methods_recall(tmp_path, store):
    from aepca.experiments.sweep import sweep

    result = sweep(store, [1, 2], epochs=1, neighbours=5, neighbour_queries=30)
    for row, cells in zip(result.rows, result.table_rows()):
        assert cells["PCA recall@5 codes"] == row["pca_neighbours"]["recall_codes"]
        assert cells["AE recall@5 reconstructions"] == row["autoencoder_neighbours"]["recall_reconstructions"]
    assert sum(note.startswith("k=2: Neighbours kept") for note in result.notes()) == 1


@pytest.mark.slow
def test_sweep_flags_reach_sweep_json(capsys, tmp_path, store):
    data = tmp_path / "store.npy"
    np.save(data, store.x_train[:600])
    out = tmp_path / "sweep"
    status = main(["sweep", str(data), "--code-dims", "1", "--epochs", "1", "--neighbours", "4", "--neighbour-queries", "25",
                   "--metric", "cosine", "--no-progress", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    row = json.loads((out / "sweep.json").read_text())["rows"][0]
    for name in ("pca_neighbours", "autoencoder_neighbours"):
        assert (row[name]["k"], row[name]["queries"], row[name]["metric"]) == (4, 25, "cosine")
    assert "PCA recall@4 codes" in captured.out and "k=1: Neighbours kept (recall@4" in captured.out


@pytest.mark.slow
def test_on_embeddings_where_mse_and_recall_disagree_select_by_recall_keeps_pca():
    """The worked example of docs/neighbours.md: 20,000 unit-length rows x 128, k=16. The network
    is kept on MSE (far lower) while its codes keep fewer neighbours than PCA's; judged on recall,
    PCA is kept."""
    store = embeddings(n_samples=20000, n_features=128, latent_dim=16, seed=0)
    rows = np.concatenate([store.x_train, store.x_test])
    by_mse = compare(rows, code_dim=16, scale="none")
    network = by_mse.metrics["autoencoder"]
    assert network["selection"]["kept_network"] and network["test_mse"] < by_mse.metrics["pca"]["test_mse"]
    assert network["neighbours"]["paired_with_first"]["codes_difference"] < -2 * network["neighbours"]["paired_with_first"]["codes_standard_error"]
    by_recall = compare(rows, code_dim=16, scale="none", select_by="recall")
    selection = by_recall.metrics["autoencoder"]["selection"]
    assert selection["criterion"] == "recall@10 of the codes" and not selection["kept_network"]
    assert selection["network_recall"] < selection["pca_recall"]


@pytest.mark.parametrize("command", ["compare", "sweep"])
def test_help_names_the_neighbour_options(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    for option in ("--neighbours K", "--neighbour-queries N", "--metric", "--select-by"):
        assert option in text
