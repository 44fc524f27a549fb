"""ragtune as a system under test in bench/peers.py: its own embedder, counted, and a second, search-only
handle whose queries are embedded on torch as the peers' are."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.peers_base import MODES, K, Meter, SharedEncoder, Source, result_key
from ragtune import RAG
from ragtune.indexes.embedding import SentenceTransformerEmbedder


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
        return [result_key(h.text, h.metadata) for h in self.rag.search(query, K, mode=mode)]

    def chunks(self) -> int:
        return int(self.rag.status()["chunks"])

    def close(self) -> None:
        self.rag.close()
        if self.owner:
            shutil.rmtree(self.index_dir, ignore_errors=True)
