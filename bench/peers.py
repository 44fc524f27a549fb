"""ragtune side by side with LlamaIndex and LangChain: same corpus, same embedding model, same chunks, one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/peers.py             # 2,000 and 10,000 chunks + Semanlink
    HF_HUB_OFFLINE=1 .venv/bin/python bench/peers.py --quick     # smoke run: 300 chunks, few queries, no real data
    HF_HUB_OFFLINE=1 .venv/bin/python bench/peers.py --sizes 2000 --skip-real

Needs the peers, in ragtune's `bench` extra (`pip install -e '.[bench]'`): llama-index-core,
llama-index-retrievers-bm25, llama-index-vector-stores-qdrant (in-memory Qdrant), langchain-community,
langchain-classic.

What is compared, per corpus size (generated ~90-word paragraphs from bench/corpus.py, ONE paragraph per
file, so every document is already chunk-sized and no system splits it; chunk counts and the embedded texts
are checked to be equal):

- ragtune: `RAG.open(folder).ingest(corpus)`, `rag.search(q, 10, mode=bm25|tfidf|dense|hybrid)`.
- LlamaIndex: SimpleDirectoryReader(filename_as_id) -> IngestionPipeline(SentenceSplitter with a chunk size
  no paragraph reaches, embedding; SimpleDocumentStore, docstore_strategy=UPSERTS, in-memory Qdrant vector
  store) -> VectorStoreIndex.from_vector_store (dense), BM25Retriever (bm25), QueryFusionRetriever
  (reciprocal_rerank, num_queries=1, no LLM) over both (hybrid).
- LangChain: DirectoryLoader(TextLoader) -> langchain_core.indexing.index(SQLRecordManager,
  cleanup="incremental") into FAISS (dense), BM25Retriever (bm25), EnsembleRetriever (RRF, hybrid).
- One SentenceTransformer (all-MiniLM-L6-v2 from indexes.embedding.default_model_path()) serves all three:
  normalized embeddings, batch size 64, wrapped in each framework's embedding interface.

Measured: full ingest (wall and CPU seconds, next to a bare SentenceTransformer.encode of the same texts,
interleaved), re-ingest after editing 1% of the files, re-ingest of an unchanged folder, query latency
p50/p95 per mode over a fixed query set (warm-up first, queries interleaved across systems and modes and
repeated), and nDCG@10 per mode on the Semanlink arXiv tagging set (real labels, see bench/semanlink.py).
Fusion depth is the same everywhere: each retriever hands RRF its top 50 (ragtune's default depth).

Markdown tables go to stdout, progress to stderr, numbers to bench/results/peers.json (peers-quick.json
for --quick). The machine may be shared: read the ratios, and the load averages printed with them.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/peers.py`: make `bench` importable
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is a local folder; never ask a hub

from bench import semanlink  # noqa: E402
from bench.helpers import (  # noqa: E402
    args_record,
    elapsed,
    finish,
    git_commit,
    log,
    modified_tracked_files,
    out,
    package_versions,
    started_at,
    timed,
    write_results,
)
from bench.peers_base import FUSION_DEPTH  # noqa: E402
from bench.peers_measure import Bench, bench_semanlink, bench_size  # noqa: E402
from bench.peers_report import print_goals, print_semanlink, print_size  # noqa: E402
from ragtune.indexes.embedding import default_model_path  # noqa: E402

VERSIONED = (
    "llama-index-core",
    "llama-index-retrievers-bm25",
    "llama-index-vector-stores-qdrant",
    "qdrant-client",
    "bm25s",
    "PyStemmer",
    "langchain-core",
    "langchain-community",
    "langchain-classic",
    "langchain-text-splitters",
    "faiss-cpu",
    "rank-bm25",
    "SQLAlchemy",
    "sentence-transformers",
    "transformers",
    "torch",
    "numpy",
)

# The modules each peer needs, by the package that provides them (all in ragtune's `bench` extra).
PEER_MODULES = {
    "llama_index.core": "llama-index-core",
    "llama_index.retrievers.bm25": "llama-index-retrievers-bm25",
    "llama_index.vector_stores.qdrant": "llama-index-vector-stores-qdrant",
    "langchain_community": "langchain-community",
    "langchain_classic": "langchain-classic",
    "sqlalchemy": "SQLAlchemy",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 300 chunks, few queries, no real data set"
    )
    p.add_argument("--sizes", help="corpus sizes in chunks, comma-separated (default 2000,10000; quick 300)")
    p.add_argument("--skip-real", action="store_true", help="leave out the Semanlink quality section")
    p.add_argument("--queries", type=int, help="generated queries for latency (default 100; quick 15)")
    p.add_argument("--query-repeats", type=int, help="rounds over the query set (default 3; quick 2)")
    p.add_argument(
        "--ingest-repeats",
        type=int,
        help="full-ingest rounds (default 2 up to 5,000 chunks, else 1; quick 1)",
    )
    p.add_argument("--incremental-rounds", type=int, help="1%% edit + re-ingest rounds (default 3; quick 1)")
    p.add_argument("--unchanged-repeats", type=int, help="unchanged re-runs (default 5; quick 2)")
    p.add_argument("--semanlink-queries", type=int, help="use only the first N papers (default all)")
    p.add_argument(
        "--semanlink-latency-queries", type=int, default=40, help="papers timed as queries (default 40)"
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        help="torch.set_num_threads for everyone (default: torch's own choice, one per core); 1 avoids "
        "OpenMP spin-wait stalls when another process keeps a core busy",
    )
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache", help="where Semanlink is cached")
    p.add_argument(
        "--out", type=Path, help="JSON results (default bench/results/peers.json or peers-quick.json)"
    )
    args = p.parse_args(argv)
    defaults: dict[str, Any] = (
        {
            "sizes": "300",
            "queries": 15,
            "query_repeats": 2,
            "ingest_repeats": 1,
            "incremental_rounds": 1,
            "unchanged_repeats": 2,
        }
        if args.quick
        else {
            "sizes": "2000,10000",
            "queries": 100,
            "query_repeats": 3,
            "ingest_repeats": None,
            "incremental_rounds": 3,
            "unchanged_repeats": 5,
        }
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    args.skip_real = args.skip_real or args.quick
    if args.out is None:
        args.out = ROOT / "bench" / "results" / ("peers-quick.json" if args.quick else "peers.json")
    return args


def machine_info() -> dict[str, Any]:
    import torch

    return {
        "started": started_at(),
        "commit": git_commit(),
        "modified_tracked_files": modified_tracked_files(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": os.getloadavg(),
        "versions": package_versions(VERSIONED),
        "embedding_model": str(default_model_path()),
    }


def quiet_libraries() -> None:
    """The peers log per-call notices (HTTP-less Qdrant, bm25s progress, deprecations); keep stderr readable."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="qdrant_client")
    for name in ("bm25s", "llama_index", "httpx", "langchain", "langchain_core", "faiss"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def missing_peers() -> list[str]:
    """The packages of PEER_MODULES that are not installed."""
    import importlib.util

    def found(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            return False

    return sorted({package for module, package in PEER_MODULES.items() if not found(module)})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_peers()
    if missing:  # before any work, rather than an ImportError halfway through
        print(
            f"bench/peers.py: the peers are not installed ({', '.join(missing)}): "
            "run .venv/bin/pip install -e '.[bench]'",
            file=sys.stderr,
        )
        return 2
    quiet_libraries()
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    results: dict[str, Any] = {
        "meta": machine_info(),
        "args": args_record(args),
        "sizes": {},
    }
    work = Path(tempfile.mkdtemp(prefix="ragtune-peers-"))
    log(f"working folder {work}")
    bench = Bench(args, work)
    try:
        log("loading all-MiniLM-L6-v2 once for everyone")
        results["model_load_s"], _ = timed(lambda: bench.encoder.encode(["warm up"]))
        meta = results["meta"]
        out(f"## ragtune vs LlamaIndex vs LangChain ({'quick' if args.quick else 'full'} run)")
        out()
        out(
            f"commit {meta['commit']}"
            + (
                f" with uncommitted changes to {', '.join(meta['modified_tracked_files'])}"
                if meta["modified_tracked_files"]
                else ""
            )
            + f", Python {meta['python']}, {meta['cpus']} CPUs, torch threads "
            f"{meta['torch_threads']}, load average at start {'/'.join(f'{x:.2f}' for x in meta['load_average_start'])}, "
            f"{meta['started']}. Versions: "
            + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
            + "."
        )
        out(
            "Same model object for all (all-MiniLM-L6-v2, normalized, batch 64), same chunks (one paragraph per "
            "file, counts and embedded texts checked). Everyone reads the corpus from files: ragtune "
            "RAG.ingest(folder), LlamaIndex SimpleDirectoryReader, LangChain DirectoryLoader(TextLoader); the "
            f"peers rebuild their BM25 retriever after an ingest that changed something. Fusion: RRF over the top "
            f"{FUSION_DEPTH} of each retriever everywhere. ragtune persists its index to disk (SQLite + files, "
            "fsync); the peers keep theirs in memory (LangChain's record manager is SQLite)."
        )
        out()
        for size in args.sizes:
            results["sizes"][str(size)] = bench_size(bench, size)
            print_size(results["sizes"][str(size)])
            write_results(args.out, results)  # partial results survive a crash
        if not args.skip_real:
            try:
                results["semanlink"] = bench_semanlink(bench)
                print_semanlink(results["semanlink"])
            except semanlink.DataUnavailable as exc:
                results["semanlink"] = {"skipped": str(exc)}
                out(f"Semanlink: SKIPPED, the data could not be fetched: {exc}")
                out()
        print_goals(results)
        results["meta"]["load_average_end"] = os.getloadavg()
        results["seconds"] = elapsed()
        out(
            f"Total wall time {results['seconds']:.0f} s; load average at the end "
            f"{'/'.join(f'{x:.2f}' for x in results['meta']['load_average_end'])}."
        )
    finally:
        finish(results, args.out, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
