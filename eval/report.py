"""report.md for one eval run, written from its results.json.

Every sentence of the summary paragraph is computed from the numbers: a difference is called real only
when its paired bootstrap interval excludes 0, otherwise the report says there is no clear difference.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ragtune.core.errors import InputError

# Columns of the per-phase tables, in order: (metric key in results.json, column title).
COLUMNS = (
    ("accuracy", "accuracy"),
    ("hallucination", "hallucination"),
    ("abstention", "abstention"),
    ("false_abstention", "false abstention"),
    ("stale", "stale"),
    ("attribution", "attribution"),
    ("recall_at_k", "recall@k"),
    ("seconds", "s / answer"),
)
SETUP_ORDER = ("closed-book", "rag", "ft", "ft+rag")
COSTS = (
    ("index_seconds", "index v1"),
    ("reingest_seconds", "re-ingest v2"),
    ("finetune_seconds", "fine-tune v1"),
    ("retrain_seconds", "re-train v2"),
    ("raft_seconds", "RAFT data + fine-tune v1"),
    ("raft_retrain_seconds", "RAFT data + re-train v2"),
)
MISSING = "–"


def load_results(out: str | Path) -> dict[str, Any]:
    """results.json of a run folder; one-line InputError when the folder is not a run."""
    path = Path(out) / "results.json"
    if not path.is_file():
        raise InputError(f"{Path(out)} is not an eval run: no results.json in it (run `ragtune eval` first)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} cannot be read as JSON ({exc}); run the eval again") from None
    if not isinstance(results, dict) or not isinstance(results.get("setups"), dict):
        raise InputError(f"{path} has no 'setups' object; it was not written by ragtune eval")
    return results


def ordered_setups(names: Any) -> list[str]:
    """Known setups in their usual order, then any later ones by name."""
    names = list(names)
    return [s for s in SETUP_ORDER if s in names] + sorted(s for s in names if s not in SETUP_ORDER)


def phases_of(results: dict[str, Any]) -> list[str]:
    found = {phase for per_setup in results["setups"].values() for phase in per_setup}
    return [p for p in ("v1", "v2") if p in found] + sorted(found - {"v1", "v2"})


def _num(x: Any) -> float | None:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return None


def fmt_interval(stat: dict | None, signed: bool = False) -> str:
    """'0.62 [0.50, 0.73]'; the dash when the metric does not apply (n = 0 or absent)."""
    if not stat or _num(stat.get("value")) is None:
        return MISSING
    f = "{:+.2f}" if signed else "{:.2f}"

    def shown(x: float) -> str:
        return f.format(round(x, 2) + 0.0)  # + 0.0 turns -0.0 into 0.0: no "-0.00" for a tiny negative

    value = shown(stat["value"])
    lo, hi = _num(stat.get("lo")), _num(stat.get("hi"))
    if lo is None or hi is None:
        return value
    return f"{value} [{shown(lo)}, {shown(hi)}]"


def _metric(results: dict, setup: str, phase: str, metric: str) -> dict | None:
    stat = results["setups"].get(setup, {}).get(phase, {}).get(metric)
    return stat if isinstance(stat, dict) else None


def _cell(results: dict, setup: str, phase: str, metric: str, n_in_header: bool) -> str:
    stat = _metric(results, setup, phase, metric)
    text = fmt_interval(stat)
    if text == MISSING:
        return text
    if metric == "hallucination":
        # The split the issue asks for: wrong answers (answerable) vs invented ones (no gold).
        parts = []
        for key, label in (("wrong_answer", "wrong"), ("invented_answer", "invented")):
            sub = _metric(results, setup, phase, key)
            if sub and _num(sub.get("value")) is not None:
                parts.append(f"{label} {sub['value']:.2f}")
        if parts:
            text += " (" + ", ".join(parts) + ")"
    if not n_in_header:
        text += f" (n={stat.get('n')})"
    return text


def phase_table(results: dict[str, Any], phase: str) -> str:
    """Markdown table: setups as rows, metrics as columns; n in the header when every setup has the same."""
    setups = [s for s in ordered_setups(results["setups"]) if phase in results["setups"][s]]
    columns = [(k, t) for k, t in COLUMNS if k != "stale" or phase != "v1"]
    headers, uniform = ["setup"], {}
    for key, title in columns:
        ns = {(_metric(results, s, phase, key) or {}).get("n") for s in setups}
        ns.discard(None)
        ns.discard(0)
        uniform[key] = len(ns) <= 1
        headers.append(f"{title} (n={ns.pop()})" if len(ns) == 1 else title)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for setup in setups:
        cells = [_cell(results, setup, phase, key, uniform[key]) for key, _ in columns]
        lines.append("| " + " | ".join([setup, *cells]) + " |")
    return "\n".join(lines)


def costs_table(results: dict[str, Any]) -> str:
    costs = results.get("costs") or {}
    lines = ["| step | seconds |", "|---|---|"]
    for key, title in COSTS:
        value = _num(costs.get(key))
        if value is None and key.startswith("raft"):
            continue  # RAFT rows only for runs with a raft setup
        lines.append(f"| {title} | {MISSING if value is None else f'{value:.1f}'} |")
    return "\n".join(lines)


def paired_table(results: dict[str, Any], phase: str) -> str | None:
    paired = results.get("paired_vs_rag") or {}
    setups = [s for s in ordered_setups(paired) if s != "rag" and phase in paired[s]]
    if not setups:
        return None
    keys = [k for k, _ in COLUMNS if any(k in paired[s][phase] for s in setups)]
    titles = dict(COLUMNS)
    lines = ["| setup − rag | " + " | ".join(titles[k] for k in keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for setup in setups:
        cells = [fmt_interval(paired[setup][phase].get(k), signed=True) for k in keys]
        lines.append("| " + " | ".join([setup, *cells]) + " |")
    return "\n".join(lines)


KIND_ORDER = ("unchanged", "changed", "added", "removed", "unanswerable")


def kind_table(results: dict[str, Any], phase: str) -> str | None:
    """Setups by kind of question: accuracy where the phase answers that kind, abstention where not."""
    per_setup = {s: (results.get("by_kind") or {}).get(s, {}).get(phase) for s in results["setups"]}
    per_setup = {s: k for s, k in per_setup.items() if k}
    if not per_setup:
        return None
    kinds = [k for k in KIND_ORDER if any(k in v for v in per_setup.values())]
    answered = {"v1": ("unchanged", "changed", "removed"), "v2": ("unchanged", "changed", "added")}
    titles = [f"{k} ({'accuracy' if k in answered.get(phase, ()) else 'abstention'})" for k in kinds]
    lines = ["| setup | " + " | ".join(titles) + " |", "|" + "---|" * (len(kinds) + 1)]
    for setup in ordered_setups(per_setup):
        cells = [fmt_interval(per_setup[setup].get(k)) for k in kinds]
        lines.append("| " + " | ".join([setup, *cells]) + " |")
    return "\n".join(lines)


def _excludes_zero(stat: dict | None) -> bool:
    lo, hi = _num((stat or {}).get("lo")), _num((stat or {}).get("hi"))
    return lo is not None and hi is not None and (lo > 0 or hi < 0)


def _value(results: dict, setup: str, phase: str, metric: str) -> float | None:
    return _num((_metric(results, setup, phase, metric) or {}).get("value"))


def _accuracy_sentence(results: dict[str, Any], phase: str) -> str | None:
    scored = [
        (v, s)
        for s in ordered_setups(results["setups"])
        if (v := _value(results, s, phase, "accuracy")) is not None
    ]
    if not scored:
        return None
    best_value, best = max(scored, key=lambda pair: pair[0])
    if len(scored) > 1 and all(v == best_value for v, _ in scored):
        return f"In {phase}, every setup has the same accuracy ({best_value:.2f})."
    sentence = f"In {phase}, {best} is the most accurate setup ({best_value:.2f})"
    paired = results.get("paired_vs_rag") or {}
    # The comparison with an interval is always against rag: the best setup vs rag, or rag vs the runner-up.
    if best != "rag":
        other, stat, sign = "rag", (paired.get(best) or {}).get(phase, {}).get("accuracy"), 1
    else:
        rest = [(v, s) for v, s in scored if s != "rag"]
        if not rest:
            return sentence + "."
        other = max(rest, key=lambda pair: pair[0])[1]
        stat, sign = (paired.get(other) or {}).get(phase, {}).get("accuracy"), -1
    if not stat or _num(stat.get("value")) is None:
        return sentence + "; no paired interval against rag was recorded."
    if sign < 0:  # rag − other: negate and swap the bounds
        lo, hi = _num(stat.get("lo")), _num(stat.get("hi"))
        stat = {"value": -stat["value"], "lo": None if hi is None else -hi, "hi": None if lo is None else -lo}
    shown = fmt_interval(stat, signed=True)
    pair = f"{best} − {other}"
    if _excludes_zero(stat):
        return f"{sentence}; the paired difference {pair} is {shown}, a real difference."
    return f"{sentence}, but {pair} is {shown}: the interval spans 0, so no clear difference."


def _retrieval_vs_finetune_sentence(results: dict[str, Any]) -> str | None:
    """The question the project is named for: does retrieval beat fine-tuning alone (rag − ft)?"""
    parts = []
    for phase in phases_of(results):
        stat = ((results.get("paired_vs_rag") or {}).get("ft") or {}).get(phase, {}).get("accuracy")
        if not stat or _num(stat.get("value")) is None:
            continue
        lo, hi = _num(stat.get("lo")), _num(stat.get("hi"))
        flipped = {
            "value": -stat["value"],
            "lo": None if hi is None else -hi,
            "hi": None if lo is None else -lo,
        }
        if not _excludes_zero(stat):
            verdict = "no clear difference"
        else:
            verdict = "retrieval is better" if stat["value"] < 0 else "fine-tuning alone is better"
        parts.append(f"{fmt_interval(flipped, signed=True)} in {phase} ({verdict})")
    if not parts:
        return None
    return "Accuracy of rag − ft: " + "; ".join(parts) + "."


def _stale_sentence(results: dict[str, Any]) -> str | None:
    if "ft" not in results["setups"] or "v2" not in results["setups"]["ft"]:
        return None
    stale = _metric(results, "ft", "v2", "stale")
    if not stale or _num(stale.get("value")) is None:
        return None
    n = stale.get("n")
    sentence = (
        f"On the {n} changed facts of v2, the fine-tuned-only setup (ft, v1 adapter) gives the stale v1 answer "
        f"at a rate of {fmt_interval(stale)}"
    )
    if _excludes_zero(stale):
        sentence += ", so it does go stale"
    else:
        sentence += ", an interval that includes 0: no clear sign that it goes stale"
    others = [
        f"{s} {v:.2f}"
        for s in ("rag", "ft+rag")
        if s in results["setups"] and (v := _value(results, s, "v2", "stale")) is not None
    ]
    if others:
        sentence += " (stale rate of " + ", ".join(others) + ")"
    learned = ((results.get("by_kind") or {}).get("ft") or {}).get("v1", {}).get("changed")
    known = _num((learned or {}).get("value"))
    if known is not None:
        # Going stale needs a fact learned first: say how many of these facts ft knew in v1.
        sentence += f"; in v1, ft answered these facts correctly at a rate of {fmt_interval(learned)}"
        if known < 0.5 and not _excludes_zero(stale):
            sentence += ", so it had little to go stale on"
    return sentence + "."


def _cost_sentence(results: dict[str, Any]) -> str | None:
    costs = results.get("costs") or {}
    reingest = _num(costs.get("reingest_seconds"))
    retrain, label = _num(costs.get("retrain_seconds")), "re-training"
    if retrain is None:
        # Without --retrain the v1 fine-tune is the honest estimate of what catching up by training costs.
        retrain, label = (
            _num(costs.get("finetune_seconds")),
            "fine-tuning (v1, as an estimate of re-training)",
        )
    if reingest is None or retrain is None:
        return None
    if reingest <= 0:
        return f"Catching up with v2 took {retrain:.1f} s of {label} against a re-ingest too fast to measure."
    return (
        f"Catching up with v2 by re-ingesting took {reingest:.1f} s, by {label} {retrain:.1f} s: "
        f"{retrain / reingest:.1f}× the re-ingest cost."
    )


def summary(results: dict[str, Any]) -> str:
    """The paragraph of what the numbers say, built only from results."""
    sentences = [_accuracy_sentence(results, phase) for phase in phases_of(results)]
    sentences += [_retrieval_vs_finetune_sentence(results), _stale_sentence(results), _cost_sentence(results)]
    return " ".join(s for s in sentences if s) or "No metric was recorded."


def _header(results: dict[str, Any], out: Path) -> list[str]:
    suite = results.get("suite")
    if isinstance(suite, dict):
        suite = suite.get("name") or suite.get("root")
    config = results.get("config") or {}
    model = config.get("model") if isinstance(config, dict) else None
    commit = results.get("git_commit") or results.get("commit") or results.get("git commit")
    date = results.get("date") or results.get("created")
    if not date:
        stamp = (out / "results.json").stat().st_mtime
        date = datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"# ragtune eval: {suite or 'unnamed suite'}",
        "",
        f"- date: {date}",
        f"- model: {model or 'default'}",
        f"- commit: {commit or 'not recorded'}",
        f"- seed: {results.get('seed', config.get('seed') if isinstance(config, dict) else None)}",
    ]


def write_report(out: str | Path) -> Path:
    """Write out/report.md from out/results.json and return its path."""
    out = Path(out)
    results = load_results(out)
    lines = _header(results, out)
    lines += ["", "Cells are the mean with its 95% bootstrap interval; – where a metric does not apply."]
    for phase in phases_of(results):
        lines += ["", f"## Phase {phase}", "", phase_table(results, phase)]
    kinds = [(p, t) for p in phases_of(results) if (t := kind_table(results, p))]
    if kinds:
        lines += ["", "## By kind of question", ""]
        lines += ["Accuracy where the phase's documents answer the question, abstention where they do not."]
        for phase, table in kinds:
            lines += ["", f"### {phase}", "", table]
    lines += ["", "## Costs", "", costs_table(results)]
    paired = [(p, t) for p in phases_of(results) if (t := paired_table(results, p))]
    if paired:
        lines += ["", "## Paired differences vs rag", ""]
        lines += [
            "Setup minus rag over the same questions; an interval that excludes 0 is a real difference."
        ]
        for phase, table in paired:
            lines += ["", f"### {phase}", "", table]
    lines += ["", "## What the numbers say", "", summary(results), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
