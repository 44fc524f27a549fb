"""What a run keeps in its out folder besides the answers: the documents as the user would have them
(out/docs), the index over them (out/index), the adapters (out/adapters/v1, v2 for the docs adapter;
raft-v1, raft-v2 for the RAFT one) and the costs so far; and `Workspace`, which brings them up to date
and loads each model once.

The index keys documents by absolute path, so to measure an incremental update as a user would see it,
out/docs holds v1 first and is then brought to v2's content in place (edited files rewritten, removed
ones deleted, new ones copied) and ingested again.
"""

from __future__ import annotations

import dataclasses
import filecmp
import gc
import json
import shutil
import time
from pathlib import Path
from typing import Any

from ragtune.finetune.config import CONFIG_FILE, FinetuneConfig

COSTS = (
    "index_seconds",
    "reingest_seconds",
    "finetune_seconds",
    "retrain_seconds",
    "raft_seconds",
    "raft_retrain_seconds",
)
# The cost each adapter folder records: training on v1 is the fine-tune, on v2 the re-train.
ADAPTER_COSTS = {
    "v1": "finetune_seconds",
    "v2": "retrain_seconds",
    "raft-v1": "raft_seconds",
    "raft-v2": "raft_retrain_seconds",
}


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


def train_raft_adapter(
    config: FinetuneConfig, index: Path, out: Path, progress: bool, embedder: Any = None
) -> float:
    """RAFT: examples generated from the chunks of `index` (questions made from the documents' own
    sentences, never the suite's) written to out/raft.jsonl, then trained on. The seconds include
    building the examples, part of what catching up this way costs."""
    from ragtune.finetune.raft import write_raft
    from ragtune.finetune.train import finetune

    if out.exists() and not adapter_ready(out):
        shutil.rmtree(out)
    started = time.perf_counter()
    config = dataclasses.replace(config, raft=True)
    built = write_raft(index, config, out, seed=config.seed, embedder=embedder)
    # As `ragtune finetune --raft` does: room for the longest prompt, or every target would be cut off.
    config = dataclasses.replace(config, max_length=max(config.max_length, built.longest_tokens))
    finetune(config, out, data=built.path, resume=False, progress=progress)
    return time.perf_counter() - started


class Workspace:
    """The index and adapters of one run, brought to the phase a measurement needs, and the models
    (base, or base + one adapter) loaded once each."""

    def __init__(self, suite: Any, out: Path, config: Any, resume: bool, progress: bool, llm, embedder):
        self.suite, self.out, self.config, self.progress = suite, out, config, progress
        self.embedder = embedder
        self.costs = Costs(out / "costs.json", resume)
        # Keyed by adapter folder ("v1", "raft-v1", ...; None: the base model), so adapters of
        # different kinds or phases never share a loaded model.
        self.models: dict[str | None, Any] = {None: llm} if llm is not None else {}
        self.index_at: str | None = None
        self.docs, self.index = out / "docs", out / "index"

    def model(self, adapter: str | None):
        """The base model (None) or base + the adapter in out/adapters/`adapter`, loaded once."""
        if adapter not in self.models:
            from ragtune.rag.generation.llm import GeneratorConfig, LocalLLM

            self.models[adapter] = LocalLLM.load(
                GeneratorConfig(
                    model=self.config.model,
                    adapter=str(self.out / "adapters" / adapter) if adapter else None,
                    max_new_tokens=self.config.max_new_tokens,
                    seed=self.config.seed,
                )
            )
        return self.models[adapter]

    def release(self, keep: set[str | None]) -> None:
        """Drop the adapter models not in `keep`; the base model (perhaps the caller's) stays."""
        dropped = [a for a in self.models if a is not None and a not in keep]
        for adapter in dropped:
            del self.models[adapter]
        if dropped:
            gc.collect()  # a model's modules hold reference cycles: free its weights now, not later

    def _ingest(self) -> float:
        from ragtune.rag.api import RAG

        rag = RAG.open(self.index, embedder=self.embedder)
        try:
            return timed(rag.ingest, self.docs, progress=self.progress)[1]
        finally:
            rag.close()

    def bring_index_to(self, phase: str, v1_adapters: set[str]) -> None:
        """Index v1 from scratch, train the v1 adapters asked for on it, then (for v2) update the same
        index. v1 adapters are trained before the index moves on, since they learn v1's documents."""
        if self.index_at is None:
            shutil.rmtree(self.docs, ignore_errors=True)
            shutil.rmtree(self.index, ignore_errors=True)
            sync_folder(self.suite.docs["v1"], self.docs)
            self.costs.record("index_seconds", self._ingest())
            self.index_at = "v1"
        if self.index_at == "v1":
            for adapter in sorted(v1_adapters):
                self.ensure_adapter(adapter)
        if phase == "v2" and self.index_at == "v1":
            sync_folder(self.suite.docs["v2"], self.docs)
            self.costs.record("reingest_seconds", self._ingest())
            self.index_at = "v2"

    def ensure_adapter(self, adapter: str) -> None:
        """Train out/adapters/`adapter` on the index as it is now, unless a finished one is there."""
        folder = self.out / "adapters" / adapter
        if adapter_ready(folder):
            return
        config = self.config.finetune_config()
        if adapter.startswith("raft-"):
            seconds = train_raft_adapter(config, self.index, folder, self.progress, self.embedder)
        else:
            seconds = train_adapter(config, self.index, folder, self.progress)
        self.costs.record(ADAPTER_COSTS[adapter], seconds)

    def rag_for(self, adapter: str | None, answer_mode: str):
        from ragtune.rag.api import RAG
        from ragtune.rag.generation.answer import AnswerConfig

        return RAG.open(
            self.index,
            embedder=self.embedder,
            generator=self.model(adapter),
            answer=AnswerConfig(k=self.config.k, answer_mode=answer_mode),
        )
