"""ragtune side by side with LlamaIndex and LangChain: same corpus, same embedding model, same chunks, one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/peers.py             # 2,000 and 10,000 chunks + Semanlink
    HF_HUB_OFFLINE=1 .venv/bin/python bench/peers.py --quick     # smoke run: 300 chunks, few queries, no real data
    HF_HUB_OFFLINE=1 .venv/bin/python bench/peers.py --sizes 2000 --skip-real

Needs the peers, in ragtune's `bench` extra (`pip install -e '.[bench]'`): llama-index-core,
llama-index-retrievers-bm25, llama-index-vector-stores-qdrant (in-memory Qdrant), langchain-community,
langchain-classic.

What is compared, per corpus size (generated ~90-word paragraphs from bench/corpus.py, ONE paragraph per
file, so every document is already chunk-sized and no system splits it; chunk counts and the embedded texts
are checked to be equal):

- ragtune: `RAG.open(folder).ingest(corpus)`, `rag.search(q, 10, mode=bm25|tfidf|dense|hybrid)`.
- LlamaIndex: SimpleDirectoryReader(filename_as_id) -> IngestionPipeline(SentenceSplitter with a chunk size
  no paragraph reaches, embedding; SimpleDocumentStore, docstore_strategy=UPSERTS, in-memory Qdrant vector
  store) -> VectorStoreIndex.from_vector_store (dense), BM25Retriever (bm25), QueryFusionRetriever
  (reciprocal_rerank, num_queries=1, no LLM) over both (hybrid).
- LangChain: DirectoryLoader(TextLoader) -> langchain_core.indexing.index(SQLRecordManager,
  cleanup="incremental") into FAISS (dense), BM25Retriever (bm25), EnsembleRetriever (RRF, hybrid).
- One SentenceTransformer (all-MiniLM-L6-v2 from indexes.embedding.default_model_path()) serves all three:
  normalized embeddings, batch size 64, wrapped in each framework's embedding interface.

Measured: full ingest (wall and CPU seconds, next to a bare SentenceTransformer.encode of the same texts,
interleaved), re-ingest after editing 1% of the files, re-ingest of an unchanged folder, query latency
p50/p95 per mode over a fixed query set (warm-up first, queries interleaved across systems and modes and
repeated), and nDCG@10 per mode on the Semanlink arXiv tagging set (real labels, see bench/semanlink.py).
Fusion depth is the same everywhere: each retriever hands RRF its top 50 (ragtune's default depth).

Markdown tables go to stdout, progress to stderr, numbers to bench/results/peers.json (peers-quick.json
for --quick). The machine may be shared: read the ratios, and the load averages printed with them.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is a local folder; never ask a hub

import numpy as np  # noqa: E402
from ragtune.indexes.embedding import SentenceTransformerEmbedder, default_model_path  # noqa: E402
from ragtune.indexes.tokenize import Tokenizer  # noqa: E402

from bench import semanlink  # noqa: E402
from bench.corpus import Corpus, CorpusSpec, edit_documents, write_documents  # noqa: E402
from bench.metrics import median, ndcg_at_k, paired_bootstrap, recall_at_k, timed, timed_cpu  # noqa: E402
from bench.retrieval import lexical_words  # noqa: E402
from ragtune import RAG  # noqa: E402

K = 10
FUSION_DEPTH = 50  # ragtune's RetrievalConfig.depth: candidates each retriever gives to RRF
BATCH_SIZE = 64  # ragtune's EmbeddingConfig.batch_size, used for every encode here
LLAMA_CHUNK_TOKENS = 1024  # SentenceSplitter chunk size: ~4x the longest paragraph, so nothing is split
SYSTEMS = ("ragtune", "llamaindex", "langchain")
PEERS = ("llamaindex", "langchain")
TORCH_QUERIES = "ragtune-torch-queries"  # search-only second handle on ragtune's index, queries on torch
LABEL = {
    "ragtune": "ragtune",
    "llamaindex": "LlamaIndex",
    "langchain": "LangChain",
    "encode": "bare encode",
    TORCH_QUERIES: "ragtune, torch queries",
}
MODES = {
    "ragtune": ("bm25", "tfidf", "dense", "hybrid"),
    TORCH_QUERIES: ("dense", "hybrid"),
    "llamaindex": ("bm25", "dense", "hybrid"),
    "langchain": ("bm25", "dense", "hybrid"),
}
# The issue's figures for the peers: 2,000 synthetic ~90-word chunks, all-MiniLM-L6-v2, 2 cores.
ISSUE_REFERENCE: dict[str, dict[str, float]] = {
    "llamaindex": {
        "ingest_s": 52.9,
        "ingest_over_encode": 1.04,
        "reingest_s": 0.73,
        "unchanged_s": 0.013,
        "dense_ms": 60.0,
        "hybrid_ms": 72.0,
    },
    "langchain": {
        "ingest_s": 48.0,
        "reingest_s": 2.35,
        "unchanged_s": 1.05,
        "dense_ms": 14.9,
        "bm25_ms": 3.3,
        "hybrid_ms": 19.5,
    },
}
VERSIONED = (
    "llama-index-core",
    "llama-index-retrievers-bm25",
    "llama-index-vector-stores-qdrant",
    "qdrant-client",
    "bm25s",
    "PyStemmer",
    "langchain-core",
    "langchain-community",
    "langchain-classic",
    "langchain-text-splitters",
    "faiss-cpu",
    "rank-bm25",
    "SQLAlchemy",
    "sentence-transformers",
    "transformers",
    "torch",
    "numpy",
)

# The modules each peer needs, by the package that provides them (all in ragtune's `bench` extra).
PEER_MODULES = {
    "llama_index.core": "llama-index-core",
    "llama_index.retrievers.bm25": "llama-index-retrievers-bm25",
    "llama_index.vector_stores.qdrant": "llama-index-vector-stores-qdrant",
    "langchain_community": "langchain-community",
    "langchain_classic": "langchain-classic",
    "sqlalchemy": "SQLAlchemy",
}

_STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


def out(text: str = "") -> None:
    print(text, flush=True)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> None:
    """A Markdown table; the first `left` columns (labels) left-aligned, the others (numbers) right-aligned."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(3, *(len(r[i]) for r in cells)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i < left else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            + " |"
        )

    out(line(cells[0]))
    out(
        "| "
        + " | ".join(("-" * (w - 1) + ":") if i >= left else "-" * w for i, w in enumerate(widths))
        + " |"
    )
    for row in cells[1:]:
        out(line(row))
    out()


