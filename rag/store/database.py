"""The document store: one SQLite file (WAL) holding sources, documents, chunks and the index generation.

The store is the single source of truth. An ingest writes everything it changed, together with the
number of the index generation built for it, in one transaction: a reader in its own read transaction
sees either the old documents with the old generation or the new ones with the new generation.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ragtune.core.errors import StoreFormatError
from ragtune.core.schema import Chunk, Document

STORE_FORMAT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per file seen: lets an unchanged folder be recognised from stat() alone.
CREATE TABLE IF NOT EXISTS sources (
    path        TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    skipped     TEXT,              -- why the file gave no documents, NULL when it did
    problems    TEXT NOT NULL DEFAULT '[]',
    ingested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    record       TEXT NOT NULL DEFAULT '',
    content_hash TEXT NOT NULL,
    mtime        REAL NOT NULL,
    version      INTEGER NOT NULL,
    metadata     TEXT NOT NULL,
    ingested_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source);
CREATE TABLE IF NOT EXISTS chunks (
    id          TEXT PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    text        TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE TABLE IF NOT EXISTS ingest_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    root        TEXT NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL NOT NULL,
    generation  INTEGER NOT NULL,
    report      TEXT NOT NULL
);
"""


class StoredSource(NamedTuple):
    """A file as the last ingest saw it. A named tuple, not a dataclass: an ingest loads one per file
    under the folder, and at 100k files building frozen dataclasses cost a third of an unchanged re-run."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    skipped: str | None
    problems_json: str  # decoded only for the few files that have problems

    @property
    def problems(self) -> list[str]:
        return _json(self.problems_json)


class StoredDocument(NamedTuple):
    """What an ingest needs to know of a stored document it may change or delete."""

    id: str
    source: str
    record: str
    content_hash: str
    version: int


@dataclass(frozen=True)
class ChunkRow:
    """A chunk with what a search result needs to show about its document."""

    id: str
    document_id: str
    position: int
    text: str
    source: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class DocumentWrite:
    """A document to insert or replace, with the chunks that now make it up."""

    document: Document
    mtime: float
    chunks: Sequence[Chunk]


@dataclass(frozen=True)
class SourceWrite:
    path: str
    size: int
    mtime_ns: int
    sha256: str
    skipped: str | None = None
    problems: Sequence[str] = ()


def _under(root: str) -> tuple[str, str, str]:
    """Parameters of `col = ? OR (col > ? AND col < ?)`: `root` itself or a path below it. A key range
    (the column's index serves it): paths starting with "root/" sort between "root/" and "root0", as "0"
    follows "/"."""
    prefix = root.rstrip("/")
    return root, prefix + "/", prefix + "0"


_DAMAGE = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_DAMAGE_TEXT = ("file is not a database", "database disk image is malformed")


class Store:
    """Access to one store file. Each thread gets its own SQLite connection; `close` closes them all."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._open: set[sqlite3.Connection] = set()  # every thread's connection, for close()
        self._open_lock = threading.Lock()
        with self._damage_as_error():
            self._init()

    @contextmanager
    def _damage_as_error(self) -> Iterator[None]:
        """A damaged or foreign store file becomes one StoreFormatError naming it, not a traceback."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            name = getattr(exc, "sqlite_errorname", None)  # Python 3.11+; the message before that
            if name not in _DAMAGE and not (name is None and any(m in str(exc) for m in _DAMAGE_TEXT)):
                raise
            raise StoreFormatError(
                f"{self.path} is damaged or not a ragtune store ({exc}); the store is the source of "
                "truth and cannot be rebuilt from the index files: move the index folder away and ingest "
                "the documents again"
            ) from exc

    # -- connections and transactions -------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or db not in self._open:  # new thread, or closed by close()
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
            with self._open_lock:
                self._open.add(db)
            self._local.db = db
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
        return db

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A read snapshot (default) or a write transaction; nested calls join the outer one."""
        with self._damage_as_error():
            db = self._connection()
            if db.in_transaction:
                yield db
                return
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _init(self) -> None:
        db = self._connection()
        db.executescript(_SCHEMA)
        found = self.get_meta("store_format")
        if found is None:
            with self.transaction(write=True):
                self.set_meta("store_format", str(STORE_FORMAT))
                self.set_meta("generation", "0")
        elif found != str(STORE_FORMAT):
            raise StoreFormatError(
                f"{self.path} has store format {found}, this ragtune reads format {STORE_FORMAT}: "
                "re-ingest into a new index folder"
            )

    def close(self) -> None:
        """Close the connections of every thread (a thread that uses the store again reconnects)."""
        with self._open_lock:
            connections, self._open = self._open, set()
        for db in connections:
            db.close()
        self._local = threading.local()

    # -- meta -------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._connection().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self._connection().execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    # -- reads ------------------------------------------------------------------------------------

    def sources_under(self, root: str) -> dict[str, StoredSource]:
        """Stored sources at `root` itself or anywhere below it."""
        rows = self._connection().execute(
            "SELECT path, size, mtime_ns, sha256, skipped, problems FROM sources "
            "WHERE path = ? OR (path > ? AND path < ?)",
            _under(root),
        )
        return {r[0]: StoredSource._make(r) for r in rows}

    def documents_of_sources(self, sources: Iterable[str]) -> dict[str, StoredDocument]:
        """Stored documents read from these sources, by document id."""
        sql = "SELECT id, source, record, content_hash, version FROM documents WHERE source IN ({marks})"
        return {r[0]: StoredDocument._make(r) for r in self._select_in(sql, sources)}

    def count_documents_under(self, root: str) -> int:
        """How many stored documents come from `root` itself or from anywhere below it."""
        sql = "SELECT COUNT(*) FROM documents WHERE source = ? OR (source > ? AND source < ?)"
        return self._connection().execute(sql, _under(root)).fetchone()[0]

    def has_documents(self, source: str) -> bool:
        sql = "SELECT 1 FROM documents WHERE source = ? LIMIT 1"
        return self._connection().execute(sql, (source,)).fetchone() is not None

    def _select_in(self, sql: str, values: Iterable[str]) -> Iterator[tuple]:
        """Run `sql`, whose `{marks}` stands for the placeholders of an IN list, over `values` in
        batches small enough for SQLite's limit on bound parameters."""
        db = self._connection()
        values = list(values)
        for start in range(0, len(values), 500):
            batch = values[start : start + 500]
            yield from db.execute(sql.format(marks=",".join("?" * len(batch))), batch)

    def chunk_ids_of_documents(self, document_ids: Iterable[str]) -> list[str]:
        return [
            r[0]
            for r in self._select_in("SELECT id FROM chunks WHERE document_id IN ({marks})", document_ids)
        ]

    def chunks(self, chunk_ids: Sequence[str]) -> dict[str, ChunkRow]:
        """Chunks by id, joined with their document's source and metadata."""
        rows = self._select_in(
            "SELECT c.id, c.document_id, c.position, c.text, d.source, d.metadata "
            "FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN ({marks})",
            chunk_ids,
        )
        return {r[0]: ChunkRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows}

    def iter_chunks(self) -> Iterator[tuple[str, str]]:
        """(chunk id, text) of every stored chunk, in id order."""
        yield from self._connection().execute("SELECT id, text FROM chunks ORDER BY id")

    def counts(self) -> dict[str, int]:
        db = self._connection()
        return {
            "documents": db.execute("SELECT COUNT(*) FROM documents").fetchone()[0],
            "chunks": db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0],
            "sources": db.execute("SELECT COUNT(*) FROM sources WHERE skipped IS NULL").fetchone()[0],
            "skipped_sources": db.execute(
                "SELECT COUNT(*) FROM sources WHERE skipped IS NOT NULL"
            ).fetchone()[0],
        }

    def last_ingest(self) -> dict[str, Any] | None:
        row = (
            self._connection()
            .execute(
                "SELECT root, started_at, finished_at, generation, report FROM ingest_runs ORDER BY id DESC"
            )
            .fetchone()
        )
        if row is None:
            return None
        return {
            "root": row[0],
            "started_at": row[1],
            "finished_at": row[2],
            "generation": row[3],
            "report": json.loads(row[4]),
        }

    # -- writes (call inside `transaction(write=True)`) ---------------------------------------------

    def write_sources(self, sources: Iterable[SourceWrite]) -> None:
        now = time.time()
        self._connection().executemany(
            "INSERT INTO sources(path, size, mtime_ns, sha256, skipped, problems, ingested_at) "
            "VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, skipped = excluded.skipped, "
            "problems = excluded.problems, ingested_at = excluded.ingested_at",
            [
                (s.path, s.size, s.mtime_ns, s.sha256, s.skipped, json.dumps(list(s.problems)), now)
                for s in sources
            ],
        )

    def delete_sources(self, paths: Iterable[str]) -> None:
        self._connection().executemany("DELETE FROM sources WHERE path = ?", [(p,) for p in paths])

    def write_documents(self, writes: Iterable[DocumentWrite], versions: dict[str, int]) -> None:
        """Insert or replace documents and all their chunks; `versions` gives each document's version."""
        db = self._connection()
        now = time.time()
        for w in writes:
            doc = w.document
            db.execute("DELETE FROM chunks WHERE document_id = ?", (doc.id,))
            db.execute(
                "INSERT INTO documents(id, source, record, content_hash, mtime, version, metadata, ingested_at) "
                "VALUES(?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET source = excluded.source, "
                "record = excluded.record, content_hash = excluded.content_hash, mtime = excluded.mtime, "
                "version = excluded.version, metadata = excluded.metadata, ingested_at = excluded.ingested_at",
                (
                    doc.id,
                    doc.source,
                    doc.record,
                    doc.content_hash,
                    w.mtime,
                    versions[doc.id],
                    json.dumps(doc.metadata, sort_keys=True, ensure_ascii=False, default=str),
                    now,
                ),
            )
            db.executemany(
                "INSERT INTO chunks(id, document_id, position, text, hash) VALUES(?, ?, ?, ?, ?)",
                [(c.id, c.document_id, c.position, c.text, c.hash) for c in w.chunks],
            )

    def touch_documents(self, mtimes: dict[str, float]) -> None:
        """Record a new mtime for documents whose content did not change."""
        self._connection().executemany(
            "UPDATE documents SET mtime = ? WHERE id = ?", [(m, i) for i, m in mtimes.items()]
        )

    def touch_sources(self, mtimes: dict[str, float]) -> None:
        """Record a new mtime for every document of these sources (files re-read with the same bytes)."""
        self._connection().executemany(
            "UPDATE documents SET mtime = ? WHERE source = ?", [(m, s) for s, m in mtimes.items()]
        )

    def delete_documents(self, document_ids: Iterable[str]) -> None:
        self._connection().executemany("DELETE FROM documents WHERE id = ?", [(i,) for i in document_ids])

    def record_ingest(self, root: str, started_at: float, generation: int, report: dict[str, Any]) -> None:
        self._connection().execute(
            "INSERT INTO ingest_runs(root, started_at, finished_at, generation, report) VALUES(?, ?, ?, ?, ?)",
            (root, started_at, time.time(), generation, json.dumps(report)),
        )


def _json(text: str) -> Any:
    """json.loads, skipping the parser for the empty list and object most rows hold."""
    if text == "[]":
        return []
    if text == "{}":
        return {}
    return json.loads(text)
