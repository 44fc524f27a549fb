"""The bundled `heron` suite is consistent with its own documents.

Every gold answer must be readable in the supporting document of its version (through the project's own
readers, so the PDF, DOCX, HTML and JSONL files count too), a changed fact must really have changed (else
"stale" could not be measured), and removed / added pages must be missing from the version that does not
answer them. Matching is the harness's own (normalised, whole tokens). No model is needed.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from ragtune.eval.metrics import contains_gold, normalise
from ragtune.eval.suite import Question, load_suite
from ragtune.rag.ingest.readers import parse_bytes

SUITE = load_suite(Path(__file__).resolve().parents[1] / "eval" / "suites" / "heron")


@cache
def doc_text(phase: str, doc: str) -> str:
    """The text the ingestor would index from one document (all records of a JSONL file joined)."""
    path = SUITE.docs[phase] / doc
    result = parse_bytes(path.read_bytes(), path.suffix.lower(), path.resolve().as_posix())
    assert result.skipped is None, f"{phase}/{doc}: {result.skipped}"
    return "\n\n".join(d.text for d in result.documents)


def occurs(gold: str, phase: str, doc: str) -> bool:
    return contains_gold(doc_text(phase, doc), [gold])


def of_kind(*kinds: str) -> list[pytest.param]:
    return [pytest.param(q, id=q.id) for q in SUITE.questions if q.kind in kinds]


def test_the_suite_has_both_versions_and_enough_questions_of_every_kind() -> None:
    assert SUITE.phases == ["v1", "v2"]
    counts = SUITE.counts()
    assert len(SUITE.questions) >= 60
    assert counts["unchanged"] >= 30
    assert counts["changed"] >= 8
    assert counts["added"] >= 4
    assert counts["removed"] >= 4
    assert counts["unanswerable"] >= 10


def test_question_ids_are_unique() -> None:
    ids = Counter(q.id for q in SUITE.questions)
    assert [i for i, n in ids.items() if n > 1] == []


def test_every_answerable_question_names_its_supporting_document() -> None:
    missing = [q.id for q in SUITE.questions if q.kind != "unanswerable" and not q.doc]
    assert missing == []


def test_questions_use_every_file_type_of_the_corpus() -> None:
    suffixes = {Path(q.doc).suffix for q in SUITE.questions if q.doc}
    assert {".md", ".txt", ".html", ".pdf", ".docx", ".jsonl"} <= suffixes


@pytest.mark.parametrize("q", of_kind("unchanged", "changed", "removed"))
def test_the_v1_gold_is_in_its_v1_document(q: Question) -> None:
    assert occurs(q.gold("v1"), "v1", q.doc)


@pytest.mark.parametrize("q", of_kind("unchanged", "changed", "added"))
def test_the_v2_gold_is_in_its_v2_document(q: Question) -> None:
    assert occurs(q.gold("v2"), "v2", q.doc)


@pytest.mark.parametrize("q", of_kind("changed"))
def test_a_changed_fact_is_gone_from_the_other_version(q: Question) -> None:
    # Otherwise an answer holding the old value could not be told apart from a fresh one.
    assert not occurs(q.gold("v1"), "v2", q.doc)
    assert not occurs(q.gold("v2"), "v1", q.doc)


@pytest.mark.parametrize("q", of_kind("removed"))
def test_a_removed_question_s_page_is_not_in_v2(q: Question) -> None:
    assert (SUITE.docs["v1"] / q.doc).is_file()
    assert not (SUITE.docs["v2"] / q.doc).exists()


@pytest.mark.parametrize("q", of_kind("added"))
def test_an_added_question_s_page_is_new_in_v2(q: Question) -> None:
    assert (SUITE.docs["v2"] / q.doc).is_file()
    assert not (SUITE.docs["v1"] / q.doc).exists()


def test_gold_answers_are_short() -> None:
    # Short golds keep "the gold occurs in the answer" a fair test of a free-form answer.
    long = [
        q.id
        for q in SUITE.questions
        for p in SUITE.phases
        if q.gold(p) and len(normalise(q.gold(p)).split()) > 6
    ]
    assert long == []


def test_heron_v1_is_the_bundled_sample_corpus_byte_for_byte():
    """The suite's v1 is a copy of rag/sample_corpus: an edit to one must reach the other."""
    root = Path(__file__).resolve().parents[1]
    v1, sample = root / "eval" / "suites" / "heron" / "docs" / "v1", root / "rag" / "sample_corpus"
    files = sorted(p.relative_to(sample) for p in sample.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(v1) for p in v1.rglob("*") if p.is_file())
    assert all((v1 / f).read_bytes() == (sample / f).read_bytes() for f in files)
