"""Fit the grounded answering modes' sentence ranking and abstention on the bundled suites' dev split.

    .venv/bin/python bench/grounding.py --fit            # writes rag/generation/grounding/calibration.json
    .venv/bin/python bench/grounding.py                  # the same numbers, nothing written
    .venv/bin/python bench/grounding.py --split test     # the shipped calibration on the test split

For every question of every phase of the split (heron; debian-reference when its package is installed)
it retrieves as `rag.ask` does and lists the passages' sentences with their RANK_FEATURES, then:
1. fits the ranking weights (a softmax over each question's sentences, towards those whose quoted answer
   holds the gold), reporting 5-fold cross-validated accuracy beside BM25 alone;
2. fits a logistic model of "the top sentence is correct" on ABSTAIN_FEATURES, and the threshold that
   maximises accuracy minus hallucination, reporting both fitted together, cross-validated.
Only --split dev fits; the test split is read only to report, and `ragtune eval SUITE --split test`
measures the modes end to end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ragtune.eval.metrics import contains_gold  # noqa: E402
from ragtune.eval.suite import load_suite  # noqa: E402
from ragtune.eval.workspace import sync_folder  # noqa: E402
from ragtune.rag.generation.answer import AnswerConfig, fit_passages, relevant  # noqa: E402
from ragtune.rag.generation.grounded import CALIBRATION_FILE, Calibration, coverage, features, quoted  # noqa: E402
from ragtune.rag.generation.grounding.candidates import RANK_FEATURES, feature_weights, rank_sentences  # noqa: E402

FOLDS = 5


def rows_for(suite_name: str, split: str, count_tokens, work: Path) -> list[dict]:
    """One row per question and phase of `split`: the retrieval score, and each candidate sentence's
    features, whether its quoted answer holds the gold, and its `coverage` of the question."""
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
                if getattr(q, "split", "dev") != split:
                    continue
                golds = q.golds(phase)
                chosen = relevant(rag.search(q.question, k=config.k, mode=config.mode), config.min_scores)
                row = {"id": f"{suite.name}/{phase}/{q.id}", "answerable": bool(golds), "sentences": []}
                if chosen:
                    fitted = fit_passages(chosen, config.max_context_tokens, count_tokens)
                    passages = [h.text for h in chosen[: len(fitted)]]
                    row["retrieval"] = max(h.scores.get("dense", 0.0) for h in chosen)
                    row["in_passages"] = any(contains_gold(p, golds) for p in passages)
                    ranked = rank_sentences(
                        q.question, passages, feature_weights(lexical=1.0), rag._similarity
                    )
                    row["sentences"] = [
                        (s.features, bool(golds) and contains_gold(quoted(s.support), golds)) for s in ranked
                    ]
                    row["coverage"] = [
                        coverage(q.question, passages[s.n - 1], passages[s.n - 1][s.start : s.end])
                        for s in ranked
                    ]
                rows.append(row)
    return rows


def _arrays(row: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.array([f for f, _ok in row["sentences"]]), np.array([ok for _f, ok in row["sentences"]], float)


def fit_ranking(rows: list[dict], l2: float = 1e-2, steps: int = 2000) -> np.ndarray:
    """Weights of a softmax over each row's sentences, fitted towards its correct ones."""
    data = [_arrays(r) for r in rows if r["sentences"]]
    data = [(x, y / y.sum()) for x, y in data if y.sum() > 0]
    w = np.zeros(len(RANK_FEATURES))
    for _ in range(steps):
        grad = np.zeros_like(w)
        for x, target in data:
            z = x @ w
            p = np.exp(z - z.max())
            grad += x.T @ (p / p.sum() - target)
        w -= 0.5 * (grad / max(len(data), 1) + l2 * w)
    return w


def top(row: dict, weights: np.ndarray) -> tuple[int, bool] | None:
    """(index, correct) of the best sentence under `weights`, None when there is none."""
    if not row["sentences"]:
        return None
    x, y = _arrays(row)
    best = int((x @ weights).argmax())
    return best, bool(y[best])


def fold_of(row: dict) -> int:
    """The cross-validation fold of a row: by question, so that a question's phases (often the same
    sentence) never stand on both sides of a fold."""
    suite, _phase, question = row["id"].split("/", 2)
    return zlib.crc32(f"{suite}/{question}".encode()) % FOLDS


def cross_validated(rows: list[dict]) -> float:
    """Accuracy of the top sentence, each fold ranked with weights fitted on the other folds."""
    answerable = [r for r in rows if r["answerable"]]
    correct = 0
    for fold in range(FOLDS):
        weights = fit_ranking([r for r in answerable if fold_of(r) != fold])
        picked = [top(r, weights) for r in answerable if fold_of(r) == fold]
        correct += sum(bool(p and p[1]) for p in picked)
    return correct / max(len(answerable), 1)


def abstain_features(row: dict, weights: np.ndarray) -> tuple[float, ...]:
    """ABSTAIN_FEATURES of the row's ranking under `weights`, by grounded.features."""
    x, _y = _arrays(row)
    scores = x @ weights
    order = np.argsort(-scores)
    runner_up = float(scores[order[1]]) if len(order) > 1 else None
    best = int(order[0])
    return features(row["retrieval"], tuple(x[best]), float(scores[best]), runner_up, row["coverage"][best])


