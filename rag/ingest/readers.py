"""Turn the bytes of one file into Documents: plain text, Markdown, HTML, PDF, DOCX, JSON and JSONL.

Reading is pure (the caller does the file I/O) and never raises for bad content: a file that cannot be
read comes back as a ReadResult with no documents and a one-line `skipped` reason the CLI can show, and
bad records inside an otherwise readable JSON/JSONL file are listed in `problems`.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import math
import re
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import docx
from bs4 import BeautifulSoup
from bs4.dammit import EncodingDetector
from docx.opc.exceptions import PackageNotFoundError
from pypdf import PdfReader
from pypdf.errors import PyPdfError
from ragtune.core.schema import Document


@dataclass(frozen=True)
class ReadResult:
    """What reading one file gave: its documents, or why the whole file was skipped."""

    documents: list[Document]
    skipped: str | None = None
    problems: list[str] = field(default_factory=list)


class _Skip(Exception):
    """Internal: the whole file is skipped for `reason` (raised deep in a reader, caught in parse_bytes)."""

    def __init__(self, reason: str, problems: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.problems = problems or []


_BINARY_SNIFF_BYTES = 8192
_MAX_REASON_CHARS = 150
_MAX_TITLE_CHARS = 200
_MAX_META_STR_CHARS = 200


# ---------------------------------------------------------------------------------------------------------
# Shared helpers


def normalise_text(text: str) -> str:
    """Line endings to \\n, no trailing spaces, at most one blank line in a row, no outer whitespace."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _one_line(message: str, limit: int = _MAX_REASON_CHARS) -> str:
    # Library messages can span lines or quote whole objects; a skip reason must fit on one CLI line.
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1].rstrip() + "…"


def _describe(exc: BaseException) -> str:
    """Short text of an exception we expected from a library: its message, or its type if it has none."""
    # KeyError's str() wraps the message in quotes; args[0] is the message itself.
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return _one_line(message or type(exc).__name__)


