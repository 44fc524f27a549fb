"""The setups an evaluation compares, and how each one answers a question.

A setup is a model (the base, or the base plus a LoRA adapter) with or without retrieval. Every setup
answers the same questions with the same decoding and seed, so differences come from what the model
knows and what it is shown. New setups plug in by adding a `Setup` to `SETUPS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ragtune.rag.generation.answer import is_refusal

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


def closed_book(llm: Any, question: str) -> dict[str, Any]:
    """The model alone: no passages, so no citations or sources; a refusal is detected like rag's."""
    messages = [
        {"role": "system", "content": CLOSED_BOOK_PROMPT},
        {"role": "user", "content": question},
    ]
    started = time.perf_counter()
    text = llm.generate(messages).strip()
    return {
        "answer": text,
        "refused": not text or is_refusal(text),
        "citations": [],
        "sources": None,  # no retrieval: metrics that need passages do not apply
        "seconds": time.perf_counter() - started,
    }


def with_retrieval(rag: Any, question: str) -> dict[str, Any]:
    """`rag.ask`, the default answering path of the package, recorded with the passages it was given."""
    answer = rag.ask(question)
    return {
        "answer": answer.text,
        "refused": answer.refused,
        "citations": list(answer.citations),
        "sources": [
            {"source": hit.source, "chunk_id": hit.chunk_id, "text": hit.text} for hit in answer.sources
        ],
        "seconds": answer.seconds,
    }


def answer(setup: Setup, question: str, *, llm: Any, rag: Any = None) -> dict[str, Any]:
    """One answer by `setup`: `rag` (a RAG over the index whose generator is `llm`) when it retrieves."""
    if setup.retrieval:
        return with_retrieval(rag, question)
    return closed_book(llm, question)
