"""An index folder whose searchable rows live in Milvus: what an ingest sends there, what a search asks.

The folder keeps its SQLite store (documents, chunks, the current generation and the BM25 statistics);
the collection keeps one row per chunk and generation (milvus.py). An ingest, holding the folder's
write lock:
  1. discards what an ingest that never committed left (rows born after the current generation);
  2. marks the rows of changed and deleted chunks dead from generation N = current + 1, taking their
     vectors back so that an unchanged text is not embedded again;
  3. inserts the new rows, born at N, and flushes them into indexed segments;
  4. commits the documents, the BM25 statistics and generation N in one store transaction;
  5. deletes rows dead before the current generation (no reader can still be on one).
A search filters on the generation of its store snapshot, so it sees the state before or after an
ingest, never a mix, and a crash anywhere before step 4 leaves the old state searchable as it was.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.core.errors import InputError, RagtuneError, StoreFormatError
from ragtune.core.schema import Chunk, text_hash
from ragtune.indexes.embedding import Embedder
from ragtune.indexes.tokenize import Tokenizer
from ragtune.rag.backends.bm25_terms import BM25Terms, TermUpdate
from ragtune.rag.backends.milvus import Hit, MilvusIndex, collection_name, connect, reason
from ragtune.rag.config import RAGConfig, RetrievalConfig
from ragtune.rag.retrieval import Retrieved, candidate_depth, combine, retrievers
from ragtune.rag.store.database import Store
from ragtune.rag.store.segment_writer import vectors_reusing


@dataclass
class PendingWrite:
    """Rows sent for generation `number`, not yet visible: `commit` goes in the store transaction that
    makes it current, `after_commit` once that transaction is done."""

    number: int
    embedded: int
    terms: TermUpdate
    backend: MilvusBackend
    current: int

    def commit(self) -> None:
        self.backend.terms.commit(self.terms)

    def after_commit(self) -> None:
        # The generation is committed already: a failure here is not the ingest's, only tidying.
        try:
            with self.backend.errors("clearing old rows"):
                self.backend.index().prune(self.current)
        except RagtuneError as exc:
            warnings.warn(f"{exc}; the next ingest deletes them", stacklevel=2)


class MilvusBackend:
    """One index folder's Milvus collection, connected on first use."""

    def __init__(self, folder: Path, config: RAGConfig, store: Store):
        self.config, self.store = config, store
        self.uri = config.backend.milvus_uri
        self.name = collection_name(config.backend.milvus_collection, str(folder.resolve()))
        self.terms = BM25Terms(store, Tokenizer(config.tokenizer), config.bm25)
        self._index: MilvusIndex | None = None
        self._lock = threading.Lock()

    def index(self) -> MilvusIndex:
        """The collection's index; `dimensions` is 0 while the collection does not exist."""
        with self._lock:
            if self._index is None:
                client = connect(self.uri)
                with self.errors("opening the collection"):
                    index = MilvusIndex(client, self.name, 0)
                    if client.has_collection(self.name):
                        index.dimensions = index.dense_dimensions() or 0
                self._index = index
            return self._index

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Milvus's and gRPC's errors as one line naming the server, the collection and the step."""
        try:
            yield
        except RagtuneError:
            raise
        except Exception as exc:  # MilvusException, grpc.RpcError, ...
            raise RagtuneError(f"Milvus at {self.uri} ({self.name}), {doing}: {reason(exc)}") from exc

    # -- ingest -----------------------------------------------------------------------------------

    def write(
        self,
        current: int,
        removed: set[str],
        new_chunks: list[Chunk],
        embedder: Embedder,
        *,
        rewrite_all: bool,
        reuse_vectors: bool,
        tell: Callable[[str, int, int], None] | None = None,
        progress: bool = False,
    ) -> PendingWrite:
        """Send generation current + 1: `removed` chunk ids go, `new_chunks` come. `rewrite_all` (a
        rebuild or a compaction) marks every live row dead and writes every stored chunk again, with
        the BM25 length norm of the corpus as it is now; `reuse_vectors` keeps the vectors of texts
        that are already there."""
        number = current + 1
        kept: list[tuple[str, str]] = []
        if rewrite_all:
            kept = [(cid, text) for cid, text in self.store.iter_chunks() if cid not in removed]
        removed_texts = [row.text for row in self.store.chunks(sorted(removed)).values()]
        removed_texts += [text for _, text in kept]
        ids = [cid for cid, _ in kept] + [c.id for c in new_chunks]
        texts = [text for _, text in kept] + [c.text for c in new_chunks]
        index = self.index()
        known: dict[str, np.ndarray] = {}
        if index.dimensions:  # the collection exists
            with self.errors("discarding an unfinished ingest"):
                index.discard_after(current)
            with self.errors("marking rows removed"):
                known = index.remove(number, None if rewrite_all else sorted(removed))
        hashes = [text_hash(t) for t in texts]
        vectors, embedded = vectors_reusing(
            texts, hashes, known if reuse_vectors else {}, embedder, tell, progress
        )
        terms = self.terms.plan(removed_texts, texts, reset=rewrite_all)
        if ids:
            if not index.dimensions:
                index.dimensions = vectors.shape[1]
            with self.errors("creating the collection"):
                index.ensure()
            if tell:
                tell("indexing", 0, len(ids))
            with self.errors("inserting rows"):
                index.add(number, ids, hashes, terms.weights, vectors)
        if index.dimensions:
            with self.errors("sealing the new rows"):
                index.seal()
            if tell:
                tell("indexing", len(ids), len(ids))
        return PendingWrite(number, embedded, terms, self, current)

    # -- search -----------------------------------------------------------------------------------

    def generation(self, number: int, embedder: Callable[[], Embedder]) -> MilvusGeneration:
        return MilvusGeneration(self, number, embedder)

    def status(self, generation: int) -> dict[str, Any]:
        return {"milvus_uri": self.uri, "milvus_collection": self.name}

    def verify(self, generation: int, chunks: int) -> dict[str, int]:
        """The rows `generation` sees, which must be the store's chunks, one each."""
        index = self.index()
        with self.errors("counting rows"):
            rows = index.count(generation) if index.dimensions else 0
        if rows != chunks:
            raise StoreFormatError(
                f"Milvus collection {self.name} has {rows} rows in generation {generation}, the store "
                f"{chunks} chunks: run `ragtune ingest DIR --rebuild` to send every chunk again"
            )
        return {"rows": rows}


