"""DOCX text in one streaming pass over the document XML: body paragraphs, then table rows.

python-docx builds the whole XML tree and an object per paragraph: about 50 bytes of memory per byte of
XML. Here each element is dropped as soon as it ends, so memory follows the text, not the markup. The
text is what python-docx gives: body paragraphs (runs and hyperlinks, tabs and line breaks), then each
body table's rows as "cell | cell", a merged cell once.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from lxml import etree

from ragtune.rag.ingest.readers.archive import Archive
from ragtune.rag.ingest.readers.common import (
    ReadLimits,
    ReadResult,
    Skip,
    clean_title,
    describe,
    metadata,
    single_document,
)

_MAIN_DOCUMENT = "/officeDocument"
_CORE_PROPERTIES = "/core-properties"
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _local(tag: Any) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _parser_options() -> dict[str, Any]:
    # No entity expansion, DTDs or network: a document's XML is data, not instructions.
    return {"resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False}


def _package_targets(archive: Archive) -> dict[str, str]:
    """Relationship type suffix -> part name, from the package's _rels/.rels."""
    if "_rels/.rels" not in archive:
        return {}
    root = etree.fromstring(archive.read("_rels/.rels"), etree.XMLParser(**_parser_options()))
    targets = {}
    for rel in root:
        kind, target = rel.get("Type", ""), rel.get("Target", "")
        for suffix in (_MAIN_DOCUMENT, _CORE_PROPERTIES):
            if kind.endswith(suffix) and target:
                targets[suffix] = posixpath.normpath(target.lstrip("/"))
    return targets


def _title(archive: Archive, part: str) -> str | None:
    if part not in archive:
        return None
    try:
        root = etree.fromstring(archive.read(part), etree.XMLParser(**_parser_options()))
    except etree.XMLSyntaxError:
        return None  # broken document properties do not make the text unreadable
    for element in root:
        if _local(element.tag) == "title":
            return clean_title(element.text)
    return None


def _break_text(element: Any) -> str:
    # A line break is a new line; page and column breaks are layout.
    return "\n" if element.get(f"{_W}type") in (None, "textWrapping") else ""


_RUN_TEXT: dict[str, Callable[[Any], str]] = {
    "t": lambda e: e.text or "",
    "tab": lambda e: "\t",
    "ptab": lambda e: "\t",
    "br": _break_text,
    "cr": lambda e: "\n",
    "noBreakHyphen": lambda e: "-",
}
# Where a paragraph's own text sits below it: its runs, and the runs of its hyperlinks. Text deeper down
# (a text box inside a drawing) belongs to another paragraph.
_RUN_PATHS = (("r",), ("hyperlink", "r"))
_BODY = ["document", "body"]
_CELL = ["document", "body", "tbl", "tr", "tc"]
_ROW = _CELL[:-1]


class _BodyText:
    """Collects text from start/end events; `path` is the stack of open element names."""

    def __init__(self) -> None:
        self.paragraphs: list[str] = []
        self.rows: list[str] = []
        self.path: list[str] = []
        self._paragraph: list[str] | None = None
        self._paragraph_depth = -1
        self._cell_paragraphs: list[str] = []
        self._row_cells: list[str] = []

    def start(self, name: str) -> None:
        if name == "p" and self._paragraph is None and self.path in (_BODY, _CELL):
            self._paragraph, self._paragraph_depth = [], len(self.path)
        self.path.append(name)

    def end(self, element: Any) -> None:
        name = self.path.pop()
        if self._paragraph is not None:
            below = tuple(self.path[self._paragraph_depth + 1 :])
            if below in _RUN_PATHS and name in _RUN_TEXT:
                self._paragraph.append(_RUN_TEXT[name](element))
            elif len(self.path) == self._paragraph_depth:
                text = "".join(self._paragraph)
                self._paragraph = None
                (self.paragraphs if self.path == _BODY else self._cell_paragraphs).append(text)
        if name == "tc" and self.path == _ROW:
            self._row_cells.append(" ".join("\n".join(self._cell_paragraphs).split()))
            self._cell_paragraphs = []
        elif name == "tr" and self.path == _ROW[:-1]:
            self.rows.append(" | ".join(self._row_cells))
            self._row_cells = []


def _body_text(archive: Archive, part: str) -> str:
    collector = _BodyText()
    with archive.open(part) as stream:
        events = etree.iterparse(stream, events=("start", "end"), **_parser_options())
        for event, element in events:
            if event == "start":
                if not collector.path and _local(element.tag) != "document":
                    raise Skip(
                        f"cannot read DOCX: not a Word document (its main part is <{_local(element.tag)}>)"
                    )
                collector.start(_local(element.tag))
                continue
            collector.end(element)
            # Drop what has been read: the tree never holds more than the open elements.
            element.clear(keep_tail=False)
            parent = element.getparent()
            if parent is not None:
                while element.getprevious() is not None:
                    del parent[0]
    return "\n".join(collector.paragraphs + collector.rows)


def read_docx(data: bytes, source: str, limits: ReadLimits) -> ReadResult:
    archive = Archive(data, "DOCX", limits)
    try:
        targets = _package_targets(archive)
        main = targets.get(_MAIN_DOCUMENT, "word/document.xml")
        if main not in archive:
            raise Skip("cannot read DOCX: no word/document.xml in the archive (not a Word file?)")
        text = _body_text(archive, main)
        title = _title(archive, targets.get(_CORE_PROPERTIES, "docProps/core.xml"))
    except etree.XMLSyntaxError as exc:
        raise Skip(f"cannot read DOCX: broken XML: {describe(exc)}") from None
    return single_document(source, text, metadata("docx", title))
