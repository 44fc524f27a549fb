"""Answering from retrieved chunks: which chunks are relevant enough, the numbered prompt, citations,
refusals, and the question a follow-up is searched with (answerer.py puts them together).

The model is only reached through `LLM.generate` / `LLM.stream`, so everything here is testable with a
tiny model or a fake one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ragtune.core.errors import InputError
from ragtune.core.schema import SearchHit
from ragtune.rag.generation.grounding.verify import Support
from ragtune.rag.generation.grounding.verify import citations as cited_numbers

SYSTEM_PROMPT = (
    "Answer from the context only. Cite passages as [1], [2]. "
    "If the context lacks the answer, say: I don't know."
)
INSTRUCTION = "Answer in one or two sentences."
REFUSAL = "I don't know: the answer is not in the indexed documents."
# Phrases with which the model says the context lacks the answer (the system prompt asks it for one).
REFUSAL_PATTERN = re.compile(
    r"\b(i do ?n[o']t know|i don't have|not in the (documents|context|passages)|"
    r"(context|documents|passages) (does|do) not (contain|say|mention)|no information)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class AnswerConfig:
    """How a question becomes a prompt, and when the answer is a refusal instead."""

    k: int = field(default=3, metadata={"help": "Chunks retrieved per question."})
    mode: str | None = field(default=None, metadata={"help": "Retriever; None uses the index's default."})
    min_scores: dict[str, float] = field(
        default_factory=lambda: {"dense": 0.3},
        metadata={
            "help": "Relevance thresholds per retriever (dense: cosine similarity; bm25: Okapi score; "
            "tfidf: cosine). A chunk is relevant when every thresholded retriever that took part in the "
            "search scored it at least this much; with no relevant chunk the answer is a refusal and "
            "the model is not called. On the sample corpus all-MiniLM-L6-v2 gives answerable questions "
            "a best chunk of 0.38-0.67 and off-topic ones 0.05-0.20; BM25 scores separated them poorly."
        },
    )
    max_context_tokens: int = field(
        default=600,
        metadata={
            "help": "Token budget for the numbered passages; later ones are cut. Small models lose the "
            "question in long contexts: SmolLM2-135M answered the sample questions best at ~600."
        },
    )
    history_turns: int = field(
        default=3, metadata={"help": "Earlier question/answer pairs kept in the prompt."}
    )
    system_prompt: str = field(default=SYSTEM_PROMPT, metadata={"help": "Instructions given to the model."})
    instruction: str = field(default=INSTRUCTION, metadata={"help": "Appended after the question."})
    refusal: str = field(default=REFUSAL, metadata={"help": "The answer when no chunk is relevant."})
    # auto by default: on the suites' test split the default 135M model's own answers were wrong or
    # invented 0.78 of the time (issue 14); small models quote instead, larger ones keep writing.
    answer_mode: str = field(
        default="auto",
        metadata={
            "help": "free: the model writes the answer (then it is verified); extractive: the passage "
            "sentence that best answers, quoted, with its span; constrained: the model may only copy from the "
            "passages; grounded: extractive + calibrated abstention; "
            "auto: grounded for models under 1B parameters, free otherwise.",
            "choices": ("auto", "free", "extractive", "constrained", "grounded"),
        },
    )

    min_confidence: float | None = field(
        default=None,
        metadata={
            "help": "grounded mode: decline when the calibrated confidence that the quoted sentence "
            "answers is below this (0 to 1); not set: the threshold fitted on the bundled suites' dev "
            "split. Higher gives fewer wrong answers and more declined ones: on their test split 0.8 "
            "cut hallucination from 0.22 to 0.05 and accuracy from 0.61 to 0.40."
        },
    )

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InputError(f"k={self.k}: must be >= 1")
        modes = AnswerConfig.__dataclass_fields__["answer_mode"].metadata["choices"]
        if self.answer_mode not in modes:
            raise InputError(f"answer_mode={self.answer_mode!r}: use one of {', '.join(modes)}")
        if self.min_confidence is not None and not 0 <= self.min_confidence <= 1:
            raise InputError(f"min_confidence={self.min_confidence}: must be between 0 and 1")
        if self.history_turns < 0:
            raise InputError(f"history_turns={self.history_turns}: must be >= 0")
        if self.max_context_tokens < 16:
            raise InputError(f"max_context_tokens={self.max_context_tokens}: must be >= 16")
        unknown = set(self.min_scores) - {"bm25", "tfidf", "dense"}
        if unknown:
            raise InputError(f"min_scores for {sorted(unknown)}: only bm25, tfidf and dense have scores")
        if not all(math.isfinite(v) for v in self.min_scores.values()):
            raise InputError(f"min_scores={self.min_scores}: thresholds must be finite numbers")


class LLM(Protocol):
    """What answering needs from a model. `context_window`, `max_new_tokens` and
    `count_prompt_tokens(messages)` are read when present (LocalLLM has them); a model without them
    is taken to have a 2,048-token window and to count a prompt as its texts plus a few tokens each."""

    def count_tokens(self, text: str) -> int: ...

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int | None = None) -> str: ...

    def stream(self, messages: list[dict[str, str]], max_new_tokens: int | None = None) -> Iterator[str]: ...


@dataclass(frozen=True)
class Answer:
    """An answer, the numbered passages it was given (`sources[n-1]` is passage [n]), and which of them
    it cited."""

    question: str
    text: str
    sources: list[SearchHit]
    citations: list[int]
    refused: bool
    reason: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what was left out to fit the model's context
    mode: str = "free"  # the answering mode that produced it (AnswerConfig.answer_mode, auto resolved)
    verified: bool = False  # every number, date and name of the answer is in the passage it cites
    supports: list[Support] = field(default_factory=list)  # per cited passage: the span that holds it
    # grounded modes: the calibrated probability that the quoted sentence answers (None: not estimated)
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "refused": self.refused,
            "reason": self.reason,
            "mode": self.mode,
            "verified": self.verified,
            "confidence": self.confidence,
            "citations": self.citations,
            "supports": [{"n": s.n, "span": s.span, "start": s.start, "end": s.end} for s in self.supports],
            "sources": [{"n": n, **hit.to_dict()} for n, hit in enumerate(self.sources, 1)],
            "seconds": self.seconds,
            "notes": self.notes,
        }


def verdict(answer: Answer) -> str:
    """One line on how far to trust the answer: what it was verified against, or why it was declined."""
    if answer.refused:
        return f"declined ({answer.mode}): {answer.reason}" if answer.reason else f"declined ({answer.mode})"
    if answer.verified:
        cited = ", ".join(f"[{n}]" for n in answer.citations)
        return f"verified against {cited} ({answer.mode})"
    if not answer.citations:
        return f"not verified ({answer.mode}): the answer cites no passage; check it against the sources"
    return f"not verified ({answer.mode}): {answer.reason}; check it against the sources"


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


def relevant(hits: list[SearchHit], min_scores: dict[str, float]) -> list[SearchHit]:
    """The hits every thresholded retriever that took part in the search scored at or above its
    threshold. A hit missing from such a retriever's candidates fails it: it ranked below them all."""
    took_part = {kind for hit in hits for kind in hit.scores}
    judges = {kind: floor for kind, floor in min_scores.items() if kind in took_part}
    return [
        hit
        for hit in hits
        if all(hit.scores.get(kind, float("-inf")) >= floor for kind, floor in judges.items())
    ]


