"""Where a secret's placeholder may go: table of requests and verdicts."""

from __future__ import annotations

import gzip
import zlib

import pytest

from bottle_engine.bundle.config import SecretBinding
from bottle_engine.bundle.egress_policy import field_key
from bottle_engine.bundle.secret_echo import is_body_digest
from bottle_engine.bundle.secret_policy import (
    BODY_NOT_INSPECTABLE,
    DECODED_BODY_LIMIT,
    HASHED_HEADERS,
    MAX_CODINGS,
    PLACEHOLDER_IN_BODY,
    PLACEHOLDER_IN_HASHED_HEADER,
    PLACEHOLDER_IN_OTHER_HEADER,
    PLACEHOLDER_IN_TRAILERS,
    PLACEHOLDER_IN_URL,
    PLACEHOLDER_PLAIN_HTTP,
    PLACEHOLDER_WRONG_HOST,
    BodyRefused,
    bind_secrets,
    body_forms,
    check_request,
    check_trailers,
    intercepts,
)

TOKEN = "bb-placeholder-7f3a9c"
OTHER = "bb-placeholder-11aa22"
SECRETS = bind_secrets(
    [
        SecretBinding(
            "api_key",
            TOKEN,
            ("api.example.com", "*.example.org"),
            "/run/s/api_key",
            ("Authorization", "x-key"),
        ),
        SecretBinding("other", OTHER, ("other.example.net:8443",), "/run/s/other", ("X-Key",)),
    ]
)
AUTH = [("Authorization", f"Bearer {TOKEN}")]
OTHER_HDR = PLACEHOLDER_IN_OTHER_HEADER

# host, port, https, url, headers, body, allowed, rule, substituted secret names
CASES = [
    ("api.example.com", 443, True, "/v1", AUTH, b"", True, "", ["api_key"]),
    ("x.example.org", 443, True, "/v1", AUTH, b"", True, "", ["api_key"]),
    ("api.example.com", 443, True, "/v1", [("X-Other", "plain")], b"", True, "", []),
    (
        "api.example.com",
        443,
        True,
        "/v1",
        [("X-Key", f"{TOKEN},{TOKEN}")],
        b"",
        True,
        "",
        ["api_key"],
    ),
    ("other.example.net", 8443, True, "/", [("X-Key", OTHER)], b"", True, "", ["other"]),
    # header names in any case; the placeholder only in the headers its secret lists
    ("other.example.net", 8443, True, "/", [("x-KEY", OTHER)], b"", True, "", ["other"]),
    ("api.example.com", 443, True, "/", [("X-Amz-Meta-Note", TOKEN)], b"", False, OTHER_HDR, []),
    ("api.example.com", 443, True, "/", [*AUTH, ("User-Agent", TOKEN)], b"", False, OTHER_HDR, []),
    ("api.example.com", 443, True, "/", [(TOKEN, "x")], b"", False, OTHER_HDR, []),
    ("api.example.com", 443, True, "/", [("X_Key", TOKEN)], b"", False, OTHER_HDR, []),
    ("api.example.com", 443, True, "/", [("X-\u212aey", TOKEN)], b"", False, OTHER_HDR, []),
    ("other.example.net", 8443, True, "/", [("Authorization", OTHER)], b"", False, OTHER_HDR, []),
    # anywhere but a header to a bound host over TLS: refused
    ("evil.example.com", 443, True, "/", AUTH, b"", False, PLACEHOLDER_WRONG_HOST, []),
    ("example.org", 443, True, "/", AUTH, b"", False, PLACEHOLDER_WRONG_HOST, []),
    ("api.example.com", 8443, True, "/", AUTH, b"", False, PLACEHOLDER_WRONG_HOST, []),
    (
        "other.example.net",
        443,
        True,
        "/",
        [("X-Key", OTHER)],
        b"",
        False,
        PLACEHOLDER_WRONG_HOST,
        [],
    ),
    ("api.example.com", 443, True, "/", [("X-Key", OTHER)], b"", False, PLACEHOLDER_WRONG_HOST, []),
    ("api.example.com", 80, False, "/", AUTH, b"", False, PLACEHOLDER_PLAIN_HTTP, []),
    ("api.example.com", 443, True, f"/v1?key={TOKEN}", [], b"", False, PLACEHOLDER_IN_URL, []),
    ("api.example.com", 443, True, f"/keys/{TOKEN}", [], b"", False, PLACEHOLDER_IN_URL, []),
    (
        "api.example.com",
        443,
        True,
        "/v1",
        [],
        f"k={TOKEN}".encode(),
        False,
        PLACEHOLDER_IN_BODY,
        [],
    ),
    ("api.example.com", 443, True, "/v1", AUTH, TOKEN.encode(), False, PLACEHOLDER_IN_BODY, []),
]