def fit_logistic(
    x: np.ndarray, y: np.ndarray, steps: int = 4000, lr: float = 0.5
) -> tuple[np.ndarray, float]:
    """Plain logistic regression by gradient descent on standardised features (weights mapped back)."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        w -= lr * (z.T @ (p - y) / len(y) + 1e-3 * w)
        b -= lr * float((p - y).mean())
    return w / scale, b - float((w * mean / scale).sum())


def outcome(rows: list[dict], calibration: Calibration, abstain: bool) -> dict[str, float]:
    """Accuracy, hallucination, abstention and false abstention of the extractive answer on `rows`."""
    return outcome_of([(r, calibration) for r in rows], abstain)


def outcome_of(decided: list[tuple[dict, Calibration]], abstain: bool) -> dict[str, float]:
    """`outcome` of rows each answered under its own calibration (a cross-validation fold's)."""
    correct = wrong = refused_ok = refused_bad = 0
    rows = [r for r, _c in decided]
    answerable = sum(r["answerable"] for r in rows)
    for r, calibration in decided:
        weights = np.array(calibration.rank_weights)
        picked = top(r, weights)
        answers = picked is not None
        if answers and abstain:
            answers = calibration.confidence(abstain_features(r, weights)) >= calibration.threshold
        if not answers:
            refused_ok += not r["answerable"]
            refused_bad += r["answerable"]
        elif r["answerable"] and picked[1]:
            correct += 1
        else:
            wrong += 1
    n = len(rows)
    return {
        "accuracy": round(correct / max(answerable, 1), 3),
        "hallucination": round(wrong / max(n, 1), 3),
        "abstention": round(refused_ok / max(n - answerable, 1), 3),
        "false_abstention": round(refused_bad / max(answerable, 1), 3),
    }


def cross_validated_decision(rows: list[dict]) -> dict[str, float]:
    """`outcome` with abstention, each fold answered under a calibration (ranking, abstention weights
    and threshold) fitted on the other folds."""
    decided = []
    for fold in range(FOLDS):
        calibration = fit([r for r in rows if fold_of(r) != fold], [])
        decided += [(r, calibration) for r in rows if fold_of(r) == fold]
    return outcome_of(decided, abstain=True)


def fit(rows: list[dict], suites: list[str]) -> Calibration:
    weights = fit_ranking([r for r in rows if r["answerable"]])
    usable = [r for r in rows if r["sentences"]]
    x = np.array([abstain_features(r, weights) for r in usable])
    y = np.array([float(r["answerable"] and top(r, weights)[1]) for r in usable])
    w, b = fit_logistic(x, y)
    best_threshold, best_value = 0.0, -1.0
    for threshold in np.linspace(0.05, 0.95, 19):
        candidate = Calibration(tuple(weights), tuple(w), b, float(threshold))
        result = outcome(rows, candidate, abstain=True)
        value = result["accuracy"] - result["hallucination"]
        if value > best_value:
            best_threshold, best_value = float(threshold), value
    return Calibration(
        tuple(float(v) for v in weights),
        tuple(float(v) for v in w),
        float(b),
        best_threshold,
        f"dev split of {', '.join(suites)}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fit", action="store_true", help="write the calibration file (dev split only)")
    parser.add_argument("--suites", default="heron,debian-reference")
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    args = parser.parse_args(argv)
    if args.fit and args.split != "dev":
        parser.error("--fit reads the dev split only")
    from ragtune.core.errors import InputError
    from ragtune.rag.generation.llm import GeneratorConfig, LocalLLM

    count_tokens = LocalLLM.load(GeneratorConfig()).count_tokens
    started = time.perf_counter()
    rows: list[dict] = []
    used = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.suites.split(","):
            try:
                rows += rows_for(name, args.split, count_tokens, Path(tmp))
                used.append(name)
            except InputError as exc:
                print(f"skipping suite {name}: {exc}")
    print(
        f"{len(rows)} {args.split} question-phases from {', '.join(used)} in {time.perf_counter() - started:.0f} s"
    )
    answerable = [r for r in rows if r["answerable"]]
    held = sum(bool(r.get("in_passages")) for r in answerable) / max(len(answerable), 1)
    oracle = sum(any(ok for _f, ok in r["sentences"]) for r in answerable) / max(len(answerable), 1)
    print(f"  answerable: gold in the passages {held:.3f}; in some quoted sentence {oracle:.3f}")
    for name, weights in [
        ("BM25 alone", feature_weights(lexical=1.0)),
        ("similarity alone", feature_weights(similarity=1.0)),
    ]:
        print(f"  top sentence by {name}: accuracy {outcome(rows, Calibration(weights), False)['accuracy']}")
    if args.split == "dev":
        print(f"  fitted ranking, {FOLDS}-fold cross-validated: accuracy {cross_validated(rows):.3f}")
        print(f"  with abstention, {FOLDS}-fold cross-validated:", cross_validated_decision(rows))
        calibration = fit(rows, used)
    else:
        calibration = Calibration.load()
    print(
        f"ranking weights {dict(zip(RANK_FEATURES, np.round(calibration.rank_weights, 3).tolist(), strict=True))}"
    )
    print(
        f"abstention weights {np.round(calibration.weights, 3).tolist()}, bias {calibration.bias:.3f}, threshold {calibration.threshold:.2f}"
    )
    print(f"{args.split}, no abstention:  ", outcome(rows, calibration, abstain=False))
    print(f"{args.split}, with abstention:", outcome(rows, calibration, abstain=True))
    print("the trade-off a stricter or looser AnswerConfig.min_confidence makes:")
    for threshold in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        print(
            f"  min_confidence {threshold}:", outcome(rows, replace(calibration, threshold=threshold), True)
        )
    if args.fit:
        data = {
            "rank_weights": list(calibration.rank_weights),
            "weights": list(calibration.weights),
            "bias": calibration.bias,
            "threshold": calibration.threshold,
            "fitted_on": calibration.fitted_on,
            "questions": len(rows),
        }
        CALIBRATION_FILE.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {CALIBRATION_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
