"""When a test needs gVisor: run it where gVisor works, skip it where it cannot, and fail it
where it should work (CI, or a machine `scripts/setup` prepared)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.bottle_fixtures import BottleWorld, world_env


def gvisor_unusable(world: BottleWorld, image: str) -> str | None:
    """Why the engine's `runtime = "auto"` would not pick gVisor for `image`, or None."""
    from bottle_engine.backends import backend_named

    with world_env(world):
        choice = backend_named("docker").runtime_for("auto", image)  # type: ignore[attr-defined]
    return None if choice.runtime == "runsc" else str(choice.reason)


def gvisor_expected(world: BottleWorld) -> bool:
    """CI, or a machine with a runsc runtime or the pinned runsc installed."""
    from bottle_engine import gvisor
    from bottle_engine.dockerapi import connect

    if os.environ.get("CI", "").lower() in ("1", "true"):
        return True
    with world_env(world):
        runtimes = connect().info().get("Runtimes") or {}
    return gvisor.RUNTIME_NAME in runtimes or any(r.binary.exists() for r in gvisor.PINNED.values())


def require_gvisor(world: BottleWorld, image: str, what: str) -> None:
    reason = gvisor_unusable(world, image)
    if reason is None:
        return
    message = f"{what} cannot run: {reason}"
    if gvisor_expected(world):
        pytest.fail(message + " (on a machine prepared for gVisor: run scripts/setup)")
    pytest.skip(message)


def runtimes_of(client: Any, bottle: Any) -> set[str]:
    """The OCI runtimes the bottle's agent and bundle really run under ("runc", "runsc")."""
    return {
        str(client.containers.get(name).attrs["HostConfig"].get("Runtime") or "runc")
        for name in (bottle.name, bottle.bundle_name)
    }
