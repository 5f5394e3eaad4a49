"""Egress proxy: added latency and throughput vs. a direct connection to the same upstream.

Runs the bundle's real proxy (mitmproxy with the bottle's addons, audit log on) and an HTTPS
echo upstream as separate processes on loopback; names resolve to 127.0.0.1 through the proxy's
resolver hook, so nothing leaves the machine. Three paths to the same upstream:

* ``direct``: the client talks TLS to the upstream itself (the baseline);
* ``tunnelled``: CONNECT through the proxy to a host without secrets (raw TCP relay);
* ``intercepted``: CONNECT to a host bound to a secret (TLS terminated with the bottle CA,
  the placeholder swapped for the real value, TLS again to the upstream).

For each: median latency of small requests on a kept-alive connection, median latency of a
request on a fresh connection (handshakes included), and throughput of large responses.
Ratios are proxy/direct, measured in the same run.

    python benchmarks/bench_proxy.py [--requests 200] [--fresh 30] [--mib 8] [--downloads 8]
                                     [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.measure import print_result, timed  # noqa: E402
from bottle_engine.bundle.config import CA_CERT_NAME, BundleConfig, SecretBinding  # noqa: E402
from tests.bundle_helpers import free_port, make_test_ca, wait_for_port  # noqa: E402

PLAIN_HOST = "bench.test"
SECRET_HOST = "secret.bench.test"
PLACEHOLDER = "bb-bench-placeholder"


def serve_proxy(config_file: str, port: int) -> None:
    """The proxy process: the bundle's `run_proxy`, with every name resolving to loopback."""
    from bottle_engine.bundle.egress import run_proxy

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host.endswith(PLAIN_HOST) else []

    config = BundleConfig.from_json(Path(config_file).read_text())
    asyncio.run(run_proxy(config, "127.0.0.1", port, resolver=loopback))


class Path_:
    """How one path connects: direct, or through the proxy to a given host."""

    def __init__(
        self, name: str, upstream_port: int, cafile: Path, proxy_port: int | None, host: str
    ) -> None:
        self.name = name
        self.upstream_port = upstream_port
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.proxy_port = proxy_port
        self.host = host
        self.headers = {"Authorization": f"Bearer {PLACEHOLDER}"} if host == SECRET_HOST else {}

    def connect(self) -> http.client.HTTPSConnection:
        if self.proxy_port is None:
            connection = _DirectConnection(self.host, self.upstream_port, context=self.context)
        else:
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.proxy_port, context=self.context
            )
            connection.set_tunnel(self.host, self.upstream_port)
        return connection

    def get(self, connection: http.client.HTTPSConnection, path: str) -> int:
        connection.request("GET", path, headers=self.headers)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"{self.name}: {path} answered {response.status}: {body[:200]!r}")
        return len(body)


