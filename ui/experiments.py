"""The Experiments page: `ragtune eval` run folders, each with its report and plots, two side by side."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ragtune.core.errors import RagtuneError
from ragtune.eval.report import load_results
from ragtune.ui.discovery import find_runs
from ragtune.ui.settings import UISettings


def page(settings: UISettings) -> None:
    st.header("Experiments")
    runs = find_runs(settings.runs_dir)
    if not runs:
        st.info(
            f"No evaluation run under {Path(settings.runs_dir).expanduser().resolve()}: run "
            "`ragtune eval heron --out runs/heron` (or start the UI with --runs-dir pointing at your runs)."
        )
        return
    names = [str(r) for r in runs]
    chosen = st.multiselect(
        "Runs (choose two to compare side by side)", names, default=names[:1], max_selections=2, key="runs"
    )
    if not chosen:
        return
    if len(chosen) == 2:
        _differences(Path(chosen[0]), Path(chosen[1]))
    for column, run in zip(st.columns(len(chosen)), chosen, strict=True):
        with column:
            show_run(Path(run))


def _differences(a: Path, b: Path) -> None:
    """Per-metric differences of two runs of one suite, paired by question (`ragtune eval --compare`)."""
    from ragtune.eval.compare import compare_runs, format_comparison

    with st.expander(f"Differences: {b.name} minus {a.name}"):
        try:
            st.code(format_comparison(compare_runs(a, b)), language=None)
        except RagtuneError as exc:
            st.info(f"These two runs cannot be paired: {exc}")


def show_run(run: Path) -> None:
    st.subheader(run.name)
    try:
        results = load_results(run)
    except RagtuneError as exc:
        st.error(str(exc))
        return
    suite = results.get("suite")
    suite_name = suite.get("name", "?") if isinstance(suite, dict) else suite
    st.caption(f"suite {suite_name} · setups: {', '.join(results['setups'])} · {run}")
    report = run / "report.md"
    if report.is_file():
        st.markdown(report.read_text(encoding="utf-8", errors="replace"))
    else:
        st.warning(
            f"{run} has no report.md yet: it is written when `ragtune eval` finishes (--resume continues a run)"
        )
    for plot in sorted((run / "plots").glob("*.png")):
        st.image(str(plot), caption=plot.stem)
