"""The bundle's egress proxy end to end: real containers, real TLS, our own upstream.

An agent container on an internal network reaches the test upstream (on a network the test
creates) only through the bundle. Names are mapped to the upstream in the bundle; the test
network's CIDR is allowed explicitly so that its private addresses pass the rebinding check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle_engine.bundle.audit import AuditEntry, read_audit
from tests.bundle_helpers import BundleTestBed, bundle_testbed

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PLACEHOLDER = "bb-placeholder-3c9e1f0a7d"
REAL_VALUE = "real-api-token-9b8a7f6e5d"
NAMES = ["api.test", "a.wild.test", "b.c.wild.test", "wild.test", "secret.test", "rebind.test"]
ALLOW = ["api.test", "*.wild.test", "secret.test", "rebind.test", "{egress_cidr}"]
UPSTREAM_CA = "/srv/upstream-ca.pem"
BOTTLE_CA = "/srv/bottle-ca.pem"


@pytest.fixture(scope="module")
def bed(
    docker_client: Any, bundle_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BundleTestBed]:
    with bundle_testbed(
        docker_client,
        bundle_image,
        tmp_path_factory.mktemp("egress"),
        upstream_names=[n for n in NAMES if n != "rebind.test"],
        allow=ALLOW,
        secrets={"api_token": (PLACEHOLDER, ("secret.test",), REAL_VALUE)},
        extra_hosts={"rebind.test": "127.0.0.1"},
    ) as testbed:
        yield testbed


def audit(bed: BundleTestBed) -> list[AuditEntry]:
    return list(read_audit(bed.state_dir / "egress.jsonl"))


def upstream_saw(result: dict[str, Any]) -> dict[str, Any]:
    assert result["status"] == 200, result
    seen: dict[str, Any] = json.loads(result["body"])
    return seen


def test_allowed_host_over_http_reaches_the_upstream(bed: BundleTestBed) -> None:
    seen = upstream_saw(bed.fetch("http://api.test/hello"))
    assert (seen["path"], seen["tls"]) == ("/hello", False)


def test_allowed_host_over_https_is_tunnelled_without_interception(bed: BundleTestBed) -> None:
    # The agent verifies against the upstream's own CA: only an untouched tunnel passes that.
    seen = upstream_saw(bed.fetch("https://api.test/hello", cafile=UPSTREAM_CA))
    assert seen["tls"] is True


def test_unlisted_host_gets_403_naming_the_rule_and_bottle_toml(bed: BundleTestBed) -> None:
    result = bed.fetch("http://unlisted.invalid/")
    assert result["status"] == 403
    assert "default-deny" in result["body"]
    assert 'add "unlisted.invalid" to [bottles.egress-test.egress] allow' in result["body"]


def test_unlisted_host_over_https_is_refused_at_connect(bed: BundleTestBed) -> None:
    result = bed.fetch("https://unlisted.invalid/", cafile=UPSTREAM_CA)
    assert result["status"] is None and "403" in result["error"]


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("a.wild.test", True), ("b.c.wild.test", True), ("wild.test", False)],
)
def test_wildcard_matches_subdomains_but_not_the_bare_suffix(
    bed: BundleTestBed, host: str, allowed: bool
) -> None:
    result = bed.fetch(f"https://{host}/", cafile=UPSTREAM_CA)
    if allowed:
        assert upstream_saw(result)["headers"]["Host"] == host
    else:
        assert result["status"] is None and "403" in result["error"]


def test_ip_literal_is_refused(bed: BundleTestBed) -> None:
    # An address of our own agent network: not on the list, and never contacted.
    literal = str(bed.internal_subnet[200])
    result = bed.fetch(f"http://{literal}/")
    assert result["status"] == 403 and "ip-literal" in result["body"]


def test_listed_name_resolving_to_loopback_is_refused(bed: BundleTestBed) -> None:
    result = bed.fetch("http://rebind.test/")
    assert result["status"] == 403
    assert "special-address" in result["body"] and "127.0.0.1" in result["body"]


def test_secret_placeholder_in_header_reaches_upstream_as_the_real_value(
    bed: BundleTestBed,
) -> None:
    result = bed.fetch(
        "https://secret.test/v1/me",
        headers={"Authorization": f"Bearer {PLACEHOLDER}"},
        cafile=BOTTLE_CA,
    )
    arrived = [r for r in bed.upstream_requests() if r["path"] == "/v1/me"]
    assert arrived and arrived[-1]["headers"]["Authorization"] == f"Bearer {REAL_VALUE}"
    # The upstream echoed the header back; the agent reads only the placeholder in it.
    assert upstream_saw(result)["headers"]["Authorization"] == f"Bearer {PLACEHOLDER}"


def test_agent_holds_only_the_placeholder(bed: BundleTestBed) -> None:
    code, env = bed.agent_exec(["env"])
    assert code == 0 and f"API_TOKEN={PLACEHOLDER}" in env and REAL_VALUE not in env
    code, found = bed.agent_exec(
        ["grep", "-rlF", "--no-messages", REAL_VALUE, "/srv", "/etc", "/tmp", "/opt", "/home"]
    )
    assert code != 0 and found == ""  # no file the agent can read holds it


def test_placeholder_to_a_host_not_bound_to_the_secret_is_refused(bed: BundleTestBed) -> None:
    result = bed.fetch("http://api.test/", headers={"X-Token": PLACEHOLDER})
    assert result["status"] == 403 and "secret-wrong-host" in result["body"]


def test_placeholder_in_body_is_refused(bed: BundleTestBed) -> None:
    result = bed.fetch(
        "https://secret.test/v1/upload",
        method="POST",
        data=f"token={PLACEHOLDER}",
        cafile=BOTTLE_CA,
    )
    assert result["status"] == 403 and "secret-in-body" in result["body"]


def test_placeholder_in_query_string_is_refused(bed: BundleTestBed) -> None:
    result = bed.fetch(f"https://secret.test/v1?key={PLACEHOLDER}", cafile=BOTTLE_CA)
    assert result["status"] == 403 and "secret-in-url" in result["body"]


def test_audit_log_has_one_line_per_request_with_its_decision(bed: BundleTestBed) -> None:
    before = len(audit(bed))
    bed.fetch("http://api.test/audit-1")
    bed.fetch("http://unlisted.invalid/audit-2")
    bed.fetch("https://api.test/audit-3", cafile=UPSTREAM_CA)
    bed.fetch("https://wild.test/audit-4", cafile=UPSTREAM_CA)
    bed.fetch("https://secret.test/audit-5", headers={"X-Api-Key": PLACEHOLDER}, cafile=BOTTLE_CA)
    entries = _wait_for_entries(bed, before + 6)[before:]
    summary = [(e.method, e.host, e.port, e.decision, e.kind, e.stage) for e in entries]
    assert sorted(summary) == sorted(
        [
            ("GET", "api.test", 80, "allow", "http", ""),
            ("GET", "unlisted.invalid", 80, "deny", "http", ""),
            ("CONNECT", "api.test", 443, "allow", "tunnel", "open"),
            ("CONNECT", "api.test", 443, "allow", "tunnel", "close"),
            ("CONNECT", "wild.test", 443, "deny", "connect", ""),
            ("GET", "secret.test", 443, "allow", "intercepted", ""),
        ]
    )
    tunnel = next(e for e in entries if e.kind == "tunnel" and e.stage == "close")
    assert tunnel.bytes_sent > 0 and tunnel.bytes_received > 0 and tunnel.rule == "api.test"
    denied = next(e for e in entries if e.host == "unlisted.invalid")
    assert denied.rule == "default-deny" and denied.status == 403


def test_bundle_that_cannot_start_its_proxy_fails_with_its_log(
    docker_client: Any, bundle_image: str, tmp_path: Path
) -> None:
    from bottle_engine.errors import BottleError

    with (
        pytest.raises(BottleError, match="exited with code 1") as caught,
        bundle_testbed(
            docker_client,
            bundle_image,
            tmp_path,
            upstream_names=["api.test"],
            allow=["https://api.test"],  # not an allowlist entry: the proxy refuses to start
        ),
    ):
        pass
    assert "looks like a URL" in str(caught.value)
    assert "egress proxy exited" in str(caught.value)


def _wait_for_entries(bed: BundleTestBed, count: int) -> list[AuditEntry]:
    """Tunnel entries are written when the tunnel closes, a moment after the client is done."""
    import time

    deadline = time.monotonic() + 10
    entries = audit(bed)
    while len(entries) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        entries = audit(bed)
    return entries
