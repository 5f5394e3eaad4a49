"""Egress audit-log entries as the proxy writes them, for tests that feed a reader one.

A test names the host and the decision and whatever field it is about; the rest are the
plain values of an ordinary request, so one builder serves every reader's tests.
"""

from __future__ import annotations

from bottle_engine.bundle.audit import AuditEntry


def audit_entry(host: str, decision: str = "allow", **fields: object) -> AuditEntry:
    """One entry for a GET to `host` (port 443 unless given), refused by the default rule
    when `decision` is "deny", allowed by the host's own entry otherwise."""
    base: dict[str, object] = {
        "time": "2026-11-30T04:00:00.000+00:00",
        "method": "GET",
        "host": host,
        "port": 443,
        "decision": decision,
        "rule": "default-deny" if decision == "deny" else host,
        "reason": "",
        "kind": "http",
    }
    return AuditEntry.from_dict({**base, **fields})
