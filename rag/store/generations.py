"""Index generations: each ingest that changes anything writes a complete new set of index files.

A generation is written into a temporary folder, flushed to disk, then renamed into place; only after
that does the store's transaction make it current. A crash at any point before the commit leaves the
previous generation current and intact, and the half-written folder is removed by the next ingest.

The manifest records the size and sha256 of every file. Opening a generation compares sizes (a few
stat calls); `Generation.verify` compares checksums (~0.6 s per GB on one core), which every ingest
does before building on a generation and `RAG.status(verify=True)` does on request.
"""

from __future__ import annotations

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
from ragtune.rag.store.durable import CHECKSUM, describe_files, file_checksum, publish_folder
from ragtune.rag.store.segments import (
    SEGMENTED_FORMAT,
    SEGMENTS,
    VOCABULARY,
    SegmentedGeneration,
    salvage_segment_vectors,
)

GENERATION_FORMAT = 1
INDEX_KINDS = ("bm25", "tfidf", "dense")
MANIFEST = "manifest.json"
CHUNK_IDS = "chunk_ids.json"
REPAIR = "run `ragtune ingest DIR` again: it rebuilds the generation from the store"
_TMP = re.compile(r"^\.tmp-\d+-(\d+)$")


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
        if manifest.get("format") == SEGMENTED_FORMAT:
            return SegmentedGeneration(number, folder, manifest, embedder)
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

    def salvage_vectors(self, number: int, embedder: Callable[[], Embedder]) -> dict[str, Any]:
        """Text hash -> vector from the parts of a damaged generation whose files still match their
        checksums: a repair then re-embeds only texts it lacks. Empty when nothing can be trusted."""
        folder = self.folder(number)
        try:
            manifest = _read_json(folder / MANIFEST, dict)
        except StoreFormatError:
            return {}
        if manifest.get("format") == SEGMENTED_FORMAT:
            return salvage_segment_vectors(self.root.parent, manifest)
        try:
            files = manifest.get("files") or {}
            if not any(name.startswith("dense/") for name in files):
                return {}  # no checksums to trust its vectors by
            Generation(number, folder, [], embedder, files).verify("dense/")
            dense = DenseIndex.load(folder / "dense", embedder())
            return dict(zip(dense.hashes, dense.vectors, strict=True))
        except Exception:  # any damage: the repair embeds everything again
            return {}

    def write(
        self, number: int, chunk_ids: Sequence[str], indexes: dict[str, Index], manifest: dict[str, Any]
    ) -> Path:
        """Write a complete format-1 generation and move it into place (kept for tests of the old format)."""

        def fill(tmp: Path) -> dict[str, Any]:
            for kind, index in indexes.items():
                index.save(tmp / kind)
            (tmp / CHUNK_IDS).write_text(json.dumps(list(chunk_ids)))
            return {
                "format": GENERATION_FORMAT,
                "generation": number,
                "created_at": time.time(),
                "rows": len(chunk_ids),
                **manifest,
            }

        return self.write_folder(number, fill)

    def write_segmented(self, number: int, next_gen: Any, config: dict[str, Any]) -> Path:
        """Write a segmented generation: its new segments and vocabulary part, then its own folder."""
        from ragtune.rag.store.segment_writer import write_generation_files, write_next

        manifest = write_next(self.root.parent, number, next_gen, config)

        def fill(tmp: Path) -> dict[str, Any]:
            write_generation_files(tmp, manifest, next_gen)
            return manifest

        return self.write_folder(number, fill)

    def write_folder(self, number: int, fill: Callable[[Path], dict[str, Any]]) -> Path:
        """Fill a temporary folder (`fill` returns the manifest), record every file's size and checksum in
        the manifest, flush it all to disk and rename it into place; it is not current until the store
        says so."""
        self.root.mkdir(parents=True, exist_ok=True)

        def filled(tmp: Path) -> None:
            tmp.mkdir()
            manifest = fill(tmp)
            manifest["files"] = describe_files(tmp)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))

        # A folder already at the final name was left by a crash between the rename and the store's commit.
        publish_folder(self.root / f".tmp-{number:06d}-{os.getpid()}", self.folder(number), filled)
        return self.folder(number)

    def remove_dead_temporaries(self) -> list[Path]:
        """Remove the temporary folders and files of ingests that were killed (their process is gone)."""
        index = self.root.parent
        return [
            *remove_dead_temporaries(self.root, _tmp_pid),
            *remove_dead_temporaries(index / SEGMENTS, _segment_tmp_pid),
            *remove_dead_temporaries(index / VOCABULARY, _tmp_pid),
        ]

    def prune(self, keep: set[int]) -> None:
        """Remove generations not in `keep`, segments and vocabulary parts no kept generation lists, and
        temporary folders of ingests that are no longer running."""
        for number in self.existing():
            if number not in keep:
                shutil.rmtree(self.folder(number), ignore_errors=True)
        self.remove_dead_temporaries()
        listed_segments: set[str] = set()
        listed_parts: set[str] = set()
        for number in self.existing():
            try:
                manifest = _read_json(self.folder(number) / MANIFEST, dict)
            except StoreFormatError:
                return  # a damaged kept generation: leave every segment, a repair may want them
            listed_segments.update(entry.get("name") for entry in manifest.get("segments", []))
            listed_parts.update(part.get("part") for part in manifest.get("vocabulary", []))
        index = self.root.parent
        for folder, listed in ((index / SEGMENTS, listed_segments), (index / VOCABULARY, listed_parts)):
            if folder.is_dir():
                for path in folder.iterdir():
                    if not path.name.startswith(".") and path.name not in listed:
                        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _segment_tmp_pid(name: str) -> int | None:
    """The pid in a segment's temporary folder name (`.tmp-000007-001-1234`)."""
    match = re.match(r"^\.tmp-\d+-\d+-(\d+)$", name)
    return int(match.group(1)) if match else None


def _read_json(path: Path, kind: type) -> Any:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreFormatError(f"{path} is missing or damaged ({reason}); {REPAIR}") from exc
    if not isinstance(value, kind):
        raise StoreFormatError(f"{path} is damaged (not a JSON {kind.__name__}); {REPAIR}")
    return value
