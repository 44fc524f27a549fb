"""Re-index cost against corpus size (issue 16): segmented generations from 5k to 1M chunks.

    .venv/bin/python bench/scale.py                       # 5k, 50k and 1M chunks
    .venv/bin/python bench/scale.py --sizes 2000 --quick  # a smoke run

Per size, each step in its own process (so its peak RSS is its own): a full ingest of generated prose
(bench/corpus.py, one ~90-word paragraph per chunk), an unchanged re-run, one document edited (one
paragraph replaced) and re-indexed, with the bytes that edit wrote (the `ragtune ingest` command also
pays ~0.35 s once per process importing the chunker; it is timed apart), and a process that only searches
(p50/p95 per mode, its peak RSS). Embeddings come from a fast hashed bag-of-words embedder (384 dims,
as all-MiniLM-L6-v2), so that the model's own cost does not hide the index's. At sizes up to
--rebuild-max the edited index is compared with a full rebuild of the same files: top 10 and scores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.corpus import Corpus, CorpusSpec, document_name, edit_documents, stop_words, write_documents  # noqa: E402
from bench.helpers import cpu_model, log, markdown_table, median, memory_now, out, percentile  # noqa: E402

MODES = ("bm25", "tfidf", "dense", "hybrid")
DENSE_ENV = "RAGTUNE_BENCH_DENSE"
TARGETS_1M = {
    "edit_s": 1.0,
    "edit_by_path_s": 1.0,
    "edit_mb": 50.0,
    "unchanged_s": 2.0,
    "search_rss_mb": 4096.0,
    "hybrid_ms": 20.0,
}


class HashedEmbedder:
    """Feature hashing of lower-cased words into 384 signed buckets, L2-normalised: microseconds a text,
    deterministic, and similar texts get similar vectors (unlike a hash of the whole text)."""

    name = "bench-hashed-bow-384"
    dimensions = 384

    def __init__(self) -> None:
        self._bucket: dict[str, tuple[int, float]] = {}

    def _of(self, word: str) -> tuple[int, float]:
        found = self._bucket.get(word)
        if found is None:
            h = zlib.crc32(word.encode("utf-8"))
            found = self._bucket[word] = (h % self.dimensions, 1.0 if (h >> 16) & 1 else -1.0)
        return found

    def encode(self, texts: Sequence[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for i, text in enumerate(texts):
            pairs = [self._of(w) for w in text.lower().split()]
            if pairs:
                cols, signs = zip(*pairs, strict=True)
                np.add.at(vectors[i], np.asarray(cols), np.asarray(signs, dtype=np.float32))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1.0, norms)


# -- steps, each run in a child process -------------------------------------------------------------------


def _open(index: str):
    from ragtune import RAG
    from ragtune.indexes.dense import DenseConfig
    from ragtune.rag.config import RAGConfig
    from ragtune.rag.ingest.chunking import ChunkingConfig

    dense = DenseConfig(**json.loads(os.environ.get(DENSE_ENV, "{}")))  # set by the parent from --dense...
    config = RAGConfig(
        chunking=ChunkingConfig(chunk_size=800, chunk_overlap=0), dense=dense
    )  # a paragraph a chunk
    return RAG.open(index, config, embedder=HashedEmbedder())


def child_ingest(index: str, docs: str, rebuild: bool, compact: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    import langchain_text_splitters  # noqa: F401  (the chunker's import: once per process, timed apart)

    import_s = time.perf_counter() - started
    with _open(index) as rag:
        written = _bytes_written()
        started = time.perf_counter()
        report = rag.ingest(docs, progress=False, rebuild=rebuild, compact=compact)
        seconds = time.perf_counter() - started
        written = _bytes_written() - written
    return {
        "seconds": seconds,
        "import_s": import_s,
        "summary": report.summary(),
        "peak_mb": memory_now()["peak_mb"],
        "written_mb": written / 2**20,
    }


def _bytes_written() -> int:
    """Bytes this process has passed to write() so far (Linux /proc/self/io `wchar`): every index file,
    the store's pages and its log alike."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def child_search(index: str, queries: list[str], k: int) -> dict[str, Any]:
    with _open(index) as rag:
        started = time.perf_counter()
        rag.search(queries[0], k=k, mode="hybrid")
        first_s = time.perf_counter() - started
        times: dict[str, list[float]] = {}
        results: dict[str, list[list[tuple[str, float]]]] = {}
        for mode in MODES:
            for query in queries[:5]:  # warm-up: first touches of the mapped pages
                rag.search(query, k=k, mode=mode)
            times[mode], results[mode] = [], []
            for query in queries:
                started = time.perf_counter()
                hits = rag.search(query, k=k, mode=mode)
                times[mode].append((time.perf_counter() - started) * 1000)
                results[mode].append([(h.chunk_id, h.score) for h in hits])
        memory = memory_now()
        recall = dense_recall(rag, queries, k) if rag.config.dense.index == "hnsw" else None
    return {"open_and_first_s": first_s, "ms": times, "results": results, "dense_recall": recall, **memory}


