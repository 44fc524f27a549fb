"""What the three systems of bench/peers.py share: the constants of the comparison, the one embedding
model they all embed with (counted by a Meter), and the small interface each system is driven through."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

K = 10
FUSION_DEPTH = 50  # ragtune's RetrievalConfig.depth: candidates each retriever gives to RRF
BATCH_SIZE = 64  # ragtune's EmbeddingConfig.batch_size, used for every encode here
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


def result_key(text: str, metadata: dict[str, Any]) -> str:
    """How a hit is compared across systems: its record id where it has one, else its text."""
    return str(metadata["id"]) if "id" in metadata else text.strip()


def ingest_phases(start: float, loaded: float, indexed: float, done: float, changed: int) -> dict[str, float]:
    """A peer's ingest from its perf_counter marks: reading the files, indexing (embedding and storing),
    rebuilding its BM25 retriever; and how many documents it changed."""
    return {
        "load_s": loaded - start,
        "index_s": indexed - loaded,
        "bm25_s": done - indexed,
        "total_s": done - start,
        "changed_documents": changed,
    }
