"""Retrieval benchmark for ragtune: BM25 speed and exactness against rank-bm25, full vs incremental
ingest with the real embedding model, ingest overhead over a bare encode, and retrieval quality on a real
labelled set (Semanlink arXiv tags).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval.py            # full run (~40 min on 2 CPU cores)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval.py --quick    # CI smoke run (~2 min)

The report goes to stdout (progress to stderr); the same numbers go to bench/results/retrieval.json
(retrieval-quick.json for --quick). Every timed step runs --repeats times (the embedding steps
--embed-repeats times) and the median is reported; the machine is shared, so single runs are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the default model is a local folder; never ask a hub

import numpy as np  # noqa: E402
from ragtune.indexes.bm25 import BM25Index  # noqa: E402
from ragtune.indexes.embedding import SentenceTransformerEmbedder  # noqa: E402
from ragtune.indexes.tokenize import Tokenizer  # noqa: E402
from ragtune.rag.ingest.chunking import Chunker, ChunkingConfig  # noqa: E402
from ragtune.rag.ingest.readers import parse_bytes  # noqa: E402

from bench.corpus import Corpus, CorpusSpec, document_name, edit_documents, write_documents  # noqa: E402
from bench.metrics import (  # noqa: E402
    mean,
    median,
    mrr_at_k,
    ndcg_at_k,
    paired_bootstrap,
    recall_at_k,
    repeat_timed,
    timed,
    timed_cpu,
)
from ragtune import RAG, RAGConfig  # noqa: E402

CHUNKING = ChunkingConfig(chunk_size=800, chunk_overlap=0)  # one generated paragraph = one chunk
MODES = ("bm25", "tfidf", "dense", "hybrid")
HYBRID_VARIANTS: list[tuple[str, dict[str, float]]] = [
    ("bm25 1 + dense 1 (current default)", {"bm25": 1.0, "dense": 1.0}),
    ("bm25 1 + dense 1 + tfidf 0.5", {"bm25": 1.0, "dense": 1.0, "tfidf": 0.5}),
    ("bm25 1 + dense 1 + tfidf 1", {"bm25": 1.0, "dense": 1.0, "tfidf": 1.0}),
    ("bm25 0.5 + dense 1 (dense-heavy)", {"bm25": 0.5, "dense": 1.0}),
    ("bm25 0.25 + dense 1 (dense-heavier)", {"bm25": 0.25, "dense": 1.0}),
    ("bm25 0.5 + dense 1 + tfidf 0.5", {"bm25": 0.5, "dense": 1.0, "tfidf": 0.5}),
    ("bm25 1 + dense 0.5 (bm25-heavy)", {"bm25": 1.0, "dense": 0.5}),
    ("dense 1 + tfidf 1", {"dense": 1.0, "tfidf": 1.0}),
    ("bm25 1 + tfidf 1 (lexical only)", {"bm25": 1.0, "tfidf": 1.0}),
]
ARXIV_DOC_TAG = "http://www.semanlink.net/tag/arxiv_doc"  # given to every paper in the set

_STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


class Report:
    """The printed report: lines to stdout as they are ready."""

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]], indent: int = 2) -> None:
        cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
        pad = " " * indent
        for n, row in enumerate(cells):
            # First column left-aligned (labels), the rest right-aligned (numbers).
            line = "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            self(pad + line.rstrip())
            if n == 0:
                self(pad + "  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        magnitude = abs(value)
        return f"{value:.0f}" if magnitude >= 1000 else f"{value:.1f}" if magnitude >= 100 else f"{value:.3f}"
    return str(value)


def _ms(seconds: float) -> float:
    return seconds * 1000.0


class HashEmbedder:
    """A stand-in embedder (16-dim one-hot of a CRC of the text) for ingests where only the lexical side
    is being measured; it costs microseconds, so what is left is ragtune's own ingest work."""

    name = "bench-hash-16"

    def encode(self, texts: Sequence[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), 16), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i, zlib.crc32(text.encode("utf-8")) % 16] = 1.0
        return out


