"""Attacks on the audit log's reader (the editor's Egress view follows it in a thread of the
language server; `logs --egress` reads it): the log lives in the bottle's state dir, which its
bundle writes, and the agent chooses what the proxy logs. The reader must stay bounded and miss
nothing the proxy wrote."""

from __future__ import annotations

import os
import threading
import tracemalloc
from pathlib import Path

import pytest

from bottle_engine.bundle.audit import MAX_UNREAD_BYTES, AuditEntry, AuditLog, read_audit
from bottle_lsp.egress_view import aggregate


def entry(number: int, decision: str = "deny") -> AuditEntry:
    return AuditEntry(
        time=f"2026-01-01T00:00:{number % 60:02d}.000+00:00",
        method="GET",
        host=f"h{number}.test",
        port=443,
        decision="allow" if decision == "allow" else "deny",
        rule="default-deny",
        reason="x" * 200,
        kind="http",
    )


def assert_read_in_bounded_memory(path: Path) -> None:
    """The log at `path` holds one entry (h1.test), found while holding under 8 MiB at once."""
    tracemalloc.start()
    try:
        found = list(read_audit(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e.host for e in found] == ["h1.test"]
    assert peak < 8 * 1024 * 1024, f"the reader held {peak} bytes at once"


def test_a_line_without_an_end_does_not_take_the_readers_memory(tmp_path: Path) -> None:
    """A bundle (it parses the agent's traffic) writing 32 MiB with no newline, then a real
    entry: the reader skips the junk in bounded memory and still reads the entry."""
    path = tmp_path / "egress.jsonl"
    with path.open("wb") as out:
        block = b"x" * (1024 * 1024)
        for _ in range(32):
            out.write(block)
        out.write(b"\n" + entry(1).to_json().encode() + b"\n")
    del block
    assert_read_in_bounded_memory(path)


def test_a_line_nested_past_the_parsers_depth_is_skipped(tmp_path: Path) -> None:
    """A few kilobytes of brackets raise RecursionError in the JSON parser: one such line
    stopped `logs --egress` and the editor's view at the entry before it."""
    path = tmp_path / "egress.jsonl"
    path.write_text("[" * 5_000 + "]" * 5_000 + "\n" + entry(1).to_json() + "\n")
    assert [e.host for e in read_audit(path)] == ["h1.test"]


def test_a_sparse_giant_log_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """`truncate -s 1G egress.jsonl` costs the bundle no disk; the reader must not allocate it."""
    path = tmp_path / "egress.jsonl"
    with path.open("wb") as out:
        out.truncate(256 * 1024 * 1024)
        out.seek(0, os.SEEK_END)
        out.write(b"\n" + entry(1).to_json().encode() + b"\n")
    assert_read_in_bounded_memory(path)


def test_of_a_log_larger_than_the_writer_leaves_only_the_tail_is_read(tmp_path: Path) -> None:
    """A sparse file of a terabyte (`truncate -s 1T`) took the reader about 45 minutes of a
    core, and `truncate -s 8E` for ever: `logs --egress` hung, and the editor's view spun.
    The writer rotates at MAX_LOG_BYTES, so a larger file's head is no log of ours."""
    path = tmp_path / "egress.jsonl"
    with path.open("wb") as out:
        out.write(entry(1).to_json().encode() + b"\n")
        out.truncate(MAX_UNREAD_BYTES * 64)  # a GiB: the old reader read all of it
        out.seek(0, os.SEEK_END)
        out.write(b"\n" + entry(2).to_json().encode() + b"\n")
    assert [e.host for e in read_audit(path)] == ["h2.test"]


def test_rotation_between_two_reads_loses_no_entry(tmp_path: Path) -> None:
    """The agent can make the proxy rotate the log at will (many refused requests): what the
    follower had not read of the old file when it was rotated must still be read, or a burst
    of requests hides from the Egress view."""
    path = tmp_path / "egress.jsonl"
    log = AuditLog(path, max_bytes=4000, backups=2)
    for number in range(3):
        log.write(entry(number))
    stop = threading.Event()
    seen: list[str] = []
    first_three = threading.Event()

    def reader() -> None:
        for item in read_audit(path, follow=True, poll_seconds=0.05, stop=stop):
            seen.append(item.host)
            if len(seen) == 3:
                first_three.set()
            if item.host == "h12.test":
                stop.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert first_three.wait(10)
    # Written in one go (the reader polls): the file rotates once in the middle.
    for number in range(3, 13):
        log.write(entry(number))
    assert (tmp_path / "egress.jsonl.1").exists()
    thread.join(timeout=10)
    stop.set()
    log.close()
    assert seen == [f"h{number}.test" for number in range(13)]


def test_the_view_counts_every_refusal_across_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "egress.jsonl"
    log = AuditLog(path, max_bytes=4000, backups=2)
    stop = threading.Event()
    entries: list[AuditEntry] = []

    def reader() -> None:
        for item in read_audit(path, follow=True, poll_seconds=0.05, stop=stop):
            entries.append(item)
            if item.host == "h19.test":
                stop.set()

    log.write(entry(0))
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    while not entries:
        thread.join(timeout=0.02)
    for number in range(1, 20):
        log.write(entry(number))
    thread.join(timeout=10)
    stop.set()
    log.close()
    assert aggregate(entries).denied == 20


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-fifo", "directory"])
def test_a_log_that_is_not_a_file_reads_as_empty_and_never_blocks(
    tmp_path: Path, kind: str
) -> None:
    """The bundle can put anything at the log's name; opening a FIFO would block the reader
    (and `logs --egress`) for ever."""
    path = tmp_path / "egress.jsonl"
    if kind == "directory":
        path.mkdir()
    else:
        fifo = tmp_path / "fifo" if kind == "symlink-to-fifo" else path
        os.mkfifo(fifo)
        if kind == "symlink-to-fifo":
            path.symlink_to(fifo)
    result: list[list[AuditEntry]] = []
    thread = threading.Thread(target=lambda: result.append(list(read_audit(path))), daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert result == [[]]


def test_a_symlinked_log_is_not_followed_to_another_file(tmp_path: Path) -> None:
    """A log the bundle replaced by a link to a host file (here: another bottle's log) is not
    read: the person would see another bottle's traffic as this one's."""
    other = tmp_path / "other.jsonl"
    other.write_text(entry(7).to_json() + "\n")
    path = tmp_path / "egress.jsonl"
    path.symlink_to(other)
    assert list(read_audit(path)) == []


@pytest.mark.parametrize(
    "field",
    ['"port": 1e999', '"port": 443, "duration_ms": NaN', '"port": 443, "duration_ms": "inf"'],
)
def test_a_number_no_entry_holds_is_skipped(tmp_path: Path, field: str) -> None:
    """`"port": 1e999` parses as infinity and int() of it raised OverflowError: one such line
    ended `logs --egress` with a traceback and the editor's view of the log for the session.
    NaN and infinite durations were read, and printed as `NaN` that strict JSON readers refuse."""
    path = tmp_path / "egress.jsonl"
    bad = '{"time": "t", "method": "GET", "host": "x.test", "decision": "deny", ' + field + "}"
    path.write_text(bad + "\n" + entry(1).to_json() + "\n")
    assert [e.host for e in read_audit(path)] == ["h1.test"]
