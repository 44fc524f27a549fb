"""BM25 for a remote index: each row's term weights live there, the corpus statistics live here.

Milvus searches a sparse vector field by inner product. A row's vector holds, for each of its terms,
tf (k1 + 1) / (tf + k1 (1 - b + b len / L)); a query's vector holds idf(term) times the term's count in
the query, so the inner product is rank_bm25's Okapi score (indexes/bm25.py). This agreed with the local
BM25 on 100% of top-10 lists in bench/backends.py, against 81% for Milvus's own BM25 function, which
tokenizes and counts with its own analyzer.

The document frequencies and row counts behind the idfs are kept in the SQLite store and committed in
the same transaction as the generation, so a reader's snapshot gives the idfs of the generation it
searches. Term ids are assigned here, once per term, and never reused. L, the mean row length the
weights are written with, is fixed when the index is first filled and set again by a rebuild or a
compaction (which rewrite every row): unlike the local index, which uses the exact current mean, the
weights of rows written since then use an L that may have drifted.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ragtune.indexes.bm25 import BM25Config
from ragtune.indexes.tokenize import Tokenizer
from ragtune.rag.store.database import Store

# A sparse vector needs one non-zero entry: a row without terms gets this id, which no query holds.
NO_TERMS = {0: 1.0}

_SCHEMA = "CREATE TABLE IF NOT EXISTS bm25_terms (term TEXT PRIMARY KEY, id INTEGER NOT NULL UNIQUE, df INTEGER NOT NULL)"
_ROWS, _LENGTH, _NORM, _FLOOR = "bm25_rows", "bm25_total_length", "bm25_norm_length", "bm25_idf_floor"


@dataclass(frozen=True)
class TermUpdate:
    """What an ingest changes in the statistics, computed before its rows are written, committed with
    the generation."""

    new_terms: dict[str, int]  # term -> id assigned by this update
    df_change: dict[str, int]  # term -> rows added minus rows removed
    rows: int  # live rows after the update
    total_length: int  # tokens in the live rows after it
    norm_length: float  # L of the rows this update writes
    weights: list[dict[int, float]]  # the sparse vector of each added row, in order


class BM25Terms:
    """The BM25 statistics of one remote index, in its folder's store."""

    def __init__(self, store: Store, tokenize: Tokenizer, config: BM25Config):
        self.store, self.tokenize, self.config = store, tokenize, config
        with store.transaction() as db:
            exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'bm25_terms'").fetchone()
        if not exists:  # a write transaction only the first time: opening to search takes no write lock
            with store.transaction(write=True) as db:
                db.execute(_SCHEMA)

    def plan(self, removed_texts: Sequence[str], added_texts: Sequence[str], reset: bool) -> TermUpdate:
        """The update for rows of `removed_texts` leaving and rows of `added_texts` arriving. `reset`
        (every live row is being rewritten) sets L to the new mean length."""
        removed = [Counter(self.tokenize(text)) for text in removed_texts]
        added = [Counter(self.tokenize(text)) for text in added_texts]
        change: Counter[str] = Counter()
        for counts in added:
            change.update(counts.keys())
        for counts in removed:
            change.subtract(counts.keys())
        with self.store.transaction() as db:
            known = self._ids(db, list(change))
            next_id = max(1, (db.execute("SELECT MAX(id) FROM bm25_terms").fetchone()[0] or 0) + 1)
            rows = self._meta_int(_ROWS) + len(added) - len(removed)
            total = self._meta_int(_LENGTH) + sum(map(_length, added)) - sum(map(_length, removed))
            stored_norm = self.store.get_meta(_NORM)
        new_terms = {term: next_id + i for i, term in enumerate(sorted(set(change) - known.keys()))}
        ids = {**known, **new_terms}
        norm = total / rows if reset or stored_norm is None or float(stored_norm) <= 0 else float(stored_norm)
        norm = norm if rows and norm > 0 else 1.0
        k1, b = self.config.k1, self.config.b
        weights = []
        for counts in added:
            length_norm = k1 * (1.0 - b + b * _length(counts) / norm)
            vector = {ids[t]: tf * (k1 + 1.0) / (tf + length_norm) for t, tf in counts.items()}
            weights.append(vector or dict(NO_TERMS))
        return TermUpdate(new_terms, {t: c for t, c in change.items() if c}, rows, total, norm, weights)

    def commit(self, update: TermUpdate) -> None:
        """Write `update`; call inside the store's write transaction that commits the generation."""
        db = self.store._connection()
        db.executemany("INSERT INTO bm25_terms(term, id, df) VALUES(?, ?, 0)", update.new_terms.items())
        db.executemany(
            "UPDATE bm25_terms SET df = df + ? WHERE term = ?",
            [(change, term) for term, change in update.df_change.items()],
        )
        df = [row[0] for row in db.execute("SELECT df FROM bm25_terms WHERE df > 0")]
        floor = _idf_floor(df, update.rows, self.config.epsilon)
        for key, value in (
            (_ROWS, update.rows),
            (_LENGTH, update.total_length),
            (_NORM, update.norm_length),
            (_FLOOR, floor),
        ):
            self.store.set_meta(key, repr(value))

    def query_vector(self, query: str) -> dict[int, float]:
        """idf times count of each query term some live row holds; call inside the reader's snapshot."""
        counts = Counter(self.tokenize(query))
        db = self.store._connection()
        rows = self._meta_int(_ROWS)
        floor = float(self.store.get_meta(_FLOOR) or 0.0)
        found = self._ids_and_df(db, list(counts))
        vector = {}
        for term, (term_id, df) in found.items():
            if df > 0:
                idf = math.log(rows - df + 0.5) - math.log(df + 0.5)
                vector[term_id] = (idf if idf >= 0 else floor) * counts[term]
        return vector

    def _meta_int(self, key: str) -> int:
        return int(self.store.get_meta(key) or 0)

    def _ids(self, db: sqlite3.Connection, terms: list[str]) -> dict[str, int]:
        return {term: term_id for term, (term_id, _df) in self._ids_and_df(db, terms).items()}

    @staticmethod
    def _ids_and_df(db: sqlite3.Connection, terms: list[str]) -> dict[str, tuple[int, int]]:
        found: dict[str, tuple[int, int]] = {}
        for start in range(0, len(terms), 500):
            batch = terms[start : start + 500]
            marks = ",".join("?" * len(batch))
            for term, term_id, df in db.execute(
                f"SELECT term, id, df FROM bm25_terms WHERE term IN ({marks})", batch
            ):
                found[term] = (term_id, df)
        return found


def _length(counts: Counter[str]) -> int:
    return sum(counts.values())


def _idf_floor(df: list[int], rows: int, epsilon: float) -> float:
    """What a negative idf becomes: epsilon times the mean idf of the terms live rows hold, as in
    okapi_idf (whose floored values are either that floor or the raw idf, which is >= 0)."""
    if not df:
        return 0.0
    raw = np.log(rows - np.asarray(df, dtype=np.float64) + 0.5) - np.log(
        np.asarray(df, dtype=np.float64) + 0.5
    )
    return float(epsilon * raw.mean())
