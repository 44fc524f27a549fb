"""Segmented generations: an edit writes only what changed, deletes are masks, scores stay exact."""

from __future__ import annotations

import json
import mmap
import random

import numpy as np
import pytest

from ragtune import RAG
from ragtune.indexes.bm25 import BM25Index
from ragtune.indexes.dense import DenseIndex
from ragtune.indexes.segment import Segment
from ragtune.indexes.terms import TermCounts
from ragtune.indexes.tfidf import TfidfIndex
from ragtune.rag.store.merge_policy import MergePolicy
from tests.conftest import FakeEmbedder

WORDS = [
    "adapter",
    "rank",
    "merge",
    "quantize",
    "heron",
    "reed",
    "nest",
    "tide",
    "river",
    "delta",
    "basin",
    "loss",
    "gradient",
    "token",
    "batch",
    "vector",
    "index",
    "segment",
    "query",
    "corpus",
    "score",
    "weight",
    "layer",
    "frozen",
    "base",
    "model",
    "memory",
    "disk",
    "cache",
]


def manifest(rag: RAG) -> dict:
    folder = rag.generations.folder(rag.store.generation())
    return json.loads((folder / "manifest.json").read_text())


def scratch_scores(rag: RAG, query: str) -> dict[str, dict[str, float]]:
    """Every matching chunk's score per retriever, from single indexes built from scratch on the live chunks."""
    ids, texts = zip(*rag.store.iter_chunks(), strict=True)
    none = np.zeros(0, dtype=bool)
    built = {
        "bm25": BM25Index(TermCounts.empty()).updated(none, texts),
        "tfidf": TfidfIndex(TermCounts.empty()).updated(none, texts),
        "dense": DenseIndex.empty(FakeEmbedder()).updated(none, texts),
    }
    results = {}
    for kind, index in built.items():
        ranking = index.search(query, len(ids))
        results[kind] = {ids[r]: float(s) for r, s in zip(ranking.rows, ranking.scores, strict=True)}
    return results


def segmented_scores(rag: RAG, query: str) -> dict[str, dict[str, float]]:
    live = len(list(rag.store.iter_chunks()))
    return {
        kind: {hit.chunk_id: hit.score for hit in rag.search(query, k=live, mode=kind)}
        for kind in ("bm25", "tfidf", "dense")
    }


def random_text(rng: random.Random) -> str:
    paragraphs = [" ".join(rng.choices(WORDS, k=rng.randint(3, 25))) + "." for _ in range(rng.randint(1, 3))]
    return "\n\n".join(paragraphs)


def test_after_random_adds_edits_and_deletes_scores_equal_a_single_index_built_from_scratch(tmp_path):
    rng = random.Random(7)
    docs = tmp_path / "docs"
    docs.mkdir()
    rag = RAG.open(tmp_path / "index", embedder=FakeEmbedder())
    segment_counts = []
    for step in range(24):  # enough ingests for the first tier to fill and merge
        names = sorted(p.name for p in docs.iterdir())
        for _ in range(rng.randint(1, 3)):
            action = rng.choice(["add", "add", "edit", "delete"] if names else ["add"])
            if action == "add":
                (docs / f"doc{step}-{rng.randint(0, 10**6)}.md").write_text(random_text(rng))
            elif action == "edit":
                (docs / rng.choice(names)).write_text(random_text(rng))
            elif len(names) > 1:
                victim = names.pop(rng.randrange(len(names)))
                (docs / victim).unlink()
        assert rag.ingest(docs, progress=False).repaired is None
        segment_counts.append(len(manifest(rag)["segments"]))
        if step % 6 == 5:
            for query in ("adapter merge", "heron reed nest", "vector index segment score", "tide"):
                expected, found = scratch_scores(rag, query), segmented_scores(rag, query)
                for kind in expected:
                    assert found[kind].keys() == expected[kind].keys(), (step, kind, query)
                    for chunk_id, score in expected[kind].items():
                        assert found[kind][chunk_id] == pytest.approx(score, rel=1e-9, abs=1e-6), (
                            kind,
                            query,
                        )
    assert max(segment_counts) <= MergePolicy().per_tier  # merged, not one segment per ingest
    assert any(later < earlier for earlier, later in zip(segment_counts, segment_counts[1:], strict=False))


