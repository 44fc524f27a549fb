"""PNG plots of one eval run (matplotlib, Agg backend: works without a display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.eval.report import _num, load_results, ordered_setups, phases_of

BAR_METRICS = (("accuracy", "accuracy"), ("hallucination", "hallucination"), ("abstention", "abstention"))


def _pyplot():
    # Imported here so importing ragtune.eval costs nothing; Agg is chosen before pyplot is loaded.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bar(stat: Any) -> tuple[float, float, float] | None:
    """(height, below, above) for an error bar, or None when the metric does not apply."""
    if not isinstance(stat, dict) or _num(stat.get("value")) is None:
        return None
    value = stat["value"]
    lo, hi = _num(stat.get("lo")), _num(stat.get("hi"))
    return value, value - (value if lo is None else lo), (value if hi is None else hi) - value


def _grouped(plt, groups: list[str], series: list[tuple[str, list[Any]]], title: str, path: Path) -> Path:
    """One group of bars per setup, one bar per series, interval error bars; n/a where a value is missing."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) + 2), 4.2))
    width = 0.8 / max(1, len(series))
    for i, (label, stats) in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        bars = [_bar(s) for s in stats]
        heights = [b[0] if b else 0.0 for b in bars]
        err = [[b[1] if b else 0.0 for b in bars], [b[2] if b else 0.0 for b in bars]]
        ax.bar(xs, heights, width, yerr=err, capsize=3, label=label)
        for x, b in zip(xs, bars, strict=True):
            if b is None:
                ax.text(x, 0.01, "n/a", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("rate (95% interval)")
    ax.set_title(title)
    # Legend outside the axes so it never covers a bar.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(out: str | Path) -> list[Path]:
    """Write out/plots/metrics_<phase>.png and, with two phases, out/plots/freshness.png."""
    out = Path(out)
    results = load_results(out)
    plt = _pyplot()
    folder = out / "plots"
    folder.mkdir(exist_ok=True)
    per_setup = results["setups"]
    setups = ordered_setups(per_setup)
    written = []
    for phase in phases_of(results):
        names = [s for s in setups if phase in per_setup[s]]
        series = [(title, [per_setup[s][phase].get(key) for s in names]) for key, title in BAR_METRICS]
        written.append(_grouped(plt, names, series, f"Phase {phase}", folder / f"metrics_{phase}.png"))
    phases = [p for p in phases_of(results) if p in ("v1", "v2")]
    if len(phases) == 2:
        names = [s for s in setups if any(p in per_setup[s] for p in phases)]
        series = [(f"{p} accuracy", [per_setup[s].get(p, {}).get("accuracy") for s in names]) for p in phases]
        written.append(_grouped(plt, names, series, "Freshness: accuracy v1 vs v2", folder / "freshness.png"))
    return written