def _describe_unexpected(exc: BaseException) -> str:
    return _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _clean_title(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    title = " ".join(value.split())
    if not title:
        return None
    return title if len(title) <= _MAX_TITLE_CHARS else title[: _MAX_TITLE_CHARS - 1].rstrip() + "…"


def _metadata(kind: str, title: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"type": kind}
    if title:
        meta["title"] = title
    return meta


def _reject_binary(data: bytes) -> None:
    # A NUL byte never occurs in real UTF-8 text files but almost always early in binary ones.
    if b"\x00" in data[:_BINARY_SNIFF_BYTES]:
        raise _Skip("binary content, not text")


def _decode_utf8(data: bytes) -> str:
    """Strict UTF-8 with an optional BOM; the skip reason points at the first bad byte."""
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        raise _Skip(f"not valid UTF-8 (byte 0x{data[offset]:02x} at offset {offset})") from None


def _read_text_bytes(data: bytes) -> str:
    _reject_binary(data)
    return _decode_utf8(data)


def _single_document(source: str, text: str, metadata: dict[str, Any]) -> ReadResult:
    text = normalise_text(text)
    if not text:
        raise _Skip("empty: no text")
    return ReadResult(documents=[Document(source=source, text=text, metadata=metadata)])


# ---------------------------------------------------------------------------------------------------------
# Plain text and Markdown


def _read_txt(data: bytes, source: str) -> ReadResult:
    return _single_document(source, _read_text_bytes(data), _metadata("txt"))


_MD_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_MD_H1 = re.compile(r"^ {0,3}# +(.*?)(?: +#+)?\s*$")


def _markdown_title(text: str) -> str | None:
    """The first level-1 ATX heading, ignoring lines inside fenced code (where '# ' is a shell comment)."""
    in_fence = False
    for line in text.split("\n"):
        if _MD_FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else _MD_H1.match(line)
        if match and match.group(1).strip():
            return _clean_title(match.group(1))
    return None


def _read_md(data: bytes, source: str) -> ReadResult:
    text = normalise_text(_read_text_bytes(data))
    return _single_document(source, text, _metadata("md", _markdown_title(text)))


# ---------------------------------------------------------------------------------------------------------
# HTML

_HTML_DROPPED_TAGS = ("script", "style", "noscript", "template", "svg")


def _declared_html_encoding(data: bytes) -> str | None:
    """The charset a <meta> tag declares, if Python knows it and it can be meant literally."""
    declared = EncodingDetector.find_declared_encoding(data, is_html=True)
    if not declared:
        return None
    try:
        name = codecs.lookup(declared).name
    except LookupError:
        return None
    # A UTF-16/32 declaration that we could read as ASCII is false by construction (HTML spec: use UTF-8).
    return None if name.startswith(("utf-16", "utf-32")) else name


def _decode_html(data: bytes) -> str:
    _reject_binary(data)
    encoding = None if data.startswith(codecs.BOM_UTF8) else _declared_html_encoding(data)
    if encoding and encoding != "utf-8":
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass  # the declaration lies; UTF-8 is the web's default, so try that before giving up
    return _decode_utf8(data)


def _html_title(soup: Any) -> str | None:
    for tag in (soup.title, soup.find("h1")):
        title = _clean_title(tag.get_text(" ")) if tag is not None else None
        if title:
            return title
    return None


def _read_html(data: bytes, source: str) -> ReadResult:
    soup = BeautifulSoup(_decode_html(data), "html.parser")
    for tag in soup.find_all(_HTML_DROPPED_TAGS):
        tag.decompose()
    title = _html_title(soup)
    # The head holds the title (kept as metadata) and nothing else worth reading; a page without a <head>
    # tag still has its <title> loose in the tree.
    for tag in soup.find_all(("head", "title")):
        tag.decompose()
    # Indentation and blank lines in HTML source are layout, not content: keep one stripped line per text run,
    # so the same page gives the same text however it was pretty-printed.
    lines = (line.strip() for line in soup.get_text("\n").split("\n"))
    return _single_document(source, "\n".join(line for line in lines if line), _metadata("html", title))


# ---------------------------------------------------------------------------------------------------------
# PDF

_pypdf_quiet_lock = threading.Lock()
_pypdf_quiet_depth = 0
_pypdf_saved_level = logging.NOTSET


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """Silence pypdf's warnings (it logs many for truncated files that we report as skipped anyway).

    Counted, so concurrent reads in threads restore the original level only when the last one ends.
    """
    global _pypdf_quiet_depth, _pypdf_saved_level
    logger = logging.getLogger("pypdf")
    with _pypdf_quiet_lock:
        if _pypdf_quiet_depth == 0:
            _pypdf_saved_level = logger.level
            logger.setLevel(logging.ERROR)
        _pypdf_quiet_depth += 1
    try:
        yield
    finally:
        with _pypdf_quiet_lock:
            _pypdf_quiet_depth -= 1
            if _pypdf_quiet_depth == 0:
                logger.setLevel(_pypdf_saved_level)


def _pdf_title(reader: Any) -> str | None:
    try:
        info = reader.metadata
        return _clean_title(str(info.title)) if info is not None and info.title is not None else None
    except Exception:
        # The info dictionary is optional and often the broken part of an old PDF; the text still counts.
        return None


def _read_pdf(data: bytes, source: str) -> ReadResult:
    with _quiet_pypdf():
        try:
            reader = PdfReader(io.BytesIO(data))
            pages = [page.extract_text() or "" for page in reader.pages]
            title = _pdf_title(reader)
        except PyPdfError as exc:
            raise _Skip(f"cannot read PDF: {_describe(exc)}") from None
    text = normalise_text("\n\n".join(pages))
    if not text:
        raise _Skip("PDF has no extractable text (scanned images?)")
    meta = _metadata("pdf", title)
    meta["pages"] = len(pages)
    return _single_document(source, text, meta)


# ---------------------------------------------------------------------------------------------------------
# DOCX


def _docx_row_text(row: Any) -> str:
    cells: list[str] = []
    previous = None
    for cell in row.cells:
        # A merged cell is returned once per grid column it spans; its text belongs in the row once.
        if previous is not None and cell._tc is previous:
            continue
        previous = cell._tc
        cells.append(" ".join(cell.text.split()))
    return " | ".join(cells)


def _read_docx(data: bytes, source: str) -> ReadResult:
    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError) as exc:
        # BadZipFile: not a zip at all; KeyError: a zip without Word parts; ValueError: another Office type.
        raise _Skip(f"cannot read DOCX: {_describe(exc)}") from None
    parts = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        parts.extend(_docx_row_text(row) for row in table.rows)
    title = _clean_title(document.core_properties.title)
    return _single_document(source, "\n".join(parts), _metadata("docx", title))


# ---------------------------------------------------------------------------------------------------------
# JSON and JSONL records

_TEXT_FIELDS = ("text", "content", "body", "page_content", "passage", "document")
_RESERVED_META_KEYS = ("type", "title", "pages")


def _record_text(record: dict[str, Any]) -> tuple[str, set[str]]:
    """The record's text and the fields it was taken from (those stay out of the metadata)."""
    question, answer = record.get("question"), record.get("answer")
    if isinstance(question, str) and isinstance(answer, str) and question.strip() and answer.strip():
        return f"Q: {question.strip()}\nA: {answer.strip()}", {"question", "answer"}
    for key in _TEXT_FIELDS:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value, {key}
    # No known text field: say everything the record says in words, the id aside (it is the record key).
    used = {key for key, value in record.items() if isinstance(value, str) and key != "id" and value.strip()}
    return "\n".join(f"{key}: {record[key].strip()}" for key in record if key in used), used


