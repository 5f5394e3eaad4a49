"""The egress decision, as a pure function: may this request leave the bottle?

`decide` is called twice per destination by the proxy: once with the name only (is the host on
the allowlist at all?) and once with the addresses the name resolved to (DNS rebinding: a listed
name must not lead to loopback, a private network or the bundle itself). The proxy then connects
to the address the decision returns, never to a second resolution of the name.

Deny by default. Every refusal names the rule that refused and how to allow the destination in
`bottle.toml`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from bottle_engine.bundle.config import BundleConfig
from bottle_engine.bundle.egress_relay import TOKEN
from bottle_engine.manifest.egress_rules import (
    DEFAULT_PORTS,
    EgressRule,
    is_host_name,
    parse_egress_rule,
)
from bottle_engine.manifest.schema import INTERCEPT_ALL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names of the built-in rules that refuse; they appear in the 403 body and in the audit log.
DEFAULT_DENY = "default-deny"
IP_LITERAL = "ip-literal"
SPECIAL_ADDRESS = "special-address"
OWN_ADDRESS = "bundle-address"
UNRESOLVED = "unresolved"
BAD_DESTINATION = "bad-destination"
# A person's answer to an ask (`[egress] ask = true`), or why there was none.
ASK_DENIED = "ask-denied"
ASK_TIMED_OUT = "ask-timed-out"
ASK_REFUSED = "ask-refused"  # the bottle's approval caps (pending, rate) were reached
# A request whose names disagree: SNI, Host / :authority or an absolute-form URL naming another
# host than the one the proxy connects to (domain fronting).
NAME_MISMATCH = "name-mismatch"
# A request header value holding a control byte (CR, a folded line's LF, NUL, ...): an upstream
# may end the field there.
MALFORMED_FIELD = "malformed-field"
_FIELD_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # every control byte but HTAB
# A request line whose method is no HTTP token (RFC 9110 5.6.2), or whose target holds a byte
# that is not visible ASCII (RFC 9112 3.2).
MALFORMED_REQUEST_LINE = "malformed-request-line"
_METHOD = re.compile(TOKEN)
# The longest method IANA registers is 17 letters; an egress ask writes the method twice into a
# request file the store reads no larger than 64 KiB, and a 40,000-letter one left a file nobody
# was shown, one more per ask, until the host read none of the bottle's requests.
MAX_METHOD_BYTES = 64
_TARGET = re.compile(rb"[\x21-\x7e]*")
# A request to a host bound to a secret that names another host in a header a shared front (CDN,
# reverse proxy) may route by instead of Host.
ROUTING_HEADER = "routing-header"
# Those headers, by the form of their value: "authority" (a comma-separated list of host[:port]),
# "forwarded" (RFC 7239: its host= parameters), "url" (a path, or an absolute URL whose authority
# counts). Keyed by `field_key`.
ROUTING_HEADERS: dict[str, str] = {
    "x-forwarded-host": "authority",
    "x-original-host": "authority",
    "x-host": "authority",
    "x-forwarded-server": "authority",
    "x-http-host-override": "authority",
    "forwarded": "forwarded",
    "x-original-url": "url",
    "x-rewrite-url": "url",
}
_FORWARDED_HOST = re.compile(r'(?:^|[\s;,"])host\s*=\s*("(?:[^"\\]|\\.)*"?|[^\s;,]*)', re.I)
_URL_AUTHORITY = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?[/\\]{2}([^/\\?#]*)", re.I)


@dataclass(frozen=True)
class EgressPolicy:
    """The allowlist of one bottle plus the facts the decision needs about the bundle."""

    rules: tuple[EgressRule, ...]
    own_addresses: frozenset[str] = frozenset()
    bottle_name: str = "NAME"
    ask: bool = False  # hold requests to unlisted host names and ask a person
    # Open (terminate TLS of) every HTTPS tunnel, not only a secret's host's ([egress] intercept).
    intercept_all: bool = False

    @classmethod
    def from_config(cls, config: BundleConfig, own_addresses: Iterable[str] = ()) -> EgressPolicy:
        return cls(
            rules=tuple(parse_egress_rule(entry) for entry in config.egress_allow),
            own_addresses=frozenset({config.bundle_ip, *own_addresses} - {""}),
            bottle_name=config.bottle_name or "NAME",
            ask=config.egress_ask,
            intercept_all=config.egress_intercept == INTERCEPT_ALL,
        )


@dataclass(frozen=True)
class Decision:
    """The answer for one destination.

    `rule` is the allowlist entry that allowed it, or the name of the built-in rule that
    refused it. `address` is the address to connect to (set when addresses were checked).
    """

    allowed: bool
    rule: str
    reason: str
    fix: str | None = None
    address: str | None = None
    # Allowed by a person's answer, not by the manifest: such a destination is never bound to
    # a secret (its tunnel is relayed, not intercepted).
    asked: bool = False


def decide(
    policy: EgressPolicy,
    host: str,
    port: int,
    method: str,
    addresses: Sequence[str] | None = None,
) -> Decision:
    """Decide whether `method` to `host`:`port` may go out.

    With `addresses=None` only the name is checked. With the resolved addresses, each one must
    be a public address or explicitly allowed by an ip/cidr entry; the first usable one (IPv4
    preferred) is returned as `Decision.address`.
    """
    destination = f"{host}:{port}"
    if not 1 <= port <= 65535:
        return _deny(BAD_DESTINATION, f"{method} {destination}: the port is out of range")
    literal = _ip_literal(host)
    if literal is not None:
        return _decide_ip_literal(policy, literal, port, method)
    name = host.lower().rstrip(".")
    # The names a rule can list, and no other: no look-alike letters (a person asked to allow
    # one would read another host's name), no spaces, slashes or controls.
    if not (host.isascii() and is_host_name(name)):
        return _deny(BAD_DESTINATION, f"{method} {destination!r}: not a valid host name")
    rule = next((r for r in policy.rules if r.matches_host(name, port)), None)
    if rule is None:
        reason = f"{method} {name}:{port} is not on the egress allowlist"
        return _unlisted(policy, DEFAULT_DENY, reason, name, port)
    if addresses is None:
        return Decision(True, rule.text, f"{name}:{port} is allowed by '{rule.text}'")
    return _check_addresses(policy, name, port, method, rule, addresses)


def needs_ask(policy: EgressPolicy, decision: Decision) -> bool:
    """Is this refusal one a person may overrule? Only a host *name* that no rule lists, and
    only when the bottle asks: IP literals, malformed destinations and address refusals stay
    refusals."""
    return policy.ask and not decision.allowed and decision.rule == DEFAULT_DENY


def decide_approved(
    policy: EgressPolicy,
    host: str,
    port: int,
    method: str,
    addresses: Sequence[str] | None,
    rule_text: str,
) -> Decision:
    """The decision for `host`:`port` once a person approved it (`rule_text` names the
    approval): as if an exact host rule listed it, so every address check still applies (a name
    resolving to loopback, a private range or the bundle stays refused unless an ip/cidr rule
    lists the address). The result is marked `asked`."""
    name = host.lower().rstrip(".")
    rule = EgressRule(rule_text, "host", name, None, port)
    if addresses is None:
        decision = Decision(True, rule_text, f"{name}:{port} was approved by a person")
    else:
        decision = _check_addresses(policy, name, port, method, rule, addresses)
    return replace(decision, asked=True) if decision.allowed else decision


def _decide_ip_literal(policy: EgressPolicy, ip: IPAddress, port: int, method: str) -> Decision:
    text = str(ip)
    rule = next((r for r in policy.rules if r.matches_address(text, port)), None)
    if rule is None:
        reason = (
            f"{method} {_hostport(text, port)}: IP-literal destinations are refused unless listed"
        )
        return _unlisted(policy, IP_LITERAL, reason, text, port)
    if text in policy.own_addresses and not _names_exactly(policy, ip, port):
        return _own_address_denial(policy, text, port, method)
    return Decision(True, rule.text, f"{text} is allowed by '{rule.text}'", address=text)


def _check_addresses(
    policy: EgressPolicy,
    name: str,
    port: int,
    method: str,
    rule: EgressRule,
    addresses: Sequence[str],
) -> Decision:
    parsed = [ip for ip in (_ip_literal(a) for a in addresses) if ip is not None]
    if not parsed:
        return _deny(UNRESOLVED, f"{method} {name}:{port}: the name did not resolve")
    allowing: list[str] = []
    for ip in parsed:
        text = str(ip)
        explicit = next((r for r in policy.rules if r.matches_address(text, port)), None)
        if _is_special(ip) and explicit is None:
            reason = (
                f"{method} {name}:{port} resolves to {text}, a {_describe(ip)} address; "
                "such addresses are refused unless an ip/cidr entry allows them"
            )
            return _unlisted(policy, SPECIAL_ADDRESS, reason, text, port)
        if text in policy.own_addresses and not _names_exactly(policy, ip, port):
            return _own_address_denial(policy, text, port, method, name)
        if explicit is not None:
            allowing.append(explicit.text)
    chosen = min(parsed, key=lambda ip: ip.version)  # IPv4 first: the usual route out
    via = f" (address allowed by '{allowing[0]}')" if allowing else ""
    return Decision(
        True,
        rule.text,
        f"{name}:{port} is allowed by '{rule.text}'{via}",
        address=str(chosen),
    )


def _own_address_denial(
    policy: EgressPolicy, text: str, port: int, method: str, name: str | None = None
) -> Decision:
    via = f"{name}:{port} resolves to {text}" if name else _hostport(text, port)
    reason = (
        f"{method} {via}, the bundle's own address; it is refused unless an exact ip entry "
        "allows it"
    )
    return _unlisted(policy, OWN_ADDRESS, reason, text, port)


def _ip_literal(host: str) -> IPAddress | None:
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip


def _is_special(ip: IPAddress) -> bool:
    # A 6to4 address (2002::/16) carries an IPv4 one that a host with a 6to4 tunnel sends to;
    # Python counts it global whatever it carries. (NAT64's prefixes and the IPv4-compatible
    # form lie in ::/8, which is reserved.)
    carried = ip.sixtofour if isinstance(ip, ipaddress.IPv6Address) else None
    return (
        (carried is not None and _is_special(carried))
        or not ip.is_global
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_private
    )


def _describe(ip: IPAddress) -> str:
    for label, flag in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return label
    return "non-public"


def _names_exactly(policy: EgressPolicy, ip: IPAddress, port: int) -> bool:
    """Is `ip` listed on its own (not merely inside a wider CIDR)?"""
    return any(
        r.network is not None and r.network.num_addresses == 1 and r.matches_address(str(ip), port)
        for r in policy.rules
    )


def _entry_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and port not in DEFAULT_PORTS else host
    return shown if port in DEFAULT_PORTS else f"{shown}:{port}"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _unlisted(policy: EgressPolicy, rule: str, reason: str, host: str, port: int) -> Decision:
    """A refusal that an allow entry for `host`:`port` would lift; its fix names that entry."""
    entry = _entry_for(host, port)
    return _deny(
        rule, reason, f'add "{entry}" to [bottles.{policy.bottle_name}.egress] allow in bottle.toml'
    )


def _deny(rule: str, reason: str, fix: str | None = None) -> Decision:
    return Decision(False, rule, reason, fix)


def split_authority(authority: str) -> tuple[str, int | None] | None:
    """`host[:port]` or `[v6]:port` -> (lower-case host without trailing dot, port or None).

    None when the text is not an authority (a port that is not a number, empty host).
    """
    text = authority.strip()
    number: str | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            number = rest[1:]
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
    else:
        host = text
    port: int | None = None
    if number is not None:
        # ASCII digits only: str.isdigit() is also true of '¹' and '٣', which int() then
        # refuses or reads as another number; a port is 1 to 5 of 0-9.
        if not (1 <= len(number) <= 5 and number.isascii() and number.isdigit()):
            return None
        port = int(number)
    host = host.lower().rstrip(".")
    if not host:
        return None
    return host, port


def check_names(
    host: str,
    port: int,
    default_port: int,
    *,
    sni: str | None = None,
    host_header: str | None = None,
    authority: str | None = None,
) -> Decision | None:
    """Do all the names a request carries agree with the destination `host`:`port`?

    `host`:`port` is what the proxy connects to (the CONNECT target inside a tunnel, the URL's
    authority for plain HTTP). The client's TLS SNI, the Host header and an absolute-form URL's
    authority must each name that host (and port, where they carry one; `default_port` is what
    a missing port means). None when they agree, else the refusal naming the first that does not.
    """
    expected = host.lower().rstrip(".")
    checks = (
        ("the TLS server name (SNI)", sni, False),
        ("the Host header", host_header, True),
        ("the absolute-form URL", authority, True),
    )
    for label, value, has_port in checks:
        if value is None or value == "":
            continue
        port_named = default_port if has_port else None
        if not _names(value, expected, port, port_named, has_port=has_port):
            return _deny(
                NAME_MISMATCH,
                f"{label} names {_shown(value)!r}, but this request goes to "
                f"{_hostport(expected, port)}; every name in a request must be the host it is "
                "sent to",
                "address the request to the host it is meant for (no domain fronting)",
            )
    return None


def _names(
    value: str, expected: str, port: int, default_port: int | None, *, has_port: bool
) -> bool:
    """Does `value` (a host, or with `has_port` an authority) name `expected`:`port`? A missing
    port means `default_port`, and any port when that is None."""
    # Names are ASCII (IDNA A-labels): str.lower() would also fold the Kelvin sign into 'k'.
    parsed = None
    if value.isascii():
        parsed = split_authority(value) if has_port else (value.lower().rstrip("."), None)
    if parsed is None:
        return False
    named_ip = _ip_literal(parsed[0])
    same_host = parsed[0] == expected or (
        named_ip is not None and named_ip == _ip_literal(expected)
    )
    named_port = parsed[1] if parsed[1] is not None else default_port
    return same_host and (not has_port or named_port is None or named_port == port)


def _shown(value: str) -> str:
    return value if len(value) <= 200 else value[:200] + "..."


def field_key(name: str) -> str:
    """A header name as a table of them is keyed: lower-case, '_' read as '-' (a CGI or WSGI
    server hands `X_Forwarded_Host` to the application as HTTP_X_FORWARDED_HOST, the same
    variable as `X-Forwarded-Host`)."""
    return name.strip().lower().replace("_", "-")


def check_routing(host: str, port: int, fields: Iterable[tuple[bytes, bytes]]) -> Decision | None:
    """Do the request's routing headers (`ROUTING_HEADERS`) name only `host` (and `port`, where
    they carry one)? None when they do, else the refusal naming the first that does not.

    A shared front that routes by X-Forwarded-Host, Forwarded: host=, X-Original-URL, ... would
    hand the request, and the real value in its Authorization, to the site they name, another
    tenant of the front; one that routes a connection by its first request would hand it the
    requests after it too. A value that cannot be read as a name is refused too (a front may
    read it otherwise).
    """
    expected = host.lower().rstrip(".")
    for raw_name, raw_value in fields:
        name = raw_name.decode("latin-1")
        form = ROUTING_HEADERS.get(field_key(name))
        if form is None:
            continue
        value = raw_value.decode("latin-1")
        named = _routing_names(form, value)
        if named is None or not all(_names(n, expected, port, None, has_port=True) for n in named):
            return _deny(
                ROUTING_HEADER,
                f"the header {name!r} names {_shown(value)!r}, but this request goes to "
                f"{_hostport(expected, port)}, a host bound to a secret; a shared front may "
                "route by that header and hand the real value to another site",
                f"drop the {name!r} header, or make it name the host the request is sent to",
            )
    return None


def _routing_names(form: str, value: str) -> list[str] | None:
    """The authorities a routing header's `value` names ([] for a plain path); None when it
    cannot be read."""
    if form == "authority":
        return [part.strip() for part in value.split(",") if part.strip()]
    if form == "forwarded":
        named = []
        for match in _FORWARDED_HOST.finditer(value):
            host = match.group(1)
            if host.startswith('"'):
                if len(host) < 2 or not host.endswith('"'):
                    return None  # an unclosed quoted-string
                host = host[1:-1].replace("\\", "")
            named.append(host)
        return named
    text = value.strip()
    if not text or (text.startswith("/") and not text.startswith(("//", "/\\"))):
        return []  # a path on the destination itself
    authority = _URL_AUTHORITY.match(text)
    if authority is None:
        return None
    return [authority.group(1).rpartition("@")[2]]


def check_fields(fields: Iterable[tuple[bytes, bytes]]) -> Decision | None:
    """Are the request's header values free of control bytes (all but HTAB)? None when they are.

    mitmproxy keeps a bare CR, a folded line's CRLF or a NUL inside a field and sends it on; an
    upstream that ends a line there reads fields the proxy never checked (a second
    Content-Length that makes the body a request of its own, to another host on the same front,
    whose body then swallows the next request, the real value in it). Other servers take a
    vertical tab, a form feed or DEL for whitespace. HTTP allows none of them in a field value
    (RFC 9110 5.5: visible characters, SP and HTAB).
    """
    for name, value in fields:
        control = _FIELD_CONTROL.search(value)
        if control is not None:
            shown = name.decode("ascii", "replace")[:100]
            return _deny(
                MALFORMED_FIELD,
                f"the header {shown!r} holds the control byte 0x{control[0][0]:02x}, which an "
                "upstream may read as the end of the field (request smuggling)",
                "send each header on one line, without control characters",
            )
    return None


def check_request_line(method: bytes, target: bytes) -> Decision | None:
    """Is the request line's `method` an HTTP token and its `target` visible ASCII (as the
    client sent them)? None when they are.

    An egress ask shows both to a person as the held request. mitmproxy takes all before the
    line's first ASCII space for the method (no-break spaces and a URL in one read as a request
    to another host), and lets bytes that are not ASCII through in a query (blanks such as
    U+2002 carried data unseen in a request approved --once)."""
    if len(method) > MAX_METHOD_BYTES:
        what = f"the request method is {len(method)} characters long (at most {MAX_METHOD_BYTES})"
    elif not _METHOD.fullmatch(method):
        what = (
            f"the request method {_shown(method.decode('utf-8', 'replace'))!r} is not an HTTP token"
        )
    elif not _TARGET.fullmatch(target):
        what = "the request target holds characters that are not visible ASCII"
    else:
        return None
    return _deny(
        MALFORMED_REQUEST_LINE,
        what,
        "send a standard method such as GET, and the URL percent-encoded",
    )


def host_header(host: str, port: int, default_port: int) -> str:
    """The Host header that names `host`:`port` (the port only when it is not the default)."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default_port else f"{shown}:{port}"
