"""PDF text with pypdf, page by page; pypdf's own limits cap what a compressed stream may inflate to."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from ragtune.rag.ingest.readers.common import (
    ReadLimits,
    ReadResult,
    Skip,
    clean_title,
    describe,
    metadata,
    normalise_text,
    single_document,
)

_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_level = logging.NOTSET


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """Silence pypdf's warnings (it logs many for truncated files that we report as skipped anyway).

    Counted, so concurrent reads in threads restore the original level only when the last one ends.
    """
    global _quiet_depth, _saved_level
    logger = logging.getLogger("pypdf")
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved_level = logger.level
            logger.setLevel(logging.ERROR)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                logger.setLevel(_saved_level)


def _pdf_title(reader: Any) -> str | None:
    try:
        info = reader.metadata
        return clean_title(str(info.title)) if info is not None and info.title is not None else None
    except Exception:
        # The info dictionary is optional and often the broken part of an old PDF; the text still counts.
        return None


def read_pdf(data: bytes, source: str, limits: ReadLimits) -> ReadResult:
    with _quiet_pypdf():
        try:
            reader = PdfReader(io.BytesIO(data))
            pages = [page.extract_text() or "" for page in reader.pages]
            title = _pdf_title(reader)
        except PyPdfError as exc:
            raise Skip(f"cannot read PDF: {describe(exc)}") from None
    text = normalise_text("\n\n".join(pages))
    if not text:
        raise Skip("PDF has no extractable text (scanned images?)")
    meta = metadata("pdf", title)
    meta["pages"] = len(pages)
    return single_document(source, text, meta)
