"""`gc` and the launches under way: what a launch made has no record until it is done, so gc
waits for it rather than taking it for a crashed launch's leftovers."""

from __future__ import annotations

import stat
import threading

from bottle_engine import state


def test_gc_waits_for_every_launch_under_way_and_is_told_so() -> None:
    told: list[str] = []
    collected = threading.Event()

    def collect() -> None:
        with state.collecting(lambda: told.append("waiting")):
            collected.set()

    with state.launching(), state.launching():  # two launches at once share it
        collector = threading.Thread(target=collect)
        collector.start()
        assert not collected.wait(1.0)  # still held by the launches
        assert told == ["waiting"]
    collector.join(30)
    assert collected.is_set()
    assert stat.S_IMODE((state.state_dir() / "launch.lock").stat().st_mode) == 0o600


def test_with_no_launch_under_way_gc_goes_ahead_without_a_word() -> None:
    told: list[str] = []
    with state.collecting(lambda: told.append("waiting")):
        pass
    assert told == []
