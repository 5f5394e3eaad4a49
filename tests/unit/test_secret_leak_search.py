"""`probe`'s search for real secret values in what the agent can write (pure, streamed).

The agent chooses how much it writes: a sparse file of any length costs it nothing and tars to
its full length, so the places are read as streams and searched as they come."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

from bottle_engine.errors import CommandFailed
from bottle_engine.guest import SYSTEM_EXEC_ENV, SYSTEM_PATH
from bottle_engine.probes import find_secret_leaks, haystack_commands

VALUE = "real-secret-value-9f3c"


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_value_cut_between_any_two_reads_is_found() -> None:
    data = b"x" * 50 + VALUE.encode() + b"y" * 50
    for size in range(1, len(VALUE) + 2):
        found = find_secret_leaks([VALUE], [("/workspace", chunks_of(data, size))])
        assert found == ["/workspace"], size


def test_only_the_places_holding_a_value_are_named_and_every_place_is_read_whole() -> None:
    read: list[str] = []

    def place(name: str, data: bytes) -> Iterator[bytes]:
        yield from chunks_of(data, 7)
        read.append(name)

    found = find_secret_leaks(
        ["", "other-value", VALUE],
        [
            ("process environments", place("env", b"PATH=/bin\n" + VALUE.encode())),
            ("/tmp", place("tmp", b"nothing here")),
            ("/etc", place("etc", b"other-value" + b"z" * 100)),
        ],
    )
    assert found == ["process environments", "/etc"]
    assert read == ["env", "tmp", "etc"]


def test_no_value_to_look_for_finds_nothing() -> None:
    assert find_secret_leaks([""], [("/tmp", iter([VALUE.encode()]))]) == []


def test_a_place_larger_than_memory_is_searched_holding_one_read_at_a_time() -> None:
    """256 MiB of zeros, then the value: found while holding about one read (1 MiB) at once.
    Joined whole, as the search used to, the place alone takes 256 MiB."""
    block = bytes(1024 * 1024)

    def sparse_then_value() -> Iterator[bytes]:
        for _ in range(256):
            yield block
        yield VALUE.encode()

    tracemalloc.start()
    try:
        found = find_secret_leaks([VALUE], [("/workspace", sparse_then_value())])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == ["/workspace"]
    assert peak < 8 * 1024 * 1024, f"the search held {peak} bytes at once"


def test_an_endless_place_is_named_as_not_searched_and_the_places_after_it_are_not_started() -> (
    None
):
    started: list[str] = []

    def endless() -> Iterator[bytes]:
        started.append("/tmp")
        while True:
            yield b"\0" * 65536

    def later() -> Iterator[bytes]:
        started.append("/etc")
        yield VALUE.encode()

    found = find_secret_leaks([VALUE], [("/tmp", endless()), ("/etc", later())], seconds=0.2)

    assert found == [
        "/tmp (not searched to its end in 0.2 s)",
        "/etc (not searched to its end in 0.2 s)",
    ]
    assert started == ["/tmp"]


def test_a_place_whose_command_failed_is_named_as_not_searched_whole() -> None:
    """A file the reader could not open, a program missing from the image: the command ends
    with a failure after writing what it could, which holds no value; the place may."""

    def failing() -> Iterator[bytes]:
        yield b"what could be read"
        raise CommandFailed("tar exited with status 2")

    found = find_secret_leaks([VALUE], [("/workspace", failing()), ("/tmp", iter([b"clean"]))])
    assert found == ["/workspace (not all of it could be searched: tar exited with status 2)"]


def test_no_program_of_the_search_is_found_through_the_sandboxs_path() -> None:
    """The sandbox's PATH may name a directory the agent writes: the first program is named by
    its path and sets a PATH of its own (and no other variable) for the rest."""
    for _, _, argv in haystack_commands():
        assert argv[:3] == ["/usr/bin/env", "-i", f"PATH={SYSTEM_PATH}"], argv
        assert not any(part.startswith("/home") for part in SYSTEM_PATH.split(":"))
    assert SYSTEM_EXEC_ENV["PATH"] == SYSTEM_PATH and SYSTEM_EXEC_ENV["LD_PRELOAD"] == ""