class _DirectConnection(http.client.HTTPSConnection):
    """TLS to the upstream on loopback, verifying its certificate for the benchmark name."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def measure(path: Path_, requests: int, fresh: int, mib: int, downloads: int) -> dict[str, float]:
    connection = path.connect()
    path.get(connection, "/warm-up")
    kept = [timed(lambda: path.get(connection, "/bytes/100")) for _ in range(requests)]
    size = mib << 20
    started = time.perf_counter()
    received = sum(path.get(connection, f"/bytes/{size}") for _ in range(downloads))
    throughput = received / (time.perf_counter() - started) / (1 << 20)
    connection.close()

    def fresh_request() -> None:
        new = path.connect()
        path.get(new, "/bytes/100")
        new.close()

    fresh_times = [timed(fresh_request) for _ in range(fresh)]
    return {
        "keepalive_ms": statistics.median(kept) * 1000,
        "fresh_ms": statistics.median(fresh_times) * 1000,
        "throughput_mib_s": throughput,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="small requests per path")
    parser.add_argument("--fresh", type=int, default=30, help="fresh-connection requests per path")
    parser.add_argument("--mib", type=int, default=8, help="size of each large response")
    parser.add_argument("--downloads", type=int, default=8, help="large responses per path")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--serve-proxy", nargs=2, metavar=("CONFIG", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_proxy:
        serve_proxy(args.serve_proxy[0], int(args.serve_proxy[1]))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as scratch:
        root = Path(scratch)
        tls = make_test_ca(root / "tls", [PLAIN_HOST, SECRET_HOST])
        (root / "secret").write_text("real-bench-token\n")
        upstream_port, proxy_port = free_port(), free_port()
        config = BundleConfig(
            slug="bench",
            bundle_ip="10.255.255.2",
            agent_subnet="10.255.255.0/24",
            # The exact loopback entry lifts the loopback refusal for this benchmark only.
            egress_allow=(
                f"{PLAIN_HOST}:{upstream_port}",
                f"{SECRET_HOST}:{upstream_port}",
                f"127.0.0.1:{upstream_port}",
            ),
            secrets=(
                SecretBinding(
                    "token", PLACEHOLDER, (f"{SECRET_HOST}:{upstream_port}",), str(root / "secret")
                ),
            ),
            state_dir=str(root / "state"),
            upstream_ca_files=(str(tls.ca_cert),),
        )
        (root / "bundle.json").write_text(config.to_json())
        upstream = subprocess.Popen(
            [
                *(sys.executable, str(REPO / "tests" / "bundle_helpers.py"), "serve"),
                *("--host", "127.0.0.1", "--http-port", str(free_port())),
                *("--https-port", str(upstream_port)),
                *("--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)),
            ],
            stdout=subprocess.DEVNULL,
        )
        proxy = subprocess.Popen(
            [sys.executable, __file__, "--serve-proxy", str(root / "bundle.json"), str(proxy_port)]
        )
        try:
            wait_for_port(upstream_port, upstream)
            wait_for_port(proxy_port, proxy)
            bottle_ca = root / "state" / "ca" / CA_CERT_NAME
            paths = [
                Path_("direct", upstream_port, tls.ca_cert, None, PLAIN_HOST),
                Path_("tunnelled", upstream_port, tls.ca_cert, proxy_port, PLAIN_HOST),
                Path_("intercepted", upstream_port, bottle_ca, proxy_port, SECRET_HOST),
            ]
            results = {
                p.name: measure(p, args.requests, args.fresh, args.mib, args.downloads)
                for p in paths
            }
            audit_lines = len((root / "state" / "egress.jsonl").read_text().splitlines())
        finally:
            for process in (proxy, upstream):
                process.terminate()
                process.wait(timeout=30)

    direct = results["direct"]
    over_direct = {
        name: {
            "keepalive_latency": result["keepalive_ms"] / direct["keepalive_ms"],
            "fresh_connection_latency": result["fresh_ms"] / direct["fresh_ms"],
            "throughput": result["throughput_mib_s"] / direct["throughput_mib_s"],
            "added_keepalive_ms": result["keepalive_ms"] - direct["keepalive_ms"],
            "added_fresh_ms": result["fresh_ms"] - direct["fresh_ms"],
        }
        for name, result in results.items()
        if name != "direct"
    }
    report = {
        "paths": results,
        "audit_lines": audit_lines,
        **{f"{name}_over_direct": ratios for name, ratios in over_direct.items()},
    }
    print_result(report, as_json=args.json, lines=_report_lines(results, over_direct))
    return 0


def _report_lines(
    results: dict[str, dict[str, float]], over_direct: dict[str, dict[str, float]]
) -> Iterator[str]:
    yield f"{'path':<12} {'keep-alive ms':>14} {'fresh conn ms':>14} {'MiB/s':>9}"
    for name, result in results.items():
        yield (
            f"{name:<12} {result['keepalive_ms']:>14.2f} {result['fresh_ms']:>14.2f} "
            f"{result['throughput_mib_s']:>9.1f}"
        )
    for name, ratios in over_direct.items():
        yield (
            f"{name}/direct: latency x{ratios['keepalive_latency']:.2f} "
            f"(+{ratios['added_keepalive_ms']:.2f} ms), fresh connection "
            f"x{ratios['fresh_connection_latency']:.2f} (+{ratios['added_fresh_ms']:.2f} ms), "
            f"throughput x{ratios['throughput']:.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
