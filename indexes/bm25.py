"""BM25 Okapi over a sparse matrix of precomputed per-(row, term) weights.

Scores equal rank_bm25.BM25Okapi on the same tokens: idf = ln((N - df + 0.5) / (df + 0.5)), with
negative idfs replaced by epsilon times the mean idf, and each query token counted as often as it
occurs. Everything that does not depend on the query is folded into the weight matrix at build time,
so a query is a sum of a few sparse columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ragtune.core.errors import InputError
from ragtune.indexes.base import Ranking, read_params, top_k
from ragtune.indexes.terms import SparseTermIndex, TermCounts
from ragtune.indexes.tokenize import TokenizerConfig


@dataclass(frozen=True)
class BM25Config:
    k1: float = field(default=1.5, metadata={"help": "Term-frequency saturation (rank_bm25's default)."})
    b: float = field(default=0.75, metadata={"help": "Length normalisation, 0 (none) to 1 (full)."})
    epsilon: float = field(
        default=0.25, metadata={"help": "Floor for negative idfs, as a fraction of the mean idf."}
    )

    def __post_init__(self) -> None:
        if self.k1 < 0:
            raise InputError(f"bm25 k1={self.k1}: must be >= 0")
        if not 0 <= self.b <= 1:
            raise InputError(f"bm25 b={self.b}: must be between 0 and 1")


def okapi_idf(document_frequency: np.ndarray, n_rows: int, epsilon: float) -> np.ndarray:
    """rank_bm25's idf per term; terms no row contains get 0 and are left out of the mean."""
    present = document_frequency > 0
    idf = np.zeros(document_frequency.shape, dtype=np.float64)
    df = document_frequency[present].astype(np.float64)
    idf[present] = np.log(n_rows - df + 0.5) - np.log(df + 0.5)
    if present.any():
        floor = epsilon * idf[present].mean()
        idf[present & (idf < 0)] = floor
    return idf


def okapi_weights(counts: sp.csr_matrix, idf: np.ndarray, config: BM25Config) -> sp.csc_matrix:
    """The BM25 contribution of each (row, term) pair for a query holding the term once."""
    lengths = np.asarray(counts.sum(axis=1)).ravel().astype(np.float64)
    mean_length = lengths.mean() if lengths.size else 0.0
    tf = counts.data.astype(np.float64)
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    norm = config.k1 * (1.0 - config.b + config.b * lengths[rows] / (mean_length or 1.0))
    data = idf[counts.indices] * tf * (config.k1 + 1.0) / (tf + norm)
    return sp.csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape).tocsc()


class BM25Index(SparseTermIndex):
    kind = "bm25"

    def __init__(
        self,
        counts: TermCounts,
        config: BM25Config | None = None,
        tokenizer: TokenizerConfig | None = None,
        weights: sp.csc_matrix | None = None,
    ):
        super().__init__(counts, tokenizer)
        self.config = config or BM25Config()
        if weights is None:
            idf = okapi_idf(counts.document_frequency(), len(counts), self.config.epsilon)
            weights = okapi_weights(counts.counts, idf, self.config)
        self.weights = weights

    @classmethod
    def empty(cls, config: BM25Config | None = None, tokenizer: TokenizerConfig | None = None) -> BM25Index:
        return cls(TermCounts.empty(), config, tokenizer)

    def updated(self, keep: np.ndarray, added_texts: Sequence[str]) -> BM25Index:
        return BM25Index(self.updated_counts(keep, added_texts), self.config, self.tokenizer_config)

    def scores(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """Scores of every row, and the rows that contain at least one query term."""
        cols, times = self.query_columns(query)
        if cols.size == 0:
            return np.zeros(len(self)), np.empty(0, dtype=np.int64)
        return self.column_scores(cols, times)

    def search(self, query: str, k: int) -> Ranking:
        scores, candidates = self.scores(query)
        return top_k(scores, candidates, k)

    def save(self, directory: Path) -> None:
        self.save_arrays(directory, bm25=asdict(self.config))

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        params = read_params(directory, cls.kind)
        counts, weights = cls.load_arrays(directory)
        return cls(counts, BM25Config(**params["bm25"]), TokenizerConfig(**params["tokenizer"]), weights)
