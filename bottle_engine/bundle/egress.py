"""The egress proxy process: mitmproxy with the bottle's addons, listening on port 8888.

Run by the supervisor in the bundle's proxy venv as ``python -m bottle_engine.bundle.egress``.
The per-bottle CA is created in `BundleConfig.ca_dir` on first start (mitmproxy's confdir); the
engine mounts its certificate, ``mitmproxy-ca-cert.pem``, into the agent.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import itertools
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mitmproxy import certs, options
from mitmproxy.options import CONF_BASENAME, KEY_SIZE
from mitmproxy.tools.dump import DumpMaster

from bottle_engine.bundle import egress_guards, egress_upstreams
from bottle_engine.bundle.config import EGRESS_PORT, BundleConfig
from bottle_engine.bundle.egress_addons import Resolver, make_addons, make_state, resolve
from bottle_engine.bundle.egress_clients import ConnectionCap, OnlyTheAgent
from bottle_engine.bundle.service_cli import EGRESS
from bottle_engine.bundle.waiting import POLL_SECONDS, warm_mark

# The image's system bundle (with the extra CA bundle installed), trusted for upstream TLS.
UPSTREAM_CA_ENV = "BOTTLE_UPSTREAM_CA"
# Request and response bodies larger than this go through unbuffered (a request's body is then
# not searched for placeholders; its headers are judged before anything is sent).
STREAM_BODIES_ABOVE = "1m"


def local_addresses() -> list[str]:
    """The addresses of this container's interfaces (the bundle's own addresses)."""
    found: list[str] = []
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        lines = []
    for previous, line in itertools.pairwise(lines):
        if "/32 host LOCAL" in line and "|--" in previous:
            found.append(previous.split("|--", 1)[1].strip())
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.append(str(ipaddress.IPv6Address(int(raw, 16))))
    except (OSError, ValueError, IndexError):
        pass
    return list(dict.fromkeys(found))


def upstream_trust_file(config: BundleConfig, scratch: Path) -> Path | None:
    """One PEM file with every CA the proxy trusts upstream, or None for mitmproxy's default."""
    sources = [
        Path(p) for p in (os.environ.get(UPSTREAM_CA_ENV, ""), *config.upstream_ca_files) if p
    ]
    if not sources:
        return None
    scratch.mkdir(parents=True, exist_ok=True)
    text = "\n".join(path.read_text() for path in sources)
    # Named by its content: a warm pool member set the option before its bottle's CAs were
    # known, and mitmproxy reloads the file only when the option's value changes.
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    combined = scratch / f"upstream-ca-{digest}.pem"
    combined.write_text(text)
    return combined


def proxy_options(config: BundleConfig, listen_host: str, listen_port: int) -> dict[str, object]:
    settings: dict[str, object] = {
        "listen_host": listen_host,
        "listen_port": listen_port,
        "confdir": str(config.ca_dir),
        "connection_strategy": "eager",
        "termlog_verbosity": "warn",
        # HTTP/1 only towards the agent: one client connection then carries one request at a
        # time, and a tunnel is the whole rest of its connection. With HTTP/2 one connection
        # multiplexes streams, and mitmproxy shares the connection's state between them (the
        # attack in tests/escape/test_egress_attacks.py). Upstream TLS offers follow the client's.
        "http2": False,
        # An upgraded connection (WebSocket) is relayed as bytes, not buffered message by message.
        "websocket": False,
        "stream_large_bodies": STREAM_BODIES_ABOVE,
    }
    trust = upstream_trust_file(
        config, Path(os.environ.get("TMPDIR", "/tmp")) / "bot-bottle-egress"
    )
    if trust is not None:
        settings["ssl_verify_upstream_trusted_ca"] = str(trust)
    return settings


async def run_proxy(
    config: BundleConfig,
    listen_host: str = "127.0.0.1",
    listen_port: int = EGRESS_PORT,
    resolver: Resolver = resolve,
    allowed_client: str | None = None,
) -> None:
    """Serve until cancelled; with `allowed_client`, connections from any other peer are closed."""
    egress_guards.install()
    egress_upstreams.install()
    master = DumpMaster(options.Options(), with_termlog=True, with_dumper=False)
    await _serve(master, config, listen_host, listen_port, resolver, allowed_client)


async def run_warm_proxy(
    config_path: Path,
    listen_host: str,
    listen_port: int = EGRESS_PORT,
    allowed_client: str | None = None,
) -> None:
    """A warm pool member's proxy: mitmproxy's master made (its addons loaded) and nothing
    listening until the config file appears; then as `run_proxy`."""
    egress_guards.install()
    egress_upstreams.install()
    master = DumpMaster(options.Options(), with_termlog=True, with_dumper=False)
    # Everything but the bottle's own settings, so that its config is a small update: the CA
    # (in the member's state dir, where its config will say it is) and the listener.
    blank = BundleConfig(
        slug="", bundle_ip=listen_host, agent_subnet="", state_dir=str(config_path.parent)
    )
    master.options.update(**proxy_options(blank, listen_host, listen_port))  # type: ignore[no-untyped-call]
    warm_mark(config_path.parent, EGRESS.warm_name).touch()
    while not config_path.exists():
        await asyncio.sleep(POLL_SECONDS)
    config = BundleConfig.load(config_path)
    await _serve(master, config, listen_host, listen_port, resolve, allowed_client)


async def _serve(
    master: DumpMaster,
    config: BundleConfig,
    listen_host: str,
    listen_port: int,
    resolver: Resolver,
    allowed_client: str | None,
) -> None:
    config.ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    wanted = proxy_options(config, listen_host, listen_port)
    # Only what differs: every update makes mitmproxy's addons reconfigure (~70 ms), and a
    # warm member has everything but the bottle's own settings in place already.
    changed = {k: v for k, v in wanted.items() if getattr(master.options, k) != v}
    if changed:
        master.options.update(**changed)  # type: ignore[no-untyped-call]
    state = make_state(config, local_addresses())
    door: list[object] = [OnlyTheAgent(allowed_client)] if allowed_client is not None else []
    door.append(ConnectionCap())
    master.addons.add(*door, *make_addons(state, resolver))  # type: ignore[no-untyped-call]
    try:
        await master.run()
    finally:
        if state.audit is not None:
            state.audit.close()


def make_ca(ca_dir: Path) -> None:
    """The bottle's CA, made now (as mitmproxy would at start, in its confdir) so that a warm
    pool member has it before its bottle arrives. Its key is written in the bundle's state dir,
    readable by the bundle's user only; the agent gets the certificate alone."""
    ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    certs.CertStore.from_store(ca_dir, CONF_BASENAME, KEY_SIZE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = EGRESS.parser(
        wait_help="a warm pool member: make the CA, then wait until the config file appears",
    )
    args = EGRESS.parse(parser, argv)
    logging.basicConfig(level=logging.WARNING, format="egress: %(message)s")
    try:
        if args.wait_for_config:
            make_ca(args.config.parent / "ca")
            asyncio.run(run_warm_proxy(args.config, args.listen, args.port, args.allowed_client))
        else:
            config = BundleConfig.load(args.config)
            asyncio.run(
                run_proxy(config, args.listen, args.port, allowed_client=args.allowed_client)
            )
    except KeyboardInterrupt:
        return 0
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"egress: cannot start the proxy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
