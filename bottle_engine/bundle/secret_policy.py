"""Where a secret's placeholder may go, as pure functions.

The agent holds only a random placeholder per secret. A request may carry it in a header to one
of the secret's hosts over HTTPS; the proxy then swaps in the real value. The placeholder anywhere
else (another host, plain HTTP, the URL, the body) refuses the request, so the agent learns of the
mistake instead of sending a useless token somewhere it should not go.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bottle_engine.bundle.config import SecretBinding
from bottle_engine.manifest.egress_rules import EgressRule, parse_egress_rule

PLACEHOLDER_IN_URL = "secret-in-url"
PLACEHOLDER_IN_BODY = "secret-in-body"
PLACEHOLDER_WRONG_HOST = "secret-wrong-host"
PLACEHOLDER_PLAIN_HTTP = "secret-plain-http"


@dataclass(frozen=True)
class BoundSecret:
    """A secret with its host patterns parsed (same syntax as egress entries)."""

    binding: SecretBinding
    hosts: tuple[EgressRule, ...]

    @property
    def name(self) -> str:
        return self.binding.name

    @property
    def placeholder(self) -> str:
        return self.binding.placeholder

    def bound_to(self, host: str, port: int) -> bool:
        return any(rule.matches_host(host, port) for rule in self.hosts)


def bind_secrets(bindings: Iterable[SecretBinding]) -> tuple[BoundSecret, ...]:
    return tuple(
        BoundSecret(b, tuple(parse_egress_rule(h) for h in b.hosts))
        for b in bindings
        if b.placeholder  # an empty placeholder would match everywhere
    )


def intercepts(secrets: Sequence[BoundSecret], host: str, port: int) -> bool:
    """Must the proxy terminate TLS to `host`:`port`? Only where a secret may be substituted."""
    return any(secret.bound_to(host, port) for secret in secrets)


@dataclass(frozen=True)
class SecretVerdict:
    """Refuse (`rule`, `reason`) unless `allowed`; if allowed, substitute these in headers."""

    allowed: bool
    rule: str = ""
    reason: str = ""
    substitute: tuple[BoundSecret, ...] = ()


def check_request(
    secrets: Sequence[BoundSecret],
    host: str,
    port: int,
    https: bool,
    url: str,
    headers: Iterable[tuple[str, str]],
    bodies: Iterable[bytes],
) -> SecretVerdict:
    """Judge where placeholders appear in one request to `host`:`port`.

    `bodies` are the forms of the body to search (raw and, if it is encoded, decoded).
    """
    header_text = "\n".join(f"{name}: {value}" for name, value in headers)
    body_list = list(bodies)
    substitute: list[BoundSecret] = []
    for secret in secrets:
        token = secret.placeholder
        if token in url:
            return _refuse(PLACEHOLDER_IN_URL, secret, "in the URL (path or query string)")
        if any(token.encode() in body for body in body_list):
            return _refuse(PLACEHOLDER_IN_BODY, secret, "in the request body")
        if token not in header_text:
            continue
        if not secret.bound_to(host, port):
            allowed = ", ".join(secret.binding.hosts) or "no host"
            return _refuse(
                PLACEHOLDER_WRONG_HOST,
                secret,
                f"to {host}:{port}, but it may only go to {allowed}",
            )
        if not https:
            return _refuse(PLACEHOLDER_PLAIN_HTTP, secret, "over plain HTTP; use https://")
        substitute.append(secret)
    return SecretVerdict(True, substitute=tuple(substitute))


def _refuse(rule: str, secret: BoundSecret, where: str) -> SecretVerdict:
    return SecretVerdict(
        False,
        rule,
        f"the placeholder of secret '{secret.name}' was sent {where}; "
        "placeholders are replaced only in request headers to the secret's hosts",
    )
