"""run_suite and `ragtune eval`: every setup x phase x question answered once, results.json with the
contract's keys, --resume recomputing nothing, and no question text in the fine-tuning data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragtune.cli.main import main
from ragtune.eval.run import EvalConfig

V1 = {
    "heron.md": "# Herons\n\nThe grey heron colony nests at Lake Mira. The colony has 40 nests.",
    "owl.md": "# Owls\n\nThe barn owl hunts over the north meadow at dusk.",
}
V2 = {
    "heron.md": "# Herons\n\nThe grey heron colony nests at Lake Mira. The colony has 55 nests.",
    "kite.md": "# Kites\n\nThe red kite returned to the valley in spring.",
}
QUESTIONS = [
    {"id": "lake", "question": "Where does the grey heron colony nest?", "answer": "Lake Mira"},
    {
        "id": "nests",
        "question": "How many nests does the heron colony have?",
        "answer": "40",
        "answer_v2": "55",
    },
    {"id": "kite", "question": "Which bird returned to the valley?", "answer": None, "answer_v2": "red kite"},
    {"id": "owl", "question": "Where does the barn owl hunt?", "answer": "north meadow", "answer_v2": None},
    {"id": "moon", "question": "What colour is the heron king's crown?", "answer": None},
]


def write_suite(root: Path) -> Path:
    for phase, files in (("v1", V1), ("v2", V2)):
        for name, text in files.items():
            path = root / "docs" / phase / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    (root / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return root


class CountingLLM:
    """Answers every question with the same sentence and counts the calls."""

    context_window = 2048

    def __init__(self) -> None:
        self.calls = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages, max_new_tokens=None) -> str:
        self.calls += 1
        return "Lake Mira [1]"

    def stream(self, messages, max_new_tokens=None) -> Iterator[str]:
        yield self.generate(messages, max_new_tokens)


def lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]


def tiny_config(tiny_llm_dir: Path, **overrides) -> EvalConfig:
    values = dict(model=str(tiny_llm_dir), max_new_tokens=4, finetune_steps=2, resamples=50)
    return EvalConfig(**{**values, **overrides})


def test_cli_missing_suite_is_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("ragtune: error: suite folder") and "nowhere" in err


@pytest.mark.parametrize("argv", [["eval"], ["eval", "somewhere"]])
def test_cli_needs_a_suite_and_out(argv, capsys):
    assert main(argv) == 2
    assert "--out" in capsys.readouterr().err


def test_quick_fine_tuning_takes_few_steps_at_the_full_rate():
    quick = EvalConfig(quick=True, quick_steps=4, finetune_steps=100).finetune_config()
    assert quick.max_steps == 4
    assert quick.warmup_steps == 0  # 4 steps inside a 10-step warmup would leave the adapter a no-op
    assert EvalConfig(finetune_steps=100).finetune_config().max_steps == 100
