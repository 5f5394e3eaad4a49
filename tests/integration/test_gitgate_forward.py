"""Invariant 4, the bytes the gate forwards: the scan reads each pushed object's content, so
the pack that reaches the upstream must hold nothing but that content. A pack's encoding of an
object is the sender's free choice: where a deflate stream cuts its blocks, which bytes a delta
copies and which it inserts. Forwarded as the agent built it, that choice is a channel of its
own, past every scan: here the key is spelt by the block lengths of a blob's deflate stream, or
by the insert lengths of a delta, around a file of harmless text. A forge keeps a pushed pack as
it came and serves its objects to every clone in the same encoding.

The real gate on loopback, a pack spoken by hand, a file:// upstream that keeps the packs
pushed to it (``receive.unpackLimit=1``; git keeps any push of 100 objects or more anyway).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gate_attacks import (
    AWS_KEY,
    CLEAN_TEXT,
    KEY_IN_DEFLATE_BLOCKS,
    key_in_deflate_blocks_script,
)
from tests.integration.test_gitgate_attacks import (
    KIB,
    Gate,
    _pack_entry_header,
    _varint,
    raw_push,
    start_gate,
)
from tests.integration.test_gitgate_local import git

KEY = AWS_KEY.encode()
TEXT = CLEAN_TEXT  # every piece of each encoding below is as long as one byte of the key


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    for gate in start_gate(tmp_path, max_push_bytes=512 * KIB):
        git(gate.upstream, "config", "receive.unpackLimit", "1")
        yield gate


def _object_id(kind: str, data: bytes) -> bytes:
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data).digest()


def insert_delta(base_size: int, data: bytes, lengths: bytes) -> bytes:
    """A git delta that builds `data` from nothing of its base: an insert per byte of
    `lengths` (an insert of n < 128 bytes is the byte n, then those bytes)."""
    delta = bytearray(_varint(base_size) + _varint(len(data)))
    position = 0
    for length in lengths:
        delta += bytes([length]) + data[position : position + length]
        position += length
    assert position == len(data)
    return bytes(delta)


def pack_of(entries: list[tuple[int, int, bytes]]) -> bytes:
    """A pack of (type, size, entry body after the header) entries."""
    body = b"".join(_pack_entry_header(kind, size) + rest for kind, size, rest in entries)
    pack = b"PACK" + struct.pack(">II", 2, len(entries)) + body
    return pack + hashlib.sha1(pack).digest()


def commit_over(gate: Gate, path: str, blob: bytes) -> tuple[bytes, bytes, str]:
    """(tree, commit) objects that set `path` (README.md, or a name after it) to `blob` on the
    upstream's main, and the commit's id."""
    main = git(gate.agent, "rev-parse", "origin/main").stdout.strip()
    tree = b"100644 README.md\0" + _object_id("blob", b"hello\n")  # main's tree (seed_upstream)
    if path == "README.md":
        tree = b""
    tree += f"100644 {path}\0".encode() + _object_id("blob", blob)
    commit = (
        f"tree {_object_id('tree', tree).hex()}\nparent {main}\n"
        "author A <a@bottle.invalid> 1700000000 +0000\n"
        "committer A <a@bottle.invalid> 1700000000 +0000\n\nnotes\n"
    ).encode()
    return tree, commit, _object_id("commit", commit).hex()


def push_encoded(gate: Gate, path: str, blob_entry: tuple[int, int, bytes]) -> tuple[bytes, str]:
    """Push a commit setting `path` to TEXT, its blob entry as given; the gate's answer and the
    commit."""
    tree, commit, commit_id = commit_over(gate, path, TEXT)
    pack = pack_of(
        [
            (1, len(commit), zlib.compress(commit)),
            (2, len(tree), zlib.compress(tree)),
            blob_entry,
        ]
    )
    return raw_push(gate.port, f"{'0' * 40} {commit_id} refs/heads/agent/notes", pack), commit_id


def upstream_pack_bytes(gate: Gate) -> bytes:
    return b"".join(p.read_bytes() for p in (gate.upstream / "objects" / "pack").glob("*.pack"))


def test_a_key_in_the_deflate_blocks_of_a_clean_blob_never_reaches_the_upstream(
    gate: Gate,
) -> None:
    """With nothing but git: the agent indexes a pack it wrote and `git push` sends the blob's
    bytes from it as they are."""
    result = gate.sh(key_in_deflate_blocks_script())

    assert result.returncode == 0, result.stdout + result.stderr  # the content is clean
    assert gate.ref("refs/heads/agent/deflate") is not None
    assert KEY_IN_DEFLATE_BLOCKS not in upstream_pack_bytes(gate)
    gate_repo = gate.upstream.parent / "gate" / "origin.git"
    assert not list(gate_repo.rglob("forward-*"))  # the gate's own pack went with the push


def test_a_key_in_the_inserts_of_a_delta_never_reaches_the_upstream(gate: Gate) -> None:
    """A thin pack, as git sends an edit: a delta against the file's version the upstream has,
    which the gate's own thin forward may name as a base too."""
    readme = git(gate.agent, "rev-parse", "origin/main:README.md").stdout.strip()
    delta = insert_delta(len(b"hello\n"), TEXT, KEY)
    entry = (7, len(delta), bytes.fromhex(readme) + zlib.compress(delta))

    answer, commit = push_encoded(gate, "README.md", entry)

    assert b"ok refs/heads/agent/notes" in answer, answer
    assert gate.ref("refs/heads/agent/notes") == commit
    held = upstream_pack_bytes(gate)
    assert not any(delta in chunk for chunk in inflated_entries(held))


def inflated_entries(pack: bytes) -> Iterator[bytes]:
    """What every zlib stream of the upstream's packs inflates to (tried at each offset)."""
    for offset in range(len(pack)):
        if pack[offset] != 0x78:
            continue
        try:
            yield zlib.decompressobj().decompress(pack[offset:])
        except zlib.error:
            continue


def test_a_key_encoded_in_an_earlier_push_never_reaches_the_upstream(gate: Gate) -> None:
    """The gate repository keeps every accepted pack whole, objects no ref reached included.
    A blob that rode along unreachable in one push, then named by the next, is new to the
    upstream only then: the forward must not take it from the pack the agent built."""
    encoded = KEY_IN_DEFLATE_BLOCKS
    main = git(gate.agent, "rev-parse", "origin/main").stdout.strip()
    first = (
        f"tree {git(gate.agent, 'rev-parse', 'origin/main^{tree}').stdout.strip()}\n"
        f"parent {main}\nauthor A <a@bottle.invalid> 1700000000 +0000\n"
        "committer A <a@bottle.invalid> 1700000000 +0000\n\nempty\n"
    ).encode()
    first_id = _object_id("commit", first).hex()
    pack = pack_of([(1, len(first), zlib.compress(first)), (3, len(TEXT), encoded)])
    answer = raw_push(gate.port, f"{'0' * 40} {first_id} refs/heads/agent/first", pack)
    assert b"ok refs/heads/agent/first" in answer, answer

    tree, commit, commit_id = commit_over(gate, "notes.txt", TEXT)
    pack = pack_of([(1, len(commit), zlib.compress(commit)), (2, len(tree), zlib.compress(tree))])
    answer = raw_push(gate.port, f"{'0' * 40} {commit_id} refs/heads/agent/notes", pack)

    assert b"ok refs/heads/agent/notes" in answer, answer
    assert gate.ref("refs/heads/agent/notes") == commit_id
    assert encoded not in upstream_pack_bytes(gate)
