"""Lexical tokenization shared by the BM25 and TF-IDF indexes (documents and queries alike)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from rag.errors import InputError

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class TokenizerConfig:
    lowercase: bool = field(default=True, metadata={"help": "Fold case before matching."})
    stopwords: str | None = field(
        default="english",
        metadata={"help": "'english' drops scikit-learn's English stop words; None keeps every word."},
    )

    def __post_init__(self) -> None:
        if self.stopwords not in (None, "english"):
            raise InputError(f"stopwords={self.stopwords!r}: use 'english' or None")


class Tokenizer:
    def __init__(self, config: TokenizerConfig | None = None):
        self.config = config or TokenizerConfig()
        self._stop = frozenset(ENGLISH_STOP_WORDS) if self.config.stopwords == "english" else frozenset()

    def __call__(self, text: str) -> list[str]:
        if self.config.lowercase:
            text = text.lower()
        stop = self._stop
        return [t for t in _WORD.findall(text) if t not in stop]
