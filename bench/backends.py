"""The local index against a Milvus server on the same chunks, vectors and queries (issue 13, first part).

    .venv/bin/python bench/backends.py                  # 10,000 chunks, 100 queries
    .venv/bin/python bench/backends.py --chunks 2000 --queries 20

A milvus-lite gRPC server is started on a free port (or RAGTUNE_MILVUS_URI is used). The local index is
built by `RAG.ingest` with the fast hashed embedder of bench/scale.py; Milvus gets the very same chunk
ids, texts and vectors through `MilvusIndex.add`, so the comparison is about the indexes, not the
embeddings. Printed: load time, query p50/p95 per mode, top-10 agreement with the local backend (dense
should be identical: both are exact inner product), and a 1% edit (local: re-ingest; Milvus: the removal
and insertion that ingest would send). BM25 is measured both ways the issue names: Milvus's BM25 function
over its own analyzer, and our BM25 term weights (idf left for the query vector) in a sparse vector
field searched by inner product. Not yet measured here: Ray Data ingest (not built yet).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.corpus import Corpus, CorpusSpec, edit_documents, stop_words, write_documents  # noqa: E402
from bench.helpers import cpu_model, log, markdown_table, median, out, percentile  # noqa: E402
from bench.scale import HashedEmbedder  # noqa: E402

MODES = ("bm25", "dense", "hybrid")
OWN_BM25 = "bm25, own weights"  # the second BM25 the issue asks to compare: our weights as a sparse field


def open_local(folder: Path):
    from ragtune import RAG
    from ragtune.rag.config import RAGConfig
    from ragtune.rag.ingest.chunking import ChunkingConfig

    config = RAGConfig(chunking=ChunkingConfig(chunk_size=800, chunk_overlap=0))  # a paragraph a chunk
    return RAG.open(folder, config, embedder=HashedEmbedder())


def live_rows(rag) -> tuple[list[str], list[str], np.ndarray]:
    """Chunk ids, texts and vectors of the local index's live rows."""
    texts = dict(rag.store.iter_chunks())
    generation = rag._current_generation()
    ids, vectors = [], []
    for view in generation.views:
        live = np.arange(len(view.segment)) if view.deleted is None else np.flatnonzero(~view.deleted)
        ids += [c.decode() for c in view.segment.chunk_ids[live].tolist()]
        vectors.append(np.asarray(view.segment.vectors[live]))
    return ids, [texts[i] for i in ids], np.vstack(vectors)


def own_bm25_rows(rag) -> tuple[list[str], list[dict[int, float]]]:
    """Each live row's BM25 term weights without the idf, tf (k1 + 1) / (tf + k1 (1 - b + b len / avglen)):
    the idf goes into the query vector (computed from the store's current statistics), so an inner
    product in Milvus gives the local BM25 score, and only the mean length can go stale as the corpus
    changes."""
    generation = rag._current_generation()
    searcher = generation.index("bm25").searcher
    k1, b = searcher.config.k1, searcher.config.b
    ids, weights = [], []
    for view in generation.views:
        segment = view.segment
        norms = k1 * (1.0 - b + b * segment.lengths.astype(np.float64) / searcher.mean_length)
        for row in range(len(segment)):
            if view.deleted is not None and view.deleted[row]:
                continue
            start, end = segment.row_indptr[row], segment.row_indptr[row + 1]
            tf = segment.row_tf[start:end].astype(np.float64)
            ids.append(segment.chunk_ids[row].decode())
            values = tf * (k1 + 1.0) / (tf + norms[row])
            weights.append(dict(zip(segment.row_terms[start:end].tolist(), values.tolist(), strict=True)))
    return ids, weights


def own_bm25_query(rag, query: str) -> dict[int, float]:
    searcher = rag._current_generation().index("bm25").searcher
    cols, times = searcher._query(query)
    return dict(zip(cols.tolist(), (searcher.idf[cols] * times).tolist(), strict=True))


def load_own_bm25(client, name: str, ids: list[str], weights: list[dict[int, float]]) -> None:
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("chunk_id", DataType.VARCHAR, is_primary=True, max_length=200)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    indexes = client.prepare_index_params()
    indexes.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(name, schema=schema, index_params=indexes)
    for start in range(0, len(ids), 512):
        rows = [
            {"chunk_id": i, "sparse": w}
            for i, w in zip(ids[start : start + 512], weights[start : start + 512], strict=True)
        ]
        client.insert(name, rows)
    client.load_collection(name)


def agreement(a: list[list[str]], b: list[list[str]]) -> tuple[float, float]:
    """Mean share of the local top 10 that the other found, and the share of identical lists."""
    overlap = [len(set(x) & set(y)) / max(1, len(x)) for x, y in zip(a, b, strict=True)]
    return float(np.mean(overlap)), float(np.mean([x == y for x, y in zip(a, b, strict=True)]))


