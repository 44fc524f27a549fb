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
from typing import Any, NamedTuple, Protocol

import numpy as np
import scipy.sparse as sp

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


def candidates_of_all(scores: np.ndarray, k: int, block: int = 64) -> np.ndarray:
    """Rows of `scores` (rows to leave out set to -inf) among which the k best are, every row tied with
    the k-th best included, found without copying or partitioning the whole array: the k-th largest of
    the blocks' maxima is a lower bound of the k-th best score (k blocks each hold a score at least that
    high), and usually only a few rows reach it. At 1M rows 5 ms -> 1.4 ms against `np.partition`."""
    n = scores.size
    if n <= k * block:
        return np.flatnonzero(scores > -np.inf)
    whole = n // block
    maxima = scores[: whole * block].reshape(whole, block).max(axis=1)
    lower = np.partition(maxima, whole - k)[whole - k]
    # Rows after the last whole block are looked at here too.
    return np.flatnonzero(scores >= lower) if lower > -np.inf else np.flatnonzero(scores > -np.inf)


def write_params(directory: Path, kind: str, **sections: object) -> None:
    """Write an index's params.json: its kind, the format version and its config sections."""
    params = {"format": INDEX_FORMAT, "kind": kind, **sections}
    (directory / "params.json").write_text(json.dumps(params, indent=2, ensure_ascii=False))


DAMAGED = "run `ragtune ingest DIR` again: it rebuilds damaged index files from the store"


def damaged(path: Path, reason: object):
    """The one-line error for an index file that cannot be used."""
    from ragtune.core.errors import StoreFormatError

    return StoreFormatError(f"{path} is damaged ({reason}); {DAMAGED}")


def read_params(directory: Path, kind: str) -> dict:
    from ragtune.core.errors import StoreFormatError

    params = load_json(directory / "params.json", dict)
    if params.get("format") != INDEX_FORMAT or params.get("kind") != kind:
        raise StoreFormatError(
            f"{directory} holds a {params.get('kind')} index of format {params.get('format')}; "
            f"expected {kind} format {INDEX_FORMAT}: rebuild with `ragtune ingest DIR --rebuild`"
        )
    return params


def load_json(path: Path, kind: type) -> Any:
    """A JSON file holding a `kind` (list, dict); any damage becomes one StoreFormatError naming the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise damaged(path, exc.strerror if isinstance(exc, OSError) and exc.strerror else exc) from exc
    if not isinstance(value, kind):
        raise damaged(path, f"not a JSON {kind.__name__}")
    return value


def load_array(path: Path, ndim: int, dtype: type | None = None) -> np.ndarray:
    """A .npy array of `ndim` dimensions (and `dtype`, when given), or StoreFormatError naming the file."""
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError... for damaged files
        raise damaged(path, f"{type(exc).__name__}: {exc}") from exc
    if array.ndim != ndim or (dtype is not None and array.dtype != dtype):
        raise damaged(path, f"a {array.ndim}-d {array.dtype} array")
    return array


def load_sparse(path: Path, shape: tuple[int | None, int | None]) -> sp.csr_matrix | sp.csc_matrix:
    """A scipy .npz matrix whose shape matches `shape` (None: any), or StoreFormatError naming the file."""
    try:
        matrix = sp.load_npz(path)
        # Index arrays out of range would read past the data; scipy checks them in check_format.
        matrix.check_format(full_check=True)
    except Exception as exc:  # zipfile, numpy and scipy raise many kinds for damaged archives
        raise damaged(path, f"{type(exc).__name__}: {exc}") from exc
    if any(want is not None and want != got for want, got in zip(shape, matrix.shape, strict=True)):
        raise damaged(path, f"shape {matrix.shape}, expected {shape}")
    if not np.all(np.isfinite(matrix.data)):
        raise damaged(path, "values that are not finite numbers")
    return matrix
