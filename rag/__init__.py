"""ragtune: question answering over your own documents."""

from rag.api import RAG
from rag.config import RAGConfig, ReaderConfig, RetrievalConfig
from rag.errors import IndexBusyError, InputError, ModelLoadError, RagtuneError, StoreFormatError
from rag.ingest import IngestPlan, IngestReport, plan_ingest
from rag.schema import Chunk, Document, SearchHit

__all__ = [
    "RAG",
    "RAGConfig",
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
