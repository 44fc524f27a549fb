"""Folders the page offers: LoRA adapters and `ragtune eval` runs found under a configured folder."""

from __future__ import annotations

import os
from pathlib import Path

MAX_DEPTH = 3
_SKIPPED = {"node_modules", "__pycache__", "site-packages"}


def _folders(root: Path, depth: int = MAX_DEPTH):
    """Folders at or below `root`, `depth` levels at most, leaving out hidden ones and virtualenvs."""
    if not root.is_dir():
        return
    for folder, dirs, _files in os.walk(root):
        here = Path(folder)
        level = len(here.relative_to(root).parts)
        dirs[:] = sorted(
            d
            for d in dirs
            if level < depth and not d.startswith(".") and d not in _SKIPPED and not (here / d).is_symlink()
        )
        yield here


def find_adapters(root: str | Path) -> list[Path]:
    """Adapter folders (ones holding a peft adapter_config.json) under `root`, by path."""
    return [f for f in _folders(Path(root).expanduser()) if (f / "adapter_config.json").is_file()]


def find_runs(root: str | Path) -> list[Path]:
    """`ragtune eval` run folders (ones holding results.json) under `root`, newest first."""
    runs = [f for f in _folders(Path(root).expanduser()) if (f / "results.json").is_file()]
    return sorted(runs, key=lambda f: (f / "results.json").stat().st_mtime, reverse=True)
