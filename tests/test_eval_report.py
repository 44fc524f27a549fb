"""report.md, plots and run comparison, from hand-made results.json / answers.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.core.errors import InputError
from ragtune.eval.compare import compare_runs, format_comparison
from ragtune.eval.plots import write_plots
from ragtune.eval.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def stat(value, lo, hi, n):
    return {"value": value, "lo": lo, "hi": hi, "n": n}


def phase_metrics(acc, n=40, stale=None):
    metrics = {
        "accuracy": stat(acc, acc - 0.12, acc + 0.11, n),
        "hallucination": stat(0.30, 0.20, 0.40, 50),
        "wrong_answer": stat(0.25, 0.15, 0.35, n),
        "invented_answer": stat(0.50, 0.20, 0.80, 10),
        "abstention": stat(0.40, 0.10, 0.70, 10),
        "false_abstention": stat(0.05, 0.00, 0.10, n),
        "attribution": stat(0.55, 0.40, 0.70, n),
        "seconds": stat(1.5, 1.2, 1.8, 50),
    }
    if stale is not None:
        metrics["stale"] = stat(*stale)
    return metrics


def make_run(folder: Path, paired_acc=(0.20, 0.10, 0.30), costs=None, suite="tiny") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    results = {
        "suite": suite,
        "config": {"model": "tiny-llm", "seed": 0},
        "git_commit": "abc1234",
        "seed": 0,
        "costs": costs
        or {"index_seconds": 3.0, "reingest_seconds": 2.0, "finetune_seconds": 50.0, "retrain_seconds": 60.0},
        "setups": {
            "rag": {"v1": phase_metrics(0.62), "v2": phase_metrics(0.60, stale=(0.0, 0.0, 0.0, 8))},
            "ft+rag": {"v1": phase_metrics(0.82), "v2": phase_metrics(0.70, stale=(0.10, 0.0, 0.30, 8))},
            "ft": {"v1": phase_metrics(0.30), "v2": phase_metrics(0.20, stale=(0.50, 0.25, 0.75, 8))},
        },
        "paired_vs_rag": {
            "ft+rag": {
                "v1": {"accuracy": stat(*paired_acc, 40)},
                "v2": {"accuracy": stat(0.10, 0.02, 0.18, 40)},
            },
            "ft": {
                "v1": {"accuracy": stat(-0.32, -0.45, -0.20, 40)},
                "v2": {"accuracy": stat(-0.4, -0.5, -0.3, 40)},
            },
        },
    }
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def write_answers(folder: Path, rows: list[tuple[str, str, str, str | None, bool, bool]]) -> None:
    """rows: (setup, phase, id, gold, correct, refused)."""
    lines = [
        json.dumps(
            {
                "setup": s,
                "phase": p,
                "id": i,
                "question": "q?",
                "gold": g,
                "answer": "a",
                "refused": r,
                "citations": [],
                "sources": [],
                "seconds": 1.0,
                "correct": c,
            }
        )
        for s, p, i, g, c, r in rows
    ]
    (folder / "answers.jsonl").write_text("\n".join(lines) + "\n")


def test_report_tables_hold_the_formatted_intervals(tmp_path):
    text = write_report(make_run(tmp_path / "run")).read_text()
    assert "# ragtune eval: tiny" in text
    assert "- model: tiny-llm" in text and "- commit: abc1234" in text
    assert "| setup | accuracy (n=40) | hallucination (n=50) |" in text
    assert (
        "| rag | 0.62 [0.50, 0.73] | 0.30 [0.20, 0.40] (wrong 0.25, invented 0.50) | 0.40 [0.10, 0.70] |"
        in text
    )


def test_stale_column_only_in_v2(tmp_path):
    text = write_report(make_run(tmp_path / "run")).read_text()
    v1, v2 = text.split("## Phase v1")[1].split("## Phase v2")
    assert "stale" not in v1.split("## Costs")[0]
    assert "| ft | 0.20 [0.08, 0.31] |" in v2
    assert "0.50 [0.25, 0.75]" in v2


def test_costs_and_paired_tables(tmp_path):
    text = write_report(make_run(tmp_path / "run")).read_text()
    assert "| re-ingest v2 | 2.0 |" in text and "| re-train v2 | 60.0 |" in text
    assert "| ft+rag | +0.20 [+0.10, +0.30] |" in text


def test_paragraph_names_the_better_setup_when_its_interval_excludes_zero(tmp_path):
    text = write_report(make_run(tmp_path / "run")).read_text()
    paragraph = text.split("## What the numbers say")[1]
    assert "In v1, ft+rag is the most accurate setup (0.82)" in paragraph
    assert "ft+rag − rag is +0.20 [+0.10, +0.30], a real difference" in paragraph
    assert "Accuracy of rag − ft: +0.32 [+0.20, +0.45] in v1 (retrieval is better)" in paragraph
    assert "so it does go stale" in paragraph
    assert "30.0× the re-ingest cost" in paragraph


def test_paragraph_says_no_clear_difference_when_the_interval_spans_zero(tmp_path):
    text = write_report(make_run(tmp_path / "run", paired_acc=(0.20, -0.05, 0.40))).read_text()
    paragraph = text.split("## What the numbers say")[1]
    assert "ft+rag − rag is +0.20 [-0.05, +0.40]: the interval spans 0, so no clear difference" in paragraph


def test_paragraph_uses_the_finetune_cost_without_retrain(tmp_path):
    costs = {"index_seconds": 3.0, "reingest_seconds": 2.0, "finetune_seconds": 50.0, "retrain_seconds": None}
    text = write_report(make_run(tmp_path / "run", costs=costs)).read_text()
    assert "as an estimate of re-training) 50.0 s: 25.0× the re-ingest cost" in text


def test_report_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(InputError, match="no results.json") as info:
        write_report(tmp_path)
    assert "\n" not in str(info.value)


def test_plots_are_written_as_png(tmp_path):
    paths = write_plots(make_run(tmp_path / "run"))
    assert sorted(p.name for p in paths) == ["freshness.png", "metrics_v1.png", "metrics_v2.png"]
    for path in paths:
        data = path.read_bytes()
        assert path.parent == tmp_path / "run" / "plots"
        assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_compare_a_run_with_itself_gives_zero_differences(tmp_path):
    run = make_run(tmp_path / "run")
    write_answers(
        run,
        [
            ("rag", "v1", "q1", "x", True, False),
            ("rag", "v1", "q2", "y", False, False),
            ("rag", "v1", "q3", None, False, True),
        ],
    )
    diffs = compare_runs(run, run)["differences"]["rag"]["v1"]
    assert diffs["accuracy"] == {"value": 0.0, "lo": 0.0, "hi": 0.0, "n": 2}
    assert diffs["abstention"]["value"] == 0.0 and diffs["abstention"]["n"] == 1


def test_compare_pairs_only_questions_both_runs_answered(tmp_path):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    write_answers(a, [("rag", "v1", "q1", "x", False, False), ("rag", "v1", "q2", "y", False, False)])
    write_answers(b, [("rag", "v1", "q1", "x", True, False), ("rag", "v1", "q9", "z", True, False)])
    comparison = compare_runs(a, b)
    assert comparison["differences"]["rag"]["v1"]["accuracy"]["value"] == 1.0
    assert comparison["differences"]["rag"]["v1"]["accuracy"]["n"] == 1
    rows = [line.split() for line in format_comparison(comparison).splitlines()]
    assert ["rag", "v1", "accuracy", "+1.00", "[+1.00,", "+1.00]", "*", "1"] in rows


def test_compare_a_folder_without_results_is_one_input_error_line(tmp_path):
    run = make_run(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty is not an eval run: no results.json") as info:
        compare_runs(tmp_path / "empty", run)
    assert "\n" not in str(info.value)


def test_compare_runs_of_different_suites_is_refused(tmp_path):
    a, b = make_run(tmp_path / "a", suite="heron"), make_run(tmp_path / "b", suite="debian")
    with pytest.raises(InputError, match="suite 'heron' but .* ran 'debian'"):
        compare_runs(a, b)


def test_paragraph_when_rag_is_best_compares_it_with_the_runner_up(tmp_path):
    run = make_run(tmp_path / "run", paired_acc=(-0.12, -0.20, -0.04))
    results = json.loads((run / "results.json").read_text())
    results["setups"]["ft+rag"]["v1"]["accuracy"] = stat(0.50, 0.38, 0.62, 40)
    (run / "results.json").write_text(json.dumps(results))
    paragraph = write_report(run).read_text().split("## What the numbers say")[1]
    assert "In v1, rag is the most accurate setup (0.62)" in paragraph
    assert "rag − ft+rag is +0.12 [+0.04, +0.20], a real difference" in paragraph


def test_report_title_names_a_suite_recorded_as_an_object(tmp_path):
    run = make_run(
        tmp_path / "run", suite={"name": "heron", "root": str(tmp_path / "nowhere"), "questions": 3}
    )
    assert write_report(run).read_text().startswith("# ragtune eval: heron\n")


def test_by_kind_table_shows_accuracy_or_abstention_per_phase(tmp_path):
    run = make_run(tmp_path / "run")
    results = json.loads((run / "results.json").read_text())
    results["by_kind"] = {
        "ft": {
            "v1": {"changed": stat(0.25, 0.0, 0.5, 8), "added": stat(0.0, 0.0, 0.0, 4)},
            "v2": {"changed": stat(0.125, 0.0, 0.375, 8), "added": stat(0.5, 0.0, 1.0, 4)},
        }
    }
    (run / "results.json").write_text(json.dumps(results))
    report = write_report(run).read_text()
    assert "| setup | changed (accuracy) | added (abstention) |" in report  # v1 does not answer added ones
    assert "| setup | changed (accuracy) | added (accuracy) |" in report
    assert "| ft | 0.25 [0.00, 0.50] | 0.00 [0.00, 0.00] |" in report
    # ft's stale rate 0.50 [0.25, 0.75] excludes 0; the v1 rate on changed facts is reported beside it.
    assert "in v1, ft answered these facts correctly at a rate of 0.25 [0.00, 0.50]." in report


def test_costs_table_shows_raft_rows_only_for_runs_that_trained_one(tmp_path):
    plain = write_report(make_run(tmp_path / "plain")).read_text()
    assert "RAFT" not in plain and "| re-train v2 | 60.0 |" in plain
    costs = {"index_seconds": 3.0, "reingest_seconds": 2.0, "finetune_seconds": 50.0, "raft_seconds": 95.5}
    raft = write_report(make_run(tmp_path / "raft", costs=costs)).read_text()
    assert "| RAFT data + fine-tune v1 | 95.5 |" in raft and "RAFT data + re-train v2" not in raft
