"""Plain records that cross module boundaries, and the deterministic ids they carry.

A document id comes from its source (absolute path, plus a record key for files holding several
records); a chunk id from the document id and the chunk's position; content hashes from the text and
the sorted metadata. Re-ingesting the same folder therefore reproduces the same ids and hashes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def document_id(source: str, record: str = "") -> str:
    """Stable id of the document read from `source` (and `record` within it, for JSON/JSONL files)."""
    key = source if not record else f"{source}#{record}"
    return _sha256(key)[:16]


def chunk_id(doc_id: str, position: int) -> str:
    return f"{doc_id}:{position:05d}"


def text_hash(text: str) -> str:
    return _sha256(text)


def content_hash(text: str, metadata: dict[str, Any] | None = None) -> str:
    """Hash of what a document says: its text and its metadata, keys sorted so order never matters."""
    meta = json.dumps(metadata or {}, sort_keys=True, ensure_ascii=False, default=str)
    return _sha256(text + "\x00" + meta)


@dataclass(frozen=True)
class Document:
    """One document as read from a source file (a file may hold several, e.g. JSONL records)."""

    source: str
    text: str
    record: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return document_id(self.source, self.record)

    @property
    def content_hash(self) -> str:
        return content_hash(self.text, self.metadata)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: the unit every index stores and every search returns."""

    id: str
    document_id: str
    position: int
    text: str

    @property
    def hash(self) -> str:
        return text_hash(self.text)


@dataclass(frozen=True)
class SearchHit:
    """One search result, with the evidence for why it was chosen.

    `score` is the score of the mode asked for (the fused RRF score in hybrid mode); `scores` and
    `ranks` hold each retriever's own score and 1-based rank for this chunk (absent where that
    retriever did not return it).
    """

    rank: int
    score: float
    chunk_id: str
    document_id: str
    source: str
    text: str
    position: int
    metadata: dict[str, Any]
    scores: dict[str, float]
    ranks: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": self.score,
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "source": self.source,
            "position": self.position,
            "text": self.text,
            "metadata": self.metadata,
            "scores": self.scores,
            "ranks": self.ranks,
        }
