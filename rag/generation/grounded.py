"""Answering modes that keep every claim inside the retrieved passages, and say which passage holds it.

- free: the model writes the answer; it is then verified, and cited by the system when it cites nothing.
- extractive: the answer is a passage sentence, quoted, with its best typed span (a number, date, name
  or value) as the support; sentences ranked by candidates.rank_sentences. The model's likelihood of a
  sentence as the reply was tried as a fifth feature and dropped: on 56 dev question-phases the top
  sentence was right 0.75 of the time at every weight tried (0 to 0.4).
- constrained: the model writes, but may only copy token sequences of the passages (CopyConstraint).
- grounded: extractive with a calibrated decision to abstain (the default for small models).

Small models invent facts and never abstain (issue 14); these modes make what they say checkable.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from ragtune.rag.generation.grounding.candidates import (
    RANK_FEATURES,
    Candidate,
    Similarity,
    feature_weights,
    rank_sentences,
)
from ragtune.rag.generation.grounding.spans import content_stems
from ragtune.rag.generation.grounding.verify import Support, citations, verify

MODES = ("auto", "free", "extractive", "constrained", "grounded")
# Below this size a model's own wording is not trusted by default (SmolLM2-135M invents figures).
SMALL_MODEL = 1_000_000_000
CALIBRATION_FILE = Path(__file__).resolve().parent / "grounding" / "calibration.json"
# What the abstention decision sees of the best sentence (and of the retrieval that found it), and how
# much of the question its passage and the sentence itself mention: an unanswerable question usually
# asks about something the passages never name, while sharing its topic words with them.
ABSTAIN_FEATURES = ("retrieval", "score", "similarity", "margin", "passage_coverage", "sentence_coverage")


@dataclass(frozen=True)
class Calibration:
    """How sentences are ranked and when the system abstains, fitted on the bundled suites' dev split
    (`bench/grounding.py --fit`): rank = rank_weights . RANK_FEATURES (candidates.py); abstain when
    sigmoid(bias + weights . ABSTAIN_FEATURES) < threshold."""

    rank_weights: tuple[float, ...] = feature_weights(lexical=1.0)  # unfitted: BM25 alone
    weights: tuple[float, ...] = (0.0,) * len(ABSTAIN_FEATURES)
    bias: float = 10.0  # unfitted: never abstain beyond "no candidate"
    threshold: float = 0.5
    fitted_on: str = "not fitted"

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> Calibration:
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            rank_weights=tuple(float(w) for w in data["rank_weights"]),
            weights=tuple(float(w) for w in data["weights"]),
            bias=float(data["bias"]),
            threshold=float(data["threshold"]),
            fitted_on=str(data.get("fitted_on", "")),
        )

    def confidence(self, features: tuple[float, ...]) -> float:
        z = self.bias + sum(w * x for w, x in zip(self.weights, features, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


@cache
def shipped_calibration() -> Calibration:
    """calibration.json, read once per process rather than once per answer."""
    return Calibration.load()


def calibration_for(min_confidence: float | None) -> Calibration:
    """The shipped calibration, with the user's threshold when one is set."""
    shipped = shipped_calibration()
    return shipped if min_confidence is None else replace(shipped, threshold=min_confidence)


@dataclass(frozen=True)
class Grounded:
    """What a mode decided: the answer text (with its [n]), the passages cited, and the evidence."""

    text: str
    citations: list[int]
    refused: bool
    reason: str
    verified: bool
    supports: list[Support] = field(default_factory=list)
    confidence: float | None = None


def resolve(mode: str, llm: Any) -> str:
    """The mode `auto` stands for with this model: grounded for small local models, free otherwise."""
    if mode != "auto":
        return mode
    parameters = getattr(getattr(llm, "info", None), "parameters", None)
    if parameters is None:
        return "free"  # a model we cannot measure: keep its own answers, verified
    return "grounded" if parameters < SMALL_MODEL else "free"


def checked(text: str, passages: list[str], refused: bool, refusal_reason: str) -> Grounded:
    """A written answer verified against the passages; the system cites when the model did not."""
    if refused:
        return Grounded(text, [], True, refusal_reason, False)
    written = citations(text)
    verification = verify(text, passages, written)  # a citation of a missing passage fails it here
    cited = [n for n in written if 1 <= n <= len(passages)]
    if not written and verification.verified:
        cited = [s.n for s in verification.supports]
    return Grounded(text, cited, False, verification.reason, verification.verified, verification.supports)


def coverage(question: str, passage: str, sentence: str) -> tuple[float, float]:
    """The share of the question's content words (stems) that `passage` holds, and that `sentence` does."""
    asked = set(content_stems(question))
    if not asked:
        return 0.0, 0.0
    in_passage, in_sentence = asked & set(content_stems(passage)), asked & set(content_stems(sentence))
    return len(in_passage) / len(asked), len(in_sentence) / len(asked)


