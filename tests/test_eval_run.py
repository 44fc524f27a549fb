"""run_suite and `ragtune eval`: every setup x phase x question answered once, results.json with the
contract's keys, --resume recomputing nothing, and no question text in the fine-tuning data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragtune.cli.main import main
from ragtune.core.errors import InputError
from ragtune.eval.run import EvalConfig, run_suite
from tests.conftest import FakeEmbedder

V1 = {
    "heron.md": "# Herons\n\nThe grey heron colony nests at Lake Mira. The colony has 40 nests.",
    "owl.md": "# Owls\n\nThe barn owl hunts over the north meadow at dusk.",
}
V2 = {
    "heron.md": "# Herons\n\nThe grey heron colony nests at Lake Mira. The colony has 55 nests.",
    "kite.md": "# Kites\n\nThe red kite returned to the valley in spring.",
}
QUESTIONS = [
    {
        "id": "lake",
        "question": "Where does the grey heron colony nest?",
        "answer": "Lake Mira",
        "doc": "heron.md",
    },
    {
        "id": "nests",
        "question": "How many nests does the heron colony have?",
        "answer": "40",
        "answer_v2": "55",
        "doc": "heron.md",
    },
    {
        "id": "kite",
        "question": "Which bird returned to the valley?",
        "answer": None,
        "answer_v2": "red kite",
        "doc": "kite.md",
    },
    {
        "id": "owl",
        "question": "Where does the barn owl hunt?",
        "answer": "north meadow",
        "answer_v2": None,
        "doc": "owl.md",
    },
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


SETUP_NAMES = ("closed-book", "rag", "ft", "ft+rag")


@pytest.fixture
def suite_dir(tmp_path) -> Path:
    return write_suite(tmp_path / "suite")


def tiny_suite_run(root: Path, config, **options) -> Path:
    """The tiny suite written under `root` and run into root/run, quietly, with the fake embedder."""
    out = root / "run"
    run_suite(
        write_suite(root / "suite"), out, config=config, progress=False, embedder=FakeEmbedder(), **options
    )
    return out


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_llm_dir) -> Path:
    """One run of every setup on the tiny suite with a tiny real Llama, fine-tuned for two steps."""

    return tiny_suite_run(tmp_path_factory.mktemp("eval"), tiny_config(tiny_llm_dir))


def test_a_run_writes_every_output_file(full_run):
    report = (full_run / "report.md").read_text()
    assert "## Phase v1" in report and "## Phase v2" in report and "## Costs" in report
    assert sorted(p.name for p in (full_run / "plots").glob("*.png")) == [
        "freshness.png",
        "metrics_v1.png",
        "metrics_v2.png",
    ]
    results = json.loads((full_run / "results.json").read_text())
    assert set(results["setups"]) == set(SETUP_NAMES)
    assert results["setups"]["rag"]["v1"]["accuracy"]["n"] == 3  # lake, nests, owl answer in v1
    assert results["setups"]["rag"]["v2"]["stale"]["n"] == 1  # only "nests" changed
    assert results["setups"]["closed-book"]["v1"]["recall_at_k"]["n"] == 0  # no retrieval
    assert results["setups"]["rag"]["v1"]["recall_at_k"]["n"] == 3
    assert all(results["costs"][c] > 0 for c in ("index_seconds", "reingest_seconds", "finetune_seconds"))
    assert results["costs"]["retrain_seconds"] is None
    assert set(results["paired_vs_rag"]) == {"closed-book", "ft", "ft+rag"}
    assert {k: v["n"] for k, v in results["by_kind"]["rag"]["v2"].items()} == {
        "unchanged": 1,
        "changed": 1,
        "added": 1,
        "removed": 1,
        "unanswerable": 1,
    }


def test_answers_hold_one_line_per_setup_phase_and_question(full_run):
    records = lines(full_run)
    keys = [(r["setup"], r["phase"], r["id"]) for r in records]
    assert sorted(keys) == sorted(
        (s, p, q["id"]) for s in SETUP_NAMES for p in ("v1", "v2") for q in QUESTIONS
    )
    nests_v2 = next(r for r in records if r["id"] == "nests" and r["phase"] == "v2" and r["setup"] == "rag")
    assert nests_v2["gold"] == "55" and nests_v2["question"] == "How many nests does the heron colony have?"
    assert {"answer", "refused", "citations", "sources", "seconds", "correct"} <= set(nests_v2)
    assert all(s["source"].endswith(".md") and s["text"] for s in nests_v2["sources"])


def test_phase_v2_sees_the_edited_documents(full_run):
    """The index was brought to v2 in place: the removed page is gone, the added one is found."""
    sources = {
        s["source"].rsplit("/", 1)[-1]
        for r in lines(full_run)
        if r["phase"] == "v2" and r["setup"] == "rag"
        for s in r["sources"]
    }
    assert "owl.md" not in sources and "kite.md" in sources


def count_answers(monkeypatch) -> list[tuple[str, str]]:
    """Every (setup, question) the run generates an answer for, recorded on the way to the real code."""
    import ragtune.eval.setups as setups

    asked: list[tuple[str, str]] = []
    real = setups.answer_batch

    def answer_batch(setup, questions, **kwargs):
        asked.extend((setup.name, q) for q in questions)
        return real(setup, questions, **kwargs)

    monkeypatch.setattr(setups, "answer_batch", answer_batch)
    return asked


def run_closed_book_and_rag(suite_dir: Path, out: Path, resume: bool) -> None:
    run_suite(
        suite_dir,
        out,
        setups="closed-book,rag",
        config=EvalConfig(resamples=50, batch_size=2),
        resume=resume,
        progress=False,
        llm=CountingLLM(),
        embedder=FakeEmbedder(),
    )


def test_closed_book_answers_once_and_is_scored_against_each_phase(suite_dir, tmp_path, monkeypatch):
    """Without retrieval the prompt is the same in v1 and v2: the v1 answer is reused, not generated again."""
    asked = count_answers(monkeypatch)
    run_closed_book_and_rag(suite_dir, tmp_path / "run", resume=False)
    assert sorted(asked) == sorted(
        (s, q["question"]) for s in ("closed-book", "rag", "rag") for q in QUESTIONS
    )
    records = {(r["setup"], r["phase"], r["id"]): r for r in lines(tmp_path / "run")}
    v1, v2 = records[("closed-book", "v1", "nests")], records[("closed-book", "v2", "nests")]
    assert v2["same_as"] == "v1" and v2["answer"] == v1["answer"] and (v1["gold"], v2["gold"]) == ("40", "55")
    assert "same_as" not in records[("rag", "v2", "nests")]


def test_resume_after_an_interruption_answers_only_what_is_missing(suite_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_closed_book_and_rag(suite_dir, out, resume=False)
    kept = (out / "answers.jsonl").read_text().splitlines()
    # Interrupted: five answers written, the sixth cut off mid-line.
    (out / "answers.jsonl").write_text("\n".join(kept[:5]) + "\n" + kept[5][:20])
    asked = count_answers(monkeypatch)
    run_closed_book_and_rag(suite_dir, out, resume=True)
    missing = [json.loads(line) for line in kept[5:]]
    assert sorted(asked) == sorted((r["setup"], r["question"]) for r in missing if "same_as" not in r)
    assert lines(out)[:5] == [json.loads(line) for line in kept[:5]]
    assert len(lines(out)) == len(kept)
    asked.clear()
    run_closed_book_and_rag(suite_dir, out, resume=True)
    assert asked == []


def test_resume_keeps_the_adapter_and_costs_of_the_first_run(full_run, tiny_llm_dir):

    adapter = full_run / "adapters" / "v1"
    stamp = {p.name: p.stat().st_mtime_ns for p in adapter.iterdir()}
    costs = json.loads((full_run / "results.json").read_text())["costs"]
    before = (full_run / "answers.jsonl").read_text()
    results = run_suite(
        full_run.parent / "suite",
        full_run,
        config=tiny_config(tiny_llm_dir),
        resume=True,
        progress=False,
        embedder=FakeEmbedder(),
    )
    assert {p.name: p.stat().st_mtime_ns for p in adapter.iterdir()} == stamp
    assert results["costs"] == costs
    assert (full_run / "answers.jsonl").read_text() == before


def test_resume_with_other_settings_is_refused(full_run, tiny_llm_dir):
    with pytest.raises(InputError, match="other settings .*seed=0 then 7"):
        run_suite(
            full_run.parent / "suite",
            full_run,
            config=tiny_config(tiny_llm_dir, seed=7),
            resume=True,
            progress=False,
        )


def test_fine_tuning_sees_the_documents_and_never_the_questions(
    suite_dir, tmp_path, tiny_llm_dir, monkeypatch
):
    """The ft adapter trains on the index's chunks only: no question, and no gold the documents lack."""
    import ragtune.finetune.data as data

    seen: list[str] = []
    real = data.text_examples

    def recording(texts, tokenizer, max_length):
        seen.extend(texts)
        return real(texts, tokenizer, max_length)

    monkeypatch.setattr(data, "text_examples", recording)
    run_suite(
        suite_dir,
        tmp_path / "run",
        setups="ft",
        config=tiny_config(tiny_llm_dir),
        progress=False,
        embedder=FakeEmbedder(),
    )
    training = "\n".join(seen)
    assert "grey heron colony nests at Lake Mira" in training and "barn owl hunts" in training
    assert "red kite" not in training  # v2's page: the adapter is trained on v1 only
    for q in QUESTIONS:
        assert q["question"] not in training
    assert "crown" not in training.lower()


