"""Chunks in a Milvus collection: dense vectors, server-side BM25 (full-text search), hybrid search.

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
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragtune.core.errors import InputError, RagtuneError
from ragtune.indexes.bm25 import BM25Config

LIVE = 2**62  # `died` of a live row
_BATCH = 512  # rows per insert, upsert or `in` filter
_MAX_TEXT = 65_535  # a VARCHAR's bytes in Milvus


TOKEN_ENV = "RAGTUNE_MILVUS_TOKEN"  # a secret: read from the environment, never saved in config.json


@dataclass(frozen=True)
class MilvusConfig:
    """Where an index's rows live in Milvus."""

    uri: str = field(default="", metadata={"help": "Milvus server, e.g. http://localhost:19530."})
    collection: str = field(
        default="", metadata={"help": "Collection (default: a name derived from the index folder)."}
    )


def collection_name(config: MilvusConfig, index_folder: str) -> str:
    if config.collection:
        return config.collection
    return "ragtune_" + hashlib.sha256(index_folder.encode()).hexdigest()[:16]


def connect(config: MilvusConfig) -> Any:
    """A MilvusClient, or one clear error: pymilvus missing, or the server not answering."""
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise RagtuneError("the Milvus backend needs pymilvus: pip install 'ragtune[milvus]'") from exc
    if not config.uri:
        raise InputError("the Milvus backend needs the server's address, e.g. http://localhost:19530")
    try:
        return MilvusClient(uri=config.uri, token=os.environ.get(TOKEN_ENV, ""), timeout=10)
    except Exception as exc:  # pymilvus raises MilvusException or grpc errors
        raise RagtuneError(f"cannot reach Milvus at {config.uri}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "message", "") or exc).strip().splitlines()[0][:300]


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    score: float


class MilvusIndex:
    """One collection: what an ingest writes and what a search reads."""

    def __init__(self, client: Any, name: str, dimensions: int, bm25: BM25Config):
        self.client, self.name, self.dimensions, self.bm25 = client, name, dimensions, bm25

    # -- the collection ---------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the collection (fields, BM25 function, indexes) unless it exists; load it."""
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        if not self.client.has_collection(self.name):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=256)
            schema.add_field("chunk_id", DataType.VARCHAR, max_length=200)
            schema.add_field("text", DataType.VARCHAR, max_length=_MAX_TEXT, enable_analyzer=True)
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dimensions)
            schema.add_field("text_hash", DataType.VARCHAR, max_length=64)
            schema.add_field("born", DataType.INT64)
            schema.add_field("died", DataType.INT64)
            schema.add_function(
                Function(
                    name="bm25",
                    function_type=FunctionType.BM25,
                    input_field_names=["text"],
                    output_field_names=["sparse"],
                )
            )
            indexes = self.client.prepare_index_params()
            indexes.add_index("dense", index_type="FLAT", metric_type="IP")
            indexes.add_index(
                "sparse",
                index_type="SPARSE_INVERTED_INDEX",
                metric_type="BM25",
                params={"bm25_k1": self.bm25.k1, "bm25_b": self.bm25.b},
            )
            self.client.create_collection(self.name, schema=schema, index_params=indexes)
        self.client.load_collection(self.name)

    def drop(self) -> None:
        if self.client.has_collection(self.name):
            self.client.drop_collection(self.name)

    # -- writes -----------------------------------------------------------------------------------

    def add(
        self,
        number: int,
        chunk_ids: Sequence[str],
        texts: Sequence[str],
        hashes: Sequence[str],
        vectors: np.ndarray,
    ) -> None:
        """Rows born in generation `number` (invisible until the store makes it current)."""
        for start in range(0, len(chunk_ids), _BATCH):
            rows = [
                {
                    "pk": f"{chunk_id}@{number}",
                    "chunk_id": chunk_id,
                    "text": _fit(text),
                    "text_hash": text_hash,
                    "dense": vector.tolist(),
                    "born": number,
                    "died": LIVE,
                }
                for chunk_id, text, text_hash, vector in zip(
                    chunk_ids[start : start + _BATCH],
                    texts[start : start + _BATCH],
                    hashes[start : start + _BATCH],
                    vectors[start : start + _BATCH],
                    strict=True,
                )
            ]
            self.client.insert(self.name, rows)

    def remove(self, number: int, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Mark the live rows of `chunk_ids` as dead from generation `number` on (readers of older
        generations still see them); return their vectors by text hash, for reuse."""
        vectors: dict[str, np.ndarray] = {}
        for rows in self._live_rows(chunk_ids, ["pk", "chunk_id", "text", "text_hash", "dense", "born"]):
            for row in rows:
                vectors[row["text_hash"]] = np.asarray(row["dense"], dtype=np.float32)
            self.client.upsert(self.name, [{**_writable(row), "died": number} for row in rows])
        return vectors

    def discard_after(self, current: int) -> None:
        """Undo what ingests that never committed wrote: rows born after `current` go, rows they marked
        dead live again."""
        self.client.delete(self.name, filter=f"born > {current}")
        fields = ["pk", "chunk_id", "text", "text_hash", "dense", "born"]
        while True:
            rows = self.client.query(
                self.name, filter=f"died > {current} and died < {LIVE}", output_fields=fields, limit=_BATCH
            )
            if not rows:
                return
            self.client.upsert(self.name, [{**_writable(row), "died": LIVE} for row in rows])

    def prune(self, oldest_kept: int) -> None:
        """Delete rows no kept generation sees: dead at or before the oldest generation still kept."""
        self.client.delete(self.name, filter=f"died <= {oldest_kept}")

    def _live_rows(self, chunk_ids: Sequence[str], fields: list[str]) -> Iterator[list[dict[str, Any]]]:
        ids = list(chunk_ids)
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            rows = self.client.query(
                self.name,
                # A literal list: milvus-lite's server does not take filter templates (`in {ids}`).
                filter=f"died == {LIVE} and chunk_id in {json.dumps(batch)}",
                output_fields=fields,
                limit=len(batch) * 2,
            )
            if rows:
                yield rows

    # -- reads ------------------------------------------------------------------------------------

    def count(self, generation: int) -> int:
        rows = self.client.query(self.name, filter=_visible(generation), output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def search(self, generation: int, mode: str, query: str, vector: np.ndarray | None, k: int) -> list[Hit]:
        """The k best live rows of `generation` for one retriever: `bm25` (Milvus's BM25 over its own
        analyzer's tokens) or `dense` (exact inner product)."""
        if mode == "bm25":
            data, field_name, params = [query], "sparse", {"metric_type": "BM25"}
        elif mode == "dense":
            data, field_name, params = [np.asarray(vector).tolist()], "dense", {"metric_type": "IP"}
        else:
            raise InputError(
                f"mode={mode!r}: the Milvus backend searches bm25, dense and hybrid (tfidf has no index there)"
            )
        found = self.client.search(
            self.name,
            data=data,
            anns_field=field_name,
            search_params=params,
            limit=k,
            filter=_visible(generation),
            output_fields=["chunk_id"],
            consistency_level="Strong",
        )
        return [Hit(hit["entity"]["chunk_id"], float(hit["distance"])) for hit in found[0]]

    def hybrid(
        self, generation: int, query: str, vector: np.ndarray, k: int, depth: int, rrf_k: int
    ) -> list[Hit]:
        """BM25 and dense fused by reciprocal rank fusion on the server, each handing it its top `depth`."""
        from pymilvus import AnnSearchRequest, RRFRanker

        visible = _visible(generation)
        requests = [
            AnnSearchRequest([query], "sparse", {"metric_type": "BM25"}, depth, filter=visible),
            AnnSearchRequest(
                [np.asarray(vector).tolist()], "dense", {"metric_type": "IP"}, depth, filter=visible
            ),
        ]
        found = self.client.hybrid_search(
            self.name,
            requests,
            RRFRanker(rrf_k),
            limit=k,
            output_fields=["chunk_id"],
            consistency_level="Strong",
        )
        return [Hit(hit["entity"]["chunk_id"], float(hit["distance"])) for hit in found[0]]


def _visible(generation: int) -> str:
    return f"born <= {generation} and died > {generation}"


def _writable(row: dict[str, Any]) -> dict[str, Any]:
    """A row as queried, ready to upsert: the BM25 function's output is computed by the server."""
    return {key: value for key, value in row.items() if key != "sparse"}


def _fit(text: str) -> str:
    """A chunk's text within a VARCHAR's byte limit (chunks are far shorter; a bound, not a cut)."""
    data = text.encode("utf-8")
    return text if len(data) <= _MAX_TEXT else data[:_MAX_TEXT].decode("utf-8", errors="ignore")
