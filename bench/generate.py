"""Generation and fine-tuning benchmark for ragtune's default generator (SmolLM2-135M-Instruct) on CPU.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/generate.py             # full run (~15 min on 2 CPU cores)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/generate.py --quick     # fast check (~5 min)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/generate.py --skip-train --quant none,nf4

It measures three things, on a real RAG prompt (the bundled sample corpus is indexed in a temporary
folder, a question is searched, and the prompt is built exactly as `rag.answer` builds it):

1. Overhead of ragtune's generation: `LocalLLM.generate` and `LocalLLM.stream` (consumed fully) against a
   plain `model.generate(**inputs, max_new_tokens=N, do_sample=False)` on the same loaded model and the
   same input ids. Greedy decoding, so all three must produce the same tokens (checked). The variants run
   interleaved, in a rotating order, --repeats times after a warm-up; medians and ours/plain ratios of
   tokens/s are reported (target >= 0.95).
2. Quantization on CPU: for quantization none (fp32), nf4 and int8, the load time, the model's memory
   footprint, the process RSS after load and the greedy tokens/s (exactly N new tokens each); plus a
   bfloat16 load for memory only. Each variant runs in a fresh subprocess, so RSS is its own.
3. LoRA training on CPU (batches of 4 x 128 tokens of sample-corpus text): seconds per optimizer step
   (median of the steps after the first, timed here with an optimizer step hook) and peak RSS of a fresh
   subprocess, for LoRA r=8 on q_proj+v_proj, LoRA on all linear layers, and QLoRA (nf4 base, fp32
   compute) on q_proj+v_proj.

The report goes to stdout as Markdown tables (progress to stderr); the same numbers, with the machine's
load average and library versions, go to bench/results/generate.json (generate-quick.json for --quick).
The machine may be shared: compare ratios of interleaved runs rather than absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the default model is a local folder; never ask a hub

from finetune.config import FinetuneConfig  # noqa: E402
from rag.llm import GeneratorConfig, LocalLLM  # noqa: E402

DEFAULT_QUESTION = "What does QLoRA combine to fine-tune a model with less memory?"
SPEED_VARIANTS = ("plain model.generate", "LocalLLM.generate", "LocalLLM.stream")
QUANT_VARIANTS = ("none", "nf4", "int8", "bf16")  # bf16: memory only, loaded with transformers directly
TARGET_RATIO = 0.95
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

_STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


def out(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Small helpers: numbers, tables, memory, the machine


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, float):
        return "-" if value != value else f"{value:,.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Markdown table, padded so it also reads well as plain text; the first column is a label,
    the others are right-aligned."""
    cells = [list(header)] + [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [max(3, *(len(r[i]) for r in cells)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    out(line(cells[0]))
    out("| " + " | ".join("-" * w if i == 0 else "-" * (w - 1) + ":" for i, w in enumerate(widths)) + " |")
    for row in cells[1:]:
        out(line(row))


def memory_now() -> dict[str, float]:
    """Resident memory of this process in MiB: total, anonymous and file-backed (mmapped weights count as
    file-backed). Linux /proc; NaN elsewhere."""
    names = {"VmRSS": "rss_mb", "RssAnon": "anon_mb", "RssFile": "file_mb"}
    memory = dict.fromkeys(names.values(), float("nan"))
    try:
        for entry in Path("/proc/self/status").read_text().splitlines():
            key, _, value = entry.partition(":")
            if key in names:
                memory[names[key]] = int(value.split()[0]) / 1024
    except (OSError, ValueError):
        pass
    return memory


def peak_rss_mb() -> float:
    from finetune.train import peak_memory_mb

    return peak_memory_mb("cpu")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        for entry in Path("/proc/cpuinfo").read_text().splitlines():
            if entry.startswith("model name"):
                return entry.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip() or None
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    import torch

    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": load_average(),
        "versions": {
            name: _version(name)
            for name in (
                "torch",
                "transformers",
                "peft",
                "bitsandbytes",
                "accelerate",
                "sentence-transformers",
            )
        },
    }


# ---------------------------------------------------------------------------------------------------------
# The prompt: the sample corpus indexed, a question searched, the passages fitted as rag.answer does


def build_rag_prompt(
    work: Path, question: str, llm: LocalLLM
) -> tuple[list[dict[str, str]], list[str], dict]:
    """The chat messages `Answerer.ask` would send for `question`, and the text of every indexed chunk
    (training data for section 3)."""
    from rag import RAG
    from rag.answer import AnswerConfig, build_messages, fit_passages, relevant

    corpus = Path(str(files("rag") / "sample_corpus"))
    config = AnswerConfig()
    handle = RAG.open(work / "index")
    try:
        started = time.perf_counter()
        report = handle.ingest(corpus, progress=False)
        ingest_s = time.perf_counter() - started
        hits = handle.search(question, k=config.k)
        with handle.store.transaction():
            texts = [text for _chunk_id, text in handle.store.iter_chunks()]
    finally:
        handle.close()
    chosen = relevant(hits, config.min_scores)
    if not chosen:
        raise SystemExit(f"no sample-corpus chunk is relevant to {question!r}: pick another --question")
    passages = fit_passages(chosen, config.max_context_tokens, llm.count_tokens)
    messages = build_messages(question, passages, [], config)
    info = {
        "question": question,
        "ingest": report.summary(),
        "ingest_s": ingest_s,
        "passages": [
            f"{hit.source.rsplit('/', 1)[-1]} (dense {hit.scores.get('dense', float('nan')):.2f})"
            for hit in chosen[: len(passages)]
        ],
        "prompt_tokens": int(llm.encode_chat(messages)["input_ids"].shape[1]),
    }
    return messages, texts, info


# ---------------------------------------------------------------------------------------------------------
# 1: ragtune's generate and stream against plain model.generate


class OutputRecorder:
    """Stands in for `model.generate` on one model instance and keeps the ids of the last call, so the
    text-returning `LocalLLM.generate` / `stream` can be checked token by token (one extra Python call
    per generation; nothing per token)."""

    def __init__(self, generate: Callable[..., Any]):
        self.generate = generate
        self.last: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.last = self.generate(*args, **kwargs)
        return self.last


@dataclass(frozen=True)
class Run:
    seconds: float
    ids: list[int]
    text: str
    first_text_s: float | None = None  # stream only: when the first piece of text arrived


def run_variant(
    name: str,
    llm: LocalLLM,
    recorder: OutputRecorder,
    messages: list[dict[str, str]],
    inputs: dict,
    new_tokens: int,
) -> Run:
    prompt_len = inputs["input_ids"].shape[1]
    first: float | None = None
    started = time.perf_counter()
    if name == "plain model.generate":
        output = recorder.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
        seconds = time.perf_counter() - started
        ids = output[0, prompt_len:].tolist()
        return Run(seconds, ids, llm.tokenizer.decode(ids, skip_special_tokens=True))
    if name == "LocalLLM.generate":
        text = llm.generate(messages, max_new_tokens=new_tokens)
    else:
        pieces = []
        for piece in llm.stream(messages, max_new_tokens=new_tokens):
            if first is None:
                first = time.perf_counter() - started
            pieces.append(piece)
        text = "".join(pieces)
    seconds = time.perf_counter() - started
    return Run(seconds, recorder.last[0, prompt_len:].tolist(), text, first)


def bench_speed(llm: LocalLLM, messages: list[dict[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    inputs = llm.encode_chat(messages)
    recorder = OutputRecorder(llm.model.generate)
    llm.model.generate = recorder  # an instance attribute: only this model, only for this section
    try:
        log("[speed] warm-up: one run of each variant")
        warm = {
            name: run_variant(name, llm, recorder, messages, inputs, args.new_tokens)
            for name in SPEED_VARIANTS
        }
        runs: dict[str, list[Run]] = {name: [] for name in SPEED_VARIANTS}
        for repeat in range(args.repeats):
            shift = repeat % len(SPEED_VARIANTS)
            order = SPEED_VARIANTS[shift:] + SPEED_VARIANTS[:shift]  # each variant takes each position
            log(f"[speed] repeat {repeat + 1}/{args.repeats}: {', '.join(order)}")
            for name in order:
                runs[name].append(run_variant(name, llm, recorder, messages, inputs, args.new_tokens))
    finally:
        del llm.model.generate
    reference = warm["plain model.generate"]
    everything = [run for name in SPEED_VARIANTS for run in [warm[name], *runs[name]]]
    res: dict[str, Any] = {
        "new_tokens_asked": args.new_tokens,
        "repeats": args.repeats,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "answer": reference.text,
        "identical_tokens": all(run.ids == reference.ids for run in everything),
        "identical_text": all(run.text == reference.text for run in everything),
        "warmup_s": {name: warm[name].seconds for name in SPEED_VARIANTS},
        "variants": {},
    }
    for name in SPEED_VARIANTS:
        rates = [len(run.ids) / run.seconds for run in runs[name]]
        res["variants"][name] = {
            "new_tokens": len(runs[name][0].ids),
            "seconds": [run.seconds for run in runs[name]],
            "tokens_per_s": rates,
            "median_s": median([run.seconds for run in runs[name]]),
            "median_tokens_per_s": median(rates),
            "first_text_s": median([r.first_text_s for r in runs[name] if r.first_text_s is not None]),
        }
    plain = res["variants"]["plain model.generate"]
    for name in SPEED_VARIANTS[1:]:
        ours = res["variants"][name]
        ours["ratio_of_medians"] = ours["median_tokens_per_s"] / plain["median_tokens_per_s"]
        paired = [a / b for a, b in zip(ours["tokens_per_s"], plain["tokens_per_s"], strict=True)]
        ours["paired_ratios"] = paired
        ours["median_paired_ratio"] = median(paired)
    return res


def print_speed(res: dict[str, Any], prompt: dict[str, Any]) -> None:
    out("## 1. Generation speed: ragtune vs plain `model.generate` (same model, same input ids, greedy)")
    out()
    out(
        f"Prompt: {res['prompt_tokens']} tokens, built by `rag.answer` from {len(prompt['passages'])} passages "
        f"({'; '.join(prompt['passages'])}) for the question {prompt['question']!r}. "
        f"max_new_tokens={res['new_tokens_asked']}; medians of {res['repeats']} interleaved repeats after a warm-up."
    )
    out()
    rows = []
    for name, v in res["variants"].items():
        rows.append(
            [
                name,
                v["new_tokens"],
                v["median_s"],
                v["median_tokens_per_s"],
                f"{min(v['tokens_per_s']):.2f}-{max(v['tokens_per_s']):.2f}",
                v["first_text_s"],
                v.get("ratio_of_medians", 1.0),
                v.get("median_paired_ratio", 1.0),
            ]
        )
    markdown_table(
        [
            "variant",
            "new tokens",
            "median s",
            "median tok/s",
            "tok/s range",
            "first text s",
            "ours/plain (medians)",
            "ours/plain (paired median)",
        ],
        rows,
    )
    out()
    same = "identical" if res["identical_tokens"] else "DIFFERENT"
    out(
        f"Generated token ids in every run of every variant: {same} (text identical: {fmt(res['identical_text'])})."
    )
    out(f"Answer: {res['answer']!r}")
    for name in SPEED_VARIANTS[1:]:
        ratio = res["variants"][name]["ratio_of_medians"]
        verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
        out(f"- {name}: {ratio:.3f} of plain tokens/s ({verdict} the target >= {TARGET_RATIO})")
    out()


# ---------------------------------------------------------------------------------------------------------
# Subprocesses: each quantization and each training variant in a fresh Python process


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run this script with `--child SPEC` and return the JSON it prints last, or {"error": ...}."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        errors = [e for e in done.stderr.splitlines() if e.strip() and not e.startswith("MatMul8bitLt")]
        return {"error": errors[-1] if errors else f"exit code {done.returncode}, no output"}
    result = json.loads(lines[-1])
    result["stderr_lines"] = len(done.stderr.splitlines())
    return result


def child_main(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["kind"] == "quant":
        return child_quant(spec)
    if spec["kind"] == "train":
        return child_train(spec)
    raise SystemExit(f"unknown child kind {spec['kind']!r}")


def greedy_speed(
    llm: LocalLLM, messages: list[dict[str, str]], new_tokens: int, repeats: int
) -> dict[str, Any]:
    """Greedy generation of exactly `new_tokens` tokens (min_new_tokens, so every quantization does the
    same work), a warm-up and then `repeats` timed runs."""
    import torch

    inputs = llm.encode_chat(messages)
    prompt_len = inputs["input_ids"].shape[1]
    kwargs = {**inputs, "max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
    seconds = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            started = time.perf_counter()
            output = llm.model.generate(**kwargs)
            seconds.append(time.perf_counter() - started)
    ids = output[0, prompt_len:].tolist()
    return {
        "first_generation_s": seconds[0],
        "seconds": seconds[1:],
        "new_tokens": len(ids),
        "tokens_per_s": len(ids) / median(seconds[1:]),
        "ids": ids,
        "text": llm.tokenizer.decode(ids, skip_special_tokens=True),
    }


def child_quant(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    import transformers  # noqa: F401  (imported before the clock: load time is the model's own)

    variant = spec["variant"]
    before = memory_now()
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
    load_s = time.perf_counter() - started
    result: dict[str, Any] = {
        "variant": variant,
        "quantization": llm.info.quantization if llm else "none (bfloat16 weights)",
        "load_s": load_s,
        "footprint_mb": model.get_memory_footprint() / 2**20,
        "memory_before_load": before,
        "memory_after_load": memory_now(),
    }
    if llm is not None and spec["repeats"] > 0:
        messages = json.loads(Path(spec["prompt_file"]).read_text())
        result.update(greedy_speed(llm, messages, spec["new_tokens"], spec["repeats"]))
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def record_step_times(stamps: list[float]) -> None:
    """Make `finetune.train.train` note the time when its optimizer is created and after every optimizer
    step: consecutive differences are whole steps (forward, backward, clip, update)."""
    import finetune.train as train_module

    make_optimizer = train_module.make_optimizer

    def timed_make_optimizer(*args: Any, **kwargs: Any) -> tuple[Any, str]:
        optimizer, name = make_optimizer(*args, **kwargs)
        optimizer.register_step_post_hook(lambda *_: stamps.append(time.perf_counter()))
        stamps.append(time.perf_counter())
        return optimizer, name

    train_module.make_optimizer = timed_make_optimizer


def child_train(spec: dict[str, Any]) -> dict[str, Any]:
    import torch  # noqa: F401  (imported before the baseline memory reading)

    from finetune.data import Dataset, text_examples
    from finetune.train import train
    from rag.llm import load_tokenizer, resolve_model

    variant = TRAIN_VARIANTS[spec["variant"]]
    source = resolve_model("default")
    tokenizer = load_tokenizer(source.path)
    texts = json.loads(Path(spec["texts_file"]).read_text())
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
    stamps: list[float] = []
    record_step_times(stamps)
    result = train(
        config, source, tokenizer, Dataset(examples, spec["texts_file"], "text"), spec["out"], progress=False
    )
    steps = [b - a for a, b in pairwise(stamps)]
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
        "memory_before_train": before,
        "peak_rss_mb": result.peak_memory_mb,
    }


# ---------------------------------------------------------------------------------------------------------
# 2: quantization on CPU


def bench_quant(
    args: argparse.Namespace, work: Path, model_path: str, messages: list[dict[str, str]]
) -> dict[str, Any]:
    prompt_file = work / "prompt.json"
    prompt_file.write_text(json.dumps(messages))
    rows: dict[str, dict[str, Any]] = {}
    for variant in args.quant:
        log(
            f"[quant] {variant} in a subprocess (load, then {'memory only' if variant == 'bf16' else f'warm-up + {args.quant_repeats} x {args.new_tokens} tokens'})"
        )
        spec = {
            "kind": "quant",
            "variant": variant,
            "model_path": model_path,
            "prompt_file": str(prompt_file),
            "new_tokens": args.new_tokens,
            "repeats": 0 if variant == "bf16" else args.quant_repeats,
        }
        rows[variant] = run_child(spec, args.child_timeout)
        if "error" in rows[variant]:
            log(f"[quant] {variant} failed: {rows[variant]['error']}")
    reference = rows.get("none", {}).get("ids")
    for row in rows.values():
        if reference and "ids" in row:
            row["agrees_with_fp32_tokens"] = next(
                (i for i, (a, b) in enumerate(zip(row["ids"], reference, strict=False)) if a != b),
                min(len(row["ids"]), len(reference)),
            )
    speeds = {v: r["tokens_per_s"] for v, r in rows.items() if "tokens_per_s" in r}
    return {
        "new_tokens": args.new_tokens,
        "repeats": args.quant_repeats,
        "variants": rows,
        "fastest": max(speeds, key=speeds.get) if speeds else None,
    }


QUANT_LABELS = {
    "none": "none (fp32)",
    "nf4": "nf4 (+double quant)",
    "int8": "int8 (LLM.int8)",
    "bf16": "bfloat16 (memory only)",
}


def print_quant(res: dict[str, Any]) -> None:
    out("## 2. Quantization on CPU (each variant in a fresh subprocess)")
    out()
    out(
        f"Greedy generation of exactly {res['new_tokens']} new tokens (min_new_tokens) on the same prompt; "
        f"median of {res['repeats']} runs after a warm-up. RSS from /proc/self/status after load; peak is ru_maxrss."
    )
    out()
    rows = []
    for variant, r in res["variants"].items():
        label = QUANT_LABELS.get(variant, variant)
        if "error" in r:
            rows.append([label, f"failed: {r['error'][:80]}"] + ["-"] * 7)
            continue
        after, before = r["memory_after_load"], r["memory_before_load"]
        agree = r.get("agrees_with_fp32_tokens")
        rows.append(
            [
                label,
                r["load_s"],
                r["footprint_mb"],
                after["rss_mb"],
                after["rss_mb"] - before["rss_mb"],
                r["peak_rss_mb"],
                r.get("first_generation_s"),
                r.get("tokens_per_s"),
                "-" if agree is None else f"{agree}/{r['new_tokens']}",
            ]
        )
    markdown_table(
        [
            "quantization",
            "load s",
            "footprint MiB",
            "RSS after load MiB",
            "RSS added by load MiB",
            "peak RSS MiB",
            "first generation s",
            "tok/s",
            "same tokens as fp32",
        ],
        rows,
    )
    out()
    speeds = {v: r["tokens_per_s"] for v, r in res["variants"].items() if "tokens_per_s" in r}
    if speeds:
        fastest = res["fastest"]
        others = ", ".join(
            f"{v} {speeds[fastest] / s:.2f}x slower" for v, s in speeds.items() if v != fastest
        )
        out(f"Fastest on this CPU: **{QUANT_LABELS[fastest]}** at {speeds[fastest]:.2f} tok/s ({others}).")
        verdict = "agrees with" if fastest == "none" else "CONTRADICTS"
        out(f"This {verdict} `quantization='auto'` choosing 'none' on CPU.")
    out()


# ---------------------------------------------------------------------------------------------------------
# 3: LoRA / QLoRA training on CPU


def bench_train(args: argparse.Namespace, work: Path, texts: list[str]) -> dict[str, Any]:
    texts_file = work / "chunks.json"
    texts_file.write_text(json.dumps(texts))
    rows: dict[str, dict[str, Any]] = {}
    for name in TRAIN_VARIANTS:
        log(f"[train] {name} in a subprocess: {args.steps} steps of {BATCH_SIZE} x {MAX_LENGTH} tokens")
        spec = {
            "kind": "train",
            "variant": name,
            "steps": args.steps,
            "texts_file": str(texts_file),
            "out": str(work / f"adapter-{name}"),
        }
        rows[name] = run_child(spec, args.child_timeout)
        if "error" in rows[name]:
            log(f"[train] {name} failed: {rows[name]['error']}")
    return {"steps": args.steps, "batch": [BATCH_SIZE, MAX_LENGTH], "variants": rows}


def print_train(res: dict[str, Any], quant: dict[str, Any] | None) -> None:
    out(
        f"## 3. LoRA training on CPU ({res['steps']} optimizer steps of {res['batch'][0]} x {res['batch'][1]} tokens, fresh subprocess each)"
    )
    out()
    rows = []
    for name, r in res["variants"].items():
        if "error" in r:
            rows.append([TRAIN_VARIANTS[name].label, f"failed: {r['error'][:80]}"] + ["-"] * 6)
            continue
        rows.append(
            [
                r["label"],
                f"{r['trainable_parameters']:,}",
                r["first_step_s"],
                r["median_step_s"],
                r["ragtune_seconds_per_step"],
                r["peak_rss_mb"],
                r["memory_before_train"]["rss_mb"],
                f"{r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}",
            ]
        )
    markdown_table(
        [
            "variant",
            "trainable params",
            "first step s",
            "s/step (median, steps 2+)",
            "TrainResult.seconds_per_step",
            "peak RSS MiB",
            "RSS before train MiB",
            "loss first -> last",
        ],
        rows,
    )
    out()
    out("`TrainResult.seconds_per_step` is the mean over all steps, the slow first one included.")
    out()
    lora, qlora = res["variants"].get("lora-qv", {}), res["variants"].get("qlora-qv", {})
    if "peak_rss_mb" in lora and "peak_rss_mb" in qlora:
        out("4-bit vs 32-bit base, LoRA r=8 on q_proj+v_proj:")
        out()
        qv = (quant or {}).get("variants", {})
        fp32_fp = qv.get("none", {}).get("footprint_mb", float("nan"))
        nf4_fp = qv.get("nf4", {}).get("footprint_mb", float("nan"))
        markdown_table(
            ["", "32-bit base (LoRA)", "4-bit nf4 base (QLoRA)", "4-bit / 32-bit"],
            [
                ["model footprint MiB (section 2)", fp32_fp, nf4_fp, nf4_fp / fp32_fp],
                [
                    "peak RSS while training MiB",
                    lora["peak_rss_mb"],
                    qlora["peak_rss_mb"],
                    qlora["peak_rss_mb"] / lora["peak_rss_mb"],
                ],
                [
                    "s/step (median)",
                    lora["median_step_s"],
                    qlora["median_step_s"],
                    qlora["median_step_s"] / lora["median_step_s"],
                ],
            ],
        )
        out()


# ---------------------------------------------------------------------------------------------------------


def print_summary(results: dict[str, Any]) -> None:
    out("## Summary")
    out()
    speed = results.get("speed")
    if speed:
        for name in SPEED_VARIANTS[1:]:
            v = speed["variants"][name]
            out(
                f"- {name} / plain: {v['ratio_of_medians']:.3f} (paired median {v['median_paired_ratio']:.3f}; target >= {TARGET_RATIO})"
            )
        out(f"- greedy outputs identical across variants: {fmt(speed['identical_tokens'])}")
    quant = results.get("quant")
    if quant and quant["fastest"]:
        out(f"- fastest quantization on CPU: {QUANT_LABELS[quant['fastest']]}")
    train = results.get("train")
    if train:
        for r in train["variants"].values():
            if "median_step_s" in r:
                out(f"- {r['label']}: {r['median_step_s']:.2f} s/step, peak RSS {r['peak_rss_mb']:.0f} MiB")
    meta = results["meta"]
    out(
        f"- load average at start {meta['load_average_start']}, at end {meta.get('load_average_end')}; {meta['cpus']} CPUs"
    )
    out()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fast check: fewer repeats, tokens and steps")
    p.add_argument("--repeats", type=int, help="interleaved timed repeats in section 1 (default 5; quick 2)")
    p.add_argument(
        "--new-tokens", type=int, help="max_new_tokens for every generation (default 64; quick 32)"
    )
    p.add_argument(
        "--quant-repeats", type=int, help="timed generations per quantization (default 3; quick 1)"
    )
    p.add_argument(
        "--quant",
        help=f"quantization variants of section 2, comma-separated (default {','.join(QUANT_VARIANTS)})",
    )
    p.add_argument("--steps", type=int, help="optimizer steps per training variant (default 6; quick 3)")
    p.add_argument("--skip-speed", action="store_true", help="leave out section 1")
    p.add_argument("--skip-quant", action="store_true", help="leave out section 2")
    p.add_argument("--skip-train", action="store_true", help="leave out section 3")
    p.add_argument("--question", default=DEFAULT_QUESTION, help="the question the RAG prompt is built for")
    p.add_argument(
        "--child-timeout", type=float, default=3600.0, help="seconds before a subprocess is given up"
    )
    p.add_argument(
        "--out", type=Path, help="JSON results (default bench/results/generate.json, or generate-quick.json)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (index, prompt, adapters)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one measurement from a JSON spec
    args = p.parse_args(argv)
    defaults = (
        {"repeats": 2, "new_tokens": 32, "quant_repeats": 1, "steps": 3}
        if args.quick
        else {"repeats": 5, "new_tokens": 64, "quant_repeats": 3, "steps": 6}
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.quant = [q.strip() for q in (args.quant or ",".join(QUANT_VARIANTS)).split(",") if q.strip()]
    unknown = set(args.quant) - set(QUANT_VARIANTS)
    if unknown:
        p.error(f"--quant {','.join(sorted(unknown))}: use some of {','.join(QUANT_VARIANTS)}")
    if args.repeats < 1 or args.quant_repeats < 1 or args.new_tokens < 1 or args.steps < 2:
        p.error("--repeats, --quant-repeats and --new-tokens must be >= 1, --steps >= 2")
    if args.out is None:
        args.out = ROOT / "bench" / "results" / ("generate-quick.json" if args.quick else "generate.json")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child_main(json.loads(args.child))))
        return 0
    results: dict[str, Any] = {
        "meta": {
            **machine_info(),
            "quick": args.quick,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        }
    }
    meta = results["meta"]
    work = Path(tempfile.mkdtemp(prefix="ragtune-bench-generate-"))
    log(f"working folder {work}; load average {meta['load_average_start']}")
    try:
        out(f"# ragtune generation benchmark ({'quick' if args.quick else 'full'} run)")
        out()
        out(
            f"commit {meta['commit']}, {meta['started']}, Python {meta['python']}, {meta['cpus']} CPUs ({meta['cpu']}), "
            + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
            + f"; load average at start {meta['load_average_start']}"
        )
        out()
        log("loading the default generator")
        llm = LocalLLM.load(GeneratorConfig())
        results["generator"] = llm.info.to_dict()
        log(f"indexing the sample corpus and building the prompt ({llm.info.load_seconds:.1f} s model load)")
        messages, texts, prompt = build_rag_prompt(work, args.question, llm)
        results["prompt"] = {**prompt, "messages": messages}
        meta["load_average_by_section"] = {}
        if not args.skip_speed:
            meta["load_average_by_section"]["speed"] = load_average()
            results["speed"] = bench_speed(llm, messages, args)
            print_speed(results["speed"], prompt)
        model_path = llm.info.path
        del llm  # the subprocesses load their own
        if not args.skip_quant:
            meta["load_average_by_section"]["quant"] = load_average()
            results["quant"] = bench_quant(args, work, model_path, messages)
            print_quant(results["quant"])
        if not args.skip_train:
            meta["load_average_by_section"]["train"] = load_average()
            results["train"] = bench_train(args, work, texts)
            print_train(results["train"], results.get("quant"))
        meta["load_average_end"] = load_average()
        print_summary(results)
        results["seconds"] = time.perf_counter() - _STARTED
        out(f"total wall time {results['seconds']:.0f} s")
    finally:
        meta.setdefault("load_average_end", load_average())
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
