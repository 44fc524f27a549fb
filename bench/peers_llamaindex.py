"""LlamaIndex as a system under test in bench/peers.py: IngestionPipeline (docstore upserts into an
in-memory Qdrant store), VectorStoreIndex, BM25Retriever and QueryFusionRetriever, embedding with the
shared model."""

from __future__ import annotations

import copy
import time
from typing import Any

from bench.peers_base import (
    BATCH_SIZE,
    FUSION_DEPTH,
    MODES,
    K,
    SharedEncoder,
    Source,
    ingest_phases,
    result_key,
)

LLAMA_CHUNK_TOKENS = 1024  # SentenceSplitter chunk size: ~4x the longest paragraph, so nothing is split


def llama_embedding(encoder: SharedEncoder) -> Any:
    """A LlamaIndex BaseEmbedding over the shared model (embed_batch_size 64: one framework batch = one
    forward pass of the model)."""
    from llama_index.core.embeddings import BaseEmbedding
    from pydantic import PrivateAttr

    class SharedModelEmbedding(BaseEmbedding):
        _encoder: SharedEncoder = PrivateAttr()

        def __init__(self, encoder: SharedEncoder) -> None:
            super().__init__(model_name="all-MiniLM-L6-v2", embed_batch_size=BATCH_SIZE)
            self._encoder = encoder

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._encoder.encode([query], query=True)[0].tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._encoder.encode([text])[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._encoder.encode(texts).tolist()

    return SharedModelEmbedding(encoder)


class LlamaIndex:
    """IngestionPipeline (docstore + UPSERTS + in-memory Qdrant), VectorStoreIndex, BM25Retriever and a
    reciprocal-rerank QueryFusionRetriever with one query (the user's own; no LLM)."""

    name = "llamaindex"
    modes = MODES["llamaindex"]

    def __init__(self, source: Source, encoder: SharedEncoder):
        from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
        from llama_index.core.node_parser import SentenceSplitter
        from llama_index.core.storage.docstore import SimpleDocumentStore
        from llama_index.vector_stores.qdrant import QdrantVectorStore
        from qdrant_client import QdrantClient

        self.source = source
        self.embed_model = llama_embedding(encoder)
        self.client = QdrantClient(location=":memory:")
        self.vector_store = QdrantVectorStore(client=self.client, collection_name="bench")
        # A node parser is needed all the same: Qdrant takes UUID point ids and deletes by ref_doc_id, which
        # only parsed nodes carry. Its chunk size is far above any paragraph, so it never splits one.
        self.pipeline = IngestionPipeline(
            transformations=[
                SentenceSplitter(chunk_size=LLAMA_CHUNK_TOKENS, chunk_overlap=0),
                self.embed_model,
            ],
            docstore=SimpleDocumentStore(),
            vector_store=self.vector_store,
            docstore_strategy=DocstoreStrategy.UPSERTS,
        )
        self.nodes: dict[str, list[Any]] = {}  # ref_doc_id -> its current nodes (what BM25 indexes)
        self.retrievers: dict[str, Any] = {}

    def _documents(self) -> list[Any]:
        from llama_index.core import Document, SimpleDirectoryReader

        if self.source.folder is not None:
            docs = SimpleDirectoryReader(str(self.source.folder), filename_as_id=True).load_data()
        else:
            docs = [Document(text=text, id_=key, metadata={"id": key}) for key, text in self.source.records]
        for doc in docs:
            # Embed and search the chunk text alone, as the other systems do (the reader would otherwise
            # put "file_path: ..." in front of every text it embeds).
            doc.excluded_embed_metadata_keys = list(doc.metadata)
            doc.excluded_llm_metadata_keys = list(doc.metadata)
        return docs

    def ingest(self) -> dict[str, float]:
        start = time.perf_counter()
        docs = self._documents()
        loaded = time.perf_counter()
        nodes = self.pipeline.run(documents=docs)
        indexed = time.perf_counter()
        if nodes or not self.retrievers:
            fresh: dict[str, list[Any]] = {}
            for node in nodes:
                node.embedding = None  # kept in Qdrant; BM25 needs only the text
                fresh.setdefault(node.ref_doc_id, []).append(node)
            self.nodes.update(fresh)
            self._build_retrievers()
        done = time.perf_counter()
        return ingest_phases(start, loaded, indexed, done, changed=len({n.ref_doc_id for n in nodes}))

    def _build_retrievers(self) -> None:
        from llama_index.core import VectorStoreIndex
        from llama_index.core.llms import MockLLM
        from llama_index.core.retrievers import QueryFusionRetriever
        from llama_index.core.retrievers.fusion_retriever import FUSION_MODES
        from llama_index.retrievers.bm25 import BM25Retriever

        index = VectorStoreIndex.from_vector_store(self.vector_store, embed_model=self.embed_model)
        all_nodes = [n for nodes in self.nodes.values() for n in nodes]
        bm25_deep = BM25Retriever.from_defaults(nodes=all_nodes, similarity_top_k=FUSION_DEPTH)
        bm25 = copy.copy(bm25_deep)  # the same BM25 index, asked for K results
        bm25.similarity_top_k = K
        dense_deep = index.as_retriever(similarity_top_k=FUSION_DEPTH)
        self.retrievers = {
            "bm25": bm25,
            "dense": index.as_retriever(similarity_top_k=K),
            "hybrid": QueryFusionRetriever(
                [dense_deep, bm25_deep],
                llm=MockLLM(),
                mode=FUSION_MODES.RECIPROCAL_RANK,
                similarity_top_k=K,
                num_queries=1,
                use_async=False,  # the in-memory Qdrant client is synchronous
            ),
        }

    def search(self, query: str, mode: str) -> list[str]:
        return [
            result_key(r.node.get_content(), r.node.metadata)
            for r in self.retrievers[mode].retrieve(query)[:K]
        ]

    def chunks(self) -> int:
        return int(self.client.count("bench").count)

    def bm25_chunks(self) -> int:
        return sum(len(v) for v in self.nodes.values())

    def close(self) -> None:
        self.client.close()
