"""What every reader shares: the read result, the limits one file may use, and the skip signal."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ragtune.core.schema import Document

_MAX_REASON_CHARS = 150
_MAX_TITLE_CHARS = 200

DEFAULT_MAX_BYTES = 50 * 2**20


@dataclass(frozen=True)
class ReadResult:
    """What reading one file gave: its documents, or why the whole file was skipped."""

    documents: list[Document]
    skipped: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReadLimits:
    """What one file may cost to read, so a single hostile or broken file cannot sink a whole ingest."""

    max_bytes: int = field(
        default=DEFAULT_MAX_BYTES,
        metadata={
            "help": "Largest content a reader will parse, counted after decompression: a DOCX is "
            "checked member by member, so a small archive that inflates past this is skipped."
        },
    )


class Skip(Exception):
    """The whole file is skipped for `reason` (raised deep in a reader, caught in parse_bytes)."""

    def __init__(self, reason: str, problems: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.problems = problems or []


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def normalise_text(text: str) -> str:
    """Line endings to \\n, no trailing spaces, at most one blank line in a row, no outer whitespace."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def one_line(message: str, limit: int = _MAX_REASON_CHARS) -> str:
    # Library messages can span lines or quote whole objects; a skip reason must fit on one CLI line.
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1].rstrip() + "…"


def describe(exc: BaseException) -> str:
    """Short text of an exception we expected from a library: its message, or its type if it has none."""
    # KeyError's str() wraps the message in quotes; args[0] is the message itself.
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return one_line(message or type(exc).__name__)


def describe_unexpected(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def clean_title(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    title = " ".join(value.split())
    if not title:
        return None
    return title if len(title) <= _MAX_TITLE_CHARS else title[: _MAX_TITLE_CHARS - 1].rstrip() + "…"


def metadata(kind: str, title: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"type": kind}
    if title:
        meta["title"] = title
    return meta


def single_document(source: str, text: str, meta: dict[str, Any]) -> ReadResult:
    text = normalise_text(text)
    if not text:
        raise Skip("empty: no text")
    return ReadResult(documents=[Document(source=source, text=text, metadata=meta)])
