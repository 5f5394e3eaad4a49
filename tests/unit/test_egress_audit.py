"""The audit log reader behind `bottle-engine logs SLUG --egress [-f]`."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from bottle_engine.bundle.audit import AuditEntry, AuditLog, read_audit


def entry(host: str, decision: str = "allow") -> AuditEntry:
    return AuditEntry(
        time="2026-01-01T00:00:00.000+00:00",
        method="GET",
        host=host,
        port=443,
        decision="allow" if decision == "allow" else "deny",
        rule="example.com",
        reason="test",
        kind="http",
        status=200,
        bytes_sent=10,
        bytes_received=20,
        duration_ms=1.5,
    )


def test_entries_round_trip_in_order(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "egress.jsonl")
    for host in ("a.example.com", "b.example.com"):
        log.write(entry(host))
    log.close()
    entries = list(read_audit(tmp_path / "egress.jsonl"))
    assert entries == [entry("a.example.com"), entry("b.example.com")]
    assert entries[0].bytes == 30


def test_missing_log_reads_as_empty(tmp_path: Path) -> None:
    assert list(read_audit(tmp_path / "none.jsonl")) == []


def test_a_line_cut_short_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "egress.jsonl"
    path.write_text(entry("a.example.com").to_json() + "\n" + '{"time": "x", "meth')
    assert [e.host for e in read_audit(path)] == ["a.example.com"]


def test_follow_waits_for_the_file_and_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "egress.jsonl"
    stop = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        for item in read_audit(path, follow=True, poll_seconds=0.02, stop=stop):
            seen.append(item.host)
            if len(seen) == 3:
                stop.set()

    thread = threading.Thread(target=reader)
    thread.start()
    log = AuditLog(path)
    log.write(entry("a.example.com"))
    with path.open("ab") as handle:  # a line written in two pieces is read once, whole
        line = (entry("b.example.com").to_json() + "\n").encode()
        handle.write(line[:10])
        handle.flush()
        handle.write(line[10:])
    log.write(entry("c.example.com", "deny"))
    thread.join(timeout=10)
    stop.set()
    log.close()
    assert seen == ["a.example.com", "b.example.com", "c.example.com"]


def test_follow_rereads_a_truncated_log(tmp_path: Path) -> None:
    path = tmp_path / "egress.jsonl"
    path.write_text(
        entry("old-1.example.com").to_json() + "\n" + entry("old-2.example.com").to_json() + "\n"
    )
    stop = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        for item in read_audit(path, follow=True, poll_seconds=0.02, stop=stop):
            seen.append(item.host)
            if item.host == "new.example.com":
                stop.set()

    thread = threading.Thread(target=reader)
    thread.start()
    while len(seen) < 2:
        thread.join(timeout=0.02)
    path.write_text(entry("new.example.com").to_json() + "\n")
    thread.join(timeout=10)
    stop.set()
    assert seen == ["old-1.example.com", "old-2.example.com", "new.example.com"]


def _entry(**changes: object) -> AuditEntry:
    fields: dict[str, object] = dict(
        time="t",
        method="GET",
        host="h",
        port=80,
        decision="deny",
        rule="r",
        reason="x",
        kind="http",
    )
    fields.update(changes)
    return AuditEntry(**fields)  # type: ignore[arg-type]


def test_every_text_field_is_capped_with_a_marker(tmp_path: Path) -> None:
    from bottle_engine.bundle.audit import FIELD_LIMIT

    line = _entry(method="M" * 100_000, host="h" * 5000, reason="r" * 5000).to_json()
    assert len(line) < 4096
    parsed = json.loads(line)
    assert parsed["method"].startswith("M" * FIELD_LIMIT)
    assert parsed["method"].endswith(f"[{100_000 - FIELD_LIMIT} more characters cut]")
    # Read back (the reader caps too: the bundle writes the file), a cut field is as written.
    assert AuditEntry.from_dict(parsed).to_json() == line


def test_the_log_rotates_at_its_size_cap_and_keeps_a_bounded_number_of_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "egress.jsonl"
    log = AuditLog(path, max_bytes=2000, backups=2)
    for index in range(100):
        log.write(_entry(reason=f"entry {index}"))
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["egress.jsonl", "egress.jsonl.1", "egress.jsonl.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    newest = list(read_audit(path))
    assert newest[-1].reason == "entry 99"
