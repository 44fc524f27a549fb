"""The `ragtune` command: a thin layer over `rag.RAG`.

Expected failures (a bad path, an empty query, a model that will not load) print one line and exit
with status 2; only a bug shows a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rag.errors import RagtuneError

DEFAULT_INDEX = ".ragtune"
DEMO_INDEX = ".ragtune-demo"
DEMO_QUESTIONS = (
    "How much memory does double quantization save?",
    "how do I merge a LoRA adapter into the base model?",
    "What does reciprocal rank fusion do with the constant k=60?",
)


def _quiet_libraries() -> None:
    # Model loading draws its own progress bars; ours (reading, embedding) are the ones that matter.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--index",
        default=os.environ.get("RAGTUNE_INDEX", DEFAULT_INDEX),
        help=f"index folder (default: $RAGTUNE_INDEX or {DEFAULT_INDEX})",
    )
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    common.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")

    parser = argparse.ArgumentParser(
        prog="ragtune", description="Question answering over your own documents."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser(
        "ingest", parents=[common], help="index a folder or file (again: only what changed)"
    )
    ingest.add_argument("path", help="folder or file to index")
    ingest.add_argument(
        "--watch", action="store_true", help="keep re-indexing as files change (Ctrl-C stops)"
    )
    ingest.add_argument("--rebuild", action="store_true", help="re-read every file and rebuild all indexes")
    new_index = ingest.add_argument_group("settings of a new index folder (fixed once it exists)")
    new_index.add_argument(
        "--embedding-model", help="'default', a sentence-transformers folder, or a cached name"
    )
    new_index.add_argument("--chunk-size", type=int, help="largest chunk in characters (default 1000)")
    new_index.add_argument(
        "--chunk-overlap", type=int, help="characters shared by neighbouring chunks (default 150)"
    )
    new_index.add_argument(
        "--dense-index", choices=("flat", "hnsw"), help="exact (flat, default) or HNSW search"
    )
    ingest.add_argument("--max-file-mb", type=float, help="skip larger files (default 50)")

    search = commands.add_parser("search", parents=[common], help="find the chunks that best match a query")
    search.add_argument("query", help="what to look for")
    search.add_argument("-k", type=int, default=5, help="number of results (default 5)")
    search.add_argument(
        "--mode", choices=("bm25", "tfidf", "dense", "hybrid"), help="retriever (default hybrid)"
    )

    commands.add_parser("status", parents=[common], help="documents, chunks, generation, last ingest, models")

    demo = commands.add_parser("demo", parents=[common], help="index the bundled sample corpus and search it")
    demo.set_defaults(index=os.environ.get("RAGTUNE_DEMO_INDEX", DEMO_INDEX))
    return parser


def _config_for_new_index(args: argparse.Namespace):
    from rag.chunking import ChunkingConfig
    from rag.config import RAGConfig

    config = RAGConfig()
    chunking = {}
    if getattr(args, "chunk_size", None) is not None:
        chunking["chunk_size"] = args.chunk_size
    if getattr(args, "chunk_overlap", None) is not None:
        chunking["chunk_overlap"] = args.chunk_overlap
    if chunking:
        config = dataclasses.replace(
            config, chunking=ChunkingConfig(**{**dataclasses.asdict(config.chunking), **chunking})
        )
    if getattr(args, "embedding_model", None):
        config = dataclasses.replace(
            config, embedding=dataclasses.replace(config.embedding, model=args.embedding_model)
        )
    if getattr(args, "dense_index", None):
        config = dataclasses.replace(config, dense=dataclasses.replace(config.dense, index=args.dense_index))
    return config


def _open(args: argparse.Namespace):
    """The index at --index: its saved config, or a new one from the new-index options, with this
    run's --max-file-mb on top."""
    from rag.api import CONFIG_FILE, RAG
    from rag.config import RAGConfig, ReaderConfig

    folder = Path(args.index).expanduser()
    asked = any(
        getattr(args, a, None) is not None
        for a in ("embedding_model", "chunk_size", "chunk_overlap", "dense_index")
    )
    saved = folder / CONFIG_FILE
    config = RAGConfig.load(saved) if saved.exists() and not asked else _config_for_new_index(args)
    if getattr(args, "max_file_mb", None) is not None:
        config = dataclasses.replace(config, reader=ReaderConfig(max_file_mb=args.max_file_mb))
    return RAG.open(folder, config)


