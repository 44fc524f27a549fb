"""The Milvus index (one collection) against a real Milvus server: milvus-lite's gRPC server, or
RAGTUNE_MILVUS_URI. What RAG does with it is in test_backend_contract.py."""

from __future__ import annotations

import itertools
import random
import zlib

import numpy as np
import pytest

from ragtune.core.errors import InputError, RagtuneError
from ragtune.core.schema import text_hash
from ragtune.rag.backends.milvus import Hit, MilvusIndex, _local_tie_order, collection_name, connect
from ragtune.rag.backends.milvus_lite import free_port, milvus_server
from ragtune.rag.retrieval import reciprocal_rank_fusion
from tests.conftest import CORPUS, FakeEmbedder

DIM = FakeEmbedder().encode(["x"]).shape[1]
TEXTS = {f"{name}:00000": text for name, text in CORPUS.items()}
_numbers = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with milvus_server(tmp_path_factory.mktemp("milvus")) as uri:
        yield uri


@pytest.fixture
def index(server: str):
    """An empty collection of its own for each test."""
    made = MilvusIndex(connect(server), f"test_{next(_numbers)}_{free_port()}", DIM)
    made.ensure()
    yield made
    made.drop()


def words(text: str) -> dict[int, float]:
    """A stand-in for BM25 weights (bm25_terms.py makes the real ones): 1 per distinct word."""
    return {zlib.crc32(w.encode()) % 2**31 + 1: 1.0 for w in set(text.lower().replace(".", " ").split())}


def add(index: MilvusIndex, number: int, texts: dict[str, str]) -> None:
    ids, bodies = list(texts), list(texts.values())
    sparse = [words(t) for t in bodies]
    index.add(number, ids, [text_hash(t) for t in bodies], sparse, FakeEmbedder().encode(bodies))


def found(index: MilvusIndex, generation: int, mode: str, query: str, k: int = 10) -> list[str]:
    asked = words(query) if mode == "bm25" else FakeEmbedder().encode([query], query=True)[0]
    return [hit.chunk_id for hit in index.search(generation, mode, asked, k)]


def test_rows_are_seen_only_from_the_generation_that_added_them(index):
    add(index, 1, TEXTS)
    assert found(index, 0, "bm25", "quantization") == []
    assert found(index, 1, "bm25", "normalfloat quantization")[0] == "qlora.md:00000"
    assert index.count(0) == 0 and index.count(1) == len(TEXTS)


def test_a_removed_row_stays_visible_to_the_generation_before(index):
    add(index, 1, TEXTS)
    reused = index.remove(2, ["qlora.md:00000"])
    add(index, 2, {"qlora.md:00000": "QLoRA, edited: 4-bit NormalFloat storage and paged optimizers."})
    assert found(index, 1, "bm25", "double quantization")[0] == "qlora.md:00000"  # the old text
    assert "qlora.md:00000" not in found(index, 2, "bm25", "double quantization")
    assert found(index, 2, "bm25", "paged optimizers") == ["qlora.md:00000"]  # the new one
    assert found(index, 1, "bm25", "paged optimizers") == []
    assert list(reused) == [text_hash(CORPUS["qlora.md"])]  # its vector, for reuse by identical text
    assert index.count(1) == index.count(2) == len(TEXTS)


def test_what_an_uncommitted_ingest_wrote_is_undone(index):
    add(index, 1, TEXTS)
    index.remove(2, ["lora.md:00000"])  # an ingest of generation 2 that crashed before its commit
    add(index, 2, {"heron.md:00000": "Herons nest in reed beds."})
    index.discard_after(1)
    add(index, 2, {"owl.md:00000": "Owls hunt at night."})  # the next ingest reuses the number
    assert found(index, 2, "bm25", "herons reed") == []
    assert found(index, 2, "bm25", "low-rank update")[0] == "lora.md:00000"
    assert found(index, 2, "bm25", "owls night") == ["owl.md:00000"]


def test_prune_deletes_rows_no_kept_generation_sees(index):
    add(index, 1, TEXTS)
    index.remove(2, ["faiss.md:00000"])
    index.remove(3, ["bm25.txt:00000"])
    index.prune(2)  # generations 2 and 3 are kept: faiss.md's row (dead at 2) goes, bm25.txt's stays
    rows = index.client.query(
        index.name, filter='chunk_id in ["faiss.md:00000", "bm25.txt:00000"]', output_fields=["chunk_id"]
    )
    assert [row["chunk_id"] for row in rows] == ["bm25.txt:00000"]
    assert "bm25.txt:00000" in found(index, 2, "bm25", "term frequency saturation")


