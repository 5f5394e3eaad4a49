"""Real secret values sent back by a bound host are put back to their placeholders."""

from __future__ import annotations

import json
import random
import re
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bottle_engine.bundle.secret_echo import (
    MIDDLE_PIECE,
    MIN_PIECE,
    Scrubber,
    WebSocketScrubber,
    value_forms,
)
from tests.bundle_helpers import (
    JSON_FLAVOURS,
    URL_FLAVOURS,
    websocket_frame,
    websocket_messages,
)

VALUE = 'sk-live/abc+def=ghi"q'
PLACEHOLDER = "bbph_0123456789abcdef"


def scrubber() -> Scrubber:
    return Scrubber.for_values([(VALUE, PLACEHOLDER), ("other-real-value", "bbph_other")])


def test_value_forms_cover_json_escaping_and_percent_encoding_in_both_cases() -> None:
    forms = value_forms(VALUE)
    assert VALUE.encode() in forms
    assert json.dumps(VALUE)[1:-1].encode() in forms
    assert b"sk-live%2Fabc%2Bdef%3Dghi%22q" in forms
    assert b"sk-live%2fabc%2bdef%3dghi%22q" in forms


@pytest.mark.parametrize("flavour", sorted({**JSON_FLAVOURS, **URL_FLAVOURS}))
def test_a_value_as_web_stacks_quote_it_is_put_back_whole(flavour: str) -> None:
    """PHP's '\\/', .NET's '\\u002B', Go's url.PathEscape: runs between escapes the scrubber
    did not know were left in clear (tests/unit/test_egress_echo_encoders.py, live)."""
    value = "Zm9v/YmFy+YmF6~K7M&DENG/bPx+RfiCY=="
    quote = {**JSON_FLAVOURS, **URL_FLAVOURS}[flavour]
    scrub = Scrubber.for_values([(value, PLACEHOLDER)])
    expected = quote("token ") + PLACEHOLDER + "."
    assert scrub.scrub(quote(f"token {value}.").encode()) == expected.encode()


def test_a_whole_body_is_scrubbed_in_every_form() -> None:
    body = (
        f"token {VALUE}; json {json.dumps({'t': VALUE})}; url sk-live%2fabc%2bdef%3dghi%22q"
    ).encode()
    out = scrubber().scrub(body)
    assert b"sk-live" not in out and out.count(PLACEHOLDER.encode()) == 3


def test_text_scrubbing_leaves_other_text_alone() -> None:
    assert scrubber().scrub_text(f"Bearer {VALUE}") == f"Bearer {PLACEHOLDER}"
    assert scrubber().scrub_text("caf\udce9 ok") == "caf\udce9 ok"


