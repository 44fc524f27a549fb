"""Section 1 of the generation benchmark: ragtune's `LocalLLM.generate` and `stream` against a plain
`model.generate` on the same loaded model and input ids, greedy, interleaved; and the RAG prompt every
section generates from (the sample corpus indexed, the question searched, passages fitted as `rag.answer`
does)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.generate_child import CHUNKS_FILE, PROMPT_FILE
from bench.helpers import fmt, log, markdown_table, median, out, rotate

SPEED_VARIANTS = ("plain model.generate", "LocalLLM.generate", "LocalLLM.stream")
TARGET_RATIO = 0.95


def build_rag_prompt(work: Path, question: str, llm: Any) -> tuple[list[dict[str, str]], list[str], dict]:
    """The chat messages `Answerer.ask` would send for `question`, and the text of every indexed chunk."""
    from ragtune import RAG
    from ragtune.rag.generation.answer import AnswerConfig, build_messages, fit_passages, relevant
    from ragtune.rag.sample import sample_corpus

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
            order = rotate(SPEED_VARIANTS, repeat)  # each variant takes each position
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
        cell=fmt,
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
