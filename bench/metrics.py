"""Ranking metrics with binary relevance, and small timing helpers."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any


def dcg(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    return sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(ranked[:k], start=1) if item in relevant)


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """DCG of the top k over the DCG of an ideal ranking (all relevant items first); 0 if none relevant."""
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg(ranked, relevant, k) / ideal if ideal else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


def mrr_at_k(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    for rank, item in enumerate(ranked[:k], start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


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


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of a - b over paired items, with a 95% percentile bootstrap interval."""
    import numpy as np

    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def repeat_timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Seconds of each of `repeats` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        seconds, result = timed(fn)
        times.append(seconds)
    return times, result
