"""Attacks on the Egress view's Allow: a hostile repository's bottle.toml, or the agent's host
names in the audit log, trying to make one click widen more than the host that was refused."""

from __future__ import annotations

import re
import tomllib

import pytest

from bottle_engine.bundle.audit import AuditEntry
from bottle_engine.errors import BottleError
from bottle_lsp.allow_edit import LineEdit, line_edit, with_allowed
from bottle_lsp.egress_view import aggregate, allow_entry


def client_applies(text: str, change: LineEdit) -> str:
    """What an LSP client (VS Code) makes of a whole-line edit: it ends lines at \\n, \\r\\n
    and \\r only (LSP 3.17, "Text Documents"), whatever else Unicode calls a line break."""
    lines = re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text)
    return "".join(lines[: change.start]) + change.text + "".join(lines[change.end :])


# Six characters Python's str.splitlines breaks at and TOML allows in a comment: the edit
# computed with splitlines lands six lines too far down, in the secret's `hosts`.
BREAKS = "\u2028\u2029\x85\u2028\u2029\x85"
HOSTILE = f"""\
[agents.dev]
bottle = "web"

[bottles.web]  # the team's bottle{BREAKS}
backend = "docker"

[bottles.web.egress]
allow = [
    "upstream.test",
]

[bottles.web.secrets.TOKEN]
from_env = "TOKEN"
hosts = [
    "upstream.test",
]
"""


def test_unicode_line_breaks_cannot_move_allow_into_a_secrets_hosts() -> None:
    new = with_allowed(HOSTILE, "web", "stranger.test")
    assert new is not None
    result = tomllib.loads(client_applies(HOSTILE, line_edit(HOSTILE, new)))
    web = result["bottles"]["web"]
    assert web["egress"]["allow"] == ["upstream.test", "stranger.test"]
    assert web["secrets"]["TOKEN"]["hosts"] == ["upstream.test"]  # the secret stays bound


@pytest.mark.parametrize("mark", ["\u2028", "\u2029", "\x85"])
@pytest.mark.parametrize("where", ["comment", "string"])
@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_the_edit_is_exact_whatever_line_breaks_the_manifest_holds(
    mark: str, where: str, end: str
) -> None:
    note = f'note = "a{mark}b"' if where == "string" else f"# a{mark}b"
    text = f'[bottles.web]\n{note}\n\n[bottles.web.egress]\nallow = ["upstream.test"]\n'
    text = text.replace("\n", end)
    new = with_allowed(text, "web", "stranger.test")
    assert new is not None
    assert client_applies(text, line_edit(text, new)) == new


@pytest.mark.parametrize(
    "host",
    [
        "stranger.test\n",
        'stranger.test"]\nask = false\n["',
        "stranger.test\u2028x",
        "*.test",
        "*",
        "stranger.test.",  # the view strips the dot; Allow adds the name without it
        "STRANGER.test",
        "xn--bcher-kva.test",  # punycode is an exact ASCII name: allowed as written
        "b\u00fccher.test",  # the unencoded IDN is not
        "\u212aelvin.test",  # KELVIN SIGN lowers to an ASCII k
        "a" * 64 + ".test",
        ".".join(["a" * 63] * 4) + ".test",  # longer than 253
        "stranger.test:443",
        "stranger.test:22:80",
        "10.0.0.1",
        "[::1]",
        "::1",
        "0x7f000001",
        "localhost",
    ],
)
def test_allow_of_an_agent_chosen_name_adds_at_most_that_exact_host(host: str) -> None:
    row = aggregate([_refused(host)]).sorted_rows()[0]
    entry = row.allow_entry
    if entry is None:
        return
    assert re.fullmatch(r"[a-z0-9.-]+(:[0-9]+)?", entry), entry
    assert entry.split(":")[0] == row.host
    manifest = '[bottles.web]\nbackend = "docker"\n'
    new = with_allowed(manifest, "web", entry)
    assert new is not None
    allow = tomllib.loads(new)["bottles"]["web"]["egress"]["allow"]
    assert allow == [entry]
    assert not any(ch in entry for ch in "*/[]")


def test_an_ip_that_looks_like_a_name_is_still_an_ip_for_allow() -> None:
    # "0x7f000001" and "localhost" pass the host-name syntax; the proxy refuses what they
    # resolve to (loopback) by an address rule, which is not one Allow offers to lift.
    for host in ("0x7f000001", "localhost"):
        refused = _refused(host, rule="address-not-public")
        assert aggregate([refused]).sorted_rows()[0].allow_entry is None


def test_allow_entry_rejects_every_wider_form_even_when_called_directly() -> None:
    for host, port in [("*.test", 443), ("test", 443), ("10.0.0.0/8", 443), ("a.test/x", 80)]:
        entry = allow_entry(host, port)
        assert entry is None or entry == host
    for bad in ["*.test", "10.0.0.0/8", "1.2.3.4", "a.test\n", " a.test", "a.test,b.test"]:
        with pytest.raises(BottleError):
            with_allowed('[bottles.web]\nbackend = "docker"\n', "web", bad)


@pytest.mark.parametrize(
    "text",
    [
        'bottles = { web = { backend = "docker" } }\n',
        "bottles = { web = { egress = { ask = true } } }\n",
        '[bottles]\nweb.backend = "docker"\n',  # tomlkit would add a top-level [web.egress]
        "[bottles]\nweb.egress.ask = true\n",
        'bottles.web.backend = "docker"\n',
        "[bottles.web]\negress.ask = true\n",
    ],
)
def test_every_layout_gets_exactly_the_entry_or_a_clear_error(text: str) -> None:
    """Inline tables and dotted keys: the edit adds the entry to this bottle's allow and
    changes nothing else, or is refused with a BottleError (never a crash, never elsewhere)."""
    try:
        new = with_allowed(text, "web", "stranger.test")
    except BottleError as exc:
        assert "by hand" in str(exc.fix)
        return
    assert new is not None
    expected = tomllib.loads(text)
    expected["bottles"]["web"].setdefault("egress", {})["allow"] = ["stranger.test"]
    assert tomllib.loads(client_applies(text, line_edit(text, new))) == expected


def _refused(host: str, rule: str = "default-deny") -> AuditEntry:
    return AuditEntry.from_dict(
        {
            "time": "2026-11-30T04:00:00.000+00:00",
            "method": "GET",
            "host": host,
            "port": 443,
            "decision": "deny",
            "rule": rule,
            "reason": "",
            "kind": "http",
        }
    )
