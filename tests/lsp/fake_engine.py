"""A stand-in for `bottle_engine.lifecycle` (launch, stop, list_bottles) for LSP command tests
that cannot start a real bottle in a test's time. The server loads it through
`BOTTLE_LSP_LIFECYCLE_MODULE`; it keeps its state in the JSON file named by
`BOTTLE_FAKE_ENGINE_STATE`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bottle_engine.errors import BottleError
from bottle_engine.progress import Progress

STAGES = ("build agent image", "start bundle", "start agent")


def _path() -> Path:
    return Path(os.environ["BOTTLE_FAKE_ENGINE_STATE"])


def _load() -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(_path().read_text())
    except FileNotFoundError:
        state = {}
    state.setdefault("bottles", [])
    return state


def _save(state: dict[str, Any]) -> None:
    temporary = _path().with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    temporary.replace(_path())


def launch(manifest_path: Path, agent: str, *, cwd: Path | None = None, progress: Progress) -> Any:
    for stage in STAGES:
        progress.stage(stage)
    state = _load()
    record = {
        "slug": f"{agent}-{len(state['bottles']) + 1}",
        "agent": agent,
        "backend": "docker",
        "status": "running",
        "started_at": "2026-01-01T00:00:00+00:00",
        "manifest": str(manifest_path),
    }
    state["bottles"].append(record)
    _save(state)
    return SimpleNamespace(**record)


def stop(slug: str, remove: bool = False) -> None:
    state = _load()
    for record in state["bottles"]:
        if record["slug"] == slug:
            record["status"] = "stopped"
            _save(state)
            return
    raise BottleError(f"no bottle named '{slug}'", fix="run `bottle-engine ls` to see them")


def list_bottles() -> list[Any]:
    return [SimpleNamespace(**record) for record in _load()["bottles"]]
