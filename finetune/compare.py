"""Base vs tuned, side by side: size on disk, load time, generation latency (mean and sd over runs),
peak memory and perplexity on held-out text.

Each model is measured in a fresh Python process, so one model's peak memory never includes another's.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune.core.errors import InputError, ModelLoadError
from ragtune.rag.models.loading import QUANTIZATIONS
from ragtune.rag.sample import sample_corpus

PROMPT = "Explain in two sentences what a LoRA adapter is."


@dataclass(frozen=True)
class CompareConfig:
    """What `ragtune compare` measures and how often."""

    runs: int = field(default=10, metadata={"help": "Timed generations per model (after one warm-up)."})
    new_tokens: int = field(
        default=32, metadata={"help": "Tokens generated per run; fixed so latencies compare."}
    )
    quantization: str = field(
        default="none",
        metadata={
            "help": "How every model compared is loaded (as GeneratorConfig.quantization).",
            "choices": QUANTIZATIONS,
        },
    )
    perplexity_tokens: int = field(default=4096, metadata={"help": "Held-out tokens scored."})
    window: int = field(default=512, metadata={"help": "Tokens per perplexity window (non-overlapping)."})

    def __post_init__(self) -> None:
        if self.runs < 2:
            raise InputError(f"runs={self.runs}: need at least 2 for a standard deviation")
        if self.new_tokens < 1 or self.perplexity_tokens < 2 or self.window < 2:
            raise InputError("new_tokens, perplexity_tokens and window must be positive")


@dataclass(frozen=True)
class Measurement:
    model: str
    path: str
    adapter: str | None
    quantization: str
    device: str
    size_mb: float
    load_seconds: float
    latency_mean: float
    latency_sd: float
    tokens_per_second: float
    peak_memory_mb: float
    perplexity: float
    perplexity_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_heldout_text() -> str:
    """The bundled sample corpus's Markdown pages: text no default adapter was trained on unless you
    trained on that corpus (then pass your own --text)."""
    corpus = sample_corpus()
    return "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(corpus.rglob("*.md")))


def perplexity(model, tokenizer, text: str, max_tokens: int, window: int) -> tuple[float, int]:
    """exp(mean next-token loss) over non-overlapping windows of the first `max_tokens` tokens."""
    import torch

    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0][:max_tokens]
    if len(ids) < 2:
        raise InputError("the held-out text has fewer than 2 tokens; give a longer --text")
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, window):
            piece = ids[start : start + window].unsqueeze(0).to(model.device)
            if piece.shape[1] < 2:
                break
            n = piece.shape[1] - 1
            total += float(model(input_ids=piece, labels=piece).loss) * n
            count += n
    return math.exp(total / count), count


def measure(spec: str, config: CompareConfig, text: str) -> Measurement:
    """Load `spec` and time it, in this process (call through `measure_in_subprocess`)."""
    import torch
    import transformers  # noqa: F401  (imported before the clock starts: load time is the model's own)

    from ragtune.finetune.merge import folder_size_mb
    from ragtune.finetune.train import peak_memory_mb
    from ragtune.rag.generation.llm import GeneratorConfig, LocalLLM

    started = time.perf_counter()
    llm = LocalLLM.load(
        GeneratorConfig(model=spec, quantization=config.quantization, max_new_tokens=config.new_tokens)
    )
    load_seconds = time.perf_counter() - started
    inputs = llm.encode_chat([{"role": "user", "content": PROMPT}])
    kwargs = llm.generation_kwargs(inputs, config.new_tokens)
    kwargs["min_new_tokens"] = config.new_tokens  # every run makes the same number of tokens
    latencies = []
    with torch.inference_mode():
        for run in range(config.runs + 1):
            t0 = time.perf_counter()
            llm.model.generate(**kwargs)
            if run:  # the first run warms caches and is not counted
                latencies.append(time.perf_counter() - t0)
    ppl, scored = perplexity(llm.model, llm.tokenizer, text, config.perplexity_tokens, config.window)
    mean = statistics.mean(latencies)
    size = folder_size_mb(llm.info.adapter) if llm.info.adapter else folder_size_mb(llm.info.path)
    return Measurement(
        model=spec,
        path=llm.info.path,
        adapter=llm.info.adapter,
        quantization=llm.info.quantization,
        device=llm.info.device,
        size_mb=size,
        load_seconds=load_seconds,
        latency_mean=mean,
        latency_sd=statistics.stdev(latencies),
        tokens_per_second=config.new_tokens / mean,
        peak_memory_mb=peak_memory_mb(llm.info.device),
        perplexity=ppl,
        perplexity_tokens=scored,
    )


def measure_in_subprocess(spec: str, config: CompareConfig, text_file: Path) -> Measurement:
    command = [
        sys.executable,
        "-m",
        "ragtune.finetune.compare",  # the installed package: the working folder may be anywhere
        spec,
        "--config",
        json.dumps(asdict(config)),
        "--text-file",
        str(text_file),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise ModelLoadError(f"measuring {spec} failed: {lines[-1] if lines else 'no output'}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


def compare(
    specs: list[str],
    config: CompareConfig,
    text: str,
    workdir: Path,
    on_model: Callable[[str], None] | None = None,
) -> list[Measurement]:
    """Measure each model in `specs` in turn; `on_model(spec)` is called as each one starts."""
    workdir.mkdir(parents=True, exist_ok=True)
    text_file = workdir / "heldout.txt"
    text_file.write_text(text, encoding="utf-8")
    results = []
    for spec in specs:
        if on_model is not None:
            on_model(spec)
        results.append(measure_in_subprocess(spec, config, text_file))
    return results


def table(results: list[Measurement], runs: int) -> str:
    """A Markdown table, one row per model; the adapter's size excludes its base."""
    rows = [
        "| model | quantization | size MB | load s | latency s (mean ± sd, "
        f"{runs} runs) | tokens/s | peak memory MB | perplexity |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in results:
        name = m.model + (" (adapter only)" if m.adapter else "")
        rows.append(
            f"| {name} | {m.quantization} | {m.size_mb:.1f} | {m.load_seconds:.2f} | "
            f"{m.latency_mean:.3f} ± {m.latency_sd:.3f} | {m.tokens_per_second:.1f} | "
            f"{m.peak_memory_mb:.0f} | {m.perplexity:.2f} |"
        )
    return "\n".join(rows)


def _child(argv: list[str]) -> int:
    """`python -m ragtune.finetune.compare SPEC --config JSON --text-file F`: one measurement as JSON."""
    import argparse
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("--config", required=True)
    parser.add_argument("--text-file", required=True)
    args = parser.parse_args(argv)
    try:
        result = measure(
            args.spec, CompareConfig(**json.loads(args.config)), Path(args.text_file).read_text()
        )
    except (InputError, ModelLoadError) as exc:
        print(f"{exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
