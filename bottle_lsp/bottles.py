"""The bottles list the code lenses are drawn from: read from the engine, kept a few seconds.

Bottles also start and stop from the CLI, so a list older than `max_age` is re-read when the
lenses are next drawn; reads run in a worker thread and may overlap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bottle_engine.errors import BottleError

logger = logging.getLogger(__name__)

Bottles = list[dict[str, str]]


class BottlesCache:
    """The newest bottles list read through `read` (a blocking call, run in a thread)."""

    def __init__(self, read: Callable[[], Bottles], max_age: float = 5.0) -> None:
        self.read = read
        self.max_age = max_age
        self.bottles: Bottles = []
        self.read_at = float("-inf")  # monotonic time of the last read
        self.reads_started = 0  # serial of the newest read begun
        self.read_shown = 0  # serial of the read `bottles` holds

    def claim_stale(self) -> bool:
        """True when the list is older than `max_age`: the caller re-reads it. Claiming counts
        as a read, so one refresh runs at a time however often lenses are drawn."""
        if time.monotonic() - self.read_at <= self.max_age:
            return False
        self.read_at = time.monotonic()
        return True

    async def refresh(self) -> bool:
        """Re-read the bottles; True when the list changed.

        A read begun before a bottle started can finish after one begun later: it is dropped,
        or the lenses would lose the new bottle until something else asked for them again."""
        self.reads_started += 1
        serial = self.reads_started
        try:
            current = await asyncio.get_running_loop().run_in_executor(None, self.read)
        except BottleError:
            current = []
        except Exception:
            logger.exception("listing bottles failed")
            current = []
        if serial < self.read_shown:
            return False
        self.read_shown = serial
        changed = current != self.bottles
        self.bottles = current
        self.read_at = time.monotonic()
        return changed
