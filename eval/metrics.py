"""Scoring one answer against a question's gold, and the per-question values each metric averages.

Matching is on normalised text (lower case, punctuation and articles removed, whitespace collapsed,
thousands separators ignored) and on whole tokens: gold "4" is not found in "40", "Lake Mira" is found in
"It nests at Lake Mira [1]." A refusal is never correct, whatever words it happens to contain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# One normalisation for scoring and for grounding, so a span the system verifies is matched the same
# way the metric matches it: lower case, NFKC, punctuation and articles gone, "2,175,601" = "2175601".
from ragtune.rag.generation.grounding.spans import normalise

METRICS = (
    "accuracy",
    "exact_match",
    "f1",
    "hallucination",
    "wrong_answer",
    "invented_answer",
    "abstention",
    "false_abstention",
    "stale",
    "attribution",
    "recall_at_k",
    "seconds",
)


def contains_gold(answer: str, golds: Iterable[str]) -> bool:
    """Some gold (or alias) occurs in the answer as whole tokens, after normalisation."""
    padded = f" {normalise(answer)} "
    return any((gold := normalise(g)) and f" {gold} " in padded for g in golds)


def exact_match(answer: str, golds: Iterable[str]) -> bool:
    said = normalise(answer)
    return any(said == normalise(g) for g in golds)


def token_f1(answer: str, golds: Iterable[str]) -> float:
    """Best token F1 of the answer against any gold (SQuAD-style: bags of normalised tokens)."""
    said = normalise(answer).split()
    best = 0.0
    for gold in golds:
        wanted = normalise(gold).split()
        overlap = sum((Counter(said) & Counter(wanted)).values())
        if overlap:
            precision, recall = overlap / len(said), overlap / len(wanted)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


@dataclass(frozen=True)
class Scored:
    """One answer scored. None means the value does not apply to this question, phase or setup:
    `stale` only for changed questions in phase v2, `attributed` and `retrieved_gold_doc` only for
    setups that retrieve (and questions with a gold / a supporting document)."""

    correct: bool
    exact: bool
    f1: float
    refused: bool
    answerable: bool
    stale: bool | None
    attributed: bool | None
    retrieved_gold_doc: bool | None
    seconds: float | None = None


def _cited_texts(record: dict[str, Any]) -> list[str]:
    sources = record.get("sources") or []
    texts = []
    for n in record.get("citations") or []:
        if isinstance(n, int) and 1 <= n <= len(sources):
            texts.append(str(sources[n - 1].get("text", "")))
    return texts


def _retrieved(record: dict[str, Any], doc: str) -> bool:
    wanted = "/" + doc.replace("\\", "/").lstrip("/")
    return any(
        ("/" + str(s.get("source", "")).replace("\\", "/")).endswith(wanted) for s in record["sources"]
    )


def score(record: dict[str, Any], question: Any, phase: str) -> Scored:
    """Score an answers.jsonl record (`answer`, `refused`, `citations`, `sources`, `seconds`) for
    `question` in `phase`. `sources` is None for a setup without retrieval."""
    answer = str(record.get("answer") or "")
    refused = bool(record.get("refused")) or not answer.strip()
    golds = question.golds(phase)
    answerable = bool(golds)
    correct = answerable and not refused and contains_gold(answer, golds)
    stale = None
    if phase == "v2" and question.kind == "changed":
        stale = not refused and contains_gold(answer, question.golds("v1")) and not correct
    retrieves = record.get("sources") is not None
    attributed = None
    if retrieves and answerable:
        attributed = correct and any(contains_gold(t, golds) for t in _cited_texts(record))
    found_doc = None
    if retrieves and answerable and question.doc:
        found_doc = _retrieved(record, question.doc)
    seconds = record.get("seconds")
    return Scored(
        correct=correct,
        exact=answerable and not refused and exact_match(answer, golds),
        f1=token_f1(answer, golds) if answerable and not refused else 0.0,
        refused=refused,
        answerable=answerable,
        stale=stale,
        attributed=attributed,
        retrieved_gold_doc=found_doc,
        seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
    )


def summarise(scored: Sequence[Scored]) -> dict[str, list[float]]:
    """Per metric, one value per question it applies to (an empty list: it applies to none).

    Over answerable questions: accuracy, exact_match, f1, wrong_answer, false_abstention, attribution;
    over unanswerable (and removed) ones: abstention, invented_answer; over all: hallucination
    (answered and not correct) and seconds; stale over changed questions in v2; recall_at_k over
    answerable questions with a supporting document, for setups that retrieve.
    """
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    for s in scored:
        answered_wrong = float(not s.refused and not s.correct)
        values["hallucination"].append(answered_wrong)
        if s.answerable:
            values["accuracy"].append(float(s.correct))
            values["exact_match"].append(float(s.exact))
            values["f1"].append(s.f1)
            values["wrong_answer"].append(answered_wrong)
            values["false_abstention"].append(float(s.refused))
        else:
            values["abstention"].append(float(s.refused))
            values["invented_answer"].append(float(not s.refused))
        for metric, value in (
            ("stale", s.stale),
            ("attribution", s.attributed),
            ("recall_at_k", s.retrieved_gold_doc),
            ("seconds", s.seconds),
        ):
            if value is not None:
                values[metric].append(float(value))
    return values