def test_dense_search_is_exact_inner_product(index):
    add(index, 1, TEXTS)
    query = "frozen weights low-rank adapter"
    vectors = FakeEmbedder().encode(list(TEXTS.values()))
    scores = vectors @ FakeEmbedder().encode([query], query=True)[0]
    expected = [list(TEXTS)[i] for i in np.argsort(-scores, kind="stable")[:3]]
    hits = index.search(1, "dense", FakeEmbedder().encode([query], query=True)[0], 3)
    assert [h.chunk_id for h in hits] == expected
    assert [h.score for h in hits] == pytest.approx(sorted(scores, reverse=True)[:3], abs=1e-5)


def test_hybrid_fuses_bm25_and_dense_by_reciprocal_rank_on_the_server(index):
    add(index, 1, TEXTS)
    query = "reciprocal rank fusion"
    vector = FakeEmbedder().encode([query], query=True)[0]
    bm25 = found(index, 1, "bm25", query, 6)
    dense = found(index, 1, "dense", query, 6)
    fused = index.hybrid(1, words(query), vector, k=3, depth=6, rrf_k=60)

    def rrf(chunk_id: str) -> float:
        return sum(1 / (60 + ranked.index(chunk_id) + 1) for ranked in (bm25, dense) if chunk_id in ranked)

    expected = sorted(set(bm25) | set(dense), key=lambda c: -rrf(c))
    assert [h.chunk_id for h in fused][:1] == expected[:1] == ["notes/rrf.txt:00000"]
    assert [h.score for h in fused] == pytest.approx([rrf(c) for c in expected[:3]], rel=1e-4)


def test_tfidf_is_refused_in_one_line(index):
    with pytest.raises(InputError, match="bm25, dense and hybrid"):
        found(index, 1, "tfidf", "anything")


def test_hybrid_hits_carry_each_retrievers_score(index):
    add(index, 1, TEXTS)
    query = "reciprocal rank fusion"
    vector = FakeEmbedder().encode([query], query=True)[0]
    top = index.hybrid(1, words(query), vector, k=1, depth=6, rrf_k=60)[0]
    shared = words(query).keys() & words(TEXTS[top.chunk_id]).keys()
    assert top.scores["bm25"] == pytest.approx(len(shared))
    assert top.scores["dense"] == pytest.approx(
        float(FakeEmbedder().encode([TEXTS[top.chunk_id]])[0] @ vector)
    )


def test_removing_every_live_row_leaves_the_rows_born_now(index):
    add(index, 1, TEXTS)
    add(index, 2, {"owl.md:00000": "Owls hunt at night."})  # born in the generation being written
    reused = index.remove(2, None)
    assert len(reused) == len(TEXTS)
    assert index.count(1) == len(TEXTS) and index.count(2) == 1


def test_a_server_that_does_not_answer_is_one_clear_error():
    with pytest.raises(RagtuneError, match="cannot reach Milvus at http://127.0.0.1"):
        connect(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(InputError, match="server's address"):
        connect("")


def test_collection_names_are_stable_per_index_folder():
    assert collection_name("", "/a/index") == collection_name("", "/a/index")
    assert collection_name("", "/a/index") != collection_name("", "/b/index")
    assert collection_name("mine", "/a/index") == "mine"


def test_equal_fused_scores_come_in_the_local_fusions_order():
    """The server's RRF orders ties its own way; hits are re-sorted as reciprocal_rank_fusion orders
    them: BM25's ranking first, then dense-only hits by dense rank."""
    bm25 = ["a", "b", "c"]
    dense = ["d", "b", "e", "f"]  # d ties with a (first in each list), e with c (third in each)
    local = reciprocal_rank_fusion({"bm25": bm25, "dense": dense}, {"bm25": 1.0, "dense": 1.0}, 60)
    scores = {cid: {} for cid, _ in local}
    for kind, ranked in (("bm25", bm25), ("dense", dense)):
        for rank, cid in enumerate(ranked):
            scores[cid][kind] = 10.0 - rank  # a higher rank, a higher score
    hits = [Hit(cid, float(np.float32(fused)), scores[cid]) for cid, fused in local]
    for seed in range(5):  # whatever order the server sends them in
        shuffled = list(hits)
        random.Random(seed).shuffle(shuffled)
        assert [h.chunk_id for h in sorted(shuffled, key=_local_tie_order)] == [cid for cid, _ in local]
