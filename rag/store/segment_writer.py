"""Building and writing the next segmented generation from the current one and the ingest's changes.

Cost follows the edit: the removed rows are found by binary search in each segment and marked deleted,
their counts are subtracted from the corpus statistics, the new chunks are tokenized once and embedded
(a chunk whose text a removed row held keeps that vector), and one new segment is written. Merges the
policy asks for copy live rows of the merged segments; nothing is re-tokenized or re-embedded.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ragtune.core.schema import text_hash
from ragtune.indexes.dense import DenseConfig
from ragtune.indexes.embedding import Embedder, encode_in_slices
from ragtune.indexes.segment import SegmentData, concatenate, write_segment
from ragtune.indexes.segmented import CorpusStats
from ragtune.indexes.tokenize import Tokenizer
from ragtune.indexes.vocabulary import Vocabulary
from ragtune.rag.store.durable import describe_files, file_checksum, fsync_folder, publish_folder
from ragtune.rag.store.merge_policy import MergePolicy
from ragtune.rag.store.segments import (
    CHECKSUMS,
    DF,
    SEGMENTED_FORMAT,
    SEGMENTS,
    VOCABULARY,
    SegmentedGeneration,
)


@dataclass
class Entry:
    """One segment the next generation lists: an existing one by name, or new content to write."""

    rows: int
    name: str = ""  # of an existing segment
    data: SegmentData | None = None  # of a new one
    deleted: np.ndarray | None = None  # bool per row; None: none deleted

    @property
    def live(self) -> int:
        return self.rows - (int(self.deleted.sum()) if self.deleted is not None else 0)


@dataclass
class NextGeneration:
    """What the next generation lists: segments in order and their deletions, its statistics and
    vocabulary."""

    entries: list[Entry]
    stats: CorpusStats
    vocabulary: Vocabulary
    vocabulary_parts: list[dict[str, Any]]  # the parts of the current generation
    embedded: int = 0
    merged: list[str] = field(default_factory=list)  # names of segments merged away

    @property
    def live_rows(self) -> int:
        return self.stats.live_rows


def next_generation(
    base: SegmentedGeneration | None,
    removed_ids: set[str],
    new_ids: Sequence[str],
    new_texts: Sequence[str],
    embedder: Embedder,
    tokenize: Tokenizer,
    policy: MergePolicy,
    known_vectors: dict[str, np.ndarray] | None = None,
    tell: Callable[[str, int, int], None] | None = None,
    progress: bool = False,
) -> NextGeneration:
    """The next generation: `base` minus the rows of `removed_ids`, plus a segment of the new chunks.

    `known_vectors` (text hash -> vector) are reused instead of embedding again, e.g. salvaged from a
    damaged index; the vectors of removed rows are reused the same way. `tell(stage, done, total)`
    hears how far embedding and indexing have got."""
    known = dict(known_vectors or {})
    entries: list[Entry] = []
    removed_counts = []
    stats, parts = CorpusStats.empty(), []
    vocabulary = Vocabulary()
    if base is not None:
        vocabulary = Vocabulary(base.vocabulary.terms)  # a copy: the current one may be searched meanwhile
        stats, parts = base.stats, list(base.manifest["vocabulary"])
        wanted = sorted(removed_ids)
        for view in base.views:
            segment = view.segment
            rows = segment.positions(wanted)
            rows = rows[rows >= 0]
            deleted = view.deleted
            if rows.size:
                if deleted is not None:
                    rows = rows[~deleted[rows]]
                deleted = np.zeros(len(segment), dtype=bool) if deleted is None else deleted.copy()
                deleted[rows] = True
                removed_counts.append(segment.row_counts(rows))
                for row in rows.tolist():
                    known.setdefault(segment.hashes[row].decode(), np.asarray(segment.vectors[row]))
            entries.append(Entry(len(segment), segment.name, None, deleted))
    hashes = [text_hash(t) for t in new_texts]
    vectors, embedded = vectors_reusing(new_texts, hashes, known, embedder, tell, progress)
    if tell:
        tell("indexing", 0, 1)
    added = vocabulary.count_rows(tokenize(text) for text in new_texts)  # BM25 and TF-IDF share these
    width = len(vocabulary)
    removed = (
        sp.vstack([_widen(c, width) for c in removed_counts], format="csr")
        if removed_counts
        else sp.csr_matrix((0, width), dtype=np.int32)
    )
    stats = stats.changed(removed, added)
    if len(new_ids):
        entries.append(Entry(len(new_ids), data=SegmentData(list(new_ids), hashes, added, vectors)))
    next_gen = NextGeneration(entries, stats, vocabulary, parts, embedded)
    _merge(next_gen, base, policy)
    if tell:
        tell("indexing", 1, 1)
    return next_gen


def _widen(counts: sp.csr_matrix, width: int) -> sp.csr_matrix:
    return sp.csr_matrix((counts.data, counts.indices, counts.indptr), shape=(counts.shape[0], width))


def vectors_reusing(
    texts: Sequence[str],
    hashes: list[str],
    known: dict[str, np.ndarray],
    embedder: Embedder,
    tell: Callable[[str, int, int], None] | None,
    progress: bool,
) -> tuple[np.ndarray, int]:
    """One vector per text: known ones reused, each distinct new text embedded once; `tell` hears the
    "embedding" stage's progress."""
    to_embed: dict[str, str] = {}
    for h, text in zip(hashes, texts, strict=True):
        if h not in known:
            to_embed.setdefault(h, text)
    pending = list(to_embed.values())
    if pending:
        on_embedded = (lambda done, total: tell("embedding", done, total)) if tell else None
        fresh = encode_in_slices(embedder, pending, progress, on_embedded)
        known = {**known, **dict(zip(to_embed, fresh, strict=True))}
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), 0
    return np.vstack([known[h] for h in hashes]).astype(np.float32), len(pending)