def _shown_path(source: str) -> str:
    """Relative to the working folder when inside it; otherwise the absolute path."""
    try:
        relative = os.path.relpath(source)
    except ValueError:
        return source
    return source if relative.startswith("..") else relative


def _print_report(report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    print(report.summary())
    for note in report.skipped:
        print(f"  skipped {_shown_path(note.path)}: {note.reason}")
    for note in report.problems[:20]:
        print(f"  problem in {_shown_path(note.path)}: {note.reason}")
    if len(report.problems) > 20:
        print(f"  ... and {len(report.problems) - 20} more problems (see --json)")


def _print_hits(hits, as_json: bool, query: str) -> None:
    if as_json:
        print(json.dumps({"query": query, "hits": [h.to_dict() for h in hits]}, ensure_ascii=False))
        return
    if not hits:
        print("no matching chunks")
    for hit in hits:
        evidence = ", ".join(f"{kind} #{rank}" for kind, rank in hit.ranks.items())
        title = hit.metadata.get("title")
        heading = f"{_shown_path(hit.source)}" + (f" — {title}" if title else "")
        print(f"{hit.rank}. {heading}  [chunk {hit.position}, score {hit.score:.4f}; {evidence}]")
        text = " ".join(hit.text.split())
        print(f"   {text[:300]}{'…' if len(text) > 300 else ''}")


def _cmd_ingest(args: argparse.Namespace) -> int:
    rag = _open(args)
    if args.watch:
        from rag.watch import watch

        print(f"watching {args.path} (Ctrl-C to stop)", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            watch(rag, args.path, lambda report: _print_report(report, args.json), progress=not args.quiet)
        return 0
    _print_report(rag.ingest(args.path, rebuild=args.rebuild, progress=not args.quiet), args.json)
    return 0


def _open_existing(args: argparse.Namespace):
    from rag.api import CONFIG_FILE

    if not (Path(args.index).expanduser() / CONFIG_FILE).exists():
        raise RagtuneError(f"no index at {args.index}: run `ragtune ingest DIR` first (or pass --index)")
    return _open(args)


def _cmd_search(args: argparse.Namespace) -> int:
    rag = _open_existing(args)
    _print_hits(rag.search(args.query, k=args.k, mode=args.mode), args.json, args.query)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    status = _open_existing(args).status()
    if args.json:
        print(json.dumps(status, ensure_ascii=False))
        return 0
    _print_status(status)
    return 0


def _print_status(status: dict[str, Any]) -> None:
    print(f"index:       {status['index']}")
    print(
        f"documents:   {status['documents']} from {status['sources']} files ({status['skipped_sources']} skipped)"
    )
    print(f"chunks:      {status['chunks']}")
    print(f"generation:  {status['generation']}")
    last = status["last_ingest"]
    if last:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["finished_at"]))
        counts = ", ".join(f"{v} {k}" for k, v in last["summary"].items())
        print(f"last ingest: {when} of {last['root']}: {counts}")
    else:
        print("last ingest: never")
    print(f"embedding:   {status['embedding_model']} ({status['dense_index']} index)")
    chunking = status["chunking"]
    print(f"chunking:    {chunking['chunk_size']} characters, {chunking['chunk_overlap']} overlap")


def _cmd_demo(args: argparse.Namespace) -> int:
    from importlib.resources import files

    corpus = Path(str(files("rag") / "sample_corpus"))
    rag = _open(args)
    print(f"Indexing the bundled sample corpus ({corpus}) into {args.index}", file=sys.stderr)
    report = rag.ingest(corpus, progress=not args.quiet)
    if args.json:
        results = [{"query": q, "hits": [h.to_dict() for h in rag.search(q, k=3)]} for q in DEMO_QUESTIONS]
        print(json.dumps({"ingest": report.to_dict(), "searches": results}, ensure_ascii=False))
        return 0
    _print_report(report, False)
    for question in DEMO_QUESTIONS:
        print(f"\n? {question}")
        _print_hits(rag.search(question, k=3), False, question)
    print(f'\nTry your own: ragtune search "..." --index {args.index}', file=sys.stderr)
    return 0


COMMANDS = {"ingest": _cmd_ingest, "search": _cmd_search, "status": _cmd_status, "demo": _cmd_demo}


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    args = _parser().parse_args(argv)
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    try:
        return COMMANDS[args.command](args)
    except RagtuneError as exc:
        print(f"ragtune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ragtune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
