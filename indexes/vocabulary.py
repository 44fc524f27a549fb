"""The term vocabulary shared by every segment of an index: term -> column, only ever appended to.

Segments store term columns, not terms, so their columns stay valid while later segments add terms.
The vocabulary is saved in parts: each ingest that meets new terms writes one small part holding only
those, so an edit never rewrites the whole vocabulary.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ragtune.indexes.base import damaged, load_json


class Vocabulary:
    def __init__(self, terms: Sequence[str] = ()):
        self.terms: list[str] = list(terms)
        self.column: dict[str, int] = {t: i for i, t in enumerate(self.terms)}
        if len(self.column) != len(self.terms):
            raise ValueError("a vocabulary holds each term once")

    def __len__(self) -> int:
        return len(self.terms)

    def count_rows(self, token_lists: Iterable[Sequence[str]]) -> sp.csr_matrix:
        """A (texts x terms) count matrix, adding the terms met for the first time; columns sorted per row."""
        indptr, indices, data = [0], [], []
        column, terms = self.column, self.terms
        for tokens in token_lists:
            counted = Counter(tokens)
            for term, n in counted.items():
                col = column.get(term)
                if col is None:
                    col = column[term] = len(terms)
                    terms.append(term)
                indices.append(col)
                data.append(n)
            indptr.append(len(indices))
        counts = sp.csr_matrix(
            (
                np.asarray(data, dtype=np.int32),
                np.asarray(indices, dtype=np.int32),
                np.asarray(indptr, dtype=np.int64),
            ),
            shape=(len(indptr) - 1, len(terms)),
        )
        counts.sort_indices()
        return counts

    def query_counts(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Columns of the known query terms and how often each occurs in the query (never grows)."""
        found = Counter(self.column[t] for t in tokens if t in self.column)
        cols = np.fromiter(found.keys(), dtype=np.int64, count=len(found))
        return cols, np.fromiter(found.values(), dtype=np.float64, count=len(found))

    def save_part(self, path: Path, start: int) -> None:
        """Write the terms from column `start` on: the part an ingest added."""
        path.write_text(json.dumps(self.terms[start:], ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load_parts(cls, paths: Sequence[Path], sizes: Sequence[int]) -> Vocabulary:
        """The vocabulary from its parts, in order; `sizes` (from the manifest) says how many terms each holds."""
        terms: list[str] = []
        for path, size in zip(paths, sizes, strict=True):
            part = load_json(path, list)
            if len(part) != size or not all(isinstance(t, str) for t in part):
                raise damaged(path, f"not the {size} terms its manifest counts")
            terms += part
        try:
            return cls(terms)
        except ValueError:
            raise damaged(paths[-1], "a term that an earlier part already holds") from None
