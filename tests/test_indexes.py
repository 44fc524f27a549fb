"""The three indexes on their own: scores against reference implementations, updates, save/load."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import scipy.sparse as sp
from rank_bm25 import BM25Okapi
from sklearn.feature_extraction.text import TfidfVectorizer

from ragtune.core.errors import InputError, StoreFormatError
from ragtune.indexes.base import candidates_of_all, top_k
from ragtune.indexes.bm25 import BM25Config, BM25Index
from ragtune.indexes.dense import DenseConfig, DenseIndex
from ragtune.indexes.tfidf import TfidfIndex
from ragtune.indexes.tokenize import Tokenizer
from tests.conftest import FakeEmbedder

WORDS = [
    "adapter",
    "rank",
    "alpha",
    "quantization",
    "memory",
    "index",
    "retrieval",
    "chunk",
    "token",
    "vector",
    "query",
    "score",
]


def random_corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    # Skewed word choice, so some terms occur in most documents (negative idf) and some in few.
    return [
        " ".join(rng.choices(WORDS, weights=range(len(WORDS), 0, -1), k=rng.randint(3, 30))) for _ in range(n)
    ]


def build(index, texts):
    return index.updated(np.zeros(len(index), dtype=bool), texts)


QUERIES = [
    "adapter rank",
    "query query score",
    "memory unknownword",
    "alpha alpha alpha index",
    "nothing here",
]


@pytest.mark.parametrize("query", QUERIES)
def test_bm25_scores_equal_rank_bm25(query):
    texts = random_corpus(300)
    tokenize = Tokenizer()
    reference = BM25Okapi([tokenize(t) for t in texts]).get_scores(tokenize(query))
    scores, _ = build(BM25Index.empty(), texts).scores(query)
    np.testing.assert_allclose(scores, reference, atol=1e-6, rtol=0)


def test_bm25_top_k_matches_rank_bm25_order():
    texts = random_corpus(500, seed=1)
    tokenize = Tokenizer()
    reference = BM25Okapi([tokenize(t) for t in texts]).get_scores(tokenize("vector token"))
    ranking = build(BM25Index.empty(), texts).search("vector token", 10)
    np.testing.assert_allclose(ranking.scores, np.sort(reference)[::-1][:10], atol=1e-9)
    # The rows, not only the scores: each row returned is one that rank_bm25 gives that score.
    np.testing.assert_allclose(reference[ranking.rows], ranking.scores, atol=1e-9)
    assert len(set(ranking.rows.tolist())) == 10


def test_top_k_breaks_ties_by_lower_row():
    scores = np.array([1.0, 3.0, 2.0, 2.0, 2.0, 2.0, 0.5])
    ranking = top_k(scores, np.arange(7), 3)
    assert ranking.rows.tolist() == [1, 2, 3]
    assert ranking.scores.tolist() == [3.0, 2.0, 2.0]


@pytest.mark.parametrize("n", [5, 640, 1000, 20_011])
def test_the_top_k_of_the_candidates_of_all_rows_equals_top_k_over_every_row_with_ties_and_rows_left_out(n):
    rng = np.random.default_rng(n)
    scores = rng.integers(0, 50, n).astype(np.float32)  # many ties
    scores[rng.random(n) < 0.3] = -np.inf  # rows left out (deleted)
    live = np.flatnonzero(scores > -np.inf)
    for k in (1, 10, 50, n):
        expected, found = top_k(scores, live, k), top_k(scores, candidates_of_all(scores, k), k)
        assert found.rows.tolist() == expected.rows.tolist()
        assert found.scores.tolist() == expected.scores.tolist()


def test_a_shorter_search_is_a_prefix_of_a_longer_one():
    index = build(BM25Index.empty(), random_corpus(300, seed=6))
    for query in QUERIES:
        assert index.search(query, 5).rows.tolist() == index.search(query, 10).rows.tolist()[:5]


def test_bm25_top_10_set_equals_rank_bm25_with_ties_to_the_lower_row():
    texts = random_corpus(500, seed=7)
    tokenize = Tokenizer()
    reference = BM25Okapi([tokenize(t) for t in texts]).get_scores(tokenize("memory index"))
    # ragtune ranks only rows holding a query term (rank_bm25 also ranks the rest, at score 0).
    matching = np.array([i for i, t in enumerate(texts) if {"memory", "index"} & set(tokenize(t))])
    expected = matching[np.lexsort((matching, -reference[matching]))][:10]
    assert build(BM25Index.empty(), texts).search("memory index", 10).rows.tolist() == expected.tolist()


def test_bm25_update_equals_fresh_build():
    texts = random_corpus(200, seed=2)
    first = build(BM25Index.empty(), texts[:150])
    keep = np.ones(150, dtype=bool)
    keep[[3, 40, 99]] = False
    updated = first.updated(keep, texts[150:])
    expected_texts = [t for t, k in zip(texts[:150], keep, strict=True) if k] + texts[150:]
    fresh = build(BM25Index.empty(), expected_texts)
    for query in QUERIES:
        np.testing.assert_allclose(updated.scores(query)[0], fresh.scores(query)[0], atol=1e-9)


def test_bm25_only_returns_rows_that_contain_a_query_term():
    index = build(BM25Index.empty(), ["adapter merge", "memory vector", "vector index"])
    assert sorted(index.search("vector", 10).rows.tolist()) == [1, 2]
    assert index.search("zzz", 10).rows.size == 0


def test_bm25_rejects_bad_parameters_by_name():
    with pytest.raises(InputError, match="b=2"):
        BM25Config(b=2)


@pytest.mark.parametrize("query", QUERIES[:4])
def test_tfidf_scores_equal_scikit_learn_cosine(query):
    texts = random_corpus(200, seed=3)
    tokenize = Tokenizer()
    vectorizer = TfidfVectorizer(analyzer=tokenize, sublinear_tf=True)
    matrix = vectorizer.fit_transform(texts)
    reference = (matrix @ vectorizer.transform([query]).T).toarray().ravel()
    ranking = build(TfidfIndex.empty(), texts).search(query, 20)
    np.testing.assert_allclose(ranking.scores, np.sort(reference)[::-1][: len(ranking.scores)], atol=1e-9)
    np.testing.assert_allclose(reference[ranking.rows], ranking.scores, atol=1e-9)  # the rows themselves
    assert len(ranking.rows) == min(20, np.count_nonzero(reference)) == len(set(ranking.rows.tolist()))


def test_dense_embeds_only_texts_it_has_not_seen():
    embedder = FakeEmbedder()
    index = build(DenseIndex.empty(embedder), ["alpha one", "beta two", "gamma three"])
    keep = np.array([True, False, True])
    updated = index.updated(keep, ["beta two", "delta four"])  # "beta two" was seen before
    assert embedder.embedded == ["alpha one", "beta two", "gamma three", "delta four"]
    assert updated.embedded == 1
    assert len(updated) == 4


def test_dense_hnsw_finds_the_same_best_row_as_exact_search():
    texts = random_corpus(400, seed=4)
    embedder = FakeEmbedder()
    flat = build(DenseIndex.empty(embedder), texts)
    hnsw = build(DenseIndex.empty(embedder, DenseConfig(index="hnsw")), texts)
    for query in QUERIES[:4]:
        best, found = flat.search(query, 1), hnsw.search(query, 1)
        assert found.scores[0] == pytest.approx(best.scores[0], abs=1e-6)
        # The row HNSW found really is a best row (several rows can share the best vector, so not
        # necessarily the same row as exact search).
        query_vector = embedder.encode([query], query=True)[0]
        assert float(flat.vectors[found.rows[0]] @ query_vector) == pytest.approx(best.scores[0], abs=1e-6)


def test_dense_search_runs_faiss_on_one_thread_and_restores_the_setting():
    import faiss

    index = build(DenseIndex.empty(FakeEmbedder()), random_corpus(50))
    seen: list[int] = []
    search = index.faiss_index.search

    def spy(*args, **kwargs):
        seen.append(faiss.omp_get_max_threads())
        return search(*args, **kwargs)

    index.faiss_index.search = spy
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(3)
    try:
        index.search("adapter rank", 5)
        assert seen == [1] and faiss.omp_get_max_threads() == 3
    finally:
        faiss.omp_set_num_threads(before)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_dense_save_and_load_round_trip(tmp_path, kind):
    embedder = FakeEmbedder()
    index = build(DenseIndex.empty(embedder, DenseConfig(index=kind)), random_corpus(50))
    index.save(tmp_path / "dense")
    loaded = DenseIndex.load(tmp_path / "dense", embedder)
    np.testing.assert_array_equal(loaded.search("adapter rank", 5).rows, index.search("adapter rank", 5).rows)


def test_dense_load_refuses_another_embedding_model(tmp_path):
    build(DenseIndex.empty(FakeEmbedder()), ["a text"]).save(tmp_path / "dense")
    other = FakeEmbedder()
    other.name = "another-model"
    with pytest.raises(StoreFormatError, match="another-model"):
        DenseIndex.load(tmp_path / "dense", other)


@pytest.mark.parametrize("index_type", [BM25Index, TfidfIndex])
def test_sparse_indexes_round_trip_through_files(tmp_path, index_type):
    index = build(index_type.empty(), random_corpus(80, seed=5))
    index.save(tmp_path / "ix")
    loaded = index_type.load(tmp_path / "ix")
    for query in QUERIES:
        a, b = index.search(query, 10), loaded.search(query, 10)
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_allclose(a.scores, b.scores)


def _drop_last_term(directory):
    terms = json.loads((directory / "terms.json").read_text())
    (directory / "terms.json").write_text(json.dumps(terms[:-1]))


def _other_weights(directory):
    sp.save_npz(directory / "weights.npz", sp.csc_matrix(np.ones((2, 2))), compressed=False)


def _short_idf(directory):
    np.save(directory / "idf.npy", np.ones(3))


@pytest.mark.parametrize(
    ("index_type", "damage", "file"),
    [
        (BM25Index, _drop_last_term, "counts.npz"),
        (BM25Index, _other_weights, "weights.npz"),
        (TfidfIndex, _short_idf, "idf.npy"),
    ],
)
def test_sparse_files_that_do_not_fit_together_are_refused_by_name(tmp_path, index_type, damage, file):
    build(index_type.empty(), random_corpus(40)).save(tmp_path / "ix")
    damage(tmp_path / "ix")
    with pytest.raises(StoreFormatError, match=f"{file} is damaged"):
        index_type.load(tmp_path / "ix")


def test_dense_hashes_that_do_not_match_the_vectors_are_refused_by_name(tmp_path):
    build(DenseIndex.empty(FakeEmbedder()), ["one text", "another text"]).save(tmp_path / "dense")
    (tmp_path / "dense" / "hashes.json").write_text(json.dumps(["only-one"]))
    with pytest.raises(StoreFormatError, match="hashes.json is damaged"):
        DenseIndex.load(tmp_path / "dense", FakeEmbedder())
