"""JSON and JSONL: one document per record, with a problem line for each record that cannot be used."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ragtune.core.schema import Document
from ragtune.rag.ingest.readers.common import (
    ReadLimits,
    ReadResult,
    Skip,
    clean_title,
    describe,
    metadata,
    normalise_text,
)
from ragtune.rag.ingest.readers.text import decode_text

_MAX_META_STR_CHARS = 200
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
    title = clean_title(record.get("title")) or clean_title(record.get("name"))
    meta = metadata(kind, title)
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
            raise Skip("no records with text", self.problems)
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


def read_json(data: bytes, source: str, limits: ReadLimits) -> ReadResult:
    text = decode_text(data)
    if not text.strip():
        raise Skip("empty: no text")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Skip(f"invalid JSON: {describe(exc)}") from None
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


def read_jsonl(data: bytes, source: str, limits: ReadLimits) -> ReadResult:
    text = decode_text(data)
    if not text.strip():
        raise Skip("empty: no text")
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