class QueryVectorCache:
    """Wraps an embedder and remembers query vectors: the hybrid weight sweep runs the same queries many
    times, and the dense ranking does not depend on the weights. Used for quality numbers only, never for
    latency."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.name = inner.name
        self._vectors: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
        if not query:
            return self.inner.encode(texts, query=False, progress=progress)
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self.inner.encode(missing, query=True), strict=True))
        return np.stack([self._vectors[t] for t in texts])


def lexical_words(tokenizer: Tokenizer, words: Sequence[str]) -> frozenset[str]:
    """Words the tokenizer drops (stop words), found through its public call."""
    return frozenset(w for w in words if tokenizer(w) != [w])


def chunk_folder(folder: Path, n_docs: int) -> list[str]:
    """Chunk texts of the generated files, read and split exactly as an ingest does."""
    chunker = Chunker(CHUNKING)
    texts: list[str] = []
    for i in range(n_docs):
        path = folder / document_name(i)
        result = parse_bytes(path.read_bytes(), ".txt", path.as_posix())
        for document in result.documents:
            texts += [chunk.text for chunk in chunker.split(document)]
    return texts


def rank_bm25_top(scores: np.ndarray, k: int) -> np.ndarray:
    """Top k rows by score, ties by row (a stable sort on -score), as ragtune orders them."""
    return np.argsort(-scores, kind="stable")[:k]


# ---------------------------------------------------------------------------------------------------------
# 1 + 2: generated corpus, BM25 vs rank-bm25


def bench_bm25(size: int, args: argparse.Namespace, work: Path, out: Report) -> dict[str, Any]:
    from rank_bm25 import BM25Okapi

    res: dict[str, Any] = {"chunks_target": size}
    corpus = Corpus(CorpusSpec(size, seed=args.seed))
    log(f"[{size}] generating corpus")
    res["generate_s"], docs = timed(corpus.documents)
    folder = work / f"corpus-{size}"
    res["write_s"], _ = timed(lambda: write_documents(folder, docs))
    paragraphs = [p for d in docs for p in d]
    res["documents"] = len(docs)
    res["words_per_chunk"] = mean([p.count(" ") + 1 for p in paragraphs])
    res["chars_per_chunk"] = mean([len(p) for p in paragraphs])

    log(f"[{size}] chunking with ragtune's reader + chunker")
    res["chunk_s"], texts = timed(lambda: chunk_folder(folder, len(docs)))
    res["chunks"] = len(texts)
    res["chunks_equal_paragraphs"] = texts == paragraphs
    if len(texts) != size or texts != paragraphs:
        raise SystemExit(
            f"chunking check failed at {size}: {len(texts)} chunks, paragraphs equal: {texts == paragraphs}"
        )

    tokenizer = Tokenizer()
    stop = lexical_words(tokenizer, corpus.zipf.words)
    queries = corpus.queries(args.queries, stop)
    res["queries"] = len(queries)
    res["vocabulary"] = len(corpus.zipf.words)

    # ragtune's own ingest of the folder, with a stand-in embedder: what ingesting costs besides embedding.
    log(f"[{size}] ingesting with a stand-in embedder (lexical side of ingest)")
    lexical_rag = RAG.open(
        work / f"index-lexical-{size}", RAGConfig(chunking=CHUNKING), embedder=HashEmbedder()
    )
    res["ingest_no_embedding_s"], report = timed(lambda: lexical_rag.ingest(folder, progress=False))
    res["ingest_chunks_added"] = report.chunks_added
    if report.chunks_added != size:
        raise SystemExit(f"ingest made {report.chunks_added} chunks from the {size}-chunk corpus")
    unchanged_times, _ = repeat_timed(lambda: lexical_rag.ingest(folder, progress=False), args.repeats)
    res["reingest_unchanged_s"] = median(unchanged_times)

    log(f"[{size}] building indexes")
    res["tokenize_s"], tokens = timed(lambda: [tokenizer(t) for t in texts])
    build_times, index = repeat_timed(
        lambda: BM25Index.empty().updated(np.zeros(0, dtype=bool), texts), args.repeats
    )
    res["ragtune_build_s"] = median(build_times)  # includes tokenizing
    rb_build_times, okapi = repeat_timed(lambda: BM25Okapi(tokens), min(args.repeats, 2))
    res["rank_bm25_build_s"] = median(rb_build_times)  # pre-tokenized input

    log(f"[{size}] timing ragtune BM25Index.search over {len(queries)} queries x {args.repeats}")
    index.search(queries[0], 10)
    times, _ = repeat_timed(lambda: [index.search(q, 10) for q in queries], args.repeats)
    res["ragtune_ms_per_query"] = _ms(median(times)) / len(queries)
    res["ragtune_ms_per_query_runs"] = [_ms(t) / len(queries) for t in times]

    rb_queries = queries[: args.rank_bm25_queries]
    log(f"[{size}] timing rank-bm25 get_scores + top-10 over {len(rb_queries)} queries x {args.repeats}")
    times, _ = repeat_timed(
        lambda: [rank_bm25_top(okapi.get_scores(tokenizer(q)), 10) for q in rb_queries], args.repeats
    )
    res["rank_bm25_ms_per_query"] = _ms(median(times)) / len(rb_queries)
    res["rank_bm25_ms_per_query_runs"] = [_ms(t) / len(rb_queries) for t in times]
    res["rank_bm25_queries"] = len(rb_queries)
    res["speedup"] = res["rank_bm25_ms_per_query"] / res["ragtune_ms_per_query"]

    # Agreement on the same queries (untimed).
    strict = tie_aware = same_order = 0
    max_diff = 0.0
    disagreements: list[dict[str, Any]] = []
    for n, q in enumerate(rb_queries):
        theirs_scores = okapi.get_scores(tokenizer(q))
        theirs = rank_bm25_top(theirs_scores, 10)
        ours = index.search(q, 10).rows
        if n < args.score_check_queries:
            ours_all, _ = index.scores(q)
            max_diff = max(max_diff, float(np.abs(ours_all - theirs_scores).max()))
        a, b = set(ours.tolist()), set(theirs.tolist())
        if a == b and len(ours) == len(theirs):
            strict += 1
            tie_aware += 1
        else:
            boundary = float(theirs_scores[theirs].min())
            differing = a ^ b
            if all(abs(float(theirs_scores[d]) - boundary) <= 1e-9 for d in differing):
                tie_aware += 1
            else:
                disagreements.append({"query": q, "ours": sorted(a), "rank_bm25": sorted(b)})
        same_order += int(list(ours) == list(theirs))
    res["top10_identical_strict"] = strict / len(rb_queries)
    res["top10_identical_tie_aware"] = tie_aware / len(rb_queries)
    res["top10_same_order"] = same_order / len(rb_queries)
    res["max_abs_score_diff"] = max_diff
    res["score_check_queries"] = min(args.score_check_queries, len(rb_queries))
    res["disagreements"] = disagreements[:5]

    # The same BM25 (and TF-IDF) through the façade a user calls, on the ingested index.
    facade_queries = queries[: args.facade_queries]
    for mode in ("bm25", "tfidf"):
        lexical_rag.search(facade_queries[0], 10, mode=mode)
        times, _ = repeat_timed(
            lambda m=mode: [lexical_rag.search(q, 10, mode=m) for q in facade_queries], args.repeats
        )
        res[f"facade_{mode}_ms_per_query"] = _ms(median(times)) / len(facade_queries)
    lexical_rag.close()
    shutil.rmtree(work / f"index-lexical-{size}", ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    return res


def print_bm25(results: dict[int, dict[str, Any]], out: Report) -> None:
    out("1. Generated corpus")
    out()
    out.table(
        [
            "chunks",
            "docs",
            "words/chunk",
            "chars/chunk",
            "vocab",
            "chunk count ok",
            "generate s",
            "chunk s",
            "ingest s (no embedding)",
            "re-ingest unchanged s",
        ],
        [
            [
                r["chunks"],
                r["documents"],
                f"{r['words_per_chunk']:.1f}",
                f"{r['chars_per_chunk']:.0f}",
                r["vocabulary"],
                "yes" if r["chunks_equal_paragraphs"] and r["ingest_chunks_added"] == size else "NO",
                r["generate_s"],
                r["chunk_s"],
                r["ingest_no_embedding_s"],
                r["reingest_unchanged_s"],
            ]
            for size, r in results.items()
        ],
    )
    out("  (ingest with a stand-in embedder: reading, chunking, store writes, BM25 + TF-IDF build, fsync)")
    out()
    out("2. BM25 query time: ragtune BM25Index.search(q, 10) vs rank_bm25.BM25Okapi.get_scores + top-10")
    out("   (same tokens: ragtune's Tokenizer output fed to BM25Okapi; medians of runs)")
    out()
    out.table(
        [
            "chunks",
            "queries (ours / rank-bm25)",
            "ragtune ms/q",
            "rank-bm25 ms/q",
            "speed-up x",
            "top-10 same set",
            "same set, ties",
            "same order",
            "max |score diff|",
        ],
        [
            [
                size,
                f"{r['queries']} / {r['rank_bm25_queries']}",
                f"{r['ragtune_ms_per_query']:.3f}",
                f"{r['rank_bm25_ms_per_query']:.1f}",
                f"{r['speedup']:.0f}",
                f"{r['top10_identical_strict']:.0%}",
                f"{r['top10_identical_tie_aware']:.0%}",
                f"{r['top10_same_order']:.0%}",
                f"{r['max_abs_score_diff']:.1e} ({r['score_check_queries']} q)",
            ]
            for size, r in results.items()
        ],
    )
    out()
    out.table(
        [
            "chunks",
            "ragtune build s (incl. tokenize)",
            "tokenize s",
            "rank-bm25 build s (pre-tokenized)",
            "façade bm25 ms/q",
            "façade tfidf ms/q",
        ],
        [
            [
                size,
                r["ragtune_build_s"],
                r["tokenize_s"],
                r["rank_bm25_build_s"],
                f"{r['facade_bm25_ms_per_query']:.3f}",
                f"{r['facade_tfidf_ms_per_query']:.3f}",
            ]
            for size, r in results.items()
        ],
    )
    out(
        "  (façade = RAG.search(q, 10, mode=...) on the ingested index: index search + store lookup of the hits)"
    )
    for size, r in results.items():
        for d in r["disagreements"]:
            out(f"  disagreement at {size}: {d['query']!r}: ours {d['ours']} vs rank-bm25 {d['rank_bm25']}")
    out()


# ---------------------------------------------------------------------------------------------------------
# 3 + 4: full build vs incremental re-index, ingest vs bare encode


def bench_embedding(
    size: int, args: argparse.Namespace, work: Path, embedder: SentenceTransformerEmbedder
) -> dict[str, Any]:
    res: dict[str, Any] = {"chunks_target": size, "repeats": args.embed_repeats}
    corpus = Corpus(CorpusSpec(size, seed=args.seed))
    docs = corpus.documents()
    folder = work / f"corpus-embed-{size}"
    write_documents(folder, docs)
    texts = chunk_folder(folder, len(docs))
    if len(texts) != size:
        raise SystemExit(f"chunking check failed at {size}: {len(texts)} chunks")
    res["documents"] = len(docs)
    config = RAGConfig(chunking=CHUNKING)
    model = embedder.model  # the loaded SentenceTransformer the ingest uses

    full: list[dict[str, Any]] = []
    encode_s: list[float] = []
    encode_cpu_s: list[float] = []
    first: RAG | None = None
    for i in range(args.embed_repeats):
        index_folder = work / f"index-embed-{size}-{i}"
        handle = RAG.open(index_folder, config, embedder=embedder)

        def ingest(handle: RAG = handle) -> Any:
            return handle.ingest(folder, progress=False)

        def encode() -> Any:
            return model.encode(texts, batch_size=64, normalize_embeddings=True)

        # Alternate the order, so a slow spell on the shared machine does not always hit the same side.
        steps = (
            [("ingest", ingest), ("encode", encode)]
            if i % 2 == 0
            else [("encode", encode), ("ingest", ingest)]
        )
        for name, fn in steps:
            log(
                f"[embed {size}] run {i + 1}/{args.embed_repeats}: {'full ingest' if name == 'ingest' else 'bare encode'}"
            )
            seconds, cpu, value = timed_cpu(fn)
            if name == "ingest":
                full.append(
                    {
                        "wall_s": seconds,
                        "cpu_s": cpu,
                        "report_s": value.seconds,
                        "embedded": value.embedded,
                        "chunks_added": value.chunks_added,
                        "summary": value.summary(),
                    }
                )
            else:
                encode_s.append(seconds)
                encode_cpu_s.append(cpu)
        if i == 0:
            first = handle
        else:
            handle.close()
            shutil.rmtree(index_folder, ignore_errors=True)
    assert first is not None
    res["full_ingest_s"] = median([f["wall_s"] for f in full])
    res["full_ingest_runs_s"] = [f["wall_s"] for f in full]
    res["full_ingest_report_s"] = median([f["report_s"] for f in full])
    res["full_embedded"] = full[0]["embedded"]
    res["full_chunks"] = full[0]["chunks_added"]
    res["full_summary"] = full[0]["summary"]
    res["encode_s"] = median(encode_s)
    res["encode_runs_s"] = encode_s
    res["ingest_over_encode"] = res["full_ingest_s"] / res["encode_s"]
    res["ingest_over_encode_pairs"] = [f["wall_s"] / e for f, e in zip(full, encode_s, strict=True)]
    res["ingest_minus_encode_s"] = res["full_ingest_s"] - res["encode_s"]
    res["encode_texts_per_s"] = size / res["encode_s"]
    res["full_ingest_cpu_s"] = median([f["cpu_s"] for f in full])
    res["full_ingest_cpu_runs_s"] = [f["cpu_s"] for f in full]
    res["encode_cpu_s"] = median(encode_cpu_s)
    res["encode_cpu_runs_s"] = encode_cpu_s
    res["ingest_over_encode_cpu"] = res["full_ingest_cpu_s"] / res["encode_cpu_s"]

    # Incremental: each round edits one paragraph in a fresh 1% of the documents.
    rounds: list[dict[str, Any]] = []
    last_edits: list[tuple[int, int, str, str]] = []
    for r in range(1, args.embed_repeats + 1):
        before = [list(d) for d in docs]
        edited = list(edit_documents(folder, docs, corpus, args.change_fraction, round_=r))
        last_edits = [
            (i, j, before[i][j], docs[i][j])
            for i in edited
            for j in range(len(docs[i]))
            if before[i][j] != docs[i][j]
        ]
        log(f"[embed {size}] incremental round {r}: {len(edited)} documents edited")
        seconds, report = timed(lambda: first.ingest(folder, progress=False))
        rounds.append(
            {
                "wall_s": seconds,
                "report_s": report.seconds,
                "embedded": report.embedded,
                "changed": len(report.changed),
                "edited": len(edited),
                "chunks_added": report.chunks_added,
                "chunks_removed": report.chunks_removed,
                "summary": report.summary(),
            }
        )
    res["incremental_s"] = median([x["wall_s"] for x in rounds])
    res["incremental_runs_s"] = [x["wall_s"] for x in rounds]
    res["incremental_embedded"] = rounds[0]["embedded"]
    res["incremental_changed_docs"] = rounds[0]["changed"]
    res["incremental_edited_docs"] = rounds[0]["edited"]
    res["incremental_chunks_replaced"] = rounds[0]["chunks_added"]
    res["incremental_summary"] = rounds[0]["summary"]
    res["incremental_over_full"] = res["incremental_s"] / res["full_ingest_s"]

    log(f"[embed {size}] re-ingesting the unchanged folder x {max(args.repeats, 5)}")
    generation = first.status()["generation"]
    unchanged = [timed(lambda: first.ingest(folder, progress=False)) for _ in range(max(args.repeats, 5))]
    res["unchanged_s"] = median([s for s, _ in unchanged])
    res["unchanged_runs_s"] = [s for s, _ in unchanged]
    res["unchanged_embedded"] = unchanged[0][1].embedded
    res["unchanged_kept_generation"] = all(rep.generation == generation for _, rep in unchanged)

    # Correctness of the incremental index: each new paragraph is found, no old one is left.
    found = stale = 0
    for _, _, old, new in last_edits:
        for mode in ("bm25", "dense"):
            hits = first.search(new, 1, mode=mode)
            found += int(bool(hits) and hits[0].text == new)
            hits = first.search(old, 3, mode=mode)
            stale += int(any(h.text == old for h in hits))
    res["edited_paragraphs_found"] = f"{found}/{2 * len(last_edits)}"
    res["old_paragraphs_still_found"] = stale
    status = first.status()
    res["final_chunks"] = status["chunks"]

    # Search latency through the façade on the real index, short generated queries.
    tokenizer = Tokenizer()
    queries = corpus.queries(args.facade_queries, lexical_words(tokenizer, corpus.zipf.words), seed_offset=7)
    latency: dict[str, float] = {}
    for mode in MODES:
        first.search(queries[0], 10, mode=mode)
        times, _ = repeat_timed(lambda m=mode: [first.search(q, 10, mode=m) for q in queries], args.repeats)
        latency[mode] = _ms(median(times)) / len(queries)
    res["facade_ms_per_query"] = latency
    res["facade_queries"] = len(queries)
    first.close()
    return res


def print_embedding(res: dict[str, Any], model_load_s: float, out: Report) -> None:
    size = res["chunks_target"]
    out(
        f"3. Full build vs incremental re-index ({size} chunks, {res['documents']} documents, default model "
        f"all-MiniLM-L6-v2, medians of {res['repeats']} runs)"
    )
    out()
    out.table(
        ["ingest", "seconds", "texts embedded", "runs (s)"],
        [
            [
                "full build (new index folder)",
                res["full_ingest_s"],
                res["full_embedded"],
                " ".join(f"{s:.1f}" for s in res["full_ingest_runs_s"]),
            ],
            [
                f"incremental: {res['incremental_edited_docs']} docs edited (1 paragraph each), "
                f"{res['incremental_chunks_replaced']} chunks re-indexed",
                res["incremental_s"],
                res["incremental_embedded"],
                " ".join(f"{s:.2f}" for s in res["incremental_runs_s"]),
            ],
            [
                "re-ingest, nothing changed",
                res["unchanged_s"],
                res["unchanged_embedded"],
                " ".join(f"{s:.2f}" for s in res["unchanged_runs_s"]),
            ],
        ],
    )
    verdict = "OK" if res["incremental_over_full"] <= 0.05 else "ABOVE TARGET"
    out(
        f"  incremental / full = {res['incremental_over_full']:.2%} (target <= 5%: {verdict}); unchanged re-ingest "
        f"{res['unchanged_s']:.3f} s (target well under 1 s: {'OK' if res['unchanged_s'] < 1 else 'ABOVE TARGET'}), "
        f"generation kept: {res['unchanged_kept_generation']}"
    )
    out(
        f"  after the last incremental round: edited paragraphs found as top-1 (bm25 + dense) "
        f"{res['edited_paragraphs_found']}, old paragraphs still returned: {res['old_paragraphs_still_found']}; "
        f"store holds {res['final_chunks']} chunks"
    )
    out(f"  full: {res['full_summary']}")
    out(f"  incremental: {res['incremental_summary']}")
    out()
    out(
        f"4. Ingestion vs bare encode (SentenceTransformer.encode(all {size} chunk texts, batch_size=64, "
        "normalize_embeddings=True), model loaded beforehand)"
    )
    out()
    out.table(
        ["", "wall s", "wall runs (s)", "CPU s", "CPU runs (s)"],
        [
            [
                "bare encode",
                res["encode_s"],
                " ".join(f"{s:.1f}" for s in res["encode_runs_s"]),
                res["encode_cpu_s"],
                " ".join(f"{s:.1f}" for s in res["encode_cpu_runs_s"]),
            ],
            [
                "full ingest",
                res["full_ingest_s"],
                " ".join(f"{s:.1f}" for s in res["full_ingest_runs_s"]),
                res["full_ingest_cpu_s"],
                " ".join(f"{s:.1f}" for s in res["full_ingest_cpu_runs_s"]),
            ],
            ["model load (once, before timing)", model_load_s, "", "", ""],
        ],
    )
    verdict = "OK" if res["ingest_over_encode"] <= 1.10 else "ABOVE TARGET"
    out(
        f"  ingest / encode = {res['ingest_over_encode']:.3f} (target <= 1.10: {verdict}); per interleaved pair: "
        + ", ".join(f"{x:.3f}" for x in res["ingest_over_encode_pairs"])
        + f"; ingest overhead {res['ingest_minus_encode_s']:.1f} s; encode {res['encode_texts_per_s']:.1f} chunks/s"
    )
    out(
        f"  in CPU seconds (this process, all threads; steadier on a shared machine): ingest / encode = "
        f"{res['ingest_over_encode_cpu']:.3f}"
    )
    out()
    out(
        f"  search latency through RAG.search(q, 10) on this index, {res['facade_queries']} short queries (ms/query):"
    )
    out.table(list(MODES), [[f"{res['facade_ms_per_query'][m]:.2f}" for m in MODES]], indent=4)
    out()


# ---------------------------------------------------------------------------------------------------------
# 5: Semanlink


def _ranked_tags(hits: Sequence[Any]) -> list[str]:
    ranked: list[str] = []
    for h in hits:
        tag = h.metadata.get("id")
        if tag is not None and tag not in ranked:
            ranked.append(tag)
    return ranked


def _quality(rankings: list[list[str]], papers: Sequence[Any], k: int = 10) -> dict[str, float]:
    nd, rc, rr, nd_x, rc_x = [], [], [], [], []
    for ranked, paper in zip(rankings, papers, strict=True):
        nd.append(ndcg_at_k(ranked, paper.relevant, k))
        rc.append(recall_at_k(ranked, paper.relevant, k))
        rr.append(mrr_at_k(ranked, paper.relevant, k))
        relevant_x = paper.relevant - {ARXIV_DOC_TAG}
        if relevant_x:
            ranked_x = [t for t in ranked if t != ARXIV_DOC_TAG]
            nd_x.append(ndcg_at_k(ranked_x, relevant_x, k))
            rc_x.append(recall_at_k(ranked_x, relevant_x, k))
    return {
        "per_query_ndcg@10": nd,
        "ndcg@10": mean(nd),
        "recall@10": mean(rc),
        "mrr@10": mean(rr),
        "ndcg@10_no_arxiv_doc": mean(nd_x),
        "recall@10_no_arxiv_doc": mean(rc_x),
    }


def bench_semanlink(
    args: argparse.Namespace, work: Path, embedder: SentenceTransformerEmbedder
) -> dict[str, Any]:
    from bench import semanlink

    folder = semanlink.ensure_data(args.cache, log=log)
    tags, papers = semanlink.load(folder)
    res: dict[str, Any] = {
        "tags": len(tags),
        "papers": len(papers),
        "gold_per_paper": mean([len(p.relevant) for p in papers]),
    }
    # A fixed path: document ids (and so the row order that breaks score ties) derive from the file's path.
    jsonl = args.cache / "semanlink" / "tags.jsonl"
    semanlink.write_jsonl(tags, jsonl)
    index_folder = work / "semanlink-index"
    handle = RAG.open(index_folder, embedder=embedder)  # default config, as a user would
    log(f"[semanlink] ingesting {len(tags)} tags")
    res["ingest_s"], report = timed(lambda: handle.ingest(jsonl, progress=False))
    res["ingest_summary"] = report.summary()
    res["ingest_problems"] = len(report.problems)

    # Quality: the cached-query-vector handle computes each paper's query vector once.
    cached = RAG.open(index_folder, embedder=QueryVectorCache(embedder))
    log(f"[semanlink] quality per mode over {len(papers)} papers")
    quality: dict[str, dict[str, float]] = {}
    for mode in MODES:
        rankings = [_ranked_tags(cached.search(p.query, 10, mode=mode)) for p in papers]
        quality[mode] = _quality(rankings, papers)
    res["quality"] = quality

    # Latency: the plain handle, nothing cached.
    latency_papers = papers[: args.semanlink_latency_queries]
    latency: dict[str, float] = {}
    for mode in MODES:
        log(f"[semanlink] latency {mode}: {len(latency_papers)} queries x {args.semanlink_repeats}")
        handle.search(latency_papers[0].query, 10, mode=mode)
        times, _ = repeat_timed(
            lambda m=mode: [handle.search(p.query, 10, mode=m) for p in latency_papers],
            args.semanlink_repeats,
        )
        latency[mode] = _ms(median(times)) / len(latency_papers)
    res["latency_ms"] = latency
    res["latency_queries"] = len(latency_papers)
    res["latency_repeats"] = args.semanlink_repeats

    log(f"[semanlink] hybrid weight sweep: {len(HYBRID_VARIANTS)} settings")
    variants = []
    for label, weights in HYBRID_VARIANTS:
        rankings = [_ranked_tags(cached.search(p.query, 10, mode="hybrid", weights=weights)) for p in papers]
        variants.append({"label": label, "weights": weights, **_quality(rankings, papers)})
    default = variants[0]["per_query_ndcg@10"]
    for v in variants:
        diff, low, high = paired_bootstrap(v["per_query_ndcg@10"], default)
        v["ndcg@10_vs_default"] = {"mean": diff, "ci95": [low, high]}
        v["queries_better_worse"] = [
            sum(x > y for x, y in zip(v["per_query_ndcg@10"], default, strict=True)),
            sum(x < y for x, y in zip(v["per_query_ndcg@10"], default, strict=True)),
        ]
    for q in quality.values():
        diff, low, high = paired_bootstrap(q["per_query_ndcg@10"], default)
        q["ndcg@10_vs_default_hybrid"] = {"mean": diff, "ci95": [low, high]}
    res["hybrid_variants"] = variants
    res["best_hybrid"] = max(variants, key=lambda v: v["ndcg@10"])["label"]
    handle.close()
    cached.close()
    return res


def _delta(d: dict[str, Any]) -> str:
    return f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"


def print_semanlink(res: dict[str, Any], out: Report) -> None:
    out(
        f"5. Semanlink arXiv tagging (real data): {res['tags']} tags as documents, {res['papers']} papers as "
        f"queries (title + summary), {res['gold_per_paper']:.2f} gold tags per paper"
    )
    out(f"   ingest of tags.jsonl: {res['ingest_s']:.1f} s ({res['ingest_summary']})")
    out()
    out.table(
        [
            "mode",
            "nDCG@10",
            "recall@10",
            "MRR@10",
            "nDCG@10 w/o arxiv_doc",
            "recall@10 w/o arxiv_doc",
            f"mean latency ms ({res['latency_queries']} q x {res['latency_repeats']})",
            "nDCG@10 vs default hybrid [95% CI]",
        ],
        [
            [
                m,
                q["ndcg@10"],
                q["recall@10"],
                q["mrr@10"],
                q["ndcg@10_no_arxiv_doc"],
                q["recall@10_no_arxiv_doc"],
                f"{res['latency_ms'][m]:.1f}",
                _delta(q["ndcg@10_vs_default_hybrid"]),
            ]
            for m, q in res["quality"].items()
        ],
    )
    out("  (binary relevance; 'w/o arxiv_doc' drops the tag every paper carries from gold and results)")
    out()
    out("  hybrid (RRF, rrf_k=60, depth=50) by weights:")
    out.table(
        [
            "weights",
            "nDCG@10",
            "recall@10",
            "MRR@10",
            "nDCG@10 w/o arxiv_doc",
            "recall@10 w/o arxiv_doc",
            "nDCG@10 vs default [95% CI]",
            "queries better/worse",
        ],
        [
            [
                v["label"],
                v["ndcg@10"],
                v["recall@10"],
                v["mrr@10"],
                v["ndcg@10_no_arxiv_doc"],
                v["recall@10_no_arxiv_doc"],
                _delta(v["ndcg@10_vs_default"]),
                "{}/{}".format(*v["queries_better_worse"]),
            ]
            for v in res["hybrid_variants"]
        ],
        indent=4,
    )
    out(f"  best hybrid by nDCG@10: {res['best_hybrid']}")
    out(
        "  (differences vs default: paired bootstrap over the papers, 2000 resamples; an interval that holds 0 "
        "is not a clear difference)"
    )
    out()


def print_summary(results: dict[str, Any], out: Report) -> None:
    out("Summary")
    for size, r in results.get("bm25", {}).items():
        out(
            f"  BM25 at {size} chunks: {r['ragtune_ms_per_query']:.2f} ms/query, {r['speedup']:.0f}x faster than "
            f"rank-bm25; top-10 identical {r['top10_identical_strict']:.0%} strict, "
            f"{r['top10_identical_tie_aware']:.0%} counting score ties; max |score diff| {r['max_abs_score_diff']:.1e}"
        )
    e = results.get("embedding")
    if e:
        out(
            f"  incremental re-index of 1% of documents: {e['incremental_over_full']:.2%} of a full build "
            f"(target <= 5%), {e['incremental_embedded']} texts embedded vs {e['full_embedded']}"
        )
        out(f"  unchanged re-ingest: {e['unchanged_s']:.3f} s (target < 1 s)")
        out(f"  full ingest / bare encode: {e['ingest_over_encode']:.3f} (target <= 1.10)")
    s = results.get("semanlink")
    if s and "quality" in s:
        best_mode = max(s["quality"], key=lambda m: s["quality"][m]["ndcg@10"])
        out(
            "  Semanlink nDCG@10: "
            + ", ".join(f"{m} {q['ndcg@10']:.3f}" for m, q in s["quality"].items())
            + f"; best mode {best_mode}; best hybrid weights: {s['best_hybrid']}"
        )
    out()


# ---------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke run: small sizes, few queries, one repeat of embedding steps",
    )
    p.add_argument(
        "--sizes", help="generated corpus sizes in chunks for BM25 (default 10000,50000; quick 2000)"
    )
    p.add_argument(
        "--embed-size", type=int, help="chunks for the embedding parts (default 10000; quick 1000)"
    )
    p.add_argument(
        "--queries", type=int, help="generated queries for ragtune BM25 timing (default 500; quick 50)"
    )
    p.add_argument(
        "--rank-bm25-queries",
        type=int,
        help="queries for rank-bm25 timing and agreement (default 30; quick 10)",
    )
    p.add_argument("--repeats", type=int, help="runs of each cheap timed step (default 3)")
    p.add_argument(
        "--embed-repeats",
        type=int,
        help="runs of full ingest / bare encode / incremental (default 3; quick 1)",
    )
    p.add_argument("--skip-semanlink", action="store_true", help="leave out the real-data section")
    p.add_argument("--skip-embedding", action="store_true", help="leave out sections 3 and 4")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument(
        "--cache", type=Path, default=ROOT / "bench" / ".cache", help="where the Semanlink data is cached"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="JSON results (default bench/results/retrieval.json, or retrieval-quick.json)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (corpora and indexes)")
    args = p.parse_args(argv)
    profile = (
        {
            "sizes": "2000",
            "embed_size": 1000,
            "queries": 50,
            "rank_bm25_queries": 10,
            "repeats": 3,
            "embed_repeats": 1,
            "semanlink_latency_queries": 50,
            "semanlink_repeats": 1,
            "facade_queries": 50,
        }
        if args.quick
        else {
            "sizes": "10000,50000",
            "embed_size": 10000,
            "queries": 500,
            "rank_bm25_queries": 30,
            "repeats": 3,
            "embed_repeats": 3,
            "semanlink_latency_queries": 10_000,
            "semanlink_repeats": 3,
            "facade_queries": 200,
        }
    )
    for key, value in profile.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    args.facade_queries = min(args.facade_queries, args.queries)
    args.score_check_queries = 5
    args.change_fraction = 0.01
    if args.out is None:
        args.out = ROOT / "bench" / "results" / ("retrieval-quick.json" if args.quick else "retrieval.json")
    return args


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip() or None
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Report()
    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "commit": _git_commit(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "quick": args.quick,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }
    }
    work = Path(tempfile.mkdtemp(prefix="ragtune-bench-"))
    log(f"working folder {work}")
    try:
        out(
            f"ragtune retrieval benchmark ({'quick' if args.quick else 'full'} run), commit {results['meta']['commit']}, "
            f"Python {results['meta']['python']}, {results['meta']['cpus']} CPUs, {results['meta']['started']}"
        )
        out(
            f"medians of {args.repeats} runs for cheap steps, {args.embed_repeats} for embedding steps; "
            "the machine is shared, so expect noise"
        )
        out()
        bm25 = {}
        for size in args.sizes:
            bm25[size] = bench_bm25(size, args, work, out)
        results["bm25"] = {str(k): v for k, v in bm25.items()}
        print_bm25(bm25, out)

        embedder = None
        if not args.skip_embedding or not args.skip_semanlink:
            log("loading the default embedding model")
            embedder = SentenceTransformerEmbedder()
            results["model_load_s"], _ = timed(lambda: embedder.encode(["warm"]))
        if not args.skip_embedding:
            results["embedding"] = bench_embedding(args.embed_size, args, work, embedder)
            print_embedding(results["embedding"], results["model_load_s"], out)
        if not args.skip_semanlink:
            from bench.semanlink import DataUnavailable

            try:
                results["semanlink"] = bench_semanlink(args, work, embedder)
                print_semanlink(results["semanlink"], out)
            except DataUnavailable as exc:
                results["semanlink"] = {"skipped": str(exc)}
                out(f"5. Semanlink: SKIPPED, the data could not be fetched: {exc}")
                out()
        print_summary(results, out)
        results["seconds"] = time.perf_counter() - _STARTED
        out(f"total wall time {results['seconds']:.0f} s")
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
