"""RAFT training data: questions generated from an index's chunks, asked with the gold chunk among
retrieved distractors, exactly as the answering prompt is built at inference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune import RAG
from ragtune.cli.main import main
from ragtune.finetune.config import FinetuneConfig
from ragtune.finetune.raft import RAFT_FILE, facts, raft_examples
from ragtune.rag.generation.answer import AnswerConfig, build_messages
from tests.conftest import FakeEmbedder, write_corpus

REPO = Path(__file__).resolve().parent.parent

# Hand-made documents: each holds facts (numbers, dates, names) and shares topic words with the others,
# so a question about one retrieves the others as distractors.
FACTS = {
    "chunking.md": "# Chunking\n\nThe default chunk size is 1,000 characters. Neighbouring chunks overlap "
    "by 200 characters so that a sentence cut at a boundary is still whole in one of them.",
    "watcher.md": "# Watching\n\nThe file watcher starts a re-index 5 seconds after the last change. A full "
    "rebuild of the chunk index takes about 6 minutes on a laptop.",
    "fusion.md": "# Fusion\n\nReciprocal rank fusion was introduced by Gordon Cormack at SIGIR in 2009. Our "
    "fusion adds the ranks of every chunk from both retrievers with a constant of 60.",
    "embedding.md": "# Embeddings\n\nThe embedding model turns every chunk into 384 dimensions. Inputs longer "
    "than 256 word pieces are cut before the chunk is embedded.",
    "training.md": "# Training\n\nThe adapter is trained for 3 epochs on the chunk questions. Training on "
    "a laptop takes about 40 minutes for the whole index.",
    "serving.md": "# Serving\n\nThe server answers on port 8080 by default. It keeps the last 12 questions "
    "of every chat so that a follow-up question about a chunk reads well.",
}

# Every sentence of the documents' bodies (headings left out), each ending with its full stop.
SENTENCES = {
    s if s.endswith(".") else f"{s}." for t in FACTS.values() for s in t.split("\n\n")[1].split(". ")
}


@pytest.fixture
def fact_index(tmp_path: Path) -> Path:
    folder = tmp_path / "index"
    with RAG.open(folder, embedder=FakeEmbedder()) as rag:
        rag.ingest(write_corpus(tmp_path / "docs", FACTS), progress=False)
    return folder


def config(tiny_llm_dir: Path, **overrides) -> FinetuneConfig:
    return FinetuneConfig(model=str(tiny_llm_dir), **overrides)


def build(index: Path, tiny_llm_dir: Path, seed: int = 0, **overrides) -> list[dict]:
    return raft_examples(index, config(tiny_llm_dir, **overrides), seed, embedder=FakeEmbedder())


def question_of(record: dict) -> str:
    return record["messages"][-2]["content"].split("\nQuestion: ", 1)[1].split("\n", 1)[0]


def passages_of(record: dict) -> list[str]:
    context = record["messages"][-2]["content"].split("Context:\n", 1)[1].split("\n\nQuestion: ", 1)[0]
    return context.split("\n\n") if context else []


def test_a_copula_sentence_becomes_a_what_question_answered_with_the_number_and_unit():
    (fact,) = facts("The default chunk size is 1,000 characters.")
    assert (fact.question, fact.answer, fact.kind) == (
        "What is the default chunk size?",
        "1,000 characters",
        "number",
    )


def test_a_number_with_a_plural_unit_is_asked_in_place_with_how_many():
    (fact,) = facts("The file watcher starts a re-index 5 seconds after the last change.")
    assert fact.question == "The file watcher starts a re-index how many seconds after the last change?"
    assert fact.answer == "5"


def test_a_year_is_asked_as_which_year():
    (fact,) = facts("Reciprocal rank fusion was first published at SIGIR in 2009.")
    assert fact.question == "Reciprocal rank fusion was first published at SIGIR in which year?"
    assert fact.answer == "2009"


def test_headings_code_and_sentences_without_a_fact_give_no_question():
    assert (
        facts("# Version 2 notes\n\n```\nchunk_size = 1000\n```\n\nChunks are cut at paragraph ends.") == []
    )


def test_each_prompt_is_the_inference_prompt_of_its_question_and_the_stored_chunks(fact_index, tiny_llm_dir):
    records = build(fact_index, tiny_llm_dir)
    assert records
    for record in records:
        passages = passages_of(record)
        assert record["messages"][:-1] == build_messages(question_of(record), passages, [], AnswerConfig())
        for n, passage in enumerate(passages, 1):
            heading, body = passage.split("\n", 1)
            # The heading is "[n] title" and the body the whole chunk, whitespace joined, as fit_passages
            # gives it: these chunks are far inside the token budget.
            assert heading.startswith(f"[{n}] ")
            assert any(" ".join(text.split()) == body for text in FACTS.values())


def test_the_target_quotes_the_sentence_holding_the_answer_and_cites_the_gold_chunk(fact_index, tiny_llm_dir):
    records = [r for r in build(fact_index, tiny_llm_dir) if r["raft"]["gold"] is not None]
    assert len(records) >= 8
    with RAG.open(fact_index) as rag, rag.store.transaction():
        texts = {
            cid: row.text for cid, row in rag.store.chunks([r["raft"]["chunk_id"] for r in records]).items()
        }
    for record in records:
        n, span = record["raft"]["gold"], record["raft"]["answer"]
        gold_passage = passages_of(record)[n - 1].split("\n", 1)[1]
        assert gold_passage == " ".join(texts[record["raft"]["chunk_id"]].split())
        quote, cited = record["messages"][-1]["content"].rsplit(" ", 1)
        assert cited == f"[{n}]"
        # A whole sentence of the gold chunk, holding the answer the question leaves out.
        assert quote in gold_passage and span in quote
        assert quote in SENTENCES
        assert span not in question_of(record)


def test_the_target_of_a_fact_quotes_its_sentence():
    (fact,) = facts("The default chunk size is 1,000 characters.")
    assert fact.quote == "The default chunk size is 1,000 characters."


def test_the_target_of_a_fact_in_a_long_sentence_quotes_only_its_clause():
    (fact,) = facts(
        "Our retrieval service runs on a shared machine in the basement of the old office building next to "
        "the kitchen; the default port of the server is 8080 for every team that uses it today."
    )
    assert fact.answer == "8080"
    assert fact.quote == "the default port of the server is 8080 for every team that uses it today."


def test_the_gold_chunk_lands_at_more_than_one_position(fact_index, tiny_llm_dir):
    golds = {r["raft"]["gold"] for r in build(fact_index, tiny_llm_dir) if r["raft"]["gold"]}
    assert len(golds) >= 2


def test_the_no_gold_share_is_respected_and_those_examples_answer_with_the_refusal(fact_index, tiny_llm_dir):
    records = build(fact_index, tiny_llm_dir, raft_no_gold_fraction=0.5)
    without = [r for r in records if r["raft"]["gold"] is None]
    assert len(without) == round(len(records) * 0.5)
    for record in without:
        assert record["messages"][-1]["content"] == AnswerConfig().refusal
        # No passage left holds the answer (as whole words: "3" is in "[3] Serving" and "2009" too):
        # the refusal is the truth for that prompt.
        answer = f" {record['raft']['answer']} "
        assert all(answer not in f" {p.split(chr(10), 1)[1]} " for p in passages_of(record))


def test_no_share_without_gold_when_the_fraction_is_zero(fact_index, tiny_llm_dir):
    records = build(fact_index, tiny_llm_dir, raft_no_gold_fraction=0.0)
    assert records and all(r["raft"]["gold"] is not None for r in records)


def test_distractors_are_capped_by_the_setting(fact_index, tiny_llm_dir):
    records = build(fact_index, tiny_llm_dir, raft_distractors=1, raft_no_gold_fraction=0.0)
    assert {len(passages_of(r)) for r in records} == {2}


def test_the_same_seed_gives_the_same_examples(fact_index, tiny_llm_dir):
    assert build(fact_index, tiny_llm_dir, seed=3) == build(fact_index, tiny_llm_dir, seed=3)


def test_raft_data_from_the_heron_docs_never_contains_an_eval_suite_question(tmp_path, tiny_llm_dir):
    # The worst case: the very documents the heron suite asks about.
    folder = tmp_path / "heron-index"
    with RAG.open(folder, embedder=FakeEmbedder()) as rag:
        rag.ingest(REPO / "eval" / "suites" / "heron" / "docs" / "v1", progress=False)
    records = build(folder, tiny_llm_dir)
    suite_questions = [
        json.loads(line)["question"].lower()
        for path in sorted((REPO / "eval" / "suites").glob("*/questions.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert len(records) > 100 and len(suite_questions) > 50
    texts = [m["content"].lower() for r in records for m in r["messages"]]
    assert not [q for q in suite_questions if any(q in text for text in texts)]


def test_cli_finetune_raft_writes_the_examples_and_trains_on_them(
    capsys, tmp_path, tiny_llm_dir, tiny_model_dir
):
    docs, index, out = write_corpus(tmp_path / "docs", FACTS), str(tmp_path / "index"), tmp_path / "adapter"
    assert main(["ingest", str(docs), "--index", index, "--embedding-model", str(tiny_model_dir), "-q"]) == 0
    argv = ["finetune", "--raft", "--from-store", "--index", index, "--out", str(out)]
    code = main([*argv, "--model", str(tiny_llm_dir), "--max-steps", "1", "--batch-size", "2"])
    _out, err = capsys.readouterr()
    assert code == 0 and "RAFT: " in err
    lines = (out / RAFT_FILE).read_text().splitlines()
    saved, run = FinetuneConfig.load(out)
    assert saved.raft and run["data"]["source"] == str(out / RAFT_FILE)
    assert run["data"]["examples"] == len(lines) and run["data"]["kind"] == "qa"


def test_cli_raft_without_from_store_is_one_clear_line(capsys, tmp_path, tiny_llm_dir):
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "what is the port?", "answer": "8080"}) + "\n")
    code = main(
        [
            "finetune",
            "--raft",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "a"),
            "--model",
            str(tiny_llm_dir),
        ]
    )
    assert code == 2 and "--raft builds its examples from an index" in capsys.readouterr().err
