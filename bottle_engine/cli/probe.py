"""`bottle-engine probe`: try to escape a running bottle, from inside it, and report."""

from __future__ import annotations

import argparse

from rich.table import Table

from bottle_engine import lifecycle
from bottle_engine.cli.output import Subparsers, add_command, add_json_option, console, print_json
from bottle_engine.errors import UsageError
from bottle_engine.probes import ProbeTargets

HELP = """\
Run the sandbox-escape probes inside SLUG's agent sandbox, as the agent, and print what
happened. Every probe must be refused except the control (an allowlisted URL you name). The
probes aim only at the bottle's own network and at the targets you give. Also scans the agent's
environment and files for the bottle's real secret values.

exit codes: 0 every probe behaved, 1 a probe escaped (or the control failed).

examples:
  bottle-engine probe dev-1a2b3c
  bottle-engine probe dev-1a2b3c --allowed-url http://upstream.test:8000/ \\
      --outside 172.30.99.5:8000 --host-port 8765 --json
"""


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "probe",
        help="run the sandbox-escape probes in a bottle",
        description=HELP,
        run=run,
        subject="bottle",
    )
    parser.add_argument("--allowed-url", help="control: a URL the allowlist permits")
    parser.add_argument(
        "--outside",
        action="append",
        default=[],
        metavar="IP:PORT",
        help="a host outside the bottle to try to reach directly (repeatable)",
    )
    parser.add_argument(
        "--host-port",
        action="append",
        default=[],
        type=int,
        metavar="PORT",
        help="a port of a service on this host to try to reach (repeatable)",
    )
    parser.add_argument(
        "--other",
        action="append",
        default=[],
        metavar="IP:PORT",
        help="another bottle's address to try to reach (repeatable)",
    )
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    record = lifecycle.find(args.slug)
    bundle_ip = record.bundle_ip
    gateway = ".".join([*bundle_ip.split(".")[:3], str(int(bundle_ip.split(".")[3]) - 1)])
    targets = ProbeTargets(
        bundle_ip=bundle_ip,
        gateway_ip=gateway,
        allowed_url=args.allowed_url,
        outside=[_address(text) for text in args.outside],
        host_ports=args.host_port,
        other_bottles=[_address(text) for text in args.other],
    )
    report, leaks = lifecycle.probe(args.slug, targets)
    if args.json:
        print_json(
            {
                "passed": report.passed and not leaks,
                "probes": report.to_json(),
                "secret_leaks": leaks,
            }
        )
    else:
        table = Table(box=None)
        for column in ("", "PROBE", "EXPECTED", "OBSERVED", "CLAIM"):
            table.add_column(column)
        for row in report.to_json():
            mark = "[green]ok[/]" if row["passed"] else "[red]FAIL[/]"
            table.add_row(
                mark,
                str(row["probe"]),
                str(row["expected"]),
                str(row["observed"]),
                str(row["claim"]),
            )
        mark = "[red]FAIL[/]" if leaks else "[green]ok[/]"
        where = ", ".join(leaks) if leaks else "refused"
        table.add_row(
            mark,
            "secret-values-absent",
            "refused",
            where,
            "no real secret value in the agent's env, /proc or files",
        )
        console.print(table)
    return 0 if report.passed and not leaks else 1


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"'{text}' is not IP:PORT", fix="write e.g. 172.30.99.5:8000")
    return host, int(port)
