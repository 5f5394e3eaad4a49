"""Removing a bottle's state dir, which its bundle wrote: whatever it planted there, `stop --rm`
removes the dir and nothing outside it."""

from __future__ import annotations

import os
from pathlib import Path

from bottle_engine import state
from bottle_engine.bottle_dir import BottleDir

DEPTH = 3000  # far past Python's recursion limit (1000): one mkdir and chdir a level


def _nest(top: Path, depth: int) -> None:
    """What a bundle does in its own dir: dirs nested `depth` deep, a file at the bottom."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)


def test_a_bottle_dir_nested_deeper_than_the_recursion_limit_is_removed() -> None:
    bottle_dir = BottleDir.create("b1")
    bottle_dir.private_subdir(bottle_dir.secrets_dir)
    bottle_dir.write_private(bottle_dir.secret_file("TOKEN"), "real-value")
    _nest(bottle_dir.path, DEPTH)
    bottle_dir.remove()
    assert not bottle_dir.path.exists()


def test_links_in_a_removed_dir_are_removed_not_followed(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "inside").mkdir(parents=True)
    (host / "inside" / "keep.txt").write_text("the host's")
    bottle_dir = BottleDir.create("b1")
    (bottle_dir.path / "to-dir").symlink_to(host)
    (bottle_dir.path / "to-file").symlink_to(host / "inside" / "keep.txt")
    (bottle_dir.path / "sub").mkdir()
    (bottle_dir.path / "sub" / "to-dir").symlink_to(host / "inside")
    bottle_dir.remove()
    assert not bottle_dir.path.exists()
    assert (host / "inside" / "keep.txt").read_text() == "the host's"


def test_a_dir_the_bundle_closed_to_its_owner_is_removed() -> None:
    """As the same user (an engine that is not root): a dir made unreadable and unwritable."""
    bottle_dir = BottleDir.create("b1")
    closed = bottle_dir.path / "closed"
    (closed / "inner").mkdir(parents=True)
    (closed / "inner" / "file").write_text("x")
    (closed / "inner").chmod(0o500)
    closed.chmod(0)
    state.remove_tree(bottle_dir.path)
    assert not bottle_dir.path.exists()


def test_a_link_in_the_place_of_the_dir_is_only_unlinked(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep.txt").write_text("the host's")
    link = tmp_path / "link"
    link.symlink_to(host)
    state.remove_tree(link)
    assert not link.is_symlink() and (host / "keep.txt").exists()
    state.remove_tree(tmp_path / "missing")  # nothing to do, no error
