"""The setups an evaluation compares, and how each one answers a question.

A setup is a model (the base, or the base plus a LoRA adapter) with or without retrieval. Every setup
answers the same questions with the same decoding and seed, so differences come from what the model
knows and what it is shown. New setups plug in by adding a `Setup` to `SETUPS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ragtune.rag.generation.answer import generate_many, is_refusal

CLOSED_BOOK_PROMPT = (
    "Answer the question in a few words from what you know. If you do not know the answer, "
    "reply exactly: I don't know."
)
RETRAINED = "-retrained"


@dataclass(frozen=True)
class Setup:
    """name: as written in every output; retrieval: answer with `rag.ask` (passages in the prompt)
    instead of from the model alone; finetuned: the model carries the adapter trained on the documents."""

    name: str
    retrieval: bool
    finetuned: bool
    help: str


SETUPS: dict[str, Setup] = {
    s.name: s
    for s in (
        Setup("closed-book", retrieval=False, finetuned=False, help="the base model alone"),
        Setup("rag", retrieval=True, finetuned=False, help="the base model with retrieved passages"),
        Setup("ft", retrieval=False, finetuned=True, help="base + adapter trained on the documents"),
        Setup("ft+rag", retrieval=True, finetuned=True, help="the adapter with retrieved passages"),
    )
}


def retrained(name: str) -> str:
    """The name of a fine-tuned setup measured again after re-training on v2 ("ft" -> "ft-retrained")."""
    return name + RETRAINED


def closed_book_messages(question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": CLOSED_BOOK_PROMPT},
        {"role": "user", "content": question},
    ]


def _closed_book_record(text: str, seconds: float) -> dict[str, Any]:
    """The model alone: no passages, so no citations and no sources (None: retrieval does not apply)."""
    text = text.strip()
    return {
        "answer": text,
        "refused": not text or is_refusal(text),
        "citations": [],
        "sources": None,
        "seconds": seconds,
    }


def _retrieval_record(answer: Any) -> dict[str, Any]:
    """A `rag.ask` answer, recorded with the passages it was given."""
    return {
        "answer": answer.text,
        "refused": answer.refused,
        "citations": list(answer.citations),
        "sources": [
            {"source": hit.source, "chunk_id": hit.chunk_id, "text": hit.text} for hit in answer.sources
        ],
        "seconds": answer.seconds,
    }


def answer_batch(
    setup: Setup, questions: list[str], *, llm: Any, rag: Any = None, batch_size: int = 8
) -> list[dict[str, Any]]:
    """One record per question. With retrieval: `rag.ask_many` (the `rag.ask` path, generated in
    batches); without: the model alone. `seconds` is each answer's share of its batch."""
    if setup.retrieval:
        return [_retrieval_record(a) for a in rag.ask_many(questions, batch_size=batch_size)]
    records = []
    for first in range(0, len(questions), batch_size):
        batch = questions[first : first + batch_size]
        started = time.perf_counter()
        texts = generate_many(llm, [closed_book_messages(q) for q in batch])
        share = (time.perf_counter() - started) / len(batch)
        records += [_closed_book_record(text, share) for text in texts]
    return records
