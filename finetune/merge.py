"""Fold a LoRA adapter into its base model and write a standalone safetensors folder."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ragtune.core.errors import InputError, ModelLoadError
from ragtune.rag.models.loading import attach_adapter, load_model, load_tokenizer
from ragtune.rag.models.resolve import ADAPTER_CONFIG, ModelSource, resolve_model


@dataclass(frozen=True)
class MergeResult:
    out: str
    base: str
    adapter: str
    size_mb: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def folder_size_mb(folder: str | Path) -> float:
    root = Path(folder)
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def merge(adapter: str | Path, out: str | Path) -> MergeResult:
    """`merge_and_unload` into a full-precision copy of the base (also for QLoRA adapters: merging into
    4-bit weights would round the update away), then save weights, tokenizer and chat template.

    The folder is written beside `out` and renamed into place, so a failed merge leaves nothing half
    written; an existing `out` is never overwritten.
    """
    started = time.perf_counter()
    adapter = Path(adapter).expanduser()
    out = Path(out).expanduser()
    if not (adapter / ADAPTER_CONFIG).is_file():
        raise InputError(
            f"{adapter}: not an adapter folder (no {ADAPTER_CONFIG}); train one with ragtune finetune"
        )
    if out.exists():
        raise InputError(f"{out} already exists; pass a new --out (merge never overwrites)")
    source = resolve_model(str(adapter))
    tokenizer = (
        load_tokenizer(str(adapter))
        if (adapter / "tokenizer_config.json").is_file()
        else load_tokenizer(source.path)
    )
    base = load_model(ModelSource(source.name, source.path), "none", "cpu")
    merged = attach_adapter(base, str(adapter)).merge_and_unload()
    # The merged model is a plain transformers model: nothing in its config points at the adapter.
    merged.config.name_or_path = str(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "ragtune_merge.json").write_text(
            json.dumps({"base": source.path, "adapter": str(adapter.resolve())}, indent=2)
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(f"cannot write the merged model to {out}: {exc}") from exc
    return MergeResult(
        str(out), source.path, str(adapter), folder_size_mb(out), time.perf_counter() - started
    )
