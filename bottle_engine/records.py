"""Bottle records: what the engine remembers about each bottle instance.

A record lets `ls`, `attach`, `stop` and `resume` work after the CLI restarts; the containers
and networks also carry labels, so `ls` and `gc` find them even when a record is lost.

Records live in `<state>/records/<slug>.json`, apart from the bottle's own dir: that dir is
mounted read-write into the bundle, and a record there could be replaced by a bundle the
agent's traffic took over. `stop --rm` removes the containers and networks a record names, so
a forged record turned it against another bottle's bundle or any network on the host.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bottle_engine import state
from bottle_engine.bottle_dir import checked_slug
from bottle_engine.plan import BottlePlan, bundle_name_of, internal_network_of
from bottle_engine.status import UNKNOWN, BottleStatus


@dataclass(frozen=True)
class GatewayNames:
    """Where a bottle's gateway lives: what `stop`, `status` and `gc` look up after launch."""

    internal_network: str
    egress_network: str
    own_egress: bool = True  # False: a shared egress network (BOTTLE_EGRESS_NETWORK), not ours
    pool_member: str | None = None  # the warm pool member it was, if it came from the pool

    @classmethod
    def of_plan(cls, plan: BottlePlan, pool_member: str | None = None) -> GatewayNames:
        return cls(
            plan.internal_network,
            plan.egress_network,
            own_egress=not plan.shared_egress_network,  # as `egress_network` reads it
            pool_member=pool_member,
        )

    @classmethod
    def of_record(cls, record: BottleRecord) -> GatewayNames:
        """The names a record's resources carry; derived from the slug for older records."""
        if record.resources.gateway is not None:
            return record.resources.gateway
        return cls(internal_network_of(record.slug), f"bottle-{record.slug}-egress")

    @property
    def own_networks(self) -> tuple[str, ...]:
        """The networks removed with the bottle (never a shared egress network)."""
        if self.own_egress:
            return (self.internal_network, self.egress_network)
        return (self.internal_network,)


@dataclass(frozen=True)
class BottleResources:
    """What a bottle was given and made of, as launched (`ls --json`, `resume`, the probes).

    The first fields hold for every backend; `runtime`/`runtime_reason` are the docker
    backend's (the agent's OCI runtime and why), `artifact_digest`, `pack` and `command` the
    smolmachines backend's (the packed image and the agent's command, run on attach)."""

    cpus: float = 0.0
    memory_bytes: int = 0
    agent_image: str = ""
    bundle_image: str = ""
    runtime: str | None = None
    runtime_reason: str | None = None
    artifact_digest: str | None = None
    pack: str | None = None
    command: tuple[str, ...] = ()
    gateway: GatewayNames | None = None  # where its gateway lives (None: named after the slug)

    def to_json(self) -> dict[str, Any]:
        """As on disk: a backend's unused fields are left out, as they always were."""
        data = asdict(self)
        data["command"] = list(self.command)
        return {k: v for k, v in data.items() if v is not None and v != []}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> BottleResources:
        """Read what any version wrote; unknown keys are ignored, missing ones defaulted."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        if "command" in values:
            values["command"] = tuple(str(part) for part in values["command"] or ())
        if isinstance(values.get("gateway"), Mapping):
            values["gateway"] = GatewayNames(**values["gateway"])
        else:
            values.pop("gateway", None)
        return cls(**values)


UNKNOWN_STATUS = BottleStatus(UNKNOWN)


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
    resources: BottleResources = field(default_factory=BottleResources)
    # Filled in from the backend when listed, never stored: it is only true when asked.
    status: BottleStatus = UNKNOWN_STATUS

    @property
    def bundle_name(self) -> str:
        return bundle_name_of(self.name)

    @property
    def fix(self) -> str | None:
        """With a degraded status: the command that repairs it."""
        return self.status.fix

    def with_status(self, status: BottleStatus) -> BottleRecord:
        return replace(self, status=status)

    def to_json(self) -> dict[str, Any]:
        """`ls --json` and `launch --json`: the stored fields, status and fix."""
        status = self.status
        return {
            **self.stored_json(),
            "status": status.text,
            "state": status.kind,
            "fix": status.fix,
        }

    def stored_json(self) -> dict[str, Any]:
        """What is saved: everything but the status (asked of the backend when listed)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "status"}
        return {**data, "resources": self.resources.to_json()}


def save_launched(
    plan: BottlePlan, backend: str, agent_image: str, bundle_image: str, own: BottleResources
) -> BottleRecord:
    """Save and return the record of a bottle just launched from `plan` with these images.
    `own` holds the backend's own fields (runtime, pack, gateway, ...); what every backend
    records (the plan's cpus and memory, the images) is filled in here."""
    resources = replace(
        own,
        cpus=plan.cpus,
        memory_bytes=plan.memory_bytes,
        agent_image=agent_image,
        bundle_image=bundle_image,
    )
    record = record_for(plan, backend, resources)
    save(record)
    return record


def record_for(plan: BottlePlan, backend: str, resources: BottleResources) -> BottleRecord:
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
    """Where bottle `slug`'s record is (no bundle mounts it); `slug` as `checked_slug` allows."""
    return state.records_dir() / f"{checked_slug(slug)}.json"


def save(record: BottleRecord) -> None:
    """Write atomically (a crash never leaves half a record), mode 0600 in a 0700 dir."""
    text = json.dumps(record.stored_json(), indent=2, sort_keys=True)
    state.write_private_text(record_path(record.slug), text)


def remove(slug: str) -> None:
    """Forget bottle `slug` (its dir is removed apart: `BottleDir.remove`)."""
    record_path(slug).unlink(missing_ok=True)


def load(slug: str) -> BottleRecord | None:
    path = record_path(slug)
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return from_json(data)


def from_json(data: Mapping[str, Any]) -> BottleRecord:
    """A stored record, from any version: a status stored by an old one is dropped (it is
    asked of the backend), the resources typed."""
    known = {f.name for f in fields(BottleRecord)} - {"status", "resources"}
    return BottleRecord(
        **{k: v for k, v in data.items() if k in known},
        resources=BottleResources.from_json(data.get("resources") or {}),
    )


def all_records() -> list[BottleRecord]:
    root = state.records_dir()
    if not root.is_dir():
        return []
    found = (load(child.stem) for child in sorted(root.glob("*.json")) if child.is_file())
    return [record for record in found if record is not None]