def num(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def seconds(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def ratio(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.2f}x"


def rotate(items: Sequence[Any], n: int) -> list[Any]:
    """`items` starting at position n: the order changes every round, so no system always runs first."""
    n %= len(items)
    return list(items[n:]) + list(items[:n])


def shuffled(items: Sequence[Any], rng: np.random.Generator) -> list[Any]:
    """`items` in a fresh random order: which call follows which changes from query to query, so warm or
    busy threads left by one library (onnxruntime and torch both keep spinning threads) favour no one."""
    return [items[i] for i in rng.permutation(len(items))]


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# ---------------------------------------------------------------------------------------------------------
# The one embedding model, and each framework's wrapper around it


class Meter:
    """Counts the texts each system sends to the model; while recording, keeps them too. With
    `query_vectors` set (quality passes only, never timed), each query is embedded once per backend."""

    def __init__(self) -> None:
        self.documents = 0
        self.recorded: list[str] | None = None
        self.query_vectors: dict[tuple[str, str], np.ndarray] | None = None

    def queries(
        self, backend: str, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]
    ) -> np.ndarray:
        if self.query_vectors is None:
            return encode(list(texts))
        missing = [t for t in dict.fromkeys(texts) if (backend, t) not in self.query_vectors]
        if missing:
            self.query_vectors.update(
                ((backend, t), v) for t, v in zip(missing, encode(missing), strict=True)
            )
        return np.stack([self.query_vectors[(backend, t)] for t in texts])

    def note(self, texts: Sequence[str], query: bool) -> None:
        if query:
            return
        self.documents += len(texts)
        if self.recorded is not None:
            self.recorded.extend(texts)

    def start(self, record: bool = False) -> None:
        self.documents = 0
        self.recorded = [] if record else None

    def stop(self) -> list[str]:
        texts, self.recorded = self.recorded or [], None
        return texts


class SharedEncoder:
    """The loaded SentenceTransformer, called as ragtune calls it (encode_document / encode_query, batch 64,
    normalized, float32); what the peers' wrappers embed with."""

    def __init__(self, model: Any, meter: Meter):
        self.model = model
        self.meter = meter
        self.dimension = int(
            getattr(model, "get_embedding_dimension", model.get_sentence_embedding_dimension)()
        )

    def encode(self, texts: Sequence[str], query: bool = False) -> np.ndarray:
        self.meter.note(texts, query)
        if query:
            return self.meter.queries("torch", texts, lambda t: self._encode(t, query=True))
        return self._encode(list(texts), query=False)

    def _encode(self, texts: list[str], query: bool) -> np.ndarray:
        fn = getattr(self.model, "encode_query" if query else "encode_document", self.model.encode)
        vectors = fn(
            texts,
            batch_size=BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class MeteredEmbedder:
    """ragtune's own SentenceTransformerEmbedder, counted (the Embedder protocol: name + encode)."""

    def __init__(self, inner: SentenceTransformerEmbedder, meter: Meter):
        self.inner = inner
        self.name = inner.name
        self.meter = meter

    def encode(self, texts: Sequence[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
        self.meter.note(texts, query)
        if query:
            return self.meter.queries("ragtune", texts, lambda t: self.inner.encode(t, query=True))
        return self.inner.encode(texts, query=False, progress=progress)

    def __getattr__(self, name: str) -> Any:  # anything else ragtune may ask its embedder
        return getattr(self.inner, name)


class TorchQueryEmbedder:
    """Same name and vectors as ragtune's embedder, but every text (queries too) goes through the shared
    SentenceTransformer on torch, as the peers' queries do; for a search-only handle on ragtune's index."""

    def __init__(self, name: str, encoder: SharedEncoder):
        self.name = name
        self.encoder = encoder

    def encode(self, texts: Sequence[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
        return self.encoder.encode(texts, query=query)


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


def langchain_embeddings(encoder: SharedEncoder) -> Any:
    """A LangChain Embeddings over the shared model."""
    from langchain_core.embeddings import Embeddings

    class SharedModelEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return encoder.encode(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return encoder.encode([text], query=True)[0].tolist()

    return SharedModelEmbeddings()


# ---------------------------------------------------------------------------------------------------------
# The three systems behind one small interface


@dataclass(frozen=True)
class Source:
    """What to ingest: a folder of .txt files (everyone reads it), or records (id, text) that ragtune reads
    from a JSONL file and the peers get as in-memory documents, their usual path for loaded records."""

    folder: Path | None = None
    jsonl: Path | None = None
    records: tuple[tuple[str, str], ...] = ()


class System(Protocol):
    name: str
    modes: tuple[str, ...]

    def ingest(self) -> dict[str, float]:
        """Bring the indexes in line with the source; returns phase seconds (total_s at least)."""
        ...

    def search(self, query: str, mode: str) -> list[str]:
        """Keys of the top K results: the record id where there is one, else the chunk text."""
        ...

    def chunks(self) -> int: ...

    def close(self) -> None: ...


def _key(text: str, metadata: dict[str, Any]) -> str:
    return str(metadata["id"]) if "id" in metadata else text.strip()


class Ragtune:
    def __init__(
        self, source: Source, index_dir: Path, embedder: Any, name: str = "ragtune", owner: bool = True
    ):
        self.name = name
        self.modes = MODES[name]
        self.source = source
        self.index_dir = index_dir
        self.owner = owner  # False: a second, search-only handle on an index another handle ingests
        self.rag = RAG.open(index_dir, embedder=embedder)  # default config, as a user gets it

    def ingest(self) -> dict[str, float]:
        path = self.source.folder or self.source.jsonl
        assert path is not None
        report = self.rag.ingest(path, progress=False)
        return {"total_s": report.seconds, "changed_documents": len(report.added) + len(report.changed)}

    def search(self, query: str, mode: str) -> list[str]:
        return [_key(h.text, h.metadata) for h in self.rag.search(query, K, mode=mode)]

    def chunks(self) -> int:
        return int(self.rag.status()["chunks"])

    def close(self) -> None:
        self.rag.close()
        if self.owner:
            shutil.rmtree(self.index_dir, ignore_errors=True)


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
        return {
            "load_s": loaded - start,
            "index_s": indexed - loaded,
            "bm25_s": done - indexed,
            "total_s": done - start,
            "changed_documents": len({n.ref_doc_id for n in nodes}),
        }

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
            _key(r.node.get_content(), r.node.metadata) for r in self.retrievers[mode].retrieve(query)[:K]
        ]

    def chunks(self) -> int:
        return int(self.client.count("bench").count)

    def bm25_chunks(self) -> int:
        return sum(len(v) for v in self.nodes.values())

    def close(self) -> None:
        self.client.close()


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
        return {
            "load_s": loaded - start,
            "index_s": indexed - loaded,
            "bm25_s": done - indexed,
            "total_s": done - start,
            "changed_documents": result["num_added"] + result["num_updated"],
        }

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
        return [_key(d.page_content, d.metadata) for d in self.retrievers[mode].invoke(query)[:K]]

    def chunks(self) -> int:
        return int(self.vector_store.index.ntotal)

    def bm25_chunks(self) -> int:
        return len(self.retrievers["bm25"].docs)

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


@dataclass
class Bench:
    """Everything the sections share: the model, the meter, the working folder, the options."""

    args: argparse.Namespace
    work: Path
    meter: Meter = field(default_factory=Meter)
    st_embedder: SentenceTransformerEmbedder = field(default_factory=SentenceTransformerEmbedder)
    _encoder: SharedEncoder | None = None
    _made: int = 0

    @property
    def encoder(self) -> SharedEncoder:
        if self._encoder is None:
            self._encoder = SharedEncoder(self.st_embedder.model, self.meter)
        return self._encoder

    def make(self, name: str, source: Source) -> System:
        self._made += 1
        if name == "ragtune":
            embedder = MeteredEmbedder(self.st_embedder, self.meter)
            return Ragtune(source, self.work / f"ragtune-{self._made}", embedder)
        if name == "llamaindex":
            return LlamaIndex(source, self.encoder)
        if name == "langchain":
            return LangChain(source, self.encoder, self.work / f"langchain-{self._made}")
        raise ValueError(name)

    def torch_queries(self, ragtune: System) -> System:
        """A search-only handle on `ragtune`'s index whose queries are embedded on torch like the peers'."""
        assert isinstance(ragtune, Ragtune)
        embedder = TorchQueryEmbedder(self.st_embedder.name, self.encoder)
        return Ragtune(ragtune.source, ragtune.index_dir, embedder, name=TORCH_QUERIES, owner=False)


# ---------------------------------------------------------------------------------------------------------
# Measurements


def measured_ingest(bench: Bench, system: System, record: bool = False) -> tuple[dict[str, Any], list[str]]:
    bench.meter.start(record=record)
    wall, cpu, phases = timed_cpu(system.ingest)
    embedded = bench.meter.documents
    texts = bench.meter.stop()
    return {"wall_s": wall, "cpu_s": cpu, "embedded": embedded, **phases}, texts


def check_chunks(system: System, expected: int, where: str) -> dict[str, int]:
    counts = {"chunks": system.chunks()}
    if hasattr(system, "bm25_chunks"):
        counts["bm25_chunks"] = system.bm25_chunks()  # type: ignore[attr-defined]
    if any(v != expected for v in counts.values()):
        raise SystemExit(
            f"{system.name} holds {counts} chunks {where}; expected {expected} (one per paragraph)"
        )
    return counts


def check_texts(name: str, embedded: list[str], expected: Sequence[str]) -> None:
    """The texts a system embedded are exactly the paragraphs (whitespace at the ends aside)."""
    if Counter(t.strip() for t in embedded) != Counter(t.strip() for t in expected):
        got = Counter(t.strip() for t in embedded)
        missing = sum((Counter(t.strip() for t in expected) - got).values())
        raise SystemExit(f"{name} embedded {len(embedded)} texts, {missing} paragraphs missing or altered")


def full_ingests(
    bench: Bench, source: Source, paragraphs: list[str], repeats: int
) -> tuple[dict[str, System], dict[str, Any]]:
    """Full ingest of each system into a new index, `repeats` times, each round next to a bare encode, the
    order rotating; returns the last round's systems (kept for the incremental part) and the numbers."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ("encode", *SYSTEMS)}
    kept: dict[str, System] = {}
    counts: dict[str, dict[str, int]] = {}
    for rep in range(repeats):
        for name in rotate(("encode", *SYSTEMS), rep):
            log(f"  full ingest round {rep + 1}/{repeats}: {LABEL[name]}")
            if name == "encode":
                wall, cpu, _ = timed_cpu(lambda: bench.encoder.encode(paragraphs))
                runs[name].append({"wall_s": wall, "cpu_s": cpu, "embedded": len(paragraphs)})
                continue
            system = bench.make(name, source)
            stats, texts = measured_ingest(bench, system, record=rep == 0)
            runs[name].append(stats)
            if rep == 0:
                check_texts(name, texts, paragraphs)
            counts[name] = check_chunks(system, len(paragraphs), "after the full ingest")
            if name in kept:
                kept[name].close()
            kept[name] = system
    summary: dict[str, Any] = {"runs": runs, "counts": counts}
    encode = runs["encode"]
    for name in SYSTEMS:
        pairs = [r["wall_s"] / e["wall_s"] for r, e in zip(runs[name], encode, strict=True)]
        cpu_pairs = [r["cpu_s"] / e["cpu_s"] for r, e in zip(runs[name], encode, strict=True)]
        summary[name] = {
            "wall_s": median([r["wall_s"] for r in runs[name]]),
            "cpu_s": median([r["cpu_s"] for r in runs[name]]),
            "over_encode": median(pairs),
            "over_encode_runs": pairs,
            "over_encode_cpu": median(cpu_pairs),
            "embedded": runs[name][0]["embedded"],
            "phases": {
                k: median([r[k] for r in runs[name]])
                for k in ("load_s", "index_s", "bm25_s")
                if k in runs[name][0]
            },
        }
    summary["encode"] = {
        "wall_s": median([e["wall_s"] for e in encode]),
        "cpu_s": median([e["cpu_s"] for e in encode]),
        "texts_per_s": len(paragraphs) / median([e["wall_s"] for e in encode]),
    }
    return kept, summary


def incremental_ingests(
    bench: Bench, systems: dict[str, System], folder: Path, docs: list[list[str]], corpus: Corpus, rounds: int
) -> dict[str, Any]:
    """Each round edits one paragraph in a fresh 1% of the files, then every system re-ingests."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
    edited_total = 0
    new_paragraphs: list[str] = []
    for r in range(1, rounds + 1):
        edited = list(edit_documents(folder, docs, corpus, 0.01, round_=r))
        edited_total = len(edited)
        new_paragraphs = [docs[i][0] for i in edited]
        for name in rotate(SYSTEMS, r):
            log(f"  re-ingest after editing {len(edited)} files, round {r}/{rounds}: {LABEL[name]}")
            stats, _ = measured_ingest(bench, systems[name])
            runs[name].append(stats)
    size = sum(len(d) for d in docs)
    found: dict[str, str] = {}
    for name, system in systems.items():
        check_chunks(system, size, "after the incremental re-ingests")
        probes = new_paragraphs[:5]
        hits = sum(system.search(p, "dense")[:1] == [p.strip()] for p in probes)
        found[name] = f"{hits}/{len(probes)}"
    return {
        "edited_files": edited_total,
        "rounds": rounds,
        "runs": runs,
        "edited_found_top1_dense": found,
        **{
            name: {
                "wall_s": median([x["wall_s"] for x in runs[name]]),
                "embedded": runs[name][0]["embedded"],
                "phases": {
                    k: median([x[k] for x in runs[name]])
                    for k in ("load_s", "index_s", "bm25_s")
                    if k in runs[name][0]
                },
            }
            for name in SYSTEMS
        },
    }


def unchanged_ingests(bench: Bench, systems: dict[str, System], repeats: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
    for r in range(repeats):
        for name in rotate(SYSTEMS, r):
            stats, _ = measured_ingest(bench, systems[name])
            runs[name].append(stats)
    log(f"  unchanged re-ingest x {repeats} done")
    return {
        "repeats": repeats,
        "runs": runs,
        **{
            name: {
                "wall_s": median([x["wall_s"] for x in runs[name]]),
                "embedded": max(x["embedded"] for x in runs[name]),
            }
            for name in SYSTEMS
        },
    }


Call = tuple[str, str]  # (system, mode); ("encode", "query") is the bare query embedding


def query_latency(
    bench: Bench, systems: dict[str, System], queries: list[str], repeats: int
) -> dict[str, Any]:
    """Per-query latency of every (system, mode), interleaved: for each query every call runs once, in a
    random order drawn afresh for every query. Warm-up first."""
    calls: list[Call] = [(name, mode) for name, system in systems.items() for mode in system.modes]
    calls.append(("encode", "query"))

    def run(call: Call, query: str) -> list[str]:
        name, mode = call
        if name == "encode":
            bench.encoder.encode([query], query=True)
            return []
        return systems[name].search(query, mode)

    for call in calls:
        for q in queries[:5]:
            run(call, q)
    times: dict[Call, list[float]] = {c: [] for c in calls}
    results: dict[Call, list[list[str]]] = {c: [] for c in calls}
    rng = np.random.default_rng(bench.args.seed)
    for rnd in range(repeats):
        log(f"  query latency round {rnd + 1}/{repeats}: {len(queries)} queries x {len(calls)} calls")
        for query in queries:
            for call in shuffled(calls, rng):
                start = time.perf_counter()
                hits = run(call, query)
                times[call].append(time.perf_counter() - start)
                if rnd == 0:
                    results[call].append(hits)
    # Then one call at a time over the whole query set, as a process using a single library runs: torch and
    # onnxruntime both leave spinning threads behind them, which slows whatever runs next on 2 cores.
    blocks: dict[Call, list[float]] = {c: [] for c in calls}
    for rnd in range(repeats):
        log(f"  query latency in blocks, round {rnd + 1}/{repeats}")
        for call in shuffled(calls, rng):
            for q in queries[:3]:
                run(call, q)
            for query in queries:
                start = time.perf_counter()
                run(call, query)
                blocks[call].append(time.perf_counter() - start)
    latency = {f"{name}/{mode}": _stats(t) for (name, mode), t in times.items()}
    latency_blocks = {f"{name}/{mode}": _stats(t) for (name, mode), t in blocks.items()}
    # The same vectors and exact search everywhere: the dense top-10 should agree (up to float ties).
    agreement: dict[str, float] = {}
    for other, mode in calls:
        if other not in ("ragtune", "encode") and ("ragtune", mode) in results:
            ours, theirs = results[("ragtune", mode)], results[(other, mode)]
            overlap = [len(set(a) & set(b)) / max(1, len(a)) for a, b in zip(ours, theirs, strict=True)]
            agreement[f"{other}/{mode}"] = float(np.mean(overlap))
    duplicates = {
        f"{name}/{mode}": sum(len(h) != len(set(h)) for h in hits)
        for (name, mode), hits in results.items()
        if name != "encode"
    }
    return {
        "queries": len(queries),
        "repeats": repeats,
        "latency": latency,
        "latency_blocks": latency_blocks,
        "top10_overlap_with_ragtune": agreement,
        "queries_with_duplicate_hits": duplicates,
    }


def _stats(seconds_: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(seconds_, 50) * 1000,
        "p95_ms": percentile(seconds_, 95) * 1000,
        "mean_ms": float(np.mean(seconds_)) * 1000,
        "n": len(seconds_),
    }


def bench_size(bench: Bench, size: int) -> dict[str, Any]:
    args = bench.args
    log(f"[{size}] generating {size} paragraphs, one file each")
    corpus = Corpus(CorpusSpec(size, seed=args.seed))
    docs = [[p] for d in corpus.documents() for p in d]  # one chunk-sized paragraph per document
    paragraphs = [d[0] for d in docs]
    folder = bench.work / f"corpus-{size}"
    write_documents(folder, docs)
    source = Source(folder=folder)
    res: dict[str, Any] = {
        "chunks": size,
        "documents": len(docs),
        "chars_per_chunk": float(np.mean([len(p) for p in paragraphs])),
        "words_per_chunk": float(np.mean([p.count(" ") + 1 for p in paragraphs])),
        "load_average_before": os.getloadavg(),
    }
    repeats = args.ingest_repeats if args.ingest_repeats else (2 if size <= 5000 else 1)
    log(f"[{size}] full ingests x {repeats}")
    systems, res["full"] = full_ingests(bench, source, paragraphs, repeats)
    res["full"]["repeats"] = repeats
    log(f"[{size}] incremental re-ingests")
    res["incremental"] = incremental_ingests(bench, systems, folder, docs, corpus, args.incremental_rounds)
    res["unchanged"] = unchanged_ingests(bench, systems, args.unchanged_repeats)
    systems[TORCH_QUERIES] = bench.torch_queries(systems["ragtune"])
    stop = lexical_words(Tokenizer(), corpus.zipf.words)
    queries = corpus.queries(args.queries, stop, seed_offset=11)
    res["queries"] = query_latency(bench, systems, queries, args.query_repeats)
    res["ragtune_query_backend"] = ragtune_query_backend(bench.st_embedder)
    res["load_average_after"] = os.getloadavg()
    for system in systems.values():
        system.close()
    shutil.rmtree(folder, ignore_errors=True)
    return res


def ragtune_query_backend(embedder: SentenceTransformerEmbedder) -> str:
    """What ragtune embeds queries with ('onnx' or 'torch'), where this ragtune has a choice."""
    choose = getattr(embedder, "query_backend", None)
    return str(choose()) if callable(choose) else "torch"


def bench_semanlink(bench: Bench) -> dict[str, Any]:
    args = bench.args
    data = semanlink.ensure_data(args.cache, log=log)
    tags, papers = semanlink.load(data)
    if args.semanlink_queries:
        papers = papers[: args.semanlink_queries]
    jsonl = args.cache / "semanlink" / "tags.jsonl"
    semanlink.write_jsonl(tags, jsonl)
    source = Source(jsonl=jsonl, records=tuple((t.id, t.text) for t in tags))
    res: dict[str, Any] = {"tags": len(tags), "papers": len(papers), "ingest": {}}
    systems: dict[str, System] = {}
    for name in SYSTEMS:
        log(f"[semanlink] ingesting {len(tags)} tags into {LABEL[name]}")
        system = bench.make(name, source)
        stats, texts = measured_ingest(bench, system, record=True)
        check_texts(name, texts, [t.text for t in tags])
        res["ingest"][name] = {
            **stats,
            **check_chunks(system, len(tags), "after ingesting the Semanlink tags"),
        }
        systems[name] = system
    calls = [(name, mode) for name, system in systems.items() for mode in system.modes]
    ndcg: dict[Call, list[float]] = {c: [] for c in calls}
    recall: dict[Call, list[float]] = {c: [] for c in calls}
    log(f"[semanlink] quality: {len(papers)} queries x {len(calls)} calls (query vectors computed once)")
    bench.meter.query_vectors = {}
    for paper in papers:
        for name, mode in calls:
            ranked = list(dict.fromkeys(systems[name].search(paper.query, mode)))
            ndcg[(name, mode)].append(ndcg_at_k(ranked, paper.relevant, K))
            recall[(name, mode)].append(recall_at_k(ranked, paper.relevant, K))
    bench.meter.query_vectors = None

    # Latency with these long queries (~200 words): fewer of them, nothing cached, interleaved.
    systems[TORCH_QUERIES] = bench.torch_queries(systems["ragtune"])
    timed_calls = [(name, mode) for name, system in systems.items() for mode in system.modes]
    timed_papers = papers[: args.semanlink_latency_queries]
    for name, mode in timed_calls:  # warm-up
        systems[name].search(papers[-1].query, mode)
    times: dict[Call, list[float]] = {c: [] for c in timed_calls}
    log(f"[semanlink] latency: {len(timed_papers)} queries x {len(timed_calls)} calls")
    rng = np.random.default_rng(args.seed)
    for paper in timed_papers:
        for name, mode in shuffled(timed_calls, rng):
            start = time.perf_counter()
            systems[name].search(paper.query, mode)
            times[(name, mode)].append(time.perf_counter() - start)
    res["latency_queries"] = len(timed_papers)
    res["quality"] = {
        f"{name}/{mode}": {
            "ndcg@10": float(np.mean(ndcg[(name, mode)])) if (name, mode) in ndcg else None,
            "recall@10": float(np.mean(recall[(name, mode)])) if (name, mode) in ndcg else None,
            "p50_ms": percentile(times[(name, mode)], 50) * 1000,
            "p95_ms": percentile(times[(name, mode)], 95) * 1000,
        }
        for name, mode in timed_calls
    }
    res["ragtune_minus_peer"] = {}
    for peer in PEERS:
        for mode in ("bm25", "dense", "hybrid"):
            diff, low, high = paired_bootstrap(ndcg[("ragtune", mode)], ndcg[(peer, mode)])
            res["ragtune_minus_peer"][f"{peer}/{mode}"] = {"mean": diff, "ci95": [low, high]}
    for system in systems.values():
        system.close()
    return res


# ---------------------------------------------------------------------------------------------------------
# Report


def lat(q: dict[str, Any], call: str, key: str = "p50_ms", table: str = "latency") -> float:
    """A latency statistic; table "latency" (interleaved) or "latency_blocks" (one call at a time)."""
    values = q.get(table, {})
    return values[call][key] if call in values else float("nan")


def per_system(q: dict[str, Any], mode: str, key: str = "p50_ms", table: str = "latency") -> dict[str, Any]:
    """One latency statistic of `mode` for every system; None where a system has no such mode."""
    return {
        n: lat(q, f"{n}/{mode}", key, table) if f"{n}/{mode}" in q.get(table, {}) else None
        for n in (*SYSTEMS, TORCH_QUERIES)
    }


def print_size(res: dict[str, Any]) -> None:
    size = res["chunks"]
    full, inc, unch, q = res["full"], res["incremental"], res["unchanged"], res["queries"]
    out(
        f"### {size:,} chunks ({res['documents']:,} files of one paragraph, {res['words_per_chunk']:.0f} words / "
        f"{res['chars_per_chunk']:.0f} chars per chunk on average)"
    )
    out()
    out(
        f"Full ingest: median of {full['repeats']} interleaved round(s); re-ingest: median of {inc['rounds']} "
        f"round(s), each editing {inc['edited_files']} files (1%); unchanged: median of {unch['repeats']}; "
        f"queries: {q['queries']} generated 3-6 word queries x {q['repeats']} rounds, interleaved (every "
        "call once per query, random order), then again one call at a time over the whole set. "
        f"Ratios are peer / ragtune (above 1: ragtune is faster). Load average before/after: "
        f"{'/'.join(f'{x:.2f}' for x in res['load_average_before'])} -> "
        f"{'/'.join(f'{x:.2f}' for x in res['load_average_after'])}."
    )
    out()
    ref = ISSUE_REFERENCE

    def row(
        label: str,
        values: dict[str, float | None],
        fmt: Callable[[float | None], str],
        refs: tuple[str, str] = ("-", "-"),
        bare: str = "-",
    ) -> list[str]:
        ours = values.get("ragtune")
        cells = [label, bare, fmt(ours), fmt(values.get(TORCH_QUERIES))]
        for peer in PEERS:
            theirs = values.get(peer)
            cells += [fmt(theirs), ratio(theirs / ours) if theirs is not None and ours else "-"]
        return cells + list(refs)

    def ref_of(peer: str, key: str, fmt: Callable[[float], str]) -> str:
        return fmt(ref[peer][key]) if key in ref[peer] else "-"

    rows = [
        ["chunks indexed (checked equal)", "-", str(full["counts"]["ragtune"]["chunks"]), "-"]
        + [
            x
            for peer in PEERS
            for x in (
                " / ".join(str(v) for v in full["counts"][peer].values()),
                "",
            )
        ]
        + ["-", "-"],
        row(
            "full ingest, wall s",
            {n: full[n]["wall_s"] for n in SYSTEMS},
            seconds,
            (ref_of("llamaindex", "ingest_s", seconds), ref_of("langchain", "ingest_s", seconds)),
            bare=seconds(full["encode"]["wall_s"]),
        ),
        row(
            "full ingest / bare encode (paired)",
            {n: full[n]["over_encode"] for n in SYSTEMS},
            lambda v: num(v, 3),
            (ref_of("llamaindex", "ingest_over_encode", lambda v: num(v, 2)), "-"),
            bare="1.000",
        ),
        row(
            "full ingest, CPU s (this process)",
            {n: full[n]["cpu_s"] for n in SYSTEMS},
            seconds,
            bare=seconds(full["encode"]["cpu_s"]),
        ),
        row(
            "full ingest / bare encode in CPU s (paired)",
            {n: full[n]["over_encode_cpu"] for n in SYSTEMS},
            lambda v: num(v, 3),
            bare="1.000",
        ),
        row(
            f"re-ingest after 1% change, s ({inc['edited_files']} files)",
            {n: inc[n]["wall_s"] for n in SYSTEMS},
            seconds,
            (ref_of("llamaindex", "reingest_s", seconds), ref_of("langchain", "reingest_s", seconds)),
        ),
        row("  texts embedded by it", {n: float(inc[n]["embedded"]) for n in SYSTEMS}, lambda v: num(v, 0)),
        row(
            "unchanged re-run, s",
            {n: unch[n]["wall_s"] for n in SYSTEMS},
            seconds,
            (ref_of("llamaindex", "unchanged_s", seconds), ref_of("langchain", "unchanged_s", seconds)),
        ),
    ]
    for mode in ("bm25", "tfidf", "dense", "hybrid"):
        for stat in ("p50_ms", "p95_ms"):
            refs = ("-", "-")
            if stat == "p50_ms":
                key = {"dense": "dense_ms", "hybrid": "hybrid_ms", "bm25": "bm25_ms"}.get(mode, "")
                refs = (
                    ref_of("llamaindex", key, lambda v: num(v, 1)),
                    ref_of("langchain", key, lambda v: num(v, 1)),
                )
            rows.append(
                row(
                    f"query {mode} {stat[:3]} ms",
                    per_system(q, mode, stat),
                    lambda v: num(v, 2),
                    refs,
                    bare=num(lat(q, "encode/query", stat), 2) if mode in ("dense", "hybrid") else "-",
                )
            )
    if "latency_blocks" in q:  # runs made before this pass existed have no such numbers
        for mode in ("bm25", "tfidf", "dense", "hybrid"):
            rows.append(
                row(
                    f"query {mode} p50 ms, one library at a time",
                    per_system(q, mode, table="latency_blocks"),
                    lambda v: num(v, 2),
                    bare=num(lat(q, "encode/query", table="latency_blocks"), 2)
                    if mode in ("dense", "hybrid")
                    else "-",
                )
            )
    md_table(
        [
            "measure",
            "bare encode",
            "ragtune",
            "ragtune, torch queries",
            "LlamaIndex",
            "LlamaIndex / ragtune",
            "LangChain",
            "LangChain / ragtune",
            "issue: LlamaIndex @2k",
            "issue: LangChain @2k",
        ],
        rows,
    )
    out(
        "'bare encode' on the query rows is one SentenceTransformer.encode_query([q]) call on torch, what "
        "every peer query pays; 'ragtune, torch queries' is a second, search-only handle on ragtune's index "
        f"whose queries go through that same torch call (ragtune itself embeds queries with "
        f"{res.get('ragtune_query_backend') or 'its default backend'}). Peer ingest phases (median, s): "
        + "; ".join(
            f"{LABEL[p]} full load {seconds(full[p]['phases'].get('load_s'))} + index {seconds(full[p]['phases'].get('index_s'))}"
            f" + BM25 {seconds(full[p]['phases'].get('bm25_s'))}, 1% re-ingest load {seconds(inc[p]['phases'].get('load_s'))}"
            f" + index {seconds(inc[p]['phases'].get('index_s'))} + BM25 {seconds(inc[p]['phases'].get('bm25_s'))}"
            for p in PEERS
        )
        + "."
    )
    overlap = q["top10_overlap_with_ragtune"]
    out(
        "Top-10 overlap with ragtune on these queries: "
        + ", ".join(f"{LABEL[k.split('/')[0]]} {k.split('/')[1]} {v:.0%}" for k, v in overlap.items())
        + ". Edited paragraphs found top-1 (dense) after the re-ingests: "
        + ", ".join(f"{LABEL[k]} {v}" for k, v in inc["edited_found_top1_dense"].items())
        + ". Ingest / encode per round: "
        + ", ".join(
            f"{LABEL[n]} " + " ".join(f"{x:.3f}" for x in full[n]["over_encode_runs"]) for n in SYSTEMS
        )
        + "."
    )
    dup = {k: v for k, v in q["queries_with_duplicate_hits"].items() if v}
    if dup:
        out(f"Queries whose top 10 held the same chunk twice: {dup}.")
    out()


def print_semanlink(res: dict[str, Any]) -> None:
    out(
        f"### Semanlink arXiv tagging (real labels): {res['tags']:,} tags as documents, {res['papers']} papers "
        "(title + summary) as queries"
    )
    out()
    out(
        "Ingest (ragtune reads tags.jsonl; the peers get the same (id, text) records as in-memory documents): "
        + ", ".join(
            f"{LABEL[n]} {seconds(res['ingest'][n]['wall_s'])} s, {res['ingest'][n]['chunks']} chunks"
            for n in SYSTEMS
        )
        + "."
    )
    out()
    rows = []
    for mode in ("bm25", "tfidf", "dense", "hybrid"):
        cells = [mode]
        for name in SYSTEMS:
            qv = res["quality"].get(f"{name}/{mode}")
            cells += ["-", "-"] if qv is None else [num(qv["ndcg@10"], 3), num(qv["p50_ms"], 1)]
            if name == "ragtune":
                tq = res["quality"].get(f"{TORCH_QUERIES}/{mode}")
                cells.append("-" if tq is None else num(tq["p50_ms"], 1))
        for peer in PEERS:
            d = res["ragtune_minus_peer"].get(f"{peer}/{mode}")
            cells.append("-" if d is None else f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
        rows.append(cells)
    md_table(
        [
            "mode",
            "ragtune nDCG@10",
            "ragtune p50 ms",
            "ragtune, torch queries p50 ms",
            "LlamaIndex nDCG@10",
            "LlamaIndex p50 ms",
            "LangChain nDCG@10",
            "LangChain p50 ms",
            "ragtune - LlamaIndex [95% CI]",
            "ragtune - LangChain [95% CI]",
        ],
        rows,
    )
    out(
        f"(binary relevance, all {res['papers']} papers; p50 latency over the first {res['latency_queries']} papers "
        "as queries, ~200 words each, interleaved: embedding such a query dominates dense and hybrid)"
    )
    out()


def goals(results: dict[str, Any]) -> list[list[str]]:
    """The issue's goals, measured, and (marked info) every other place where a peer may win."""
    rows: list[list[str]] = []
    for size_key, res in results["sizes"].items():
        rows += [[f"{int(size_key):,}", *row] for row in size_goals(res, results.get("semanlink", {}))]
    real = results.get("semanlink", {}).get("quality")
    for mode in ("bm25", "dense", "hybrid") if real else ():
        for peer in PEERS:
            ours, theirs = real[f"ragtune/{mode}"]["ndcg@10"], real[f"{peer}/{mode}"]["ndcg@10"]
            goal = f"(info) Semanlink nDCG@10 {mode}, ragtune vs {LABEL[peer]}"
            verdict = "tie" if round(ours, 4) == round(theirs, 4) else _won(ours > theirs)
            rows.append(["real", goal, "-", f"{ours:.3f} vs {theirs:.3f}", verdict])
    return rows


def size_goals(res: dict[str, Any], real: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(goal, target, measured, verdict) rows for one corpus size."""
    full, inc, unch, q = res["full"], res["incremental"], res["unchanged"], res["queries"]
    quality = real.get("quality")
    rows: list[tuple[str, str, str, str]] = []

    def faster(value: Callable[[str], float]) -> str:
        return min(PEERS, key=value)

    v = full["ragtune"]["over_encode"]
    rows.append(("ragtune full ingest / bare encode", "<= 1.05", f"{v:.3f}", _met(v <= 1.05)))
    peer = faster(lambda p: full[p]["wall_s"])
    v = full["ragtune"]["wall_s"] / full[peer]["wall_s"]
    rows.append((f"ragtune full ingest / faster peer's ({LABEL[peer]})", "<= 1.00", f"{v:.3f}", _met(v <= 1)))
    peer = faster(lambda p: inc[p]["wall_s"])
    v = inc["ragtune"]["wall_s"] / inc[peer]["wall_s"]
    rows.append(
        (f"ragtune 1% re-ingest / faster peer's ({LABEL[peer]})", "<= 1.00", f"{v:.3f}", _met(v <= 1))
    )
    # The query goal is judged one library at a time, as a process that uses one of them runs; the
    # interleaved figure (every call once per query, in one process) also charges each library for the
    # threads the previous call left spinning, and is shown as info. Runs from before the block pass
    # was added have only the interleaved figure.
    table = "latency_blocks" if "latency_blocks" in q else "latency"

    def p50(call: str) -> float:
        return lat(q, call, table=table)

    peer = faster(lambda p: p50(f"{p}/hybrid"))
    v = p50(f"{peer}/hybrid") / p50("ragtune/hybrid")
    goal = f"faster peer's ({LABEL[peer]}) hybrid p50 / ragtune's" + (
        ", one library at a time" if table == "latency_blocks" else ""
    )
    rows.append((goal, ">= 3.0", f"{v:.2f}", _met(v >= 3)))
    if quality:
        ours, theirs = quality["ragtune/hybrid"]["ndcg@10"], quality[f"{peer}/hybrid"]["ndcg@10"]
        goal = f"  ... at equal or better nDCG@10 (Semanlink hybrid, ragtune vs {LABEL[peer]})"
        rows.append((goal, ">= peer", f"{ours:.3f} vs {theirs:.3f}", _met(ours >= theirs)))
    torch_hybrid = p50(f"{TORCH_QUERIES}/hybrid")
    v = p50(f"{peer}/hybrid") / torch_hybrid
    goal = f"(info) the same with ragtune's queries embedded on torch ({num(torch_hybrid)} ms)"
    rows.append((goal, "-", f"{v:.2f}", _won(v >= 1)))
    v = p50(f"{peer}/hybrid") / p50("encode/query")
    goal = f"(info) {LABEL[peer]} hybrid p50 / bare torch query embedding p50"
    rows.append((goal, "-", f"{v:.2f}", "the most any torch-embedding system could reach"))
    if table == "latency_blocks":
        mixed = faster(lambda p: lat(q, f"{p}/hybrid"))
        v = lat(q, f"{mixed}/hybrid") / lat(q, "ragtune/hybrid")
        goal = f"(info) hybrid, interleaved with the other libraries' calls: {LABEL[mixed]} / ragtune"
        rows.append((goal, "-", f"{v:.2f}", _won(v >= 1)))
    peer = faster(lambda p: unch[p]["wall_s"])
    v = unch["ragtune"]["wall_s"] / unch[peer]["wall_s"]
    rows.append(
        (f"(info) ragtune unchanged re-run / faster peer's ({LABEL[peer]})", "-", f"{v:.3f}", _won(v <= 1))
    )
    peer = faster(lambda p: p50(f"{p}/dense"))
    v = p50(f"{peer}/dense") / p50("ragtune/dense")
    rows.append(
        (f"(info) faster peer's ({LABEL[peer]}) dense p50 / ragtune dense p50", "-", f"{v:.2f}", _won(v >= 1))
    )
    for peer in PEERS:
        v = p50(f"{peer}/bm25") / p50("ragtune/bm25")
        rows.append((f"(info) {LABEL[peer]} bm25 p50 / ragtune bm25 p50", "-", f"{v:.2f}", _won(v >= 1)))
    return rows


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _won(ok: bool) -> str:
    return "ragtune ahead" if ok else "peer ahead"


def print_goals(results: dict[str, Any]) -> None:
    out("### Goals from the issue")
    out()
    md_table(["chunks", "goal", "target", "measured", "verdict"], goals(results), left=2)


# ---------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 300 chunks, few queries, no real data set"
    )
    p.add_argument("--sizes", help="corpus sizes in chunks, comma-separated (default 2000,10000; quick 300)")
    p.add_argument("--skip-real", action="store_true", help="leave out the Semanlink quality section")
    p.add_argument("--queries", type=int, help="generated queries for latency (default 100; quick 15)")
    p.add_argument("--query-repeats", type=int, help="rounds over the query set (default 3; quick 2)")
    p.add_argument(
        "--ingest-repeats",
        type=int,
        help="full-ingest rounds (default 2 up to 5,000 chunks, else 1; quick 1)",
    )
    p.add_argument("--incremental-rounds", type=int, help="1%% edit + re-ingest rounds (default 3; quick 1)")
    p.add_argument("--unchanged-repeats", type=int, help="unchanged re-runs (default 5; quick 2)")
    p.add_argument("--semanlink-queries", type=int, help="use only the first N papers (default all)")
    p.add_argument(
        "--semanlink-latency-queries", type=int, default=40, help="papers timed as queries (default 40)"
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        help="torch.set_num_threads for everyone (default: torch's own choice, one per core); 1 avoids "
        "OpenMP spin-wait stalls when another process keeps a core busy",
    )
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache", help="where Semanlink is cached")
    p.add_argument(
        "--out", type=Path, help="JSON results (default bench/results/peers.json or peers-quick.json)"
    )
    args = p.parse_args(argv)
    defaults: dict[str, Any] = (
        {
            "sizes": "300",
            "queries": 15,
            "query_repeats": 2,
            "ingest_repeats": 1,
            "incremental_rounds": 1,
            "unchanged_repeats": 2,
        }
        if args.quick
        else {
            "sizes": "2000,10000",
            "queries": 100,
            "query_repeats": 3,
            "ingest_repeats": None,
            "incremental_rounds": 3,
            "unchanged_repeats": 5,
        }
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    args.skip_real = args.skip_real or args.quick
    if args.out is None:
        args.out = ROOT / "bench" / "results" / ("peers-quick.json" if args.quick else "peers.json")
    return args


def machine_info() -> dict[str, Any]:
    import torch

    versions = {}
    for package in VERSIONED:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None

    def git(*command: str) -> str:  # read-only commands
        try:
            done = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, timeout=10)
            return done.stdout
        except OSError:
            return ""

    commit = git("rev-parse", "--short", "HEAD").strip()
    # Porcelain lines are "XY path": the status columns may start with a space, so no strip before [3:].
    modified = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": commit or None,
        "modified_tracked_files": modified,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": os.getloadavg(),
        "versions": versions,
        "embedding_model": str(default_model_path()),
    }


def quiet_libraries() -> None:
    """The peers log per-call notices (HTTP-less Qdrant, bm25s progress, deprecations); keep stderr readable."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="qdrant_client")
    for name in ("bm25s", "llama_index", "httpx", "langchain", "langchain_core", "faiss"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def missing_peers() -> list[str]:
    """The packages of PEER_MODULES that are not installed."""
    import importlib.util

    def found(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            return False

    return sorted({package for module, package in PEER_MODULES.items() if not found(module)})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_peers()
    if missing:  # before any work, rather than an ImportError halfway through
        print(
            f"bench/peers.py: the peers are not installed ({', '.join(missing)}): "
            "run .venv/bin/pip install -e '.[bench]'",
            file=sys.stderr,
        )
        return 2
    quiet_libraries()
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    results: dict[str, Any] = {
        "meta": machine_info(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "sizes": {},
    }
    work = Path(tempfile.mkdtemp(prefix="ragtune-peers-"))
    log(f"working folder {work}")
    bench = Bench(args, work)
    try:
        log("loading all-MiniLM-L6-v2 once for everyone")
        results["model_load_s"], _ = timed(lambda: bench.encoder.encode(["warm up"]))
        meta = results["meta"]
        out(f"## ragtune vs LlamaIndex vs LangChain ({'quick' if args.quick else 'full'} run)")
        out()
        out(
            f"commit {meta['commit']}"
            + (
                f" with uncommitted changes to {', '.join(meta['modified_tracked_files'])}"
                if meta["modified_tracked_files"]
                else ""
            )
            + f", Python {meta['python']}, {meta['cpus']} CPUs, torch threads "
            f"{meta['torch_threads']}, load average at start {'/'.join(f'{x:.2f}' for x in meta['load_average_start'])}, "
            f"{meta['started']}. Versions: "
            + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
            + "."
        )
        out(
            "Same model object for all (all-MiniLM-L6-v2, normalized, batch 64), same chunks (one paragraph per "
            "file, counts and embedded texts checked). Everyone reads the corpus from files: ragtune "
            "RAG.ingest(folder), LlamaIndex SimpleDirectoryReader, LangChain DirectoryLoader(TextLoader); the "
            f"peers rebuild their BM25 retriever after an ingest that changed something. Fusion: RRF over the top "
            f"{FUSION_DEPTH} of each retriever everywhere. ragtune persists its index to disk (SQLite + files, "
            "fsync); the peers keep theirs in memory (LangChain's record manager is SQLite)."
        )
        out()
        for size in args.sizes:
            results["sizes"][str(size)] = bench_size(bench, size)
            print_size(results["sizes"][str(size)])
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2, default=str))  # partial results survive a crash
        if not args.skip_real:
            try:
                results["semanlink"] = bench_semanlink(bench)
                print_semanlink(results["semanlink"])
            except semanlink.DataUnavailable as exc:
                results["semanlink"] = {"skipped": str(exc)}
                out(f"Semanlink: SKIPPED, the data could not be fetched: {exc}")
                out()
        print_goals(results)
        results["meta"]["load_average_end"] = os.getloadavg()
        results["seconds"] = time.perf_counter() - _STARTED
        out(
            f"Total wall time {results['seconds']:.0f} s; load average at the end "
            f"{'/'.join(f'{x:.2f}' for x in results['meta']['load_average_end'])}."
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
