"""Chunks in a Milvus collection: dense vectors, BM25 term weights in a sparse field, hybrid search.

The SQLite store stays the record of documents and of the current generation; Milvus holds the
searchable rows. Each row carries the generation that added it (`born`) and the one that removed it
(`died`, `LIVE` while it is live), and every search filters on the generation the reader's store
snapshot names: `born <= G and died > G`. So a search during an ingest sees the old generation or
the new one, never a mix, and a crashed ingest leaves rows no generation sees (`discard_after`
removes them before the next ingest). Rows of generations no reader can still be on are deleted by
`prune`.

A chunk keeps its id when its document is edited, so the primary key is `chunk id@generation`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragtune.core.errors import InputError, RagtuneError

LIVE = 2**62  # `died` of a live row
_BATCH = 512  # rows per insert, upsert or `in` filter
_TIE_MARGIN = 10  # hybrid hits asked for beyond k, so that equal scores at the k-th place are ordered here


TOKEN_ENV = "RAGTUNE_MILVUS_TOKEN"  # a secret: read from the environment, never saved in config.json


def collection_name(collection: str, index_folder: str) -> str:
    """The collection an index folder's rows go to: the one asked for, or one named after the folder."""
    if collection:
        return collection
    return "ragtune_" + hashlib.sha256(index_folder.encode()).hexdigest()[:16]


def connect(uri: str) -> Any:
    """A MilvusClient, or one clear error: pymilvus missing, or the server not answering."""
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise RagtuneError("the Milvus backend needs pymilvus: pip install 'ragtune[milvus]'") from exc
    if not uri:
        raise InputError("the Milvus backend needs the server's address, e.g. http://localhost:19530")
    try:
        return MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""), timeout=10)
    except Exception as exc:  # pymilvus raises MilvusException or grpc errors
        raise RagtuneError(f"cannot reach Milvus at {uri}: {reason(exc)}") from exc


def reason(exc: Exception) -> str:
    """The first line of what Milvus or gRPC said."""
    return str(getattr(exc, "message", "") or exc).strip().splitlines()[0][:300]


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    score: float
    scores: dict[str, float]  # each retriever's own score, where known


