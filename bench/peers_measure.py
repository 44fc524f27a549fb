"""The measurement passes of bench/peers.py: full, incremental and unchanged ingests of every system next to
a bare encode, query latency (interleaved, then one library at a time), and the Semanlink quality pass."""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import semanlink
from bench.corpus import Corpus, CorpusSpec, edit_documents, stop_words, write_documents
from bench.helpers import log, median, percentile, rotate, shuffled, timed_cpu
from bench.metrics import ndcg_at_k, paired_bootstrap, recall_at_k
from bench.peers_base import LABEL, PEERS, SYSTEMS, TORCH_QUERIES, K, Meter, SharedEncoder, Source, System
from bench.peers_langchain import LangChain
from bench.peers_llamaindex import LlamaIndex
from bench.peers_ragtune import MeteredEmbedder, Ragtune, TorchQueryEmbedder
from ragtune.indexes.embedding import SentenceTransformerEmbedder
from ragtune.indexes.tokenize import Tokenizer


@dataclass
class Bench:
    """Everything the sections share: the model, the meter, the working folder, the options."""

    args: argparse.Namespace
    work: Path
    meter: Meter = field(default_factory=Meter)
    st_embedder: SentenceTransformerEmbedder = field(default_factory=SentenceTransformerEmbedder)
    _encoder: SharedEncoder | None = None
    _made: int = 0

    @property
    def encoder(self) -> SharedEncoder:
        if self._encoder is None:
            self._encoder = SharedEncoder(self.st_embedder.model, self.meter)
        return self._encoder

    def make(self, name: str, source: Source) -> System:
        self._made += 1
        if name == "ragtune":
            embedder = MeteredEmbedder(self.st_embedder, self.meter)
            return Ragtune(source, self.work / f"ragtune-{self._made}", embedder)
        if name == "llamaindex":
            return LlamaIndex(source, self.encoder)
        if name == "langchain":
            return LangChain(source, self.encoder, self.work / f"langchain-{self._made}")
        raise ValueError(name)

    def torch_queries(self, ragtune: System) -> System:
        """A search-only handle on `ragtune`'s index whose queries are embedded on torch like the peers'."""
        assert isinstance(ragtune, Ragtune)
        embedder = TorchQueryEmbedder(self.st_embedder.name, self.encoder)
        return Ragtune(ragtune.source, ragtune.index_dir, embedder, name=TORCH_QUERIES, owner=False)


# ---------------------------------------------------------------------------------------------------------
# Measurements


def measured_ingest(bench: Bench, system: System, record: bool = False) -> tuple[dict[str, Any], list[str]]:
    bench.meter.start(record=record)
    wall, cpu, phases = timed_cpu(system.ingest)
    embedded = bench.meter.documents
    texts = bench.meter.stop()
    return {"wall_s": wall, "cpu_s": cpu, "embedded": embedded, **phases}, texts


def check_chunks(system: System, expected: int, where: str) -> dict[str, int]:
    counts = {"chunks": system.chunks()}
    if hasattr(system, "bm25_chunks"):
        counts["bm25_chunks"] = system.bm25_chunks()  # type: ignore[attr-defined]
    if any(v != expected for v in counts.values()):
        raise SystemExit(
            f"{system.name} holds {counts} chunks {where}; expected {expected} (one per paragraph)"
        )
    return counts


def check_texts(name: str, embedded: list[str], expected: Sequence[str]) -> None:
    """The texts a system embedded are exactly the paragraphs (whitespace at the ends aside)."""
    if Counter(t.strip() for t in embedded) != Counter(t.strip() for t in expected):
        got = Counter(t.strip() for t in embedded)
        missing = sum((Counter(t.strip() for t in expected) - got).values())
        raise SystemExit(f"{name} embedded {len(embedded)} texts, {missing} paragraphs missing or altered")


