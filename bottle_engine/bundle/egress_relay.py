"""What a tunnel carries, read from its first bytes, as pure code.

A CONNECT tunnel to an allowed host bound to no secret is relayed as bytes, without TLS
interception. But a shared front (a CDN, a cloud load balancer) that serves the allowed host
serves many other sites on the same addresses, and picks one by the name the client sends: the
TLS server name (SNI) of the ClientHello, or on plain HTTP the Host header of each request. A
tunnel to an allowed host on such a front, carrying another site's name, reached that site: the
allowlist named one host and the bytes went to any other on its front.

So the proxy reads every tunnel's first bytes before it relays any (`first_bytes`), and the
first bytes inside TLS it opened (a secret's host's, or every host's with `intercept =
"all"`), where mitmproxy's own guess relayed bytes not starting like its idea of HTTP raw:

* a TLS ClientHello (`TLS`): opened where the tunnel is intercepted; otherwise its SNI must
  name the CONNECT host, or be absent (the front's default site is not the agent's to choose),
  and the proxy parses it with mitmproxy and otherwise does not touch the TLS;
* an HTTP request (`HTTP`): handed to mitmproxy's HTTP layer, so that each request on the
  connection is judged as every request is (`egress_policy.check_names`); empty lines before
  the request line count as HTTP too (servers skip them), and so does a request line without a
  version whose target is a path or an absolute URL (HTTP/0.9, which some servers still route)
  and one split by any byte a server may take for whitespace (Python's http.server splits on
  a vertical tab, 0x1c or a no-break space: such a line was relayed, the Host after it read);
* a PROXY protocol header (`PROXY_HEADER`, v1 or v2): refused. It is no request line, but a
  front that accepts one where it comes skips it and routes the request after it by its Host;
  an agent has no other use for one;
* anything else (`RAW`, SSH, a database protocol, a server that speaks first) is relayed.

Until the bytes say which (`MORE`), nothing is relayed, for at most `MAX_CLIENT_HELLO` bytes of
a ClientHello or `MAX_REQUEST_LINE` of anything else (`TOO_LONG` past that: the tunnel is
closed). The line is read again as each piece arrives: the bound keeps that cost small.
"""

from __future__ import annotations

import re
from typing import Literal

Carried = Literal["tls", "http", "proxy-header", "raw", "more", "too-long"]
TLS: Carried = "tls"
PROXY_HEADER: Carried = "proxy-header"
HTTP: Carried = "http"
RAW: Carried = "raw"
MORE: Carried = "more"
TOO_LONG: Carried = "too-long"

# As much as the proxy buffers of a request head (egress_guards.MAX_REQUEST_HEAD); a ClientHello
# is a few KiB.
MAX_CLIENT_HELLO = 64 * 1024
# Servers refuse longer request lines (8 KiB is the usual limit).
MAX_REQUEST_LINE = 16 * 1024

TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # an HTTP method (RFC 9110 token)
_PATH_OR_URL = rb"(?:/|\*|[A-Za-z][A-Za-z0-9+.-]*://)"
# Whatever a server may split a request line on: Python's http.server uses str.split() (read as
# Latin-1), whose whitespace is wider than HTTP's (VT, FF, the separators 0x1c-0x1f, NEL, NBSP),
# and it skips whitespace before the method too.
_SPACE = rb"[ \t\x0b\x0c\x1c-\x1f\x85\xa0]"
_GAP = _SPACE + rb"+"
_LEAD = re.compile(rb"(?:[\r\n]|" + _SPACE + rb")*")
# A request line a server would read: method, target, then a version (or, HTTP/0.9, the line's
# end after a path or an absolute URL).
_REQUEST_LINE = re.compile(
    rb"%s%s(?:\S+%sHTTP/|%s\S*%s*\r?\n)" % (TOKEN, _GAP, _GAP, _PATH_OR_URL, _SPACE),
    re.IGNORECASE,
)
# A PROXY protocol header (haproxy.org's proxy-protocol.txt): v1 is a text line, v2 begins with
# this binary signature (empty lines first, which the request line's reading skips).
_PROXY_V1 = b"PROXY "
_PROXY_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
# The start of one, cut before the bytes that would tell.
_PARTIAL_LINE = re.compile(
    rb"(?:%s(?:%s(?:\S+(?:%s(?:H(?:T(?:T(?:P)?)?)?)?)?)?)?)?%s*\r?\Z" % (TOKEN, _GAP, _GAP, _SPACE),
    re.IGNORECASE,
)


def first_bytes(client: bytes, *, server_spoke: bool) -> Carried:
    """What a relayed tunnel carries, from what the client has sent so far (`client`), and
    whether the server has sent anything already (an HTTP or TLS server never speaks first)."""
    if not client:
        return RAW if server_spoke else MORE
    if client[:1] == b"\x16":
        if len(client) < 3:
            return MORE if client[1:2] in (b"", b"\x03") else RAW
        return TLS if client[1] == 0x03 and client[2] <= 0x03 else RAW
    if client.startswith(_PROXY_V2):
        return PROXY_HEADER
    start = _LEAD.match(client)
    line = client[start.end() if start else 0 :]
    if line.startswith(_PROXY_V1):
        return PROXY_HEADER
    if _PROXY_V2.startswith(client):
        return MORE
    if _REQUEST_LINE.match(line):
        return HTTP
    if b"\n" in line or server_spoke or _PARTIAL_LINE.match(line) is None:
        return RAW
    return TOO_LONG if len(client) > MAX_REQUEST_LINE else MORE
