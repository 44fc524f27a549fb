"""`run_suite`: answer a suite's questions with every setup, in both document versions, and write
answers.jsonl, results.json, report.md and plots/.

Phase v1: index docs/v1, fine-tune on its chunks (only the adapters the asked setups carry), answer.
Phase v2: bring the same index to docs/v2 incrementally, keep the v1 adapters, answer against v2 gold;
with `retrain`, also fine-tune on v2 and measure the fine-tuned setups again as "ft-retrained" etc.
`split` keeps the suite's dev or test questions only (Question.split), so settings tuned on dev are
reported on test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.core.errors import InputError
from ragtune.eval import setups as setups_module
from ragtune.eval.setups import DEFAULT_SETUPS, SETUPS, Setup, retrained
from ragtune.eval.suite import SPLITS, load_suite
from ragtune.eval.workspace import Workspace

ANSWERS = "answers.jsonl"
RESULTS = "results.json"
SETTINGS = "settings.json"
# Settings that do not change any answer: a resumed run may differ in them.
_FREE_ON_RESUME = ("retrain", "resamples")


@dataclass(frozen=True)
class EvalConfig:
    """How a suite is run. Everything that changes the numbers is here and saved in results.json."""

    model: str = field(
        default="default", metadata={"help": "Base model of every setup (as GeneratorConfig.model)."}
    )
    k: int = field(default=4, metadata={"help": "Passages retrieved per question (setups with retrieval)."})
    seed: int = field(default=0, metadata={"help": "Seeds decoding, fine-tuning and the bootstrap."})
    max_new_tokens: int = field(default=48, metadata={"help": "Longest answer, in tokens."})
    # One pass keeps a default run of a ~60-question suite near 30 minutes on a 2-core CPU (about 7 s
    # per step for the default model there); more epochs inject more, at that cost.
    finetune_epochs: float = field(default=1.0, metadata={"help": "Passes over the document chunks."})
    finetune_steps: int | None = field(
        default=None, metadata={"help": "Stop fine-tuning after this many steps; not set: whole epochs."}
    )
    finetune_lr: float = field(default=5e-4, metadata={"help": "Fine-tuning learning rate."})
    split: str = field(
        default="all",
        metadata={
            "help": "Questions to run: all, or the suite's dev or test split (from a hash of each id, "
            "or the line's split key). Tune on dev, report on test.",
            "choices": ("all", *SPLITS),
        },
    )
    retrain: bool = field(
        default=False, metadata={"help": "Also fine-tune on v2 and measure the fine-tuned setups again."}
    )
    quick: bool = field(
        default=False,
        metadata={"help": "Smoke run: the first quick_questions questions of each kind, few training steps."},
    )
    quick_questions: int = field(default=1, metadata={"help": "Questions per kind in a quick run."})
    quick_steps: int = field(default=4, metadata={"help": "Fine-tuning steps in a quick run."})
    resamples: int = field(default=2000, metadata={"help": "Bootstrap resamples per interval."})
    # On a CPU the default model reads all its weights once per decoding step whatever the batch, so
    # 8 answers cost about 2x one; 1 measures one-at-a-time latency as `ragtune ask` has it.
    batch_size: int = field(default=8, metadata={"help": "Questions generated together in one batch."})

    def __post_init__(self) -> None:
        for name in ("k", "max_new_tokens", "quick_questions", "quick_steps", "resamples", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.split not in ("all", *SPLITS):
            raise InputError(f"split={self.split!r}: use all, {', '.join(SPLITS)}")
        if self.finetune_steps is not None and self.finetune_steps < 1:
            raise InputError(f"finetune_steps={self.finetune_steps}: must be >= 1")

    def finetune_config(self):
        from ragtune.finetune.config import FinetuneConfig

        steps = (
            min(self.finetune_steps or self.quick_steps, self.quick_steps)
            if self.quick
            else self.finetune_steps
        )
        return FinetuneConfig(
            model=self.model,
            lr=self.finetune_lr,
            epochs=self.finetune_epochs,
            max_steps=steps,
            seed=self.seed,
            # A quick run's few steps would all fall inside the default 10-step warmup (lr near 0),
            # leaving the adapter a no-op: start at the full rate there.
            warmup_steps=0 if self.quick else FinetuneConfig.warmup_steps,
            eval_fraction=0.0,  # the documents are the knowledge to inject: hold none of them back
        )


def parse_setups(names: Sequence[str] | str | None) -> list[str]:
    """The setup names asked for, in order, once each; None: DEFAULT_SETUPS."""
    if names is None:
        return list(DEFAULT_SETUPS)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETUPS]
    if unknown or not names:
        raise InputError(f"setups {', '.join(unknown) or '(none)'}: use some of {', '.join(SETUPS)}")
    return list(dict.fromkeys(names))


def select_questions(suite: Any, config: EvalConfig) -> list[Any]:
    """The split's questions; in a quick run, the first few of each kind among them."""
    questions = [q for q in suite.questions if config.split in ("all", q.split)]
    if not questions:
        raise InputError(f"{suite.name} has no {config.split} questions: run with --split all")
    if not config.quick:
        return questions
    taken: dict[str, int] = {}
    chosen = []
    for q in questions:
        if taken.get(q.kind, 0) < config.quick_questions:
            taken[q.kind] = taken.get(q.kind, 0) + 1
            chosen.append(q)
    return chosen


