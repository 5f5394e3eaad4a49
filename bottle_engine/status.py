"""A bottle's status, from all of its parts: the agent's sandbox, its bundle, its network.

Status once came from the agent's container alone, so `ls` said "running" for a bottle whose
bundle had died: its agent then has no way out at all (correctly), and nobody was told. Pure:
the backends gather the parts' states, `bottle_status` decides what to tell a person and what
to run about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RUNNING = "running"
MISSING = "missing"
UNKNOWN = "unknown"  # the backend did not answer
# The closed set a status falls in (scripts and the editor branch on it; `text` says more).
StatusKind = Literal["running", "stopped", "degraded", "missing", "unknown"]


@dataclass(frozen=True)
class BottleParts:
    """What each part is doing: a state per part ("running", "exited", "missing", ...)."""

    agent: str
    bundle: str
    network_present: bool = True  # the bottle's internal network, the agent's only one


@dataclass(frozen=True)
class BottleStatus:
    """`text` for a person and for `ls --json` ("running", "degraded: bundle down", ...);
    `fix`: the command that repairs it, when one does."""

    text: str
    fix: str | None = None

    def __str__(self) -> str:
        return self.text

    @property
    def kind(self) -> StatusKind:
        if "degraded" in self.text:
            return "degraded"
        if self.text == RUNNING:
            return "running"
        if self.text == MISSING:
            return "missing"
        if self.text == UNKNOWN:
            return "unknown"
        return "stopped"  # stopped, exited, dead, ...: the agent is not running, the rest is


def bottle_status(slug: str, parts: BottleParts) -> BottleStatus:
    """The status of bottle `slug` made of `parts`."""
    remove = f"bottle-engine stop --rm {slug}, then launch it again"
    if parts.agent == MISSING:
        return BottleStatus(MISSING, f"bottle-engine stop --rm {slug}")
    if parts.agent != RUNNING:
        # Stopped as a whole is not a problem; a part gone is, since resume cannot bring it back.
        if parts.bundle == MISSING:
            return BottleStatus(f"{_agent_word(parts.agent)}, degraded: bundle gone", remove)
        if not parts.network_present:
            return BottleStatus(f"{_agent_word(parts.agent)}, degraded: network gone", remove)
        return BottleStatus(_agent_word(parts.agent))
    if parts.bundle == MISSING:
        return BottleStatus("degraded: bundle gone", remove)
    if not parts.network_present:
        return BottleStatus("degraded: network gone", remove)
    if parts.bundle != RUNNING:
        return BottleStatus("degraded: bundle down", f"bottle-engine resume {slug}")
    return BottleStatus(RUNNING)


def _agent_word(state: str) -> str:
    return "stopped" if state == "created" else state
