"""The setups `ragtune eval` compares: the default four, the answering modes and the RAFT adapter by
name, each RAG answering in its setup's mode, adapters kept apart per kind and phase, and the
dev/test split applied before --quick's pick."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.cli.main import main
from ragtune.core.errors import InputError
from ragtune.eval.run import EvalConfig, parse_setups, plan, run_suite, select_questions
from ragtune.eval.setups import DEFAULT_SETUPS, SETUPS
from ragtune.eval.suite import Question, Suite
from ragtune.rag.generation.answer import AnswerConfig
from tests.conftest import FakeEmbedder
from tests.test_eval_run import CountingLLM, write_suite

MODES = AnswerConfig.__dataclass_fields__["answer_mode"].metadata["choices"]


def test_a_run_without_setups_measures_the_four_usual_ones():
    assert DEFAULT_SETUPS == ("closed-book", "rag", "ft", "ft+rag")
    assert parse_setups(None) == list(DEFAULT_SETUPS)


def test_the_other_setups_are_asked_for_by_name():
    assert parse_setups("rag-grounded, raft+rag,rag-grounded") == ["rag-grounded", "raft+rag"]
    with pytest.raises(
        InputError, match="setups rag-magic: use some of closed-book, rag, ft, ft\\+rag, rag-"
    ):
        parse_setups("rag,rag-magic")


def test_the_setups_table():
    table = {
        name: (s.retrieval, s.finetuned and s.adapter, s.retrieval and s.answer_mode)
        for name, s in SETUPS.items()
    }
    assert table == {
        "closed-book": (False, False, False),
        "rag": (True, False, "free"),
        "ft": (False, "docs", False),
        "ft+rag": (True, "docs", "free"),
        "rag-extractive": (True, False, "extractive"),
        "rag-constrained": (True, False, "constrained"),
        "rag-grounded": (True, False, "grounded"),
        "ft+rag-grounded": (True, "docs", "grounded"),
        "raft+rag": (True, "raft", "free"),
        "raft+rag-grounded": (True, "raft", "grounded"),
    }
    assert all(s.answer_mode in MODES for s in SETUPS.values())


def test_each_adapter_kind_and_phase_has_its_own_folder():
    names = ["rag", "ft", "ft+rag-grounded", "raft+rag", "raft+rag-grounded"]
    assert [(n, a) for n, _s, a in plan(names, "v1", retrain=True)] == [
        ("rag", None),
        ("ft", "v1"),
        ("ft+rag-grounded", "v1"),
        ("raft+rag", "raft-v1"),
        ("raft+rag-grounded", "raft-v1"),
    ]
    assert [(n, a) for n, _s, a in plan(names, "v2", retrain=True)][5:] == [
        ("ft-retrained", "v2"),
        ("ft+rag-grounded-retrained", "v2"),
        ("raft+rag-retrained", "raft-v2"),
        ("raft+rag-grounded-retrained", "raft-v2"),
    ]


def test_the_setups_help_names_every_setup(capsys):
    assert main(["eval", "--help"]) == 0
    shown = "".join(capsys.readouterr().out.split())  # argparse wraps lines, also at hyphens
    for setup in SETUPS.values():
        assert "".join(f"{setup.name} ({setup.help})".split()) in shown


def test_split_is_applied_before_the_quick_pick():
    first = Question("a", "Where?", "Lake Mira", split_given="dev")
    later = Question("b", "Which lake?", "Lake Mira", split_given="test")
    suite = Suite("s", Path("s"), {}, [first, later])  # two unchanged questions, one per split
    assert [q.id for q in select_questions(suite, EvalConfig(quick=True))] == ["a"]
    assert [q.id for q in select_questions(suite, EvalConfig(quick=True, split="test"))] == ["b"]
    assert [q.id for q in select_questions(suite, EvalConfig(split="dev"))] == ["a"]


def test_an_unknown_split_is_one_line():
    with pytest.raises(InputError, match="split='train': use all, dev, test"):
        EvalConfig(split="train")


@pytest.fixture
def recorded_modes(monkeypatch) -> dict[str, str]:
    """Setup name -> the answer_mode of the RAG it answered with; answers faked (no model needed)."""
    import ragtune.eval.setups as setups

    modes: dict[str, str] = {}

    def answer_batch(setup, questions, *, llm, rag=None, batch_size=8):
        modes[setup.name] = rag.answer_config.answer_mode if rag is not None else None
        record = {
            "answer": "Lake Mira [1]",
            "refused": False,
            "citations": [1],
            "sources": [],
            "seconds": 0.1,
        }
        return [dict(record) for _ in questions]

    monkeypatch.setattr(setups, "answer_batch", answer_batch)
    return modes


def test_each_retrieval_setup_answers_in_its_own_mode(tmp_path, recorded_modes):
    names = ["rag", "rag-extractive", "rag-constrained", "rag-grounded"]
    run_suite(
        write_suite(tmp_path / "suite"),
        tmp_path / "run",
        setups=names,
        config=EvalConfig(resamples=50),
        progress=False,
        llm=CountingLLM(),
        embedder=FakeEmbedder(),
    )
    assert recorded_modes == {
        "rag": "free",
        "rag-extractive": "extractive",
        "rag-constrained": "constrained",
        "rag-grounded": "grounded",
    }


def test_new_setups_are_reported_after_the_usual_ones_and_paired_with_rag(tmp_path, recorded_modes):
    out = tmp_path / "run"
    results = run_suite(
        write_suite(tmp_path / "suite"),
        out,
        setups="rag-grounded,rag,closed-book",
        config=EvalConfig(resamples=50, split="dev"),
        progress=False,
        llm=CountingLLM(),
        embedder=FakeEmbedder(),
    )
    assert results["config"]["split"] == "dev" and results["suite"]["questions"] == 4  # all but lake
    assert set(results["paired_vs_rag"]) == {"closed-book", "rag-grounded"}
    report = (out / "report.md").read_text()
    rows = [line.split("|")[1].strip() for line in report.splitlines() if line.startswith("| ")]
    phase_v1 = rows[rows.index("setup") + 1 : rows.index("setup") + 4]
    assert phase_v1 == ["closed-book", "rag", "rag-grounded"]
    assert "rag-grounded" in rows[rows.index("setup − rag") :]
    settings = json.loads((out / "settings.json").read_text())
    assert settings["split"] == "dev"


def test_each_adapter_model_is_freed_after_its_last_use(tmp_path, monkeypatch):
    """ft answers v2 by reusing v1's answers, so the docs adapter goes once ft's v2 row is written;
    the RAFT adapter stays for raft+rag's v2 answers."""
    import ragtune.eval.setups as setups
    from ragtune.eval.workspace import Workspace

    loaded: list[tuple[str, list]] = []
    workspaces: list[Workspace] = []

    def model(self, adapter):
        workspaces[:] = [self]
        return self.models.setdefault(adapter, CountingLLM())

    def answer_batch(setup, questions, *, llm, rag=None, batch_size=8):
        loaded.append((setup.name, sorted(workspaces[0].models)))
        return [
            {"answer": "Lake Mira", "refused": False, "citations": [], "sources": [], "seconds": 0.1}
        ] * len(questions)

    monkeypatch.setattr(Workspace, "model", model)
    monkeypatch.setattr(Workspace, "ensure_adapter", lambda self, adapter: None)  # no training here
    monkeypatch.setattr(setups, "answer_batch", answer_batch)
    run_suite(
        write_suite(tmp_path / "suite"),
        tmp_path / "run",
        setups="ft,raft+rag",
        config=EvalConfig(resamples=50),
        progress=False,
        embedder=FakeEmbedder(),
    )
    assert loaded == [("ft", ["v1"]), ("raft+rag", ["raft-v1", "v1"]), ("raft+rag", ["raft-v1"])]
