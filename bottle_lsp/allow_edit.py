""" "Allow" in the Egress view: add a refused host to its bottle's `allow` in bottle.toml.

Pure: manifest text in, the lines to replace out. tomlkit keeps the person's comments, order
and array style; the edit covers whole lines only, so it means the same in every position
encoding. The running bottle is not changed: the person saves, and the next launch asks them to
trust the widened manifest (`trust_store`), as for any other edit.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import InlineTable

from bottle_engine.errors import BottleError
from bottle_engine.manifest.egress_rules import EgressRuleError, parse_egress_rule
from bottle_engine.manifest.source import load_toml
from bottle_lsp.positions import lsp_lines


@dataclass(frozen=True)
class LineEdit:
    """Replace lines [start, end) of the text with `text` (whole lines, each ending in \\n)."""

    start: int
    end: int
    text: str


def with_allowed(text: str, bottle: str, entry: str) -> str | None:
    """`text` with `entry` appended to `[bottles.<bottle>.egress] allow`; None when it is there.

    `entry` comes from the audit log, which the agent writes: only an exact host name (with an
    optional port) is accepted, never a wildcard, IP or CIDR, whatever the log says."""
    try:
        rule = parse_egress_rule(entry)
    except EgressRuleError as exc:
        raise BottleError(f"cannot allow '{entry}': {exc}") from exc
    if rule.kind != "host" or rule.text != entry.strip():
        raise BottleError(
            f"cannot allow '{entry}' from the editor: only an exact host name is added",
            fix="edit `allow` in bottle.toml by hand",
        )
    try:
        document = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise BottleError(
            f"bottle.toml cannot be read ({exc})", fix="correct it, then Allow again"
        ) from exc
    bottles = document.get("bottles")
    table = bottles.get(bottle) if isinstance(bottles, dict) else None
    if not isinstance(table, dict):
        raise BottleError(
            f"bottle.toml has no [bottles.{bottle}] (the bottle this one was launched with)",
            fix=f'add [bottles.{bottle}.egress] allow = ["{entry}"] by hand',
        )
    egress = _child(table, "egress", tomlkit.table)
    allow = _child(egress, "allow", tomlkit.array)
    if not isinstance(allow, list):
        raise BottleError(
            f"bottles.{bottle}.egress.allow is not an array", fix="correct it, then Allow again"
        )
    if any(isinstance(item, str) and item.strip().lower() == entry.lower() for item in allow):
        return None
    allow.append(entry)
    new = tomlkit.dumps(document)
    _check_only_added(text, new, bottle, entry)
    return new


def _check_only_added(old: str, new: str, bottle: str, entry: str) -> None:
    """Refuse an edit that means more than `entry` added to this bottle's `allow`: tomlkit
    writes some layouts back elsewhere (a table under a dotted key lands at the top level)."""
    try:
        expected = load_toml(old)
        egress = expected["bottles"][bottle].setdefault("egress", {})
        egress["allow"] = [*egress.get("allow", []), entry]
        same = load_toml(new) == expected
    except (tomllib.TOMLDecodeError, RecursionError, KeyError, TypeError, AttributeError):
        same = False
    if not same:
        raise BottleError(
            f"cannot add '{entry}' to bottles.{bottle}.egress.allow in this layout of bottle.toml",
            fix=f'add "{entry}" to `allow` of [bottles.{bottle}.egress] by hand',
        )


def _child(table: Any, key: str, make: Any) -> Any:
    if key not in table:
        # `bottles = { web = { ... } }`: a table inside an inline table must be inline too.
        inline = isinstance(table, InlineTable) and make is tomlkit.table
        made = tomlkit.inline_table() if inline else make()
        table[key] = made
        # tomlkit does not find a table just added under a dotted key (`web.backend = ...`)
        return made
    value = table[key]
    if key == "egress" and not isinstance(value, dict):
        raise BottleError(f"'egress' of this bottle is not a table: {value!r}")
    return value


def line_edit(old: str, new: str) -> LineEdit:
    """The smallest run of whole lines that turns `old` into `new`, counted as the editor counts
    them (`lsp_lines`: with `str.splitlines`, U+2028 in a comment moved the edit further down,
    into another array)."""
    before = lsp_lines(old)
    after = lsp_lines(new)
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    tail = 0
    while (
        tail < min(len(before), len(after)) - start
        and before[len(before) - 1 - tail] == after[len(after) - 1 - tail]
    ):
        tail += 1
    return LineEdit(start, len(before) - tail, "".join(after[start : len(after) - tail]))
