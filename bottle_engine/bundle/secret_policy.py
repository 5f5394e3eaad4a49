"""Where a secret's placeholder may go, as pure functions.

The agent holds only a random placeholder per secret. A request may carry it in one of the
secret's credential headers (`headers` in bottle.toml) to one of the secret's hosts over HTTPS;
the proxy then swaps in the real value. The placeholder anywhere else (another host, plain HTTP,
the URL, the body, another header) refuses the request, so the agent learns of the mistake
instead of sending a useless token somewhere it should not go, or the real value somewhere a
server keeps it as data and hands it back.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bottle_engine.bundle.config import SecretBinding
from bottle_engine.bundle.egress_policy import field_key
from bottle_engine.manifest.egress_rules import EgressRule, parse_egress_rule

PLACEHOLDER_IN_URL = "secret-in-url"
PLACEHOLDER_IN_BODY = "secret-in-body"
PLACEHOLDER_IN_TRAILERS = "secret-in-trailers"
PLACEHOLDER_WRONG_HOST = "secret-wrong-host"
PLACEHOLDER_PLAIN_HTTP = "secret-plain-http"
PLACEHOLDER_IN_HASHED_HEADER = "secret-in-hashed-header"
# The placeholder in a header the secret's `headers` does not list, or in a header's name. A
# server may keep such a header as data (object metadata, a file name, a logged User-Agent) and
# serve it from a host the secret is not bound to, whose answers the proxy does not scrub.
PLACEHOLDER_IN_OTHER_HEADER = "secret-header-not-allowed"
# Request headers whose value the protocol makes the server hash and send back (a WebSocket
# server answers Sec-WebSocket-Key with SHA-1(key + GUID) in Sec-WebSocket-Accept). The echo
# is a form the proxy cannot recognise to scrub, and with a real value hashed in it the agent
# could test guesses of that value offline. Keyed by `field_key`.
HASHED_HEADERS = frozenset({"sec-websocket-key"})
BODY_NOT_INSPECTABLE = "body-not-inspectable"
DECODED_BODY_LIMIT = "decoded-body-limit"

# A request body is decoded (gzip, deflate, zstd) to look for placeholders, never past this many
# bytes: a 1 MiB gzip body can inflate to 1 GiB.
MAX_DECODED_BODY = 8 * 1024 * 1024
# Content codings undone for one body. Each layer is inflated whole, so 9 000 nested gzip layers
# (a 1 MiB body, a 50 KiB header) cost 3 s of the proxy's only thread; clients apply one.
MAX_CODINGS = 4


@dataclass(frozen=True)
class BoundSecret:
    """A secret with its host patterns parsed (same syntax as egress entries)."""

    binding: SecretBinding
    hosts: tuple[EgressRule, ...]
    headers: frozenset[str]  # lower-case names of the headers the real value may go in

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
        BoundSecret(
            b,
            tuple(parse_egress_rule(h) for h in b.hosts),
            frozenset(name.lower() for name in b.headers),
        )
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
    fix: str | None = None  # how to allow it in bottle.toml, where the manifest can


def check_request(
    secrets: Sequence[BoundSecret],
    host: str,
    port: int,
    https: bool,
    url: str,
    headers: Iterable[tuple[str, str]],
    bodies: Iterable[bytes],
    *,
    bottle: str = "NAME",
    approved: bool = False,
) -> SecretVerdict:
    """Judge where placeholders appear in one request to `host`:`port`.

    `bodies` are the forms of the body to search (raw and, if it is encoded, decoded). `bottle`
    is the [bottles.NAME] table a refusal's fix names. `approved`: the destination is let
    through by a person's answer, not by the manifest, and is bound to no secret whatever the
    secrets name.
    """
    header_list = list(headers)
    header_text = "\n".join(f"{name}: {value}" for name, value in header_list)
    hashed_text = "\n".join(
        value for name, value in header_list if field_key(name) in HASHED_HEADERS
    )
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
        if approved:
            return _refuse(
                PLACEHOLDER_WRONG_HOST,
                secret,
                f"to {host}:{port}, a host a person's approval let through, which no secret "
                "goes to",
            )
        if not secret.bound_to(host, port):
            allowed = ", ".join(secret.binding.hosts) or "no host"
            return _refuse(
                PLACEHOLDER_WRONG_HOST,
                secret,
                f"to {host}:{port}, but it may only go to {allowed}",
            )
        if not https:
            return _refuse(PLACEHOLDER_PLAIN_HTTP, secret, "over plain HTTP; use https://")
        if token in hashed_text:
            return _refuse(
                PLACEHOLDER_IN_HASHED_HEADER,
                secret,
                "in a header the server hashes and sends back (Sec-WebSocket-Key)",
            )
        refusal = _check_header_names(secret, header_list, bottle)
        if refusal is not None:
            return refusal
        substitute.append(secret)
    return SecretVerdict(True, substitute=tuple(substitute))


def check_trailers(
    secrets: Sequence[BoundSecret], trailers: Iterable[tuple[str, str]]
) -> SecretVerdict:
    """Judge a request's trailers (the fields after a chunked body): a placeholder there is
    never replaced, so it is refused wherever the request goes, as in the body."""
    text = "\n".join(f"{name}: {value}" for name, value in trailers)
    for secret in secrets:
        if secret.placeholder in text:
            return _refuse(PLACEHOLDER_IN_TRAILERS, secret, "in the request's trailers")
    return SecretVerdict(True)


def _check_header_names(
    secret: BoundSecret, headers: Sequence[tuple[str, str]], bottle: str
) -> SecretVerdict | None:
    """Is the placeholder only in the values of headers the secret's `headers` lists? None when
    it is, else the refusal naming the first header that may not carry it."""
    token = secret.placeholder
    for name, value in headers:
        if token in name:
            return _refuse(PLACEHOLDER_IN_OTHER_HEADER, secret, "in a header's name")
        # ASCII first: str.lower() folds the Kelvin sign into 'k', so "X-Api-\u212aey" would
        # pass as X-Api-Key, a header no server reads as the credential.
        if token in value and not (name.isascii() and name.lower() in secret.headers):
            shown = name[:100]
            listed = ", ".join(secret.binding.headers) or "none"
            return SecretVerdict(
                False,
                PLACEHOLDER_IN_OTHER_HEADER,
                f"the placeholder of secret '{secret.name}' was sent in the header {shown!r}, "
                f"which may not carry it (the secret's headers: {listed}); a server may keep "
                "such a header as data and hand the real value back",
                fix=f"add {shown!r} to headers in [bottles.{bottle}.secrets.{secret.name}] in "
                "bottle.toml, if the service reads it as a credential and never keeps it",
            )
    return None


def _refuse(rule: str, secret: BoundSecret, where: str) -> SecretVerdict:
    return SecretVerdict(
        False,
        rule,
        f"the placeholder of secret '{secret.name}' was sent {where}; "
        "placeholders are replaced only in the secret's request headers to its hosts",
    )


class BodyRefused(Exception):
    """A request body that cannot be inspected within the bound: `rule` and `reason` say why."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


