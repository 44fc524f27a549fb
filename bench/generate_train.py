"""Section 3 of the generation benchmark: LoRA and QLoRA training steps on CPU (batches of 4 x 128 tokens
of sample-corpus chunks), each variant in a fresh subprocess: seconds per optimizer step and peak RSS."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.generate_child import CHUNKS_FILE, run_child
from bench.helpers import fmt, log, markdown_table, median, memory_now, out

BATCH_SIZE = 4
MAX_LENGTH = 128


@dataclass(frozen=True)
class TrainVariant:
    label: str
    quantization: str
    target_modules: list[str] | str


TRAIN_VARIANTS = {
    "lora-qv": TrainVariant("LoRA r=8 q_proj+v_proj (fp32 base)", "none", ["q_proj", "v_proj"]),
    "lora-all": TrainVariant("LoRA r=8 all-linear (fp32 base)", "none", "all-linear"),
    "qlora-qv": TrainVariant("QLoRA r=8 q_proj+v_proj (nf4 base, fp32 compute)", "nf4", ["q_proj", "v_proj"]),
}


def time_optimizer_steps(marks: list[dict[str, float]]) -> None:
    """Make `finetune.train.train` record a mark (time, memory) when its optimizer is made, that is once
    the model is loaded and wrapped, and after every optimizer step. Consecutive differences are whole
    steps: forward, backward, clipping, update."""
    import ragtune.finetune.train as train_module

    make_optimizer = train_module.make_optimizer

    def mark(*_: Any) -> None:
        marks.append({"t": time.perf_counter(), **memory_now()})

    def make_optimizer_with_marks(*args: Any, **kwargs: Any) -> tuple[Any, str]:
        optimizer, name = make_optimizer(*args, **kwargs)
        optimizer.register_step_post_hook(mark)
        mark()
        return optimizer, name

    train_module.make_optimizer = make_optimizer_with_marks


def child_train(spec: dict[str, Any]) -> dict[str, Any]:
    import torch  # noqa: F401  (imported before the baseline memory reading)

    from ragtune.finetune.config import FinetuneConfig
    from ragtune.finetune.data import Dataset, text_examples
    from ragtune.finetune.train import train
    from ragtune.rag.models.loading import load_tokenizer
    from ragtune.rag.models.resolve import resolve_model

    variant = TRAIN_VARIANTS[spec["variant"]]
    work = Path(spec["work"])
    source = resolve_model("default")
    tokenizer = load_tokenizer(source.path)
    texts = json.loads((work / CHUNKS_FILE).read_text())
    # Only chunks of at least MAX_LENGTH tokens, cut to exactly MAX_LENGTH: every batch is 4 x 128.
    examples = [e for e in text_examples(texts, tokenizer, MAX_LENGTH) if len(e.input_ids) == MAX_LENGTH]
    if len(examples) < BATCH_SIZE:
        raise SystemExit(f"only {len(examples)} chunks reach {MAX_LENGTH} tokens")
    config = FinetuneConfig(
        quantization=variant.quantization,
        r=8,
        target_modules=variant.target_modules,
        max_steps=spec["steps"],
        batch_size=BATCH_SIZE,
        max_length=MAX_LENGTH,
        eval_fraction=0.0,
    )
    before = memory_now()
    marks: list[dict[str, float]] = []
    time_optimizer_steps(marks)
    log(f"training {spec['steps']} steps on {len(examples)} examples of {MAX_LENGTH} tokens")
    dataset = Dataset(examples, str(work / CHUNKS_FILE), "text")
    result = train(config, source, tokenizer, dataset, work / f"adapter-{spec['variant']}", progress=False)
    steps = [b["t"] - a["t"] for a, b in pairwise(marks)]
    return {
        "variant": spec["variant"],
        "label": variant.label,
        "quantization": result.quantization,
        "target_modules": variant.target_modules,
        "examples": len(examples),
        "batch": [BATCH_SIZE, MAX_LENGTH],
        "steps": result.steps,
        "trainable_parameters": result.trainable_parameters,
        "step_seconds": steps,
        "first_step_s": steps[0] if steps else float("nan"),
        "median_step_s": median(steps[1:]),
        "ragtune_seconds_per_step": result.seconds_per_step,
        "ragtune_seconds": result.seconds,
        "losses": result.losses,
        "memory_before_load": before,
        "memory_before_first_step": marks[0] if marks else {},
        "memory_end": memory_now(),
        "ragtune_peak_memory_mb": result.peak_memory_mb,
    }


def bench_train(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for name in TRAIN_VARIANTS:
        log(f"[train] {name} in a subprocess: {args.steps} steps of {BATCH_SIZE} x {MAX_LENGTH} tokens")
        rows[name] = run_child(
            {"kind": "train", "variant": name, "steps": args.steps}, work, args.child_timeout
        )
        if "error" in rows[name]:
            log(f"[train] {name} failed: {rows[name]['error']}")
    return {"steps": args.steps, "batch": [BATCH_SIZE, MAX_LENGTH], "variants": rows}


def print_train(res: dict[str, Any], quant: dict[str, Any] | None) -> None:
    out(
        f"## 3. LoRA training on CPU ({res['steps']} optimizer steps of {res['batch'][0]} x {res['batch'][1]} "
        "tokens, each variant in a fresh subprocess)"
    )
    out()
    rows = []
    for name, r in res["variants"].items():
        if "error" in r:
            rows.append([TRAIN_VARIANTS[name].label, f"failed: {r['error'][:100]}"] + ["-"] * 7)
            continue
        rows.append(
            [
                r["label"],
                r["trainable_parameters"],
                r["first_step_s"],
                r["median_step_s"],
                r["ragtune_seconds_per_step"],
                r["memory_before_first_step"].get("rss_mb"),
                r["ragtune_peak_memory_mb"],
                r["memory_end"]["peak_mb"],
                f"{r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}",
            ]
        )
    markdown_table(
        [
            "variant",
            "trainable params",
            "first step s",
            "s/step (median of steps 2+)",
            "TrainResult.seconds_per_step",
            "RSS before step 1 MiB",
            "peak RSS MiB (ru_maxrss)",
            "peak RSS MiB (VmHWM)",
            "loss first -> last",
        ],
        rows,
        cell=fmt,
    )
    out()
    out(
        "`TrainResult.seconds_per_step` is ragtune's own figure (median of the steps after the first). "
        "'RSS before step 1' is after load, k-bit preparation and LoRA wrapping."
    )
    out()
    lora, qlora = res["variants"].get("lora-qv", {}), res["variants"].get("qlora-qv", {})
    if "median_step_s" not in lora or "median_step_s" not in qlora:
        return
    quant_rows = (quant or {}).get("variants", {})
    fp32_size = quant_rows.get("none", {}).get("footprint_mb", float("nan"))
    nf4_size = quant_rows.get("nf4", {}).get("footprint_mb", float("nan"))
    lora_setup, qlora_setup = (
        lora["memory_before_first_step"]["rss_mb"],
        qlora["memory_before_first_step"]["rss_mb"],
    )
    lora_peak, qlora_peak = lora["ragtune_peak_memory_mb"], qlora["ragtune_peak_memory_mb"]
    out("4-bit vs 32-bit base, same LoRA (r=8, q_proj+v_proj), same batches:")
    out()
    markdown_table(
        ["", "32-bit base (LoRA)", "4-bit nf4 base (QLoRA)", "4-bit / 32-bit"],
        [
            ["model footprint MiB (section 2)", fp32_size, nf4_size, nf4_size / fp32_size],
            ["RSS before step 1 MiB", lora_setup, qlora_setup, qlora_setup / lora_setup],
            ["peak RSS while training MiB", lora_peak, qlora_peak, qlora_peak / lora_peak],
            [
                "s/step (median)",
                lora["median_step_s"],
                qlora["median_step_s"],
                qlora["median_step_s"] / lora["median_step_s"],
            ],
        ],
        cell=fmt,
    )
    out()
