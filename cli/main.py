"""The `ragtune` command: a thin layer over `ragtune.RAG`. This module builds the parser and
dispatches; the commands are in index_commands.py and model_commands.py, what they print in output.py,
and the options made from config dataclasses in options.py.

Expected failures (a bad path, an empty query, a bad option, a model that will not load) print one
line, `ragtune: error: ...`, and exit with status 2; only a bug shows a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable

from ragtune.cli import index_commands, model_commands
from ragtune.cli.index_commands import DEMO_QUESTIONS  # noqa: F401 (tests and docs import it from here)
from ragtune.core.errors import RagtuneError
from ragtune.rag.generation.answer import AnswerConfig

DEFAULT_INDEX = ".ragtune"
DEMO_INDEX = ".ragtune-demo"
USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as one line, like every other mistake, instead of argparse's usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"ragtune: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(USAGE_ERROR)


def _quiet_libraries() -> None:
    # Model loading draws its own progress bars; ours (reading, embedding) are the ones that matter.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Deprecation notices from inside transformers/peft are for their developers, not our users.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(transformers|peft|torch)\.")


def _command(commands, name: str, run: Callable[[argparse.Namespace], int], common, help: str):
    parser = commands.add_parser(name, parents=[common], help=help, description=help)
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--index",
        default=os.environ.get("RAGTUNE_INDEX", DEFAULT_INDEX),
        help=f"index folder (default: $RAGTUNE_INDEX or {DEFAULT_INDEX})",
    )
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    common.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")

    parser = _Parser(prog="ragtune", description="Question answering over your own documents.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _index_commands(commands, common)
    _model_commands(commands, common)
    _eval_command(commands, common)
    _ui_command(commands, common)
    return parser


def _index_commands(commands, common) -> None:
    ic = index_commands
    ingest = _command(
        commands, "ingest", ic.ingest, common, "index a folder or file (again: only what changed)"
    )
    ingest.add_argument("path", help="folder or file to index")
    ingest.add_argument(
        "--watch", action="store_true", help="keep re-indexing as files change (Ctrl-C stops)"
    )
    ingest.add_argument("--rebuild", action="store_true", help="re-read every file and rebuild all indexes")
    ingest.add_argument(
        "--compact",
        action="store_true",
        help="then merge all index segments into one, dropping deleted rows (searches go on meanwhile)",
    )
    new_index = ingest.add_argument_group("settings of a new index folder (fixed once it exists)")
    for options in ic.NEW_INDEX.values():
        options.add_to(new_index)
    ic.READER.add_to(ingest)
    ic.ENGINE.add_to(ingest.add_argument_group("where the new chunks are embedded (this run only)"))

    search = _command(commands, "search", ic.search, common, "find the chunks that best match a query")
    search.add_argument("query", help="what to look for")
    search.add_argument(
        "-k", type=int, default=ic.SEARCH_K, help=f"number of results (default {ic.SEARCH_K})"
    )
    ic.SEARCH.add_to(search)

    status = _command(
        commands, "status", ic.status, common, "documents, chunks, generation, last ingest, models"
    )
    status.add_argument(
        "--verify",
        action="store_true",
        help="also re-read every index file and check it against its checksum",
    )

    ask = _command(commands, "ask", ic.ask, common, "answer a question from the indexed documents")
    ask.add_argument("question", help="what to ask")
    ic.GENERATOR.add_to(ask.add_argument_group("the model"))
    ic.ANSWER.add_to(ask.add_argument_group("the prompt"))
    dense_threshold = AnswerConfig().min_scores["dense"]
    ask.add_argument(
        "--min-score",
        type=float,
        metavar="X",
        help=f"dense cosine similarity a passage needs to count (default: {dense_threshold})",
    )
    ask.add_argument("--no-stream", action="store_true", help="print the answer when it is complete")

    demo = _command(
        commands, "demo", ic.demo, common, "index the bundled sample corpus, search it and answer from it"
    )
    demo.set_defaults(index=os.environ.get("RAGTUNE_DEMO_INDEX", DEMO_INDEX))
    demo.add_argument("--no-answer", action="store_true", help="search only; do not load the LLM")


def _model_commands(commands, common) -> None:
    mc = model_commands
    finetune = _command(
        commands,
        "finetune",
        mc.finetune,
        common,
        "train a LoRA/QLoRA adapter on Q&A pairs or on the indexed documents",
    )
    data = finetune.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--data", help="JSONL of question/answer pairs (or instruction/output, prompt/completion, messages)"
    )
    data.add_argument(
        "--from-store", action="store_true", help="train on the chunks of --index (continued pre-training)"
    )
    finetune.add_argument("--out", required=True, help="adapter folder to write")
    finetune.add_argument(
        "--skip-bad-lines", action="store_true", help="train on the good lines, list the bad"
    )
    finetune.add_argument("--no-resume", action="store_true", help="ignore a checkpoint in --out, start over")
    mc.FINETUNE.add_to(finetune.add_argument_group("training settings"))
    mc.LAUNCH.add_to(finetune.add_argument_group("several GPUs (accelerate launch)"))

    merge = _command(commands, "merge", mc.merge, common, "fold an adapter into its base: a standalone model")
    merge.add_argument("adapter", help="adapter folder from ragtune finetune")
    merge.add_argument("--out", required=True, help="folder for the merged model (must not exist)")

    compare = _command(
        commands,
        "compare",
        mc.compare,
        common,
        "size, load time, latency, memory and perplexity of models side by side",
    )
    compare.add_argument("models", nargs="+", help="'base', model folders, adapter folders or .gguf files")
    compare.add_argument("--base", default="default", help="what 'base' means (default: the default model)")
    compare.add_argument(
        "--text", help="held-out text file for perplexity (default: the sample corpus pages)"
    )
    compare.add_argument("--report", default="compare.json", help="JSON report file (default compare.json)")
    mc.COMPARE.add_to(compare.add_argument_group("what is measured"))


def _eval_command(commands, common) -> None:
    from ragtune.cli import eval_command

    evaluate = _command(
        commands,
        "eval",
        eval_command.run,
        common,
        "compare closed-book, RAG, fine-tuned and fine-tuned + RAG answering on a question suite",
    )
    eval_command.add_arguments(evaluate)


def _ui_command(commands, common) -> None:
    from ragtune.cli import ui_command

    ui = _command(
        commands, "ui", ui_command.run, common, "open the web page: chat, documents, status, experiments"
    )
    ui_command.add_arguments(ui)


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage mistake (2), already printed
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    try:
        return args.run(args)
    except RagtuneError as exc:
        print(f"ragtune: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("ragtune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`ragtune search ... | head -1`): stop quietly, as other tools do. Python
        # would otherwise fail again flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as if killed by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
