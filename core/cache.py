"""ragtune's cache of derived model files (GGUF conversions, ONNX exports): where it is, how a finished
entry is put in place so readers never see half of one, and how the leftovers of killed runs go away.

An entry is built in a sibling `.NAME.tmp-PID` folder, checked, then renamed into place. A run killed
half-way leaves its temporary folder behind; the next run that builds anything in the same cache folder
removes every temporary folder whose process is gone.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

_TMP = re.compile(r"^\..+\.(?:tmp|trash)-(\d+)$")


def cache_dir() -> Path:
    """`$RAGTUNE_CACHE`, or ~/.cache/ragtune."""
    return Path(os.environ.get("RAGTUNE_CACHE", Path.home() / ".cache" / "ragtune")).expanduser()


def pid_alive(pid: int) -> bool:
    """Whether process `pid` still runs (this process counts as not running: its leftovers are stale)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_dead_temporaries(parent: Path, pid_of: Callable[[str], int | None]) -> list[Path]:
    """Remove the entries of `parent` that `pid_of` says belong to a process no longer running.

    `pid_of(name)` gives the pid an entry name carries, or None for names that are not temporaries
    (those are left alone, whatever they are)."""
    removed = []
    if not parent.is_dir():
        return removed
    for path in parent.iterdir():
        pid = pid_of(path.name)
        if pid is not None and not pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _cache_tmp_pid(name: str) -> int | None:
    match = _TMP.match(name)
    return int(match.group(1)) if match else None


def staging_folder(folder: Path) -> Path:
    """An empty sibling of `folder` to build an entry in. Temporary folders that killed runs left next
    to it are removed first: a killed GGUF conversion leaves hundreds of MB behind."""
    remove_dead_temporaries(folder.parent, _cache_tmp_pid)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def discard(folder: Path) -> None:
    """Remove a damaged entry: renamed aside first, so no reader or publisher sees half of it deleted."""
    aside = folder.with_name(f".{folder.name}.trash-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    try:
        folder.rename(aside)
    except FileNotFoundError:
        return  # someone else removed it already
    shutil.rmtree(aside, ignore_errors=True)


def publish(tmp: Path, folder: Path) -> Path:
    """Rename the finished and checked `tmp` to `folder`; if another process published it first, keep
    theirs. Any other failure (disk full, permissions) is raised."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and folder.is_dir():
            return folder
        raise
    return folder
