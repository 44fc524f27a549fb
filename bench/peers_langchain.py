"""LangChain as a system under test in bench/peers.py: index() with a SQL record manager into FAISS,
BM25Retriever and EnsembleRetriever, embedding with the shared model."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from bench.peers_base import FUSION_DEPTH, MODES, K, SharedEncoder, Source, ingest_phases, result_key


def langchain_embeddings(encoder: SharedEncoder) -> Any:
    """A LangChain Embeddings over the shared model."""
    from langchain_core.embeddings import Embeddings

    class SharedModelEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return encoder.encode(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return encoder.encode([text], query=True)[0].tolist()

    return SharedModelEmbeddings()


class LangChain:
    """index() with a SQL record manager (cleanup="incremental") into FAISS; BM25Retriever; EnsembleRetriever."""

    name = "langchain"
    modes = MODES["langchain"]

    def __init__(self, source: Source, encoder: SharedEncoder, work: Path):
        import faiss
        from langchain_classic.indexes import SQLRecordManager
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy

        self.source = source
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.vector_store = FAISS(
            embedding_function=langchain_embeddings(encoder),
            index=faiss.IndexFlatIP(encoder.dimension),  # unit vectors: inner product = cosine, as ragtune
            docstore=InMemoryDocstore(),
            index_to_docstore_id={},
            distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
        )
        self.record_manager = SQLRecordManager("faiss/bench", db_url=f"sqlite:///{work / 'records.sqlite'}")
        self.record_manager.create_schema()
        self.retrievers: dict[str, Any] = {}

    def _documents(self) -> list[Any]:
        from langchain_community.document_loaders import DirectoryLoader, TextLoader
        from langchain_core.documents import Document

        if self.source.folder is not None:
            loader = DirectoryLoader(
                str(self.source.folder),
                glob="*.txt",
                loader_cls=TextLoader,
                loader_kwargs={"encoding": "utf-8"},
            )
            return loader.load()
        return [
            Document(page_content=text, metadata={"source": key, "id": key})
            for key, text in self.source.records
        ]

    def ingest(self) -> dict[str, float]:
        from langchain_core.indexing import index

        start = time.perf_counter()
        docs = self._documents()
        loaded = time.perf_counter()
        result = index(
            docs,
            self.record_manager,
            self.vector_store,
            cleanup="incremental",
            source_id_key="source",
            key_encoder="sha256",  # the default sha1 warns; the cost is the same
        )
        indexed = time.perf_counter()
        if result["num_added"] or result["num_updated"] or result["num_deleted"] or not self.retrievers:
            self._build_retrievers(docs)
        done = time.perf_counter()
        return ingest_phases(
            start, loaded, indexed, done, changed=result["num_added"] + result["num_updated"]
        )

    def _build_retrievers(self, docs: list[Any]) -> None:
        from langchain_classic.retrievers import EnsembleRetriever
        from langchain_community.retrievers import BM25Retriever

        bm25_deep = BM25Retriever.from_documents(docs, k=FUSION_DEPTH)  # rank_bm25 Okapi, default tokenizer
        dense_deep = self.vector_store.as_retriever(search_kwargs={"k": FUSION_DEPTH})
        self.retrievers = {
            "bm25": bm25_deep.model_copy(update={"k": K}),  # the same BM25 index, asked for K results
            "dense": self.vector_store.as_retriever(search_kwargs={"k": K}),
            "hybrid": EnsembleRetriever(retrievers=[dense_deep, bm25_deep], weights=[0.5, 0.5]),
        }

    def search(self, query: str, mode: str) -> list[str]:
        return [result_key(d.page_content, d.metadata) for d in self.retrievers[mode].invoke(query)[:K]]

    def chunks(self) -> int:
        return int(self.vector_store.index.ntotal)

    def bm25_chunks(self) -> int:
        return len(self.retrievers["bm25"].docs)

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
