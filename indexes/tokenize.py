"""Lexical tokenization shared by the BM25 and TF-IDF indexes (documents and queries alike)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ragtune.core.errors import InputError

_WORD = re.compile(r"\w+", re.UNICODE)

# Function words that carry no topic. Kept short on purpose: words like "not", "first" or "may" can
# matter in a question, so only articles, pronouns, auxiliaries, conjunctions and prepositions are here.
ENGLISH_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "it's",
        "they",
        "them",
        "their",
        "theirs",
        "he",
        "him",
        "his",
        "she",
        "her",
        "hers",
        "we",
        "us",
        "our",
        "ours",
        "you",
        "your",
        "yours",
        "i",
        "me",
        "my",
        "mine",
        "who",
        "whom",
        "whose",
        "which",
        "what",
        "am",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "have",
        "has",
        "had",
        "having",
        "do",
        "does",
        "did",
        "doing",
        "will",
        "would",
        "shall",
        "should",
        "can",
        "could",
        "might",
        "must",
        "and",
        "or",
        "but",
        "nor",
        "so",
        "if",
        "then",
        "than",
        "as",
        "because",
        "while",
        "although",
        "though",
        "of",
        "in",
        "on",
        "at",
        "to",
        "from",
        "by",
        "with",
        "about",
        "into",
        "onto",
        "over",
        "under",
        "between",
        "through",
        "during",
        "before",
        "after",
        "above",
        "below",
        "up",
        "down",
        "out",
        "off",
        "again",
        "further",
        "there",
        "here",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "both",
        "each",
        "few",
        "more",
        "most",
        "other",
        "some",
        "such",
        "only",
        "own",
        "same",
        "too",
        "very",
        "just",
        "also",
    ]
)


@dataclass(frozen=True)
class TokenizerConfig:
    lowercase: bool = field(default=True, metadata={"help": "Fold case before matching."})
    stopwords: str | None = field(
        default="english",
        metadata={"help": "'english' drops common English function words; None keeps every word."},
    )

    def __post_init__(self) -> None:
        if self.stopwords not in (None, "english"):
            raise InputError(f"stopwords={self.stopwords!r}: use 'english' or None")


class Tokenizer:
    def __init__(self, config: TokenizerConfig | None = None):
        self.config = config or TokenizerConfig()
        self._stop = ENGLISH_STOPWORDS if self.config.stopwords == "english" else frozenset()

    def __call__(self, text: str) -> list[str]:
        if self.config.lowercase:
            text = text.lower()
        stop = self._stop
        return [t for t in _WORD.findall(text) if t not in stop]