class MilvusIndex:
    """One collection: what an ingest writes and what a search reads."""

    # Everything a row holds: what `remove` and `discard_after` read back to upsert with a new `died`.
    FIELDS = ["pk", "chunk_id", "text_hash", "sparse", "dense", "born"]

    def __init__(self, client: Any, name: str, dimensions: int):
        self.client, self.name, self.dimensions = client, name, dimensions

    # -- the collection ---------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the collection (fields and indexes) unless it exists; load it."""
        from pymilvus import DataType, MilvusClient

        if not self.client.has_collection(self.name):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=256)
            schema.add_field("chunk_id", DataType.VARCHAR, max_length=200)
            schema.add_field("text_hash", DataType.VARCHAR, max_length=64)
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)  # BM25 term weights (bm25_terms.py)
            schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dimensions)
            schema.add_field("born", DataType.INT64)
            schema.add_field("died", DataType.INT64)
            indexes = self.client.prepare_index_params()
            indexes.add_index("dense", index_type="FLAT", metric_type="IP")  # exact, as the local flat index
            indexes.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
            self.client.create_collection(self.name, schema=schema, index_params=indexes)
        else:
            found = self.dense_dimensions()
            if found != self.dimensions:
                raise InputError(
                    f"Milvus collection {self.name} holds {found}-d vectors, the embedding model gives "
                    f"{self.dimensions}-d: use another collection (--milvus-collection)"
                )
        self.client.load_collection(self.name)

    def dense_dimensions(self) -> int | None:
        for described in self.client.describe_collection(self.name).get("fields", []):
            if described.get("name") == "dense":
                return int(described.get("params", {}).get("dim", 0))
        return None

    def drop(self) -> None:
        if self.client.has_collection(self.name):
            self.client.drop_collection(self.name)

    # -- writes -----------------------------------------------------------------------------------

    def add(
        self,
        number: int,
        chunk_ids: Sequence[str],
        hashes: Sequence[str],
        sparse: Sequence[dict[int, float]],
        vectors: np.ndarray,
    ) -> None:
        """Rows born in generation `number` (invisible until the store makes it current)."""
        for start in range(0, len(chunk_ids), _BATCH):
            end = start + _BATCH
            rows = [
                {
                    "pk": f"{chunk_id}@{number}",
                    "chunk_id": chunk_id,
                    "text_hash": text_hash,
                    "sparse": weights,
                    "dense": vector.tolist(),
                    "born": number,
                    "died": LIVE,
                }
                for chunk_id, text_hash, weights, vector in zip(
                    chunk_ids[start:end],
                    hashes[start:end],
                    sparse[start:end],
                    vectors[start:end],
                    strict=True,
                )
            ]
            self.client.insert(self.name, rows)

    def remove(self, number: int, chunk_ids: Sequence[str] | None) -> dict[str, np.ndarray]:
        """Mark the live rows of `chunk_ids` (None: every live row) as dead from generation `number` on
        (readers of older generations still see them); return their vectors by text hash, for reuse."""
        vectors: dict[str, np.ndarray] = {}
        for rows in self._live_rows(chunk_ids) if chunk_ids is not None else self._every_live_row(number):
            for row in rows:
                vectors[row["text_hash"]] = np.asarray(row["dense"], dtype=np.float32)
            self.client.upsert(self.name, [{**row, "died": number} for row in rows])
        return vectors

    def discard_after(self, current: int) -> int:
        """Undo what ingests that never committed wrote: rows born after `current` go, rows they marked
        dead live again. Returns how many rows came back to life."""
        self.client.delete(self.name, filter=f"born > {current}")
        revived = 0
        for rows in self._until_none_left(f"died > {current} and died < {LIVE}"):
            self.client.upsert(self.name, [{**row, "died": LIVE} for row in rows])
            revived += len(rows)
        return revived

    def seal(self, timeout: float = 300.0) -> None:
        """Flush the rows written so far into sealed segments and wait until their indexes are built.
        Milvus searches rows still in growing segments by brute force: at 10k rows on milvus-lite a
        hybrid query took 1.8 s before this and 46 ms after."""
        self.client.flush(self.name)
        deadline = time.monotonic() + timeout
        for field_name in ("dense", "sparse"):
            while self.client.describe_index(self.name, field_name).get("pending_index_rows", 0) > 0:
                if time.monotonic() > deadline:
                    return  # searches are right meanwhile, only slower
                time.sleep(0.1)

    def prune(self, oldest_kept: int) -> None:
        """Delete rows no kept generation sees: dead at or before the oldest generation still kept."""
        self.client.delete(self.name, filter=f"died <= {oldest_kept}")

    def _every_live_row(self, number: int) -> Iterator[list[dict[str, Any]]]:
        """Live rows born before `number`, a batch at a time."""
        return self._until_none_left(f"died == {LIVE} and born < {number}")

    def _until_none_left(self, condition: str) -> Iterator[list[dict[str, Any]]]:
        """Batches of the rows matching `condition`, asked for again after each one: the caller changes
        each batch so that it no longer matches (no offsets to go stale meanwhile)."""
        while True:
            rows = self.client.query(
                self.name,
                filter=condition,
                output_fields=self.FIELDS,
                limit=_BATCH,
                consistency_level="Strong",
            )
            if not rows:
                return
            yield rows

    def _live_rows(self, chunk_ids: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
        ids = list(chunk_ids)
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            rows = self.client.query(
                self.name,
                # A literal list: milvus-lite's server does not take filter templates (`in {ids}`).
                filter=f"died == {LIVE} and chunk_id in {json.dumps(batch)}",
                output_fields=self.FIELDS,
                limit=len(batch) * 2,
                consistency_level="Strong",
            )
            if rows:
                yield rows

    # -- reads ------------------------------------------------------------------------------------

    def count(self, generation: int) -> int:
        rows = self.client.query(
            self.name, filter=_visible(generation), output_fields=["count(*)"], consistency_level="Strong"
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def search(self, generation: int, mode: str, query: Any, k: int) -> list[Hit]:
        """The k best live rows of `generation` for one retriever: `bm25` (query: the sparse vector of
        bm25_terms.py) or `dense` (query: the embedding; exact inner product)."""
        if mode not in ("bm25", "dense"):
            raise InputError(
                f"mode={mode!r}: the Milvus backend searches bm25, dense and hybrid (tfidf has no index there)"
            )
        field_name = "sparse" if mode == "bm25" else "dense"
        found = self.client.search(
            self.name,
            data=[_wire(query)],
            anns_field=field_name,
            search_params={"metric_type": "IP"},
            limit=k,
            filter=_visible(generation),
            output_fields=["chunk_id"],
            consistency_level="Strong",
        )
        return [Hit(hit["entity"]["chunk_id"], float(hit["distance"]), {}) for hit in found[0]]

    def hybrid(
        self, generation: int, sparse: dict[int, float], vector: np.ndarray, k: int, depth: int, rrf_k: int
    ) -> list[Hit]:
        """BM25 and dense fused by reciprocal rank fusion on the server, each handing it its top `depth`.
        Each hit also carries both retrievers' scores, computed from the row's own vectors."""
        from pymilvus import AnnSearchRequest, RRFRanker

        visible = _visible(generation)
        requests = [
            AnnSearchRequest([sparse], "sparse", {"metric_type": "IP"}, depth, filter=visible),
            AnnSearchRequest([_wire(vector)], "dense", {"metric_type": "IP"}, depth, filter=visible),
        ]
        found = self.client.hybrid_search(
            self.name,
            requests,
            RRFRanker(rrf_k),
            limit=k + _TIE_MARGIN,
            output_fields=["chunk_id", "sparse", "dense"],
            consistency_level="Strong",
        )
        hits = []
        query_vector = np.asarray(vector, dtype=np.float32)
        for hit in found[0]:
            row = hit["entity"]
            scores = {"dense": float(np.asarray(row["dense"], dtype=np.float32) @ query_vector)}
            shared = sparse.keys() & row["sparse"].keys()
            if shared:
                scores["bm25"] = float(sum(sparse[t] * row["sparse"][t] for t in shared))
            hits.append(Hit(row["chunk_id"], float(hit["distance"]), scores))
        return sorted(hits, key=_local_tie_order)[:k]


def _local_tie_order(hit: Hit) -> tuple[float, float, float]:
    """Equal fused scores in the order the local fusion gives them (retrieval.reciprocal_rank_fusion
    keeps BM25's ranking first, then dense-only hits by dense rank): higher BM25 score first, then higher
    dense score. Fused scores are compared to 7 decimals, as the server computes them in float32."""
    return (-round(hit.score, 7), -hit.scores.get("bm25", -math.inf), -hit.scores.get("dense", -math.inf))


def _visible(generation: int) -> str:
    return f"born <= {generation} and died > {generation}"


def _wire(query: Any) -> Any:
    """A query as pymilvus sends it: a sparse dict as it is, a dense vector as a list of floats."""
    return query if isinstance(query, dict) else np.asarray(query, dtype=np.float32).tolist()
