"""The egress decision, table by table: name stage, address stage, refusal texts."""

from __future__ import annotations

import pytest

from bottle_engine.bundle.config import BundleConfig
from bottle_engine.bundle.egress_policy import (
    BAD_DESTINATION,
    DEFAULT_DENY,
    IP_LITERAL,
    MALFORMED_FIELD,
    NAME_MISMATCH,
    OWN_ADDRESS,
    ROUTING_HEADER,
    ROUTING_HEADERS,
    SPECIAL_ADDRESS,
    UNRESOLVED,
    EgressPolicy,
    check_fields,
    check_names,
    check_routing,
    decide,
    field_key,
    host_header,
    split_authority,
)

ALLOW = (
    "api.example.com",
    "*.cdn.example.org",
    "git.example.net:8443",
    "203.0.113.7",
    "198.51.100.0/24:443",
    "10.77.0.0/16",
    "10.88.0.5",
)
PUBLIC = ["93.184.216.34"]
BUNDLE_IP = "10.99.0.2"
POLICY = EgressPolicy.from_config(
    BundleConfig(
        slug="s",
        bundle_ip=BUNDLE_IP,
        agent_subnet="10.99.0.0/24",
        egress_allow=ALLOW,
        bottle_name="dev",
    ),
    own_addresses=["10.77.0.9", "10.88.0.5"],
)

