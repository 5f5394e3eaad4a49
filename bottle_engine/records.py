"""Bottle records: what the engine remembers about each bottle instance, in its state dir.

A record lets `ls`, `attach`, `stop` and `resume` work after the CLI restarts; the containers
and networks also carry labels, so `ls` and `gc` find them even when a record is lost.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bottle_engine import state
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.plan import BottlePlan, bundle_name_of


@dataclass(frozen=True)
class BottleRecord:
    slug: str
    name: str
    agent: str
    bottle: str
    backend: str
    manifest: str
    cwd: str
    started_at: str
    bundle_ip: str
    subnet: str
    resources: dict[str, Any] = field(default_factory=dict)
    status: str = "unknown"  # filled in from the backend when listed (`status.BottleStatus`)
    fix: str | None = None  # with a degraded status: the command that repairs it

    @property
    def bundle_name(self) -> str:
        return bundle_name_of(self.name)

    def with_status(self, status: str, fix: str | None = None) -> BottleRecord:
        return replace(self, status=status, fix=fix)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def record_for(plan: BottlePlan, backend: str, resources: dict[str, Any]) -> BottleRecord:
    """The record of a bottle just launched from `plan`."""
    return BottleRecord(
        slug=plan.slug,
        name=plan.name,
        agent=plan.agent,
        bottle=plan.bottle,
        backend=backend,
        manifest=str(plan.manifest_path),
        cwd=str(plan.cwd),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        bundle_ip=plan.bundle_ip,
        subnet=str(plan.subnet),
        resources=resources,
    )


def record_path(slug: str) -> Path:
    return BottleDir.of(slug).record


def save(record: BottleRecord) -> None:
    """Write atomically (a crash never leaves half a record), mode 0600 in a 0700 dir."""
    path = BottleDir.create(record.slug).record
    data = {k: v for k, v in record.to_json().items() if k not in ("status", "fix")}
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
        json.dump(data, out, indent=2, sort_keys=True)
        temp = Path(out.name)
    os.replace(temp, path)


def load(slug: str) -> BottleRecord | None:
    path = record_path(slug)
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    known = {f for f in BottleRecord.__dataclass_fields__}
    return BottleRecord(**{k: v for k, v in data.items() if k in known})


def all_records() -> list[BottleRecord]:
    root = state.state_dir() / "bottles"
    if not root.is_dir():
        return []
    found = (load(child.name) for child in sorted(root.iterdir()) if child.is_dir())
    return [record for record in found if record is not None]
