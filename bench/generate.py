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
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/generate.py`: make `bench` importable
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the default model is a local folder; never ask a hub

from bench.generate_child import run_child  # noqa: E402
from bench.generate_quant import QUANT_LABELS, QUANT_VARIANTS, bench_quant, child_quant, print_quant  # noqa: E402
from bench.generate_speed import SPEED_VARIANTS, TARGET_RATIO, child_speed, print_speed  # noqa: E402
from bench.generate_train import bench_train, child_train, print_train  # noqa: E402
from bench.helpers import (  # noqa: E402
    args_record,
    cpu_model,
    elapsed,
    finish,
    fmt,
    git_commit,
    load_average,
    log,
    out,
    package_versions,
    ru_maxrss_mb,
    started_at,
)

DEFAULT_QUESTION = "What does QLoRA combine to fine-tune a model with less memory?"


def machine_info() -> dict[str, Any]:
    """What ran where; versions come from package metadata, so this process never imports torch."""
    packages = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "sentence-transformers")
    return {
        "started": started_at(),
        "commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "load_average_start": load_average(),
        "versions": package_versions(packages),
    }


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
    results["seconds"] = elapsed()
    meta["orchestrator_peak_rss_mb"] = ru_maxrss_mb()
    out(f"total wall time {results['seconds']:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0
    record = args_record(args, leave_out=("child",))
    results: dict[str, Any] = {"meta": {**machine_info(), "quick": args.quick, "args": record}}
    work = Path(tempfile.mkdtemp(prefix="ragtune-bench-generate-"))
    log(f"working folder {work}; load average {results['meta']['load_average_start']}")
    try:
        run_benchmark(args, work, results)
    finally:
        results["meta"].setdefault("load_average_end", load_average())
        finish(results, args.out, work, keep=args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