def features(
    retrieval: float,
    best_features: tuple[float, ...],
    best_score: float,
    next_score: float | None,
    covered: tuple[float, float],
) -> tuple[float, ...]:
    """ABSTAIN_FEATURES of a ranking: the best sentence's RANK_FEATURES and score, the runner-up's score
    (None when the best sentence is the only one: its margin is then its whole score), and `coverage`
    of the question by the best sentence's passage and by the sentence."""
    margin = best_score - next_score if next_score is not None else best_score
    return (retrieval, best_score, best_features[RANK_FEATURES.index("similarity")], margin, *covered)


MAX_ANSWER_CHARS = 240


def quoted(best: Candidate) -> str:
    """The answer shown for a span: its sentence, quoted whole (on the bundled suites' dev split the top
    span's sentence held the gold answer 0.67 of the time, the span alone 0.45: the sentence carries the
    context that makes a bare figure right), cut to a window around the span when the sentence is long."""
    sentence = " ".join(best.sentence.split())
    if len(sentence) <= MAX_ANSWER_CHARS:
        return sentence
    at = max(sentence.find(" ".join(best.text.split())), 0)
    half = (MAX_ANSWER_CHARS - len(best.text)) // 2
    start, end = max(0, at - half), min(len(sentence), at + len(best.text) + half)
    # Cut inward, at word boundaries, so the window never grows past the limit.
    if start > 0:
        start = min(sentence.find(" ", start) + 1 or at, at)
    if end < len(sentence):
        end = max(sentence.rfind(" ", 0, end), at + len(best.text))
    return ("…" if start > 0 else "") + sentence[start:end] + ("…" if end < len(sentence) else "")


def _span_answer(best: Candidate, confidence: float | None) -> Grounded:
    support = Support(best.n, best.text, best.start, best.end)
    return Grounded(
        f"{quoted(best)} [{best.n}]",
        [best.n],
        False,
        f"quoted from passage [{best.n}]",
        True,
        [support],
        confidence,
    )


def extractive(
    question: str,
    passages: list[str],
    refusal: str,
    retrieval: float,
    calibration: Calibration,
    similarity: Similarity | None = None,
    abstain: bool = False,
) -> Grounded:
    """The best-ranked passage sentence, quoted, with its best span as the support; with `abstain`, a
    refusal when the calibrated confidence in it is below the threshold."""
    ranked = rank_sentences(question, passages, calibration.rank_weights, similarity)
    if not ranked:
        return Grounded(refusal, [], True, "no passage sentence shares a word with the question", False)
    best, runner_up = ranked[0], ranked[1] if len(ranked) > 1 else None
    passage = passages[best.n - 1]
    covered = coverage(question, passage, passage[best.start : best.end])
    confidence = calibration.confidence(
        features(retrieval, best.features, best.score, runner_up.score if runner_up else None, covered)
    )
    if abstain and confidence < calibration.threshold:
        reason = (
            f"the best sentence is not a confident answer ({confidence:.2f} < {calibration.threshold:.2f})"
        )
        return Grounded(refusal, [], True, reason, False, [], confidence)
    return _span_answer(best.support, confidence)


def constrained(passages: list[str], messages: list[dict[str, str]], llm: Any, refusal: str) -> Grounded:
    """The model writes, copying only from the passages; an answer that still fails verification (a
    claim split across passages, a citation of the wrong one) is declined."""
    from ragtune.rag.generation.grounding.constrained import copy_constraint

    constraint = copy_constraint(llm.tokenizer, passages)
    text = llm.generate(messages, logits_processor=constraint).strip()
    result = checked(text, passages, not text, "the model copied nothing from the passages")
    if result.refused or result.verified:
        return result
    return Grounded(refusal, [], True, f"not verified: {result.reason}", False)


def grounded(
    question: str,
    passages: list[str],
    refusal: str,
    retrieval: float,
    calibration: Calibration,
    similarity: Similarity | None = None,
) -> Grounded:
    """The combination: the extractive answer, verified by construction, with calibrated abstention.
    Copy-constrained writing for phrase questions was part of it and was dropped: on heron's test split
    the constrained mode was right 0.07 of the time, and on the sample corpus it copied one title over
    and over ("2009 survey ... [1] 2009 survey ..."), which verification cannot reject."""
    return extractive(question, passages, refusal, retrieval, calibration, similarity, abstain=True)


def answer(
    mode: str,
    question: str,
    passages: list[str],
    messages: list[dict[str, str]],
    llm: Any,
    refusal: str,
    retrieval: float,
    calibration: Calibration | None = None,
    similarity: Similarity | None = None,
) -> Grounded:
    """Answer in `mode` (not "free" or "auto": those write with the model, then `checked`).
    `similarity` (question, texts -> cosines) is the embedding feature of the sentence ranking."""
    calibration = calibration or shipped_calibration()
    if mode == "extractive":
        return extractive(question, passages, refusal, retrieval, calibration, similarity)
    if mode == "constrained":
        return constrained(passages, messages, llm, refusal)
    if mode == "grounded":
        return grounded(question, passages, refusal, retrieval, calibration, similarity)
    raise ValueError(f"answer mode {mode!r} is not a grounded mode")
