"""Command-line options made from the config dataclasses: each setting's flag, type, help, choices and
default come from its field, and an option not typed leaves the config default in place."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from ragtune.cli import index_commands, model_commands
from ragtune.cli.main import build_parser, main
from ragtune.finetune.config import FinetuneConfig
from ragtune.rag.generation.answer import AnswerConfig

# Every command with the config dataclasses it offers as options.
COMMAND_OPTIONS = {
    "ingest": [*index_commands.NEW_INDEX.values(), index_commands.READER],
    "search": [index_commands.SEARCH],
    "ask": [index_commands.GENERATOR, index_commands.ANSWER],
    "finetune": [model_commands.FINETUNE],
    "compare": [model_commands.COMPARE],
}
CASES = [
    (command, options, f)
    for command, sets in COMMAND_OPTIONS.items()
    for options in sets
    for f in options.fields()
]


def help_of(capsys, command: str) -> str:
    assert main([command, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(("command", "options", "f"), CASES, ids=[f"{c}-{f.name}" for c, _, f in CASES])
def test_each_config_field_is_an_option_with_the_dataclass_help(capsys, command, options, f):
    shown = help_of(capsys, command)
    for flag in options.flag_names(f.name):
        assert f" {flag} " in shown
    # argparse wraps lines at spaces and after hyphens: compare without whitespace.
    assert "".join(f.metadata["help"].split()) in "".join(shown.split())


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("ingest", "--embedding-model"),
        ("ingest", "--chunk-size"),
        ("ingest", "--chunk-overlap"),
        ("ingest", "--dense-index"),
        ("ingest", "--max-file-mb"),
        ("search", "--mode"),
        ("ask", "-k"),
        ("ask", "--min-score"),
        ("ask", "--model"),
        ("ask", "--adapter"),
        ("ask", "--quantization"),
        ("ask", "--max-new-tokens"),
        ("finetune", "--target-modules"),
        ("finetune", "--init-lora-weights"),
        ("finetune", "--max-steps"),
        ("compare", "--runs"),
        ("compare", "--new-tokens"),
    ],
)
def test_the_options_the_readme_documents_are_still_there(capsys, command, flag):
    assert f" {flag} " in help_of(capsys, command)


def test_help_shows_the_field_default_and_choices(capsys):
    shown = help_of(capsys, "ask")
    assert "Chunks retrieved per question. (default: 3)" in shown
    assert "--quantization {auto,nf4,int8,none}" in shown


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def finetune_config(*argv: str) -> FinetuneConfig:
    return model_commands.FINETUNE.build(parse("finetune", "--data", "qa.jsonl", "--out", "a", *argv))


def test_options_not_given_leave_the_dataclass_defaults():
    assert finetune_config() == FinetuneConfig()
    assert index_commands.ANSWER.build(parse("ask", "q")) == AnswerConfig()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--target-modules", "q_proj,v_proj,o_proj"], {"target_modules": ["q_proj", "v_proj", "o_proj"]}),
        (["--target-modules", "q_proj"], {"target_modules": ["q_proj"]}),
        (["--target-modules", "all-linear"], {"target_modules": "all-linear"}),
        (["--init-lora-weights", "false"], {"init_lora_weights": False}),
        (["--init-lora-weights", "True"], {"init_lora_weights": True}),
        (["--init-lora-weights", "pissa"], {"init_lora_weights": "pissa"}),
        (["--init-lora-weights", "PiSSA"], {"init_lora_weights": "pissa"}),
        (["--max-steps", "3", "--lr", "0.01"], {"max_steps": 3, "lr": 0.01}),
        (["--gradient-checkpointing"], {"gradient_checkpointing": True}),
        (["--gradient-checkpointing", "--no-gradient-checkpointing"], {"gradient_checkpointing": False}),
    ],
)
def test_finetune_options_become_the_config(argv, expected):
    assert finetune_config(*argv) == dataclasses.replace(FinetuneConfig(), **expected)


def test_ask_options_become_the_answer_and_generator_configs():
    args = parse("ask", "q", "-k", "5", "--mode", "bm25", "--model", "m", "--max-new-tokens", "7")
    assert index_commands.ANSWER.build(args) == AnswerConfig(k=5, mode="bm25")
    generator = index_commands.GENERATOR.build(args)
    assert (generator.model, generator.max_new_tokens, generator.quantization) == ("m", 7, "auto")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ask", "q", "--mode", "fuzzy"], "--mode: 'fuzzy': use one of bm25, tfidf, dense, hybrid"),
        (["compare", "base", "--quantization", "int4"], "'int4': use one of auto, nf4, int8, none"),
        (
            ["finetune", "--data", "d", "--out", "o", "--quantization", "int8"],
            "'int8': use one of auto, nf4, none",
        ),
        (["ingest", ".", "--chunk-size", "big"], "--chunk-size: 'big': expected a whole number"),
        (["search", "q", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (
            ["finetune", "--data", "d", "--out", "o", "--target-modules", ","],
            "',': expected comma-separated names",
        ),
    ],
)
def test_a_wrong_choice_is_one_line_and_exit_2(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("ragtune: error: ") and message in err


def test_python_dash_m_ragtune_runs_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "ragtune", "search", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "usage: ragtune search" in result.stdout
