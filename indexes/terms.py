"""Term counts: the vocabulary and the (rows x terms) count matrix both sparse indexes are built on."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ragtune.indexes.base import damaged, load_json, load_sparse, write_params
from ragtune.indexes.tokenize import Tokenizer, TokenizerConfig
from ragtune.indexes.vocabulary import Vocabulary


class TermCounts:
    """A vocabulary (term -> column) and a CSR matrix of how often each term occurs in each row.

    Terms are only ever appended to the vocabulary, so updating keeps old columns valid; a term whose
    rows were all removed keeps its column with document frequency 0, which scorers must ignore.
    """

    def __init__(self, terms: list[str], counts: sp.csr_matrix, column: dict[str, int] | None = None):
        self.terms = terms
        self.column = column if column is not None else {t: i for i, t in enumerate(terms)}
        self.counts = counts

    @classmethod
    def empty(cls) -> TermCounts:
        return cls([], sp.csr_matrix((0, 0), dtype=np.int32))

    def __len__(self) -> int:
        return self.counts.shape[0]

    def updated(self, keep: np.ndarray, added_texts: Sequence[str], tokenizer: Tokenizer) -> TermCounts:
        vocabulary = Vocabulary(self.terms)  # a copy: this index stays as it is
        added = vocabulary.count_rows(tokenizer(text) for text in added_texts)
        width = len(vocabulary)
        kept = self.counts[np.flatnonzero(keep)] if len(self) else self.counts
        kept = sp.csr_matrix((kept.data, kept.indices, kept.indptr), shape=(kept.shape[0], width))
        counts = sp.vstack([kept, added], format="csr", dtype=np.int32)
        counts.sort_indices()
        return TermCounts(vocabulary.terms, counts, vocabulary.column)

    def query_counts(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Columns of the known query terms and how often each occurs in the query."""
        found = Counter(self.column[t] for t in tokens if t in self.column)
        cols = np.fromiter(found.keys(), dtype=np.int64, count=len(found))
        return cols, np.fromiter(found.values(), dtype=np.float64, count=len(found))

    def document_frequency(self) -> np.ndarray:
        return np.bincount(self.counts.indices, minlength=len(self.terms))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        sp.save_npz(directory / "counts.npz", self.counts, compressed=False)
        (directory / "terms.json").write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> TermCounts:
        terms = load_json(directory / "terms.json", list)
        if not all(isinstance(t, str) for t in terms) or len(set(terms)) != len(terms):
            raise damaged(directory / "terms.json", "not a list of distinct terms")
        counts = load_sparse(directory / "counts.npz", (None, len(terms))).tocsr()
        return cls(terms, counts)


class SparseTermIndex:
    """What BM25 and TF-IDF share: term counts, a tokenizer, and a (rows x terms) CSC weight matrix
    whose query columns are summed to score rows."""

    kind: str

    def __init__(self, counts: TermCounts, tokenizer: TokenizerConfig | None):
        self.counts = counts
        self.tokenizer_config = tokenizer or TokenizerConfig()
        self.tokenize = Tokenizer(self.tokenizer_config)
        self.weights: sp.csc_matrix

    def __len__(self) -> int:
        return len(self.counts)

    def updated_counts(self, keep: np.ndarray, added_texts: Sequence[str]) -> TermCounts:
        return self.counts.updated(keep, added_texts, self.tokenize)

    def query_columns(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """Columns of the known query terms and how often each occurs (empty on an empty index)."""
        if len(self) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        return self.counts.query_counts(self.tokenize(query))

    def column_scores(self, cols: np.ndarray, query_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every row's weighted sum over the query columns, and the rows holding at least one of them."""
        # Straight from the CSC arrays: slicing columns out as a new matrix and sorting its row indices
        # to find the candidates cost several times more than the arithmetic. A row occurs at most once
        # per column, so a fancy-indexed += per query term is exact.
        indptr, indices, data = self.weights.indptr, self.weights.indices, self.weights.data
        scores = np.zeros(len(self))
        touched = np.zeros(len(self), dtype=bool)
        for col, weight in zip(cols.tolist(), query_weights.tolist(), strict=True):
            start, end = indptr[col], indptr[col + 1]
            rows = indices[start:end]
            scores[rows] += data[start:end] * weight
            touched[rows] = True
        return scores, np.flatnonzero(touched)

    def save_arrays(self, directory: Path, **params: object) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.counts.save(directory)
        sp.save_npz(directory / "weights.npz", self.weights, compressed=False)
        write_params(directory, self.kind, tokenizer=asdict(self.tokenizer_config), **params)

    @staticmethod
    def load_arrays(directory: Path) -> tuple[TermCounts, sp.csc_matrix]:
        counts = TermCounts.load(directory)
        weights = load_sparse(directory / "weights.npz", counts.counts.shape).tocsc()
        return counts, weights
