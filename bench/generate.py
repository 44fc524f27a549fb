"""Generation and fine-tuning benchmark for ragtune's default generator (SmolLM2-135M-Instruct) on CPU.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/generate.py             # full run (~10 min on 2 quiet CPU cores)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/generate.py --quick     # fast check (~3 min)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/generate.py --skip-train --quant none,nf4

It measures three things on a real RAG prompt: the bundled sample corpus is indexed in a temporary folder,
the question is searched, and the prompt is built as `rag.answer` builds it (relevant hits, passages fitted
to the token budget, `build_messages`).

1. Overhead of ragtune's generation: `LocalLLM.generate` and `LocalLLM.stream` (consumed fully) against a
   plain `model.generate(**inputs, max_new_tokens=N, do_sample=False)` on the same loaded model and the
   same input ids (`llm.encode_chat`). Greedy decoding, so all three must give the same tokens (checked on
   every run). The variants run interleaved, in a rotating order, --repeats times after a warm-up;
   medians and ours/plain ratios of tokens/s (from the real number of generated tokens) are reported.
   Target: ratio >= 0.95.
2. Quantization on CPU: for quantization none (fp32), nf4 and int8, the load time, the model's memory
   footprint, the process RSS after load and after generating, and greedy tokens/s (exactly N new tokens,
   so every variant does the same work); plus a bfloat16 load for memory only. This is what
   `quantization="auto"` choosing "none" on CPU rests on.
3. LoRA training on CPU (batches of 4 x 128 tokens of sample-corpus chunks): seconds per optimizer step
   (median of the steps after the first, timed here with an optimizer step hook and shown beside
   `TrainResult.seconds_per_step`) and peak RSS, for LoRA r=8 on
   q_proj+v_proj, LoRA on all linear layers, and QLoRA (nf4 base, fp32 compute) on q_proj+v_proj.

Every measurement runs in a fresh subprocess (this script with a hidden --child flag), and this process
never imports torch: on Linux a child's ru_maxrss starts at its parent's peak RSS (the high-water mark is
carried across fork and exec), so peaks are only clean when the parent stays small. Peak RSS is read
both ways (ru_maxrss and /proc VmHWM) so a difference would show.

The report goes to stdout as Markdown tables (progress to stderr); the same numbers, with the load average
and library versions, go to bench/results/generate.json (generate-quick.json for --quick). The machine may
be shared: prefer the ratios of interleaved runs to absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the default model is a local folder; never ask a hub

DEFAULT_QUESTION = "What does QLoRA combine to fine-tune a model with less memory?"
SPEED_VARIANTS = ("plain model.generate", "LocalLLM.generate", "LocalLLM.stream")
QUANT_VARIANTS = ("none", "nf4", "int8", "bf16")  # bf16: memory only, loaded with transformers directly
QUANT_LABELS = {
    "none": "none (fp32)",
    "nf4": "nf4 (+ double quant)",
    "int8": "int8 (LLM.int8)",
    "bf16": "bfloat16 (memory only)",
}
TARGET_RATIO = 0.95
BATCH_SIZE = 4
MAX_LENGTH = 128
PROMPT_FILE = "prompt.json"  # written by the speed child, read by the quantization children
CHUNKS_FILE = "chunks.json"  # the index's chunk texts, training data for section 3


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
_LOG_LINE = re.compile(r"^\[\s*\d+\.\d s\] (.*)$")


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


def out(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Small helpers: numbers, tables, memory, the machine


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "-" if value != value else f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Markdown table padded to read well as plain text too: a label column, then numbers."""
    cells = [list(header)] + [[fmt(c) for c in row] for row in rows]
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
    """This process's memory in MiB from /proc/self/status (Linux; NaN elsewhere): resident total,
    anonymous and file-backed (mmapped weights are file-backed), and the peak resident (VmHWM), which
    unlike ru_maxrss starts from zero at exec."""
    names = {"VmRSS": "rss_mb", "RssAnon": "anon_mb", "RssFile": "file_mb", "VmHWM": "peak_mb"}
    memory = dict.fromkeys(names.values(), float("nan"))
    try:
        for entry in Path("/proc/self/status").read_text().splitlines():
            key, _, value = entry.partition(":")
            if key in names:
                memory[names[key]] = int(value.split()[0]) / 1024
    except (OSError, ValueError):
        pass
    memory["ru_maxrss_mb"] = ru_maxrss_mb()
    return memory


def ru_maxrss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20  # macOS reports bytes


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
    """What ran where; versions come from package metadata, so this process never imports torch."""
    packages = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "sentence-transformers")
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "load_average_start": load_average(),
        "versions": {name: _version(name) for name in packages},
    }