def full_ingests(
    bench: Bench, source: Source, paragraphs: list[str], repeats: int
) -> tuple[dict[str, System], dict[str, Any]]:
    """Full ingest of each system into a new index, `repeats` times, each round next to a bare encode, the
    order rotating; returns the last round's systems (kept for the incremental part) and the numbers."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ("encode", *SYSTEMS)}
    kept: dict[str, System] = {}
    counts: dict[str, dict[str, int]] = {}
    for rep in range(repeats):
        for name in rotate(("encode", *SYSTEMS), rep):
            log(f"  full ingest round {rep + 1}/{repeats}: {LABEL[name]}")
            if name == "encode":
                wall, cpu, _ = timed_cpu(lambda: bench.encoder.encode(paragraphs))
                runs[name].append({"wall_s": wall, "cpu_s": cpu, "embedded": len(paragraphs)})
                continue
            system = bench.make(name, source)
            stats, texts = measured_ingest(bench, system, record=rep == 0)
            runs[name].append(stats)
            if rep == 0:
                check_texts(name, texts, paragraphs)
            counts[name] = check_chunks(system, len(paragraphs), "after the full ingest")
            if name in kept:
                kept[name].close()
            kept[name] = system
    summary: dict[str, Any] = {"runs": runs, "counts": counts}
    encode = runs["encode"]
    for name in SYSTEMS:
        pairs = [r["wall_s"] / e["wall_s"] for r, e in zip(runs[name], encode, strict=True)]
        cpu_pairs = [r["cpu_s"] / e["cpu_s"] for r, e in zip(runs[name], encode, strict=True)]
        summary[name] = {
            "wall_s": median([r["wall_s"] for r in runs[name]]),
            "cpu_s": median([r["cpu_s"] for r in runs[name]]),
            "over_encode": median(pairs),
            "over_encode_runs": pairs,
            "over_encode_cpu": median(cpu_pairs),
            "embedded": runs[name][0]["embedded"],
            "phases": {
                k: median([r[k] for r in runs[name]])
                for k in ("load_s", "index_s", "bm25_s")
                if k in runs[name][0]
            },
        }
    summary["encode"] = {
        "wall_s": median([e["wall_s"] for e in encode]),
        "cpu_s": median([e["cpu_s"] for e in encode]),
        "texts_per_s": len(paragraphs) / median([e["wall_s"] for e in encode]),
    }
    return kept, summary


def incremental_ingests(
    bench: Bench, systems: dict[str, System], folder: Path, docs: list[list[str]], corpus: Corpus, rounds: int
) -> dict[str, Any]:
    """Each round edits one paragraph in a fresh 1% of the files, then every system re-ingests."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
    edited_total = 0
    new_paragraphs: list[str] = []
    for r in range(1, rounds + 1):
        edited = list(edit_documents(folder, docs, corpus, 0.01, round_=r))
        edited_total = len(edited)
        new_paragraphs = [docs[i][0] for i in edited]
        for name in rotate(SYSTEMS, r):
            log(f"  re-ingest after editing {len(edited)} files, round {r}/{rounds}: {LABEL[name]}")
            stats, _ = measured_ingest(bench, systems[name])
            runs[name].append(stats)
    size = sum(len(d) for d in docs)
    found: dict[str, str] = {}
    for name, system in systems.items():
        check_chunks(system, size, "after the incremental re-ingests")
        probes = new_paragraphs[:5]
        hits = sum(system.search(p, "dense")[:1] == [p.strip()] for p in probes)
        found[name] = f"{hits}/{len(probes)}"
    return {
        "edited_files": edited_total,
        "rounds": rounds,
        "runs": runs,
        "edited_found_top1_dense": found,
        **{
            name: {
                "wall_s": median([x["wall_s"] for x in runs[name]]),
                "embedded": runs[name][0]["embedded"],
                "phases": {
                    k: median([x[k] for x in runs[name]])
                    for k in ("load_s", "index_s", "bm25_s")
                    if k in runs[name][0]
                },
            }
            for name in SYSTEMS
        },
    }