@pytest.mark.parametrize(
    ("host", "port", "https", "url", "headers", "body", "allowed", "rule", "names"), CASES
)
def test_placeholder_table(
    host: str,
    port: int,
    https: bool,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
    allowed: bool,
    rule: str,
    names: list[str],
) -> None:
    verdict = check_request(SECRETS, host, port, https, url, headers, [body])
    assert (verdict.allowed, verdict.rule) == (allowed, rule), verdict.reason
    assert [s.name for s in verdict.substitute] == names


def test_refusal_names_the_secret_and_where_it_may_go() -> None:
    verdict = check_request(SECRETS, "evil.example.com", 443, True, "/", AUTH, [b""])
    assert "api_key" in verdict.reason
    assert "api.example.com" in verdict.reason


def test_a_header_refusal_names_the_header_and_the_fix() -> None:
    verdict = check_request(
        SECRETS,
        "api.example.com",
        443,
        True,
        "/",
        [("X-Amz-Meta-Note", TOKEN)],
        [b""],
        bottle="dev",
    )
    assert "'X-Amz-Meta-Note'" in verdict.reason and "Authorization, x-key" in verdict.reason
    assert verdict.fix is not None
    assert "add 'X-Amz-Meta-Note' to headers in [bottles.dev.secrets.api_key]" in verdict.fix


def test_placeholder_in_a_decoded_body_form_is_refused() -> None:
    verdict = check_request(
        SECRETS, "api.example.com", 443, True, "/", [], [b"\x1f\x8b", TOKEN.encode()]
    )
    assert verdict.rule == PLACEHOLDER_IN_BODY


@pytest.mark.parametrize(
    ("host", "port", "intercepted"),
    [
        ("api.example.com", 443, True),
        ("a.example.org", 443, True),
        ("example.org", 443, False),
        ("other.example.net", 8443, True),
        ("other.example.net", 443, False),
        ("unrelated.example.com", 443, False),
    ],
)
def test_only_hosts_bound_to_a_secret_are_intercepted(
    host: str, port: int, intercepted: bool
) -> None:
    assert intercepts(SECRETS, host, port) is intercepted


def test_a_secret_without_placeholder_is_ignored() -> None:
    assert bind_secrets([SecretBinding("x", "", ("api.example.com",), "/f")]) == ()


# --- bounded decoding of request bodies ---------------------------------------------------


def test_gzip_body_is_searched_decoded() -> None:
    raw = gzip.compress(b"token=bbph_x")
    assert body_forms(raw, "gzip") == [raw, b"token=bbph_x"]


def test_concatenated_gzip_members_are_all_decoded() -> None:
    raw = gzip.compress(b"first ") + gzip.compress(b"second")
    assert body_forms(raw, "gzip")[1] == b"first second"


def test_raw_deflate_is_decoded() -> None:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    raw = compressor.compress(b"hello") + compressor.flush()
    assert body_forms(raw, "deflate")[1] == b"hello"


def test_a_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (4 * 1024 * 1024))
    with pytest.raises(BodyRefused) as refused:
        body_forms(bomb, "gzip", limit=1024 * 1024)
    assert refused.value.rule == DECODED_BODY_LIMIT and "1048576 bytes" in refused.value.reason


def test_a_zstd_bomb_stops_at_the_limit() -> None:
    import zstandard

    bomb = zstandard.ZstdCompressor().compress(b"\0" * (4 * 1024 * 1024))
    with pytest.raises(BodyRefused) as refused:
        body_forms(bomb, "zstd", limit=1024 * 1024)
    assert refused.value.rule == DECODED_BODY_LIMIT


