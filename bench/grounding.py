"""Fit the grounded answering mode's ranking weight and abstention on the bundled suites' dev split.

    .venv/bin/python bench/grounding.py --fit            # writes rag/generation/grounding/calibration.json
    .venv/bin/python bench/grounding.py                  # the same numbers, nothing written

For every dev question of every phase (heron; debian-reference when its package is installed) it
retrieves as `rag.ask` does, lists the candidate spans and scores them with the default model, then:
1. picks the model weight (rank = lexical + weight * mean log-prob) with the best dev accuracy;
2. fits a logistic model of "the top span is correct" on (best retrieval score, best lexical score,
   best mean log-prob), and the threshold that maximises dev accuracy minus hallucination.
The test split is never read here: `ragtune eval SUITE --split test --setups rag,rag-grounded,...`
reports on it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ragtune.eval.metrics import contains_gold  # noqa: E402
from ragtune.eval.suite import load_suite  # noqa: E402
from ragtune.eval.workspace import sync_folder  # noqa: E402
from ragtune.rag.generation.answer import AnswerConfig, build_messages, fit_passages, relevant  # noqa: E402
from ragtune.rag.generation.grounded import CALIBRATION_FILE, Calibration, quoted, rank  # noqa: E402

WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.25, 0.4, 0.7, 1.0)


def rows_for(suite_name: str, llm, work: Path) -> list[dict]:
    """One row per dev question and phase: retrieval score, candidates with lexical score, log-prob and
    correctness, and whether the phase answers the question."""
    from ragtune.rag.api import RAG

    suite = load_suite(suite_name)
    config = AnswerConfig(k=4)
    rows = []
    docs, index = work / suite.name / "docs", work / suite.name / "index"
    for phase in suite.phases:
        sync_folder(suite.docs[phase], docs)
        with RAG.open(index) as rag:
            rag.ingest(docs, progress=False)
            for q in suite.questions:
                if getattr(q, "split", "dev") != "dev":
                    continue
                hits = rag.search(q.question, k=config.k, mode=config.mode)
                chosen = relevant(hits, config.min_scores)
                row = {"suite": suite.name, "phase": phase, "id": q.id, "answerable": bool(q.golds(phase))}
                row["retrieved"] = bool(chosen)
                if chosen:
                    fitted = fit_passages(chosen, config.max_context_tokens, llm.count_tokens)
                    messages = build_messages(q.question, fitted, [], config)
                    passages = [h.text for h in chosen[: len(fitted)]]
                    # The candidates and log-probs the mode itself ranks (weight 0: the lexical order)
                    ranked = rank(q.question, passages, messages, llm, Calibration(model_weight=0.0))
                    found, logps = [c for _s, _lp, c in ranked], [lp for _s, lp, _c in ranked]
                    row["retrieval"] = max(h.scores.get("dense", 0.0) for h in chosen)
                    row["in_passages"] = any(contains_gold(p, q.golds(phase)) for p in passages)
                    row["candidates"] = [
                        {
                            "lexical": c.score,
                            "logp": max(lp, -20.0),
                            # judged as the mode answers: the span's sentence, quoted
                            "correct": contains_gold(quoted(c), q.golds(phase)),
                            "span_correct": contains_gold(c.text, q.golds(phase)),
                        }
                        for c, lp in zip(found, logps, strict=True)
                    ]
                rows.append(row)
    return rows


def top_of(row: dict, weight: float) -> dict | None:
    found = row.get("candidates") or []
    return max(found, key=lambda c: c["lexical"] + weight * c["logp"]) if found else None


def fit_logistic(
    x: np.ndarray, y: np.ndarray, steps: int = 4000, lr: float = 0.1
) -> tuple[np.ndarray, float]:
    """Plain gradient descent on standardised features, returned in the original scale."""
    mean, scale = x.mean(0), x.std(0) + 1e-9
    z = (x - mean) / scale
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        w -= lr * (z.T @ (p - y) / len(y) + 1e-3 * w)
        b -= lr * float((p - y).mean())
    return w / scale, b - float((w * mean / scale).sum())


def outcome(rows: list[dict], weight: float, calibration: Calibration | None) -> dict[str, float]:
    """Accuracy, hallucination, abstention and false abstention of the extractive answer on `rows`."""
    correct = wrong = refused_ok = refused_bad = invented = 0
    answerable = sum(r["answerable"] for r in rows)
    for r in rows:
        best = top_of(r, weight)
        answers = best is not None
        if answers and calibration is not None:
            feats = (r["retrieval"], best["lexical"], best["logp"])
            answers = calibration.confidence(feats) >= calibration.threshold
        if not answers:
            refused_ok += not r["answerable"]
            refused_bad += r["answerable"]
        elif r["answerable"]:
            correct += best["correct"]
            wrong += not best["correct"]
        else:
            invented += 1
    n = len(rows)
    return {
        "accuracy": correct / max(answerable, 1),
        "hallucination": (wrong + invented) / max(n, 1),
        "abstention": refused_ok / max(n - answerable, 1),
        "false_abstention": refused_bad / max(answerable, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fit", action="store_true", help="write the calibration file")
    parser.add_argument("--suites", default="heron,debian-reference")
    args = parser.parse_args(argv)
    from ragtune.core.errors import InputError
    from ragtune.rag.generation.llm import GeneratorConfig, LocalLLM

    llm = LocalLLM.load(GeneratorConfig())
    started = time.perf_counter()
    rows: list[dict] = []
    used = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.suites.split(","):
            try:
                rows += rows_for(name, llm, Path(tmp))
                used.append(name)
            except InputError as exc:
                print(f"skipping suite {name}: {exc}")
    print(f"{len(rows)} dev question-phases from {', '.join(used)} in {time.perf_counter() - started:.0f} s")
    answerable = [r for r in rows if r["answerable"]]
    held = sum(bool(r.get("in_passages")) for r in answerable) / max(len(answerable), 1)
    oracle = sum(any(c["span_correct"] for c in r.get("candidates") or []) for r in answerable) / max(
        len(answerable), 1
    )
    print(f"  answerable: gold in the passages {held:.3f}; in some candidate span {oracle:.3f}")
    scored = {w: outcome(rows, w, None)["accuracy"] for w in WEIGHTS}
    for w, acc in scored.items():
        print(f"  model weight {w:<5} dev accuracy of the top span {acc:.3f}")
    weight = max(WEIGHTS, key=lambda w: (scored[w], -w))
    usable = [r for r in rows if r.get("candidates")]
    tops = [top_of(r, weight) for r in usable]
    x = np.array([(r["retrieval"], t["lexical"], t["logp"]) for r, t in zip(usable, tops, strict=True)])
    y = np.array([float(r["answerable"] and t["correct"]) for r, t in zip(usable, tops, strict=True)])
    w, b = fit_logistic(x, y)
    best_threshold, best_value = 0.0, -1.0
    for threshold in np.linspace(0.05, 0.95, 19):
        cal = Calibration(weight, tuple(w), b, float(threshold))
        result = outcome(rows, weight, cal)
        value = result["accuracy"] - result["hallucination"]
        if value > best_value:
            best_threshold, best_value = float(threshold), value
    fitted = Calibration(
        weight, tuple(float(v) for v in w), float(b), best_threshold, f"dev split of {', '.join(used)}"
    )
    print(
        f"chosen: model weight {weight}, weights {np.round(w, 3).tolist()}, bias {b:.3f}, threshold {best_threshold:.2f}"
    )
    span = sum(bool((t := top_of(r, weight)) and t["span_correct"]) for r in answerable)
    print(
        f"  the top span alone as the answer (not its sentence): accuracy {span / max(len(answerable), 1):.3f}"
    )
    print("dev, no abstention:  ", outcome(rows, weight, None))
    print("dev, with abstention:", outcome(rows, weight, fitted))
    if args.fit:
        data = {
            "model_weight": weight,
            "weights": list(fitted.weights),
            "bias": fitted.bias,
            "threshold": fitted.threshold,
            "fitted_on": fitted.fitted_on,
            "questions": len(rows),
        }
        CALIBRATION_FILE.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {CALIBRATION_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
