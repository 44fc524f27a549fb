"""The same folder ingested and searched through `RAG` with the local backend and with the Milvus backend.

    .venv/bin/python bench/backends.py                  # 10,000 chunks, 100 queries
    .venv/bin/python bench/backends.py --chunks 2000 --queries 20

A milvus-lite gRPC server is started on a free port (or RAGTUNE_MILVUS_URI is used). Both indexes are
filled by `RAG.ingest` from the same files with the fast hashed embedder of bench/scale.py, so the
comparison is about the backends, not the embeddings. Printed: full ingest time, a 1% edit re-ingested,
query p50/p95 per mode through `RAG.search` (query embedding and the store lookup included on both
sides), and top-10 agreement with the local backend (dense should be identical: both are exact inner
product). BM25 is measured both ways the issue names: the backend's own (our BM25 term weights in a
sparse field, idfs kept in the store), and Milvus's BM25 function over its own analyzer, loaded here
into a collection of its own from the same chunk texts. With Ray installed, the same folder is also
ingested into a third (local) index with `--engine ray`: 2 actors on a local Ray (`ray_ingest_seconds`).
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
FUNCTION_BM25 = "bm25, Milvus function"  # the other BM25 the issue asks to compare


def open_index(folder: Path, uri: str | None = None):
    from ragtune import RAG
    from ragtune.rag.config import BackendConfig, RAGConfig
    from ragtune.rag.ingest.chunking import ChunkingConfig

    backend = BackendConfig("milvus", uri, f"bench_{int(time.time())}") if uri else BackendConfig()
    config = RAGConfig(
        chunking=ChunkingConfig(chunk_size=800, chunk_overlap=0), backend=backend
    )  # a paragraph a chunk
    return RAG.open(folder, config, embedder=HashedEmbedder())


def load_function_bm25(client, name: str, rag) -> None:
    """Every chunk of `rag` in a collection searched by Milvus's BM25 function over its analyzer."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("chunk_id", DataType.VARCHAR, is_primary=True, max_length=200)
    schema.add_field("text", DataType.VARCHAR, max_length=65_535, enable_analyzer=True)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function("bm25", FunctionType.BM25, input_field_names=["text"], output_field_names=["sparse"])
    )
    bm25 = rag.config.bm25
    indexes = client.prepare_index_params()
    indexes.add_index(
        "sparse",
        index_type="SPARSE_INVERTED_INDEX",
        metric_type="BM25",
        params={"bm25_k1": bm25.k1, "bm25_b": bm25.b},
    )
    client.create_collection(name, schema=schema, index_params=indexes)
    rows = [{"chunk_id": cid, "text": text} for cid, text in rag.store.iter_chunks()]
    for start in range(0, len(rows), 512):
        client.insert(name, rows[start : start + 512])
    client.load_collection(name)
    client.flush(name)  # searched from indexed segments, as the backend's own rows are (MilvusIndex.seal)
    while client.describe_index(name, "sparse").get("pending_index_rows", 0) > 0:
        time.sleep(0.1)


