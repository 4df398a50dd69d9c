"""Rates timed side by side: interleaved repeats (A, B, A, B, ...), every repeat kept, reported
as min / median / max, so that a table says how sure it is and not only where its middle is."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence


def spread(values: Sequence[float], digits: int = 4) -> dict:
    """{"min", "median", "max", "repeats"} of one measure's repeats."""
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
        "repeats": [round(v, digits) for v in values],
    }


def alternate(fns: Mapping[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each fn (which returns a rate) `repeats` times, interleaved, after one untimed warm-up
    call each; every rate per fn, in the order measured."""
    for fn in fns.values():
        fn()  # warm-up: allocator, oneDNN kernels, file cache
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            rates[name].append(fn())
    return rates


def medians(rates: Mapping[str, Sequence[float]]) -> dict[str, float]:
    return {name: statistics.median(r) for name, r in rates.items()}


def timed(fn: Callable[[], object], work: float) -> Callable[[], float]:
    """A rate: `work` units per second of one call of fn."""

    def rate() -> float:
        start = time.perf_counter()
        fn()
        return work / (time.perf_counter() - start)

    return rate


def range_text(s: Mapping[str, float], fmt: str = ".3f") -> str:
    """ "1.234 [1.100-1.300]": median and range of a spread."""
    return f"{s['median']:{fmt}} [{s['min']:{fmt}}-{s['max']:{fmt}}]"