def read_answers(path: Path) -> dict[tuple[str, str, str], dict]:
    """The answers already written. A line cut short by an interruption is dropped (answered again)
    and the file rewritten without it, so the next answer does not land on the end of the broken line."""
    done = {}
    text = path.read_text() if path.is_file() else ""
    lines = text.splitlines()
    for line in lines:
        try:
            record = json.loads(line)
            done[(record["setup"], record["phase"], record["id"])] = record
        except (ValueError, KeyError, TypeError):
            continue
    if len(done) != len(lines) or (text and not text.endswith("\n")):
        path.write_text("".join(json.dumps(r) + "\n" for r in done.values()))
    return done


def plan(names: list[str], phase: str, retrain: bool) -> list[tuple[str, Setup, str | None]]:
    """(output name, setup, adapter folder or None) for each measurement of a phase."""
    rows = [(n, SETUPS[n], SETUPS[n].adapter_folder("v1")) for n in names]
    if phase == "v2" and retrain:
        rows += [
            (retrained(n), SETUPS[n], SETUPS[n].adapter_folder("v2")) for n in names if SETUPS[n].finetuned
        ]
    return rows


def run_suite(
    suite: Any,
    out: str | Path,
    setups: Sequence[str] | str | None = None,
    config: EvalConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    llm: Any = None,
    embedder: Any = None,
) -> dict:
    """Run `suite` (a Suite or its folder) into `out`; returns what results.json holds.

    `llm`: an already loaded base model (or a fake) used instead of loading `config.model`; the
    fine-tuned setups always load `config.model` with their adapter. `embedder`: replaces the index's
    sentence-transformers model. `resume`: answers already in answers.jsonl are kept, not recomputed.
    """
    from tqdm.auto import tqdm

    if isinstance(suite, (str, os.PathLike)):
        suite = load_suite(suite)
    config = config or EvalConfig()
    names = parse_setups(setups)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    questions = select_questions(suite, config)
    answers_path = out / ANSWERS
    _check_settings(out / SETTINGS, suite, config, resume)
    if not resume:
        answers_path.write_text("")
        shutil.rmtree(out / "adapters", ignore_errors=True)
    done = read_answers(answers_path)
    runner = Workspace(suite, out, config, resume, progress, llm, embedder)
    rows_of = {phase: plan(names, phase, config.retrain) for phase in suite.phases}
    todo_of = {
        phase: [r for r in rows if any((r[0], phase, q.id) not in done for q in questions)]
        for phase, rows in rows_of.items()
    }
    # Adapter models still to answer with, in run order: each is freed after its last use, so a run
    # of every setup holds two or three copies of the model at a time, not one per adapter.
    uses = [r[2] for phase in suite.phases for r in todo_of[phase]]
    with answers_path.open("a") as sink:
        for phase in suite.phases:
            rows, todo = rows_of[phase], todo_of[phase]
            if any(s.retrieval or s.finetuned for _n, s, _a in todo):
                # Every v1 adapter of the run, not only those still to answer: once the index moves
                # to v2, a v1 adapter missing after an interruption could no longer be trained on v1.
                runner.bring_index_to(phase, {a for _n, s, a in rows if a and a == s.adapter_folder("v1")})
            for adapter in sorted({a for _n, s, a in todo if a and a == s.adapter_folder("v2")}):
                runner.ensure_adapter(adapter)
            for name, setup, adapter in todo:
                _answer_all(runner, name, setup, adapter, phase, questions, done, sink, tqdm)
                uses.pop(0)
                runner.release(keep=set(uses))
    results = summarise_run(suite, config, names, questions, done, runner.costs.values)
    (out / RESULTS).write_text(json.dumps(results, indent=2))
    _write_extras(out)
    return results


def _reused(setup: Setup, phase: str, name: str, q: Any, done: dict) -> dict | None:
    """A setup without retrieval sees the same prompt in every phase, and decoding is deterministic (greedy,
    or seeded sampling), so its v2 answer is its v1 answer: copied, then scored against the v2 gold."""
    if setup.retrieval or phase == "v1":
        return None
    first = done.get((name, "v1", q.id))
    if first is None:
        return None
    keys = ("answer", "refused", "citations", "sources", "seconds")
    return {**{k: first.get(k) for k in keys}, "same_as": "v1"}


