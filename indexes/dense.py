"""Dense retrieval: unit-length embeddings searched by inner product with faiss (exact, or HNSW)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from ragtune.core.errors import InputError, StoreFormatError
from ragtune.core.schema import text_hash
from ragtune.indexes.base import Ranking, damaged, load_array, load_json, read_params, write_params
from ragtune.indexes.embedding import Embedder


@dataclass(frozen=True)
class DenseConfig:
    index: str = field(
        default="flat",
        metadata={
            "help": "'flat': exact inner product; 'hnsw': approximate graph search for large stores.",
            "choices": ("flat", "hnsw"),
        },
    )
    hnsw_m: int = field(default=32, metadata={"help": "HNSW neighbours per node."})
    hnsw_ef_construction: int = field(default=200, metadata={"help": "HNSW build-time search width."})
    hnsw_ef_search: int = field(default=128, metadata={"help": "HNSW query-time search width."})
    hnsw_min_rows: int = field(
        default=20_000,
        metadata={
            "help": "With 'hnsw', segments with fewer rows are searched exactly: as fast, and no graph to build."
        },
    )

    def __post_init__(self) -> None:
        if self.index not in ("flat", "hnsw"):
            raise InputError(f"dense index={self.index!r}: use 'flat' or 'hnsw'")
        if self.hnsw_m < 2:
            raise InputError(f"hnsw_m={self.hnsw_m}: must be >= 2")


def build_faiss_index(vectors: np.ndarray, config: DenseConfig) -> faiss.Index:
    dim = vectors.shape[1]
    if config.index == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
        index.hnsw.efSearch = config.hnsw_ef_search
    else:
        index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(vectors)
    return index


@contextmanager
def one_openmp_thread() -> Iterator[None]:
    """faiss searches one query on a single thread: its OpenMP team is slower for one query at every size
    measured (10k-500k rows: 0.60 vs 0.78 ms, 62 vs 81 ms), and far slower right after an ONNX Runtime
    query encoding, whose worker threads are still spinning (10k rows: 3.4 vs 15.8 ms for both steps).

    Safe from several threads at once: OpenMP keeps the thread count (the nthreads-var ICV) per calling
    thread, so each search sets and restores its own thread's value and never another thread's."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


