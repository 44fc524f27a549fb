"""HTML to text in one streaming pass: no document tree, so memory follows the text, not the markup.

A tree (BeautifulSoup) costs hundreds of bytes per tag: a 49 MB page of nested <div>s took 3 GB and 93 s.
This reader keeps only the stack of open tag names, with the same rules BeautifulSoup's "html.parser"
builder uses (an end tag closes up to its nearest open twin; a stray end tag is ignored), so it gives
the text the tree gave: one line per text run, script/style/noscript/template/svg and the head left out,
the first <title> (else the first <h1>) as the title.
"""

from __future__ import annotations

import codecs
import sys
from collections import Counter
from html.parser import HTMLParser

from bs4.dammit import EncodingDetector

from ragtune.rag.ingest.readers.common import ReadLimits, ReadResult, clean_title, metadata, single_document
from ragtune.rag.ingest.readers.text import _reject_binary, decode_text, has_bom

_DROPPED = frozenset({"script", "style", "noscript", "template", "svg"})
# The head holds the title (kept as metadata) and nothing else worth reading; a <title> outside it too.
_HIDDEN = _DROPPED | {"head", "title"}
_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "basefont",
        "bgsound",
        "frame",
        "keygen",
        "menuitem",
        "spacer",
    ]
)


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
    if has_bom(data):
        return decode_text(data)  # a byte order mark outranks any <meta> declaration
    _reject_binary(data)
    encoding = _declared_html_encoding(data)
    if encoding and encoding != "utf-8":
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass  # the declaration lies; UTF-8 is the web's default, so try that before giving up
    return decode_text(data)


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.title: str | None = None
        self.heading: str | None = None
        self._stack: list[str] = []
        self._open: Counter[str] = Counter()  # tag -> how many are open, so a stray end tag costs O(1)
        self._hidden = 0  # open tags whose content is not text
        self._dropped = 0  # open tags whose content is not even a title
        self._pending: list[str] = []  # the current text run, which ends at the next tag or comment
        self._capture: list[str] | None = None  # text of the <title> or <h1> being read
        self._capture_depth = -1
        self._capture_kind = ""
        self._seen: set[str] = set()  # only the first <title> and the first <h1> count, as in soup.find

    # -- text runs ---------------------------------------------------------------------------------------

    def _flush(self) -> None:
        if not self._pending:
            return
        run = "".join(self._pending)
        self._pending.clear()
        if self._capture is not None and not self._dropped:
            self._capture.append(run)
        if not self._hidden:
            self.lines.extend(line.strip() for line in run.split("\n") if line.strip())

    def handle_data(self, data: str) -> None:
        self._pending.append(data)

    def handle_comment(self, data: str) -> None:
        self._flush()

    def handle_decl(self, decl: str) -> None:
        self._flush()

    def handle_pi(self, data: str) -> None:
        self._flush()

    def unknown_decl(self, data: str) -> None:
        self._flush()
        if data.upper().startswith("CDATA["):  # a CDATA section's content is text
            self._pending.append(data[6:])
            self._flush()

    # -- tags --------------------------------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._flush()
        if tag in _VOID:
            return
        tag = sys.intern(tag)  # a page of a million nested <div>s holds one string, not a million
        if self._capture is None and not self._dropped and tag in ("title", "h1") and tag not in self._seen:
            self._seen.add(tag)
            self._capture, self._capture_depth, self._capture_kind = [], len(self._stack), tag
        self._stack.append(tag)
        self._open[tag] += 1
        self._hidden += tag in _HIDDEN
        self._dropped += tag in _DROPPED

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self._flush()  # <div/> opens and closes nothing that could hold text

    def handle_endtag(self, tag: str) -> None:
        self._flush()
        if not self._open[tag]:
            return
        while True:
            name = self._stack.pop()
            self._open[name] -= 1
            self._hidden -= name in _HIDDEN
            self._dropped -= name in _DROPPED
            if len(self._stack) == self._capture_depth:
                self._finish_capture()
            if name == tag:
                return

    def _finish_capture(self) -> None:
        text = clean_title(" ".join(self._capture or ()))
        if self._capture_kind == "title":
            self.title = text
        else:
            self.heading = text
        self._capture, self._capture_depth = None, -1

    def close(self) -> None:
        super().close()
        self._flush()
        if self._capture is not None:  # a <title> never closed still names the page
            self._finish_capture()


def read_html(data: bytes, source: str, limits: ReadLimits) -> ReadResult:
    collector = _TextCollector()
    collector.feed(_decode_html(data))
    collector.close()
    title = collector.title or collector.heading
    return single_document(source, "\n".join(collector.lines), metadata("html", title))