def _merge(next_gen: NextGeneration, base: SegmentedGeneration | None, policy: MergePolicy) -> None:
    """Apply the merge policy: each group becomes one new segment of its live rows, where the group's
    first member stood."""
    entries = next_gen.entries
    groups = policy.plan([e.live for e in entries], [e.rows for e in entries])
    if not groups:
        return
    segments = {view.segment.name: view.segment for view in base.views} if base is not None else {}
    width = len(next_gen.vocabulary)
    dimensions = max(
        [e.data.vectors.shape[1] for e in entries if e.data is not None and e.data.vectors.size]
        + [s.vectors.shape[1] for s in segments.values()]
        + [0]
    )
    replaced: dict[int, Entry] = {}
    for group in groups:
        parts = []
        for position in group:
            entry = entries[position]
            keep = np.arange(entry.rows) if entry.deleted is None else np.flatnonzero(~entry.deleted)
            if entry.data is not None:
                parts.append(_take(entry.data, keep))
            else:
                parts.append(segments[entry.name].take(keep))
                next_gen.merged.append(entry.name)
        merged = concatenate(parts, width, dimensions)
        if len(merged):  # a group whose rows were all deleted simply goes
            replaced[group[0]] = Entry(len(merged), data=merged)
    dropped = {position for group in groups for position in group[1:]}
    dropped |= {group[0] for group in groups if group[0] not in replaced}
    next_gen.entries = [replaced.get(i, e) for i, e in enumerate(entries) if i not in dropped]


def _take(data: SegmentData, keep: np.ndarray) -> SegmentData:
    return SegmentData(
        [data.chunk_ids[r] for r in keep.tolist()],
        [data.hashes[r] for r in keep.tolist()],
        data.counts[keep],
        data.vectors[keep],
    )


def write_next(root: Path, number: int, next_gen: NextGeneration, config: dict[str, Any]) -> dict[str, Any]:
    """Write the new segments and vocabulary part into the index folder `root`; return the generation's
    manifest (its own files, df.npy and the deletion bitmaps, are written by `write_generation_files`).
    Nothing here is current until the generation is committed."""
    segments = []
    for position, entry in enumerate(next_gen.entries):
        if entry.data is not None:
            entry.name = f"{number:06d}-{position:03d}"
            _write_segment(root / SEGMENTS, entry.name, entry.data, DenseConfig(**config.get("dense", {})))
        segments.append({"name": entry.name, "rows": entry.rows, "live": entry.live})
    parts = list(next_gen.vocabulary_parts)
    known_terms = sum(p["terms"] for p in parts)
    if len(next_gen.vocabulary) > known_terms:
        folder = root / VOCABULARY
        folder.mkdir(parents=True, exist_ok=True)
        part = f"{number:06d}.json"
        tmp = folder / f".tmp-{number:06d}-{os.getpid()}"
        next_gen.vocabulary.save_part(tmp, known_terms)
        _fsync_file(tmp)
        os.replace(tmp, folder / part)
        fsync_folder(folder)
        size = (folder / part).stat().st_size
        terms = len(next_gen.vocabulary) - known_terms
        parts.append({"part": part, "terms": terms, "size": size, "sha256": file_checksum(folder / part)})
    return {
        "format": SEGMENTED_FORMAT,
        "generation": number,
        "created_at": time.time(),
        "rows": next_gen.stats.live_rows,
        "total_length": next_gen.stats.total_length,
        "vocabulary": parts,
        "segments": segments,
        "merged": next_gen.merged,
        "config": config,
    }


def write_generation_files(folder: Path, manifest: dict[str, Any], next_gen: NextGeneration) -> None:
    """A generation folder's own files: df.npy and a packed bitmap of each segment's deleted rows."""
    np.save(folder / DF, next_gen.stats.df.astype(np.int64), allow_pickle=False)
    for listed, entry in zip(manifest["segments"], next_gen.entries, strict=True):
        listed["deleted"] = None
        if entry.deleted is not None and entry.deleted.any():
            (folder / "deleted").mkdir(exist_ok=True)
            listed["deleted"] = f"deleted/{entry.name}.npy"
            np.save(folder / listed["deleted"], np.packbits(entry.deleted), allow_pickle=False)


def _write_segment(parent: Path, name: str, data: SegmentData, dense: DenseConfig) -> None:
    def filled(tmp: Path) -> None:
        write_segment(tmp, data, dense)
        (tmp / CHECKSUMS).write_text(json.dumps(describe_files(tmp), indent=1))

    parent.mkdir(parents=True, exist_ok=True)
    publish_folder(parent / f".tmp-{name}-{os.getpid()}", parent / name, filled)


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())
