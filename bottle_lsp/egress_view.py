"""What the editor's Egress view shows of one bottle: its audit log folded into one row per
host, port and decision. Pure: entries in, rows out; `activity` does the following and pushing.

The agent chooses the host names (one per request if it likes), so the fold is bounded: past
`MAX_ROWS` distinct rows, further entries are only counted (`hidden`), and every text sent to
the editor goes through `safe_editor_text`. Which asks of a row wait for a person is read from
the approvals store, never kept from the log: a taken-over bundle logs asks without end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bottle_engine.approvals import egress_question
from bottle_engine.bundle.audit import AuditEntry
from bottle_engine.display import safe_editor_text
from bottle_engine.manifest.egress_rules import DEFAULT_PORTS, EgressRuleError, parse_egress_rule

MAX_ROWS = 300
HOST_LIMIT = 260  # a DNS name is at most 253 characters; longer is the agent's doing
TEXT_LIMIT = 400
# Refusals that listing the host name in `allow` would have let through. The others (an IP
# literal, an address check, a name mismatch, a secret sent to the wrong host) stay refusals.
ALLOWABLE_RULES = frozenset({"default-deny", "ask-denied", "ask-timed-out", "ask-refused"})
DECISIONS = ("deny", "ask", "allow")  # the order the view shows the groups in


@dataclass
class HostRow:
    """Requests of one bottle to `host`:`port` that got `decision` ("allow", "deny", "ask")."""

    decision: str
    host: str
    port: int
    count: int = 0
    bytes: int = 0
    last: str = ""  # ISO 8601 time of the newest entry
    rule: str = ""
    reason: str = ""

    @property
    def allow_entry(self) -> str | None:
        """The `allow` entry that would have let this refused request through, if one would."""
        if self.decision != "deny" or self.rule not in ALLOWABLE_RULES:
            return None
        return allow_entry(self.host, self.port)

    def to_json(self, pending: Mapping[str, str] | None = None) -> dict[str, Any]:
        """For the editor: every text made safe; an ask row offers the requests `pending` (those
        still waiting in the approvals store, by id: the key of their question) holds about its
        host:port. Not the ids the log names: an ask may be answered from the CLI, an id logged
        under one host may name a request about another (the bundle writes both the log and
        the store), and a taken-over bundle logs new ids without end, which the view kept."""
        question = egress_question(self.host, self.port)
        asked = [
            request_id
            for request_id, asks in (pending or {}).items()
            if self.decision == "ask" and asks == question
        ]
        return {
            "decision": self.decision,
            "host": safe_editor_text(self.host, HOST_LIMIT),
            "port": self.port,
            "count": self.count,
            "bytes": self.bytes,
            "last": safe_editor_text(self.last, 40),
            "rule": safe_editor_text(self.rule, TEXT_LIMIT),
            "reason": safe_editor_text(self.reason, TEXT_LIMIT),
            "pending": [safe_editor_text(i, 80) for i in asked],
            "allow": self.allow_entry,
        }


def allow_entry(host: str, port: int) -> str | None:
    """`host` (with `:port` unless it is a default port) when that is an exact host-name entry
    of the allowlist; None for anything else (an IP, a wildcard, a malformed name)."""
    text = host if port in DEFAULT_PORTS else f"{host}:{port}"
    try:
        rule = parse_egress_rule(text)
    except EgressRuleError:
        return None
    return rule.text if rule.kind == "host" and rule.host == host else None


@dataclass
class EgressActivity:
    """The fold of one bottle's audit log so far; `add` one entry at a time (logs are long)."""

    rows: dict[tuple[str, str, int], HostRow] = field(default_factory=dict)
    hidden: int = 0  # entries past MAX_ROWS distinct rows
    denied: int = 0  # refused requests (asks not counted: their outcome is its own entry)
    allowed: int = 0
    max_rows: int = MAX_ROWS

    def add(self, entry: AuditEntry) -> None:
        host = entry.host.lower().rstrip(".")
        if entry.kind == "ask":
            self._add_ask(entry, host)
            return
        # A tunnel is one request written twice: "open" when it starts, "close" with its bytes.
        starts = entry.stage != "close"
        if starts:
            if entry.decision == "allow":
                self.allowed += 1
            else:
                self.denied += 1
        row = self._row(entry.decision, host, entry.port)
        if row is None:
            return
        row.count += 1 if starts else 0
        row.bytes += entry.bytes
        row.last = max(row.last, entry.time)
        row.rule, row.reason = entry.rule, entry.reason

    def _add_ask(self, entry: AuditEntry, host: str) -> None:
        row = self._row("ask", host, entry.port)
        if row is None:
            return
        row.last = max(row.last, entry.time)
        if entry.stage == "asked":
            row.count += 1
            row.rule, row.reason = entry.rule, entry.reason
        else:  # answered: the request's own entry (allow or deny) follows
            by = f" (by {entry.answered_by})" if entry.answered_by else ""
            row.rule, row.reason = entry.rule, f"{entry.decision}{by}: {entry.reason}"

    def _row(self, decision: str, host: str, port: int) -> HostRow | None:
        key = (decision, host, port)
        row = self.rows.get(key)
        if row is None:
            if len(self.rows) >= self.max_rows:
                self.hidden += 1
                return None
            row = self.rows[key] = HostRow(decision, host, port)
        return row

    def sorted_rows(self) -> list[HostRow]:
        """Grouped by decision (refusals first), newest first within a group."""
        order = {decision: index for index, decision in enumerate(DECISIONS)}
        by_time = sorted(self.rows.values(), key=lambda r: (r.last, r.host, r.port), reverse=True)
        return sorted(by_time, key=lambda r: order.get(r.decision, len(order)))

    def to_json(self, pending: Mapping[str, str] | None = None) -> dict[str, Any]:
        return {
            "hosts": [row.to_json(pending) for row in self.sorted_rows()],
            "hidden": self.hidden,
            "denied": self.denied,
            "allowed": self.allowed,
        }


def aggregate(entries: Iterable[AuditEntry], max_rows: int = MAX_ROWS) -> EgressActivity:
    """The fold of `entries` (oldest first)."""
    activity = EgressActivity(max_rows=max_rows)
    for entry in entries:
        activity.add(entry)
    return activity
