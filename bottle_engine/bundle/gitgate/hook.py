"""Entry points ``git daemon`` and ``git receive-pack`` run: the access hook and pre-receive.

Whatever these print on stderr reaches the agent's git client as ``remote:`` lines, so refusals
are written as sentences naming the rule or the file and line of the finding.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import BinaryIO

from bottle_engine.bundle.clients import ALLOWED_CLIENT_ENV, client_allowed, refusal
from bottle_engine.bundle.config import BundleConfig
from bottle_engine.bundle.gitgate.gate import (
    audit_access,
    audit_push,
    find_upstream,
    mirror,
    pre_receive,
    repo_path,
)
from bottle_engine.bundle.gitgate.served import ServedValue, served_values
from bottle_engine.errors import BottleError
from bottle_engine.limits import GIT_GATE_PUSH_CPU_SECONDS

PREFIX = "bot-bottle git gate: "
# The daemon hands the per-push CPU bound (seconds) to its access hook through the environment.
PUSH_CPU_ENV = "BOTTLE_GIT_GATE_PUSH_CPU_SECONDS"
# A line of the pre-receive input, "<old> <new> <ref>\n", at most: no ref a file system keeps as a
# file has a longer name (PATH_MAX), though receive-pack takes names up to a pkt-line (65516).
MAX_INPUT_LINE_BYTES = 4096


def run_pre_receive(config_path: Path, upstream_name: str) -> int:
    config = BundleConfig.load(config_path)
    upstream = find_upstream(config, upstream_name)
    git_dir = Path(os.environ.get("GIT_DIR", ".")).resolve()
    signal.signal(signal.SIGXCPU, _out_of_cpu)
    stdin_text, refs_total = read_push_input(sys.stdin.buffer, upstream.max_push_refs)
    verdict = pre_receive(git_dir, config, upstream, stdin_text, refs_total)
    try:
        audit_push(config, upstream, stdin_text, verdict, refs_total)
    except OSError as exc:  # the verdict stands; the daemon's log says what went missing
        sys.stderr.write(f"{PREFIX}(could not write the audit log: {exc})\n")
    for line in verdict.lines:
        sys.stderr.write(PREFIX + line + "\n")
    return 0 if verdict.accepted else 1


def read_push_input(stream: BinaryIO, max_refs: int) -> tuple[str, int]:
    """The pre-receive input's first `max_refs` lines, and how many lines it has.

    Read a bounded line at a time: receive-pack takes as many ref updates as the agent sends
    and hands the hook every one, so the input is the agent's to size; read whole, 90 MB of
    them (1500 names of 60 kB) held 264 MB in the hook, beside receive-pack's own copy, in
    the bundle's memory. Lines past `max_refs` are counted only (their number refuses the
    push); a line too long for any ref refuses it whole, once the rest is read. As bytes: text
    mode would turn a '\\r' in a ref name into a line end of its own."""
    kept: list[bytes] = []
    total = 0
    too_long = False
    while line := stream.readline(MAX_INPUT_LINE_BYTES + 1):
        if len(line) > MAX_INPUT_LINE_BYTES and not line.endswith(b"\n"):
            too_long = True
            while (rest := stream.readline(MAX_INPUT_LINE_BYTES + 1)) and not rest.endswith(b"\n"):
                pass
        elif total < max_refs:
            kept.append(line)
        total += 1
    if too_long:
        raise BottleError(
            f"the push names a ref of more than {MAX_INPUT_LINE_BYTES} bytes",
            fix="push to a shorter branch name",
        )
    return b"".join(kept).decode("utf-8", "surrogateescape"), total


def _out_of_cpu(signum: int, frame: FrameType | None) -> None:
    """SIGXCPU, at the push's CPU bound (`bound_push_cpu`): end the hook with a refusal, and
    through the code that uncounts the push from the store budget, rather than die of the
    signal's default action a few seconds before SIGKILL."""
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)  # sent again every second past the bound
    # Not getrlimit: Linux raises the soft limit by a second with each SIGXCPU it sends.
    seconds = os.environ.get(PUSH_CPU_ENV, str(GIT_GATE_PUSH_CPU_SECONDS))
    raise BottleError(
        f"checking this push took the gate's whole CPU bound per push ({seconds} CPU-seconds)",
        fix="push fewer or smaller commits at a time",
    )