def _stream(chunks: list[bytes]) -> bytes:
    stream = scrubber().stream()
    return b"".join(stream(chunk) for chunk in [*chunks, b""])


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=12), st.binary(max_size=60))
def test_a_value_split_anywhere_across_chunks_is_still_replaced(
    cuts: list[int], noise: bytes
) -> None:
    body = noise + VALUE.encode() + b" middle " + VALUE.encode() + noise
    points = sorted({min(c, len(body)) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    out = _stream([c for c in chunks if c])
    assert VALUE.encode() not in out
    assert out == scrubber().scrub(body)


def test_a_stream_without_values_is_not_held_back() -> None:
    stream = scrubber().stream()
    assert stream(b'data: {"delta": "hi"}\n\n') == b'data: {"delta": "hi"}\n\n'


def test_a_stream_of_lines_goes_on_line_by_line() -> None:
    """No header value holds a line break, so no value runs across one: what ends in one goes
    on at once (server-sent events, JSON lines); the rest of a read waits for the next, as a
    value may begin there."""
    stream = scrubber().stream()
    assert stream(b"data: 1\n\ndata: sk-li") == b"data: 1\n\n"
    assert stream(b've/abc+def=ghi"q\n') == f"data: {PLACEHOLDER}\n".encode()
    assert stream(b"tail") == b""
    assert stream(b"") == b"tail"  # the end: what waits is no value


def test_what_a_stream_holds_back_does_not_show_whether_it_ends_like_a_value() -> None:
    """A bound host that streams back what the agent sent (an echo, a model repeating its
    prompt): if what waits for the next read were only a tail that begins a value, the agent
    would see, by when its own words come back, how its guess of the value begins."""
    sizes = {
        guess: len(scrubber().stream()(b"x" * 40 + guess))
        for guess in (VALUE.encode()[:6], b"zzzzzz")
    }
    assert len(set(sizes.values())) == 1, sizes


@pytest.mark.parametrize("relay", ["stream", "websocket"])
def test_how_much_waits_does_not_show_how_long_a_value_is(relay: str) -> None:
    """What waits for the next read is as long for a short value as for a long one."""
    waited = set()
    for value in ("s" * 20, "l" * 300):
        scrub = Scrubber.for_values([(value, "bbph_0123456789abcdef")])
        data = b"x" * 4000
        if relay == "stream":
            out = scrub.stream()(data)
        else:  # one fragment of a message under way (its frame head as long either way)
            out = WebSocketScrubber(scrub)(websocket_frame(data, fin=False))
        waited.add(len(data) - len(out))
    assert len(waited) == 1, waited


def test_a_value_holding_a_line_break_is_still_replaced_across_chunks() -> None:
    """Should a value hold a line break after all, a line break ends nothing."""
    stream = Scrubber.for_values([("line one\nline two", "bbph_lines")]).stream()
    out = stream(b"say line one\n") + stream(b"line two\n") + stream(b"")
    assert out == b"say bbph_lines\n"


def _cut(form: bytes, start: int, size: int) -> bytes:
    """A piece of `form` that a scrubber must find: its first or last MIN_PIECE bytes or more,
    or 2 * MIDDLE_PIECE - 1 bytes or more of it anywhere."""
    piece = form[start : start + size]
    if len(piece) >= 2 * MIDDLE_PIECE - 1:
        return piece
    return form[: max(size, MIN_PIECE)] if start % 2 else form[-max(size, MIN_PIECE) :]


# As long as an API key with its prefix (percent-encoded, longer still): pieces from its middle.
LONG_VALUE = "sk-ant-api03-Xq7_Lm2-Vb9Rt4Kp8Zn1Wc6Yd3Hf5Gj0Ns2Ue7Ia4Ob9Pq1Rs8Tu3Vw6"


@given(
    st.sampled_from([VALUE, LONG_VALUE]),
    st.integers(min_value=0, max_value=len(LONG_VALUE)),
    st.integers(min_value=MIN_PIECE, max_value=len(LONG_VALUE)),
    st.integers(min_value=0, max_value=20),
    st.binary(max_size=40),
    st.integers(min_value=0, max_value=120),
)
def test_a_value_a_server_cut_is_put_back_whole(
    value: str, start: int, size: int, which: int, noise: bytes, split: int
) -> None:
    """A server quoting a header cut to a length gave the agent, who pads that header so that
    the cut falls where it likes, all of the value but its last bytes ("real-corner-value-9e3"
    of "real-corner-value-9e31b7" in test_egress_echo_corners.py)."""
    forms = value_forms(value)
    scrub = Scrubber.for_values([(value, PLACEHOLDER)])
    body = noise + b"bad header: " + _cut(forms[which % len(forms)], start, size) + b"..." + noise
    out = scrub.scrub(body)
    assert b"".join(map(scrub.stream(), [body[:split], body[split:], b""])) == out
    assert PLACEHOLDER.encode() in out
    for known in forms:
        for at in range(len(known) - MIN_PIECE + 1):
            assert known[at : at + MIN_PIECE].lower() not in out.lower()


@given(st.sampled_from(sorted(set(VALUE))))
def test_where_the_placeholder_stops_never_says_whether_a_guess_was_right(guess: str) -> None:
    """The agent gets its own text back from the bound host with a piece of the value in it
    (the first bytes, say, which some tokens share) and a guess of the next byte: the answer is
    the same whether the guess is right or not (any byte the value holds, against the right
    one)."""
    known = VALUE[:MIN_PIECE]
    answers = {
        scrubber().scrub(f"echo: {known}{next_byte} and some more text".encode())
        for next_byte in (guess, VALUE[MIN_PIECE])
    }
    assert len(answers) == 1 and PLACEHOLDER.encode() in answers.pop()


def test_text_that_only_begins_like_a_value_loses_only_its_token() -> None:
    """A token's public prefix (the first bytes of every key of its kind) in an answer that
    holds no value, as a model writing an example key: the placeholder goes over the run of
    bytes the value could hold, not over what follows."""
    scrub = Scrubber.for_values([("sk-ant-api03-" + "q7Lm2Vb9Rt4Kp8Zn1Wc6", "PH")])
    out = scrub.scrub(b'export ANTHROPIC_API_KEY="sk-ant-api03-abc123"\nthen run it\n')
    assert out == b'export ANTHROPIC_API_KEY="PH"\nthen run it\n'


def test_no_secrets_means_nothing_changes() -> None:
    empty = Scrubber.for_values([])
    data = bytes(random.Random(1).randbytes(1000))
    assert empty.scrub(data) == data and empty.stream()(data) == data


def test_a_value_in_a_url_the_bound_host_built_is_found() -> None:
    """A redirect's Location or a link carrying the value in its query, as the usual encoders
    write it: Python's quote() keeps '/', quote_plus() and urlencode() write a space as '+',
    JavaScript's encodeURIComponent keeps !'()*. Each left the value unrecognised."""
    value = "tok/en+a b!c(d)*e'f"
    scrubber = Scrubber.for_values([(value, "PH")])
    written = [
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
        urllib.parse.urlencode({"t": value})[2:],
        urllib.parse.quote(value, safe="-_.!~*'()"),  # encodeURIComponent
    ]
    for text in written:
        for case in (text, re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), text)):
            location = f"Location: https://x.test/cb?token={case}&next=/".encode()
            assert scrubber.scrub(location) == b"Location: https://x.test/cb?token=PH&next=/"


