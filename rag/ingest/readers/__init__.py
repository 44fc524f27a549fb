"""Turn the bytes of one file into Documents: plain text, Markdown, HTML, PDF, DOCX, JSON and JSONL.

Reading is pure (the caller does the file I/O) and never raises for bad content: a file that cannot be
read comes back as a ReadResult with no documents and a one-line `skipped` reason the CLI can show, and
bad records inside an otherwise readable JSON/JSONL file are listed in `problems`. What one file may
cost is bounded by ReadLimits: archives are checked by their uncompressed size, and HTML and DOCX are
read in one streaming pass, so memory follows the text rather than the markup.
"""

from __future__ import annotations

from collections.abc import Callable

from ragtune.rag.ingest.readers.common import (
    ReadLimits,
    ReadResult,
    Skip,
    describe_unexpected,
    normalise_text,
)
from ragtune.rag.ingest.readers.markup import read_html
from ragtune.rag.ingest.readers.pdf import read_pdf
from ragtune.rag.ingest.readers.records import read_json, read_jsonl
from ragtune.rag.ingest.readers.text import read_md, read_txt
from ragtune.rag.ingest.readers.word import read_docx

__all__ = ["SUPPORTED_SUFFIXES", "ReadLimits", "ReadResult", "normalise_text", "parse_bytes"]

_READERS: dict[str, tuple[str, Callable[[bytes, str, ReadLimits], ReadResult]]] = {
    ".txt": ("TXT", read_txt),
    ".md": ("Markdown", read_md),
    ".markdown": ("Markdown", read_md),
    ".html": ("HTML", read_html),
    ".htm": ("HTML", read_html),
    ".pdf": ("PDF", read_pdf),
    ".docx": ("DOCX", read_docx),
    ".json": ("JSON", read_json),
    ".jsonl": ("JSONL", read_jsonl),
}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_READERS)


def parse_bytes(data: bytes, suffix: str, source: str, limits: ReadLimits | None = None) -> ReadResult:
    """Turn a file's bytes into documents. Pure: no file I/O.

    `suffix` is lower-case with the dot; `source` is the absolute posix path, copied into each
    Document.source. Never raises for bad content: it returns ReadResult(documents=[], skipped="<reason>")
    instead.
    """
    entry = _READERS.get(suffix.lower())
    if entry is None:
        return ReadResult(documents=[], skipped=f"unsupported file type '{suffix}'")
    format_name, reader = entry
    try:
        return reader(data, source, limits or ReadLimits())
    except Skip as skip:
        return ReadResult(documents=[], skipped=skip.reason, problems=skip.problems)
    except Exception as exc:
        # Parsers of untrusted files fail in ways no list of exceptions covers (struct.error, zlib.error,
        # RecursionError on deep nesting, MemoryError...); one bad file must not stop an ingestion run.
        return ReadResult(documents=[], skipped=f"cannot read {format_name}: {describe_unexpected(exc)}")