def unchanged_ingests(bench: Bench, systems: dict[str, System], repeats: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
    for r in range(repeats):
        for name in rotate(SYSTEMS, r):
            stats, _ = measured_ingest(bench, systems[name])
            runs[name].append(stats)
    log(f"  unchanged re-ingest x {repeats} done")
    return {
        "repeats": repeats,
        "runs": runs,
        **{
            name: {
                "wall_s": median([x["wall_s"] for x in runs[name]]),
                "embedded": max(x["embedded"] for x in runs[name]),
            }
            for name in SYSTEMS
        },
    }


Call = tuple[str, str]  # (system, mode); ("encode", "query") is the bare query embedding


def query_latency(
    bench: Bench, systems: dict[str, System], queries: list[str], repeats: int
) -> dict[str, Any]:
    """Per-query latency of every (system, mode), interleaved: for each query every call runs once, in a
    random order drawn afresh for every query. Warm-up first."""
    calls: list[Call] = [(name, mode) for name, system in systems.items() for mode in system.modes]
    calls.append(("encode", "query"))

    def run(call: Call, query: str) -> list[str]:
        name, mode = call
        if name == "encode":
            bench.encoder.encode([query], query=True)
            return []
        return systems[name].search(query, mode)

    for call in calls:
        for q in queries[:5]:
            run(call, q)
    times: dict[Call, list[float]] = {c: [] for c in calls}
    results: dict[Call, list[list[str]]] = {c: [] for c in calls}
    rng = np.random.default_rng(bench.args.seed)
    for rnd in range(repeats):
        log(f"  query latency round {rnd + 1}/{repeats}: {len(queries)} queries x {len(calls)} calls")
        for query in queries:
            for call in shuffled(calls, rng):
                start = time.perf_counter()
                hits = run(call, query)
                times[call].append(time.perf_counter() - start)
                if rnd == 0:
                    results[call].append(hits)
    # Then one call at a time over the whole query set, as a process using a single library runs: torch and
    # onnxruntime both leave spinning threads behind them, which slows whatever runs next on 2 cores.
    blocks: dict[Call, list[float]] = {c: [] for c in calls}
    for rnd in range(repeats):
        log(f"  query latency in blocks, round {rnd + 1}/{repeats}")
        for call in shuffled(calls, rng):
            for q in queries[:3]:
                run(call, q)
            for query in queries:
                start = time.perf_counter()
                run(call, query)
                blocks[call].append(time.perf_counter() - start)
    latency = {f"{name}/{mode}": _stats(t) for (name, mode), t in times.items()}
    latency_blocks = {f"{name}/{mode}": _stats(t) for (name, mode), t in blocks.items()}
    # The same vectors and exact search everywhere: the dense top-10 should agree (up to float ties).
    agreement: dict[str, float] = {}
    for other, mode in calls:
        if other not in ("ragtune", "encode") and ("ragtune", mode) in results:
            ours, theirs = results[("ragtune", mode)], results[(other, mode)]
            overlap = [len(set(a) & set(b)) / max(1, len(a)) for a, b in zip(ours, theirs, strict=True)]
            agreement[f"{other}/{mode}"] = float(np.mean(overlap))
    duplicates = {
        f"{name}/{mode}": sum(len(h) != len(set(h)) for h in hits)
        for (name, mode), hits in results.items()
        if name != "encode"
    }
    return {
        "queries": len(queries),
        "repeats": repeats,
        "latency": latency,
        "latency_blocks": latency_blocks,
        "top10_overlap_with_ragtune": agreement,
        "queries_with_duplicate_hits": duplicates,
    }


def _stats(seconds_: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(seconds_, 50) * 1000,
        "p95_ms": percentile(seconds_, 95) * 1000,
        "mean_ms": float(np.mean(seconds_)) * 1000,
        "n": len(seconds_),
    }


def bench_size(bench: Bench, size: int) -> dict[str, Any]:
    args = bench.args
    log(f"[{size}] generating {size} paragraphs, one file each")
    corpus = Corpus(CorpusSpec(size, seed=args.seed))
    docs = [[p] for d in corpus.documents() for p in d]  # one chunk-sized paragraph per document
    paragraphs = [d[0] for d in docs]
    folder = bench.work / f"corpus-{size}"
    write_documents(folder, docs)
    source = Source(folder=folder)
    res: dict[str, Any] = {
        "chunks": size,
        "documents": len(docs),
        "chars_per_chunk": float(np.mean([len(p) for p in paragraphs])),
        "words_per_chunk": float(np.mean([p.count(" ") + 1 for p in paragraphs])),
        "load_average_before": os.getloadavg(),
    }
    repeats = args.ingest_repeats if args.ingest_repeats else (2 if size <= 5000 else 1)
    log(f"[{size}] full ingests x {repeats}")
    systems, res["full"] = full_ingests(bench, source, paragraphs, repeats)
    res["full"]["repeats"] = repeats
    log(f"[{size}] incremental re-ingests")
    res["incremental"] = incremental_ingests(bench, systems, folder, docs, corpus, args.incremental_rounds)
    res["unchanged"] = unchanged_ingests(bench, systems, args.unchanged_repeats)
    systems[TORCH_QUERIES] = bench.torch_queries(systems["ragtune"])
    stop = stop_words(Tokenizer(), corpus.zipf.words)
    queries = corpus.queries(args.queries, stop, seed_offset=11)
    res["queries"] = query_latency(bench, systems, queries, args.query_repeats)
    res["ragtune_query_backend"] = ragtune_query_backend(bench.st_embedder)
    res["load_average_after"] = os.getloadavg()
    for system in systems.values():
        system.close()
    shutil.rmtree(folder, ignore_errors=True)
    return res


def ragtune_query_backend(embedder: SentenceTransformerEmbedder) -> str:
    """What ragtune embeds queries with ('onnx' or 'torch'), where this ragtune has a choice."""
    choose = getattr(embedder, "query_backend", None)
    return str(choose()) if callable(choose) else "torch"


def bench_semanlink(bench: Bench) -> dict[str, Any]:
    args = bench.args
    data = semanlink.ensure_data(args.cache, log=log)
    tags, papers = semanlink.load(data)
    if args.semanlink_queries:
        papers = papers[: args.semanlink_queries]
    jsonl = args.cache / "semanlink" / "tags.jsonl"
    semanlink.write_jsonl(tags, jsonl)
    source = Source(jsonl=jsonl, records=tuple((t.id, t.text) for t in tags))
    res: dict[str, Any] = {"tags": len(tags), "papers": len(papers), "ingest": {}}
    systems: dict[str, System] = {}
    for name in SYSTEMS:
        log(f"[semanlink] ingesting {len(tags)} tags into {LABEL[name]}")
        system = bench.make(name, source)
        stats, texts = measured_ingest(bench, system, record=True)
        check_texts(name, texts, [t.text for t in tags])
        res["ingest"][name] = {
            **stats,
            **check_chunks(system, len(tags), "after ingesting the Semanlink tags"),
        }
        systems[name] = system
    calls = [(name, mode) for name, system in systems.items() for mode in system.modes]
    ndcg: dict[Call, list[float]] = {c: [] for c in calls}
    recall: dict[Call, list[float]] = {c: [] for c in calls}
    log(f"[semanlink] quality: {len(papers)} queries x {len(calls)} calls (query vectors computed once)")
    bench.meter.query_vectors = {}
    for paper in papers:
        for name, mode in calls:
            ranked = list(dict.fromkeys(systems[name].search(paper.query, mode)))
            ndcg[(name, mode)].append(ndcg_at_k(ranked, paper.relevant, K))
            recall[(name, mode)].append(recall_at_k(ranked, paper.relevant, K))
    bench.meter.query_vectors = None

    # Latency with these long queries (~200 words): fewer of them, nothing cached, interleaved.
    systems[TORCH_QUERIES] = bench.torch_queries(systems["ragtune"])
    timed_calls = [(name, mode) for name, system in systems.items() for mode in system.modes]
    timed_papers = papers[: args.semanlink_latency_queries]
    for name, mode in timed_calls:  # warm-up
        systems[name].search(papers[-1].query, mode)
    times: dict[Call, list[float]] = {c: [] for c in timed_calls}
    log(f"[semanlink] latency: {len(timed_papers)} queries x {len(timed_calls)} calls")
    rng = np.random.default_rng(args.seed)
    for paper in timed_papers:
        for name, mode in shuffled(timed_calls, rng):
            start = time.perf_counter()
            systems[name].search(paper.query, mode)
            times[(name, mode)].append(time.perf_counter() - start)
    res["latency_queries"] = len(timed_papers)
    res["quality"] = {
        f"{name}/{mode}": {
            "ndcg@10": float(np.mean(ndcg[(name, mode)])) if (name, mode) in ndcg else None,
            "recall@10": float(np.mean(recall[(name, mode)])) if (name, mode) in ndcg else None,
            "p50_ms": percentile(times[(name, mode)], 50) * 1000,
            "p95_ms": percentile(times[(name, mode)], 95) * 1000,
        }
        for name, mode in timed_calls
    }
    res["ragtune_minus_peer"] = {}
    for peer in PEERS:
        for mode in ("bm25", "dense", "hybrid"):
            diff, low, high = paired_bootstrap(ndcg[("ragtune", mode)], ndcg[(peer, mode)])
            res["ragtune_minus_peer"][f"{peer}/{mode}"] = {"mean": diff, "ci95": [low, high]}
    for system in systems.values():
        system.close()
    return res
