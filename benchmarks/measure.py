"""What the benchmarks share: timing a call, the median of each named side, and the result
printed for scripts (`--json`) or for people.

The benchmarks run as scripts (`python benchmarks/bench_pack.py`) and put the repository root
on sys.path first, so they import this as `benchmarks.measure`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any


def arguments(doc: str, *, repeat: int) -> argparse.ArgumentParser:
    """The command line every benchmark starts from: described by the first paragraph of its
    docstring `doc`, with `--repeat` (rounds, the median kept) and `--json` (for scripts)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=repeat, help="rounds (the median is kept)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def timed(action: Callable[[], object]) -> float:
    """Seconds `action` took (perf_counter: monotonic, the finest clock there is)."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def medians(runs: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The median of each named side's samples: one slow round on a shared machine moves it
    less than it moves a mean."""
    return {name: statistics.median(samples) for name, samples in runs.items()}


def median_lines(
    median: Mapping[str, float], *, repeat: int, show: Callable[[float], str], width: int
) -> Iterator[str]:
    """For people: a line per side, its name right-aligned in `width`, its median as `show`
    writes it, and how many rounds it is the median of."""
    for name, seconds in median.items():
        yield f"{name:>{width}}: {show(seconds)} (median of {repeat})"


def print_result(result: Mapping[str, Any], *, as_json: bool, lines: Iterable[str]) -> None:
    """The result as JSON (`--json`: for scripts) or, for people, `lines`."""
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for line in lines:
        print(line)
