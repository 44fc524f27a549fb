"""ragtune: question answering over your own documents.

Names are imported on first use, so `import rag.errors` (which the indexes need) stays cheap and
never pulls in the whole package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "RAG": "rag.api",
    "RAGConfig": "rag.config",
    "Answer": "rag.answer",
    "AnswerConfig": "rag.answer",
    "AnswerStream": "rag.answer",
    "Conversation": "rag.answer",
    "GeneratorConfig": "rag.llm",
    "LocalLLM": "rag.llm",
    "ReaderConfig": "rag.config",
    "RetrievalConfig": "rag.config",
    "RagtuneError": "rag.errors",
    "InputError": "rag.errors",
    "IndexBusyError": "rag.errors",
    "ModelLoadError": "rag.errors",
    "StoreFormatError": "rag.errors",
    "IngestPlan": "rag.ingest",
    "IngestReport": "rag.ingest",
    "plan_ingest": "rag.ingest",
    "Chunk": "rag.schema",
    "Document": "rag.schema",
    "SearchHit": "rag.schema",
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
    "RetrievalConfig",
    "RagtuneError",
    "InputError",
    "IndexBusyError",
    "ModelLoadError",
    "StoreFormatError",
    "IngestPlan",
    "IngestReport",
    "plan_ingest",
    "Chunk",
    "Document",
    "SearchHit",
]

if TYPE_CHECKING:
    from rag.answer import Answer, AnswerConfig, AnswerStream, Conversation
    from rag.api import RAG
    from rag.config import RAGConfig, ReaderConfig, RetrievalConfig
    from rag.errors import IndexBusyError, InputError, ModelLoadError, RagtuneError, StoreFormatError
    from rag.ingest import IngestPlan, IngestReport, plan_ingest
    from rag.llm import GeneratorConfig, LocalLLM
    from rag.schema import Chunk, Document, SearchHit


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