COMMON, RARE = WORDS[:3], WORDS[3:]  # three words in nearly every chunk: many rows tie on them


def index_in_three_rounds(tmp_path, rng: random.Random) -> tuple[RAG, object]:
    """An index of three segments, with edited and deleted rows masked in the older ones."""
    docs = tmp_path / "docs"
    docs.mkdir()
    rag = RAG.open(tmp_path / "index", embedder=FakeEmbedder())

    def write(name: str) -> None:
        words = rng.choices(COMMON, k=rng.randint(2, 8)) + rng.choices(RARE, k=rng.randint(1, 4))
        (docs / name).write_text(" ".join(rng.sample(words, len(words))) + ".")

    for round_ in range(3):
        for i in range(25):
            write(f"r{round_}-{i}.md")
        if round_:
            write(f"r{round_ - 1}-3.md")
            (docs / f"r{round_ - 1}-5.md").unlink()
        rag.ingest(docs, progress=False)
    segments = manifest(rag)["segments"]
    assert len(segments) == 3 and segments[0]["live"] < segments[0]["rows"]
    return rag, docs


def some_queries(rng: random.Random) -> list[str]:
    return [" ".join([*rng.sample(COMMON, 2), *rng.sample(RARE, rng.randint(0, 2))]) for _ in range(30)]


def test_the_top_k_over_several_segments_is_the_head_of_the_full_ranking(tmp_path):
    rng = random.Random(11)
    rag, _ = index_in_three_rounds(tmp_path, rng)
    for kind in ("bm25", "tfidf"):
        for query in some_queries(rng):
            everything = [(h.chunk_id, h.score) for h in rag.search(query, k=100, mode=kind)]
            for k in (1, 3, 5):
                assert [(h.chunk_id, h.score) for h in rag.search(query, k=k, mode=kind)] == everything[:k]


