"""Attacks on what the editor's Egress view keeps of a bottle's audit log: the language server
folds the log as its bundle writes it, for as long as the bottle runs, and a bundle the agent's
traffic took over writes whatever lines it likes there (the proxy's caps are its own code)."""

from __future__ import annotations

import json
import tracemalloc

from bottle_engine.approvals import egress_question
from bottle_engine.bundle.audit import AuditEntry
from bottle_lsp.egress_view import EgressActivity
from tests.audit_entries import audit_entry


def asked_line(request_id: str) -> bytes:
    """An "asked" line for ask.test under `request_id`, as the reader gets it from the file."""
    fields = audit_entry("ask.test", "ask", kind="ask", stage="asked", request_id=request_id)
    return json.dumps({**json.loads(fields.to_json()), "request_id": request_id}).encode()


def test_asks_logged_without_end_take_bounded_memory_in_the_view() -> None:
    """The taken-over bundle logs ask after ask for one host, each under a new id of 1 KiB (the
    reader takes lines up to 256 KiB, and the proxy's 512-character cap is the bundle's own
    code), and keeps its files small by rotating them: the view held every id, for the
    bottle's life, and looked each new one up among all of them."""
    activity = EgressActivity()
    tracemalloc.start()
    try:
        for number in range(20_000):
            activity.add(AuditEntry.from_dict(json.loads(asked_line(f"{number:08x}" * 128))))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 1024 * 1024, f"the view holds {held} bytes after 20,000 asks"
    # What the row offers to answer is what the approvals store holds open for its host.
    pending = {"0badcafe": egress_question("ask.test", 443), "feedf00d": "another question"}
    activity.add(audit_entry("ask.test", "deny"))  # the request refused before it was asked
    rows = {row["decision"]: row for row in activity.to_json(pending)["hosts"]}
    assert (rows["ask"]["count"], rows["ask"]["pending"]) == (20_000, ["0badcafe"])
    assert rows["deny"]["pending"] == []


def test_rows_of_lines_as_long_as_the_reader_takes_hold_what_is_shown_of_them() -> None:
    """The view keeps a row per host (300 at most) with its rule and reason; the taken-over
    bundle writes each line as long as the reader takes (256 KiB, where the proxy writes 4 KiB
    at most), with a host, rule and reason of its own: the view held all of every row's."""
    activity = EgressActivity()
    long = "x" * 80_000
    tracemalloc.start()
    try:
        for number in range(300):
            activity.add(
                audit_entry(f"{number}.{long}", "deny", rule=f"{number}{long}", reason=long)
            )
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(activity.rows) == 300
    assert held < 4 * 1024 * 1024, f"the view holds {held} bytes for 300 rows"