def dense_recall(rag: Any, queries: list[str], k: int) -> float:
    """Mean recall@k of the dense search (graphs where segments have them) against exact inner products
    over every live row."""
    generation = rag._current_generation()
    searcher = generation.index("dense")
    embedder = HashedEmbedder()
    found = 0
    for query in queries:
        vector = embedder.encode([query], query=True)[0]
        scores, rows = [], []
        for view in generation.views:
            s = np.asarray(view.segment.vectors @ vector)
            live = np.arange(len(s)) if view.deleted is None else np.flatnonzero(~view.deleted)
            scores.append(s[live])
            rows.append(live + view.offset)
        scores, rows = np.concatenate(scores), np.concatenate(rows)
        exact = set(rows[np.argsort(-scores, kind="stable")[:k]].tolist())
        found += len(exact & set(searcher.search(query, k).rows.tolist()))
    return found / (k * len(queries))


def run_child(*args: str) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the parent --------------------------------------------------------------------------------------------


def index_mb(index: Path) -> float:
    names = ("segments", "vocabulary", "generations")
    return sum(p.stat().st_size for n in names for p in (index / n).rglob("*") if p.is_file()) / 2**20


def current_manifest(index: Path) -> dict[str, Any]:
    generation = max(int(p.name) for p in (index / "generations").iterdir() if p.name.isdigit())
    return json.loads((index / "generations" / f"{generation:06d}" / "manifest.json").read_text())


def agreement(a: list[list[tuple[str, float]]], b: list[list[tuple[str, float]]]) -> tuple[float, float]:
    """Share of queries whose top-k ids are identical, and the largest score difference between them."""
    same, worst = 0, 0.0
    for x, y in zip(a, b, strict=True):
        if [c for c, _ in x] == [c for c, _ in y]:
            same += 1
            worst = max([worst, *(abs(s - t) for (_, s), (_, t) in zip(x, y, strict=True))])
    return same / len(a), worst


