"""Section 5 of the retrieval benchmark: nDCG@10, recall@10 and MRR@10 per search mode on the Semanlink
arXiv tagging set (real labels), latency with its long queries, and a sweep of hybrid fusion weights with
paired-bootstrap intervals against the default."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import semanlink
from bench.helpers import log, mean, median, ms, out, repeat_timed, text_table, timed
from bench.metrics import mrr_at_k, ndcg_at_k, paired_bootstrap, recall_at_k
from ragtune import RAG
from ragtune.indexes.embedding import SentenceTransformerEmbedder
from ragtune.rag.config import MODES

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
        latency[mode] = ms(median(times)) / len(latency_papers)
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


def print_semanlink(res: dict[str, Any]) -> None:
    out(
        f"5. Semanlink arXiv tagging (real data): {res['tags']} tags as documents, {res['papers']} papers as "
        f"queries (title + summary), {res['gold_per_paper']:.2f} gold tags per paper"
    )
    out(f"   ingest of tags.jsonl: {res['ingest_s']:.1f} s ({res['ingest_summary']})")
    out()
    text_table(
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
    text_table(
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
