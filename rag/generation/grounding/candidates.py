"""The passages' sentences ranked as answers to a question, and the typed spans inside them.

An answer in the extractive modes is a passage sentence, quoted, with a typed span (a number, date, name
or value) as its support. Sentences are ranked by a linear score over four features (RANK_FEATURES):
BM25 overlap with the question, embedding similarity to it, the retrieval rank of the passage, and how
well the sentence's best span fits the question's answer type. The weights are fitted on the bundled
suites' dev split (bench/grounding.py --fit); on it, this ranking put a sentence holding the gold first
0.835 of the time (5-fold cross-validation, folds by question), BM25 alone 0.71.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ragtune.rag.generation.grounding.spans import (
    STOP_WORDS,
    answer_type,
    content_stems,
    sentences,
    stem,
    token_spans,
    typed_spans,
)

# How well a span kind fits each answer type; "sentence": a sentence with no typed span supports itself.
_FIT = {
    "number": {"number": 1.0, "value": 0.4, "date": 0.3, "name": 0.2, "sentence": 0.3},
    "date": {"date": 1.0, "number": 0.5, "value": 0.3, "name": 0.3, "sentence": 0.3},
    "name": {"name": 1.0, "value": 0.6, "number": 0.2, "date": 0.2, "sentence": 0.3},
    "value": {"value": 1.0, "number": 0.8, "name": 0.8, "date": 0.4, "sentence": 0.3},
    "phrase": {"value": 0.7, "name": 0.7, "number": 0.7, "date": 0.7, "sentence": 1.0},
}
# The unit a question asks for: "how long" wants a duration, "how much RAM" a size. Numbers with
# another unit (or none) are kept, with this weight.
_OTHER_UNIT = 0.6
_WANTED_UNITS = (
    (
        re.compile(r"\bhow long\b|\bhow much time\b|\bduration\b|\blatency\b|\btime\b"),
        re.compile(r"\b(?:ms|s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?|days?|weeks?|months?|years?)$"),
    ),
    (
        re.compile(r"\b(?:ram|memory|vram|disk|storage|file size|how large|how big)\b"),
        re.compile(r"(?<![A-Za-z])(?:[KMGT]i?B|kb|mb|gb|tb|bytes?)$", re.IGNORECASE),
    ),
)

RANK_FEATURES = ("lexical", "similarity", "passage", "type_fit")


def feature_weights(**weights: float) -> tuple[float, ...]:
    """Rank weights by feature name, 0 for those not named: feature_weights(lexical=1.0) is BM25 alone."""
    unknown = set(weights) - set(RANK_FEATURES)
    if unknown:
        raise ValueError(f"unknown rank features {sorted(unknown)}; known: {RANK_FEATURES}")
    return tuple(float(weights.get(name, 0.0)) for name in RANK_FEATURES)


Similarity = Callable[[str, Sequence[str]], np.ndarray]  # question, texts -> cosine of each text


@dataclass(frozen=True)
class Candidate:
    """A span of passage n (1-based) that may answer the question: text == passages[n-1][start:end]."""

    n: int
    text: str
    start: int
    end: int
    sentence: str
    kind: str
    score: float


@dataclass(frozen=True)
class RankedSentence:
    """Sentence passages[n-1][start:end] with its RANK_FEATURES, rank score, and best span (`support`:
    the typed span that fits the question best, or the sentence itself)."""

    n: int
    start: int
    end: int
    features: tuple[float, ...]
    score: float
    support: Candidate


def _bm25(query: set[str], docs: list[list[str]]) -> list[float]:
    """Okapi BM25 of each sentence (a list of stems) for the query stems, idf over these sentences."""
    n = len(docs)
    df = Counter(s for doc in docs for s in set(doc))
    avg = sum(len(doc) for doc in docs) / max(n, 1) or 1.0
    scores = []
    for doc in docs:
        tf = Counter(doc)
        norm = 1.2 * (0.25 + 0.75 * len(doc) / avg)
        scores.append(
            sum(
                math.log(1 + (n - df[s] + 0.5) / (df[s] + 0.5)) * tf[s] * 2.2 / (tf[s] + norm)
                for s in query
                if s in tf
            )
        )
    return scores


def _strip_question_words(passage: str, a: int, b: int, kind: str, asked: set[str]) -> tuple[int, int] | None:
    """Trim words of the question from the ends of span [a, b); None when one is left inside it.
    Identifiers and quoted values are not cut up: "heron-7b-docs" is not an answer "7b-docs". A value
    is kept whole when some of it is new ("/etc/systemd/network/dhcp.network" answers a question about
    systemd and DHCP), and dropped when the question names all of it."""
    words = [(t, s, e) for t, s, e in token_spans(passage[a:b])]
    if kind == "value":
        return None if all(stem(t) in asked for t, _, _ in words) else (a, b)
    while words and stem(words[0][0]) in asked:
        words.pop(0)
    while words and stem(words[-1][0]) in asked:
        words.pop()
    if not words or any(stem(t) in asked for t, _, _ in words):
        return None
    if not any(t not in STOP_WORDS for t, _, _ in words):
        return None
    if words[0][1] == 0 and words[-1][2] == b - a:
        return a, b  # untouched: keep units and punctuation the tokens leave out ("64 %")
    return a + words[0][1], a + words[-1][2]


def spans_in(question: str, passage: str, n: int, a: int, b: int, share: float = 1.0) -> list[Candidate]:
    """The typed spans of sentence passage[a:b] that may answer `question`, unordered, each scored by
    `share` (the sentence's score), its fit to the answer type and how close it stands to a question
    word. Spans made of question words are left out: the answer is what the question lacks."""
    asked = set(content_stems(question))
    kind_fit = _FIT[answer_type(question)]
    lowered = question.lower()
    unit_wanted = next((unit for asks, unit in _WANTED_UNITS if asks.search(lowered)), None)
    sentence = passage[a:b]
    words = token_spans(sentence)
    starts = [s for _, s, _ in words]
    hits = [j for j, (t, _, _) in enumerate(words) if stem(t) in asked]
    found = []
    for s, e, kind in typed_spans(passage, a, b):
        trimmed = _strip_question_words(passage, s, e, kind, asked)
        if trimmed is None:
            continue
        s, e = trimmed
        j = max(bisect_right(starts, s - a) - 1, 0)
        distance = min((abs(j - h) for h in hits), default=10)
        score = share * kind_fit[kind] / (1 + 0.1 * distance)
        if unit_wanted is not None and kind == "number" and not unit_wanted.search(passage[s:e]):
            score *= _OTHER_UNIT
        found.append(Candidate(n, passage[s:e], s, e, sentence, kind, score))
    return found


def _units(question: str, passages: list[str]) -> tuple[list[tuple[int, int, int]], list[float]]:
    """Every sentence (n, start, end) of the passages with its BM25 score for the question's content
    words (idf over these sentences). A sentence that asks something (a FAQ's question, a prompt example
    in a code block) echoes the user's words without answering them: it scores 0."""
    units = [(n, a, b) for n, p in enumerate(passages, 1) for a, b in sentences(p)]
    stems = [content_stems(passages[n - 1][a:b]) for n, a, b in units]
    scores = _bm25(set(content_stems(question)), stems)
    return units, [
        0.0 if "?" in passages[n - 1][a:b] else s for (n, a, b), s in zip(units, scores, strict=True)
    ]


def rank_sentences(
    question: str, passages: list[str], weights: Sequence[float], similarity: Similarity | None = None
) -> list[RankedSentence]:
    """The passages' sentences that share a content word with the question, best first by
    weights . RANK_FEATURES. Without `similarity` that feature is 0 for every sentence."""
    units, lexical = _units(question, passages)
    best = max(lexical, default=0.0)
    if best <= 0:
        return []
    keep = [i for i, s in enumerate(lexical) if s > 0]
    texts = [passages[units[i][0] - 1][units[i][1] : units[i][2]] for i in keep]
    cosines = similarity(question, texts) if similarity is not None else np.zeros(len(keep))
    phrase = answer_type(question) == "phrase"
    ranked = []
    for i, cosine in zip(keep, cosines, strict=True):
        n, a, b = units[i]
        spans = [] if phrase else spans_in(question, passages[n - 1], n, a, b)
        top = max(spans, key=lambda c: (c.score, -c.start), default=None)
        support = top or Candidate(n, passages[n - 1][a:b], a, b, passages[n - 1][a:b], "sentence", 0.0)
        fit = max((c.score for c in spans), default=0.0)
        features = (lexical[i] / best, float(cosine), 1.0 / n, fit)
        score = float(sum(w * x for w, x in zip(weights, features, strict=True)))
        ranked.append(RankedSentence(n, a, b, features, score, support))
    return sorted(ranked, key=lambda r: (-r.score, r.n, r.start))
