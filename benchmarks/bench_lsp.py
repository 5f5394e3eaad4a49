"""bottle-lsp speed on a large manifest, next to `taplo lint` with our JSON Schema, in one run.

    python benchmarks/bench_lsp.py [--agents 500] [--bottles 100] [--completions 50]

Generates a manifest with 500 agents and 100 bottles (one deliberate error, so both tools have
something to report), then measures:

* bottle-lsp, cold: process start + initialize + didOpen until the first publishDiagnostics;
* bottle-lsp, warm: didOpen of a fresh copy until its diagnostics (median of 5);
* bottle-lsp completion latency at agent `bottle = "…"` values, keys and enum values;
* `taplo lint --schema <bottle-engine schema>` on the same file (median of 3 runs): the cold
  baseline, with the schema-driven TOML tool editors already use.

`@taplo/cli` is installed with npm into a cache directory on first use
(`$BOTTLE_BENCH_DIR`, default: the platform cache dir + /bench). Nothing leaves this machine
except that one npm install.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from bottle_engine import state

TAPLO_PACKAGE = "@taplo/cli@0.7.0"


def generate_manifest(agents: int, bottles: int) -> str:
    """A realistic large manifest: every bottle with egress, a secret and a git upstream."""
    parts = []
    for index in range(agents):
        parts.append(
            f'[agents.agent{index}]\nbottle = "bottle{index % bottles}"\n'
            f'command = ["claude", "--model", "sonnet"]\nskills = ["pdf"]\ncopy_cwd = true\n'
        )
    for index in range(bottles):
        backend = "dockr" if index == bottles - 1 else "docker"  # the one deliberate error
        parts.append(
            f'[bottles.bottle{index}]\nbackend = "{backend}"\nruntime = "auto"\n'
            f'memory = "4g"\ncpus = 2\nenv = {{ LANG = "C.UTF-8" }}\n\n'
            f"[bottles.bottle{index}.egress]\n"
            'allow = ["api.anthropic.com", "*.npmjs.org", "pypi.org:443", '
            f'"host{index}.example"]\n\n'
            f"[bottles.bottle{index}.secrets.ANTHROPIC_API_KEY]\n"
            f'from_env = "ANTHROPIC_API_KEY"\nhosts = ["api.anthropic.com"]\n\n'
            f"[[bottles.bottle{index}.git]]\n"
            f'name = "origin"\nurl = "ssh://git@example.invalid/me/repo{index}.git"\n'
            f'push_branches = ["bot/*"]\n'
        )
    return "\n".join(parts)


class TimedClient:
    """An LSP client that timestamps each publishDiagnostics as it arrives."""

    def __init__(self) -> None:
        self.client = LanguageClient(converter_factory=default_converter)
        self.arrivals: dict[str, tuple[float, int]] = {}
        self.changed = asyncio.Event()

        def publish(params: types.PublishDiagnosticsParams) -> None:
            self.arrivals[params.uri] = (time.perf_counter(), len(params.diagnostics))
            self.changed.set()

        register_lsp_features(
            self.client,
            {**DEFAULT_CLIENT_FEATURES, types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: publish},
        )

    async def start(self, cwd: Path) -> None:
        await self.client.start_io(sys.executable, "-m", "bottle_lsp", cwd=str(cwd))
        await self.client.initialize_session(
            types.InitializeParams(
                capabilities=client_capabilities("visual-studio-code"),
                root_uri=cwd.as_uri(),
                initialization_options={"approvals": {"poll": False}},
            )
        )

    async def open_and_wait(self, path: Path, text: str) -> tuple[float, int]:
        """didOpen, then the seconds until this document's diagnostics and their count."""
        uri = path.as_uri()
        started = time.perf_counter()
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="toml", version=1, text=text
                )
            )
        )
        while uri not in self.arrivals:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), timeout=120)
        arrived, count = self.arrivals[uri]
        return arrived - started, count

    async def stop(self) -> None:
        await self.client.shutdown_session()
        await self.client.stop()  # type: ignore[no-untyped-call]


def completion_points(text: str) -> list[tuple[str, types.Position]]:
    """Positions spread over the file: an agent's bottle value, a bottle key, an enum value."""
    lines = text.split("\n")
    points: list[tuple[str, types.Position]] = []
    for number, line in enumerate(lines):
        if line.startswith('bottle = "'):
            points.append(("bottle name", types.Position(line=number, character=10)))
        elif line.startswith("runtime = "):
            points.append(("enum value", types.Position(line=number, character=11)))
        elif line.startswith("cpus = "):
            points.append(("key", types.Position(line=number, character=2)))
    return points