# ---------------------------------------------------------------------------------------------------------
# Running a measurement in a fresh subprocess


def run_child(spec: dict[str, Any], work: Path, timeout: float) -> dict[str, Any]:
    """Run this script with `--child SPEC`, pass its progress lines on, and return the JSON it wrote,
    or {"error": ...}. Its other output (library warnings) is only counted, and shown on failure."""
    result_file = work / f"result-{spec['kind']}-{spec.get('variant', 'main')}.json"
    spec = {**spec, "work": str(work), "result_file": str(result_file)}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    name = f"{spec['kind']} {spec.get('variant', '')}".strip()
    started = load_average()
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    other: deque[str] = deque(maxlen=20)
    counts = {"lines": 0, "MatMul8bitLt": 0}
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            entry = raw.rstrip("\n")
            match = _LOG_LINE.match(entry)
            if match:
                log(f"  ({name}) {match.group(1)}")
                continue
            counts["lines"] += 1
            if entry.startswith("MatMul8bitLt"):
                counts["MatMul8bitLt"] += 1
            elif entry.strip():
                other.append(entry)
        code = proc.wait()
    finally:
        timer.cancel()
    if code != 0 or not result_file.is_file():
        reason = f"killed after {timeout:.0f} s" if timed_out.is_set() else f"exit code {code}"
        return {"error": f"{reason}: {other[-1] if other else 'no output'}", "output_tail": list(other)}
    result = json.loads(result_file.read_text())
    result["child_output_lines"] = counts
    result["load_average"] = {"start": started, "end": load_average()}
    return result


def child_main(spec: dict[str, Any]) -> None:
    kinds: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "speed": child_speed,
        "quant": child_quant,
        "train": child_train,
    }
    if spec["kind"] not in kinds:
        raise SystemExit(f"unknown child kind {spec['kind']!r}")
    result = kinds[spec["kind"]](spec)
    Path(spec["result_file"]).write_text(json.dumps(result, default=str))


# ---------------------------------------------------------------------------------------------------------
# The prompt: the sample corpus indexed, the question searched, the passages fitted as rag.answer does


def build_rag_prompt(work: Path, question: str, llm: Any) -> tuple[list[dict[str, str]], list[str], dict]:
    """The chat messages `Answerer.ask` would send for `question`, and the text of every indexed chunk."""
    from ragtune.rag.generation.answer import AnswerConfig, build_messages, fit_passages, relevant
    from ragtune.rag.sample import sample_corpus

    from ragtune import RAG

    corpus = sample_corpus()
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
        "messages": messages,
    }
    return messages, texts, info


# ---------------------------------------------------------------------------------------------------------
# 1: ragtune's generate and stream against plain model.generate


class OutputRecorder:
    """Stands in for `model.generate` on one model instance and keeps the ids of the last call, so the
    text-returning `LocalLLM.generate` / `stream` can be checked token by token (one extra Python call
    per generation, nothing per token)."""

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
    name: str, llm: Any, recorder: OutputRecorder, messages: list[dict[str, str]], new_tokens: int
) -> Run:
    """One timed generation. The plain variant gets the ids `llm.encode_chat` makes, which is what
    `LocalLLM.generate` and `stream` encode internally."""
    inputs = llm.encode_chat(messages)
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


def bench_speed(llm: Any, messages: list[dict[str, str]], new_tokens: int, repeats: int) -> dict[str, Any]:
    recorder = OutputRecorder(llm.model.generate)
    llm.model.generate = recorder  # an instance attribute: this model only, removed below
    try:
        log("warm-up: one run of each variant")
        warm = {name: run_variant(name, llm, recorder, messages, new_tokens) for name in SPEED_VARIANTS}
        runs: dict[str, list[Run]] = {name: [] for name in SPEED_VARIANTS}
        for repeat in range(repeats):
            shift = repeat % len(SPEED_VARIANTS)
            order = SPEED_VARIANTS[shift:] + SPEED_VARIANTS[:shift]  # each variant takes each position
            log(f"repeat {repeat + 1}/{repeats}: {', '.join(order)}")
            for name in order:
                runs[name].append(run_variant(name, llm, recorder, messages, new_tokens))
    finally:
        del llm.model.generate
    reference = warm["plain model.generate"]
    everything = [run for name in SPEED_VARIANTS for run in [warm[name], *runs[name]]]
    res: dict[str, Any] = {
        "new_tokens_asked": new_tokens,
        "repeats": repeats,
        "answer": reference.text,
        "answer_ids": reference.ids,
        "identical_tokens": all(run.ids == reference.ids for run in everything),
        "identical_text": all(run.text == reference.text for run in everything),
        "warmup_s": {name: warm[name].seconds for name in SPEED_VARIANTS},
        "variants": {},
    }
    for name in SPEED_VARIANTS:
        rates = [len(run.ids) / run.seconds for run in runs[name]]
        firsts = [run.first_text_s for run in runs[name] if run.first_text_s is not None]
        res["variants"][name] = {
            "new_tokens": [len(run.ids) for run in runs[name]],
            "seconds": [run.seconds for run in runs[name]],
            "tokens_per_s": rates,
            "median_s": median([run.seconds for run in runs[name]]),
            "median_tokens_per_s": median(rates),
            "first_text_s": median(firsts) if firsts else None,
        }
    plain = res["variants"]["plain model.generate"]
    for name in SPEED_VARIANTS[1:]:
        ours = res["variants"][name]
        ours["ratio_of_medians"] = ours["median_tokens_per_s"] / plain["median_tokens_per_s"]
        ours["paired_ratios"] = [
            a / b for a, b in zip(ours["tokens_per_s"], plain["tokens_per_s"], strict=True)
        ]
        ours["median_paired_ratio"] = median(ours["paired_ratios"])
    return res


