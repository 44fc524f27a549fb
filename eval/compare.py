"""Compare two eval runs of the same suite: per setup x phase x metric, b - a with a paired interval.

Only the questions both runs answered are paired, so a run interrupted half-way still compares fairly on
what it has. Answers are re-scored with ragtune.eval.metrics when the suite can be found; otherwise the
`correct`, `refused`, `gold` and `seconds` fields of answers.jsonl give the accuracy-type metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune.core.errors import InputError
from ragtune.eval.report import COLUMNS, _excludes_zero, fmt_interval, load_results, ordered_setups
from ragtune.eval.stats import paired_difference

METRIC_ORDER = tuple(k for k, _ in COLUMNS) + ("exact_match", "f1", "wrong_answer", "invented_answer")


def _suite_name(results: dict[str, Any]) -> str | None:
    suite = results.get("suite")
    if isinstance(suite, dict):
        return suite.get("name") or suite.get("root")
    return suite


def _read_answers(folder: Path) -> dict[tuple[str, str, str], dict]:
    path = folder / "answers.jsonl"
    if not path.is_file():
        raise InputError(f"{folder} has results.json but no answers.jsonl; run `ragtune eval --resume` on it")
    answers = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            answers[(record["setup"], record["phase"], str(record["id"]))] = record
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(f"{path} line {number}: not an answer record (setup, phase, id)") from None
    return answers


def _load_questions(results: dict[str, Any]):
    """The suite's questions by id when the suite folder is still where the run found it, else None."""
    try:
        from ragtune.eval.suite import load_suite
    except ImportError:
        return None
    suite = results.get("suite")
    config = results.get("config") if isinstance(results.get("config"), dict) else {}
    candidates = [
        suite.get("root") if isinstance(suite, dict) else suite,
        results.get("suite_root"),
        config.get("suite"),
    ]
    for candidate in candidates:
        if isinstance(candidate, str) and Path(candidate).is_dir():
            try:
                return {q.id: q for q in load_suite(candidate).questions}
            except InputError:
                return None
    return None


def _values_from_fields(record: dict) -> dict[str, float]:
    """Per-metric value of one answer from its own fields; metrics that do not apply are left out."""
    refused, correct, answerable = (
        bool(record.get("refused")),
        bool(record.get("correct")),
        record.get("gold") is not None,
    )
    values = {"hallucination": float(not refused and not correct)}
    if answerable:
        values.update(
            accuracy=float(correct),
            false_abstention=float(refused),
            wrong_answer=float(not refused and not correct),
        )
    else:
        values.update(abstention=float(refused), invented_answer=float(not refused))
    if isinstance(record.get("seconds"), (int, float)):
        values["seconds"] = float(record["seconds"])
    return values


def _scorer(questions):
    if questions is None:
        return _values_from_fields
    from ragtune.eval.metrics import score, summarise

    def values(record: dict) -> dict[str, float]:
        question = questions.get(str(record["id"]))
        if question is None:
            return _values_from_fields(record)
        per_metric = summarise([score(record, question, record["phase"])])
        return {metric: float(vals[0]) for metric, vals in per_metric.items() if vals}

    return values


def compare_runs(a: str | Path, b: str | Path, seed: int = 0) -> dict[str, Any]:
    """Differences b - a per setup, phase and metric over the questions both runs answered."""
    a, b = Path(a), Path(b)
    results_a, results_b = load_results(a), load_results(b)
    if _suite_name(results_a) != _suite_name(results_b):
        raise InputError(
            f"{a} ran suite {_suite_name(results_a)!r} but {b} ran {_suite_name(results_b)!r}; "
            "compare runs of the same suite"
        )
    answers_a, answers_b = _read_answers(a), _read_answers(b)
    questions = _load_questions(results_b) or _load_questions(results_a)
    values = _scorer(questions)
    paired = paired_difference
    scored_a = {key: values(rec) for key, rec in answers_a.items() if key in answers_b}
    scored_b = {key: values(answers_b[key]) for key in scored_a}
    differences: dict[str, dict[str, dict[str, dict]]] = {}
    for setup in ordered_setups({key[0] for key in scored_a}):
        for phase in sorted({key[1] for key in scored_a if key[0] == setup}):
            keys = sorted(key for key in scored_a if key[:2] == (setup, phase))
            per_metric = {}
            for metric in METRIC_ORDER:
                both = [k for k in keys if metric in scored_a[k] and metric in scored_b[k]]
                if both:
                    vb = [scored_b[k][metric] for k in both]
                    va = [scored_a[k][metric] for k in both]
                    per_metric[metric] = paired(vb, va, seed=seed)
            differences.setdefault(setup, {})[phase] = per_metric
    return {
        "a": str(a),
        "b": str(b),
        "suite": _suite_name(results_b),
        "scored_with": "metrics" if questions is not None else "answer fields",
        "differences": differences,
    }


def format_comparison(comparison: dict[str, Any]) -> str:
    """A readable table: one row per setup x phase x metric, '*' where the interval excludes 0."""
    lines = [
        f"suite {comparison['suite']}: {comparison['b']} minus {comparison['a']} "
        f"(paired over the questions both answered; scored from {comparison['scored_with']})",
        "",
        f"{'setup':<12} {'phase':<6} {'metric':<17} {'b - a [95% interval]':<26} n",
    ]
    for setup, phases in comparison["differences"].items():
        for phase, metrics in phases.items():
            for metric, stat in metrics.items():
                mark = " *" if _excludes_zero(stat) else ""
                interval = fmt_interval(stat, signed=True) + mark
                lines.append(f"{setup:<12} {phase:<6} {metric:<17} {interval:<26} {stat.get('n')}")
    if len(lines) == 3:
        lines.append("(no question was answered in both runs)")
    else:
        lines += ["", "* the interval excludes 0: a real difference"]
    return "\n".join(lines)
