"""Index generations: each ingest that changes anything writes a complete new set of index files.

A generation is written into a temporary folder, flushed to disk, then renamed into place; only after
that does the store's transaction make it current. A crash at any point before the commit leaves the
previous generation current and intact, and the half-written folder is removed by the next ingest.

The manifest records the size and sha256 of every file. Opening a generation compares sizes (a few
stat calls); `Generation.verify` compares checksums (~0.6 s per GB on one core), which every ingest
does before building on a generation and `RAG.status(verify=True)` does on request.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragtune.core.cache import remove_dead_temporaries
from ragtune.core.errors import StoreFormatError
from ragtune.indexes.base import Index
from ragtune.indexes.bm25 import BM25Index
from ragtune.indexes.dense import DenseIndex
from ragtune.indexes.embedding import Embedder
from ragtune.indexes.tfidf import TfidfIndex

GENERATION_FORMAT = 1
INDEX_KINDS = ("bm25", "tfidf", "dense")
MANIFEST = "manifest.json"
CHUNK_IDS = "chunk_ids.json"
CHECKSUM = "sha256"
REPAIR = "run `ragtune ingest DIR` again: it rebuilds the generation from the store"
_TMP = re.compile(r"^\.tmp-\d+-(\d+)$")


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


def file_checksum(path: Path) -> str:
    digest = hashlib.new(CHECKSUM)
    with path.open("rb") as fh:
        while block := fh.read(4 * 2**20):
            digest.update(block)
    return digest.hexdigest()


def _describe_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and checksum of every file below `folder`, by path relative to it."""
    return {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, CHECKSUM: file_checksum(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _tmp_pid(name: str) -> int | None:
    """The pid in the name of a generation's temporary folder (`.tmp-000007-1234`); None for anything else."""
    match = _TMP.match(name)
    return int(match.group(1)) if match else None


class Generation:
    """One generation on disk: the chunk id of every row, and its indexes, each loaded on first use."""

    def __init__(
        self,
        number: int,
        folder: Path | None,
        chunk_ids: list[str],
        embedder: Callable[[], Embedder],
        files: dict[str, dict[str, Any]] | None = None,
    ):
        self.number = number
        self.folder = folder
        self.chunk_ids = chunk_ids
        self._embedder = embedder
        self._indexes: dict[str, Index] = {}
        self.files = files or {}  # from the manifest; empty for generations written before checksums

    def index(self, kind: str) -> Index:
        if kind not in self._indexes:
            if self.folder is None:
                raise StoreFormatError("this index is empty: run `ragtune ingest DIR` first")
            folder = self.folder / kind
            try:
                if kind == "dense":
                    index: Index = DenseIndex.load(folder, self._embedder())
                elif kind == "bm25":
                    index = BM25Index.load(folder)
                else:
                    index = TfidfIndex.load(folder)
            except StoreFormatError:
                raise
            except Exception as exc:  # anything a damaged file can make numpy, scipy or faiss raise
                raise StoreFormatError(
                    f"{folder} is damaged ({type(exc).__name__}: {exc}); {REPAIR}"
                ) from exc
            if len(index) != len(self.chunk_ids):
                raise StoreFormatError(
                    f"{folder} holds {len(index)} rows but {self.folder / CHUNK_IDS} names "
                    f"{len(self.chunk_ids)} chunks: the generation is damaged; {REPAIR}"
                )
            self._indexes[kind] = index
        return self._indexes[kind]

    def preset(self, kind: str, index: Index) -> None:
        self._indexes[kind] = index

    def verify(self, under: str = "") -> dict[str, Any]:
        """Compare every file (below `under`, e.g. "dense/") with the checksum its manifest recorded;
        raise StoreFormatError naming the first that differs. Generations written before checksums
        were recorded have nothing to compare: `checksums` is False in the result."""
        checked = total = 0
        clock = time.perf_counter()
        if self.folder is not None:
            for name, expected in self.files.items():
                if not name.startswith(under):
                    continue
                path = self.folder / name
                try:
                    found = file_checksum(path)
                except OSError as exc:
                    raise StoreFormatError(f"cannot read {path} ({exc.strerror}); {REPAIR}") from exc
                if found != expected[CHECKSUM]:
                    raise StoreFormatError(
                        f"{path} does not match the checksum in its manifest (damaged on disk); {REPAIR}"
                    )
                checked += 1
                total += expected["size"]
        return {
            "generation": self.number,
            "files": checked,
            "bytes": total,
            "checksums": bool(self.files) or self.folder is None,
            "seconds": round(time.perf_counter() - clock, 3),
        }


class Generations:
    def __init__(self, index_folder: Path):
        self.root = index_folder / "generations"

    def folder(self, number: int) -> Path:
        return self.root / f"{number:06d}"

    def existing(self) -> list[int]:
        """Numbers of the generation folders present (anything else in the folder is ignored)."""
        if not self.root.exists():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit() and p.is_dir())

    def next_number(self, current: int) -> int:
        return max([current, *self.existing()]) + 1

    def previous(self, current: int) -> int | None:
        """The newest generation older than `current`: the one readers may still be on."""
        older = [n for n in self.existing() if n < current]
        return older[-1] if older else None

    def open(self, number: int, embedder: Callable[[], Embedder]) -> Generation:
        if number == 0:
            return Generation(0, None, [], embedder)
        folder = self.folder(number)
        manifest = _read_json(folder / MANIFEST, dict)
        if manifest.get("format") != GENERATION_FORMAT:
            raise StoreFormatError(
                f"{folder} has generation format {manifest.get('format')}: rebuild the index with "
                "`ragtune ingest DIR --rebuild`"
            )
        files = manifest.get("files") or {}
        for name, expected in files.items():  # sizes are cheap to check on every open; checksums are not
            path = folder / name
            size = path.stat().st_size if path.is_file() else None
            if size != expected.get("size"):
                found = (
                    "missing" if size is None else f"{size} bytes, the manifest says {expected.get('size')}"
                )
                raise StoreFormatError(f"{path} is damaged ({found}); {REPAIR}")
        chunk_ids = _read_json(folder / CHUNK_IDS, list)
        if not all(isinstance(c, str) for c in chunk_ids) or len(chunk_ids) != manifest.get("rows"):
            raise StoreFormatError(
                f"{folder / CHUNK_IDS} is damaged (not the {manifest.get('rows')} chunk ids the manifest "
                f"counts); {REPAIR}"
            )
        return Generation(number, folder, chunk_ids, embedder, files)

    def salvage_dense(self, number: int, embedder: Callable[[], Embedder]) -> DenseIndex | None:
        """The dense index of a damaged generation, if its own files still match their checksums: a
        repair then re-embeds only texts it lacks. None when it is damaged too or cannot be checked."""
        folder = self.folder(number)
        try:
            files = _read_json(folder / MANIFEST, dict).get("files") or {}
            if not any(name.startswith("dense/") for name in files):
                return None  # no checksums to trust its vectors by
            Generation(number, folder, [], embedder, files).verify("dense/")
            return DenseIndex.load(folder / "dense", embedder())
        except Exception:  # any damage: the repair embeds everything again
            return None

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
            (tmp / CHUNK_IDS).write_text(json.dumps(list(chunk_ids)))
            full_manifest = {
                "format": GENERATION_FORMAT,
                "generation": number,
                "created_at": time.time(),
                "rows": len(chunk_ids),
                **manifest,
                "files": _describe_files(tmp),
            }
            (tmp / MANIFEST).write_text(json.dumps(full_manifest, indent=2))
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

    def remove_dead_temporaries(self) -> list[Path]:
        """Remove the temporary folders of ingests that were killed (their process is gone)."""
        return remove_dead_temporaries(self.root, _tmp_pid)

    def prune(self, keep: set[int]) -> None:
        """Remove generations not in `keep` and temporary folders of ingests that are no longer running."""
        for number in self.existing():
            if number not in keep:
                shutil.rmtree(self.folder(number), ignore_errors=True)
        self.remove_dead_temporaries()


def _read_json(path: Path, kind: type) -> Any:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreFormatError(f"{path} is missing or damaged ({reason}); {REPAIR}") from exc
    if not isinstance(value, kind):
        raise StoreFormatError(f"{path} is damaged (not a JSON {kind.__name__}); {REPAIR}")
    return value
