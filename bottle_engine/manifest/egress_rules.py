"""Egress allowlist entries: the syntax shared by the manifest and the bundle's proxy.

An entry is one of

* ``api.example.com``      an exact host name,
* ``*.example.com``        any subdomain of example.com (not example.com itself),
* ``203.0.113.7``          an IP literal (otherwise IP destinations are refused),
* ``198.51.100.0/24``      a CIDR, which also lifts the private-address refusal for that range,

each optionally followed by ``:PORT``. Without a port an entry allows ports 80 and 443.
The same parser validates ``bottle.toml`` and drives the proxy's decisions, so the manifest
can never accept an entry the proxy reads differently.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Literal

DEFAULT_PORTS: tuple[int, ...] = (80, 443)

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
RuleKind = Literal["host", "suffix", "ip", "cidr"]


class EgressRuleError(ValueError):
    """An allowlist entry that cannot be read; the text says what is expected."""


@dataclass(frozen=True)
class EgressRule:
    """One parsed allowlist entry."""

    text: str
    kind: RuleKind
    host: str | None  # exact host, or the suffix for "*.suffix" (lower case, no trailing dot)
    network: IPNetwork | None  # for "ip" and "cidr"
    port: int | None  # None: the default ports

    @property
    def ports(self) -> tuple[int, ...]:
        return DEFAULT_PORTS if self.port is None else (self.port,)

    def matches_host(self, host: str, port: int) -> bool:
        """Does this entry allow the host *name* `host` on `port`?"""
        if port not in self.ports or self.host is None:
            return False
        name = host.lower().rstrip(".")
        if self.kind == "host":
            return name == self.host
        return name.endswith("." + self.host)

    def matches_address(self, address: str, port: int) -> bool:
        """Does this entry allow the IP `address` on `port`?"""
        if port not in self.ports or self.network is None:
            return False
        try:
            return ipaddress.ip_address(address) in self.network
        except ValueError:
            return False


def parse_egress_rule(text: str) -> EgressRule:  # noqa: C901 - one check per message, in order
    """Parse one allowlist entry, or raise `EgressRuleError` saying what is wrong."""
    entry = text.strip()
    if not entry:
        raise EgressRuleError("an empty entry; expected a host such as 'api.example.com'")
    url_like = EgressRuleError(
        f"'{text}' looks like a URL; write only the host, e.g. 'example.com'"
    )
    if "://" in entry:
        raise url_like
    address, port = _split_port(entry, text)
    if "/" in address:
        try:
            network = ipaddress.ip_network(address, strict=True)
        except ValueError as exc:
            if not _is_ip(address.split("/", 1)[0]):  # `example.com/path`, not a network
                raise url_like from exc
            raise EgressRuleError(f"'{text}' is not a valid CIDR: {exc}") from exc
        return EgressRule(text, "cidr", None, network, port)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        pass
    else:
        return EgressRule(text, "ip", None, ipaddress.ip_network(ip), port)
    host = address.lower().rstrip(".")
    if host.startswith("*."):
        suffix = host[2:]
        _check_host(suffix, text)
        if "." not in suffix:
            raise EgressRuleError(
                f"'{text}' would allow a whole top-level domain; name a registered domain, "
                "e.g. '*.example.com'"
            )
        return EgressRule(text, "suffix", suffix, None, port)
    if "*" in host:
        raise EgressRuleError(
            f"'{text}': a wildcard is only allowed as a leading '*.', e.g. '*.example.com'"
        )
    _check_host(host, text)
    return EgressRule(text, "host", host, None, port)


def _split_port(entry: str, text: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port or [v6]
        close = entry.find("]")
        if close < 0:
            raise EgressRuleError(f"'{text}': missing ']' after an IPv6 address")
        rest = entry[close + 1 :]
        if rest and not rest.startswith(":"):
            raise EgressRuleError(f"'{text}': expected ':PORT' after ']'")
        return entry[1:close], _port(rest[1:], text) if rest else None
    if entry.count(":") == 1:
        address, port_text = entry.split(":")
        return address, _port(port_text, text)
    return entry, None  # no port, or a bare IPv6 address


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _port(port_text: str, text: str) -> int:
    # ASCII digits only: `isdigit` also takes '²' (which `int` refuses: a crash, not an error)
    # and other scripts' digits, which `int` reads (a Bengali '৪' looks like 8 and is 4).
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise EgressRuleError(f"'{text}': the port must be a number from 1 to 65535")
    return int(port_text)


def is_host_name(name: str) -> bool:
    """Is `name` (lower case, no trailing dot) a host name a rule may list: ASCII labels of
    letters, digits and inner hyphens (IDNA A-labels for the others), at most 253 long, and no
    IPv4 address in disguise? The resolver reads '134744072', '0x08080808' and '8.8.8' as
    addresses, which only an ip or cidr entry may allow (no top-level label is all digits)."""
    if len(name) > 253 or _HOST_RE.fullmatch(name) is None:
        return False
    try:
        socket.inet_aton(name)
    except OSError:
        return not name.rsplit(".", 1)[-1].isdigit()
    return False


def _check_host(host: str, text: str) -> None:
    # `host` is lower-cased, and the Kelvin sign (U+212A) lower-cases to 'k': `text` is checked.
    if not (text.isascii() and is_host_name(host)):
        raise EgressRuleError(
            f"'{text}' is not a valid host name; expected e.g. 'api.example.com', "
            "'*.example.com' or 'example.com:8443'"
        )
