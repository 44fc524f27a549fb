"""ragtune: question answering over your own documents.

    from ragtune import RAG

This module is the public façade: the names below are imported on first use, so `import ragtune`
stays cheap, and nothing inside the package imports this module (tests/test_architecture.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ragtune.core.quiet import silence_known_noise

silence_known_noise()  # before any library that prints on import (bitsandbytes) is loaded

_EXPORTS = {
    "RAG": "ragtune.rag.api",
    "RAGConfig": "ragtune.rag.config",
    "Answer": "ragtune.rag.generation.answer",
    "AnswerConfig": "ragtune.rag.generation.answer",
    "AnswerStream": "ragtune.rag.generation.answerer",
    "Conversation": "ragtune.rag.generation.answerer",
    "GeneratorConfig": "ragtune.rag.generation.llm",
    "LocalLLM": "ragtune.rag.generation.llm",
    "ReaderConfig": "ragtune.rag.config",
    "ChunkingConfig": "ragtune.rag.ingest.chunking",
    "EmbeddingConfig": "ragtune.indexes.embedding",
    "DenseConfig": "ragtune.indexes.dense",
    "RetrievalConfig": "ragtune.rag.config",
    "RagtuneError": "ragtune.core.errors",
    "InputError": "ragtune.core.errors",
    "IndexBusyError": "ragtune.core.errors",
    "ModelLoadError": "ragtune.core.errors",
    "StoreFormatError": "ragtune.core.errors",
    "IngestPlan": "ragtune.rag.ingest.ingestor",
    "IngestReport": "ragtune.rag.ingest.ingestor",
    "IngestEngineConfig": "ragtune.rag.ingest.ray_engine",
    "plan_ingest": "ragtune.rag.ingest.ingestor",
    "Chunk": "ragtune.core.schema",
    "Document": "ragtune.core.schema",
    "SearchHit": "ragtune.core.schema",
}

__all__ = [
    "RAG",
    "RAGConfig",
    "Answer",
    "AnswerConfig",
    "AnswerStream",
    "Conversation",
    "GeneratorConfig",
    "LocalLLM",
    "ReaderConfig",
    "ChunkingConfig",
    "EmbeddingConfig",
    "DenseConfig",
    "RetrievalConfig",
    "RagtuneError",
    "InputError",
    "IndexBusyError",
    "ModelLoadError",
    "StoreFormatError",
    "IngestPlan",
    "IngestReport",
    "IngestEngineConfig",
    "plan_ingest",
    "Chunk",
    "Document",
    "SearchHit",
]

if TYPE_CHECKING:
    from ragtune.core.errors import IndexBusyError, InputError, ModelLoadError, RagtuneError, StoreFormatError
    from ragtune.core.schema import Chunk, Document, SearchHit
    from ragtune.indexes.dense import DenseConfig
    from ragtune.indexes.embedding import EmbeddingConfig
    from ragtune.rag.api import RAG
    from ragtune.rag.config import RAGConfig, ReaderConfig, RetrievalConfig
    from ragtune.rag.generation.answer import Answer, AnswerConfig
    from ragtune.rag.generation.answerer import AnswerStream, Conversation
    from ragtune.rag.generation.llm import GeneratorConfig, LocalLLM
    from ragtune.rag.ingest.chunking import ChunkingConfig
    from ragtune.rag.ingest.ingestor import IngestPlan, IngestReport, plan_ingest
    from ragtune.rag.ingest.ray_engine import IngestEngineConfig


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ragtune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
