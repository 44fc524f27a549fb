"""Section 2 of the generation benchmark: quantization on CPU (none, nf4, int8, and bf16 for memory only),
each loaded in a fresh subprocess: load time, footprint, RSS, greedy tokens/s."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.generate_child import PROMPT_FILE, run_child
from bench.helpers import fmt, log, markdown_table, median, memory_now, out

QUANT_VARIANTS = ("none", "nf4", "int8", "bf16")  # bf16: memory only, loaded with transformers directly
QUANT_LABELS = {
    "none": "none (fp32)",
    "nf4": "nf4 (+ double quant)",
    "int8": "int8 (LLM.int8)",
    "bf16": "bfloat16 (memory only)",
}


def greedy_speed(llm: Any, messages: list[dict[str, str]], new_tokens: int, repeats: int) -> dict[str, Any]:
    """Exactly `new_tokens` greedy tokens (min_new_tokens, so every quantization does the same work): a
    warm-up, then `repeats` timed runs."""
    import torch

    inputs = llm.encode_chat(messages)
    prompt_len = inputs["input_ids"].shape[1]
    kwargs = {**inputs, "max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
    seconds = []
    with torch.inference_mode():
        for run in range(repeats + 1):
            log("warm-up generation" if run == 0 else f"generation {run}/{repeats}")
            started = time.perf_counter()
            output = llm.model.generate(**kwargs)
            seconds.append(time.perf_counter() - started)
    ids = output[0, prompt_len:].tolist()
    rates = [len(ids) / s for s in seconds[1:]]
    return {
        "first_generation_s": seconds[0],
        "seconds": seconds[1:],
        "new_tokens": len(ids),
        "tokens_per_s_runs": rates,
        "tokens_per_s": median(rates),
        "ids": ids,
        "text": llm.tokenizer.decode(ids, skip_special_tokens=True),
    }


def child_quant(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    import transformers  # noqa: F401  (imported before the clock: the load time is the model's own)

    from ragtune.rag.generation.llm import GeneratorConfig, LocalLLM

    variant = spec["variant"]
    before = memory_now()
    log(f"loading with {QUANT_LABELS[variant]}")
    started = time.perf_counter()
    llm = None
    if variant == "bf16":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            spec["model_path"], dtype=torch.bfloat16, local_files_only=True
        )
    else:
        llm = LocalLLM.load(GeneratorConfig(quantization=variant, device="cpu"))
        model = llm.model
    result: dict[str, Any] = {
        "variant": variant,
        "quantization": llm.info.quantization if llm else "none, bfloat16 weights",
        "load_s": time.perf_counter() - started,
        "footprint_mb": model.get_memory_footprint() / 2**20,
        "memory_before_load": before,
        "memory_after_load": memory_now(),
    }
    if llm is not None and spec["repeats"] > 0:
        messages = json.loads((Path(spec["work"]) / PROMPT_FILE).read_text())
        result.update(greedy_speed(llm, messages, spec["new_tokens"], spec["repeats"]))
    result["memory_end"] = memory_now()
    return result


def bench_quant(args: argparse.Namespace, work: Path, model_path: str) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for variant in args.quant:
        repeats = 0 if variant == "bf16" else args.quant_repeats
        plan = "memory only" if variant == "bf16" else f"warm-up + {repeats} x {args.new_tokens} tokens"
        log(f"[quant] {variant} in a subprocess: load, then {plan}")
        spec = {
            "kind": "quant",
            "variant": variant,
            "model_path": model_path,
            "new_tokens": args.new_tokens,
            "repeats": repeats,
        }
        rows[variant] = run_child(spec, work, args.child_timeout)
        if "error" in rows[variant]:
            log(f"[quant] {variant} failed: {rows[variant]['error']}")
    reference = rows.get("none", {}).get("ids")
    for row in rows.values():
        if reference and "ids" in row:
            pairs = list(zip(row["ids"], reference, strict=False))
            row["agrees_with_fp32_tokens"] = next((i for i, (a, b) in enumerate(pairs) if a != b), len(pairs))
    speeds = {v: r["tokens_per_s"] for v, r in rows.items() if "tokens_per_s" in r}
    return {
        "new_tokens": args.new_tokens,
        "repeats": args.quant_repeats,
        "variants": rows,
        "fastest": max(speeds, key=lambda v: speeds[v]) if speeds else None,
    }


def print_quant(res: dict[str, Any]) -> None:
    out("## 2. Quantization on CPU (each variant in a fresh subprocess)")
    out()
    out(
        f"Greedy generation of exactly {res['new_tokens']} new tokens (min_new_tokens) on the same prompt: "
        f"median of {res['repeats']} runs after a warm-up (the first generation is shown apart). RSS from "
        "/proc/self/status; peak = VmHWM of the subprocess. 'same tokens as fp32' counts the leading tokens "
        "that match the fp32 run."
    )
    out()
    rows = []
    for variant, r in res["variants"].items():
        label = QUANT_LABELS.get(variant, variant)
        if "error" in r:
            rows.append([label, f"failed: {r['error'][:100]}"] + ["-"] * 9)
            continue
        loaded, end = r["memory_after_load"], r["memory_end"]
        agree = r.get("agrees_with_fp32_tokens")
        rows.append(
            [
                label,
                r["load_s"],
                r["footprint_mb"],
                loaded["rss_mb"],
                loaded["rss_mb"] - r["memory_before_load"]["rss_mb"],
                end["rss_mb"] if "ids" in r else None,
                end["peak_mb"],
                r.get("first_generation_s"),
                r.get("tokens_per_s"),
                f"{min(r['tokens_per_s_runs']):.2f}-{max(r['tokens_per_s_runs']):.2f}"
                if "ids" in r
                else None,
                None if agree is None else f"{agree}/{r['new_tokens']}",
            ]
        )
    markdown_table(
        [
            "quantization",
            "load s",
            "footprint MiB",
            "RSS after load MiB",
            "RSS added by load MiB",
            "RSS after generating MiB",
            "peak RSS MiB",
            "first generation s",
            "tok/s (median)",
            "tok/s range",
            "same tokens as fp32",
        ],
        rows,
        cell=fmt,
    )
    out()
    split = [
        f"{QUANT_LABELS[v]} {r['memory_end']['anon_mb']:,.0f} + {r['memory_end']['file_mb']:,.0f}"
        for v, r in res["variants"].items()
        if "memory_end" in r
    ]
    if split:
        out(
            "RSS at the end, anonymous + file-backed MiB (mmapped safetensors pages are file-backed: "
            f"shared page cache, reclaimable): {'; '.join(split)}."
        )
        out()
    speeds = {v: r["tokens_per_s"] for v, r in res["variants"].items() if "tokens_per_s" in r}
    if speeds:
        fastest = res["fastest"]
        others = ", ".join(
            f"{QUANT_LABELS[v]} {speeds[fastest] / s:.2f}x slower" for v, s in speeds.items() if v != fastest
        )
        out(f"- Fastest on this CPU: **{QUANT_LABELS[fastest]}** at {speeds[fastest]:.2f} tok/s ({others}).")
        verdict = "supports" if fastest == "none" else "does NOT support"
        out(f"- This {verdict} `quantization='auto'` choosing 'none' on CPU.")
    out()