class MilvusGeneration:
    """Generation `number` as the Milvus backend searches it (RAG.search calls `retrieve` inside the
    store snapshot that named the generation, which the BM25 idfs are read from)."""

    def __init__(self, backend: MilvusBackend, number: int, embedder: Callable[[], Embedder]):
        self.backend, self.number, self.embedder = backend, number, embedder

    def retrieve(self, query: str, k: int, config: RetrievalConfig) -> list[Retrieved]:
        kinds = retrievers(config)
        if "tfidf" in kinds:
            raise InputError(
                "the Milvus backend has no TF-IDF index: search bm25, dense or hybrid "
                "(with the tfidf weight at 0)"
            )
        if self.number == 0 or not self.backend.index().dimensions:
            return []
        sparse = self.backend.terms.query_vector(query) if "bm25" in kinds else {}
        vector = self.embedder().encode([query], query=True)[0] if "dense" in kinds else None
        depth = candidate_depth(config, k)
        weights = config.weights
        if config.mode == "hybrid" and len(kinds) == 2 and sparse and weights["bm25"] == weights["dense"]:
            # The server fuses; its RRF has no weights, so it is used only when they are equal (and the
            # scores are scaled by that weight, to match the local fusion's).
            with self.backend.errors("hybrid search"):
                hits = self.backend.index().hybrid(self.number, sparse, vector, k, depth, config.rrf_k)
            weight = weights["bm25"]
            return [Retrieved(h.chunk_id, h.score * weight, h.scores, {}) for h in hits]
        # One search per retriever, fused here as the local backend fuses them.
        queries = {"bm25": sparse, "dense": vector}
        ranked = {kind: self._search(kind, queries[kind], depth) for kind in kinds}
        return combine(
            {kind: [h.chunk_id for h in hits] for kind, hits in ranked.items()},
            {kind: [h.score for h in hits] for kind, hits in ranked.items()},
            config,
            k,
        )

    def _search(self, kind: str, query: Any, depth: int) -> list[Hit]:
        if kind == "bm25" and not query:  # no query term any live row holds
            return []
        with self.backend.errors(f"{kind} search"):
            return self.backend.index().search(self.number, kind, query, depth)
