"""The setups an evaluation compares, and how each one answers a question.

A setup is a model (the base, or the base plus a LoRA adapter) with or without retrieval, and with
retrieval an answering mode (AnswerConfig.answer_mode). Every setup answers the same questions with the
same decoding and seed, so differences come from what the model knows, what it is shown and how its
answer is made. New setups plug in by adding a `Setup` to `SETUPS`; a run without --setups measures
`DEFAULT_SETUPS`, the others are asked for by name.

Adapters are trained on the documents only, never on the suite's questions: "docs" by continued
pre-training on the index's chunks, "raft" on RAFT examples (ragtune.finetune.raft) whose questions are
generated from those chunks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ragtune.rag.generation.answer import is_refusal
from ragtune.rag.generation.answerer import generate_many

CLOSED_BOOK_PROMPT = (
    "Answer the question in a few words from what you know. If you do not know the answer, "
    "reply exactly: I don't know."
)
RETRAINED = "-retrained"
ADAPTERS = ("docs", "raft")


@dataclass(frozen=True)
class Setup:
    """name: as written in every output; retrieval: answer with `rag.ask` (passages in the prompt)
    instead of from the model alone; finetuned: the model carries an adapter trained on the documents;
    answer_mode: how `rag.ask` makes the answer (AnswerConfig.answer_mode; retrieval setups only);
    adapter: which adapter a fine-tuned setup carries ("docs": continued pre-training on the chunks,
    "raft": RAFT examples generated from the chunks)."""

    name: str
    retrieval: bool
    finetuned: bool
    help: str
    answer_mode: str = "free"
    adapter: str = "docs"

    def __post_init__(self) -> None:
        if self.adapter not in ADAPTERS:
            raise ValueError(f"setup {self.name}: adapter {self.adapter!r} is not one of {ADAPTERS}")

    def adapter_folder(self, phase: str) -> str | None:
        """The adapter's folder under out/adapters when trained on `phase`'s documents ("v1", "raft-v1"),
        None without fine-tuning. It is also the key of the loaded model, one per kind and phase."""
        if not self.finetuned:
            return None
        return phase if self.adapter == "docs" else f"{self.adapter}-{phase}"


def _rag(name: str, mode: str, help: str, adapter: str | None = None) -> Setup:
    return Setup(name, True, adapter is not None, help, answer_mode=mode, adapter=adapter or "docs")


# rag and ft+rag answer in "free" mode whatever AnswerConfig's default is, so they keep measuring the
# model writing its own answer; the other modes are setups of their own.
SETUPS: dict[str, Setup] = {
    s.name: s
    for s in (
        Setup("closed-book", retrieval=False, finetuned=False, help="the base model alone"),
        _rag("rag", "free", "the base model with retrieved passages, writing its own answer"),
        Setup("ft", retrieval=False, finetuned=True, help="base + adapter trained on the documents"),
        _rag("ft+rag", "free", "the docs adapter with retrieved passages, writing its own answer", "docs"),
        _rag("rag-extractive", "extractive", "rag answering with the best passage span"),
        _rag("rag-constrained", "constrained", "rag with copy-only decoding from the passages"),
        _rag("rag-grounded", "grounded", "rag: the extractive answer + calibrated abstention"),
        _rag("ft+rag-grounded", "grounded", "the docs adapter with the grounded mode", "docs"),
        _rag(
            "raft+rag", "free", "an adapter trained on RAFT examples of the documents, free answers", "raft"
        ),
        _rag("raft+rag-grounded", "grounded", "the RAFT adapter with the grounded mode", "raft"),
    )
}
DEFAULT_SETUPS = ("closed-book", "rag", "ft", "ft+rag")


def setups_help() -> str:
    """Every setup with what it measures, for --setups' help: "rag (the base model with ...)"."""
    return "; ".join(f"{s.name} ({s.help})" for s in SETUPS.values())


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
    """A `rag.ask` answer, recorded with the passages it was given, the mode that made it and whether it
    was verified against the passage it cites."""
    return {
        "answer": answer.text,
        "refused": answer.refused,
        "mode": getattr(answer, "mode", None),
        "verified": getattr(answer, "verified", None),
        "reason": getattr(answer, "reason", ""),
        "supports": [{"n": s.n, "span": s.span} for s in getattr(answer, "supports", [])],
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
