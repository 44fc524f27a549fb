"""ragtune's retrieval as a LangChain or LlamaIndex retriever, so either framework's chains and query
engines can use an index built here.

Each framework is imported only when its retriever is asked for; without it the error says which extra
to install. Hits keep their provenance: source path, chunk and document ids, the fused score, and each
retriever's own score and rank.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from ragtune.core.errors import InputError
from ragtune.core.schema import SearchHit
from ragtune.rag.config import MODES
from ragtune.rag.retrieval import validate_k


class Searches(Protocol):
    """What the retrievers need of an index (a `RAG`): its search."""

    def search(self, query: str, k: int = 5, mode: str | None = None) -> list[SearchHit]: ...


# Evidence for debugging and re-ranking; kept out of the text LlamaIndex shows the LLM and embeds.
_EVIDENCE_KEYS = ["chunk_id", "document_id", "position", "rank", "score", "scores", "ranks"]


def hit_metadata(hit: SearchHit) -> dict[str, Any]:
    """A hit's document metadata (title, ...) plus where it came from and why it was chosen."""
    return {
        **hit.metadata,
        "source": hit.source,
        "chunk_id": hit.chunk_id,
        "document_id": hit.document_id,
        "position": hit.position,
        "rank": hit.rank,
        "score": hit.score,
        "scores": dict(hit.scores),
        "ranks": dict(hit.ranks),
    }


def _check(mode: str | None, k: int) -> None:
    if mode is not None and mode not in MODES:
        raise InputError(f"mode={mode!r}: use one of {', '.join(MODES)}")
    validate_k(k)


def _missing(framework: str, extra: str, exc: ImportError) -> InputError:
    return InputError(f"{framework} is not installed ({exc.name or exc}): pip install 'ragtune[{extra}]'")


@functools.cache
def _langchain_class() -> type:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict

    class RagtuneRetriever(BaseRetriever):
        """LangChain retriever over a ragtune index: `Document`s carrying source, ids, scores and ranks."""

        model_config = ConfigDict(arbitrary_types_allowed=True)
        rag: Any
        mode: str | None = None
        k: int = 5

        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            hits = self.rag.search(query, k=self.k, mode=self.mode)
            return [Document(id=h.chunk_id, page_content=h.text, metadata=hit_metadata(h)) for h in hits]

    return RagtuneRetriever


@functools.cache
def _llamaindex_class() -> type:
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import (
        NodeRelationship,
        NodeWithScore,
        QueryBundle,
        RelatedNodeInfo,
        TextNode,
    )

    class RagtuneLlamaIndexRetriever(BaseRetriever):
        """LlamaIndex retriever over a ragtune index: `NodeWithScore`s whose node id is the chunk id and
        whose source relationship is the ragtune document."""

        def __init__(self, rag: Searches, mode: str | None = None, k: int = 5) -> None:
            super().__init__()
            self.rag, self.mode, self.k = rag, mode, k

        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            hits = self.rag.search(query_bundle.query_str, k=self.k, mode=self.mode)
            return [NodeWithScore(node=_node(h), score=h.score) for h in hits]

    def _node(hit: SearchHit) -> TextNode:
        return TextNode(
            id_=hit.chunk_id,
            text=hit.text,
            metadata=hit_metadata(hit),
            excluded_llm_metadata_keys=_EVIDENCE_KEYS,
            excluded_embed_metadata_keys=_EVIDENCE_KEYS,
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=hit.document_id)},
        )

    return RagtuneLlamaIndexRetriever


def langchain_retriever(rag: Searches, mode: str | None = None, k: int = 5):
    """A `langchain_core.retrievers.BaseRetriever` (usable in LCEL chains) searching `rag`."""
    _check(mode, k)
    try:
        cls = _langchain_class()
    except ImportError as exc:
        raise _missing("LangChain (langchain-core)", "langchain", exc) from exc
    return cls(rag=rag, mode=mode, k=k)


def llamaindex_retriever(rag: Searches, mode: str | None = None, k: int = 5):
    """A `llama_index.core.retrievers.BaseRetriever` (usable in query engines) searching `rag`."""
    _check(mode, k)
    try:
        cls = _llamaindex_class()
    except ImportError as exc:
        raise _missing("LlamaIndex (llama-index-core)", "llamaindex", exc) from exc
    return cls(rag, mode=mode, k=k)
