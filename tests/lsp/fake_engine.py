"""A stand-in for `bottle_engine.lifecycle` (launch, stop, list_bottles) for LSP command tests
that cannot start a real bottle in a test's time. `tests/lsp/fake_server.py` hands the server
an `Engine` built on it; its state is a JSON file the test can read and write, since the server
runs in another process."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bottle_engine.errors import BottleError
from bottle_engine.progress import Progress

STAGES = ("build agent image", "start bundle", "start agent")


def write_state(state_file: Path, state: dict[str, Any]) -> None:
    """Replace the fake engine's state whole: the server reads it from other threads at any
    time, and a file written in place can be read half written."""
    temporary = state_file.with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    temporary.replace(state_file)


class FakeLifecycle:
    """Bottles that exist only as records in `state_file`; launching one reports STAGES."""

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        # The server calls in from several threads; each change is one read-modify-write.
        self.changing = threading.Lock()

    def _load(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            state = {}
        state.setdefault("bottles", [])
        return state

    def _save(self, state: dict[str, Any]) -> None:
        write_state(self.state_file, state)

    def launch(
        self, manifest_path: Path, agent: str, *, cwd: Path | None = None, progress: Progress
    ) -> Any:
        for stage in STAGES:
            progress.stage(stage)
        for packed in sorted(manifest_path.parent.glob("*.zst")):  # as `copied_archives` warns
            progress.warn(f"not opened to search for real values: /workspace/{packed.name}")
        with self.changing:
            state = self._load()
            record = {
                "slug": f"{agent}-{len(state['bottles']) + 1}",
                "agent": agent,
                "backend": "docker",
                "status": "running",
                "started_at": "2026-01-01T00:00:00+00:00",
                "manifest": str(manifest_path),
            }
            state["bottles"].append(record)
            self._save(state)
        return SimpleNamespace(**record)

    def stop(self, slug: str) -> None:
        with self.changing:
            state = self._load()
            for record in state["bottles"]:
                if record["slug"] == slug:
                    record["status"] = "stopped"
                    self._save(state)
                    return
        raise BottleError(f"no bottle named '{slug}'", fix="run `bottle-engine ls` to see them")

    def pool_fill(
        self, manifest_path: Path, agent: str, count: int, *, up_to: bool = False
    ) -> list[Any]:
        """A warm member per call, recorded in the state file (`warm`: ids not released).
        `fill_seconds` in the state makes a fill take that long, as a real one does."""
        time.sleep(self._load().get("fill_seconds", 0))
        with self.changing:
            state = self._load()
            warm = state.setdefault("warm", [])
            if up_to and any(m["agent"] == agent for m in warm):
                return []
            member = {"id": f"warm-{agent}-{state.setdefault('made', 0) + 1}", "agent": agent}
            state["made"] += 1
            warm.append(member)
            self._save(state)
        return [SimpleNamespace(**member)]

    def pool_release(self, member_ids: list[str]) -> list[str]:
        with self.changing:
            state = self._load()
            warm = state.setdefault("warm", [])
            state["warm"] = [m for m in warm if m["id"] not in member_ids]
            self._save(state)
        return [m["id"] for m in warm if m["id"] in member_ids]

    def list_bottles(self) -> list[Any]:
        return [SimpleNamespace(**record) for record in self._load()["bottles"]]