def measure(size: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from ragtune.indexes.tokenize import Tokenizer

    corpus = Corpus(CorpusSpec(size, seed=args.seed))
    docs_folder, index = work / f"docs-{size}", work / f"index-{size}"
    log(f"{size:,} chunks: generating documents")
    docs = corpus.documents()
    write_documents(docs_folder, docs)
    queries = corpus.queries(args.queries, stop_words(Tokenizer(), corpus.zipf.words))
    row: dict[str, Any] = {"chunks": size, "documents": len(docs)}
    log(f"{size:,} chunks: full ingest")
    row["full"] = run_child("ingest", str(index), str(docs_folder))
    log(f"  {row['full']['seconds']:.1f} s: {row['full']['summary']}")
    row["unchanged"] = run_child("ingest", str(index), str(docs_folder))
    log(f"  unchanged re-run {row['unchanged']['seconds']:.3f} s")
    edits, edits_by_file = [], []
    for round_ in range(args.edits):
        (edited,) = edit_documents(docs_folder, docs, corpus, 1 / len(docs), round_)  # one document
        edit = run_child("ingest", str(index), str(docs_folder))  # as `ragtune ingest DIR`: scans the folder
        edits.append(edit)
        log(
            f"  one document edited, folder re-ingested: {edit['seconds']:.3f} s, {edit['written_mb']:.2f} MB written"
        )
        (edited,) = edit_documents(docs_folder, docs, corpus, 1 / len(docs), 1000 + round_)
        alone = run_child("ingest", str(index), str(docs_folder / document_name(edited)))  # that file only
        edits_by_file.append(alone)
        log(
            f"  one document edited, ingested by its path: {alone['seconds']:.3f} s, {alone['written_mb']:.2f} MB"
        )
    row["edits_by_file"] = edits_by_file
    row["edits"] = edits
    row["index_mb"] = index_mb(index)
    row["segments"] = len(current_manifest(index)["segments"])
    log(f"{size:,} chunks: searching in a fresh process")
    queries_file = work / "queries.json"
    queries_file.write_text(json.dumps(queries))
    row["search"] = run_child("search", str(index), str(queries_file), str(args.k))
    if size <= args.rebuild_max:
        log(f"{size:,} chunks: a full rebuild of the same files, to compare")
        rebuilt = work / f"rebuilt-{size}"
        run_child("ingest", str(rebuilt), str(docs_folder))
        scratch = run_child("search", str(rebuilt), str(queries_file), str(args.k))
        row["vs_rebuild"] = {
            mode: agreement(row["search"]["results"][mode], scratch["results"][mode]) for mode in MODES
        }
        import shutil

        shutil.rmtree(rebuilt, ignore_errors=True)
    if args.compact:  # after the searches: they see the segments the edits left
        row["compact"] = run_child("compact", str(index), str(docs_folder))
        log(
            f"  compacted into one segment: {row['compact']['seconds']:.1f} s, {row['compact']['written_mb']:.0f} MB"
        )
        row["compacted_index_mb"] = index_mb(index)
    del row["search"]["results"]
    import shutil

    shutil.rmtree(docs_folder, ignore_errors=True)
    shutil.rmtree(index, ignore_errors=True)
    return row


def report(rows: list[dict[str, Any]], dense: dict[str, Any]) -> None:
    out("# Re-index cost against corpus size (bench/scale.py)\n")
    out(
        f"Machine: {cpu_model()}, {os.cpu_count()} cores. Hashed bag-of-words embedder, 384 dims; dense {dense}.\n"
    )
    header = ["chunks", "full ingest", "unchanged re-run", "one document edited", "written for that edit"]
    header += ["edited file ingested alone"]
    header += ["index on disk", "segments", "ingest peak RSS", "search-only peak RSS", "hybrid p50"]
    table = []
    for r in rows:
        edit_s = median([e["seconds"] for e in r["edits"]])
        edit_mb = median([e["written_mb"] for e in r["edits"]])
        steps = [r["full"], r["unchanged"], *r["edits"], *r["edits_by_file"]]
        peak = max(step["peak_mb"] for step in steps)
        table.append(
            [f"{r['chunks']:,}", f"{r['full']['seconds']:.1f} s", f"{r['unchanged']['seconds']:.3f} s"]
            + [
                f"{edit_s:.3f} s",
                f"{edit_mb:.2f} MB",
                f"{median([e['seconds'] for e in r['edits_by_file']]):.3f} s",
            ]
            + [f"{r['index_mb']:.0f} MB", str(r["segments"])]
            + [
                f"{peak:.0f} MB",
                f"{r['search']['peak_mb']:.0f} MB",
                f"{median(r['search']['ms']['hybrid']):.1f} ms",
            ]
        )
    markdown_table(header, table)
    out("\nQuery time per mode, p50 / p95 (ms), and the open + first hybrid query:\n")
    table = [
        [f"{r['chunks']:,}"]
        + [f"{median(r['search']['ms'][m]):.2f} / {percentile(r['search']['ms'][m], 95):.2f}" for m in MODES]
        + [f"{r['search']['open_and_first_s']:.2f} s"]
        for r in rows
    ]
    markdown_table(["chunks", *MODES, "open + first query"], table)
    compacted = [r for r in rows if "compact" in r]
    if compacted:
        out(
            "\n`ragtune ingest --compact` afterwards (every segment merged into one, deleted rows dropped):\n"
        )
        table = [
            [f"{r['chunks']:,}", str(r["segments"]), f"{r['compact']['seconds']:.1f} s"]
            + [f"{r['compact']['written_mb']:.0f} MB", f"{r['compact']['peak_mb']:.0f} MB"]
            for r in compacted
        ]
        markdown_table(["chunks", "segments before", "time", "written", "peak RSS"], table)
    if dense["index"] == "hnsw":
        out("\nDense recall@10 against exact search over every live row: ")
        out(", ".join(f"{r['chunks']:,}: {r['search']['dense_recall']:.3f}" for r in rows))
    compared = [r for r in rows if "vs_rebuild" in r]
    if compared:
        out(
            "\nAgainst a full rebuild of the same files (share of queries with identical top 10; max score difference):\n"
        )
        table = [
            [f"{r['chunks']:,}"]
            + [f"{r['vs_rebuild'][m][0]:.2f} ({r['vs_rebuild'][m][1]:.1e})" for m in MODES]
            for r in compared
        ]
        markdown_table(["chunks", *MODES], table)
    largest = rows[-1]
    if largest["chunks"] >= 1_000_000:
        measured = {
            "edit_s": median([e["seconds"] for e in largest["edits"]]),
            "edit_by_path_s": median([e["seconds"] for e in largest["edits_by_file"]]),
            "edit_mb": median([e["written_mb"] for e in largest["edits"]]),
            "unchanged_s": largest["unchanged"]["seconds"],
            "search_rss_mb": largest["search"]["peak_mb"],
            "hybrid_ms": median(largest["search"]["ms"]["hybrid"]),
        }
        out("\n## Targets at 1M chunks\n")
        table = [
            [name, f"{measured[name]:.3g}", f"< {bound:g}", "meets" if measured[name] < bound else "MISSED"]
            for name, bound in TARGETS_1M.items()
        ]
        markdown_table(["target", "measured", "bound", "verdict"], table)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        step = argv[1]
        if step in ("ingest", "compact"):
            result = child_ingest(argv[2], argv[3], rebuild=False, compact=step == "compact")
        else:
            result = child_search(argv[2], json.loads(Path(argv[3]).read_text()), int(argv[4]))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,50000,1000000", help="chunk counts, comma-separated")
    parser.add_argument("--quick", action="store_true", help="20 queries, 2 edits (a smoke run)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--edits", type=int, default=5, help="single-document edits timed per size")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument(
        "--rebuild-max", type=int, default=50_000, help="compare with a rebuild up to this size"
    )
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--compact", action="store_true", help="also time `ingest --compact` per size")
    parser.add_argument("--dense", choices=("flat", "hnsw"), default="flat", help="the dense index")
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--hnsw-ef-construction", type=int, default=64)
    parser.add_argument("--hnsw-ef-search", type=int, default=64)
    parser.add_argument("--hnsw-min-rows", type=int, default=20_000)
    args = parser.parse_args(argv)
    if args.quick:
        args.queries, args.edits = 20, 2
    sizes = [int(s) for s in args.sizes.split(",")]
    dense = {"index": args.dense}
    if args.dense == "hnsw":
        dense |= {"hnsw_m": args.hnsw_m, "hnsw_ef_construction": args.hnsw_ef_construction}
        dense |= {"hnsw_ef_search": args.hnsw_ef_search, "hnsw_min_rows": args.hnsw_min_rows}
    os.environ[DENSE_ENV] = json.dumps(dense)  # the children read it
    rows = []
    with tempfile.TemporaryDirectory(prefix="ragtune-scale-") as tmp:
        for size in sizes:
            rows.append(measure(size, Path(tmp), args))
    report(rows, dense)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
