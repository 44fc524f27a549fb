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
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/retrieval.py`: make `bench` importable
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the default model is a local folder; never ask a hub

from bench import semanlink  # noqa: E402
from bench.helpers import (  # noqa: E402
    args_record,
    elapsed,
    finish,
    git_commit,
    log,
    out,
    started_at,
    timed,
)
from bench.retrieval_bm25 import bench_bm25, print_bm25  # noqa: E402
from bench.retrieval_ingest import bench_embedding, print_embedding  # noqa: E402
from bench.retrieval_semanlink import bench_semanlink, print_semanlink  # noqa: E402
from ragtune.indexes.embedding import SentenceTransformerEmbedder  # noqa: E402


def print_summary(results: dict[str, Any]) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, Any] = {
        "meta": {
            "started": started_at(),
            "commit": git_commit(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "quick": args.quick,
            "args": args_record(args),
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
            bm25[size] = bench_bm25(size, args, work)
        results["bm25"] = {str(k): v for k, v in bm25.items()}
        print_bm25(bm25)

        embedder = None
        if not args.skip_embedding or not args.skip_semanlink:
            log("loading the default embedding model")
            embedder = SentenceTransformerEmbedder()
            results["model_load_s"], _ = timed(lambda: embedder.encode(["warm"]))
        if not args.skip_embedding:
            results["embedding"] = bench_embedding(args.embed_size, args, work, embedder)
            print_embedding(results["embedding"], results["model_load_s"])
        if not args.skip_semanlink:
            try:
                results["semanlink"] = bench_semanlink(args, work, embedder)
                print_semanlink(results["semanlink"])
            except semanlink.DataUnavailable as exc:
                results["semanlink"] = {"skipped": str(exc)}
                out(f"5. Semanlink: SKIPPED, the data could not be fetched: {exc}")
                out()
        print_summary(results)
        results["seconds"] = elapsed()
        out(f"total wall time {results['seconds']:.0f} s")
    finally:
        finish(results, args.out, work, keep=args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
