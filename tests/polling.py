"""Polling for a condition that another process makes true, with a named failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    condition: Callable[[], Any], what: str, timeout: float = 120.0, interval: float = 0.2
) -> Any:
    """Poll `condition` until it returns something true and return that; fail naming `what`
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