@pytest.fixture(scope="module")
def grounded_raft_run(tmp_path_factory, tiny_llm_dir) -> Path:
    """rag-grounded and raft+rag on the tiny suite with the tiny Llama, the RAFT adapter re-trained on v2."""
    config = tiny_config(tiny_llm_dir, retrain=True)
    return tiny_suite_run(tmp_path_factory.mktemp("eval-raft"), config, setups="rag-grounded,raft+rag")


def test_answer_mode_and_raft_setups_write_answers_under_their_names(grounded_raft_run):
    records = lines(grounded_raft_run)
    assert sorted({(r["setup"], r["phase"]) for r in records}) == [
        ("raft+rag", "v1"),
        ("raft+rag", "v2"),
        ("raft+rag-retrained", "v2"),
        ("rag-grounded", "v1"),
        ("rag-grounded", "v2"),
    ]
    # Answers not declined before generation (no relevant chunk) come from the setup's own mode.
    generated = [r for r in records if not r["reason"].startswith("no chunk")]
    assert {r["mode"] for r in generated if r["setup"] == "rag-grounded"} == {"grounded"}
    assert {r["mode"] for r in generated if r["setup"].startswith("raft+rag")} == {"free"}


def test_raft_adapters_are_trained_per_phase_into_their_own_folders(grounded_raft_run):
    from ragtune.finetune.config import FinetuneConfig

    assert sorted(p.name for p in (grounded_raft_run / "adapters").iterdir()) == ["raft-v1", "raft-v2"]
    config, _run = FinetuneConfig.load(grounded_raft_run / "adapters" / "raft-v1")
    assert config.raft
    costs = json.loads((grounded_raft_run / "results.json").read_text())["costs"]
    assert costs["raft_seconds"] > 0 and costs["raft_retrain_seconds"] > 0
    assert costs["finetune_seconds"] is None  # no setup carries the docs adapter


def test_raft_training_data_comes_from_each_phase_documents_and_never_the_questions(grounded_raft_run):
    """RAFT questions are generated from the chunks: none of the suite's questions or unanswerable
    facts reaches the training data, and each phase's data holds only that phase's documents."""
    data = {}
    for phase in ("v1", "v2"):
        path = grounded_raft_run / "adapters" / f"raft-{phase}" / "raft.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()]
        data[phase] = "\n".join(m["content"] for r in records for m in r["messages"])
    assert "The colony has 40 nests" in data["v1"] and "red kite" not in data["v1"]
    assert "The colony has 55 nests" in data["v2"] and "barn owl" not in data["v2"]  # owl.md removed
    for q in QUESTIONS:
        assert q["question"] not in data["v1"] and q["question"] not in data["v2"]
    assert "crown" not in (data["v1"] + data["v2"]).lower()
