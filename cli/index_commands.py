"""The commands over one index folder: ingest, search, status, ask and demo."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Any

from ragtune.cli.options import ConfigOptions
from ragtune.cli.output import print_hits, print_json, print_report, print_sources, print_status
from ragtune.core.errors import RagtuneError
from ragtune.indexes.dense import DenseConfig
from ragtune.indexes.embedding import EmbeddingConfig
from ragtune.rag.config import MODES, BackendConfig, RAGConfig, ReaderConfig, RetrievalConfig
from ragtune.rag.generation.answer import AnswerConfig
from ragtune.rag.generation.llm import GeneratorConfig
from ragtune.rag.ingest.chunking import ChunkingConfig
from ragtune.rag.ingest.ray_engine import IngestEngineConfig

DEMO_QUESTIONS = (
    "What constant k does Heron use for reciprocal rank fusion?",
    "What does Heron set BM25's k1 and b to?",
    "Who won the 2018 football World Cup?",  # not in the corpus: the answer is a refusal
)
SEARCH_K = 5

# Settings of a new index folder, by RAGConfig section; fixed once the folder exists.
NEW_INDEX = {
    "chunking": ConfigOptions(ChunkingConfig),
    "embedding": ConfigOptions(EmbeddingConfig, only=("model",), prefix="embedding-"),
    "dense": ConfigOptions(DenseConfig, only=("index",), prefix="dense-"),
    "backend": ConfigOptions(BackendConfig, flags={"kind": ("--backend",)}),
}
READER = ConfigOptions(ReaderConfig)
ENGINE = ConfigOptions(IngestEngineConfig)  # where this run embeds: not saved with the index
SEARCH = ConfigOptions(RetrievalConfig, only=("mode",))
GENERATOR = ConfigOptions(GeneratorConfig)
# history_turns only matters in a conversation, min_scores is offered as --min-score (the dense one).
ANSWER = ConfigOptions(
    AnswerConfig, skip=("history_turns", "min_scores"), flags={"k": ("-k",)}, choices={"mode": MODES}
)


def _new_index_config(args: argparse.Namespace) -> RAGConfig:
    config = RAGConfig()
    sections = {name: options.build(args, getattr(config, name)) for name, options in NEW_INDEX.items()}
    return dataclasses.replace(config, **sections)


def index_folder(args: argparse.Namespace) -> Path:
    if not args.index.strip():  # Path("") is the working folder: not what an empty value meant
        raise RagtuneError("--index is empty: give the index folder (or leave --index out for the default)")
    return Path(args.index).expanduser()


def open_index(args: argparse.Namespace, **components: Any):
    """The index at --index: its saved config, or a new one from the new-index options, with this
    run's reader options on top."""
    from ragtune.rag.api import CONFIG_FILE, RAG

    folder = index_folder(args)
    asked = any(options.given(args) for options in NEW_INDEX.values())
    saved = folder / CONFIG_FILE
    config = RAGConfig.load(saved) if saved.exists() and not asked else _new_index_config(args)
    if READER.given(args):
        config = dataclasses.replace(config, reader=READER.build(args, config.reader))
    return RAG.open(folder, config, **components)


def open_existing(args: argparse.Namespace, **components: Any):
    from ragtune.rag.api import CONFIG_FILE

    if not (index_folder(args) / CONFIG_FILE).exists():
        raise RagtuneError(f"no index at {args.index}: run `ragtune ingest DIR` first (or pass --index)")
    return open_index(args, **components)


def ingest(args: argparse.Namespace) -> int:
    engine = ENGINE.build(args)  # checked before the index folder is made
    if args.watch and engine.engine == "ray":
        # Each burst of edits would start the Ray pipeline (and a model per actor) anew for a few chunks.
        raise RagtuneError("--watch embeds a few edited chunks at a time, locally: leave out --engine ray")
    rag = open_index(args)
    if args.watch:
        from ragtune.rag.ingest.watch import watch

        print(f"watching {args.path} (Ctrl-C to stop)", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            watch(rag, args.path, lambda report: print_report(report, args.json), progress=not args.quiet)
        return 0
    report = rag.ingest(
        args.path, rebuild=args.rebuild, compact=args.compact, progress=not args.quiet, engine=engine
    )
    print_report(report, args.json)
    return 0


def search(args: argparse.Namespace) -> int:
    rag = open_existing(args)
    print_hits(rag.search(args.query, k=args.k, **SEARCH.given(args)), args.json, args.query)
    return 0


def status(args: argparse.Namespace) -> int:
    rag = open_existing(args)
    # `verify` re-reads every index file against its checksums; only asked for, as it reads everything.
    report = rag.status(verify=True) if args.verify else rag.status()
    if args.json:
        print_json(report)
    else:
        print_status(report)
    return 0


def ask(args: argparse.Namespace) -> int:
    answer_config = ANSWER.build(args)
    if args.min_score is not None:
        min_scores = {**answer_config.min_scores, "dense": args.min_score}
        answer_config = dataclasses.replace(answer_config, min_scores=min_scores)
    rag = open_existing(args, generator=GENERATOR.build(args), answer=answer_config)
    if args.json or args.no_stream:
        answer = rag.ask(args.question)
        if args.json:
            print_json(answer.to_dict())
            return 0
        print(answer.text)
    else:
        stream = rag.ask(args.question, stream=True)
        for piece in stream:
            print(piece, end="", flush=True)
        print()
        answer = stream.answer
    print_sources(answer)
    return 0


def demo(args: argparse.Namespace) -> int:
    from ragtune.rag.sample import sample_corpus

    corpus = sample_corpus()
    rag = open_index(args)
    print(f"Indexing the bundled sample corpus ({corpus}) into {args.index}", file=sys.stderr)
    report = rag.ingest(corpus, progress=not args.quiet)
    if args.json:
        results = []
        for question in DEMO_QUESTIONS:
            result: dict[str, Any] = {
                "query": question,
                "hits": [h.to_dict() for h in rag.search(question, k=3)],
            }
            if not args.no_answer:
                result["answer"] = rag.ask(question).to_dict()
            results.append(result)
        print_json({"ingest": report.to_dict(), "questions": results})
        return 0
    print_report(report, False)
    if not args.no_answer:
        # Loaded before the first question so its one-time conversion does not split an answer line.
        print("Loading the LLM (the first time converts it; about 30 s)", file=sys.stderr, flush=True)
        rag.llm()
    for question in DEMO_QUESTIONS:
        print(f"\n? {question}")
        print_hits(rag.search(question, k=3), False, question)
        if not args.no_answer:
            print("\nAnswer: ", end="", flush=True)
            stream = rag.ask(question, stream=True)
            for piece in stream:
                print(piece, end="", flush=True)
            print()
            print_sources(stream.answer)
    print(f'\nTry your own: ragtune ask "..." --index {args.index}', file=sys.stderr)
    return 0
