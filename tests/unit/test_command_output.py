"""Reading a command the agent can write into: the end of its output, and never past a deadline."""

from __future__ import annotations

import os
import time

import pytest

from bottle_engine.command_output import HELD_OPEN, Tail, drain, read_before
from bottle_engine.errors import CommandFailed


def test_a_tail_keeps_the_last_bytes_whatever_the_chunks() -> None:
    tail = Tail(5)
    for chunk in (b"abc", b"", b"defghij", b"k"):
        tail.write(chunk)
    assert tail.data == b"ghijk"


def test_drain_reads_every_output_to_its_end() -> None:
    out, err = os.pipe(), os.pipe()
    os.write(out[1], b"to stdout")
    os.write(err[1], b"to stderr")
    os.close(out[1])
    os.close(err[1])
    got: dict[str, bytes] = {"out": b"", "err": b""}
    sinks = {
        out[0]: lambda data: got.update(out=got["out"] + data),
        err[0]: lambda data: got.update(err=got["err"] + data),
    }
    try:
        assert drain(sinks, seconds=30)
    finally:
        os.close(out[0])
        os.close(err[0])
    assert got == {"out": b"to stdout", "err": b"to stderr"}


def test_drain_stops_at_its_deadline_when_an_output_is_held_open() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"and then nothing")
    seen = Tail(100)
    try:
        assert not drain({read_end: seen.write}, seconds=0.5)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert seen.data == b"and then nothing"


def test_read_before_stops_at_its_deadline_though_bytes_are_waiting() -> None:
    """A command that writes without end is not read past the deadline either: bytes ready
    to read do not make up for a deadline that has come."""
    reader, writer = os.pipe()
    try:
        os.write(writer, b"y\n" * 1000)
        with pytest.raises(CommandFailed, match=HELD_OPEN):
            read_before(reader, time.monotonic() - 1)
        assert read_before(reader, time.monotonic() + 30).startswith(b"y\n")
    finally:
        os.close(reader)
        os.close(writer)