def measure(args: argparse.Namespace, work: Path, uri: str) -> dict[str, Any]:
    from ragtune.core.schema import text_hash
    from ragtune.indexes.bm25 import BM25Config
    from ragtune.indexes.tokenize import Tokenizer
    from ragtune.rag.backends.milvus import MilvusConfig, MilvusIndex, connect

    corpus = Corpus(CorpusSpec(args.chunks, seed=args.seed))
    docs = corpus.documents()
    folder = work / "docs"
    write_documents(folder, docs)
    queries = corpus.queries(args.queries, stop_words(Tokenizer(), corpus.zipf.words))
    rag = open_local(work / "local")
    results: dict[str, Any] = {"chunks": args.chunks, "queries": len(queries)}

    log("local: full ingest")
    started = time.perf_counter()
    rag.ingest(folder, progress=False)
    results["local_ingest_s"] = time.perf_counter() - started
    ids, texts, vectors = live_rows(rag)

    log("milvus: loading the same rows")
    index = MilvusIndex(
        connect(MilvusConfig(uri=uri)), f"bench_{int(time.time())}", vectors.shape[1], BM25Config()
    )
    index.drop()
    index.ensure()
    started = time.perf_counter()
    index.add(1, ids, texts, [text_hash(t) for t in texts], vectors)
    results["milvus_load_s"] = time.perf_counter() - started

    embedder = HashedEmbedder()
    found: dict[str, dict[str, list[list[str]]]] = {"local": {}, "milvus": {}}
    times: dict[str, dict[str, list[float]]] = {"local": {}, "milvus": {}}
    for mode in MODES:
        for name in ("local", "milvus"):
            found[name][mode], times[name][mode] = [], []
        for query in queries:
            started = time.perf_counter()
            hits = rag.search(query, k=10, mode=mode)
            times["local"][mode].append((time.perf_counter() - started) * 1000)
            found["local"][mode].append([h.chunk_id for h in hits])
            started = time.perf_counter()
            vector = embedder.encode([query], query=True)[0]
            if mode == "hybrid":
                remote = index.hybrid(1, query, vector, k=10, depth=50, rrf_k=60)
            else:
                remote = index.search(1, mode, query, vector, 10)
            times["milvus"][mode].append((time.perf_counter() - started) * 1000)
            found["milvus"][mode].append([h.chunk_id for h in remote])
    log("milvus: BM25 with our own weights as a sparse vector field")
    own_ids, own_weights = own_bm25_rows(rag)
    own_name = index.name + "_own_bm25"
    load_own_bm25(index.client, own_name, own_ids, own_weights)
    found["milvus"][OWN_BM25], times["milvus"][OWN_BM25] = [], []
    for query in queries:
        started = time.perf_counter()
        remote = index.client.search(
            own_name,
            data=[own_bm25_query(rag, query)],
            anns_field="sparse",
            search_params={"metric_type": "IP"},
            limit=10,
            output_fields=["chunk_id"],
            consistency_level="Strong",
        )
        times["milvus"][OWN_BM25].append((time.perf_counter() - started) * 1000)
        found["milvus"][OWN_BM25].append([hit["entity"]["chunk_id"] for hit in remote[0]])
    index.client.drop_collection(own_name)
    found["local"][OWN_BM25], times["local"][OWN_BM25] = found["local"]["bm25"], times["local"]["bm25"]
    results["ms"] = times
    results["agreement"] = {
        mode: agreement(found["local"][mode], found["milvus"][mode]) for mode in (*MODES, OWN_BM25)
    }

    log("a 1% edit")
    edited = list(edit_documents(folder, docs, corpus, 0.01, 0))
    before = set(ids)
    started = time.perf_counter()
    rag.ingest(folder, progress=False)
    results["local_edit_s"] = time.perf_counter() - started
    new_ids, new_texts, new_vectors = live_rows(rag)
    added = [i for i, c in enumerate(new_ids) if c not in before or new_texts[i] != texts[ids.index(c)]]
    removed = sorted({new_ids[i] for i in added} & before)
    started = time.perf_counter()
    index.remove(2, removed)
    index.add(
        2,
        [new_ids[i] for i in added],
        [new_texts[i] for i in added],
        [text_hash(new_texts[i]) for i in added],
        new_vectors[added],
    )
    results["milvus_edit_s"] = time.perf_counter() - started
    results["edited_documents"] = len(edited)
    index.drop()
    rag.close()
    return results


def report(r: dict[str, Any]) -> None:
    out(f"# Local index vs Milvus (milvus-lite server), {r['chunks']:,} chunks, {r['queries']} queries\n")
    out(f"Machine: {cpu_model()}. Hashed bag-of-words embedder, 384 dims; both dense indexes exact (flat).\n")
    rows = [
        [
            "load / full ingest",
            f"{r['local_ingest_s']:.1f} s (ingest: read, embed, index)",
            f"{r['milvus_load_s']:.1f} s (insert of the same rows)",
        ],
        [
            f"1% edit ({r['edited_documents']} documents)",
            f"{r['local_edit_s']:.2f} s (re-ingest)",
            f"{r['milvus_edit_s']:.2f} s (remove + insert)",
        ],
    ]
    for mode in (*MODES, OWN_BM25):
        local, remote = r["ms"]["local"][mode], r["ms"]["milvus"][mode]
        rows.append(
            [
                f"{mode} p50 / p95",
                f"{median(local):.2f} / {percentile(local, 95):.2f} ms",
                f"{median(remote):.2f} / {percentile(remote, 95):.2f} ms ({median(remote) / median(local):.1f}x)",
            ]
        )
    markdown_table(["measure", "local", "Milvus"], rows)
    out("\nTop-10 agreement with the local backend (mean overlap; share of identical lists):\n")
    markdown_table(
        ["mode", "overlap", "identical"],
        [[m, f"{a:.3f}", f"{s:.2f}"] for m, (a, s) in r["agreement"].items()],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    from ragtune.rag.backends.milvus_lite import milvus_server

    with tempfile.TemporaryDirectory(prefix="ragtune-backends-") as tmp, milvus_server(Path(tmp)) as uri:
        results = measure(args, Path(tmp), uri)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
