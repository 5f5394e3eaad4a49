"""Code lenses above each `[agents.NAME]`: Launch (or Review changes, while the saved manifest
widens what was last trusted), and Attach / Stop for its running bottles."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from bottle_lsp.outline import Outline
from bottle_lsp.positions import line_range

LAUNCH, ATTACH, STOP = "bottle.launch", "bottle.attach", "bottle.stop"
TRUST = "bottle.trust"
RUNNING, DEGRADED, STOPPED = "running", "degraded", "stopped"


def bottle_state(status: str) -> str:
    """ "running", "degraded" or "stopped", from the engine's status text (`status.py`).

    Only "running" is running: a bottle whose bundle is down or gone ("degraded: bundle gone",
    "exited, degraded: ...") has no way out and cannot be attached to as if it worked."""
    text = status.strip().lower()
    if text == RUNNING:
        return RUNNING
    return DEGRADED if "degraded" in text else STOPPED


def is_running(record: dict[str, str]) -> bool:
    return bottle_state(record.get("status", "")) == RUNNING


def same_manifest(record: dict[str, str], manifest: Path) -> bool:
    recorded = record.get("manifest", "")
    if not recorded:
        return True
    try:
        return Path(recorded).resolve() == manifest.resolve()
    except OSError:
        return recorded == str(manifest)


def code_lenses(
    outline: Outline,
    uri: str,
    manifest: Path,
    bottles: list[dict[str, str]],
    *,
    needs_trust: bool = False,
) -> list[types.CodeLens]:
    lenses = []
    for header in outline.headers:
        if header.is_array or len(header.path) != 2 or header.path[0] != "agents":
            continue
        agent = str(header.path[1])
        if not agent:
            continue
        where = line_range(header.line, 0, header.end)
        if needs_trust:  # a launch would be refused: the lens leads to the difference instead
            lenses.append(_lens(where, "⚠ Review changes", TRUST, {"uri": uri, "agent": agent}))
        else:
            lenses.append(_lens(where, "▶ Launch", LAUNCH, {"uri": uri, "agent": agent}))
        running = [
            record
            for record in bottles
            if record.get("agent") == agent
            and is_running(record)
            and same_manifest(record, manifest)
        ]
        for record in running:
            suffix = f" {record['slug']}" if len(running) > 1 else ""
            lenses.append(_lens(where, f"Attach{suffix}", ATTACH, {"slug": record["slug"]}))
            lenses.append(_lens(where, f"Stop{suffix}", STOP, {"slug": record["slug"]}))
    return lenses


def _lens(where: types.Range, title: str, command: str, argument: dict[str, str]) -> types.CodeLens:
    return types.CodeLens(
        range=where, command=types.Command(title=title, command=command, arguments=[argument])
    )
