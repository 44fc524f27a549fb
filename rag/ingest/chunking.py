"""Splitting documents into chunks with LangChain's recursive splitter, preferring paragraph, line and
sentence boundaries before falling back to words."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from ragtune.core.errors import InputError
from ragtune.core.schema import Chunk, Document, chunk_id

# Tried in order: a chunk is cut at the coarsest boundary that keeps it under the size limit.
_SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


@dataclass(frozen=True)
class ChunkingConfig:
    chunk_size: int = field(default=1000, metadata={"help": "Largest chunk, in characters."})
    chunk_overlap: int = field(default=150, metadata={"help": "Characters shared by neighbouring chunks."})

    def __post_init__(self) -> None:
        if self.chunk_size < 50:
            raise InputError(f"chunk_size={self.chunk_size}: must be at least 50 characters")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise InputError(
                f"chunk_overlap={self.chunk_overlap}: must be >= 0 and below chunk_size={self.chunk_size}"
            )


class Chunker:
    def __init__(self, config: ChunkingConfig | None = None):
        self.config = config or ChunkingConfig()

    @cached_property
    def _splitter(self):
        # Imported here: langchain is only needed when documents are being (re)indexed.
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        return RecursiveCharacterTextSplitter(
            chunk_size=self.config.chunk_size,
            chunk_overlap=self.config.chunk_overlap,
            separators=_SEPARATORS,
            keep_separator="end",
            strip_whitespace=True,
        )

    def split(self, document: Document) -> list[Chunk]:
        doc_id = document.id
        pieces = [p for p in self._splitter.split_text(document.text) if p.strip()]
        return [Chunk(chunk_id(doc_id, i), doc_id, i, text) for i, text in enumerate(pieces)]
