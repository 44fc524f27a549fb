"""Durable writes: flushing files and folders to disk, and the checksums recorded for what was written."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHECKSUM = "sha256"


def fsync_folder(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder below `folder`, so a rename of it never exposes unwritten data."""
    for path in sorted(folder.rglob("*"), reverse=True):
        fsync_folder(path)
    fsync_folder(folder)


def file_checksum(path: Path) -> str:
    digest = hashlib.new(CHECKSUM)
    with path.open("rb") as fh:
        while block := fh.read(4 * 2**20):
            digest.update(block)
    return digest.hexdigest()


def describe_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and checksum of every file below `folder`, by path relative to it."""
    return {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, CHECKSUM: file_checksum(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def publish_folder(tmp: Path, final: Path, fill: Callable[[Path], None]) -> None:
    """Have `fill` create and fill the temporary folder `tmp`, flush it all to disk and rename it to `final`
    (replacing a folder a crash left there), so `final` never exposes unwritten data; `tmp` is removed
    when anything fails."""
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fill(tmp)
        fsync_tree(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_folder(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
