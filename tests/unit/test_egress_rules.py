"""The egress allowlist syntax, table-driven: what each entry allows, and what it refuses.

The manifest validator and the bundle's proxy both read entries with `parse_egress_rule`, so
these tables are the contract for both: a row here is a decision a user relies on.
"""

from __future__ import annotations

import pytest

from bottle_engine.manifest.egress_rules import (
    DEFAULT_PORTS,
    EgressRuleError,
    parse_egress_rule,
)

# entry, host the client asks for, port, allowed?
HOST_CASES = [
    # an exact host
    ("api.example.com", "api.example.com", 443, True),
    ("api.example.com", "api.example.com", 80, True),
    ("api.example.com", "api.example.com", 8443, False),  # only the default ports
    ("api.example.com", "API.Example.COM", 443, True),  # host names are case-insensitive
    ("api.example.com", "api.example.com.", 443, True),  # a fully qualified trailing dot
    ("api.example.com", "example.com", 443, False),
    ("api.example.com", "x.api.example.com", 443, False),  # no subdomains for an exact host
    ("api.example.com", "api.example.com.evil.test", 443, False),
    ("Example.COM.", "example.com", 443, True),  # the entry is normalised too
    # a suffix: subdomains at any depth, never the bare domain
    ("*.example.com", "a.example.com", 443, True),
    ("*.example.com", "a.b.example.com", 443, True),
    ("*.example.com", "example.com", 443, False),
    ("*.example.com", "badexample.com", 443, False),
    ("*.example.com", "a.example.com.evil.test", 443, False),
    ("*.example.com", "a.example.com", 22, False),
    # an explicit port replaces the defaults
    ("pypi.org:443", "pypi.org", 443, True),
    ("pypi.org:443", "pypi.org", 80, False),
    ("example.com:8080", "example.com", 8080, True),
    ("example.com:8080", "example.com", 443, False),
    ("*.example.com:8443", "a.example.com", 8443, True),
    ("*.example.com:8443", "a.example.com", 443, False),
    # address entries never match a host *name*, even one that looks like the address
    ("203.0.113.7", "203.0.113.7", 443, False),
    ("198.51.100.0/24", "198.51.100.9", 443, False),
]


@pytest.mark.parametrize(("entry", "host", "port", "allowed"), HOST_CASES)
def test_host_rule_decision(entry: str, host: str, port: int, allowed: bool) -> None:
    assert parse_egress_rule(entry).matches_host(host, port) is allowed


# entry, IP the client connects to, port, allowed?
ADDRESS_CASES = [
    ("203.0.113.7", "203.0.113.7", 443, True),
    ("203.0.113.7", "203.0.113.7", 80, True),
    ("203.0.113.7", "203.0.113.7", 22, False),
    ("203.0.113.7", "203.0.113.8", 443, False),
    ("203.0.113.7:22", "203.0.113.7", 22, True),
    ("203.0.113.7:22", "203.0.113.7", 443, False),
    ("198.51.100.0/24", "198.51.100.0", 443, True),
    ("198.51.100.0/24", "198.51.100.255", 443, True),
    ("198.51.100.0/24", "198.51.101.0", 443, False),
    ("10.0.0.0/8:5432", "10.20.30.40", 5432, True),
    ("10.0.0.0/8:5432", "10.20.30.40", 443, False),
    ("[2001:db8::1]", "2001:db8::1", 443, True),
    ("[2001:db8::1]:8443", "2001:db8::1", 8443, True),
    ("[2001:db8::1]:8443", "2001:db8::1", 443, False),
    ("2001:db8::1", "2001:db8::1", 443, True),  # without brackets: an address, no port
    ("2001:db8::1", "2001:db8::2", 443, False),
    ("[2001:db8::/32]:443", "2001:db8:ffff::1", 443, True),
    ("[2001:db8::/32]:443", "2001:db9::1", 443, False),
    ("203.0.113.7", "2001:db8::1", 443, False),  # families never mix
    ("203.0.113.7", "not-an-ip", 443, False),
    # host entries never match an address
    ("api.example.com", "203.0.113.7", 443, False),
    ("*.example.com", "203.0.113.7", 443, False),
]


@pytest.mark.parametrize(("entry", "address", "port", "allowed"), ADDRESS_CASES)
def test_address_rule_decision(entry: str, address: str, port: int, allowed: bool) -> None:
    assert parse_egress_rule(entry).matches_address(address, port) is allowed