def citations(text: str, passages: int) -> list[int]:
    """Passage numbers cited as [n] in `text`, first-cited first; numbers with no passage are ignored."""
    return [n for n in cited_numbers(text) if 1 <= n <= passages]


def is_refusal(text: str) -> bool:
    return bool(REFUSAL_PATTERN.search(text))


def _passage_heading(n: int, hit: SearchHit) -> str:
    title = hit.metadata.get("title") or hit.source.rsplit("/", 1)[-1]
    return f"[{n}] {title}"


def fit_passages(hits: list[SearchHit], budget: int, count_tokens: Callable[[str], int]) -> list[str]:
    """Numbered passages, best first, cut so their tokens stay within `budget` (the last one that does
    not fit whole is shortened by words; later ones are dropped)."""
    passages: list[str] = []
    used = 0
    for n, hit in enumerate(hits, 1):
        text = f"{_passage_heading(n, hit)}\n{' '.join(hit.text.split())}"
        cost = count_tokens(text)
        if used + cost > budget:
            words = text.split(" ")
            keep = int(len(words) * (budget - used) / max(cost, 1))
            if keep >= 8:
                passages.append(" ".join(words[:keep]) + " …")
            break
        passages.append(text)
        used += cost
    return passages


def build_messages(
    question: str, passages: list[str], history: list[Turn], config: AnswerConfig
) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": config.system_prompt}]
    for turn in history[-config.history_turns :] if config.history_turns else []:
        messages.append({"role": "user", "content": turn.question})
        messages.append({"role": "assistant", "content": turn.answer})
    context = "\n\n".join(passages)
    messages.append(
        {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}\n{config.instruction}"}
    )
    return messages


def prompt_tokens(llm: LLM, messages: list[dict[str, str]]) -> int:
    """The tokens the model will read for `messages`: its own count when it has one, else the texts'
    tokens plus a few per message for the chat template's role markers."""
    count = getattr(llm, "count_prompt_tokens", None)
    if count is not None:
        return count(messages)
    return sum(llm.count_tokens(m["content"]) + 4 for m in messages)


def search_query(question: str, history: list[Turn], config: AnswerConfig) -> str:
    """What to retrieve with: a follow-up ("and its default?") is searched together with the previous
    question, which usually names the subject it leaves out."""
    if history and config.history_turns:
        return f"{history[-1].question} {question}"
    return question