async def measure_lsp(directory: Path, text: str, completions: int) -> dict[str, Any]:
    timed = TimedClient()
    cold_start = time.perf_counter()
    await timed.start(directory)
    initialized = time.perf_counter() - cold_start
    first, count = await timed.open_and_wait(directory / "bottle.toml", text)
    cold = time.perf_counter() - cold_start
    warm = []
    for copy in range(5):
        folder = directory / f"copy{copy}"
        folder.mkdir()
        (folder / "Dockerfile").write_text("FROM scratch\n")
        seconds, _ = await timed.open_and_wait(folder / "bottle.toml", text)
        warm.append(seconds)
    uri = (directory / "bottle.toml").as_uri()
    by_kind: dict[str, list[types.Position]] = {}
    for kind, position in completion_points(text):
        by_kind.setdefault(kind, []).append(position)
    share = max(1, completions // len(by_kind))
    sample = [
        (kind, positions[index * len(positions) // share])
        for kind, positions in by_kind.items()
        for index in range(min(share, len(positions)))
    ]
    latencies: dict[str, list[float]] = {}
    for kind, position in sample:
        started = time.perf_counter()
        result = await timed.client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=position
            )
        )
        latencies.setdefault(kind, []).append(time.perf_counter() - started)
        assert isinstance(result, types.CompletionList) and result.items, (kind, position)
    await timed.stop()
    return {
        "initialize": initialized,
        "first_diagnostics": first,
        "diagnostics": count,
        "cold": cold,
        "warm": statistics.median(warm),
        "completion": latencies,
    }


def taplo_binary() -> Path:
    """`taplo` from npm's @taplo/cli, installed once into the bench cache dir."""
    root = Path(os.environ.get("BOTTLE_BENCH_DIR") or state.cache_dir() / "bench") / "taplo"
    binary = root / "node_modules" / ".bin" / "taplo"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to install @taplo/cli for the baseline")
    staging = Path(
        tempfile.mkdtemp(prefix="taplo-", dir=root.parent if root.parent.exists() else None)
    )
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(staging), TAPLO_PACKAGE],
        check=True,
        capture_output=True,
    )
    root.parent.mkdir(parents=True, exist_ok=True)
    staging.replace(root)  # installed completely, or not at all
    return binary


def measure_taplo(directory: Path, runs: int) -> dict[str, Any]:
    binary = taplo_binary()
    schema = directory / "bottle.schema.json"
    schema.write_text(
        subprocess.run(
            [sys.executable, "-m", "bottle_engine", "schema"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    times = []
    errors = 0
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            [str(binary), "lint", "--schema", schema.as_uri(), "bottle.toml"],
            cwd=directory,
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - started)
        errors = done.stderr.count("error:")
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout
    return {"lint": statistics.median(times), "errors": errors, "version": version.strip()}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--bottles", type=int, default=100)
    parser.add_argument("--completions", type=int, default=50)
    parser.add_argument("--taplo-runs", type=int, default=3)
    args = parser.parse_args()
    text = generate_manifest(args.agents, args.bottles)
    with tempfile.TemporaryDirectory(prefix="bench-lsp-") as temporary:
        directory = Path(temporary)
        (directory / "bottle.toml").write_text(text)
        (directory / "Dockerfile").write_text("FROM scratch\n")
        lsp = asyncio.run(measure_lsp(directory, text, args.completions))
        taplo = measure_taplo(directory, args.taplo_runs)
    print(
        f"manifest: {args.agents} agents, {args.bottles} bottles, "
        f"{text.count(chr(10)) + 1} lines, {len(text) // 1024} KiB"
    )
    print(f"bottle-lsp start + initialize           {ms(lsp['initialize'])}")
    first = ms(lsp["first_diagnostics"])
    print(f"bottle-lsp didOpen -> first diagnostics  {first}  ({lsp['diagnostics']} diagnostic)")
    print(f"bottle-lsp cold (process -> diagnostics) {ms(lsp['cold'])}")
    print(f"bottle-lsp warm didOpen -> diagnostics   {ms(lsp['warm'])}  (median of 5)")
    for kind, latencies in lsp["completion"].items():
        ordered = sorted(latencies)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        print(
            f"bottle-lsp completion, {kind:<12}     {ms(statistics.median(latencies))} median, "
            f"{ms(p95).strip()} p95 (n={len(latencies)})"
        )
    print(
        f"taplo lint --schema ({taplo['version']})  {ms(taplo['lint'])}  "
        f"({taplo['errors']} error lines, median of {args.taplo_runs})"
    )
    print(f"ratio taplo lint / bottle-lsp cold       {taplo['lint'] / lsp['cold']:8.2f}x")
    print(f"ratio taplo lint / bottle-lsp warm       {taplo['lint'] / lsp['warm']:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
