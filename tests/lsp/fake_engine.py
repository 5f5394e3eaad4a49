"""A stand-in for `bottle_engine.lifecycle` and `bottle_engine.approvals`, for LSP command tests
that cannot start a real bottle in a test's time. The server loads it through
`BOTTLE_LSP_LIFECYCLE_MODULE` / `BOTTLE_LSP_APPROVALS_MODULE`; it keeps its state in the JSON
file named by `BOTTLE_FAKE_ENGINE_STATE`, which tests read and seed."""

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
    state.setdefault("requests", [])
    state.setdefault("answers", [])
    return state


def _save(state: dict[str, Any]) -> None:
    temporary = _path().with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    temporary.replace(_path())


def launch(manifest_path: Path, agent: str, *, detach: bool = True, progress: Progress) -> Any:
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


def list_requests(slug: str | None = None, pending_only: bool = True) -> list[dict[str, Any]]:
    state = _load()
    answered = {answer["request_id"] for answer in state["answers"]}
    return [r for r in state["requests"] if not (pending_only and r["id"] in answered)]


def answer(request_id: str, approved: bool, note: str, slug: str | None = None) -> None:
    state = _load()
    state["answers"].append(
        {"request_id": request_id, "approved": approved, "note": note, "slug": slug}
    )
    _save(state)