# host, port, resolved addresses (None: name stage only), allowed, rule
CASES = [
    # exact host names, default ports 80 and 443 only
    ("api.example.com", 443, None, True, "api.example.com"),
    ("api.example.com", 80, None, True, "api.example.com"),
    ("API.Example.COM.", 443, None, True, "api.example.com"),
    ("api.example.com", 8443, None, False, DEFAULT_DENY),
    ("example.com", 443, None, False, DEFAULT_DENY),
    ("x.api.example.com", 443, None, False, DEFAULT_DENY),
    ("api.example.com.evil.test", 443, None, False, DEFAULT_DENY),
    # *.suffix: subdomains at any depth, never the bare suffix
    ("a.cdn.example.org", 443, None, True, "*.cdn.example.org"),
    ("a.b.cdn.example.org", 80, None, True, "*.cdn.example.org"),
    ("cdn.example.org", 443, None, False, DEFAULT_DENY),
    ("xcdn.example.org", 443, None, False, DEFAULT_DENY),
    # explicit port replaces the defaults
    ("git.example.net", 8443, None, True, "git.example.net:8443"),
    ("git.example.net", 443, None, False, DEFAULT_DENY),
    # IP literals: only when an ip/cidr entry lists them
    ("203.0.113.7", 443, None, True, "203.0.113.7"),
    ("203.0.113.8", 443, None, False, IP_LITERAL),
    ("198.51.100.20", 443, None, True, "198.51.100.0/24:443"),
    ("198.51.100.20", 80, None, False, IP_LITERAL),
    ("127.0.0.1", 80, None, False, IP_LITERAL),
    ("[::1]", 443, None, False, IP_LITERAL),
    ("::ffff:127.0.0.1", 443, None, False, IP_LITERAL),
    ("10.77.1.1", 443, None, True, "10.77.0.0/16"),
    # the bundle's own addresses: only an exact ip entry allows them, a wider CIDR does not
    (BUNDLE_IP, 443, None, False, IP_LITERAL),
    ("10.77.0.9", 443, None, False, OWN_ADDRESS),
    ("10.88.0.5", 443, None, True, "10.88.0.5"),
    # bad destinations
    ("api.example.com", 0, None, False, BAD_DESTINATION),
    ("api.example.com", 70000, None, False, BAD_DESTINATION),
    ("", 443, None, False, BAD_DESTINATION),
    ("user@api.example.com", 443, None, False, BAD_DESTINATION),
    # names no rule can list, so that no person is asked to allow one: a Cyrillic 'а' that
    # reads as 'a', a Kelvin sign that lower-cases to 'k', controls and a trailing newline
    ("\u0430pi.example.com", 443, None, False, BAD_DESTINATION),
    ("\u212a.cdn.example.org", 443, None, False, BAD_DESTINATION),
    ("a\x1b[2k.cdn.example.org", 443, None, False, BAD_DESTINATION),
    ("other.example.com\n", 443, None, False, BAD_DESTINATION),
    ("a_b.cdn.example.org", 443, None, False, BAD_DESTINATION),
    ("xn--pi-7mc.example.com", 443, None, False, DEFAULT_DENY),  # its IDNA form is plain ASCII
    # IPv4 addresses in the forms the resolver also reads: not names a person may be asked about
    ("134744072", 443, None, False, BAD_DESTINATION),
    ("0x08080808", 443, None, False, BAD_DESTINATION),
    ("8.8.8", 443, None, False, BAD_DESTINATION),
    ("1.2.3.04", 443, None, False, BAD_DESTINATION),
    # address stage: public addresses pass
    ("api.example.com", 443, PUBLIC, True, "api.example.com"),
    ("api.example.com", 443, ["2606:2800:220:1:248:1893:25c8:1946"], True, "api.example.com"),
    # address stage: DNS rebinding to special ranges is refused
    ("api.example.com", 443, ["127.0.0.1"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["::1"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["::ffff:127.0.0.1"], False, SPECIAL_ADDRESS),
    # an IPv6 address carrying a private IPv4 one for a tunnel or translator: NAT64, 6to4, ::a.b.c.d
    ("api.example.com", 443, ["64:ff9b::a01:203"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["64:ff9b:1::a01:203"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["2002:a01:203::1"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["::10.1.2.3"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["10.1.2.3"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["172.16.0.1"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["192.168.1.1"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["169.254.169.254"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["fe80::1"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["fd00::1"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["224.0.0.1"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["0.0.0.0"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["240.0.0.1"], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["100.64.0.1"], False, SPECIAL_ADDRESS),
    # one bad address among good ones refuses the whole name
    ("api.example.com", 443, [*PUBLIC, "127.0.0.1"], False, SPECIAL_ADDRESS),
    # a CIDR entry lifts the refusal for its range (and port)
    ("api.example.com", 443, ["10.77.3.4"], True, "api.example.com"),
    ("api.example.com", 443, [BUNDLE_IP], False, SPECIAL_ADDRESS),
    ("api.example.com", 443, ["10.77.0.9"], False, OWN_ADDRESS),
    ("a.cdn.example.org", 443, ["198.51.100.9"], True, "*.cdn.example.org"),
    # names that do not resolve
    ("api.example.com", 443, [], False, UNRESOLVED),
    ("api.example.com", 443, ["not-an-ip"], False, UNRESOLVED),
    # a name not on the list is refused before resolution matters
    ("other.example.com", 443, PUBLIC, False, DEFAULT_DENY),
]


@pytest.mark.parametrize(("host", "port", "addresses", "allowed", "rule"), CASES)
def test_decision_table(
    host: str, port: int, addresses: list[str] | None, allowed: bool, rule: str
) -> None:
    decision = decide(POLICY, host, port, "GET", addresses)
    assert (decision.allowed, decision.rule) == (allowed, rule), decision.reason


def test_allowed_name_connects_to_a_checked_address_preferring_ipv4() -> None:
    decision = decide(POLICY, "api.example.com", 443, "GET", ["2606:2800::1", "93.184.216.34"])
    assert decision.address == "93.184.216.34"


def test_ip_literal_is_its_own_address() -> None:
    assert decide(POLICY, "203.0.113.7", 443, "GET").address == "203.0.113.7"


def test_name_stage_gives_no_address() -> None:
    assert decide(POLICY, "api.example.com", 443, "GET").address is None


@pytest.mark.parametrize(
    ("host", "port", "entry"),
    [
        ("example.com", 443, '"example.com"'),
        ("example.com", 80, '"example.com"'),
        ("example.com", 8443, '"example.com:8443"'),
        ("203.0.113.9", 443, '"203.0.113.9"'),
    ],
)
def test_denial_says_what_to_add_to_bottle_toml(host: str, port: int, entry: str) -> None:
    decision = decide(POLICY, host, port, "CONNECT")
    assert decision.fix == f"add {entry} to [bottles.dev.egress] allow in bottle.toml"
    assert host in decision.reason


def test_rebinding_denial_names_the_address_and_its_kind() -> None:
    decision = decide(POLICY, "api.example.com", 443, "GET", ["127.0.0.1"])
    assert "127.0.0.1" in decision.reason and "loopback" in decision.reason


def test_empty_allowlist_denies_everything() -> None:
    empty = EgressPolicy(rules=())
    assert not decide(empty, "api.example.com", 443, "GET").allowed
    assert not decide(empty, "203.0.113.7", 443, "GET").allowed


def test_from_config_names_the_bottle_or_a_placeholder() -> None:
    config = BundleConfig(slug="s", bundle_ip="10.0.0.2", agent_subnet="10.0.0.0/24")
    assert EgressPolicy.from_config(config).bottle_name == "NAME"
    assert "10.0.0.2" in EgressPolicy.from_config(config).own_addresses


# --- names must agree (domain fronting) ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM.", ("example.com", None)),
        ("example.com:8443", ("example.com", 8443)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        ("example.com:https", None),
        ("", None),
        ("[::1", None),
        # str.isdigit() is true of these, and int() refuses them (a crash in the proxy's check
        # let the request through) or reads another number: a port is ASCII digits only.
        ("example.com:\u00b9", None),
        ("[::1]:\u00b2", None),
        ("example.com:\u0664\u0664\u0663", None),
        ("example.com:000443", None),
        ("example.com:", None),
    ],
)
def test_split_authority(text: str, expected: tuple[str, int | None] | None) -> None:
    assert split_authority(text) == expected


@pytest.mark.parametrize(
    ("names", "agrees"),
    [
        ({}, True),
        ({"sni": "api.example.com", "host_header": "api.example.com"}, True),
        ({"sni": "API.example.com.", "host_header": "api.example.com:443"}, True),
        ({"authority": "api.example.com:443"}, True),
        ({"sni": "evil.example.com"}, False),
        ({"host_header": "evil.example.com"}, False),
        ({"host_header": "api.example.com:8443"}, False),
        ({"authority": "evil.example.com"}, False),
        ({"host_header": "api.example.com.evil.example"}, False),
        ({"host_header": "api.example.com:443:1"}, False),
        ({"host_header": "evil.example.com:\u00b9"}, False),
        ({"host_header": "api.example.com:\u00b9"}, False),
    ],
)
def test_every_name_must_be_the_destination(names: dict[str, str], agrees: bool) -> None:
    refusal = check_names("api.example.com", 443, 443, **names)
    assert (refusal is None) == agrees
    if refusal is not None:
        assert refusal.rule == NAME_MISMATCH and "api.example.com:443" in refusal.reason


@pytest.mark.parametrize("part", ["sni", "host_header", "authority"])
def test_names_are_ascii(part: str) -> None:
    """U+212A KELVIN SIGN lower-cases to 'k': such a name is not the host it folds into."""
    assert check_names("key.example.com", 443, 443, **{part: "key.example.com"}) is None
    refusal = check_names("key.example.com", 443, 443, **{part: "\u212aey.example.com"})
    assert refusal is not None and refusal.rule == NAME_MISMATCH


def test_a_name_that_is_no_authority_is_a_mismatch_not_a_crash() -> None:
    for value in ("\u00b9", "x:\u00b9", "[::1]:\u00b3", "\x00", "a" * 100_000 + ":1"):
        refusal = check_names("api.example.com", 443, 443, host_header=value)
        assert refusal is not None and refusal.rule == NAME_MISMATCH


@pytest.mark.parametrize(
    "value",
    [b"a\rContent-Length: 0", b"a\r\n b", b"a\nb", b"a\x00b", b"a\x0bb", b"a\x0cb", b"a\x7f"],
)
def test_a_field_holding_a_control_byte_is_refused(value: bytes) -> None:
    refusal = check_fields([(b"Accept", b"*/*"), (b"X-Pad", value)])
    assert refusal is not None and refusal.rule == MALFORMED_FIELD
    assert "X-Pad" in refusal.reason


def test_fields_on_one_line_pass() -> None:
    assert check_fields([(b"Authorization", b"Bearer t\tok en"), (b"X", b"\xc3\xa9")]) is None


@pytest.mark.parametrize(
    ("host", "port", "default", "expected"),
    [
        ("api.example.com", 443, 443, "api.example.com"),
        ("api.example.com", 8443, 443, "api.example.com:8443"),
        ("2001:db8::1", 80, 80, "[2001:db8::1]"),
        ("2001:db8::1", 8080, 80, "[2001:db8::1]:8080"),
    ],
)
def test_the_host_header_the_proxy_gives_a_request_without_one(
    host: str, port: int, default: int, expected: str
) -> None:
    assert host_header(host, port, default) == expected


@pytest.mark.parametrize(
    ("name", "value", "agrees"),
    [
        ("X-Forwarded-Host", "api.example.com", True),
        ("X-Forwarded-Host", "API.example.com.:443", True),
        ("X-Forwarded-Host", "api.example.com:8443", False),
        ("X-Forwarded-Host", "other.example.com", False),
        ("x-forwarded-host", "api.example.com, other.example.com", False),
        ("X-Forwarded-Host", "api.example.com/other", False),
        ("X-Original-Host", "other.example.com", False),
        ("X-Host", "other.example.com", False),
        ("X-Forwarded-Server", "other.example.com", False),
        ("X-HTTP-Host-Override", "other.example.com", False),
        ("Forwarded", "for=192.0.2.1;proto=https", True),
        ("Forwarded", 'for=192.0.2.1;host="api.example.com"', True),
        ("Forwarded", "for=192.0.2.1, for=198.51.100.2;host=other.example.com", False),
        ("Forwarded", 'HOST = "other.example.com"', False),
        ("Forwarded", 'host="api.example.com', False),  # unclosed: a front may read more
        ("X-Original-URL", "/admin?x=1", True),
        ("X-Original-URL", "", True),
        ("X-Original-URL", "https://api.example.com/admin", True),
        ("X-Original-URL", "https://other.example.com/admin", False),
        ("X-Rewrite-URL", "//other.example.com/admin", False),
        ("X-Rewrite-URL", "/\\other.example.com/admin", False),
        ("X-Rewrite-URL", "http://user@other.example.com/", False),
        ("X-Rewrite-URL", "other.example.com/admin", False),
        ("X-Forwarded-For", "other.example.com", True),  # an address, not a route
        ("X_Forwarded_Host", "other.example.com", False),  # HTTP_X_FORWARDED_HOST to CGI
        ("x_original_url", "//other.example.com/", False),
    ],
)
def test_routing_headers_must_name_the_destination(name: str, value: str, agrees: bool) -> None:
    fields = [(b"Host", b"api.example.com"), (name.encode(), value.encode())]
    refusal = check_routing("api.example.com", 443, fields)
    assert (refusal is None) == agrees, refusal
    if refusal is not None:
        assert refusal.rule == ROUTING_HEADER and name in refusal.reason


def test_the_routing_table_is_keyed_as_names_are_looked_up() -> None:
    assert all(name == field_key(name) for name in ROUTING_HEADERS)
