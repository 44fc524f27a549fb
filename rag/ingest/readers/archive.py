"""Zip-based formats (DOCX): member sizes checked before anything is inflated, and reads capped after.

The compressed size says nothing about what a file costs: a 283 KB DOCX whose XML inflates to 160 MB
took over 8 GB to parse. The sizes an archive declares are checked first, then every read is counted,
because a crafted archive can declare less than it holds.
"""

from __future__ import annotations

import io
import zipfile
from typing import IO

from ragtune.rag.ingest.readers.common import ReadLimits, Skip, describe, megabytes


def _too_large(format_name: str, size: int, limits: ReadLimits, exact: bool = True) -> Skip:
    amount = megabytes(size) if exact else f"more than {megabytes(size)}"
    return Skip(
        f"too large uncompressed: this {format_name} inflates to {amount} "
        f"(> {megabytes(limits.max_bytes)} limit; raise max_file_mb)"
    )


class Archive:
    """A zip file opened for reading with a budget of uncompressed bytes shared by all its members."""

    def __init__(self, data: bytes, format_name: str, limits: ReadLimits) -> None:
        self.format_name = format_name
        self.limits = limits
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            members = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
            raise Skip(f"cannot read {format_name}: {describe(exc)}") from None
        declared = sum(info.file_size for info in members)
        if declared > limits.max_bytes:
            raise _too_large(format_name, declared, limits)
        self._names = {info.filename for info in members}
        self.read_so_far = 0

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def open(self, name: str) -> IO[bytes]:
        """A member as a stream whose reads count against the archive's budget."""
        return _CountedStream(self, self._zip.open(name))

    def read(self, name: str) -> bytes:
        with self.open(name) as stream:
            return stream.read()

    def _spend(self, size: int) -> None:
        self.read_so_far += size
        if self.read_so_far > self.limits.max_bytes:
            # The declared sizes lied (zipfile stops at the declared size, so this takes a crafted archive).
            raise _too_large(self.format_name, self.limits.max_bytes, self.limits, exact=False)


class _CountedStream(io.RawIOBase):
    def __init__(self, archive: Archive, raw: IO[bytes]) -> None:
        self._archive = archive
        self._raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self.read(2**20):
                parts.append(chunk)
            return b"".join(parts)
        chunk = self._raw.read(size)
        self._archive._spend(len(chunk))
        return chunk

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._raw.close()
        super().close()
