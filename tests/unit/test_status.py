"""A bottle's status from all of its parts: a dead bundle is said, with what repairs it."""

from __future__ import annotations

import pytest

from bottle_engine.status import BottleParts, BottleStatus, bottle_status


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (BottleParts("running", "running"), BottleStatus("running")),
        (
            BottleParts("running", "exited"),
            BottleStatus("degraded: bundle down", "bottle-engine resume s1"),
        ),
        (
            BottleParts("running", "missing"),
            BottleStatus(
                "degraded: bundle gone", "bottle-engine stop --rm s1, then launch it again"
            ),
        ),
        (
            BottleParts("running", "running", network_present=False),
            BottleStatus(
                "degraded: network gone", "bottle-engine stop --rm s1, then launch it again"
            ),
        ),
        (BottleParts("exited", "exited"), BottleStatus("exited")),
        (BottleParts("created", "exited"), BottleStatus("stopped")),
        (
            BottleParts("exited", "missing"),
            BottleStatus(
                "exited, degraded: bundle gone", "bottle-engine stop --rm s1, then launch it again"
            ),
        ),
        (BottleParts("missing", "running"), BottleStatus("missing", "bottle-engine stop --rm s1")),
    ],
)
def test_status_is_computed_from_every_part(parts: BottleParts, expected: BottleStatus) -> None:
    assert bottle_status("s1", parts) == expected


def test_the_language_servers_bottle_list_carries_the_fix() -> None:
    from bottle_engine.records import BottleRecord
    from bottle_lsp.engine import _record

    record = BottleRecord("s1", "bottle-s1", "dev", "default", "docker", "m", "/", "t", "ip", "n")
    degraded = record.with_status(BottleStatus("degraded: bundle down", "bottle-engine resume s1"))
    listed = _record(degraded)
    assert (listed["status"], listed["fix"]) == ("degraded: bundle down", "bottle-engine resume s1")
    running = _record(record.with_status(BottleStatus("running")))
    assert running["status"] == "running" and "fix" not in running
