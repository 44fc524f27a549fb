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
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Refusal:
    """Why a path is not read; `transient` when it may read fine next time (what was indexed from it stays)."""

    reason: str
    transient: bool = False


def inspect(path: str | Path, root: Path) -> os.stat_result | Refusal:
    """The status of `path` (found under `root`) when it is a regular file of the folder, or why it is
    not read. One lstat: for a regular file it is also the file's own status (size, modification time)."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return Refusal("vanished before it could be read", transient=True)
    except OSError as exc:
        return Refusal(f"cannot read: {exc.strerror or exc}", transient=True)
    if stat.S_ISLNK(status.st_mode):
        return Refusal(_link_reason(Path(path), root))
    if not stat.S_ISREG(status.st_mode):
        return Refusal("not a regular file")
    return status


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


def list_entries(root: Path, exclude: Path | None = None) -> list[str]:
    """Paths at or below `root` in a stable order, leaving out hidden files and folders and `exclude`.

    Links to folders are listed (so they can be reported) but not walked. Plain strings, not Path
    objects: building a Path per file cost more than the scan's system calls at 100k files.
    """
    if root.is_file():
        return [str(root)]
    found: list[str] = []
    excluded = str(exclude) if exclude is not None else None
    join = os.path.join
    for folder, dirs, files in os.walk(root):
        links = {d for d in dirs if os.path.islink(join(folder, d))}
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and d not in links and join(folder, d) != excluded
        )
        found += [join(folder, f) for f in sorted([*files, *links]) if not f.startswith(".")]
    return found


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
