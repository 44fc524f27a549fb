"""Segments: immutable slices of an index, written once and memory-mapped when read.

A segment holds, for its rows (one per chunk): the chunk ids, the text hashes, term counts both by row
(CSR: what a row contains, for corpus statistics and merges) and by term (CSC postings: which rows
contain a term, for queries), row lengths, and the dense vectors. Every array is a plain .npy file read
with `mmap_mode="r"`, so opening a segment reads nothing and a searcher's memory does not grow with the
corpus. BM25 and TF-IDF share the one set of counts: texts are tokenized once.

Rows are never removed from a segment: a generation records which of them are deleted, and merges
write a new segment from the live rows of several.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse as sp

from ragtune.indexes.base import damaged, load_json
from ragtune.indexes.dense import DenseConfig, build_faiss_index, check_unit_length

SEGMENT_FORMAT = 1
SEGMENT_INFO = "segment.json"
GRAPH = "hnsw.faiss"  # written for large segments when the dense index is "hnsw"
ARRAYS = (
    "chunk_ids",  # S: chunk id of each row
    "sorted_ids",  # S: the chunk ids sorted, to find rows by id with a binary search
    "id_order",  # int64: the row of each sorted id
    "hashes",  # S64: sha256 of each row's text, so an edited document re-embeds only changed chunks
    "lengths",  # int64: tokens per row (BM25's document length)
    "row_indptr",  # int64, rows + 1
    "row_terms",  # int32: term columns of each row, sorted
    "row_tf",  # int32: how often each of those terms occurs
    "post_indptr",  # int64, vocabulary size at writing + 1
    "post_rows",  # int32: rows holding each term, sorted
    "post_tf",  # int32
    "vectors",  # float32 (rows x dimensions), unit length
)


@dataclass
class SegmentData:
    """A segment's content in memory, before it is written."""

    chunk_ids: list[str]
    hashes: list[str]
    counts: sp.csr_matrix  # rows x vocabulary, int32
    vectors: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.chunk_ids)


def concatenate(parts: Sequence[SegmentData], width: int, dimensions: int) -> SegmentData:
    """One segment's content from several, in order (a merge); `width` is the current vocabulary size."""
    counts = [
        sp.csr_matrix((p.counts.data, p.counts.indices, p.counts.indptr), (len(p), width)) for p in parts
    ]
    vectors = [p.vectors for p in parts if len(p)]
    return SegmentData(
        [c for p in parts for c in p.chunk_ids],
        [h for p in parts for h in p.hashes],
        sp.vstack(counts, format="csr", dtype=np.int32)
        if counts
        else sp.csr_matrix((0, width), dtype=np.int32),
        np.vstack(vectors) if vectors else np.zeros((0, dimensions), dtype=np.float32),
    )


def write_segment(folder: Path, data: SegmentData, dense: DenseConfig | None = None) -> None:
    """Write `data` as a segment into `folder` (which must not exist yet; the caller renames it into place).

    With `dense.index == "hnsw"` and at least `dense.hnsw_min_rows` rows, an HNSW graph of the vectors is
    written too (GRAPH); smaller segments are searched exactly."""
    folder.mkdir(parents=True)
    counts = data.counts.tocsr()
    counts.sort_indices()
    postings = counts.tocsc()
    postings.sort_indices()
    ids = np.array(data.chunk_ids, dtype=bytes) if data.chunk_ids else np.zeros(0, dtype="S1")
    arrays = {
        "chunk_ids": ids,
        "sorted_ids": np.sort(ids),
        "id_order": np.argsort(ids, kind="stable").astype(np.int64),
        "hashes": np.array(data.hashes, dtype="S64") if data.hashes else np.zeros(0, dtype="S64"),
        "lengths": np.asarray(counts.sum(axis=1), dtype=np.int64).ravel(),
        "row_indptr": counts.indptr.astype(np.int64),
        "row_terms": counts.indices.astype(np.int32),
        "row_tf": counts.data.astype(np.int32),
        "post_indptr": postings.indptr.astype(np.int64),
        "post_rows": postings.indices.astype(np.int32),
        "post_tf": postings.data.astype(np.int32),
        "vectors": np.ascontiguousarray(data.vectors, dtype=np.float32),
    }
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array, allow_pickle=False)
    if dense is not None and dense.index == "hnsw" and len(data) >= max(1, dense.hnsw_min_rows):
        faiss.write_index(build_faiss_index(arrays["vectors"], dense), str(folder / GRAPH))
    info = {
        "format": SEGMENT_FORMAT,
        "rows": len(data),
        "width": counts.shape[1],
        "dimensions": data.vectors.shape[1],
    }
    (folder / SEGMENT_INFO).write_text(json.dumps(info))


