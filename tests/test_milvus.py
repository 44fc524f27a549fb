"""The Milvus index against a real Milvus server (milvus-lite's gRPC server, or RAGTUNE_MILVUS_URI)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ragtune.core.errors import InputError, RagtuneError
from ragtune.core.schema import text_hash
from ragtune.indexes.bm25 import BM25Config
from ragtune.rag.backends.milvus import MilvusConfig, MilvusIndex, collection_name, connect
from tests.conftest import CORPUS, FakeEmbedder
from tests.milvus_server import free_port, milvus_server

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
    config = MilvusConfig(uri=server, collection=f"test_{next(_numbers)}_{free_port()}")
    made = MilvusIndex(connect(config), config.collection, DIM, BM25Config())
    made.ensure()
    yield made
    made.drop()


def add(index: MilvusIndex, number: int, texts: dict[str, str]) -> None:
    ids, bodies = list(texts), list(texts.values())
    index.add(number, ids, bodies, [text_hash(t) for t in bodies], FakeEmbedder().encode(bodies))


def found(index: MilvusIndex, generation: int, mode: str, query: str, k: int = 10) -> list[str]:
    vector = FakeEmbedder().encode([query], query=True)[0]
    return [hit.chunk_id for hit in index.search(generation, mode, query, vector, k)]


def test_rows_are_seen_only_from_the_generation_that_added_them(index):
    add(index, 1, TEXTS)
    assert found(index, 0, "bm25", "quantization") == []
    assert found(index, 1, "bm25", "NormalFloat quantization")[0] == "qlora.md:00000"
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
    hits = index.search(1, "dense", query, FakeEmbedder().encode([query], query=True)[0], 3)
    assert [h.chunk_id for h in hits] == expected
    assert [h.score for h in hits] == pytest.approx(sorted(scores, reverse=True)[:3], abs=1e-5)


def test_hybrid_fuses_bm25_and_dense_by_reciprocal_rank_on_the_server(index):
    add(index, 1, TEXTS)
    query = "reciprocal rank fusion"
    vector = FakeEmbedder().encode([query], query=True)[0]
    bm25 = found(index, 1, "bm25", query, 6)
    dense = found(index, 1, "dense", query, 6)
    fused = index.hybrid(1, query, vector, k=3, depth=6, rrf_k=60)

    def rrf(chunk_id: str) -> float:
        return sum(1 / (60 + ranked.index(chunk_id) + 1) for ranked in (bm25, dense) if chunk_id in ranked)

    expected = sorted(set(bm25) | set(dense), key=lambda c: -rrf(c))
    assert [h.chunk_id for h in fused][:1] == expected[:1] == ["notes/rrf.txt:00000"]
    assert [h.score for h in fused] == pytest.approx([rrf(c) for c in expected[:3]], rel=1e-4)


def test_tfidf_is_refused_in_one_line(index):
    with pytest.raises(InputError, match="bm25, dense and hybrid"):
        found(index, 1, "tfidf", "anything")


def test_a_server_that_does_not_answer_is_one_clear_error():
    with pytest.raises(RagtuneError, match="cannot reach Milvus at http://127.0.0.1"):
        connect(MilvusConfig(uri=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(InputError, match="server's address"):
        connect(MilvusConfig())


def test_collection_names_are_stable_per_index_folder():
    config = MilvusConfig(uri="http://x:19530")
    assert collection_name(config, "/a/index") == collection_name(config, "/a/index")
    assert collection_name(config, "/a/index") != collection_name(config, "/b/index")
    assert collection_name(MilvusConfig(collection="mine"), "/a/index") == "mine"