@pytest.mark.parametrize(("encoding", "body"), [("br", b"x"), ("gzip", b"not gzip"), ("x-y", b"x")])
def test_bodies_that_cannot_be_decoded_with_a_bound_are_refused(encoding: str, body: bytes) -> None:
    with pytest.raises(BodyRefused) as refused:
        body_forms(body, encoding)
    assert refused.value.rule == BODY_NOT_INSPECTABLE and encoding in refused.value.reason


def test_a_refused_coding_is_quoted_as_sent() -> None:
    """A refusal quoting a coding is scrubbed of real values; lower-cased, a real value with
    capitals in it would pass the scrubber unrecognised. Mixed-case known codings still decode."""
    with pytest.raises(BodyRefused) as refused:
        body_forms(b"x", "identity, Real-Value-9QZ")
    assert "'Real-Value-9QZ'" in refused.value.reason
    assert body_forms(gzip.compress(b"abc"), "GZip")[-1] == b"abc"


def test_identity_and_empty_bodies_are_searched_as_sent() -> None:
    assert body_forms(b"abc", "identity") == [b"abc"]
    assert body_forms(b"", "gzip") == [b""]


def test_a_placeholder_in_trailers_is_refused_wherever_it_goes() -> None:
    for trailers in ([("X-Key", TOKEN)], [("X-Sig", f"v1,{TOKEN}")], [(TOKEN, "x")]):
        verdict = check_trailers(SECRETS, trailers)
        assert (verdict.allowed, verdict.rule) == (False, PLACEHOLDER_IN_TRAILERS)
        assert "trailers" in verdict.reason
    assert check_trailers(SECRETS, [("X-Checksum", "abc")]).allowed
    assert check_trailers(SECRETS, []).allowed


def test_more_content_codings_than_the_bound_are_refused_undecoded() -> None:
    data = b"x"
    for _ in range(MAX_CODINGS):
        data = gzip.compress(data, mtime=0)
    assert body_forms(data, ", ".join(["gzip"] * MAX_CODINGS))[-1] == b"x"
    with pytest.raises(BodyRefused) as refused:
        body_forms(gzip.compress(data), ", ".join(["gzip"] * (MAX_CODINGS + 1)))
    assert refused.value.rule == BODY_NOT_INSPECTABLE and "content codings" in refused.value.reason


@pytest.mark.parametrize(
    "name", ["Sec-WebSocket-Key", "sec-websocket-key", " SEC-WEBSOCKET-KEY", "Sec_WebSocket_Key"]
)
def test_a_placeholder_in_a_header_the_server_hashes_back_is_refused(name: str) -> None:
    """A WebSocket server answers with SHA-1(Sec-WebSocket-Key + GUID): with the real value
    there, the agent could test guesses of it offline."""
    headers = [(name, f"{TOKEN}"), ("Authorization", f"Bearer {TOKEN}")]
    verdict = check_request(SECRETS, "api.example.com", 443, True, "/", headers, [b""])
    assert (verdict.allowed, verdict.rule) == (False, PLACEHOLDER_IN_HASHED_HEADER)
    assert "api_key" in verdict.reason


def test_a_websocket_key_of_its_own_beside_the_placeholder_passes() -> None:
    headers = [("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), *AUTH]
    verdict = check_request(SECRETS, "api.example.com", 443, True, "/", headers, [b""])
    assert verdict.allowed and [s.name for s in verdict.substitute] == ["api_key"]


def test_the_hashed_header_table_is_keyed_as_names_are_looked_up() -> None:
    assert HASHED_HEADERS and all(name == field_key(name) for name in HASHED_HEADERS)


@pytest.mark.parametrize(
    ("name", "digest"),
    [
        ("ETag", True),
        (b"content-md5", True),
        ("Repr-Digest", True),
        ("Content_Digest", True),
        ("x-amz-checksum-crc32c", True),
        ("X-Checksum-Sha256", True),
        ("Docker-Content-Digest", True),
        ("Content-Type", False),
        ("Last-Modified", False),
    ],
)
def test_fields_that_hash_the_body(name: str | bytes, digest: bool) -> None:
    assert is_body_digest(name) == digest
