"""Invariant 6 in the gate's pre-receive hook: the input receive-pack hands it is the agent's to
size. receive-pack takes as many ref updates as a push names, each name up to a pkt-line (65516
bytes), and gives the hook every one; read whole, 90 MB of them (1500 names of 60 kB, one raw
push over loopback) held 264 MB in the hook beside receive-pack's 180 MB, in the bundle's memory.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bottle_engine.bundle.config import GIT_GATE_LOG_NAME, BundleConfig, GitUpstreamConfig
from bottle_engine.bundle.gitgate import hook

MAX_REFS = 10
LONG_NAME = 60_000  # a ref name receive-pack takes (one pkt-line)
NAME = 3900  # a line within the bound (4096 bytes)
OLD, NEW = "1" * 40, "2" * 40


class RecordingStream(io.BytesIO):
    """The hook's stdin: remembers the most it was asked to hand over at once."""

    largest = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.largest = max(self.largest, len(data))
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data = super().readline(size)
        self.largest = max(self.largest, len(data))
        return data


class Stdin:
    def __init__(self, buffer: RecordingStream) -> None:
        self.buffer = buffer


def update_lines(count: int, name_bytes: int) -> bytes:
    return b"".join(
        f"{OLD} {NEW} refs/heads/agent/{i}-{'x' * name_bytes}\n".encode() for i in range(count)
    )


def run_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdin: bytes
) -> tuple[int, RecordingStream]:
    upstream = GitUpstreamConfig(
        name="origin",
        url="file:///nowhere.invalid",
        push_branches=("agent/*",),
        max_push_refs=MAX_REFS,
    )
    config = BundleConfig(
        slug="s",
        bundle_ip="127.0.0.1",
        agent_subnet="127.0.0.0/8",
        git=(upstream,),
        state_dir=str(tmp_path / "state"),
    )
    config_path = tmp_path / "bundle.json"
    config_path.write_text(config.to_json())
    stream = RecordingStream(stdin)
    monkeypatch.setattr("sys.stdin", Stdin(stream))
    monkeypatch.setenv("GIT_DIR", str(tmp_path))
    return hook.main(["pre-receive", "--config", str(config_path), "--upstream", "origin"]), stream


def test_a_push_naming_too_many_long_refs_is_never_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = MAX_REFS * 3
    code, stream = run_hook(tmp_path, monkeypatch, update_lines(refs, NAME))

    assert code == 1
    assert stream.largest <= 8 * 1024, f"the hook read {stream.largest} bytes at once"
    assert stream.tell() == len(stream.getvalue())  # receive-pack's writes all went somewhere
    err = capsys.readouterr().err
    assert f"it updates {refs} refs" in err and f"at most {MAX_REFS} refs" in err
    (entry,) = [json.loads(line) for line in (tmp_path / "state" / GIT_GATE_LOG_NAME).open()]
    assert entry["refs_total"] == refs


def test_one_line_too_long_for_any_ref_refuses_the_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Never dropped or split: a line left out would be a ref receive-pack updates unjudged."""
    lines = update_lines(1, 10) + update_lines(1, LONG_NAME) + update_lines(1, 10)
    code, stream = run_hook(tmp_path, monkeypatch, lines)

    assert code == 1
    assert stream.tell() == len(lines)
    assert "more than 4096 bytes" in capsys.readouterr().err


def test_input_within_the_bounds_is_read_whole() -> None:
    lines = update_lines(MAX_REFS, 200)
    assert hook.read_push_input(io.BytesIO(lines), MAX_REFS) == (lines.decode(), MAX_REFS)
    text, total = hook.read_push_input(io.BytesIO(lines + b"\n".join([b"x"] * 5)), MAX_REFS)
    assert (text, total) == (lines.decode(), MAX_REFS + 5)
