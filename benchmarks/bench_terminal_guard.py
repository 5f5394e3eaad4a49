"""Terminal guard throughput: the agent's terminal stream through the guard vs. a UTF-8 round trip.

What `attach`, `exec` and `logs` now do to every byte the agent writes, on three streams:

* ``tui``: lines as a TUI such as Claude Code redraws them (erase line, column, 256-colour and
  dim SGR, a glyph, text);
* ``controls``: nothing but short SGRs (every byte in a sequence; runs of ESC 7 or of
  unfinished CSIs are slower still, about 0.3 MiB/s);
* ``osc``: one unterminated OSC, dropped as it comes.

Baselines measured in the same run: decoding and re-encoding the same bytes as UTF-8 (the least
any text-aware filter does), and `display.safe_lines` (how the bundle's log is made safe).
Each is fed 64 KiB reads, as the relays read. Reports MiB/s and the guard's ratio to them.

    python benchmarks/bench_terminal_guard.py [--mib 8] [--repeat 5] [--json]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import arguments, medians, print_result, timed
from bottle_engine.display import safe_lines
from bottle_engine.terminal_guard import Mode, TerminalGuard

READ = 65536
TUI_LINE = (
    b"\x1b[2K\x1b[1G\x1b[38;5;208m\xe2\x8f\xba\x1b[39m Reading src/main.py and thinking about"
    b" the change \x1b[2m(esc to interrupt)\x1b[22m\r\n"
)


def streams(size: int) -> dict[str, bytes]:
    return {
        "tui": TUI_LINE * (size // len(TUI_LINE)),
        "controls": b"\x1b[m" * (size // 3),
        "osc": b"\x1b]52;c;" + b"A" * size,
    }


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + READ] for i in range(0, len(data), READ)]


def guard(mode: Mode) -> Callable[[list[bytes]], object]:
    def run(reads: list[bytes]) -> object:
        filtering = TerminalGuard(mode)
        return [filtering.feed(read) for read in reads]

    return run


def round_trip(reads: list[bytes]) -> object:
    return [read.decode("utf-8", "replace").encode() for read in reads]


def lines_made_safe(reads: list[bytes]) -> object:
    return list(safe_lines(reads))


SIDES = {
    "guard_interactive": guard(Mode.INTERACTIVE),
    "guard_replay": guard(Mode.REPLAY),
    "utf8_round_trip": round_trip,
    "safe_lines": lines_made_safe,
}


def main() -> int:
    parser = arguments(__doc__, repeat=5)
    parser.add_argument("--mib", type=int, default=8, help="size of each stream")
    args = parser.parse_args()

    result: dict[str, object] = {"mib": args.mib, "repeat": args.repeat}
    lines = []
    for name, data in streams(args.mib << 20).items():
        reads = chunks(data)
        runs: dict[str, list[float]] = {side: [] for side in SIDES}
        for _ in range(args.repeat):
            for side, run in SIDES.items():
                runs[side].append(timed(partial(run, reads)))
        mib_per_s = {side: round(len(data) / 2**20 / s, 1) for side, s in medians(runs).items()}
        ratio = round(mib_per_s["utf8_round_trip"] / mib_per_s["guard_replay"], 1)
        result[name] = {"mib_per_s": mib_per_s, "round_trip_over_guard": ratio}
        shown = ", ".join(f"{side} {speed} MiB/s" for side, speed in mib_per_s.items())
        lines.append(f"{name:>8}: {shown}; the round trip is {ratio}x the guard")
    print_result(result, as_json=args.json, lines=lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
