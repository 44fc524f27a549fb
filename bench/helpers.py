"""What every benchmark script shares: progress lines, tables, statistics, timing, memory, machine info.

Progress goes to stderr as `[  12.3 s] message` (seconds since this module was imported, i.e. since the
script started); the report goes to stdout. Nothing here imports torch: generate.py's parent process must
stay small, so that its children's peak RSS is their own.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STARTED = time.perf_counter()
LOG_LINE = re.compile(r"^\[\s*\d+\.\d s\] (.*)$")  # a line written by log(), as a parent reads a child's


def elapsed() -> float:
    """Seconds since the script started."""
    return time.perf_counter() - STARTED


def log(message: str) -> None:
    print(f"[{elapsed():7.1f} s] {message}", file=sys.stderr, flush=True)


def out(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Tables and number formats


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1, cell: Callable[[Any], str] = str
) -> None:
    """A Markdown table padded to read well as plain text too: the first `left` columns (labels)
    left-aligned, the others (numbers) right-aligned; `cell` turns each row value into text."""
    cells = [[str(c) for c in header]] + [[cell(c) for c in row] for row in rows]
    widths = [max(3, *(len(r[i]) for r in cells)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    out(line(cells[0]))
    out("| " + " | ".join("-" * w if i < left else "-" * (w - 1) + ":" for i, w in enumerate(widths)) + " |")
    for row in cells[1:]:
        out(line(row))


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], indent: int = 2) -> None:
    """A plain aligned table (header, dashes, rows), indented; floats through `short`."""
    cells = [[str(c) for c in header]] + [[short(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    pad = " " * indent
    for n, row in enumerate(cells):
        # First column left-aligned (labels), the rest right-aligned (numbers).
        line = "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        out(pad + line.rstrip())
        if n == 0:
            out(pad + "  ".join("-" * w for w in widths))


def short(value: Any) -> str:
    """A float with as many decimals as its size deserves (3, 1 or 0); NaN as '-'; anything else str()."""
    if isinstance(value, float):
        if value != value:
            return "-"
        magnitude = abs(value)
        return f"{value:.0f}" if magnitude >= 1000 else f"{value:.1f}" if magnitude >= 100 else f"{value:.3f}"
    return str(value)


def fmt(value: Any, digits: int = 2) -> str:
    """None/NaN as '-', booleans as yes/no, numbers with thousands separators."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "-" if value != value else f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def num(value: float | None, digits: int = 2) -> str:
    """A number with `digits` decimals and thousands separators; None/NaN as '-'."""
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def seconds(value: float | None) -> str:
    """Seconds with three significant-ish digits: 0.051, 1.22, 158."""
    if value is None or value != value:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def ratio(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.2f}x"


def ms(seconds_: float) -> float:
    return seconds_ * 1000.0


# ---------------------------------------------------------------------------------------------------------
# Statistics


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100, linear interpolation as numpy's default); NaN for no values."""
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


# ---------------------------------------------------------------------------------------------------------
# Timing, and the order timed runs take


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, all threads, result) of one call. CPU time moves less
    than wall time when another job shares the cores, so it is the steadier way to compare two runs."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def repeat_timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Seconds of each of `repeats` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        seconds_, result = timed(fn)
        times.append(seconds_)
    return times, result


def rotate(items: Sequence[Any], n: int) -> list[Any]:
    """`items` starting at position n: the order changes every round, so no variant always runs first."""
    n %= len(items)
    return list(items[n:]) + list(items[:n])


def shuffled(items: Sequence[Any], rng: Any) -> list[Any]:
    """`items` in a fresh random order from a numpy Generator: which call follows which changes every time,
    so warm or busy threads left by one library (onnxruntime and torch both keep spinning threads) favour
    no one."""
    return [items[i] for i in rng.permutation(len(items))]


# ---------------------------------------------------------------------------------------------------------
# Memory


def ru_maxrss_mb() -> float:
    """This process's peak RSS from getrusage; on Linux it starts at the parent's peak (see memory_now)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20  # macOS reports bytes


def memory_now() -> dict[str, float]:
    """This process's memory in MiB from /proc/self/status (Linux; NaN elsewhere): resident total,
    anonymous and file-backed (mmapped weights are file-backed), and the peak resident (VmHWM), which
    unlike ru_maxrss starts from zero at exec."""
    names = {"VmRSS": "rss_mb", "RssAnon": "anon_mb", "RssFile": "file_mb", "VmHWM": "peak_mb"}
    memory = dict.fromkeys(names.values(), float("nan"))
    try:
        for entry in Path("/proc/self/status").read_text().splitlines():
            key, _, value = entry.partition(":")
            if key in names:
                memory[names[key]] = int(value.split()[0]) / 1024
    except (OSError, ValueError):
        pass
    memory["ru_maxrss_mb"] = ru_maxrss_mb()
    return memory


# ---------------------------------------------------------------------------------------------------------
# The machine, the checkout and the run's record


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def git(*command: str) -> str:
    """stdout of a read-only git command in the checkout; '' when git cannot run."""
    try:
        done = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return done.stdout
    except OSError:
        return ""


def git_commit() -> str | None:
    return git("rev-parse", "--short", "HEAD").strip() or None


def modified_tracked_files() -> list[str]:
    # Porcelain lines are "XY path": the status columns may start with a space, so no strip before [3:].
    return [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]


def package_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Installed versions from package metadata (None where missing): nothing is imported."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions


def cpu_model() -> str | None:
    try:
        for entry in Path("/proc/cpuinfo").read_text().splitlines():
            if entry.startswith("model name"):
                return entry.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def started_at() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def args_record(args: Any, leave_out: Sequence[str] = ()) -> dict[str, Any]:
    """The parsed options as JSON values (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in leave_out}


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))


def finish(results: dict[str, Any], path: Path, work: Path, keep: bool = False) -> None:
    """The end of a run, crashed or not: the working folder removed (unless kept), the results written."""
    if keep:
        log(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    write_results(path, results)
    log(f"wrote {path}")
