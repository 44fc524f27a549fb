"""Searching several segments as one index, with exact corpus-wide scores.

BM25 and TF-IDF depend on statistics of the whole live corpus (row count, mean length, document
frequencies); `CorpusStats` holds them for one generation, so a query scores each segment's postings
with the same numbers a single index built from scratch would use, and gets the same scores. Deleted
rows are masked out, never rewritten. Rows are numbered across segments in order: segment i's row r is
`offsets[i] + r`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import scipy.sparse as sp

from ragtune.core.errors import StoreFormatError
from ragtune.indexes.base import Ranking, candidates_of_all
from ragtune.indexes.bm25 import BM25Config, okapi_idf
from ragtune.indexes.dense import DenseConfig, one_openmp_thread
from ragtune.indexes.embedding import Embedder
from ragtune.indexes.segment import Segment
from ragtune.indexes.tfidf import TfidfConfig
from ragtune.indexes.tokenize import Tokenizer
from ragtune.indexes.vocabulary import Vocabulary


@dataclass(frozen=True)
class CorpusStats:
    """What BM25 and TF-IDF need to know about the live rows of all segments together."""

    live_rows: int
    total_length: int  # tokens in all live rows
    df: np.ndarray  # int64 per vocabulary column: live rows holding the term

    @classmethod
    def empty(cls) -> CorpusStats:
        return cls(0, 0, np.zeros(0, dtype=np.int64))

    def changed(self, removed: sp.csr_matrix, added: sp.csr_matrix) -> CorpusStats:
        """The statistics after removing the rows counted in `removed` and adding those in `added`."""
        width = max(len(self.df), removed.shape[1], added.shape[1])
        df = np.zeros(width, dtype=np.int64)
        df[: len(self.df)] = self.df
        df -= np.bincount(removed.indices, minlength=width)[:width]
        df += np.bincount(added.indices, minlength=width)[:width]
        return CorpusStats(
            self.live_rows - removed.shape[0] + added.shape[0],
            self.total_length - int(removed.sum()) + int(added.sum()),
            df,
        )


@dataclass
class SegmentView:
    """A segment as one generation sees it: where its rows start, and which are deleted (None: none)."""

    segment: Segment
    offset: int
    deleted: np.ndarray | None  # bool per row

    @property
    def live(self) -> int:
        return len(self.segment) - (int(self.deleted.sum()) if self.deleted is not None else 0)


def offsets(segments: Sequence[Segment]) -> list[int]:
    return np.concatenate([[0], np.cumsum([len(s) for s in segments])[:-1]]).astype(int).tolist()


class _Lexical:
    """What the BM25 and TF-IDF searchers share: the views, the statistics, and the query's columns."""

    kind: str

    def __init__(
        self, views: Sequence[SegmentView], stats: CorpusStats, vocabulary: Vocabulary, tokenize: Tokenizer
    ):
        self.views, self.stats, self.vocabulary, self.tokenize = list(views), stats, vocabulary, tokenize

    def __len__(self) -> int:
        return self.stats.live_rows

    def _query(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """Known query columns held by at least one live row, and their counts in the query."""
        if not self.stats.live_rows:
            return np.empty(0, dtype=np.int64), np.empty(0)
        cols, times = self.vocabulary.query_counts(self.tokenize(query))
        present = (cols < len(self.stats.df)) & (self.stats.df[np.minimum(cols, len(self.stats.df) - 1)] > 0)
        return cols[present], times[present]

    def _search(self, cols: np.ndarray, query_weights: np.ndarray, k: int, weigh) -> Ranking:
        """Top k rows by the sum over query columns of `weigh(view, col, rows, tf)` times the column's query
        weight, over their live postings."""
        if cols.size == 0 or k <= 0:
            return Ranking.empty()
        terms = list(zip(cols.tolist(), query_weights.tolist(), strict=True))
        found: list[tuple[SegmentView, np.ndarray, np.ndarray]] = []
        for view in self.views:
            rows_parts, score_parts = [], []
            for col, weight in terms:
                rows, tf = view.segment.postings(col)
                if rows.size:
                    rows_parts.append(rows)
                    score_parts.append(weigh(view, col, rows, tf.astype(np.float64)) * weight)
            if not rows_parts:
                continue
            rows, scores = _sum_by_row(
                np.concatenate(rows_parts), np.concatenate(score_parts), len(view.segment)
            )
            if view.deleted is not None:
                live = ~view.deleted[rows]
                rows, scores = rows[live], scores[live]
            rows, scores = _reaching(rows, scores, k)
            found.append((view, rows, scores))
        return _best(found, k)


def _reaching(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose score reaches the k-th best: only they can be in the top k, ties at the k-th
    score included (they are ordered by chunk id later)."""
    if rows.size <= k:
        return rows, scores
    reach = scores >= np.partition(scores, rows.size - k)[rows.size - k]
    return rows[reach], scores[reach]


def _best(found: list[tuple[SegmentView, np.ndarray, np.ndarray]], k: int) -> Ranking:
    """The k best of each segment's candidates (rows of that segment, their scores), best first, equal
    scores in chunk id order. Not in row order: rows are numbered by ingest history, so a segmented
    index and one rebuilt from scratch would order ties differently, and so would their fused results."""
    found = [(view, rows, scores) for view, rows, scores in found if rows.size]
    if not found:
        return Ranking.empty()
    rows = np.concatenate([rows.astype(np.int64) + view.offset for view, rows, _ in found])
    scores = np.concatenate([scores for _, _, scores in found])
    ids = np.concatenate([view.segment.chunk_ids[rows] for view, rows, _ in found])
    order = np.lexsort((ids, -scores))[:k]
    return Ranking(rows[order], scores[order])


def _sum_by_row(rows: np.ndarray, values: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows (ascending) and the sum of their values, added in the order given. `rows` is a few
    ascending runs (one per query term), which a stable sort merges rather than sorts: at 1M rows it beat
    one pass over an array as long as the segment until the postings were half as many as the rows."""
    if rows.size * 2 >= n_rows:
        sums = np.bincount(rows, weights=values, minlength=n_rows)
        distinct = (
            np.flatnonzero(sums) if values.min() > 0 else np.flatnonzero(np.bincount(rows, minlength=n_rows))
        )
        return distinct, sums[distinct]
    order = np.argsort(rows, kind="stable")
    rows, values = rows[order], values[order]
    starts = np.flatnonzero(np.concatenate([[True], rows[1:] != rows[:-1]]))
    return rows[starts], np.add.reduceat(values, starts)


class SegmentedBM25(_Lexical):
    kind = "bm25"

    def __init__(self, views, stats, vocabulary, tokenize, config: BM25Config | None = None):
        super().__init__(views, stats, vocabulary, tokenize)
        self.config = config or BM25Config()
        self.idf = okapi_idf(stats.df, stats.live_rows, self.config.epsilon)
        self.mean_length = stats.total_length / stats.live_rows if stats.live_rows else 0.0
        self._length_norms: dict[int, np.ndarray] = {}

    def _length_norm(self, view: SegmentView) -> np.ndarray:
        """k1 (1 - b + b length / mean length) per row of the view: computed once per generation (it
        depends on the mean length), then only gathered per query."""
        key = id(view)
        if key not in self._length_norms:
            k1, b = self.config.k1, self.config.b
            lengths = view.segment.lengths.astype(np.float64)
            self._length_norms[key] = k1 * (1.0 - b + b * lengths / (self.mean_length or 1.0))
        return self._length_norms[key]

    def search(self, query: str, k: int) -> Ranking:
        k1 = self.config.k1

        def weigh(view: SegmentView, col: int, rows: np.ndarray, tf: np.ndarray) -> np.ndarray:
            return self.idf[col] * tf * (k1 + 1.0) / (tf + self._length_norm(view)[rows])

        return self._search(*self._query(query), k, weigh)


class SegmentedTfidf(_Lexical):
    """scikit-learn's TfidfTransformer (l2 norm) over the live rows, computed rather than stored: a row's
    norm depends on every term's idf, which every ingest changes, so norms are computed per generation on
    its first TF-IDF query (one pass over the counts) and kept while it is current."""

    kind = "tfidf"

    def __init__(self, views, stats, vocabulary, tokenize, config: TfidfConfig | None = None):
        super().__init__(views, stats, vocabulary, tokenize)
        self.config = config or TfidfConfig()
        n, df = stats.live_rows, stats.df.astype(np.float64)
        with np.errstate(divide="ignore"):
            self.idf = (
                np.log((1.0 + n) / (1.0 + df)) + 1.0 if self.config.smooth_idf else np.log(n / df) + 1.0
            )
        self.idf[stats.df <= 0] = 0.0
        self._norms: dict[int, np.ndarray] = {}

    def _tf(self, tf: np.ndarray) -> np.ndarray:
        return 1.0 + np.log(tf) if self.config.sublinear_tf else tf

    def _row_norms(self, view: SegmentView) -> np.ndarray:
        key = id(view)
        if key not in self._norms:
            segment = view.segment
            weights = (
                self._tf(np.asarray(segment.row_tf, dtype=np.float64))
                * self.idf[np.asarray(segment.row_terms)]
            )
            per_row = np.add.reduceat(weights**2, segment.row_indptr[:-1]) if weights.size else np.zeros(0)
            norms = np.zeros(len(segment))
            filled = np.diff(segment.row_indptr) > 0  # reduceat gives a neighbour's value for empty rows
            norms[filled] = np.sqrt(per_row[filled]) if per_row.size else 0.0
            norms[norms == 0] = 1.0
            self._norms[key] = norms
        return self._norms[key]

    def search(self, query: str, k: int) -> Ranking:
        cols, times = self._query(query)
        if cols.size == 0:
            return Ranking.empty()
        query_weights = self._tf(times) * self.idf[cols]
        query_weights /= np.linalg.norm(query_weights) or 1.0

        def weigh(view: SegmentView, col: int, rows: np.ndarray, tf: np.ndarray) -> np.ndarray:
            return self._tf(tf) * self.idf[col] / self._row_norms(view)[rows]

        return self._search(cols, query_weights, k, weigh)


class SegmentedDense:
    """Inner-product search over each segment's memory-mapped vectors (exact), or its HNSW graph where it
    has one, merged into one top k. Deleted rows are excluded inside the graph search (a bitmap
    selector), so they never take a place in the top k."""

    kind = "dense"

    def __init__(
        self,
        views: Sequence[SegmentView],
        embedder: Embedder,
        live_rows: int,
        config: DenseConfig | None = None,
    ):
        self.views, self.embedder, self.live_rows = list(views), embedder, live_rows
        self.config = config or DenseConfig()

    def __len__(self) -> int:
        return self.live_rows

    def search(self, query: str, k: int) -> Ranking:
        if not self.live_rows or k <= 0:
            return Ranking.empty()
        vector = self.embedder.encode([query], query=True)[0]
        found: list[tuple[SegmentView, np.ndarray, np.ndarray]] = []
        for view in self.views:
            vectors = view.segment.vectors
            if not len(vectors):
                continue
            if vectors.shape[1] != vector.shape[0]:
                raise StoreFormatError(
                    f"the embedding model gives {vector.shape[0]}-dimensional vectors but the index holds "
                    f"{vectors.shape[1]}-dimensional ones: rebuild with `ragtune ingest --rebuild`"
                )
            best = (
                self._graph_search(view, vector, k)
                if view.segment.has_graph
                else self._exact(view, vector, k)
            )
            found.append((view, best.rows, best.scores))
        return _best(found, k)

    @staticmethod
    def _exact(view: SegmentView, vector: np.ndarray, k: int) -> Ranking:
        # einsum, not `vectors @ vector`: BLAS's two threads fight ONNX Runtime's, still spinning after
        # the query was embedded (2k rows: 3.2 ms vs 0.16 ms, and the next embedding slows too), and at
        # 1M rows one thread already saturates the memory bandwidth (70 ms either way).
        everything = np.einsum("ij,j->i", view.segment.vectors, vector)
        if view.deleted is not None:
            everything[view.deleted] = -np.inf
        candidates = candidates_of_all(everything, k)
        # Every row tied with the k-th best stays: which of them make the top k is decided by chunk id.
        rows, best = _reaching(candidates, everything[candidates], k)
        return Ranking(rows, best)

    def _graph_search(self, view: SegmentView, vector: np.ndarray, k: int) -> Ranking:
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.config.hnsw_ef_search, k)
        if view.deleted is not None:
            live = np.packbits(~view.deleted, bitorder="little")  # faiss reads bit i of byte i // 8
            params.sel = faiss.IDSelectorBitmap(len(view.deleted), faiss.swig_ptr(live))
        with one_openmp_thread():
            scores, rows = view.segment.graph().search(vector[None, :], k, params=params)
        found = rows[0] >= 0
        return Ranking(rows[0][found].astype(np.int64), scores[0][found])
