"""What a run keeps in its out folder besides the answers: the documents as the user would have them
(out/docs), the index over them (out/index), the adapters (out/adapters/PHASE) and the costs so far.

The index keys documents by absolute path, so to measure an incremental update as a user would see it,
out/docs holds v1 first and is then brought to v2's content in place (edited files rewritten, removed
ones deleted, new ones copied) and ingested again.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import time
from pathlib import Path
from typing import Any

from ragtune.finetune.config import CONFIG_FILE, FinetuneConfig

COSTS = ("index_seconds", "reingest_seconds", "finetune_seconds", "retrain_seconds")


def sync_folder(source: Path, target: Path) -> dict[str, int]:
    """Make `target` hold exactly the files of `source`, touching only what differs."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = {p.relative_to(source) for p in source.rglob("*") if p.is_file()}
    present = {p.relative_to(target) for p in target.rglob("*") if p.is_file()}
    counts = {"added": 0, "changed": 0, "removed": 0}
    for rel in sorted(present - wanted):
        (target / rel).unlink()
        counts["removed"] += 1
    for rel in sorted(wanted):
        dest = target / rel
        if rel in present and filecmp.cmp(source / rel, dest, shallow=False):
            continue
        counts["changed" if rel in present else "added"] += 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, dest)
    for folder in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return counts


class Costs:
    """Seconds spent catching up, saved after every step so a resumed run reports the first run's costs."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.values: dict[str, float | None] = dict.fromkeys(COSTS)
        if resume and path.is_file():
            self.values.update(json.loads(path.read_text()))

    def record(self, name: str, seconds: float) -> None:
        self.values[name] = seconds
        self.path.write_text(json.dumps(self.values, indent=2))


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def adapter_ready(folder: Path) -> bool:
    """A finished adapter: training writes its config file last."""
    return (folder / CONFIG_FILE).is_file()


def train_adapter(config: FinetuneConfig, index: Path, out: Path, progress: bool) -> float:
    """Continued pre-training on the chunks of `index` (the documents only: never the questions)."""
    from ragtune.finetune.train import finetune

    if out.exists() and not adapter_ready(out):
        shutil.rmtree(out)  # a half-trained adapter from an interrupted run: start it over
    result = finetune(config, out, index=index, resume=False, progress=progress)
    return result.seconds
