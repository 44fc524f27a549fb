"""The `ragtune` command: a thin layer over `ragtune.RAG`.

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
import warnings
from pathlib import Path
from typing import Any

from ragtune.core.errors import RagtuneError

DEFAULT_INDEX = ".ragtune"
DEMO_INDEX = ".ragtune-demo"
DEMO_QUESTIONS = (
    "What constant k does Heron use for reciprocal rank fusion?",
    "What does Heron set BM25's k1 and b to?",
    "Who won the 2018 football World Cup?",  # not in the corpus: the answer is a refusal
)


def _quiet_libraries() -> None:
    # Model loading draws its own progress bars; ours (reading, embedding) are the ones that matter.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Deprecation notices from inside transformers/peft are for their developers, not our users.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(transformers|peft|torch)\.")


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

    ask = commands.add_parser("ask", parents=[common], help="answer a question from the indexed documents")
    ask.add_argument("question", help="what to ask")
    _generator_arguments(ask)
    ask.add_argument("-k", type=int, help="passages given to the model (default 3)")
    ask.add_argument(
        "--mode", choices=("bm25", "tfidf", "dense", "hybrid"), help="retriever (default hybrid)"
    )
    ask.add_argument("--min-score", type=float, help="dense cosine a passage needs to count (default 0.3)")
    ask.add_argument("--max-new-tokens", type=int, help="longest answer in tokens (default 256)")
    ask.add_argument("--no-stream", action="store_true", help="print the answer when it is complete")

    finetune = commands.add_parser(
        "finetune",
        parents=[common],
        help="train a LoRA/QLoRA adapter on Q&A pairs or on the indexed documents",
    )
    data = finetune.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--data", help="JSONL of question/answer pairs (or instruction/output, prompt/completion, messages)"
    )
    data.add_argument(
        "--from-store", action="store_true", help="train on the chunks of --index (continued pre-training)"
    )
    finetune.add_argument("--out", required=True, help="adapter folder to write")
    finetune.add_argument("--model", help="base model: 'default', a HF folder, a .gguf file or a cached name")
    finetune.add_argument(
        "--quantization", choices=("auto", "nf4", "none"), help="nf4 = QLoRA, none = LoRA (auto: nf4 on CUDA)"
    )
    finetune.add_argument("--r", type=int, help="LoRA rank (default 8)")
    finetune.add_argument("--alpha", type=int, help="LoRA alpha (default 16)")
    finetune.add_argument("--dropout", type=float, help="LoRA dropout (default 0.05)")
    finetune.add_argument(
        "--target-modules", help="comma-separated module names, or all-linear (default q_proj,v_proj)"
    )
    finetune.add_argument("--init-lora-weights", help="true, gaussian, loftq, pissa, olora, eva or false")
    finetune.add_argument("--lr", type=float, help="learning rate (default 2e-4)")
    finetune.add_argument("--epochs", type=float, help="passes over the data (default 1)")
    finetune.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    finetune.add_argument("--batch-size", type=int, help="examples per forward pass (default 4)")
    finetune.add_argument("--grad-accumulation", type=int, help="forward passes per step (default 1)")
    finetune.add_argument("--max-length", type=int, help="tokens per example (default 256)")
    finetune.add_argument("--eval-every", type=int, help="steps between eval-loss checks (default 20)")
    finetune.add_argument("--save-every", type=int, help="steps between checkpoints (default 50)")
    finetune.add_argument("--seed", type=int, help="seed of split, shuffle and init (default 0)")
    finetune.add_argument(
        "--skip-bad-lines", action="store_true", help="train on the good lines, list the bad"
    )
    finetune.add_argument("--no-resume", action="store_true", help="ignore a checkpoint in --out, start over")

    merge = commands.add_parser(
        "merge", parents=[common], help="fold an adapter into its base: a standalone model"
    )
    merge.add_argument("adapter", help="adapter folder from ragtune finetune")
    merge.add_argument("--out", required=True, help="folder for the merged model (must not exist)")

    compare = commands.add_parser(
        "compare",
        parents=[common],
        help="size, load time, latency, memory and perplexity of models side by side",
    )
    compare.add_argument("models", nargs="+", help="'base', model folders, adapter folders or .gguf files")
    compare.add_argument("--base", default="default", help="what 'base' means (default: the default model)")
    compare.add_argument("--runs", type=int, default=10, help="timed generations per model (default 10)")
    compare.add_argument(
        "--new-tokens", type=int, default=32, help="tokens per timed generation (default 32)"
    )
    compare.add_argument(
        "--quantization", choices=("auto", "nf4", "int8", "none"), default="none", help="load every model so"
    )
    compare.add_argument(
        "--text", help="held-out text file for perplexity (default: the sample corpus pages)"
    )
    compare.add_argument("--report", default="compare.json", help="JSON report file (default compare.json)")

    demo = commands.add_parser(
        "demo", parents=[common], help="index the bundled sample corpus, search it and answer from it"
    )
    demo.set_defaults(index=os.environ.get("RAGTUNE_DEMO_INDEX", DEMO_INDEX))
    demo.add_argument("--no-answer", action="store_true", help="search only; do not load the LLM")
    return parser


def _generator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="'default', a HF model folder, a .gguf file or a cached model name")
    parser.add_argument("--adapter", help="LoRA adapter folder to attach")
    parser.add_argument(
        "--quantization", choices=("auto", "nf4", "int8", "none"), help="auto: nf4 on CUDA, none on CPU"
    )


def _config_for_new_index(args: argparse.Namespace):
    from ragtune.rag.config import RAGConfig
    from ragtune.rag.ingest.chunking import ChunkingConfig

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


def _open(args: argparse.Namespace, **components: Any):
    """The index at --index: its saved config, or a new one from the new-index options, with this
    run's --max-file-mb on top."""
    from ragtune.rag.api import CONFIG_FILE, RAG
    from ragtune.rag.config import RAGConfig, ReaderConfig

    folder = Path(args.index).expanduser()
    asked = any(
        getattr(args, a, None) is not None
        for a in ("embedding_model", "chunk_size", "chunk_overlap", "dense_index")
    )
    saved = folder / CONFIG_FILE
    config = RAGConfig.load(saved) if saved.exists() and not asked else _config_for_new_index(args)
    if getattr(args, "max_file_mb", None) is not None:
        config = dataclasses.replace(config, reader=ReaderConfig(max_file_mb=args.max_file_mb))
    return RAG.open(folder, config, **components)


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
        from ragtune.rag.ingest.watch import watch

        print(f"watching {args.path} (Ctrl-C to stop)", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            watch(rag, args.path, lambda report: _print_report(report, args.json), progress=not args.quiet)
        return 0
    _print_report(rag.ingest(args.path, rebuild=args.rebuild, progress=not args.quiet), args.json)
    return 0


def _open_existing(args: argparse.Namespace, **components: Any):
    from ragtune.rag.api import CONFIG_FILE

    if not (Path(args.index).expanduser() / CONFIG_FILE).exists():
        raise RagtuneError(f"no index at {args.index}: run `ragtune ingest DIR` first (or pass --index)")
    return _open(args, **components)


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
    from ragtune.rag.sample import sample_corpus

    corpus = sample_corpus()
    rag = _open(args)
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
        print(json.dumps({"ingest": report.to_dict(), "questions": results}, ensure_ascii=False))
        return 0
    _print_report(report, False)
    if not args.no_answer:
        # Loaded before the first question so its one-time conversion does not split an answer line.
        print("Loading the LLM (the first time converts it; about 30 s)", file=sys.stderr, flush=True)
        rag.llm()
    for question in DEMO_QUESTIONS:
        print(f"\n? {question}")
        _print_hits(rag.search(question, k=3), False, question)
        if not args.no_answer:
            print("\nAnswer: ", end="", flush=True)
            stream = rag.ask(question, stream=True)
            for piece in stream:
                print(piece, end="", flush=True)
            print()
            _print_sources(stream.answer)
    print(f'\nTry your own: ragtune ask "..." --index {args.index}', file=sys.stderr)
    return 0


def _cmd_ask(args: argparse.Namespace) -> int:
    from ragtune.rag.generation.answer import AnswerConfig
    from ragtune.rag.generation.llm import GeneratorConfig

    chosen = {
        "model": args.model,
        "adapter": args.adapter,
        "quantization": args.quantization,
        "max_new_tokens": args.max_new_tokens,
    }
    generator = GeneratorConfig(**{k: v for k, v in chosen.items() if v is not None})
    defaults = AnswerConfig()
    answer_config = AnswerConfig(
        k=args.k or defaults.k,
        mode=args.mode,
        min_scores=defaults.min_scores
        if args.min_score is None
        else {**defaults.min_scores, "dense": args.min_score},
    )
    rag = _open_existing(args, generator=generator, answer=answer_config)
    if args.json or args.no_stream:
        answer = rag.ask(args.question)
        if args.json:
            print(json.dumps(answer.to_dict(), ensure_ascii=False))
            return 0
        print(answer.text)
    else:
        stream = rag.ask(args.question, stream=True)
        for piece in stream:
            print(piece, end="", flush=True)
        print()
        answer = stream.answer
    _print_sources(answer)
    return 0


def _print_sources(answer) -> None:
    if not answer.sources:
        print(f"({answer.reason})", file=sys.stderr)
        return
    print("\nSources:")
    for n, hit in enumerate(answer.sources, 1):
        mark = "*" if n in answer.citations else " "
        title = hit.metadata.get("title")
        print(
            f" {mark}[{n}] {_shown_path(hit.source)}"
            + (f" — {title}" if title else "")
            + f" (chunk {hit.position})"
        )
    if answer.sources and not answer.citations and not answer.refused:
        print("  (the answer cites no passage: check it against the sources)")


def _finetune_config(args: argparse.Namespace):
    from ragtune.finetune.config import FinetuneConfig

    values: dict[str, Any] = {}
    for name in (
        "model",
        "quantization",
        "r",
        "alpha",
        "dropout",
        "lr",
        "epochs",
        "max_steps",
        "batch_size",
        "grad_accumulation",
        "max_length",
        "eval_every",
        "save_every",
        "seed",
    ):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.target_modules:
        values["target_modules"] = (
            "all-linear"
            if args.target_modules == "all-linear"
            else [m.strip() for m in args.target_modules.split(",") if m.strip()]
        )
    if args.init_lora_weights is not None:
        flag = args.init_lora_weights.lower()
        values["init_lora_weights"] = {"true": True, "false": False}.get(flag, flag)
    return FinetuneConfig(**values)


def _cmd_finetune(args: argparse.Namespace) -> int:
    from ragtune.finetune.train import finetune

    config = _finetune_config(args)
    if args.from_store and not (Path(args.index).expanduser() / "store.sqlite").exists():
        raise RagtuneError(f"no index at {args.index}: run `ragtune ingest DIR` first (or pass --index)")
    result = finetune(
        config,
        args.out,
        data=args.data,
        index=args.index if args.from_store else None,
        skip_bad_lines=args.skip_bad_lines,
        resume=not args.no_resume,
        progress=not args.quiet,
    )
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    first, final = result.first_eval_loss, result.final_eval_loss
    print(f"adapter written to {result.adapter}")
    print(
        f"  {result.steps} steps on {result.train_examples} examples ({result.quantization}, {result.device}, "
        f"{result.optimizer}), {result.seconds:.1f} s, {result.seconds_per_step:.2f} s/step, "
        f"peak memory {result.peak_memory_mb:.0f} MB"
    )
    if first is not None and final is not None:
        print(f"  eval loss {first:.3f} -> {final:.3f} on {result.eval_examples} held-out examples")
    if result.resumed_from:
        print(f"  resumed from the checkpoint at step {result.resumed_from}")
    from ragtune.finetune.config import FinetuneConfig

    _config, run = FinetuneConfig.load(Path(result.adapter))
    for problem in run.get("data", {}).get("problems", []):
        print(f"  skipped {problem}")
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from ragtune.finetune.merge import merge

    result = merge(args.adapter, args.out)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(
            f"merged {result.adapter} into {result.base}: {result.out} ({result.size_mb:.0f} MB, {result.seconds:.1f} s)"
        )
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    import tempfile

    from ragtune.finetune.compare import CompareConfig, compare, default_heldout_text, table

    config = CompareConfig(runs=args.runs, new_tokens=args.new_tokens, quantization=args.quantization)
    if args.text:
        try:
            text = Path(args.text).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RagtuneError(f"cannot read --text {args.text}: {exc}") from exc
    else:
        text = default_heldout_text()
    specs = [args.base if m == "base" else m for m in args.models]
    with tempfile.TemporaryDirectory(prefix="ragtune-compare-") as workdir:
        results = compare(
            specs,
            config,
            text,
            Path(workdir),
            lambda spec: print(f"measuring {spec} ...", file=sys.stderr, flush=True),
        )
    report = {
        "config": dataclasses.asdict(config),
        "prompt_tokens_note": "chat prompt, greedy",
        "models": [r.to_dict() for r in results],
    }
    Path(args.report).write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report))
    else:
        print(table(results, config.runs))
        print(f"\n(report written to {args.report})", file=sys.stderr)
    return 0


COMMANDS = {
    "ingest": _cmd_ingest,
    "search": _cmd_search,
    "status": _cmd_status,
    "ask": _cmd_ask,
    "finetune": _cmd_finetune,
    "merge": _cmd_merge,
    "compare": _cmd_compare,
    "demo": _cmd_demo,
}


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