def run_access(
    config_path: Path, repos_dir: Path, service: str, repo_dir: str, peer: str | None
) -> int:
    """Refuse clients other than the agent, then mirror the upstream before any service runs,
    so clones and pushes see its current state.

    A failed fetch does not block a clone (the agent gets the last mirrored state, and the
    failure goes to the audit log); a push then fails upstream with git's own explanation.
    An upstream whose history holds a real value (`served`) is refused, clones and pushes
    alike, and so is every repository but the gate's own (`repos_dir`): `git daemon` serves
    what lies under a repository it lists, where pushed branches named .../HEAD,
    .../objects/x and .../refs/x make a directory of the gate's refs a repository of its own,
    without the gate's hooks or bounds.
    """
    allowed = os.environ.get(ALLOWED_CLIENT_ENV)
    if allowed is not None and not client_allowed(peer, allowed):
        # git daemon drops the hook's stderr; the first stdout line goes to the client.
        print(refusal("git gate", peer))
        return 1
    if service == "receive-pack":
        bound_push_cpu(os.getppid(), int(os.environ.get(PUSH_CPU_ENV, GIT_GATE_PUSH_CPU_SECONDS)))
    config = BundleConfig.load(config_path)
    name = Path(repo_dir).name.removesuffix(".git")
    try:
        upstream = find_upstream(config, name)
    except BottleError as exc:
        print(exc.message)  # the daemon sends the first stdout line to the client
        return 1
    if Path(repo_dir).resolve() != repo_path(repos_dir, name).resolve():
        print(f"git gate: serves {name!r} at /{name} only")
        return 1
    try:
        mirror(Path(repo_dir), upstream, served_values(config, upstream))
    except ServedValue as exc:
        print(f"git gate: {exc.message}")  # the daemon sends the first stdout line to the client
        audit_access(config, upstream, service, True, f"{exc.message}; {exc.fix}")
        return 1
    except BottleError as exc:
        audit_access(config, upstream, service, False, f"mirroring failed: {exc.message}")
    return 0


def bound_push_cpu(connection_pid: int, seconds: int) -> None:
    """Bound the CPU time of each process of this push.

    The hook's parent is the daemon's process for this one connection, which starts
    receive-pack once the hook returns: receive-pack, its index-pack and the pre-receive hook
    inherit the bound, each counting its own time. SIGXCPU ends one at the bound, SIGKILL a few
    seconds on. Nothing else can bound them: git has no limit on what a delta inflates to."""
    resource.prlimit(connection_pid, resource.RLIMIT_CPU, (seconds, seconds + 5))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m " + __spec__.name if __spec__ else None)
    sub = parser.add_subparsers(dest="hook", required=True)
    pre = sub.add_parser("pre-receive")
    pre.add_argument("--config", type=Path, required=True)
    pre.add_argument("--upstream", required=True)
    access = sub.add_parser("access")
    access.add_argument("--config", type=Path, required=True)
    access.add_argument("--repos-dir", type=Path, required=True)
    # git daemon's access-hook arguments: service, path, hostname, canonical hostname, ip, port
    access.add_argument("service")
    access.add_argument("path")
    access.add_argument("rest", nargs="*")
    args = parser.parse_args(argv)
    try:
        if args.hook == "pre-receive":
            return run_pre_receive(args.config, args.upstream)
        # The peer is REMOTE_ADDR, which git daemon sets for each connection. Not the "ip"
        # argument: that is the address of the host name the *client* asked for.
        peer = os.environ.get("REMOTE_ADDR")
        return run_access(args.config, args.repos_dir, args.service, args.path, peer)
    except BottleError as exc:
        sys.stderr.write(f"{PREFIX}refused: {exc}\n")
        return 1
    except Exception as exc:  # fail closed, with one line instead of a traceback
        sys.stderr.write(f"{PREFIX}refused: internal error in the gate: {exc!r}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
