"""The command line of the bundle's services, spelled once for the side that writes it and the
side that reads it.

The supervisor (`supervisor.py`) starts the egress proxy, the git gate and supervise with the
same flags: where `bundle.json` is, the address to listen on, the agent's address (the only
client answered, `clients.py`), and for a warm pool member `WAIT_FLAG` (`waiting.py`). Each
service parses them with `ServiceCommand.parser`, so the two sides cannot drift apart.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bottle_engine.bundle.config import CONFIG_PATH, EGRESS_PORT, GIT_GATE_PORT, SUPERVISE_PORT
from bottle_engine.bundle.waiting import WAIT_FLAG, wait_for_file

ANY_CLIENT = "any"  # --allowed-client's explicit "no peer check"; the supervisor never writes it


@dataclass(frozen=True)
class ServiceCommand:
    """One service: how the supervisor starts it (`argv`) and how it reads that (`parser`)."""

    title: str  # in the supervisor's and the service's own messages
    module: str  # run as ``python -m MODULE``
    port: int
    warm_name: str  # the name of its warm mark (`waiting.warm_mark`)
    others: str  # what the service does with a client other than the agent
    listen_flag: str = "--listen"
    port_flag: str = "--port"

    def argv(
        self, python: str, config_path: Path, listen: str, agent_ip: str, extra: Sequence[str]
    ) -> tuple[str, ...]:
        """The command that runs this service on `listen`, answering `agent_ip` only."""
        common = ("--config", str(config_path), "--allowed-client", agent_ip, *extra)
        return (python, "-m", self.module, *common, self.listen_flag, listen)

    def parser(
        self,
        description: str | None = None,
        wait_help: str = "a warm pool member: wait for the config file",
    ) -> argparse.ArgumentParser:
        """The parser for `argv`; the address and port read back as `args.listen` and
        `args.port` whatever this service's flags are called."""
        parser = argparse.ArgumentParser(
            prog=f"python -m {self.module}", description=description, allow_abbrev=False
        )
        parser.add_argument("--config", type=Path, default=CONFIG_PATH, help="bundle.json")
        parser.add_argument(
            self.listen_flag,
            dest="listen",
            default="127.0.0.1",
            help="address to listen on (the bundle's internal one)",
        )
        parser.add_argument(self.port_flag, dest="port", type=int, default=self.port)
        parser.add_argument(
            "--allowed-client",
            required=True,  # fail closed: a service started without it would answer any peer
            metavar="ADDRESS",
            help=f"the agent's address: {self.others}; `{ANY_CLIENT}` answers every client "
            "(a service run on its own, as in tests)",
        )
        parser.add_argument(WAIT_FLAG, action="store_true", help=wait_help)
        return parser

    @staticmethod
    def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
        """Parse `argv`; `--allowed-client any` reads back as None (no peer check)."""
        args = parser.parse_args(argv)
        if args.allowed_client == ANY_CLIENT:
            args.allowed_client = None
        return args

    def parse_and_wait(
        self, parser: argparse.ArgumentParser, argv: Sequence[str] | None
    ) -> argparse.Namespace:
        """Parse `argv`; a warm pool member's service then says it is loaded and waits for its
        bottle's config to appear."""
        args = self.parse(parser, argv)
        if args.wait_for_config:
            wait_for_file(args.config, service=self.warm_name)
        return args


EGRESS = ServiceCommand(
    "egress proxy",
    "bottle_engine.bundle.egress",
    EGRESS_PORT,
    "egress",
    "connections from any other are closed",
    listen_flag="--listen-host",
    port_flag="--listen-port",
)
GIT_GATE = ServiceCommand(
    "git gate",
    "bottle_engine.bundle.gitgate",
    GIT_GATE_PORT,
    "gitgate",
    "requests from any other are refused",
)
SUPERVISE = ServiceCommand(
    "supervise",
    "bottle_engine.bundle.supervise",
    SUPERVISE_PORT,
    "supervise",
    "requests from any other get a 403",
)
