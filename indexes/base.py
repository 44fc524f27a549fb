"""The one small interface every index implements.

An index is an immutable table of rows (one per chunk, in the order the caller gave them). Rows are
addressed by position; the caller keeps the row -> chunk id mapping, shared by all indexes of a
generation. Updating never mutates: `updated(keep, added_texts)` returns a new index whose rows are
the kept old rows, in order, followed by the added ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

INDEX_FORMAT = 1


class Ranking(NamedTuple):
    """Best-first rows and their scores (higher is better)."""

    rows: np.ndarray  # int64
    scores: np.ndarray  # float32/float64

    @classmethod
    def empty(cls) -> Ranking:
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))


class Index(Protocol):
    kind: str

    def __len__(self) -> int: ...

    def search(self, query: str, k: int) -> Ranking: ...

    def updated(self, keep: np.ndarray, added_texts: Sequence[str]) -> Index: ...

    def save(self, directory: Path) -> None: ...


def top_k(scores: np.ndarray, candidates: np.ndarray, k: int) -> Ranking:
    """The k best of `candidates` (row numbers) by `scores[candidates]`, best first, ties by row."""
    if candidates.size == 0 or k <= 0:
        return Ranking.empty()
    cand_scores = scores[candidates]
    if candidates.size > k:
        # argpartition alone would keep an arbitrary few of the rows tied at the k-th score; keeping
        # every row that reaches it and cutting after the sort makes ties go to the lower row.
        kth = np.partition(cand_scores, candidates.size - k)[candidates.size - k]
        reach = cand_scores >= kth
        candidates, cand_scores = candidates[reach], cand_scores[reach]
    order = np.lexsort((candidates, -cand_scores))[:k]
    return Ranking(candidates[order].astype(np.int64), cand_scores[order])


def write_params(directory: Path, kind: str, **sections: object) -> None:
    """Write an index's params.json: its kind, the format version and its config sections."""
    params = {"format": INDEX_FORMAT, "kind": kind, **sections}
    (directory / "params.json").write_text(json.dumps(params, indent=2, ensure_ascii=False))


def read_params(directory: Path, kind: str) -> dict:
    from ragtune.core.errors import StoreFormatError

    path = directory / "params.json"
    try:
        params = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreFormatError(f"cannot read {path}: {exc}; rebuild with `ragtune ingest --rebuild`") from exc
    if params.get("format") != INDEX_FORMAT or params.get("kind") != kind:
        raise StoreFormatError(
            f"{directory} holds a {params.get('kind')} index of format {params.get('format')}; "
            f"expected {kind} format {INDEX_FORMAT}: rebuild with `ragtune ingest --rebuild`"
        )
    return params
