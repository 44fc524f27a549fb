"""Segmented generations (format 2): a small manifest over immutable, shared segments.

    index/segments/<name>/         one segment's arrays (indexes/segment.py) and their checksums
    index/vocabulary/<part>.json   the terms each ingest added, in order
    index/generations/<n>/         manifest.json, df.npy (live document frequencies), deleted/<segment>.npy

A generation lists its segments in order, the rows of each that are deleted (packed bits), the
vocabulary parts and the corpus statistics; an ingest writes one new segment with only the new and
changed chunks, and a new generation folder of a few small files. Segments are shared by every
generation that lists them and removed once no kept generation does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.core.errors import StoreFormatError
from ragtune.indexes.base import load_array
from ragtune.indexes.bm25 import BM25Config
from ragtune.indexes.dense import DenseConfig
from ragtune.indexes.embedding import Embedder
from ragtune.indexes.segment import Segment
from ragtune.indexes.segmented import (
    CorpusStats,
    SegmentedBM25,
    SegmentedDense,
    SegmentedTfidf,
    SegmentView,
    offsets,
)
from ragtune.indexes.tfidf import TfidfConfig
from ragtune.indexes.tokenize import Tokenizer, TokenizerConfig
from ragtune.indexes.vocabulary import Vocabulary
from ragtune.rag.store.durable import file_checksum

SEGMENTED_FORMAT = 2
SEGMENTS = "segments"
VOCABULARY = "vocabulary"
CHECKSUMS = "checksums.json"  # in each segment folder: size and sha256 of its files
DF = "df.npy"
REPAIR = "run `ragtune ingest DIR` again: it rebuilds the generation from the store"


class RowIds:
    """Chunk ids by row number across segments (deleted rows included, as rows are numbered); `len` is
    the number of live rows."""

    def __init__(self, views: list[SegmentView], live_rows: int):
        self.views, self.live_rows = views, live_rows
        self.starts = np.array([v.offset for v in views], dtype=np.int64)

    def __len__(self) -> int:
        return self.live_rows

    def __getitem__(self, row: int) -> str:
        return self.take(np.array([row]))[0]

    def take(self, rows: np.ndarray) -> list[str]:
        """The ids of many rows at once: one binary search for all (per row, it cost a search as much
        as the search itself at 5k chunks)."""
        rows = np.asarray(rows, dtype=np.int64)
        at = np.searchsorted(self.starts, rows, side="right") - 1
        found = [b""] * len(rows)
        for number in np.unique(at).tolist():
            view, mine = self.views[number], np.flatnonzero(at == number)
            ids = view.segment.chunk_ids[rows[mine] - view.offset].tolist()
            for i, chunk_id in zip(mine.tolist(), ids, strict=True):
                found[i] = chunk_id
        return [chunk_id.decode() for chunk_id in found]


class SegmentedGeneration:
    """One format-2 generation: its segments as views, its statistics and vocabulary, its searchers."""

    def __init__(self, number: int, folder: Path, manifest: dict[str, Any], embedder: Callable[[], Embedder]):
        self.number, self.folder, self.manifest = number, folder, manifest
        self._embedder = embedder
        self.index_root = folder.parent.parent
        self.files: dict[str, dict[str, Any]] = manifest["files"]
        # Read once: every check below (sizes on open, checksums on an ingest or a verify) uses it.
        self.recorded = self._recorded_files()
        self._check_sizes()
        try:
            segments = [Segment(self.index_root / SEGMENTS / entry["name"]) for entry in manifest["segments"]]
            starts = offsets(segments)
            self.views = [
                SegmentView(segment, start, self._deleted(entry, len(segment)))
                for segment, start, entry in zip(segments, starts, manifest["segments"], strict=True)
            ]
            df = load_array(folder / DF, 1, np.int64)
        except StoreFormatError:
            raise
        except Exception as exc:  # anything a damaged file can make numpy raise
            raise StoreFormatError(f"{folder} is damaged ({type(exc).__name__}: {exc}); {REPAIR}") from exc
        self.stats = CorpusStats(int(manifest["rows"]), int(manifest["total_length"]), df.astype(np.int64))
        if sum(v.live for v in self.views) != self.stats.live_rows:
            raise StoreFormatError(
                f"{folder / 'manifest.json'} does not count its segments' live rows; {REPAIR}"
            )
        self.chunk_ids = RowIds(self.views, self.stats.live_rows)
        self._vocabulary: Vocabulary | None = None
        self._indexes: dict[str, Any] = {}

    def segment_sizes(self) -> tuple[list[int], list[int]]:
        """Live and total rows of each segment, in order: what a merge policy plans from."""
        return [v.live for v in self.views], [len(v.segment) for v in self.views]

    def _deleted(self, entry: dict[str, Any], rows: int) -> np.ndarray | None:
        if not entry.get("deleted"):
            return None
        packed = np.load(self.folder / entry["deleted"], allow_pickle=False)
        return np.unpackbits(packed, count=rows).astype(bool)

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            parts = self.manifest["vocabulary"]
            self._vocabulary = Vocabulary.load_parts(
                [self.index_root / VOCABULARY / p["part"] for p in parts], [p["terms"] for p in parts]
            )
        return self._vocabulary

    def index(self, kind: str) -> Any:
        if kind not in self._indexes:
            self._indexes[kind] = _Checked(self._searcher(kind), self.index_root / SEGMENTS)
        return self._indexes[kind]

    def _searcher(self, kind: str) -> Any:
        config = self.manifest.get("config", {})
        tokenize = Tokenizer(TokenizerConfig(**config.get("tokenizer", {})))
        if kind == "bm25":
            bm25 = BM25Config(**config.get("bm25", {}))
            return SegmentedBM25(self.views, self.stats, self.vocabulary, tokenize, bm25)
        if kind == "tfidf":
            tfidf = TfidfConfig(**config.get("tfidf", {}))
            return SegmentedTfidf(self.views, self.stats, self.vocabulary, tokenize, tfidf)
        dense = DenseConfig(**config.get("dense", {}))
        return SegmentedDense(self.views, self._embedder(), self.stats.live_rows, dense)

    def _recorded_files(self) -> dict[Path, dict[str, Any]]:
        """Every file this generation reads, with the size and checksum recorded when it was written."""
        found = {self.folder / name: expected for name, expected in self.files.items()}
        for part in self.manifest["vocabulary"]:
            found[self.index_root / VOCABULARY / part["part"]] = part
        for entry in self.manifest["segments"]:
            folder = self.index_root / SEGMENTS / entry["name"]
            try:
                checksums = json.loads((folder / CHECKSUMS).read_text())
            except (OSError, ValueError) as exc:
                raise StoreFormatError(
                    f"{folder / CHECKSUMS} is missing or damaged ({exc}); {REPAIR}"
                ) from exc
            found.update({folder / name: expected for name, expected in checksums.items()})
        return found

    def verify_own_files(self) -> None:
        """Checksums of this generation's own folder and its vocabulary parts (small files), not of the
        segments it shares."""
        shared = self.index_root / SEGMENTS
        _compare({path: e for path, e in self.recorded.items() if path.parent.parent != shared})

    def verify(self, under: str = "") -> dict[str, Any]:
        """Compare every file this generation reads with its recorded checksum; StoreFormatError names the
        first that differs. `under` is accepted for the format-1 interface and ignored."""
        clock = time.perf_counter()
        files = self.recorded
        _compare(files)
        checked, total = len(files), sum(expected["size"] for expected in files.values())
        return {
            "generation": self.number,
            "files": checked,
            "bytes": total,
            "checksums": True,
            "seconds": round(time.perf_counter() - clock, 3),
        }

    def _check_sizes(self) -> None:
        """A few stat calls: a truncated or missing file is caught on open, before numpy reads it."""
        for path, expected in self.recorded.items():
            size = path.stat().st_size if path.is_file() else None
            if size != expected.get("size"):
                found = "missing" if size is None else f"{size} bytes, {expected.get('size')} recorded"
                raise StoreFormatError(f"{path} is damaged ({found}); {REPAIR}")


def _compare(files: dict[Path, dict[str, Any]]) -> None:
    """Raise StoreFormatError naming the first file whose checksum differs from the one recorded."""
    for path, expected in files.items():
        try:
            found = file_checksum(path)
        except OSError as exc:
            raise StoreFormatError(f"cannot read {path} ({exc.strerror}); {REPAIR}") from exc
        if found != expected["sha256"]:
            raise StoreFormatError(
                f"{path} does not match the checksum recorded for it (damaged on disk); {REPAIR}"
            )


def salvage_segment_vectors(index_root: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """Text hash -> vector from the segments a (damaged) manifest lists whose files match their checksums."""
    known: dict[str, np.ndarray] = {}
    for entry in manifest.get("segments", []):
        folder = index_root / SEGMENTS / str(entry.get("name"))
        try:  # only the two files a repair takes from it need to be intact
            checksums = json.loads((folder / CHECKSUMS).read_text())
            _compare({folder / name: checksums[name] for name in ("vectors.npy", "hashes.npy")})
            vectors = np.load(folder / "vectors.npy", allow_pickle=False)
            hashes = np.load(folder / "hashes.npy", allow_pickle=False)
            known.update((h.decode(), vectors[row]) for row, h in enumerate(hashes.tolist()))
        except Exception:  # a damaged segment: its texts are embedded again
            continue
    return known


class _Checked:
    """A searcher whose damaged-data failures (an index out of range in a mapped array whose header was
    intact) become one StoreFormatError; `ragtune status --verify` names the file."""

    def __init__(self, searcher: Any, segments: Path):
        self.searcher, self.segments, self.kind = searcher, segments, searcher.kind

    def __len__(self) -> int:
        return len(self.searcher)

    def search(self, query: str, k: int) -> Any:
        try:
            return self.searcher.search(query, k)
        except IndexError as exc:
            raise StoreFormatError(
                f"a segment under {self.segments} is damaged ({type(exc).__name__}: {exc}); "
                "`ragtune status --verify` names the file; " + REPAIR
            ) from exc