def test_a_value_a_server_lower_or_upper_cased_is_found() -> None:
    """The agent chooses the header the value goes in: one whose value a server (or a proxy in
    front of it) folds to lower case when it quotes it, as tokens like codings and media
    types are ("unsupported content-encoding: ..."). A mixed-case value came back with its
    letters all there."""
    value = "ghp_Ab1Cd2Ef3Gh4"
    scrubber = Scrubber.for_values([(value, "PH")])
    for folded in (value.lower(), value.upper()):
        assert (
            scrubber.scrub(f"unsupported coding '{folded}'".encode()) == b"unsupported coding 'PH'"
        )


def test_a_value_quoted_by_repr_is_found() -> None:
    """mitmproxy's parser errors quote what the upstream sent as repr() of bytes."""
    scrubber = Scrubber.for_values([("tok\\en\u00e9", "PH")])
    quoted = repr(b"X-Seen: " + "tok\\en\u00e9".encode())
    assert scrubber.scrub_text(quoted) == repr(b"X-Seen: ")[:-1] + "PH'"


# --------------------------------------------------------------------------- WebSocket


def _relayed(frames: bytes, cuts: list[int]) -> bytes:
    """What goes on to the agent when `frames` arrive cut at `cuts` (reads of the proxy)."""
    relay = WebSocketScrubber(scrubber())
    points = sorted({min(c, len(frames)) for c in cuts})
    pieces = [frames[a:b] for a, b in zip([0, *points], [*points, len(frames)], strict=True)]
    return b"".join(relay(piece) for piece in pieces if piece)


@given(
    st.lists(st.integers(min_value=0, max_value=300), max_size=12),
    st.integers(min_value=1, max_value=len(VALUE) - 1),
)
def test_a_value_cut_between_fragments_and_reads_is_still_replaced(
    cuts: list[int], split: int
) -> None:
    """The server cuts the value between two fragments of one message (a frame header between
    its halves, which a raw-byte scrubber does not see through), a ping between them, and the
    proxy reads the bytes in arbitrary pieces."""
    value = VALUE.encode()
    frames = (
        websocket_frame(b"token " + value[:split], opcode=1, fin=False)
        + websocket_frame(b"ping " + value, opcode=9)
        + websocket_frame(value[split:] + b" end", opcode=0)
        + websocket_frame(b"second " + value, opcode=2)
    )
    out = _relayed(frames, cuts)
    assert websocket_messages(out) == [
        f"ping {PLACEHOLDER}".encode(),
        f"token {PLACEHOLDER} end".encode(),
        f"second {PLACEHOLDER}".encode(),
    ]


