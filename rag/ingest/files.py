"""What a path found under the ingested folder is, before anything opens it.

Only regular files inside the folder are read. A symbolic link is never followed: one that leaves the
folder would index content from elsewhere, one that stays inside would index its target twice, and not
following links means no loop is possible. A FIFO, socket or device is never opened (opening a FIFO
blocks until someone writes to it).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path


@dataclass(frozen=True)
class Refusal:
    """Why a path is not read; `transient` when it may read fine next time (what was indexed from it stays)."""

    reason: str
    transient: bool = False


def classify(path: str | Path, status: os.stat_result | OSError, root: Path) -> os.stat_result | Refusal:
    """The status of `path` (found under `root`, its lstat or the error that raised) when it is a regular
    file of the folder, or why it is not read. For a regular file the lstat is also the file's own
    status (size, modification time)."""
    if isinstance(status, FileNotFoundError):
        return Refusal("vanished before it could be read", transient=True)
    if isinstance(status, OSError):
        return Refusal(f"cannot read: {status.strerror or status}", transient=True)
    if stat.S_ISLNK(status.st_mode):
        return Refusal(_link_reason(Path(path), root))
    if not stat.S_ISREG(status.st_mode):
        return Refusal("not a regular file")
    return status


def lstat_all(paths: Sequence[str]) -> list[os.stat_result | OSError]:
    """The lstat of every path (or the error it raised), in order. (Threads were tried: at 100k files
    they made it twice as slow, waiting on each other for the GIL.)"""
    return [_lstat(p) for p in paths]


def _lstat(path: str | Path) -> os.stat_result | OSError:
    try:
        return os.lstat(path)
    except OSError as exc:
        return exc


def _link_reason(path: Path, root: Path) -> str:
    try:
        target = Path(os.path.realpath(path, strict=True))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        if exc.errno == errno.ENOENT:
            return f"dangling symlink: its target {os.readlink(path)} does not exist"
        return f"cannot follow symlink: {exc.strerror or exc}"
    except RuntimeError:  # Path.resolve and older Pythons report a loop this way
        return "symlink loop"
    if not target.is_relative_to(root):
        return "symlink to outside the folder"
    inside = target.relative_to(root).as_posix() or "."
    return f"symlink to {inside} inside the folder: links are not followed, so nothing is indexed twice"


_NAME = attrgetter("name")


def list_entries(root: Path, exclude: Path | None = None) -> list[str]:
    """Paths at or below `root` in a stable order (a folder's files, then its subfolders, each sorted by
    name), leaving out hidden files and folders and `exclude`.

    Links to folders are listed (so they can be reported) but not walked; a subfolder that cannot be
    listed is left out, as `os.walk` does. Plain strings from `os.scandir`, not Path objects: building a
    Path per file cost more than the scan's system calls at 100k files.
    """
    if root.is_file():
        return [str(root)]
    found: list[str] = []
    excluded = str(exclude) if exclude is not None else None
    folders = [str(root)]
    while folders:
        try:
            with os.scandir(folders.pop()) as listing:
                entries = sorted((e for e in listing if not e.name.startswith(".")), key=_NAME)
        except OSError:
            continue
        subfolders = []
        for entry in entries:
            if _is_folder(entry):
                if entry.path != excluded:
                    subfolders.append(entry.path)
            else:
                found.append(entry.path)
        folders += reversed(subfolders)  # popped from the end: walked in name order, depth first
    return found


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def read_file(path: Path, max_bytes: int) -> tuple[bytes | None, str | None]:
    """The bytes of a regular file, or None and why not (too large, empty, vanished, unreadable)."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return None, f"too large ({size / 2**20:.1f} MB > {max_bytes / 2**20:.0f} MB; raise max_file_mb)"
        if size == 0:
            return None, "empty file"
        with path.open("rb") as fh:
            return fh.read(max_bytes + 1), None
    except FileNotFoundError:
        return None, "vanished before it could be read"
    except PermissionError:
        return None, "cannot read: permission denied"
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
