from __future__ import annotations

import pytest

from ragtune import RAGConfig, RetrievalConfig
from ragtune.core.errors import InputError
from ragtune.rag.retrieval import reciprocal_rank_fusion


def test_rrf_rewards_items_ranked_well_by_several_retrievers():
    fused = reciprocal_rank_fusion(
        {"bm25": ["a", "b", "c"], "dense": ["b", "c", "a"]}, {"bm25": 1, "dense": 1}, 60
    )
    assert [item for item, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


def test_rrf_weight_zero_ignores_a_retriever():
    fused = reciprocal_rank_fusion({"bm25": ["a"], "dense": ["b"]}, {"bm25": 0, "dense": 1}, 60)
    assert fused[0][0] == "b"


def test_hybrid_hits_carry_each_retrievers_rank_and_score(rag, corpus):
    rag.ingest(corpus, progress=False)
    hit = rag.search("low-rank adapter alpha", k=1, mode="hybrid")[0]
    assert set(hit.ranks) == {"bm25", "dense"}
    assert set(hit.scores) == {"bm25", "dense"}
    assert hit.rank == 1
    assert hit.to_dict()["ranks"] == hit.ranks


def test_hybrid_weights_can_be_chosen_per_search(rag, corpus):
    rag.ingest(corpus, progress=False)
    hit = rag.search("adapter", k=1, mode="hybrid", weights={"tfidf": 1.0})[0]
    assert set(hit.ranks) == {"tfidf"}


def test_search_on_an_empty_index_returns_nothing(rag):
    assert rag.search("anything", k=3) == []


def test_k_larger_than_the_index_returns_every_match(rag, corpus):
    rag.ingest(corpus, progress=False)
    assert len(rag.search("the", k=100, mode="dense")) == 6


@pytest.mark.parametrize(
    ("query", "k", "message"), [("", 5, "empty"), ("   ", 5, "empty"), ("q", 0, "k=0"), ("q", -3, "k=-3")]
)
def test_bad_queries_get_a_clear_error(rag, corpus, query, k, message):
    rag.ingest(corpus, progress=False)
    with pytest.raises(InputError, match=message):
        rag.search(query, k=k)


def test_an_unknown_mode_names_the_valid_ones(rag):
    with pytest.raises(InputError, match="bm25, tfidf, dense, hybrid"):
        rag.search("q", mode="fuzzy")


def test_config_rejects_unknown_weight_names():
    with pytest.raises(InputError, match="splade"):
        RetrievalConfig(weights={"splade": 1.0})


def test_config_round_trips_through_json_and_rejects_unknown_keys():
    config = RAGConfig()
    assert RAGConfig.from_dict(config.to_dict()) == config
    data = config.to_dict()
    data["chunking"]["chunk_sise"] = 10
    with pytest.raises(InputError, match="chunk_sise"):
        RAGConfig.from_dict(data)