@given(
    st.lists(st.integers(min_value=0, max_value=120), max_size=8),
    st.lists(st.integers(min_value=1, max_value=60), min_size=2, max_size=2),
)
def test_a_text_message_cut_inside_its_characters_comes_out_whole(
    cuts: list[int], splits: list[int]
) -> None:
    """Fragments of a text message may cut a character in two (RFC 6455 5.6), and so may the
    proxy's reads and what it holds back: the text the agent gets is the text sent, scrubbed."""
    text = ("é ü " + VALUE + " 日本").encode()
    a, b = sorted(splits)
    frames = (
        websocket_frame(text[:a], fin=False)
        + websocket_frame(text[a:b], opcode=0, fin=False)
        + websocket_frame(text[b:], opcode=0)
    )
    assert websocket_messages(_relayed(frames, cuts)) == [
        text.replace(VALUE.encode(), PLACEHOLDER.encode())
    ]


def test_a_message_that_arrives_whole_goes_on_whole() -> None:
    """Held-back bytes at the end of an echoed message would tell the agent that it ends like
    the value (a byte-by-byte oracle): the message's end sends them with it."""
    frame = websocket_frame(b"guess " + VALUE.encode()[:5])
    assert _relayed(frame, []) == frame


def test_a_fragment_held_back_does_not_show_whether_it_ends_like_a_value() -> None:
    """A message under way goes on read by read, less what could begin a value; if how much
    is held back depended on whether the fragment's end begins a value, an echo of the agent's
    own guesses (one fragment per read) would tell it the value a byte at a time."""
    sizes = {
        guess: len(_relayed(websocket_frame(b"x" * 40 + guess, fin=False), []))
        for guess in (VALUE.encode()[:6], b"zzzzzz")
    }
    assert len(set(sizes.values())) == 1, sizes


@pytest.mark.parametrize(
    ("opcode", "payload"),
    [
        (9, b"ping " + VALUE.encode()),
        (10, b"pong " + VALUE.encode()),
        (8, b"\x03\xe8bye " + VALUE.encode()),  # a close frame's reason (code 1000)
    ],
)
def test_a_control_frame_is_scrubbed_whole(opcode: int, payload: bytes) -> None:
    """Ping, pong and close frames from the host, each cut between reads; one interleaved in
    a fragmented message."""
    frames = (
        websocket_frame(b"part " + VALUE.encode()[:4], fin=False)
        + websocket_frame(payload, opcode=opcode)
        + websocket_frame(VALUE.encode()[4:], opcode=0)
    )
    out = _relayed(frames, [3, 12, 31])
    assert VALUE.encode() not in out
    messages = websocket_messages(out)
    assert messages[0] == payload.replace(VALUE.encode(), PLACEHOLDER.encode())
    if opcode != 8:  # nothing goes on after a close
        assert messages[1] == f"part {PLACEHOLDER}".encode()


def test_a_huge_declared_length_holds_back_no_more_than_the_hold() -> None:
    """A frame that declares 2**62 bytes is relayed as it comes; the proxy keeps only what
    could begin a value (`Scrubber.hold` bytes), not the frame."""
    relay = WebSocketScrubber(scrubber())
    out = relay(bytes([0x82, 127]) + (1 << 62).to_bytes(8, "big"))
    sent = 0
    for _ in range(64):
        piece = bytes([sent % 251]) * 65536
        sent += len(piece)
        out += relay(piece)
    assert len(out) >= sent - scrubber().hold


def test_bytes_that_are_no_plain_websocket_close_the_relay() -> None:
    """What cannot be read as frames of an unextended WebSocket, as a server sends them, ends
    the relay with a close frame (protocol error); nothing after it goes on."""
    masked = bytes([0x81, 0x85]) + b"\x01\x02\x03\x04" + b"x" * 5  # a server must not mask
    bad = [
        bytes([0xC1, 5]) + b"xxxxx",  # RSV1: permessage-deflate never agreed
        bytes([0x91, 5]) + b"xxxxx",  # RSV3
        b"seen: " + VALUE.encode(),  # not frames at all
        websocket_frame(b"x", opcode=0),  # a continuation with no message
        websocket_frame(b"x", opcode=3),  # a reserved opcode
        websocket_frame(b"x", opcode=9, fin=False),  # a fragmented ping
        bytes([0x89, 126, 0, 126]) + b"x" * 126,  # a ping longer than 125 bytes
        bytes([0x82, 127, 0x80]) + bytes(7) + b"x",  # a 64-bit length with its top bit set
        masked,
    ]
    for frames in bad:
        relay = WebSocketScrubber(scrubber())
        out = relay(websocket_frame(b"fine") + frames)
        fine, closing = websocket_messages(out)
        assert fine == b"fine" and closing.startswith(b"\x03\xea"), (frames, out)  # 1002
        assert relay(websocket_frame(b"later")) == b""


