"""What a hostile input costs the readers it is aimed at, against an ordinary input of the size.

The language server re-reads the workspace's bottle.toml (which the agent can write) on every
keystroke, and the push gate scans every line the agent pushes. Each case times the reader on
an attack that once cost it seconds (the figure is in its line) and on an input of the same
size that it reads in one pass; a linear reader keeps their ratio small. The tests check that
the new readers answer as the old ones did (tests/unit/test_lsp_costs.py, test_gitgate_scan.py);
the time goes here, not in the tests.

    python benchmarks/bench_hostile_inputs.py [--repeat 5] [--json]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.measure import arguments, medians, print_result, timed
from bottle_engine.bundle.gitgate.scan import KnownSecret, Scanner
from bottle_engine.manifest.source import Position
from bottle_lsp.analysis import analyze
from bottle_lsp.completion import completions
from bottle_lsp.hover import hover
from bottle_lsp.outline import outline
from bottle_lsp.symbols import document_symbols, folding_ranges

COMMIT = "0" * 40

Case = tuple[str, Callable[[], object], Callable[[], object]]


def _end(text: str) -> Position:
    lines = text.split("\n")
    return Position(len(lines) - 1, len(lines[-1]))


def cases() -> list[Case]:
    word = analyze("[bottles.a]\nimage = " + "a" * 16_000 + "!")
    word_base = analyze("[bottles.a]\nimage = " + "a!" * 8_000)
    quotes = analyze('x = "' + '\\"' * 16_000)
    quotes_base = analyze('x = "' + "ab" * 16_000)
    bottles = "".join(f"[bottles.b{i}]\nimage = 'x'\n[bottles.b{i}.git]\n" for i in range(3000))
    many = analyze(bottles)
    opened = outline("[bottles.a]\n" + "x = [\n" * 10_000 + "[bottles.b]\n" * 5_000)
    plain = outline("[bottles.a]\n" + "x = 1\n" * 15_000)
    scanner = Scanner([KnownSecret("plain-looking-value-42", "the bottle's secret")])
    return [
        (
            "completion after 16 000 word characters (was 0.52 s)",
            lambda: completions(word, _end(word.text)),
            lambda: completions(word_base, _end(word_base.text)),
        ),
        (
            "hover on 16 000 escaped quotes (was 3.1 s)",
            lambda: hover(quotes, Position(0, 4)),
            lambda: hover(quotes_base, Position(0, 4)),
        ),
        (
            "outline of a header of 16 000 parts (was 0.47 s)",
            lambda: outline("[" + "a." * 16_000),
            lambda: outline("[a]\n" * 16_000),
        ),
        (
            "symbols of 3 000 bottles vs reading them (was 15.6 s)",
            lambda: document_symbols(many),
            lambda: analyze(bottles),
        ),
        (
            "folding 10 000 open arrays, 5 000 headers (was 3.4 s)",
            lambda: folding_ranges(opened),
            lambda: folding_ranges(plain),
        ),
        (
            "gate: 'password' and 4 088 spaces (was 206 s)",
            lambda: scanner.blob(COMMIT, "notes.txt", b"password" + b" " * 4088 + b"\n"),
            lambda: scanner.blob(COMMIT, "notes.txt", b"password" + b"a" * 4088 + b"\n"),
        ),
    ]


def main() -> None:
    parser = arguments(__doc__, repeat=5)
    args = parser.parse_args()
    result = {}
    for name, attack, baseline in cases():
        median = medians(
            {
                "attack": [timed(attack) for _ in range(args.repeat)],
                "baseline": [timed(baseline) for _ in range(args.repeat)],
            }
        )
        result[name] = {**median, "ratio": median["attack"] / max(median["baseline"], 1e-6)}
    width = max(map(len, result))
    print_result(
        result,
        as_json=args.json,
        lines=(
            f"{name:<{width}}  attack {r['attack'] * 1000:8.2f} ms  "
            f"baseline {r['baseline'] * 1000:8.2f} ms  x{r['ratio']:.1f}"
            for name, r in result.items()
        ),
    )


if __name__ == "__main__":
    main()
