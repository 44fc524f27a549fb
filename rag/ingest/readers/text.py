"""Bytes to text (UTF-8, or UTF-16/UTF-32 when a byte order mark says so), plain text and Markdown."""

from __future__ import annotations

import codecs
import re

from ragtune.rag.ingest.readers.common import (
    ReadLimits,
    ReadResult,
    Skip,
    clean_title,
    metadata,
    normalise_text,
    single_document,
)

_BINARY_SNIFF_BYTES = 8192

# Longest first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)


def has_bom(data: bytes) -> bool:
    return any(data.startswith(bom) for bom, _, _ in _BOMS)


def _reject_binary(data: bytes) -> None:
    # A NUL byte never occurs in real UTF-8 text files but almost always early in binary ones.
    if b"\x00" in data[:_BINARY_SNIFF_BYTES]:
        raise Skip("binary content, not text")


def _decode(data: bytes, start: int, codec: str, label: str) -> str:
    """Strict decoding from `start`; the skip reason points at the first bad byte (offsets count the BOM)."""
    try:
        return data[start:].decode(codec)
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        raise Skip(f"not valid {label} (byte 0x{data[offset]:02x} at offset {offset})") from None


def decode_text(data: bytes) -> str:
    """Text of a file: UTF-16/UTF-32/UTF-8 when it starts with that byte order mark, otherwise strict UTF-8.

    The BOM is checked before the binary sniff: UTF-16 and UTF-32 text is full of NUL bytes.
    """
    for bom, codec, label in _BOMS:
        if data.startswith(bom):
            if codec == "utf-8":
                _reject_binary(data)
            return _decode(data, len(bom), codec, label)
    _reject_binary(data)
    return _decode(data, 0, "utf-8", "UTF-8")


def read_txt(data: bytes, source: str, limits: ReadLimits) -> ReadResult:
    return single_document(source, decode_text(data), metadata("txt"))


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
            return clean_title(match.group(1))
    return None


def read_md(data: bytes, source: str, limits: ReadLimits) -> ReadResult:
    text = normalise_text(decode_text(data))
    return single_document(source, text, metadata("md", _markdown_title(text)))