class DenseIndex:
    kind = "dense"

    def __init__(
        self,
        embedder: Embedder,
        vectors: np.ndarray,
        hashes: list[str],
        config: DenseConfig | None = None,
        faiss_index: faiss.Index | None = None,
    ):
        self.embedder = embedder
        self.config = config or DenseConfig()
        self.vectors = vectors
        self.hashes = hashes
        self.faiss_index = faiss_index
        self.embedded = 0  # texts sent to the embedder to build this index from its predecessor
        if faiss_index is None and len(vectors):
            self.faiss_index = build_faiss_index(vectors, self.config)

    @classmethod
    def empty(cls, embedder: Embedder, config: DenseConfig | None = None) -> DenseIndex:
        return cls(embedder, np.zeros((0, 0), dtype=np.float32), [], config)

    def __len__(self) -> int:
        return len(self.hashes)

    def updated(
        self,
        keep: np.ndarray,
        added_texts: Sequence[str],
        progress: bool = False,
    ) -> DenseIndex:
        """Embed only texts this index has never seen; a chunk whose text is unchanged keeps its vector."""
        added_hashes = [text_hash(t) for t in added_texts]
        known = {h: row for row, h in enumerate(self.hashes)}
        to_embed: dict[str, str] = {}
        for h, text in zip(added_hashes, added_texts, strict=True):
            if h not in known:
                to_embed.setdefault(h, text)
        fresh = (
            self.embedder.encode(list(to_embed.values()), progress=progress)
            if to_embed
            else np.zeros((0, self.vectors.shape[1]), dtype=np.float32)
        )
        fresh_row = {h: i for i, h in enumerate(to_embed)}
        dim = fresh.shape[1] if len(fresh) else self.vectors.shape[1]
        added = np.empty((len(added_texts), dim), dtype=np.float32)
        for i, h in enumerate(added_hashes):
            added[i] = fresh[fresh_row[h]] if h in fresh_row else self.vectors[known[h]]
        kept_rows = np.flatnonzero(keep)
        kept = self.vectors[kept_rows] if len(self.vectors) else np.zeros((0, dim), dtype=np.float32)
        vectors = np.ascontiguousarray(np.vstack([kept, added]) if len(kept) else added)
        hashes = [self.hashes[r] for r in kept_rows] + added_hashes
        result = DenseIndex(self.embedder, vectors, hashes, self.config)
        result.embedded = len(to_embed)
        return result

    def search(self, query: str, k: int) -> Ranking:
        if not len(self) or k <= 0:
            return Ranking.empty()
        query_vector = self.embedder.encode([query], query=True)
        if query_vector.shape[1] != self.vectors.shape[1]:
            raise StoreFormatError(
                f"the embedding model gives {query_vector.shape[1]}-dimensional vectors but the index holds "
                f"{self.vectors.shape[1]}-dimensional ones: rebuild with `ragtune ingest --rebuild`"
            )
        with one_openmp_thread():
            scores, rows = self.faiss_index.search(query_vector, min(k, len(self)))
        found = rows[0] >= 0
        return Ranking(rows[0][found].astype(np.int64), scores[0][found])

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "vectors.npy", self.vectors, allow_pickle=False)
        (directory / "hashes.json").write_text(json.dumps(self.hashes))
        if self.config.index != "flat" and self.faiss_index is not None:
            # A flat index is rebuilt from vectors.npy in milliseconds; a graph is worth keeping.
            faiss.write_index(self.faiss_index, str(directory / "index.faiss"))
        write_params(directory, self.kind, model=self.embedder.name, dense=asdict(self.config))

    @classmethod
    def load(cls, directory: Path, embedder: Embedder) -> DenseIndex:
        params = read_params(directory, cls.kind)
        if params["model"] != embedder.name:
            raise StoreFormatError(
                f"this index was embedded with {params['model']!r} but the embedder is {embedder.name!r}: "
                "use the same model, or rebuild with `ragtune ingest --rebuild`"
            )
        config = DenseConfig(**params["dense"])
        vectors = load_array(directory / "vectors.npy", 2, np.float32)
        hashes = load_json(directory / "hashes.json", list)
        if len(hashes) != len(vectors) or not all(isinstance(h, str) for h in hashes):
            raise damaged(directory / "hashes.json", f"not one text hash per row of {len(vectors)} vectors")
        check_unit_length(directory / "vectors.npy", vectors)
        saved = directory / "index.faiss"
        faiss_index = None
        if saved.exists():
            try:
                faiss_index = faiss.read_index(str(saved))
            except RuntimeError as exc:  # faiss reports every unreadable file as a RuntimeError
                raise damaged(saved, str(exc).strip().splitlines()[-1]) from exc
            if faiss_index.ntotal != len(vectors) or (len(vectors) and faiss_index.d != vectors.shape[1]):
                raise damaged(saved, f"{faiss_index.ntotal} vectors of {faiss_index.d} dimensions")
        if faiss_index is not None and config.index == "hnsw":
            faiss_index.hnsw.efSearch = config.hnsw_ef_search
        return cls(embedder, vectors, hashes, config, faiss_index)


def check_unit_length(path: Path, vectors: np.ndarray, sample: int = 4096) -> None:
    """Refuse vectors that cannot be embeddings: not finite, or longer than unit length (embeddings are
    normalised). Random bytes give lengths near 1e37; a sample of rows catches a file overwritten as a
    whole at no cost; single flipped bits are what `Generation.verify`'s checksums are for."""
    if not len(vectors):
        return
    rows = vectors[:: max(1, len(vectors) // sample)]
    with np.errstate(all="ignore"):
        lengths = np.sqrt(np.einsum("ij,ij->i", rows.astype(np.float64), rows.astype(np.float64)))
    if not np.all(lengths <= 1.001):  # also false for NaN
        raise damaged(path, "vectors that are not unit-length embeddings")
