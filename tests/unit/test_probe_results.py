"""What a probe's result says: a probe the agent kept from finishing proves nothing."""

from __future__ import annotations

import pytest

from bottle_engine.command_output import UNFINISHED
from bottle_engine.probes import Probe, ProbeReport, ProbeResult

ESCAPE = Probe("reach-host", "the host is out of reach", "exit 1")
CONTROL = Probe("control", "an allowed URL works", "exit 0", expect_success=True)


@pytest.mark.parametrize(
    ("probe", "code", "observed", "passed"),
    [
        (ESCAPE, 1, "refused", True),
        (ESCAPE, 124, "refused", True),  # its own `timeout 5` ended the attempt
        (ESCAPE, 0, "works", False),
        (ESCAPE, UNFINISHED, "did not finish", False),  # stopped, or its output held open
        (CONTROL, 0, "works", True),
        (CONTROL, UNFINISHED, "did not finish", False),
    ],
)
def test_a_probe_passes_only_when_it_finished_as_expected(
    probe: Probe, code: int, observed: str, passed: bool
) -> None:
    report = ProbeReport([ProbeResult(probe, code, "")])
    (row,) = report.to_json()
    assert (row["observed"], row["passed"], report.passed) == (observed, passed, passed)
