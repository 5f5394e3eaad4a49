"""Sandbox-escape probes: attempts to get out of a bottle, run from inside it as the agent.

Each probe is a small bash script run in the agent's sandbox; exit 0 means the attempt
*succeeded*. Every probe except the control must fail. `build_probes` is pure (targets in,
probes out); `run_probes` takes an `exec` function, so any backend can run them. Probes only
ever aim at addresses given in `ProbeTargets` (the bottle's own network and hosts the caller
set up), never at outside addresses.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from bottle_engine import limits
from bottle_engine.bundle.config import EGRESS_PORT, GIT_GATE_PORT, SUPERVISE_PORT
from bottle_engine.command_output import UNFINISHED
from bottle_engine.errors import CommandFailed
from bottle_engine.guest import system_command
from bottle_engine.manifest.egress_rules import parse_egress_rule
from bottle_engine.plan import AGENT_HOME, WORKSPACE

TIMEOUT = 5  # seconds per connection attempt


@dataclass(frozen=True)
class ProbeTargets:
    """What to aim at. Everything optional: probes without a target are skipped."""

    bundle_ip: str
    gateway_ip: str
    allowed_url: str | None = None  # control: must work through the proxy
    denied_url: str = "http://denied.invalid/"  # a name not on the allowlist
    outside: Sequence[tuple[str, int]] = ()  # test hosts outside the bottle (ip, port)
    host_ports: Sequence[int] = ()  # ports of servers on the host (loopback or all addresses)
    other_bottles: Sequence[tuple[str, int]] = ()  # another bottle's bundle/agent (ip, port)
    egress_allow: Sequence[str] = ()  # the bottle's allowlist: listed IPs are not probed by IP


@dataclass(frozen=True)
class Probe:
    name: str
    claim: str  # the isolation claim this probe tries to break
    script: str
    expect_success: bool = False


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    exit_code: int
    output: str

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0

    @property
    def finished(self) -> bool:
        """Was the probe waited for to its end? The agent can stop it, or hold its output
        open: a probe that did not finish tells nothing, so it does not pass."""
        return self.exit_code != UNFINISHED

    @property
    def passed(self) -> bool:
        return self.finished and self.succeeded == self.probe.expect_success

    @property
    def observed(self) -> str:
        if not self.finished:
            return "did not finish"
        return "works" if self.succeeded else "refused"


@dataclass(frozen=True)
class ProbeReport:
    results: list[ProbeResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    def to_json(self) -> list[dict[str, object]]:
        return [
            {
                "probe": r.probe.name,
                "claim": r.probe.claim,
                "expected": "works" if r.probe.expect_success else "refused",
                "observed": r.observed,
                "passed": r.passed,
                "output": r.output.strip()[-400:],
            }
            for r in self.results
        ]


def _tcp(ip: str, port: int) -> str:
    return f"timeout {TIMEOUT} bash -c {shlex.quote(f'exec 3<>/dev/tcp/{ip}/{port}')}"


def _via_proxy(url: str, *, tunnel: bool = False) -> str:
    flags = "--proxytunnel " if tunnel else ""
    return (
        f'curl -sS -f -m {TIMEOUT} {flags}-x "$HTTPS_PROXY" -o /dev/null '
        f'-w "%{{http_code}}\\n" {shlex.quote(url)}'
    )


def build_probes(targets: ProbeTargets) -> list[Probe]:
    """The probe list for a bottle; pure."""
    probes: list[Probe] = []
    if targets.allowed_url:
        probes.append(
            Probe(
                "control-allowed-host",
                "an allowlisted host is reachable through the proxy",
                _via_proxy(targets.allowed_url),
                expect_success=True,
            )
        )
    probes += [
        Probe(
            "proxy-denies-unlisted-host",
            "the proxy refuses hosts not on the allowlist",
            _via_proxy(targets.denied_url),
        ),
        Probe(
            "gateway-has-no-host",
            "the network's gateway address leads to no host service",
            " || ".join(_tcp(targets.gateway_ip, port) for port in (22, 80, 2375, 2376)) or "false",
        ),
        Probe(
            "docker-socket-absent",
            "no Docker socket in the sandbox",
            "ls -l /var/run/docker.sock /run/docker.sock /var/run/docker 2>/dev/null | grep -q .",
        ),
        Probe("agent-not-root", "the agent does not run as root", '[ "$(id -u)" = 0 ]'),
        Probe(
            "no-privilege-escalation",
            "no sudo/su path to root",
            "sudo -n true 2>/dev/null || su -c true root </dev/null 2>/dev/null",
        ),
        Probe(
            "no-capabilities",
            "the agent holds no Linux capabilities",
            "grep -E '^Cap(Eff|Prm):' /proc/self/status | grep -qv '0000000000000000'",
        ),
        Probe(
            "no-ipv6-address",
            "no IPv6 in the sandbox: the host bridge's link-local address is out of reach",
            "grep -v ' lo$' /proc/net/if_inet6 2>/dev/null | grep -q .",
        ),
    ]
    for port in (GIT_GATE_PORT, SUPERVISE_PORT, EGRESS_PORT):
        probes.append(
            Probe(
                f"proxy-denies-bundle-port-{port}",
                "the proxy will not tunnel to the bundle's own services",
                _via_proxy(f"http://{targets.bundle_ip}:{port}/", tunnel=True),
            )
        )
    probes += _proxy_attacks(targets.bundle_ip)
    allowed = [parse_egress_rule(entry) for entry in targets.egress_allow]
    for ip, port in targets.outside:
        probes.append(
            Probe(
                f"direct-tcp-{ip}-{port}",
                "a host outside the bottle is unreachable without the proxy",
                _tcp(ip, port),
            )
        )
        if any(rule.matches_address(ip, port) for rule in allowed):
            continue  # an explicitly allowed IP: reaching it through the proxy is by design
        probes.append(
            Probe(
                f"proxy-denies-ip-{ip}-{port}",
                "the proxy refuses IP-literal destinations",
                _via_proxy(f"http://{ip}:{port}/", tunnel=True),
            )
        )
    for port in targets.host_ports:
        probes.append(
            Probe(
                f"host-service-{port}",
                "services on the host (loopback or any address) are unreachable",
                " || ".join(
                    [
                        _tcp("127.0.0.1", port),
                        _tcp(targets.gateway_ip, port),
                        _via_proxy(f"http://127.0.0.1:{port}/", tunnel=True),
                        _via_proxy(f"http://localhost:{port}/", tunnel=True),
                    ]
                ),
            )
        )
    for ip, port in targets.other_bottles:
        probes.append(
            Probe(
                f"other-bottle-{ip}-{port}",
                "another bottle's bundle and agent are unreachable",
                f"{_tcp(ip, port)} || {_via_proxy(f'http://{ip}:{port}/', tunnel=True)}",
            )
        )
    return probes


def _proxy_attacks(bundle_ip: str) -> list[Probe]:
    """Attacks on the proxy itself that need no host of the user's: each talks to the proxy
    only (the names end in .invalid). The attacks that need a secret-bound host (SNI, Host and
    absolute-form mismatches, a gzip bomb) would send traffic to the user's real host, so they
    live in tests/escape/test_egress_attacks.py against a test upstream instead."""
    proxy = f"/dev/tcp/{bundle_ip}/{EGRESS_PORT}"
    head = "GET http://denied.invalid/ HTTP/1.1\\r\\nHost: denied.invalid\\r\\nX-Big: "
    body = (
        "POST http://denied.invalid/ HTTP/1.1\\r\\nHost: denied.invalid\\r\\n"
        "Content-Length: 1073741824\\r\\n\\r\\n"
    )
    return [
        Probe(
            "proxy-refuses-tls-on-its-port",
            "the proxy port speaks no TLS (so no HTTP/2 streams sharing one connection's state)",
            f"timeout {TIMEOUT} openssl s_client -connect {bundle_ip}:{EGRESS_PORT} -alpn h2 "
            "</dev/null 2>&1 | grep -q '^New, TLS'",
        ),
        Probe(
            "proxy-bounds-request-head",
            "an unending request head is cut off with 431 (not buffered whole)",
            f"exec 3<>{proxy} || exit 1; printf '{head}' >&3; "
            "head -c 131072 /dev/zero | tr '\\0' a >&3 2>/dev/null; "
            f"! timeout {TIMEOUT} head -c 12 <&3 | grep -q ' 431'",
        ),
        Probe(
            "proxy-answers-a-refused-body-early",
            "a body to a denied host is refused before it is read (not buffered whole)",
            f"exec 3<>{proxy} || exit 1; printf '{body}' >&3; "
            "head -c 131072 /dev/zero >&3 2>/dev/null; "
            f"! timeout {TIMEOUT} head -c 12 <&3 | grep -q ' 403'",
        ),
    ]


Exec = Callable[[Sequence[str]], tuple[int, str]]


def run_probes(probes: Sequence[Probe], execute: Exec) -> ProbeReport:
    """Run each probe through `execute(argv) -> (exit code, output)` inside the sandbox."""
    return ProbeReport(
        [ProbeResult(probe, *execute(["bash", "-c", probe.script])) for probe in probes]
    )


# A place a leaked secret could hide in, and its bytes as they are read from the sandbox; a
# stream whose command failed raises `CommandFailed` at its end.
Haystack = tuple[str, Iterable[bytes]]
ENVIRONMENTS = "process environments"
# A process whose environment cannot be read fails the dump, unless it is gone meanwhile.
ENVIRONMENTS_DUMP = (
    "status=0; for f in /proc/[0-9]*/environ; do "
    'cat "$f" 2>/dev/null || [ ! -e "$f" ] || status=1; echo; done; exit $status'
)
# Each read as one tar archive; the agent's own (read as its user, see `haystack_commands`)
# first, then the system's, read by root.
AGENTS_DIRS = (AGENT_HOME, WORKSPACE, "/tmp")
HAYSTACK_DIRS = (*AGENTS_DIRS, "/etc")


def haystack_commands(agents_user: str = "0") -> list[tuple[str, str, list[str]]]:
    """Each place a leaked secret could hide in, with the user that reads it and the command
    (run in the sandbox by either backend) that writes its bytes: every process's environment,
    then each of `HAYSTACK_DIRS` as a tar archive. tar runs inside: under gVisor the agent's
    writes live in the sandbox (a memory overlay), where Docker's archive API, which reads the
    host's layer, cannot see them. stderr goes nowhere: smolvm reads it whole, and the agent's
    file names can make tar warn without end; a command's failure (a file it cannot read, a
    missing program) is its exit status.

    The environments and `AGENTS_DIRS` are read as `agents_user`: root without capabilities (a
    container's) can read neither another user's /proc/PID/environ nor its 0600 files (the
    agent's ~/.claude, its shell history); the agent's user can.

    Each command is killed once the whole search's time is up: closing its stream does not end
    it (Docker lets an exec run on when its reader goes), and a reader of an endless file left
    behind runs for as long as the bottle does."""
    tar = 'tar -cf - -C "$1" . 2>/dev/null'
    commands = [
        (ENVIRONMENTS, agents_user, ["sh", "-c", ENVIRONMENTS_DUMP]),
        *(
            (path, agents_user if path in AGENTS_DIRS else "0", ["sh", "-c", tar, "sh", path])
            for path in HAYSTACK_DIRS
        ),
    ]
    seconds = f"{limits.SECRET_SEARCH_SECONDS:g}"
    return [
        (place, user, system_command(["timeout", "-s", "KILL", seconds, *argv]))
        for place, user, argv in commands
    ]


def find_secret_leaks(
    secret_values: Sequence[str], haystacks: Iterable[Haystack], seconds: float | None = None
) -> list[str]:
    """Names of the places (env dumps, file archives) that contain any real secret value, and
    of those not searched to their end within `seconds` for all (`SECRET_SEARCH_SECONDS`) or
    whose command failed, each said so: a place the search could not finish may hold one.

    Each place is read as a stream and searched as it comes, keeping only the bytes a value
    cut between two reads could begin with: the agent chooses how large its files are, and a
    sparse file of any length costs it nothing, nor one that would take years to read. A
    place is read to its end or to the deadline, then its stream is closed (its command in the
    sandbox is bounded apart: `haystack_commands`); a place after the deadline is not started."""
    seconds = limits.SECRET_SEARCH_SECONDS if seconds is None else seconds
    deadline = time.monotonic() + seconds
    needles = [value.encode() for value in secret_values if value]
    keep = max((len(needle) for needle in needles), default=1) - 1
    found = []
    for place, chunks in haystacks:
        tail, hit, in_time, failed = b"", False, time.monotonic() < deadline, ""
        stream = iter(chunks)
        try:
            while in_time and (chunk := next(stream, None)) is not None:
                window = tail + chunk
                hit = hit or any(needle in window for needle in needles)
                tail = window[-keep:] if keep else b""
                in_time = time.monotonic() < deadline
        except CommandFailed as exc:  # read to its end, but not all of it could be read
            failed = exc.message
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if hit:
            found.append(place)
        elif failed:
            found.append(f"{place} (not all of it could be searched: {failed})")
        elif not in_time:  # stopped at the deadline: what was not read may hold one
            found.append(f"{place} (not searched to its end in {seconds:g} s)")
    return found
