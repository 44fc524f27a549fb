"""Reading a folder for an ingest: which files changed since the store last saw them, and what they hold.

Only regular files are read (`files.classify`), and only those whose size or modification time differ
from what the store recorded: at 100k unchanged files a scan is one listing, one `lstat` a file and one
query. What the scan found is returned, not written: the ingest writes it in its store transaction.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG

from tqdm.auto import tqdm

from ragtune.core.schema import Document
from ragtune.rag.ingest.files import Refusal, classify, lstat_all, read_file
from ragtune.rag.ingest.files import list_entries as list_files
from ragtune.rag.ingest.readers import SUPPORTED_SUFFIXES, ReadLimits, parse_bytes
from ragtune.rag.store.database import SourceWrite, Store, StoredSource


@dataclass(frozen=True)
class FileNote:
    path: str
    reason: str


@dataclass
class FolderScan:
    """What reading the folder found, before comparing with the store."""

    documents: dict[str, Document] = field(default_factory=dict)  # from files that were (re)read
    mtimes: dict[str, float] = field(default_factory=dict)  # document id -> file mtime
    # Stored sources whose documents stay as they are: the file is unchanged (same size and time, or
    # same bytes; value: its new mtime when it was re-read, else None), or cannot be read just now.
    kept: dict[str, float | None] = field(default_factory=dict)
    sources: list[SourceWrite] = field(default_factory=list)
    present: set[str] = field(default_factory=set)  # every path found under the root
    skipped: list[FileNote] = field(default_factory=list)
    problems: list[FileNote] = field(default_factory=list)


def targets(
    store: Store, root: Path, index_folder: Path, only: Iterable[str | os.PathLike[str]] | None
) -> tuple[list[str], dict[str, StoredSource]]:
    """The paths to look at and what the store holds of them: everything under `root`, or only the
    `only` paths (files or folders; gone ones included, so that what they held is deleted)."""
    if only is None:
        return list_files(root, exclude=index_folder), store.sources_under(str(root))
    files: list[str] = []
    stored: dict[str, StoredSource] = {}
    for given in sorted({os.path.abspath(p) for p in only}):
        target = Path(given)
        inside = target.relative_to(root).parts if target.is_relative_to(root) else None
        if inside is None or any(part.startswith(".") for part in inside):
            continue  # outside the folder, or hidden: a full ingest would not look at it either
        if target == index_folder or index_folder in target.parents:
            continue
        stored.update(store.sources_under(given))
        if os.path.lexists(given):
            files += list_files(target, exclude=index_folder) if target.is_dir() else [given]
    return list(dict.fromkeys(files)), stored


def scan_folder(
    store: Store,
    root: Path,
    files: list[str],
    stored_sources: Mapping[str, StoredSource],
    limits: ReadLimits,
    force: bool,
    progress: bool,
    tell: Callable[[str, int, int], None] | None,
) -> FolderScan:
    """Read what changed among `files` (all of them with `force`); `tell(stage, done, total)` hears how
    far it got."""
    found = FolderScan()

    def skip(
        source: str,
        reason: str,
        problems: Sequence[str] = (),
        keep: bool = False,
        read: tuple[int, int, str] = (-1, -1, ""),
    ) -> None:
        # Every skip is a row in the sources table, so `status` counts what the report counts. A file
        # that was not read (or keeps its last good version) is stored with a size no file has, so
        # the next ingest reads it again instead of trusting its unchanged size and time.
        found.skipped.append(FileNote(source, reason))
        if keep and source in stored_sources:  # an unreadable file keeps what was indexed from it
            found.kept[source] = None
        found.sources.append(SourceWrite(source, *read, reason, problems))

    statuses = lstat_all(files)
    bar = tqdm(files, desc="reading", unit="file", disable=not progress or len(files) < 2)
    for done, (entry, status) in enumerate(zip(bar, statuses, strict=True)):
        if tell is not None and done % 64 == 0:
            tell("reading", done, len(files))
        source = str(entry) if os.sep == "/" else Path(entry).as_posix()
        found.present.add(source)
        stored = stored_sources.get(source)
        if (  # the common case first: a regular file with the size and time it had last time
            stored is not None
            and not force
            and isinstance(status, os.stat_result)
            and S_ISREG(status.st_mode)
            and stored.size == status.st_size
            and stored.mtime_ns == status.st_mtime_ns
        ):
            found.kept[source] = None
            if stored.skipped:
                found.skipped.append(FileNote(source, stored.skipped))
            if stored.problems_json != "[]":
                found.problems += [FileNote(source, p) for p in stored.problems]
            continue
        stat = classify(entry, status, root)  # links, FIFOs and devices are never opened
        if isinstance(stat, Refusal):
            skip(source, stat.reason, keep=stat.transient)
            continue
        extension = _extension(source)
        suffix = extension.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            skip(source, f"unsupported file type {extension or '(none)'!r}")
            continue
        data, reason = read_file(Path(entry), limits.max_bytes)
        if data is None:
            skip(source, reason or "unreadable", keep=True)
            continue
        digest = hashlib.sha256(data).hexdigest()
        if stored is not None and stored.sha256 == digest and not force:
            found.kept[source] = stat.st_mtime
            found.sources.append(
                SourceWrite(source, stat.st_size, stat.st_mtime_ns, digest, stored.skipped, stored.problems)
            )
            if stored.skipped:
                found.skipped.append(FileNote(source, stored.skipped))
            continue
        result = parse_bytes(data, suffix, source, limits)
        found.problems += [FileNote(source, p) for p in result.problems]
        if result.skipped and stored is not None and store.has_documents(source):
            skip(source, result.skipped, result.problems, keep=True)  # keep the last good version
            continue
        if result.skipped:
            skip(source, result.skipped, result.problems, read=(stat.st_size, stat.st_mtime_ns, digest))
            continue
        found.sources.append(
            SourceWrite(source, stat.st_size, stat.st_mtime_ns, digest, None, result.problems)
        )
        for doc in result.documents:
            found.documents[doc.id] = doc
            found.mtimes[doc.id] = stat.st_mtime
    if tell is not None:
        tell("reading", len(files), len(files))
    return found


def _extension(path: str) -> str:
    """What `os.path.splitext` gives as the extension (a leading dot does not start one), faster."""
    name = path[path.rfind("/") + 1 :]
    dot = name.rfind(".")
    return name[dot:] if dot > 0 and name[:dot].strip(".") else ""
