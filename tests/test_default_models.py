"""End to end with the packaged default models (embedding and LLM) on the bundled sample corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune import RAG, AnswerConfig
from ragtune.rag.sample import sample_corpus

pytestmark = pytest.mark.slow

SAMPLE = sample_corpus()


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


def test_default_llm_answers_from_the_sample_corpus(sample_rag):
    """The packaged SmolLM2-135M-Instruct end to end: GGUF converted once, prompt, greedy answer."""
    writing = RAG.open(sample_rag.folder, answer=AnswerConfig(answer_mode="free"))
    answer = writing.ask("What constant k does Heron use for reciprocal rank fusion?")
    assert answer.mode == "free" and not answer.refused and "60" in answer.text
    assert any(Path(h.source).name in {"hybrid-search-and-rrf.md", "faq.jsonl"} for h in answer.sources)


def test_default_llm_is_not_asked_an_off_topic_question(sample_rag):
    answer = sample_rag.ask("Who won the 2018 football World Cup?")
    assert answer.refused and answer.sources == []


def test_default_llm_trains_merges_and_reloads(sample_rag, tmp_path):
    """Two LoRA steps on the sample corpus's chunks, then merge: the merged model loads and answers."""
    from ragtune import GeneratorConfig, LocalLLM
    from ragtune.finetune.config import FinetuneConfig
    from ragtune.finetune.merge import merge
    from ragtune.finetune.train import finetune

    config = FinetuneConfig(max_steps=2, batch_size=2, max_length=64, eval_fraction=0.05)
    result = finetune(config, tmp_path / "adapter", index=sample_rag.folder, progress=False)
    assert result.steps == 2 and all(loss > 0 for loss in result.losses)
    merged = merge(tmp_path / "adapter", tmp_path / "merged")
    llm = LocalLLM.load(GeneratorConfig(model=merged.out, max_new_tokens=8))
    assert llm.generate([{"role": "user", "content": "What is LoRA?"}]).strip()


def test_demo_ingests_searches_and_answers(tmp_path, capsys):
    import json

    from ragtune.cli.main import DEMO_QUESTIONS, main

    assert main(["demo", "--index", str(tmp_path / "demo"), "--json", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ingest"]["skipped"] == [] and len(result["questions"]) == len(DEMO_QUESTIONS)
    answers = [q["answer"] for q in result["questions"]]
    # The default model is small, so the demo quotes: each answer is a sentence of the passage it cites.
    answered = [a for a in answers if not a["refused"]]
    assert answered and all(a["mode"] == "grounded" and a["verified"] for a in answered)
    for a in answered:
        (n,) = a["citations"]
        quote = a["answer"].removesuffix(f" [{n}]").strip("…")
        assert " ".join(quote.split()) in " ".join(a["sources"][n - 1]["text"].split())
    assert answers[-1]["refused"] and answers[-1]["sources"] == []