def child_speed(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the default generator, build the RAG prompt (saved for the other children) and, unless
    told not to, time section 1."""
    import torch
    from ragtune.rag.generation.llm import GeneratorConfig, LocalLLM

    work = Path(spec["work"])
    log("loading the default generator")
    llm = LocalLLM.load(GeneratorConfig())
    log(f"loaded in {llm.info.load_seconds:.1f} s; indexing the sample corpus and building the prompt")
    messages, texts, prompt = build_rag_prompt(work, spec["question"], llm)
    (work / PROMPT_FILE).write_text(json.dumps(messages))
    (work / CHUNKS_FILE).write_text(json.dumps(texts))
    result: dict[str, Any] = {
        "generator": llm.info.to_dict(),
        "prompt": prompt,
        "torch_threads": torch.get_num_threads(),
    }
    if spec["measure"]:
        result["speed"] = bench_speed(llm, messages, spec["new_tokens"], spec["repeats"])
    return result


def print_speed(res: dict[str, Any], prompt: dict[str, Any]) -> None:
    out("## 1. Generation speed: ragtune vs plain `model.generate` (same model, same input ids, greedy)")
    out()
    out(
        f"Prompt: {prompt['prompt_tokens']} tokens, built with `rag.answer` from {len(prompt['passages'])} "
        f"passages ({'; '.join(prompt['passages'])}) for the question {prompt['question']!r}. "
        f"max_new_tokens={res['new_tokens_asked']}; medians of {res['repeats']} interleaved repeats "
        "(rotating order) after a warm-up; tok/s = generated tokens / wall seconds, prompt processing included."
    )
    out()
    rows = []
    for name, v in res["variants"].items():
        tokens = sorted(set(v["new_tokens"]))
        rows.append(
            [
                name,
                "/".join(map(str, tokens)),
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
            "ours/plain (of medians)",
            "ours/plain (median of paired)",
        ],
        rows,
    )
    out()
    same = "identical" if res["identical_tokens"] else "DIFFERENT"
    out(
        f"- Generated token ids, every run of every variant: **{same}** (text identical: {fmt(res['identical_text'])})."
    )
    out(f"- Answer: {res['answer']!r}")
    for name in SPEED_VARIANTS[1:]:
        ratio = res["variants"][name]["ratio_of_medians"]
        verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
        out(f"- {name}: {ratio:.3f} of plain tokens/s ({verdict} the target >= {TARGET_RATIO})")
    out()


# ---------------------------------------------------------------------------------------------------------
# 2: quantization on CPU


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


# ---------------------------------------------------------------------------------------------------------
# 3: LoRA / QLoRA training on CPU


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
                f"- {name} / plain model.generate: {v['ratio_of_medians']:.3f} of the tokens/s "
                f"(median of paired runs {v['median_paired_ratio']:.3f}; target >= {TARGET_RATIO})"
            )
        out(f"- greedy outputs identical across the three: {fmt(speed['identical_tokens'])}")
    quant = results.get("quant")
    if quant and quant["fastest"]:
        out(f"- fastest quantization on CPU: {QUANT_LABELS[quant['fastest']]}")
    for r in results.get("train", {}).get("variants", {}).values():
        if "median_step_s" in r:
            out(
                f"- {r['label']}: {r['median_step_s']:.2f} s/step, peak RSS {r['ragtune_peak_memory_mb']:.0f} MiB"
            )
    meta = results["meta"]
    out(
        f"- load average (1, 5, 15 min) at start {meta['load_average_start']}, at end {meta['load_average_end']}; "
        f"{meta['cpus']} CPUs, torch threads {meta.get('torch_threads')}"
    )
    out()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fast check: fewer repeats, tokens and steps")
    p.add_argument("--repeats", type=int, help="interleaved timed repeats in section 1 (default 5; quick 2)")
    p.add_argument("--new-tokens", type=int, help="max_new_tokens of every generation (default 64; quick 32)")
    p.add_argument(
        "--quant-repeats", type=int, help="timed generations per quantization (default 3; quick 1)"
    )
    p.add_argument(
        "--quant", help=f"section 2 variants, comma-separated (default {','.join(QUANT_VARIANTS)})"
    )
    p.add_argument("--steps", type=int, help="optimizer steps per training variant (default 6; quick 3)")
    p.add_argument(
        "--skip-speed", action="store_true", help="leave out section 1 (the prompt is still built)"
    )
    p.add_argument("--skip-quant", action="store_true", help="leave out section 2")
    p.add_argument("--skip-train", action="store_true", help="leave out section 3")
    p.add_argument("--question", default=DEFAULT_QUESTION, help="the question the RAG prompt is built for")
    p.add_argument(
        "--child-timeout", type=float, default=3600.0, help="seconds before a subprocess is killed"
    )
    p.add_argument(
        "--out", type=Path, help="JSON results (default bench/results/generate.json or generate-quick.json)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (index, prompt, adapters)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one measurement from a JSON spec
    args = p.parse_args(argv)
    if args.quick:
        defaults = {"repeats": 2, "new_tokens": 32, "quant_repeats": 1, "steps": 3}
    else:
        defaults = {"repeats": 5, "new_tokens": 64, "quant_repeats": 3, "steps": 6}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.quant = [q.strip() for q in (args.quant or ",".join(QUANT_VARIANTS)).split(",") if q.strip()]
    unknown = set(args.quant) - set(QUANT_VARIANTS)
    if unknown:
        p.error(f"--quant {','.join(sorted(unknown))}: choose from {','.join(QUANT_VARIANTS)}")
    if min(args.repeats, args.quant_repeats, args.new_tokens) < 1 or args.steps < 2:
        p.error("--repeats, --quant-repeats and --new-tokens must be >= 1, and --steps >= 2")
    if args.out is None:
        args.out = ROOT / "bench" / "results" / ("generate-quick.json" if args.quick else "generate.json")
    return args


def run_benchmark(args: argparse.Namespace, work: Path, results: dict[str, Any]) -> None:
    meta = results["meta"]
    out(f"# ragtune generation benchmark ({'quick' if args.quick else 'full'} run)")
    out()
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    out(
        f"commit {meta['commit']}, {meta['started']}, Python {meta['python']}, {meta['cpus']} CPUs "
        f"({meta['cpu']}), {versions}; load average at start {meta['load_average_start']}"
    )
    out()
    timing = "" if args.skip_speed else ", time section 1"
    log(f"[speed] subprocess: load the generator, index the sample corpus, build the prompt{timing}")
    spec = {
        "kind": "speed",
        "question": args.question,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
    }
    first = run_child({**spec, "measure": not args.skip_speed}, work, args.child_timeout)
    if "error" in first:
        raise SystemExit(f"could not load the generator or build the prompt: {first['error']}")
    meta["torch_threads"] = first["torch_threads"]
    meta["load_average_by_section"] = {"speed": first["load_average"]}
    results["generator"], results["prompt"] = first["generator"], first["prompt"]
    if "speed" in first:
        results["speed"] = first["speed"]
        print_speed(results["speed"], results["prompt"])
    if not args.skip_quant:
        meta["load_average_by_section"]["quant_start"] = load_average()
        results["quant"] = bench_quant(args, work, results["generator"]["path"])
        print_quant(results["quant"])
    if not args.skip_train:
        meta["load_average_by_section"]["train_start"] = load_average()
        results["train"] = bench_train(args, work)
        print_train(results["train"], results.get("quant"))
    meta["load_average_end"] = load_average()
    print_summary(results)
    results["seconds"] = time.perf_counter() - _STARTED
    meta["orchestrator_peak_rss_mb"] = ru_maxrss_mb()
    out(f"total wall time {results['seconds']:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0
    args_record = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "child"}
    results: dict[str, Any] = {"meta": {**machine_info(), "quick": args.quick, "args": args_record}}
    work = Path(tempfile.mkdtemp(prefix="ragtune-bench-generate-"))
    log(f"working folder {work}; load average {results['meta']['load_average_start']}")
    try:
        run_benchmark(args, work, results)
    finally:
        results["meta"].setdefault("load_average_end", load_average())
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
