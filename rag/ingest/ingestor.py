"""Ingestion: scan a folder, decide what changed (a pure plan), then carry the plan out.

Only added and changed documents are chunked and embedded. The new index generation is built from
the current one (rows of changed and deleted documents dropped, new rows appended) and becomes current
in the same store transaction that records the documents, so readers never see one without the other.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ragtune.core.errors import InputError, StoreFormatError
from ragtune.core.schema import Chunk, Document
from ragtune.indexes.embedding import Embedder
from ragtune.indexes.tokenize import Tokenizer
from ragtune.rag.config import RAGConfig
from ragtune.rag.ingest.chunking import Chunker
from ragtune.rag.ingest.readers import ReadLimits
from ragtune.rag.ingest.scan import FileNote, scan_folder, targets
from ragtune.rag.store.database import DocumentWrite, Store, StoredDocument
from ragtune.rag.store.generations import INDEX_KINDS, Generation, Generations
from ragtune.rag.store.merge_policy import MergeEverything, MergePolicy
from ragtune.rag.store.segment_writer import NextGeneration, next_generation
from ragtune.rag.store.segments import SegmentedGeneration


@dataclass(frozen=True)
class IngestPlan:
    """Document ids sorted into what an ingest must do with them."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    deleted: tuple[str, ...]
    unchanged: tuple[str, ...]

    @property
    def changes_anything(self) -> bool:
        return bool(self.added or self.changed or self.deleted)


def plan_ingest(stored: Mapping[str, str], incoming: Mapping[str, str]) -> IngestPlan:
    """Compare content hashes by document id: stored (what the index holds) vs incoming (what the files say)."""
    common = stored.keys() & incoming.keys()
    return IngestPlan(
        added=tuple(sorted(incoming.keys() - stored.keys())),
        changed=tuple(sorted(i for i in common if stored[i] != incoming[i])),
        deleted=tuple(sorted(stored.keys() - incoming.keys())),
        unchanged=tuple(sorted(i for i in common if stored[i] == incoming[i])),
    )


class PendingRemote(Protocol):
    """Rows a remote index received for generation `number`, visible once the store commits it."""

    number: int
    embedded: int

    def commit(self) -> None: ...  # inside the store transaction that makes `number` current

    def after_commit(self) -> None: ...


class RemoteIndex(Protocol):
    """An index on a server (rag/backends): sends the next generation's rows before the store commits."""

    def write(
        self,
        current: int,
        removed: set[str],
        new_chunks: list[Chunk],
        embedder: Embedder,
        *,
        rewrite_all: bool,
        reuse_vectors: bool,
        tell: Callable[[str, int, int], None] | None = None,
        progress: bool = False,
    ) -> PendingRemote: ...


@dataclass(frozen=True)
class IngestProgress:
    """How far an ingest has got, for a progress bar: `done` of `total` in its current stage.

    Stages, in order: reading (files), embedding (new chunk texts), indexing (BM25 and TF-IDF),
    saving (the new generation, then the store commit). Stages with nothing to do are not reported."""

    stage: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ProgressCallback = Callable[[IngestProgress], None]


@dataclass
class IngestReport:
    root: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[FileNote] = field(default_factory=list)
    problems: list[FileNote] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    embedded: int = 0
    generation: int = 0
    segments: int = 0  # in the generation now current
    seconds: float = 0.0
    repaired: str | None = None  # why the current generation was rebuilt from the store, when it was

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        line = (
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.deleted)} deleted, "
            f"{self.unchanged} unchanged, {len(self.skipped)} skipped"
        )
        repaired = f"; rebuilt the damaged index from the store: {self.repaired}" if self.repaired else ""
        # A remote index reports no segments: its server keeps its own.
        segments = f" ({self.segments} segment{'s' if self.segments != 1 else ''})" if self.segments else ""
        return (
            f"{line}; {self.chunks_added} chunks indexed ({self.embedded} embedded), "
            f"{self.chunks_removed} removed; generation {self.generation}{segments}; {self.seconds:.2f} s{repaired}"
        )


