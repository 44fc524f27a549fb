"""ragtune's cache of derived model files (GGUF conversions, ONNX exports): where it is, and how a
finished entry is put in place so readers never see half of one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def cache_dir() -> Path:
    """`$RAGTUNE_CACHE`, or ~/.cache/ragtune."""
    return Path(os.environ.get("RAGTUNE_CACHE", Path.home() / ".cache" / "ragtune")).expanduser()


def staging_folder(folder: Path) -> Path:
    """An empty sibling of `folder` to build an entry in (removed first if a crash left one)."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def publish(tmp: Path, folder: Path) -> Path:
    """Rename the finished `tmp` to `folder`; if another process published it first, keep theirs."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