def body_forms(raw: bytes, content_encoding: str, limit: int = MAX_DECODED_BODY) -> list[bytes]:
    """The forms of a request body to search for placeholders: as sent and, when it is encoded,
    decoded, never decoding past `limit` bytes.

    Raises `BodyRefused` for an encoding that cannot be decoded with a bound (br, unknown ones,
    corrupt data) and for a body that decodes to more than `limit` bytes.
    """
    decoded = decode_body(raw, content_encoding, limit)
    return [raw] if decoded is raw else [raw, decoded]


def decode_body(raw: bytes, content_encoding: str, limit: int = MAX_DECODED_BODY) -> bytes:
    """`raw` with its Content-Encoding undone (`raw` itself when there is none), never decoding
    past `limit` bytes; raises `BodyRefused` as `body_forms` says."""
    # Kept as sent (compared lower-case): a refusal quotes a coding, and must quote it so that
    # a real value put there is recognised (and scrubbed) by the proxy.
    codings = [c.strip() for c in content_encoding.split(",") if c.strip()]
    codings = [c for c in codings if c.lower() != "identity"]
    if not codings or not raw:
        return raw
    if len(codings) > MAX_CODINGS:
        raise BodyRefused(
            BODY_NOT_INSPECTABLE,
            f"the body has {len(codings)} content codings, more than the {MAX_CODINGS} the "
            "proxy undoes to look for secret values; send it with one",
        )
    decoded = raw
    for coding in reversed(codings):  # the last applied is listed last
        decoded = _decode(decoded, coding, limit)
    return decoded


def _decode(data: bytes, coding: str, limit: int) -> bytes:
    name = coding.lower()
    try:
        if name in ("gzip", "x-gzip"):
            return _inflate(data, 16 + zlib.MAX_WBITS, limit)
        if name == "deflate":
            try:
                return _inflate(data, zlib.MAX_WBITS, limit)
            except zlib.error:
                return _inflate(data, -zlib.MAX_WBITS, limit)  # raw deflate, as some clients send
        if name == "zstd":
            return _unzstd(data, limit)
    except (zlib.error, ValueError) as exc:
        raise BodyRefused(
            BODY_NOT_INSPECTABLE,
            f"the request body does not decode as Content-Encoding {coding} ({exc}); "
            "send it uncompressed",
        ) from exc
    raise BodyRefused(
        BODY_NOT_INSPECTABLE,
        f"the request body has Content-Encoding {coding!r}, which the proxy cannot inspect "
        "within its bound; send it uncompressed, or as gzip, deflate or zstd",
    )


def _too_large(coding: str, limit: int) -> BodyRefused:
    return BodyRefused(
        DECODED_BODY_LIMIT,
        f"the request body inflates ({coding}) to more than {limit} bytes, the most the proxy "
        "decodes to look for secret placeholders; send it uncompressed or in smaller parts",
    )


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    out = bytearray()
    pending = data
    while pending:
        decompressor = zlib.decompressobj(wbits)
        chunk = pending
        while chunk:
            out += decompressor.decompress(chunk, limit + 1 - len(out))
            if len(out) > limit:
                raise _too_large("gzip" if wbits > zlib.MAX_WBITS else "deflate", limit)
            chunk = decompressor.unconsumed_tail
        if not decompressor.eof:
            raise zlib.error("the compressed data ends early")
        # gzip allows several members one after the other; deflate does not.
        pending = decompressor.unused_data if wbits > zlib.MAX_WBITS else b""
    return bytes(out)


def _unzstd(data: bytes, limit: int) -> bytes:
    import io

    import zstandard  # in the proxy's venv (a mitmproxy dependency)

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
        out = bytearray()
        while len(out) <= limit:
            chunk = reader.read(limit + 1 - len(out))
            if not chunk:
                break
            out += chunk
    except zstandard.ZstdError as exc:
        raise ValueError(str(exc)) from exc
    if len(out) > limit:
        raise _too_large("zstd", limit)
    return bytes(out)