def _spans_simple(scrub: Scrubber, data: bytes) -> list[tuple[int, int, bytes]]:
    """`Scrubber.spans` as first written: every hit expanded byte by byte."""
    folded, found = data.lower(), []
    for piece, offset, size, alphabet, placeholder in scrub.anchors:
        hit = folded.find(piece)
        while hit != -1:
            start, end = hit, hit + len(piece)
            first, last = max(hit - offset, 0), min(hit - offset + size, len(data))
            while start > first and folded[start - 1] in alphabet:
                start -= 1
            while end < last and folded[end] in alphabet:
                end += 1
            found.append((start, end, placeholder))
            hit = folded.find(piece, hit + 1)
    spans: list[tuple[int, int, bytes]] = []
    for start, end, placeholder in sorted(found):
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end), spans[-1][2])
        else:
            spans.append((start, end, placeholder))
    return spans


_ECHO_PARTS = [VALUE.encode()[:8], VALUE.encode()[-8:], VALUE.upper().encode()[2:14], b"%2F", b" "]


@given(st.lists(st.sampled_from(_ECHO_PARTS) | st.binary(max_size=12), max_size=40))
def test_spans_are_those_every_hit_expanded_byte_by_byte_finds(parts: list[bytes]) -> None:
    scrub = scrubber()
    data = b"".join(parts)
    assert scrub.spans(data) == _spans_simple(scrub, data)


def test_an_echo_of_pieces_over_and_over_costs_a_few_steps_per_form_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each hit expanded on its own made a body of touching pieces cost a Python step per byte
    per hit: 30 s a MiB. Here steps (`_reach`) are counted, not time."""
    import bottle_engine.bundle.secret_echo as module

    steps = 0
    reach = module._reach

    def counted(*args: int | bytes) -> int:
        nonlocal steps
        steps += 1
        return reach(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "_reach", counted)
    scrub = scrubber()
    data = (VALUE.encode()[:8] + VALUE.encode()[-8:]) * 4096
    assert scrub.scrub(data).count(PLACEHOLDER.encode()) == 1
    assert steps <= 4 * len(data) // len(VALUE) * len(scrub.anchors)


def test_a_stream_of_touching_pieces_is_not_held_back_whole() -> None:
    """A span across what waits used to wait whole: pieces echoed over and over held all of a
    body back and scrubbed it again at every chunk (a square cost, 55 s for 256 KiB)."""
    scrub = scrubber()
    stream = scrub.stream()
    echo = VALUE.encode()[:12] * 2000
    out = b"".join(stream(echo[at : at + 4096]) for at in range(0, len(echo), 4096))
    assert len(stream.pending) <= scrub.hold
    out += stream(b"")
    assert out == scrub.scrub(echo) == PLACEHOLDER.encode()


@given(st.lists(st.sampled_from(_ECHO_PARTS) | st.binary(max_size=12), max_size=60), st.data())
def test_a_stream_scrubs_as_the_whole_body_does(parts: list[bytes], data: st.DataObject) -> None:
    scrub = scrubber()
    body = b"".join(parts)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(len(body) - 1, 1)), max_size=6))))
    stream = scrub.stream()
    ends = zip([0, *cuts], [*cuts, len(body)], strict=True)
    out = b"".join(stream(body[a:b]) for a, b in ends if a < b)  # b"" ends the stream
    out += stream(b"")
    for form, _ in scrub.replacements:
        assert form not in out
    for piece, *_ in scrub.anchors:
        assert piece not in out.lower()


def test_a_cut_echo_in_websocket_messages_is_put_back() -> None:
    """Before, a data message was searched for whole forms only: a value the host cut (its
    first bytes, across fragments) reached the agent."""
    head = VALUE.encode()[:12]
    frames = (
        websocket_frame(b"error: " + head[:5], fin=False)
        + websocket_frame(head[5:] + b" (cut)", opcode=0)
        + websocket_frame(b"tail: " + VALUE.encode()[-9:], opcode=2)
    )
    out = websocket_messages(WebSocketScrubber(scrubber())(frames))
    assert out == [b"error: " + PLACEHOLDER.encode() + b" (cut)", b"tail: " + PLACEHOLDER.encode()]
