"""Index generations: each ingest that changes anything writes a complete new set of index files.

A generation is written into a temporary folder, flushed to disk, then renamed into place; only after
that does the store's transaction make it current. A crash at any point before the commit leaves the
previous generation current and intact, and the half-written folder is removed by the next ingest.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragtune.core.errors import StoreFormatError
from ragtune.indexes.base import Index
from ragtune.indexes.bm25 import BM25Index
from ragtune.indexes.dense import DenseIndex
from ragtune.indexes.embedding import Embedder
from ragtune.indexes.tfidf import TfidfIndex

GENERATION_FORMAT = 1
INDEX_KINDS = ("bm25", "tfidf", "dense")


def _fsync_folder(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder below `folder`, so a rename of it never exposes unwritten data."""
    for path in sorted(folder.rglob("*"), reverse=True):
        _fsync_folder(path)
    _fsync_folder(folder)


class Generation:
    """One generation on disk: the chunk id of every row, and its indexes, each loaded on first use."""

    def __init__(
        self, number: int, folder: Path | None, chunk_ids: list[str], embedder: Callable[[], Embedder]
    ):
        self.number = number
        self.folder = folder
        self.chunk_ids = chunk_ids
        self._embedder = embedder
        self._indexes: dict[str, Index] = {}

    def index(self, kind: str) -> Index:
        if kind not in self._indexes:
            if self.folder is None:
                raise StoreFormatError("this index is empty: run `ragtune ingest DIR` first")
            folder = self.folder / kind
            if kind == "dense":
                self._indexes[kind] = DenseIndex.load(folder, self._embedder())
            elif kind == "bm25":
                self._indexes[kind] = BM25Index.load(folder)
            else:
                self._indexes[kind] = TfidfIndex.load(folder)
        return self._indexes[kind]

    def preset(self, kind: str, index: Index) -> None:
        self._indexes[kind] = index


class Generations:
    def __init__(self, index_folder: Path):
        self.root = index_folder / "generations"

    def folder(self, number: int) -> Path:
        return self.root / f"{number:06d}"

    def existing(self) -> list[int]:
        if not self.root.exists():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())

    def next_number(self, current: int) -> int:
        return max([current, *self.existing()]) + 1

    def open(self, number: int, embedder: Callable[[], Embedder]) -> Generation:
        if number == 0:
            return Generation(0, None, [], embedder)
        folder = self.folder(number)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            chunk_ids = json.loads((folder / "chunk_ids.json").read_text())
        except (OSError, ValueError) as exc:
            raise StoreFormatError(
                f"index generation {number} in {folder} is missing or damaged ({exc}); "
                "rebuild it with `ragtune ingest DIR --rebuild`"
            ) from exc
        if manifest.get("format") != GENERATION_FORMAT:
            raise StoreFormatError(
                f"{folder} has generation format {manifest.get('format')}: rebuild the index"
            )
        return Generation(number, folder, chunk_ids, embedder)

    def write(
        self, number: int, chunk_ids: Sequence[str], indexes: dict[str, Index], manifest: dict[str, Any]
    ) -> Path:
        """Write a complete generation and move it into place; it is not current until the store says so."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{number:06d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            for kind, index in indexes.items():
                index.save(tmp / kind)
            (tmp / "chunk_ids.json").write_text(json.dumps(list(chunk_ids)))
            full_manifest = {
                "format": GENERATION_FORMAT,
                "generation": number,
                "created_at": time.time(),
                "rows": len(chunk_ids),
                **manifest,
            }
            (tmp / "manifest.json").write_text(json.dumps(full_manifest, indent=2))
            _fsync_tree(tmp)
            final = self.folder(number)
            if final.exists():  # left by a crash between this rename and the store's commit
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_folder(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def prune(self, keep: set[int]) -> None:
        """Remove generations not in `keep` and temporary folders of ingests that are no longer running."""
        if not self.root.exists():
            return
        for path in self.root.iterdir():
            stale_generation = path.name.isdigit() and int(path.name) not in keep
            abandoned_tmp = path.name.startswith(".tmp-") and not _pid_alive(int(path.name.rsplit("-", 1)[1]))
            if stale_generation or abandoned_tmp:
                shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
