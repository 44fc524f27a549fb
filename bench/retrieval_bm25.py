"""Sections 1 and 2 of the retrieval benchmark: a generated corpus, read and chunked as ragtune ingests it,
and ragtune's BM25 against rank-bm25 on the same tokens (query time, build time, top-10 agreement)."""

from __future__ import annotations

import argparse
import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpus import Corpus, CorpusSpec, document_name, stop_words, write_documents
from bench.helpers import log, mean, median, ms, out, repeat_timed, text_table, timed
from ragtune import RAG, RAGConfig
from ragtune.indexes.bm25 import BM25Index
from ragtune.indexes.tokenize import Tokenizer
from ragtune.rag.ingest.chunking import Chunker, ChunkingConfig
from ragtune.rag.ingest.readers import parse_bytes

CHUNKING = ChunkingConfig(chunk_size=800, chunk_overlap=0)  # one generated paragraph = one chunk


class HashEmbedder:
    """A stand-in embedder (16-dim one-hot of a CRC of the text) for ingests where only the lexical side
    is being measured; it costs microseconds, so what is left is ragtune's own ingest work."""

    name = "bench-hash-16"

    def encode(self, texts: Sequence[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
        vectors = np.zeros((len(texts), 16), dtype=np.float32)
        for i, text in enumerate(texts):
            vectors[i, zlib.crc32(text.encode("utf-8")) % 16] = 1.0
        return vectors


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


def bench_bm25(size: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
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
    stop = stop_words(tokenizer, corpus.zipf.words)
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
    res["ragtune_ms_per_query"] = ms(median(times)) / len(queries)
    res["ragtune_ms_per_query_runs"] = [ms(t) / len(queries) for t in times]

    rb_queries = queries[: args.rank_bm25_queries]
    log(f"[{size}] timing rank-bm25 get_scores + top-10 over {len(rb_queries)} queries x {args.repeats}")
    times, _ = repeat_timed(
        lambda: [rank_bm25_top(okapi.get_scores(tokenizer(q)), 10) for q in rb_queries], args.repeats
    )
    res["rank_bm25_ms_per_query"] = ms(median(times)) / len(rb_queries)
    res["rank_bm25_ms_per_query_runs"] = [ms(t) / len(rb_queries) for t in times]
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
        res[f"facade_{mode}_ms_per_query"] = ms(median(times)) / len(facade_queries)
    lexical_rag.close()
    shutil.rmtree(work / f"index-lexical-{size}", ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    return res


def print_bm25(results: dict[int, dict[str, Any]]) -> None:
    out("1. Generated corpus")
    out()
    text_table(
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
    text_table(
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
    text_table(
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