def test_equal_scores_come_in_the_same_order_as_from_an_index_rebuilt_from_scratch(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    text = "Herons nest in reed beds near the tide."
    incremental = RAG.open(tmp_path / "incremental", embedder=FakeEmbedder())
    for name in ("z.md", "m.md", "a.md"):  # one ingest each: rows numbered z, m, a; ids sort a, m, z
        (docs / name).write_text(text)
        incremental.ingest(docs, progress=False)
    rebuilt = RAG.open(tmp_path / "rebuilt", embedder=FakeEmbedder())
    rebuilt.ingest(docs, progress=False)
    for mode in ("bm25", "tfidf", "dense", "hybrid"):
        for k in (1, 2, 3):
            found = [(h.chunk_id, h.score) for h in incremental.search("heron reed", k=k, mode=mode)]
            assert found == [(h.chunk_id, h.score) for h in rebuilt.search("heron reed", k=k, mode=mode)]
            assert mode == "hybrid" or len({score for _, score in found}) == 1  # all tied


def test_compacting_merges_every_segment_into_one_and_every_result_stays_the_same(tmp_path):
    rng = random.Random(5)
    rag, docs = index_in_three_rounds(tmp_path, rng)
    queries = some_queries(rng)

    def results() -> list[list[tuple[str, float]]]:
        kinds = ("bm25", "tfidf", "dense", "hybrid")
        return [
            [(h.chunk_id, h.score) for h in rag.search(q, k=8, mode=kind)] for q in queries for kind in kinds
        ]

    before = results()
    report = rag.ingest(docs, compact=True, progress=False)
    (segment,) = manifest(rag)["segments"]
    assert segment["live"] == segment["rows"] == report.unchanged and segment["deleted"] is None
    assert (report.segments, report.embedded, report.added, report.changed) == (1, 0, [], [])
    assert "(1 segment)" in report.summary()
    assert results() == before
    again = rag.ingest(docs, compact=True, progress=False)
    assert again.generation == report.generation  # already compact: no new generation


def test_editing_one_document_writes_one_small_segment_and_leaves_the_others_untouched(rag, corpus, embedder):
    rag.ingest(corpus, progress=False)
    first = manifest(rag)["segments"]
    old = {p: p.stat().st_mtime_ns for p in (rag.folder / "segments").rglob("*") if p.is_file()}
    text = (corpus / "lora.md").read_text()
    (corpus / "lora.md").write_text(text + "\n\nA new closing line about adapters.")
    embedder.calls.clear()
    report = rag.ingest(corpus, progress=False)
    segments = manifest(rag)["segments"]
    assert [s["name"] for s in segments[:-1]] == [s["name"] for s in first]
    new = Segment(rag.folder / "segments" / segments[-1]["name"])
    new_ids = [c.decode() for c in new.chunk_ids.tolist()]
    assert len(new) == report.chunks_added and len({c.split(":")[0] for c in new_ids}) == 1  # one document
    assert any("closing line" in text for cid, text in rag.store.iter_chunks() if cid in new_ids)
    assert segments[0]["live"] == first[0]["rows"] - report.chunks_removed
    assert {p: p.stat().st_mtime_ns for p in old} == old  # nothing already written was rewritten
    # Only chunks whose text changed are embedded; an unchanged chunk of the edited document keeps its vector.
    assert report.embedded == len(embedder.embedded) and all("closing line" in t for t in embedder.embedded)


def test_a_deleted_document_is_masked_in_every_index_without_writing_a_segment(rag, corpus):
    rag.ingest(corpus, progress=False)
    names = [s["name"] for s in manifest(rag)["segments"]]
    (corpus / "qlora.md").unlink()
    rag.ingest(corpus, progress=False)
    after = manifest(rag)
    assert [s["name"] for s in after["segments"]] == names
    assert after["segments"][0]["deleted"] and after["segments"][0]["live"] < after["segments"][0]["rows"]
    for mode in ("bm25", "tfidf", "dense", "hybrid"):
        assert not [h for h in rag.search("QLoRA 4-bit NormalFloat", k=10, mode=mode) if "qlora" in h.source]


def test_segment_arrays_are_memory_mapped_not_loaded(rag, corpus):
    rag.ingest(corpus, progress=False)
    rag.search("adapter", mode="hybrid")
    generation = rag._current_generation()
    segment = generation.views[0].segment
    assert file_backed(segment.vectors) and file_backed(segment.post_rows)
    assert not file_backed(np.array(segment.vectors))  # what a loaded copy would be


def file_backed(array: np.ndarray) -> bool:
    """Whether the array's memory is a mapping of a file (somewhere down its chain of bases)."""
    while array is not None:
        if isinstance(array, mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


def test_an_index_of_the_single_folder_format_still_searches_and_is_converted_without_reembedding(
    tmp_path, corpus, embedder
):
    from ragtune.rag.store.generations import Generations

    rag = RAG.open(tmp_path / "index", embedder=embedder)
    rag.ingest(corpus, progress=False)
    expected = [(h.chunk_id, round(h.score, 9)) for h in rag.search("adapter weights", k=5, mode="bm25")]
    # Rewrite generation 1 in the format earlier versions wrote: one folder with every index whole.
    ids, texts = zip(*rag.store.iter_chunks(), strict=True)
    none = np.zeros(0, dtype=bool)
    old = Generations(rag.folder)
    old.write(
        7,
        list(ids),
        {
            "bm25": BM25Index(TermCounts.empty()).updated(none, texts),
            "tfidf": TfidfIndex(TermCounts.empty()).updated(none, texts),
            "dense": DenseIndex.empty(FakeEmbedder()).updated(none, texts),
        },
        {},
    )
    with rag.store.transaction(write=True):
        rag.store.set_meta("generation", "7")
    reopened = RAG.open(rag.folder, embedder=embedder)
    assert [
        (h.chunk_id, round(h.score, 9)) for h in reopened.search("adapter weights", k=5, mode="bm25")
    ] == expected
    (corpus / "new.md").write_text("# Perplexity\n\nPerplexity is the exponential of the mean loss.")
    embedder.calls.clear()
    report = reopened.ingest(corpus, progress=False)
    assert report.repaired is None and manifest(reopened)["format"] == 2
    assert len(embedder.embedded) == 1 and "Perplexity is the exponential" in embedder.embedded[0]
    assert [h.chunk_id for h in reopened.search("adapter weights", k=5, mode="bm25")] == [
        c for c, _ in expected
    ]


@pytest.mark.parametrize(
    ("live", "rows", "groups"),
    [
        ([5] * 9, [5] * 9, []),  # a tier below its limit is left alone
        ([5] * 10, [5] * 10, [list(range(10))]),  # a full tier merges into one
        ([20_000, 5, 5], [20_000, 5, 5], []),  # different tiers never merge
        ([100, 10, 3000], [100, 10, 10_000], [[2]]),  # mostly deleted: rewritten alone
    ],
)
def test_the_tiered_merge_policy(live, rows, groups):
    assert MergePolicy().plan(live, rows) == groups


def test_segments_stay_logarithmic_in_the_number_of_ingests():
    policy, sizes, most = MergePolicy(), [], 0
    for _ in range(3000):  # 3,000 ingests of 10 rows each
        sizes.append(10)
        groups = policy.plan(sizes, sizes)
        merged = {p for g in groups for p in g}
        sizes = [s for i, s in enumerate(sizes) if i not in merged] + [
            sum(sizes[i] for i in g) for g in groups
        ]
        most = max(most, len(sizes))
    assert sum(sizes) == 30_000 and len(sizes) <= 2 * policy.per_tier and most <= 3 * policy.per_tier


def test_killed_ingest_segments_are_removed_and_unlisted_segments_pruned(rag, corpus):
    rag.ingest(corpus, progress=False)
    stale = rag.folder / "segments" / ".tmp-000009-000-999999999"  # a pid that cannot be running
    stale.mkdir()
    orphan = rag.folder / "segments" / "000009-000"  # written, but its generation never committed
    orphan.mkdir()
    (corpus / "new.md").write_text("# Perplexity\n\nPerplexity is the exponential of the mean loss.")
    rag.ingest(corpus, progress=False)
    assert not stale.exists() and not orphan.exists()


def test_a_document_edited_again_and_again_keeps_exact_statistics(rag, corpus):
    """Its chunk ids come back in every new segment; each older copy must be counted out once only."""
    rag.ingest(corpus, progress=False)
    for n in range(4):
        (corpus / "lora.md").write_text(f"# LoRA\n\nLoRA adapter rank {n}: merge the adapter weights.")
        assert rag.ingest(corpus, progress=False).repaired is None
    assert manifest(rag)["rows"] == len(list(rag.store.iter_chunks()))
    assert all(segment["live"] > 0 for segment in manifest(rag)["segments"])  # emptied ones are dropped
    for query in ("adapter weights", "merge rank", "QLoRA"):
        expected, found = scratch_scores(rag, query), segmented_scores(rag, query)
        for kind in expected:
            assert found[kind] == pytest.approx(expected[kind], rel=1e-9, abs=1e-6), (kind, query)


def test_with_hnsw_large_segments_get_a_graph_that_never_returns_deleted_rows(tmp_path, corpus):
    from ragtune.indexes.dense import DenseConfig
    from ragtune.rag.config import RAGConfig

    config = RAGConfig(dense=DenseConfig(index="hnsw", hnsw_min_rows=6))  # the sample corpus: 6 chunks
    rag = RAG.open(tmp_path / "index", config, embedder=FakeEmbedder())
    rag.ingest(corpus, progress=False)
    first = manifest(rag)["segments"][0]["name"]
    assert (rag.folder / "segments" / first / "hnsw.faiss").is_file()
    for query in ("adapter weights", "QLoRA quantization"):  # a graph this small is searched whole
        assert segmented_scores(rag, query)["dense"] == pytest.approx(
            scratch_scores(rag, query)["dense"], abs=1e-5
        )
    (corpus / "qlora.md").unlink()
    (corpus / "note.md").write_text("# Note\n\nA short note about adapters.")
    rag.ingest(corpus, progress=False)
    new = manifest(rag)["segments"][-1]["name"]
    assert not (rag.folder / "segments" / new / "hnsw.faiss").exists()  # 1 row: below hnsw_min_rows
    generation = rag._current_generation()
    ranking = generation.index("dense").search("QLoRA 4-bit NormalFloat", 3)  # below the API, which
    live = {cid for cid, _ in rag.store.iter_chunks()}  # would also drop a chunk the store lacks
    assert len(ranking.rows) == 3 and {generation.chunk_ids[r] for r in ranking.rows.tolist()} <= live
    found = rag.search("QLoRA 4-bit NormalFloat", k=10, mode="dense")
    assert len(found) == 6 and not [h for h in found if "qlora" in h.source]
    assert {h.chunk_id: h.score for h in found} == pytest.approx(
        scratch_scores(rag, "QLoRA 4-bit NormalFloat")["dense"], abs=1e-5
    )
