"""The bundle's services read exactly the command line the supervisor writes for them.

A service started without `--allowed-client` answers any peer, so a flag spelled differently on
the two sides would open the bundle to every client on its network.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bottle_engine.bundle.service_cli import EGRESS, GIT_GATE, SUPERVISE, ServiceCommand
from bottle_engine.bundle.waiting import WAIT_FLAG, WARM_SERVICES


@pytest.mark.parametrize("command", [EGRESS, GIT_GATE, SUPERVISE], ids=lambda c: c.warm_name)
@pytest.mark.parametrize("extra", [(), (WAIT_FLAG,)], ids=["bottle", "warm-member"])
def test_each_service_parses_what_the_supervisor_writes(
    command: ServiceCommand, extra: tuple[str, ...]
) -> None:
    argv = command.argv("py", Path("/c/bundle.json"), "10.0.0.2", "10.0.0.3", extra)
    assert argv[:3] == ("py", "-m", command.module)
    args = command.parser().parse_args(argv[3:])
    assert args.config == Path("/c/bundle.json")
    assert args.listen == "10.0.0.2"
    assert args.port == command.port
    assert args.allowed_client == "10.0.0.3"
    assert args.wait_for_config is bool(extra)


def test_the_warm_marks_are_the_ones_the_engine_waits_for() -> None:
    commands = [EGRESS, GIT_GATE, SUPERVISE]
    assert sorted(c.warm_name for c in commands) == sorted(WARM_SERVICES)
    assert len({c.port for c in commands}) == len({c.title for c in commands}) == len(commands)


@pytest.mark.parametrize("service", [EGRESS, GIT_GATE, SUPERVISE], ids=lambda s: s.module)
def test_a_service_started_without_its_allowed_client_refuses_to_start(
    service: ServiceCommand, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the flag each service used to answer any peer: fail closed instead. An
    abbreviation is not the flag either (argparse would otherwise take `--allowed`)."""
    parser = service.parser()
    for argv in ([], ["--allowed", "10.0.0.3"]):
        with pytest.raises(SystemExit):
            service.parse(parser, argv)
    assert "--allowed-client" in capsys.readouterr().err
    assert service.parse(parser, ["--allowed-client", "10.0.0.3"]).allowed_client == "10.0.0.3"
    assert service.parse(parser, ["--allowed-client", "any"]).allowed_client is None