def _is_small_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= _MAX_META_STR_CHARS
    if isinstance(value, float):
        return math.isfinite(value)  # NaN/Infinity parse from JSON but do not serialise back to it
    return isinstance(value, (int, bool))


def _record_metadata(kind: str, record: dict[str, Any], text_fields: set[str]) -> dict[str, Any]:
    title = _clean_title(record.get("title")) or _clean_title(record.get("name"))
    meta = _metadata(kind, title)
    for key, value in record.items():
        if key in text_fields or key == "title" or not _is_small_scalar(value):
            continue
        # A field named like one of ours (e.g. "type": "faq") is kept, under a name that cannot clash.
        meta[f"record_{key}" if key in _RESERVED_META_KEYS else key] = value
    return meta


def _record_id(record: dict[str, Any]) -> str | None:
    value = record.get("id")
    # bool is an int subclass, but true/false is a flag, not an identifier.
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None


def _unique_key(key: str, used: set[str]) -> str:
    candidate, n = key, 1
    while candidate in used:
        n += 1
        candidate = f"{key}~{n}"
    used.add(candidate)
    return candidate


@dataclass
class _RecordCollector:
    """Builds one Document per usable record and a problem line for each unusable one."""

    source: str
    kind: str
    documents: list[Document] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    used_keys: set[str] = field(default_factory=set)

    def add(self, record: Any, label: str, fallback_key: str) -> None:
        if not isinstance(record, dict):
            self.problems.append(f"{label}: not a JSON object ({_json_type_name(record)})")
            return
        raw_text, text_fields = _record_text(record)
        text = normalise_text(raw_text)
        if not text:
            self.problems.append(f"{label}: no text")
            return
        key = _unique_key(_record_id(record) or fallback_key, self.used_keys)
        meta = _record_metadata(self.kind, record, text_fields)
        self.documents.append(Document(source=self.source, text=text, record=key, metadata=meta))

    def result(self) -> ReadResult:
        if not self.documents:
            raise _Skip("no records with text", self.problems)
        return ReadResult(documents=self.documents, problems=self.problems)


def _json_type_name(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _json_records(value: Any) -> list[Any] | None:
    """The records of a parsed .json file: a top-level array, or the one array a wrapper object holds."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (inner,) = value.values()
        if isinstance(inner, list):
            return inner
    return None


def _read_json(data: bytes, source: str) -> ReadResult:
    text = _read_text_bytes(data)
    if not text.strip():
        raise _Skip("empty: no text")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Skip(f"invalid JSON: {_describe(exc)}") from None
    collector = _RecordCollector(source, "json")
    records = _json_records(value)
    if records is not None:
        for index, record in enumerate(records):
            collector.add(record, f"item {index}", f"item-{index}")
    elif isinstance(value, dict):
        # A single object is the whole file's one document, so it needs no record key unless it names one.
        collector.add(value, "top level", "")
    else:
        collector.problems.append(f"top level: not a JSON object or array ({_json_type_name(value)})")
    return collector.result()


def _read_jsonl(data: bytes, source: str) -> ReadResult:
    text = _read_text_bytes(data)
    if not text.strip():
        raise _Skip("empty: no text")
    collector = _RecordCollector(source, "jsonl")
    # Split on \n only: str.splitlines would also split on U+2028 etc., which JSON allows inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            collector.problems.append(f"line {number}: invalid JSON ({exc.msg})")
            continue
        collector.add(record, f"line {number}", f"line-{number}")
    return collector.result()


# ---------------------------------------------------------------------------------------------------------
# Entry point

_READERS: dict[str, tuple[str, Callable[[bytes, str], ReadResult]]] = {
    ".txt": ("TXT", _read_txt),
    ".md": ("Markdown", _read_md),
    ".markdown": ("Markdown", _read_md),
    ".html": ("HTML", _read_html),
    ".htm": ("HTML", _read_html),
    ".pdf": ("PDF", _read_pdf),
    ".docx": ("DOCX", _read_docx),
    ".json": ("JSON", _read_json),
    ".jsonl": ("JSONL", _read_jsonl),
}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_READERS)


def parse_bytes(data: bytes, suffix: str, source: str) -> ReadResult:
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
        return reader(data, source)
    except _Skip as skip:
        return ReadResult(documents=[], skipped=skip.reason, problems=skip.problems)
    except Exception as exc:
        # Parsers of untrusted files fail in ways no list of exceptions covers (struct.error, zlib.error,
        # RecursionError on deep nesting...); one bad file must not stop an ingestion run.
        return ReadResult(documents=[], skipped=f"cannot read {format_name}: {_describe_unexpected(exc)}")
