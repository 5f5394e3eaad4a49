"""A warm pool member's services: imported and waiting for their bottle's configuration.

A pooled bundle starts with no configuration and serves nothing: every service process loads
its code (mitmproxy alone is most of a second of CPU), then waits here until the engine writes
the config into the member's state dir (`POOL_CONFIG_PATH`, a directory the agent never sees).
The engine writes it atomically (rename), so a service never reads half a file.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from bottle_engine.bundle.config import CONFIG_FILE_NAME, STATE_MOUNT

POOL_CONFIG_PATH = STATE_MOUNT / CONFIG_FILE_NAME  # written by the engine at claim time
# Every service's flag: load, then wait for the config file.
WAIT_FLAG = "--wait-for-config"
WARM_SERVICES = ("egress", "gitgate", "supervise")  # the names in their warm marks
POLL_SECONDS = 0.01  # a stat every 10 ms; inotify is not in the standard library


def warm_mark(state_dir: Path, service: str) -> Path:
    """The file a waiting service writes once loaded: the engine's sign the member is warm."""
    return state_dir / f".warm-{service}"


def wait_for_file(
    path: Path, *, service: str | None = None, poll_seconds: float = POLL_SECONDS
) -> None:
    """Block until `path` exists (no timeout: a pool member waits until it is used or removed).
    With `service`, first say this service is loaded (`warm_mark` beside `path`)."""
    if service is not None:
        warm_mark(path.parent, service).touch()
    while not path.exists():
        time.sleep(poll_seconds)


def config_digest(data: bytes) -> str:
    """The digest the bundle reports in its ready file for the config it loaded, so the engine
    knows the bundle runs with the config it handed over and no other."""
    return hashlib.sha256(data).hexdigest()