# entry, kind, host (normalised), network, port
PARSE_CASES = [
    ("api.example.com", "host", "api.example.com", None, None),
    ("  Api.Example.com  ", "host", "api.example.com", None, None),
    ("*.npmjs.org", "suffix", "npmjs.org", None, None),
    ("pypi.org:443", "host", "pypi.org", None, 443),
    ("localhost", "host", "localhost", None, None),
    ("xn--bcher-kva.example", "host", "xn--bcher-kva.example", None, None),
    ("203.0.113.7", "ip", None, "203.0.113.7/32", None),
    ("198.51.100.0/24:8443", "cidr", None, "198.51.100.0/24", 8443),
    ("[2001:db8::1]:443", "ip", None, "2001:db8::1/128", 443),
    ("[2001:db8::/32]", "cidr", None, "2001:db8::/32", None),
]


@pytest.mark.parametrize(("entry", "kind", "host", "network", "port"), PARSE_CASES)
def test_entry_is_parsed(
    entry: str, kind: str, host: str | None, network: str | None, port: int | None
) -> None:
    rule = parse_egress_rule(entry)
    assert (rule.kind, rule.host, rule.port) == (kind, host, port)
    assert (str(rule.network) if rule.network else None) == network
    assert rule.text == entry  # the original text, for messages that quote it


def test_default_ports_are_http_and_https() -> None:
    assert DEFAULT_PORTS == (80, 443)
    assert parse_egress_rule("example.com").ports == (80, 443)
    assert parse_egress_rule("example.com:8080").ports == (8080,)


# entry, a phrase the error must contain (it says what is wrong and what to write instead)
ERROR_CASES = [
    ("https://api.example.com", "looks like a URL"),
    ("http://example.com:8080/x", "looks like a URL"),
    ("example.com/v1/chat", "looks like a URL"),
    ("", "an empty entry"),
    ("   ", "an empty entry"),
    ("*", "a wildcard is only allowed as a leading '*.'"),
    ("*.", "a wildcard is only allowed as a leading '*.'"),
    ("*.com", "would allow a whole top-level domain"),
    ("*.com:443", "would allow a whole top-level domain"),
    ("api.*.example.com", "a wildcard is only allowed as a leading '*.'"),
    ("*example.com", "a wildcard is only allowed as a leading '*.'"),
    ("example.*", "a wildcard is only allowed as a leading '*.'"),
    ("*.*.example.com", "not a valid host name"),
    ("example.com:0", "the port must be a number from 1 to 65535"),
    ("example.com:65536", "the port must be a number from 1 to 65535"),
    ("example.com:https", "the port must be a number from 1 to 65535"),
    ("example.com:", "the port must be a number from 1 to 65535"),
    ("example.com:+80", "the port must be a number from 1 to 65535"),
    ("example.com:80:90", "not a valid host name"),
    ("exa mple.com", "not a valid host name"),
    ("\u212a.example.com", "not a valid host name"),
    ("134744072", "not a valid host name"),  # the resolver reads it as 8.8.8.8
    ("0x7f000001", "not a valid host name"),  # a Kelvin sign: it lower-cases to 'k'
    ("a_b.example.com", "not a valid host name"),
    ("-a.example.com", "not a valid host name"),
    ("a..example.com", "not a valid host name"),
    ("user@example.com", "not a valid host name"),
    ("a" * 64 + ".example.com", "not a valid host name"),
    ("10.0.0.1/24", "not a valid CIDR"),
    ("10.0.0.0/33", "not a valid CIDR"),
    ("[2001:db8::1", "missing ']'"),
    ("[2001:db8::1]443", "expected ':PORT' after ']'"),
    ("[2001:db8::1]:99999", "the port must be a number from 1 to 65535"),
]


@pytest.mark.parametrize(("entry", "phrase"), ERROR_CASES)
def test_malformed_entry_is_refused_with_a_reason(entry: str, phrase: str) -> None:
    with pytest.raises(EgressRuleError) as raised:
        parse_egress_rule(entry)
    assert phrase in str(raised.value)
    if entry.strip():
        assert f"'{entry}'" in str(raised.value), "the message quotes the entry"


def test_host_names_up_to_the_dns_limits_are_accepted() -> None:
    label = "a" * 63
    name = ".".join([label, label, label, "a" * 61])  # 253 characters
    assert parse_egress_rule(name).host == name
    with pytest.raises(EgressRuleError):
        parse_egress_rule(name + "a")