def _answer_all(runner, name, setup, adapter, phase, questions, done, sink, tqdm) -> None:
    from ragtune.eval.metrics import score

    missing = [q for q in questions if (name, phase, q.id) not in done]
    bar = tqdm(
        total=len(questions),
        initial=len(questions) - len(missing),
        desc=f"{name} {phase}",
        unit="q",
        disable=not runner.progress,
    )

    def write(q: Any, answer: dict) -> None:
        record = {"setup": name, "phase": phase, "id": q.id, "question": q.question, "gold": q.gold(phase)}
        record.update(answer)
        record["correct"] = score(record, q, phase).correct
        sink.write(json.dumps(record) + "\n")
        done[(name, phase, q.id)] = record

    to_generate = []
    for q in missing:
        copied = _reused(setup, phase, name, q, done)
        if copied is None:
            to_generate.append(q)
        else:
            write(q, copied)
            bar.update(1)
    sink.flush()
    rag = None
    try:
        if to_generate:
            llm = runner.model(adapter)
            rag = runner.rag_for(adapter, setup.answer_mode) if setup.retrieval else None
        size = runner.config.batch_size
        for first in range(0, len(to_generate), size):
            batch = to_generate[first : first + size]
            answers = setups_module.answer_batch(
                setup, [q.question for q in batch], llm=llm, rag=rag, batch_size=size
            )
            for q, answer in zip(batch, answers, strict=True):
                write(q, answer)
            sink.flush()  # an interrupted run keeps every batch it finished
            bar.update(len(batch))
    finally:
        bar.close()
        if rag is not None:
            rag.close()


def summarise_run(suite, config: EvalConfig, names, questions, done, costs) -> dict:
    from ragtune.eval.metrics import score, summarise
    from ragtune.eval.stats import interval, paired_difference

    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    kinds: dict[str, dict[str, dict[str, list[float]]]] = {}
    for phase in suite.phases:
        for name, _setup, _a in plan(names, phase, config.retrain):
            records = [done.get((name, phase, q.id)) for q in questions]
            if any(r is None for r in records):
                continue
            scored = [score(r, q, phase) for r, q in zip(records, questions, strict=True)]
            values.setdefault(name, {})[phase] = summarise(scored)
            kinds.setdefault(name, {})[phase] = by_kind(scored, questions)
    boot = {"seed": config.seed, "resamples": config.resamples}
    setups_out = {
        name: {
            phase: {m: interval(v, **boot) for m, v in metrics.items()} for phase, metrics in phases.items()
        }
        for name, phases in values.items()
    }
    paired: dict[str, dict] = {}
    for name, phases in values.items():
        for phase, metrics in phases.items():
            base = values.get("rag", {}).get(phase)
            if name == "rag" or base is None:
                continue
            paired.setdefault(name, {})[phase] = {
                m: paired_difference(v, base[m], **boot)
                for m, v in metrics.items()
                if m in base and len(base[m]) == len(v)  # only metrics over the same questions pair up
            }
    return {
        "suite": {"name": suite.name, "root": str(suite.root), "questions": len(questions)},
        "config": dataclasses.asdict(config),
        "setups_run": names,
        "versions": _versions(config),
        "git_commit": _git_commit(),
        "seed": config.seed,
        "costs": dict(costs),
        "setups": setups_out,
        "paired_vs_rag": paired,
        "by_kind": {
            name: {
                phase: {kind: interval(v, **boot) for kind, v in per_kind.items()}
                for phase, per_kind in phases.items()
            }
            for name, phases in kinds.items()
        },
    }


def by_kind(scored: list, questions: list) -> dict[str, list[float]]:
    """Per kind of question: correct (when the phase answers it) or refused (when it does not), so a
    changed fact shows whether the setup keeps up and a removed page whether it stops answering."""
    values: dict[str, list[float]] = {}
    for s, q in zip(scored, questions, strict=True):
        values.setdefault(q.kind, []).append(float(s.correct if s.answerable else s.refused))
    return values


def _check_settings(path: Path, suite: Any, config: EvalConfig, resume: bool) -> None:
    """Refuse to resume with settings that would mix answers of two different experiments."""
    settings = {"suite": str(Path(suite.root).resolve()), **dataclasses.asdict(config)}
    for name in _FREE_ON_RESUME:
        settings.pop(name)
    if resume and path.is_file():
        # A setting added since that run was written (e.g. split) counts as its default there.
        defaults = {k: v for k, v in dataclasses.asdict(EvalConfig()).items() if k not in _FREE_ON_RESUME}
        before = {**defaults, **json.loads(path.read_text())}
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if changed:
            shown = ", ".join(f"{k}={before.get(k)!r} then {settings.get(k)!r}" for k in changed)
            raise InputError(
                f"{path.parent} was run with other settings ({shown}): resume with the same ones or use a new --out"
            )
    path.write_text(json.dumps(settings, indent=2))


def _versions(config: EvalConfig) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"python": platform.python_version(), "model": config.model}
    for package in ("ragtune", "torch", "transformers", "peft"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _write_extras(out: Path) -> None:
    from ragtune.eval.plots import write_plots
    from ragtune.eval.report import write_report

    write_report(out)
    write_plots(out)