class Segment:
    """A written segment, memory-mapped."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.name = folder.name
        info = load_json(folder / SEGMENT_INFO, dict)
        if info.get("format") != SEGMENT_FORMAT:
            raise damaged(
                folder / SEGMENT_INFO, f"segment format {info.get('format')}, expected {SEGMENT_FORMAT}"
            )
        self.rows = int(info["rows"])
        self.width = int(info["width"])  # the vocabulary size when it was written
        arrays = {name: _mapped(folder / f"{name}.npy") for name in ARRAYS}
        self.chunk_ids = arrays["chunk_ids"]
        self.sorted_ids, self.id_order = arrays["sorted_ids"], arrays["id_order"]
        self.hashes = arrays["hashes"]
        self.lengths = arrays["lengths"]
        self.row_indptr, self.row_terms, self.row_tf = (
            arrays["row_indptr"],
            arrays["row_terms"],
            arrays["row_tf"],
        )
        self.post_indptr, self.post_rows, self.post_tf = (
            arrays["post_indptr"],
            arrays["post_rows"],
            arrays["post_tf"],
        )
        self.vectors = arrays["vectors"]
        self._check()
        self.has_graph = (folder / GRAPH).is_file()
        self._graph: faiss.Index | None = None

    def graph(self) -> faiss.Index:
        """The segment's HNSW graph, read on first use; its copy of the vectors stays memory-mapped."""
        if self._graph is None:
            path = self.folder / GRAPH
            try:
                graph = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
            except RuntimeError as exc:  # faiss reports every unreadable file as a RuntimeError
                raise damaged(path, str(exc).strip().splitlines()[-1]) from exc
            if graph.ntotal != self.rows or graph.d != self.vectors.shape[1]:
                raise damaged(path, f"{graph.ntotal} vectors of {graph.d} dimensions")
            self._graph = graph
        return self._graph

    def _check(self) -> None:
        """Shapes that agree with each other: a damaged file is refused here, never read out of range."""
        n, nnz = self.rows, len(self.row_terms)
        expected = {
            "chunk_ids": (n,), "sorted_ids": (n,), "id_order": (n,), "hashes": (n,), "lengths": (n,), "row_indptr": (n + 1,),
            "row_tf": (nnz,), "post_indptr": (self.width + 1,), "post_rows": (nnz,), "post_tf": (nnz,),
        }  # fmt: skip
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise damaged(
                    self.folder / f"{name}.npy", f"shape {getattr(self, name).shape}, expected {shape}"
                )
        for name, bound in (("row_indptr", nnz), ("post_indptr", nnz)):
            indptr = getattr(self, name)
            if indptr[0] != 0 or indptr[-1] != bound:
                raise damaged(self.folder / f"{name}.npy", "offsets that do not span the counts")
        if self.vectors.ndim != 2 or self.vectors.shape[0] != n or self.vectors.dtype != np.float32:
            raise damaged(
                self.folder / "vectors.npy",
                f"{self.vectors.dtype} of shape {self.vectors.shape} for {n} rows",
            )
        check_unit_length(self.folder / "vectors.npy", self.vectors)

    def __len__(self) -> int:
        return self.rows

    def positions(self, chunk_ids: Sequence[str]) -> np.ndarray:
        """The row of each chunk id, -1 for ids this segment does not hold (a binary search each)."""
        if not self.rows or not chunk_ids:
            return np.full(len(chunk_ids), -1, dtype=np.int64)
        wanted = np.array(chunk_ids, dtype=bytes)
        at = np.minimum(np.searchsorted(self.sorted_ids, wanted), self.rows - 1)
        found = self.sorted_ids[at] == wanted
        return np.where(found, self.id_order[at], -1)

    def postings(self, col: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows holding term `col` and how often; empty for terms added to the vocabulary after this segment."""
        if col >= self.width:
            return _NO_ROWS, _NO_ROWS
        start, end = self.post_indptr[col], self.post_indptr[col + 1]
        return self.post_rows[start:end], self.post_tf[start:end]

    def row_counts(self, rows: np.ndarray) -> sp.csr_matrix:
        """Term counts of `rows`, in memory; reads only those rows' slices of the mapped arrays."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.row_indptr[rows], self.row_indptr[rows + 1]
        lengths = ends - starts
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        at = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])  # positions in the segment
        return sp.csr_matrix(
            (np.asarray(self.row_tf[at]), np.asarray(self.row_terms[at]), indptr),
            shape=(len(rows), self.width),
        )

    def take(self, rows: np.ndarray) -> SegmentData:
        """The content of `rows`, in memory: what a merge copies into a new segment."""
        return SegmentData(
            [self.chunk_ids[r].decode() for r in rows.tolist()],
            [self.hashes[r].decode() for r in rows.tolist()],
            self.row_counts(rows),
            np.asarray(self.vectors[rows], dtype=np.float32),
        )


_NO_ROWS = np.empty(0, dtype=np.int32)


def _mapped(path: Path) -> np.ndarray:
    """The array of a .npy file, memory-mapped read-only. A plain ndarray view of the np.memmap (still
    backed by the file): indexing a memmap goes through Python code that cost a third of a BM25 query."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError... for damaged files
        raise damaged(path, f"{type(exc).__name__}: {exc}") from exc
