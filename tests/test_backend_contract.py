"""One contract, two backends: the local index folder and a real Milvus server (milvus-lite's gRPC server
started here on a free port, or the cluster RAGTUNE_MILVUS_URI names). Retrieval, re-index, delete, a
crash during a re-index, and bad input behave the same through `RAG`, whichever holds the rows."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from ragtune.cli.main import main
from ragtune.core.errors import InputError, RagtuneError
from ragtune.rag.api import RAG
from ragtune.rag.backends.milvus_lite import free_port, milvus_server
from ragtune.rag.config import BackendConfig, RAGConfig
from tests.conftest import CORPUS, FakeEmbedder, write_corpus

_collections = itertools.count()
QUERIES = (
    "low-rank update",
    "4-bit NormalFloat quantization",
    "reciprocal rank fusion",
    "faiss inner product",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with milvus_server(tmp_path_factory.mktemp("milvus")) as uri:
        yield uri


def config_for(kind: str, server: str) -> RAGConfig:
    if kind == "local":
        return RAGConfig()
    # A collection of its own per test: the server (or a shared cluster) outlives the test.
    return RAGConfig(backend=BackendConfig("milvus", server, f"contract_{next(_collections)}_{free_port()}"))


@pytest.fixture(params=["local", "milvus"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def backend_rag(kind: str, server: str, tmp_path: Path, embedder: FakeEmbedder):
    with RAG.open(tmp_path / f"index-{kind}", config_for(kind, server), embedder=embedder) as opened:
        yield opened
        if opened.remote is not None:
            opened.remote.index().drop()


def ids(rag: RAG, query: str, mode: str = "hybrid", k: int = 3) -> list[str]:
    return [Path(hit.source).name for hit in rag.search(query, k=k, mode=mode)]


# -- retrieval ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_the_best_chunk_answers_the_query(backend_rag, corpus, mode):
    backend_rag.ingest(corpus, progress=False)
    assert ids(backend_rag, "4-bit NormalFloat double quantization", mode)[0] == "qlora.md"
    hit = backend_rag.search("low-rank update", k=1, mode=mode)[0]
    assert Path(hit.source).name == "lora.md" and "low-rank update" in hit.text


def test_both_backends_rank_alike(server, corpus, tmp_path):
    """Same chunks, same order, same scores (Milvus stores float32: scores agree to 1e-5)."""
    opened = {
        kind: RAG.open(tmp_path / kind, config_for(kind, server), embedder=FakeEmbedder())
        for kind in ("local", "milvus")
    }
    for rag in opened.values():
        rag.ingest(corpus, progress=False)
    for mode in ("bm25", "dense", "hybrid"):
        for query in QUERIES:
            # k=3: beyond it, rows sharing no word with the query tie at a dense score of 0, which the
            # local index orders by chunk id and Milvus its own way.
            local, milvus = (rag.search(query, k=3, mode=mode) for rag in opened.values())
            assert [h.chunk_id for h in milvus] == [h.chunk_id for h in local], (mode, query)
            assert [h.score for h in milvus] == pytest.approx([h.score for h in local], abs=1e-5)
            for m, lo in zip(milvus, local, strict=True):
                assert m.scores == pytest.approx(lo.scores, abs=1e-5)
    opened["milvus"].remote.index().drop()


def test_after_edits_bm25_drifts_only_by_the_mean_length_and_a_compaction_restores_it(
    server, corpus, tmp_path
):
    """Milvus rows keep the mean length L they were written with; the local index uses today's. Edits
    that change L make the two differ slightly; a compaction rewrites every row with the current L."""
    opened = [
        RAG.open(tmp_path / k, config_for(k, server), embedder=FakeEmbedder()) for k in ("local", "milvus")
    ]
    for rag in opened:
        rag.ingest(corpus, progress=False)
    (corpus / "long.md").write_text("LoRA " + "adapter weights rank update quantization " * 40)

    def scores() -> list[list[float]]:
        # Scores above 0 only: a row whose one shared term has an idf of exactly 0 (a term in half the
        # rows) scores 0; the local index lists it, Milvus's inner product does not.
        found = [rag.search("low-rank update of the weights", k=4, mode="bm25") for rag in opened]
        return [[h.score for h in hits if h.score > 0] for hits in found]

    for rag in opened:
        rag.ingest(corpus, progress=False)
    local, milvus = scores()
    assert len(milvus) == len(local) == 3
    assert milvus[0] < local[0] - 0.5  # L has grown; lora.md's row still uses the first one
    opened[1].ingest(corpus, compact=True, progress=False)
    local, milvus = scores()
    assert milvus == pytest.approx(local, abs=1e-5)
    opened[1].remote.index().drop()


def test_unequal_hybrid_weights_are_fused_as_locally(server, corpus, tmp_path):
    opened = [
        RAG.open(tmp_path / k, config_for(k, server), embedder=FakeEmbedder()) for k in ("local", "milvus")
    ]
    for rag in opened:
        rag.ingest(corpus, progress=False)
    weights = {"bm25": 2.0, "dense": 0.5, "tfidf": 0.0}
    local, milvus = (
        [h.chunk_id for h in r.search("rank fusion of lists", k=4, weights=weights)] for r in opened
    )
    assert milvus == local
    opened[1].remote.index().drop()


def test_an_empty_index_finds_nothing(backend_rag):
    assert backend_rag.search("anything at all", k=3) == []


def test_a_query_of_unknown_words_finds_nothing_by_bm25(backend_rag, corpus):
    backend_rag.ingest(corpus, progress=False)
    assert backend_rag.search("zyzzyva quux", k=3, mode="bm25") == []


# -- re-index and delete -----------------------------------------------------------------------------


def test_an_edited_file_is_found_by_its_new_text_only(backend_rag, corpus, embedder):
    backend_rag.ingest(corpus, progress=False)
    (corpus / "qlora.md").write_text("# QLoRA\n\nPaged optimizers absorb memory spikes during training.")
    embedder.calls.clear()
    report = backend_rag.ingest(corpus, progress=False)
    assert report.changed == [str(corpus / "qlora.md")] and report.embedded == 1
    assert embedder.embedded == ["# QLoRA\n\nPaged optimizers absorb memory spikes during training."]
    assert ids(backend_rag, "paged optimizers memory spikes", "bm25")[0] == "qlora.md"
    assert "qlora.md" not in ids(backend_rag, "NormalFloat double quantization", "bm25")


def test_a_deleted_file_is_gone_from_every_mode(backend_rag, corpus):
    backend_rag.ingest(corpus, progress=False)
    (corpus / "faiss.md").unlink()
    report = backend_rag.ingest(corpus, progress=False)
    assert report.deleted == [str(corpus / "faiss.md")]
    for mode in ("bm25", "dense", "hybrid"):
        assert "faiss.md" not in ids(backend_rag, "faiss inner product index", mode, k=10)
    assert backend_rag.status(verify=True)["chunks"] == len(CORPUS) - 1


def test_an_unchanged_re_run_writes_nothing(backend_rag, corpus):
    first = backend_rag.ingest(corpus, progress=False)
    again = backend_rag.ingest(corpus, progress=False)
    assert again.generation == first.generation and again.chunks_added == again.embedded == 0


def test_a_rebuild_embeds_everything_again_and_keeps_the_results(backend_rag, corpus, embedder):
    backend_rag.ingest(corpus, progress=False)
    before = {q: ids(backend_rag, q) for q in QUERIES}
    embedder.calls.clear()
    report = backend_rag.ingest(corpus, rebuild=True, progress=False)
    assert report.embedded == len(CORPUS) and sorted(embedder.embedded) == sorted(CORPUS.values())
    assert {q: ids(backend_rag, q) for q in QUERIES} == before
    backend_rag.status(verify=True)  # one row per chunk, nothing left over


def test_a_compaction_keeps_every_result(backend_rag, corpus):
    backend_rag.ingest(corpus, progress=False)
    (corpus / "bm25.txt").write_text("BM25 saturates term frequency with k1 and normalises length with b.")
    backend_rag.ingest(corpus, progress=False)
    before = {q: backend_rag.search(q, k=3) for q in QUERIES}
    report = backend_rag.ingest(corpus, compact=True, progress=False)
    assert report.embedded == 0
    after = {q: backend_rag.search(q, k=3) for q in QUERIES}
    assert {q: [h.chunk_id for h in hits] for q, hits in after.items()} == {
        q: [h.chunk_id for h in hits] for q, hits in before.items()
    }


# -- consistency and crashes -------------------------------------------------------------------------


def test_a_search_during_a_re_index_sees_the_old_state(backend_rag, corpus):
    backend_rag.ingest(corpus, progress=False)
    (corpus / "lora.md").write_text("# LoRA\n\nAdapters are merged into the base weights after training.")
    (corpus / "faiss.md").unlink()
    seen: list[list[str]] = []

    def search_meanwhile(progress) -> None:
        if progress.stage == "saving" and progress.done == 0:  # rows written, store not yet committed
            seen.append(ids(backend_rag, "adapters merged after training", "bm25"))
            seen.append(ids(backend_rag, "faiss inner product", "bm25"))

    backend_rag.ingest(corpus, progress=False, on_progress=search_meanwhile)
    assert "lora.md" not in seen[0] and seen[1][0] == "faiss.md"  # the generation before, whole
    assert ids(backend_rag, "adapters merged after training", "bm25")[0] == "lora.md"
    assert "faiss.md" not in ids(backend_rag, "faiss inner product", "bm25", k=10)


class Crash(Exception):
    pass


def test_a_crash_while_embedding_leaves_the_old_state_and_the_next_ingest_succeeds(
    backend_rag, corpus, embedder, monkeypatch
):
    backend_rag.ingest(corpus, progress=False)
    (corpus / "lora.md").write_text("# LoRA\n\nAdapters are merged into the base weights after training.")
    (corpus / "faiss.md").unlink()
    with monkeypatch.context() as patched:
        patched.setattr(embedder, "encode", lambda *a, **kw: (_ for _ in ()).throw(Crash()))
        with pytest.raises(Crash):
            backend_rag.ingest(corpus, progress=False)
    assert ids(backend_rag, "low-rank update", "bm25")[0] == "lora.md"  # the old text
    assert ids(backend_rag, "faiss inner product", "bm25")[0] == "faiss.md"
    report = backend_rag.ingest(corpus, progress=False)
    assert report.changed == [str(corpus / "lora.md")] and report.deleted == [str(corpus / "faiss.md")]
    assert ids(backend_rag, "adapters merged after training", "bm25")[0] == "lora.md"
    assert backend_rag.status(verify=True)["verified"]


def test_a_crash_before_the_commit_leaves_the_old_state(backend_rag, corpus, monkeypatch):
    backend_rag.ingest(corpus, progress=False)
    (corpus / "lora.md").write_text("# LoRA\n\nAdapters are merged into the base weights after training.")
    with monkeypatch.context() as patched:
        patched.setattr(backend_rag.store, "record_ingest", lambda *a, **kw: (_ for _ in ()).throw(Crash()))
        with pytest.raises(Crash):
            backend_rag.ingest(corpus, progress=False)
    assert ids(backend_rag, "low-rank update", "bm25")[0] == "lora.md"
    assert "lora.md" not in ids(backend_rag, "adapters merged after training", "bm25")
    backend_rag.ingest(corpus, progress=False)
    assert ids(backend_rag, "adapters merged after training", "bm25")[0] == "lora.md"
    backend_rag.status(verify=True)


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "k"), [("", 3), ("   ", 3), ("lora", 0), ("lora", -1)])
def test_a_bad_query_is_one_clear_error(backend_rag, corpus, query, k):
    backend_rag.ingest(corpus, progress=False)
    with pytest.raises(InputError):
        backend_rag.search(query, k=k)


def test_tfidf_on_milvus_is_refused_with_what_to_do(server, corpus, tmp_path):
    rag = RAG.open(tmp_path / "index", config_for("milvus", server), embedder=FakeEmbedder())
    rag.ingest(corpus, progress=False)
    with pytest.raises(InputError, match="no TF-IDF index: search bm25, dense or hybrid"):
        rag.search("lora", mode="tfidf")
    with pytest.raises(InputError, match="tfidf weight at 0"):
        rag.search("lora", weights={"bm25": 1.0, "dense": 1.0, "tfidf": 0.5})
    rag.remote.index().drop()


def test_a_milvus_server_that_does_not_answer_is_one_line(tmp_path, corpus):
    config = RAGConfig(backend=BackendConfig("milvus", f"http://127.0.0.1:{free_port()}"))
    rag = RAG.open(tmp_path / "index", config, embedder=FakeEmbedder())
    with pytest.raises(RagtuneError, match="cannot reach Milvus at http://127.0.0.1"):
        rag.ingest(corpus, progress=False)


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        (dict(kind="pinecone"), "use one of local, milvus"),
        (dict(kind="milvus"), "needs the server's address"),
        (dict(kind="local", milvus_uri="http://x:19530"), "go with --backend milvus"),
    ],
)
def test_a_bad_backend_config_is_refused(backend, message):
    with pytest.raises(InputError, match=message):
        BackendConfig(**backend)


# -- the backend is saved with the folder ------------------------------------------------------------


def test_the_backend_is_saved_with_the_index_folder(server, corpus, tmp_path):
    config = config_for("milvus", server)
    RAG.open(tmp_path / "index", config, embedder=FakeEmbedder()).ingest(corpus, progress=False)
    reopened = RAG.open(tmp_path / "index", embedder=FakeEmbedder())
    assert reopened.config.backend == config.backend
    assert ids(reopened, "low-rank update")[0] == "lora.md"
    with pytest.raises(InputError, match="built with other backend settings"):
        RAG.open(tmp_path / "index", RAGConfig(), embedder=FakeEmbedder())
    reopened.remote.index().drop()


def test_the_cli_needs_the_backend_only_when_the_index_is_made(server, tmp_path, capsys, tiny_model_dir):
    docs = write_corpus(tmp_path / "docs")
    index = str(tmp_path / "index")
    collection = f"cli_{free_port()}"
    new = ["--backend", "milvus", "--milvus-uri", server, "--milvus-collection", collection]
    assert (
        main(
            ["ingest", str(docs), "--index", index, "--quiet", "--embedding-model", str(tiny_model_dir), *new]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["search", "low-rank update", "--index", index, "--mode", "bm25", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert Path(hits[0]["source"]).name == "lora.md"
    assert main(["search", "low-rank update", "--index", index]) == 0  # hybrid, fused by the server
    first = capsys.readouterr().out.splitlines()[0]  # the tiny model's dense ranks are random
    assert re.match(r"1\. .*  \[chunk 0, score 0\.\d{4}; (dense|bm25) -?\d\.\d{3}", first), first
    assert main(["status", "--index", index, "--verify"]) == 0
    shown = capsys.readouterr().out
    assert f"collection {collection}" in shown and f"{len(CORPUS)} rows in Milvus" in shown
    assert main(["search", "lora", "--index", index, "--mode", "tfidf"]) == 2
    err = capsys.readouterr().err
    assert "no TF-IDF index" in err and "Traceback" not in err
    RAG.open(index).remote.index().drop()