def ray_ingest_seconds(folder: Path, work: Path, actors: int = 2) -> float | None:
    """Full ingest of `folder` into a new local index with `--engine ray` (issue 13, part 3): a local Ray of
    `actors` CPUs, one hashed embedder per actor. Ray's own start-up is not counted; starting the actors
    (a new pipeline per ingest) is. None when Ray is not installed."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        log("ray: not installed (pip install 'ragtune[ray]'), no Ray row")
        return None
    import ray

    from ragtune.rag.ingest.ray_engine import IngestEngineConfig

    # The actors unpickle bench.scale.HashedEmbedder, so they need the repository on their path.
    ray.init(num_cpus=actors, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        with open_index(work / "ray") as rag:
            log(f"local, --engine ray ({actors} actors): full ingest")
            started = time.perf_counter()
            rag.ingest(folder, progress=False, engine=IngestEngineConfig("ray", ray_actors=actors))
            return time.perf_counter() - started
    finally:
        ray.shutdown()


def agreement(a: list[list[str]], b: list[list[str]]) -> tuple[float, float]:
    """Mean share of the local top 10 that the other found, and the share of identical lists."""
    overlap = [len(set(x) & set(y)) / max(1, len(x)) for x, y in zip(a, b, strict=True)]
    return float(np.mean(overlap)), float(np.mean([x == y for x, y in zip(a, b, strict=True)]))


def timed_searches(rag, queries: list[str], mode: str) -> tuple[list[list[str]], list[float]]:
    found, ms = [], []
    for query in queries:
        started = time.perf_counter()
        hits = rag.search(query, k=10, mode=mode)
        ms.append((time.perf_counter() - started) * 1000)
        found.append([h.chunk_id for h in hits])
    return found, ms


def measure(args: argparse.Namespace, work: Path, uri: str) -> dict[str, Any]:
    from ragtune.indexes.tokenize import Tokenizer

    corpus = Corpus(CorpusSpec(args.chunks, seed=args.seed))
    docs = corpus.documents()
    folder = work / "docs"
    write_documents(folder, docs)
    queries = corpus.queries(args.queries, stop_words(Tokenizer(), corpus.zipf.words))
    backends = {"local": open_index(work / "local"), "milvus": open_index(work / "milvus", uri)}
    results: dict[str, Any] = {"chunks": args.chunks, "queries": len(queries), "ingest_s": {}, "edit_s": {}}
    for name, rag in backends.items():
        log(f"{name}: full ingest")
        started = time.perf_counter()
        rag.ingest(folder, progress=False)
        results["ingest_s"][name] = time.perf_counter() - started
    results["ingest_s"]["ray"] = ray_ingest_seconds(folder, work)

    found: dict[str, dict[str, list[list[str]]]] = {"local": {}, "milvus": {}}
    times: dict[str, dict[str, list[float]]] = {"local": {}, "milvus": {}}
    for mode in MODES:
        for name, rag in backends.items():
            log(f"{name}: {mode} searches")
            found[name][mode], times[name][mode] = timed_searches(rag, queries, mode)

    log("milvus: BM25 function over Milvus's analyzer, same chunk texts")
    milvus = backends["milvus"]
    client, name = milvus.remote.index().client, milvus.remote.name + "_function_bm25"
    load_function_bm25(client, name, milvus)
    found["milvus"][FUNCTION_BM25], times["milvus"][FUNCTION_BM25] = [], []
    for query in queries:
        started = time.perf_counter()
        remote = client.search(
            name,
            data=[query],
            anns_field="sparse",
            search_params={"metric_type": "BM25"},
            limit=10,
            output_fields=["chunk_id"],
            consistency_level="Strong",
        )
        times["milvus"][FUNCTION_BM25].append((time.perf_counter() - started) * 1000)
        found["milvus"][FUNCTION_BM25].append([hit["entity"]["chunk_id"] for hit in remote[0]])
    client.drop_collection(name)
    found["local"][FUNCTION_BM25], times["local"][FUNCTION_BM25] = (
        found["local"]["bm25"],
        times["local"]["bm25"],
    )
    results["ms"] = times
    results["agreement"] = {
        mode: agreement(found["local"][mode], found["milvus"][mode]) for mode in (*MODES, FUNCTION_BM25)
    }

    edited = list(edit_documents(folder, docs, corpus, 0.01, 0))
    results["edited_documents"] = len(edited)
    for name, rag in backends.items():
        log(f"{name}: a 1% edit")
        started = time.perf_counter()
        rag.ingest(folder, progress=False)
        results["edit_s"][name] = time.perf_counter() - started
    after = {name: timed_searches(rag, queries, "hybrid")[0] for name, rag in backends.items()}
    results["agreement_after_edit"] = {"hybrid": agreement(after["local"], after["milvus"])}
    milvus.remote.index().drop()
    for rag in backends.values():
        rag.close()
    return results


def report(r: dict[str, Any]) -> None:
    out(
        f"# Local backend vs Milvus backend (milvus-lite server), {r['chunks']:,} chunks, {r['queries']} queries\n"
    )
    out(f"Machine: {cpu_model()}. Hashed bag-of-words embedder, 384 dims; both dense indexes exact (flat).\n")
    ingest, edit = r["ingest_s"], r["edit_s"]
    rows = [
        ["full ingest", f"{ingest['local']:.1f} s", f"{ingest['milvus']:.1f} s"],
        [
            f"1% edit ({r['edited_documents']} documents), re-ingest",
            f"{edit['local']:.2f} s",
            f"{edit['milvus']:.2f} s",
        ],
    ]
    if ingest.get("ray") is not None:
        rows.insert(1, ["full ingest, --engine ray (2 actors)", f"{ingest['ray']:.1f} s", "-"])
    for mode in (*MODES, FUNCTION_BM25):
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
    agreements = {**r["agreement"], "hybrid, after the 1% edit": r["agreement_after_edit"]["hybrid"]}
    markdown_table(
        ["mode", "overlap", "identical"], [[m, f"{a:.3f}", f"{s:.2f}"] for m, (a, s) in agreements.items()]
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