class Ingestor:
    """Carries out one ingest of one path into a store and its generations."""

    def __init__(
        self,
        store: Store,
        generations: Generations,
        config: RAGConfig,
        embedder: Callable[[], Embedder],
        progress: bool = True,
        on_progress: ProgressCallback | None = None,
        remote: RemoteIndex | None = None,
    ):
        self.store = store
        self.remote = remote  # rows on a server (the Milvus backend) instead of segments in the folder
        self.generations = generations
        self.config = config
        self.embedder = embedder
        self.progress = progress
        self.on_progress = on_progress
        self.chunker = Chunker(config.chunking)

    def _tell(self, stage: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(IngestProgress(stage, done, total))

    def run(
        self,
        path: str | os.PathLike[str],
        rebuild: bool = False,
        compact: bool = False,
        only: Iterable[str | os.PathLike[str]] | None = None,
    ) -> IngestReport:
        started = time.time()
        clock = time.perf_counter()  # durations from a monotonic clock; `started` is a timestamp
        root = Path(path).expanduser()
        if not root.exists():
            raise InputError(f"{str(path)!r} does not exist: give a folder or a file to ingest")
        root = root.resolve()
        report = IngestReport(root=str(root))
        self.generations.remove_dead_temporaries()  # left by ingests that were killed
        files, stored_sources = targets(self.store, root, self.generations.root.parent.resolve(), only)
        limits = ReadLimits(max_bytes=int(self.config.reader.max_file_mb * 2**20))
        tell = self._tell if self.on_progress is not None else None
        scan = scan_folder(self.store, root, files, stored_sources, limits, rebuild, self.progress, tell)
        report.skipped, report.problems = scan.skipped, scan.problems
        # Only documents of files that changed, vanished or are refused now can change; the rest (all of
        # them in an unchanged re-run) are counted, not loaded.
        touched = sorted(stored_sources.keys() - scan.kept.keys())
        stored_docs = self.store.documents_of_sources(touched)
        kept_documents = self.store.count_documents_under(str(root)) - len(stored_docs)

        incoming = {i: d.content_hash for i, d in scan.documents.items()}
        plan = plan_ingest({i: d.content_hash for i, d in stored_docs.items()}, incoming)
        report.unchanged = len(plan.unchanged) + kept_documents
        label = {
            **{i: _label(d) for i, d in stored_docs.items()},
            **{i: _label(d) for i, d in scan.documents.items()},
        }
        report.added = [label[i] for i in plan.added]
        report.changed = [label[i] for i in plan.changed]
        report.deleted = [label[i] for i in plan.deleted]
        vanished = sorted(stored_sources.keys() - scan.present)
        reread_mtimes = {source: mtime for source, mtime in scan.kept.items() if mtime is not None}

        current = self.store.generation()
        policy = MergeEverything() if compact else MergePolicy()
        if self.remote is not None:  # the server keeps its own segments; a compaction rewrites the rows
            base, unmerged = None, compact
        else:
            base, report.repaired = (None, None) if rebuild else self._check_current(current, plan)
            unmerged = (
                compact and isinstance(base, SegmentedGeneration) and bool(policy.plan(*base.segment_sizes()))
            )
        if not plan.changes_anything and not rebuild and current > 0 and not report.repaired and not unmerged:
            with self.store.transaction(write=True):
                self.store.write_sources(scan.sources)
                self.store.delete_sources(vanished)
                self.store.touch_documents({i: scan.mtimes[i] for i in plan.unchanged if i in scan.mtimes})
                self.store.touch_sources(reread_mtimes)
                report.generation = current
                report.segments = len(base.views) if isinstance(base, SegmentedGeneration) else 1
                report.seconds = time.perf_counter() - clock
                self.store.record_ingest(str(root), started, current, report.to_dict())
            self.generations.prune(keep={current, self.generations.previous(current) or 0})
            return report

        to_index = list(plan.added) + list(plan.changed)
        if rebuild:
            to_index += [i for i in plan.unchanged if i in scan.documents]
        new_chunks = self._chunk([scan.documents[i] for i in to_index])
        replaced = set(plan.changed) | set(plan.deleted) | (set(to_index) & stored_docs.keys())
        removed_chunk_ids = set(self.store.chunk_ids_of_documents(replaced))
        report.chunks_added, report.chunks_removed = len(new_chunks), len(removed_chunk_ids)
        number, pending = self._write_next(
            base, current, removed_chunk_ids, new_chunks, report, policy, rebuild
        )
        changed = set(plan.changed)
        versions = {i: stored_docs[i].version + (i in changed) if i in stored_docs else 1 for i in to_index}
        by_document: dict[str, list[Chunk]] = {i: [] for i in to_index}
        for chunk in new_chunks:
            by_document[chunk.document_id].append(chunk)
        with self.store.transaction(write=True):
            self.store.delete_documents(plan.deleted)
            self.store.write_documents(
                [DocumentWrite(scan.documents[i], scan.mtimes[i], by_document[i]) for i in to_index], versions
            )
            self.store.write_sources(scan.sources)
            self.store.delete_sources(vanished)
            self.store.touch_documents({i: scan.mtimes[i] for i in plan.unchanged if i in scan.mtimes})
            self.store.touch_sources(reread_mtimes)
            if pending is not None:
                pending.commit()
            self.store.set_meta("generation", str(number))
            report.generation = number
            report.seconds = time.perf_counter() - clock
            self.store.record_ingest(str(root), started, number, report.to_dict())
        self._tell("saving", 1, 1)
        if pending is not None:
            pending.after_commit()
        else:
            # Keep the generation just replaced: a reader may still be loading it.
            self.generations.prune(keep={current, number})
        return report

    # -- steps ------------------------------------------------------------------------------------

    def _write_next(
        self,
        base: Generation | SegmentedGeneration | None,
        current: int,
        removed: set[str],
        new_chunks: list[Chunk],
        report: IngestReport,
        policy: MergePolicy,
        rebuild: bool,
    ) -> tuple[int, PendingRemote | None]:
        """Write the next generation where this index keeps its rows, not yet current: a segmented
        generation in the folder, or rows on the server (then also what to do at and after the commit)."""
        if self.remote is not None:
            pending = self.remote.write(
                current,
                removed,
                new_chunks,
                self.embedder(),
                rewrite_all=rebuild or isinstance(policy, MergeEverything),  # a rebuild or --compact
                reuse_vectors=not rebuild,
                tell=self._tell if self.on_progress else None,
                progress=self.progress,
            )
            report.embedded, report.segments = pending.embedded, 0
            self._tell("saving", 0, 1)
            return pending.number, pending
        number = self.generations.next_number(current)
        next_gen = self._build(base, current, removed, new_chunks, report, policy)
        report.segments = len(next_gen.entries)
        self._tell("saving", 0, 1)
        self.generations.write_segmented(number, next_gen, self.config.index_time())
        return number, None

    def _chunk(self, documents: list[Document]) -> list[Chunk]:
        chunks: list[Chunk] = []
        for doc in documents:
            chunks += self.chunker.split(doc)
        return chunks

    def _check_current(self, current: int, plan: IngestPlan) -> tuple[Any, str | None]:
        """The current generation to build on, or None and why it is damaged (the caller rebuilds it).

        A segmented generation's own files and vocabulary are checked against their checksums (a few
        small files: the segments it shares are immutable and `ragtune status --verify` reads them all).
        An older, single-folder generation is checked whole and then converted: the next generation is
        built from the store, reusing its vectors."""
        if current == 0:
            return None, None
        try:
            base = self.generations.open(current, self.embedder)
            if isinstance(base, SegmentedGeneration):
                base.verify_own_files()
                if plan.changes_anything:
                    base.vocabulary  # noqa: B018 (loads and checks it)
            else:
                base.verify()
                for kind in INDEX_KINDS:
                    base.index(kind)
        except StoreFormatError as exc:
            return None, str(exc)
        return base, None

    def _build(
        self,
        base: Generation | SegmentedGeneration | None,
        current: int,
        removed: set[str],
        new_chunks: list[Chunk],
        report: IngestReport,
        policy: MergePolicy,
    ) -> NextGeneration:
        """The next generation: `base` (the current segmented generation) plus the changes, or, without
        one, every chunk in the store, reusing vectors from an older-format or damaged generation."""
        known: dict[str, np.ndarray] | None = None
        stored: list[tuple[str, str]] = []
        segmented = base if isinstance(base, SegmentedGeneration) else None
        if segmented is None:
            if isinstance(base, Generation):  # format 1: converted now
                dense = base.index("dense")
                known = dict(zip(dense.hashes, dense.vectors, strict=True))  # type: ignore[attr-defined]
            elif report.repaired:
                known = self.generations.salvage_vectors(current, self.embedder)
            # Every chunk the store keeps must be in the new generation, not only the new ones.
            stored = [(cid, text) for cid, text in self.store.iter_chunks() if cid not in removed]
        next_gen = next_generation(
            segmented,
            removed if segmented is not None else set(),
            [cid for cid, _ in stored] + [c.id for c in new_chunks],
            [text for _, text in stored] + [c.text for c in new_chunks],
            self.embedder(),
            Tokenizer(self.config.tokenizer),
            policy,
            known,
            self._tell if self.on_progress else None,
            self.progress,
        )
        report.embedded = next_gen.embedded
        return next_gen


def _label(doc: Document | StoredDocument) -> str:
    return doc.source if not doc.record else f"{doc.source}#{doc.record}"
