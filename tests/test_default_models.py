"""End to end with the packaged default embedding model on the bundled sample corpus."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from rag import RAG

pytestmark = pytest.mark.slow

SAMPLE = Path(str(files("rag") / "sample_corpus"))


@pytest.fixture(scope="module")
def sample_rag(tmp_path_factory):
    rag = RAG.open(tmp_path_factory.mktemp("sample") / "index")
    report = rag.ingest(SAMPLE, progress=False)
    assert report.skipped == [] and report.problems == []
    return rag


@pytest.mark.parametrize(
    ("question", "expected_file"),
    [
        ("How do I merge a LoRA adapter into the base model?", "merging-lora-adapters.md"),
        ("What does reciprocal rank fusion do with the constant k=60?", "hybrid-search-and-rrf.md"),
        ("What is 4-bit NormalFloat?", "qlora.md"),
    ],
)
@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_sample_questions_find_their_document(sample_rag, question, expected_file, mode):
    top = sample_rag.search(question, k=3, mode=mode)
    assert expected_file in {Path(h.source).name for h in top}


def test_every_sample_format_was_read(sample_rag):
    suffixes = {Path(p).suffix for p in _sources(sample_rag)}
    assert {".md", ".txt", ".html", ".pdf", ".docx", ".jsonl"} <= suffixes


def _sources(rag: RAG) -> set[str]:
    with rag.store.transaction() as db:
        return {row[0] for row in db.execute("SELECT DISTINCT source FROM documents")}
