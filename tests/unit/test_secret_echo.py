"""Real secret values sent back by a bound host are put back to their placeholders."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st

from bottle_engine.bundle.secret_echo import Scrubber, value_forms

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


def test_only_a_possible_start_of_a_value_waits_for_the_next_chunk() -> None:
    stream = scrubber().stream()
    assert stream(b"abc sk-li") == b"abc "
    assert stream(b've/abc+def=ghi"q end') == f"{PLACEHOLDER} end".encode()
    assert stream(b"tail sk-") == b"tail "
    assert stream(b"") == b"sk-"  # the end: a prefix alone is no value


def test_no_secrets_means_nothing_changes() -> None:
    empty = Scrubber.for_values([])
    data = bytes(random.Random(1).randbytes(1000))
    assert empty.scrub(data) == data and empty.stream()(data) == data


def test_a_value_quoted_by_repr_is_found() -> None:
    """mitmproxy's parser errors quote what the upstream sent as repr() of bytes."""
    scrubber = Scrubber.for_values([("tok\\en\u00e9", "PH")])
    quoted = repr(b"X-Seen: " + "tok\\en\u00e9".encode())
    assert scrubber.scrub_text(quoted) == repr(b"X-Seen: ")[:-1] + "PH'"
