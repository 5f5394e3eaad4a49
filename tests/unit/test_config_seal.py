"""The config seal: `resume` and `probe` take the bundle's config only as the engine wrote it."""

from __future__ import annotations

import os

import pytest

from bottle_engine import config_seal
from bottle_engine.bottle_dir import BottleDir
from bottle_engine.bundle.waiting import config_digest
from bottle_engine.errors import BottleError

TEXT = '{"slug": "b1", "egress_allow": ["api.example"]}'


def _bottle(text: str = TEXT) -> BottleDir:
    bottle_dir = BottleDir.create("b1")
    bottle_dir.write_private(bottle_dir.bundle_config, text)
    config_seal.seal("b1", config_digest(text.encode()))
    return bottle_dir


def test_the_config_as_written_is_returned() -> None:
    assert config_seal.checked_config_text("b1", _bottle()) == TEXT


def test_a_rewritten_config_is_refused_naming_it() -> None:
    bottle_dir = _bottle()
    bottle_dir.bundle_config.write_text(TEXT.replace("api.example", "collector.example"))
    with pytest.raises(BottleError, match="differs from the config") as refused:
        config_seal.checked_config_text("b1", bottle_dir)
    assert str(bottle_dir.bundle_config) in str(refused.value)
    assert "stop --rm b1" in str(refused.value.fix)


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_link_or_fifo_in_the_configs_place_is_refused_unread(kind: str) -> None:
    bottle_dir = _bottle()
    bottle_dir.bundle_config.unlink()
    if kind == "symlink":
        bottle_dir.bundle_config.symlink_to("/etc/hostname")
    else:
        os.mkfifo(bottle_dir.bundle_config)
    with pytest.raises(BottleError, match="not a regular file"):
        config_seal.checked_config_text("b1", bottle_dir)


def test_a_bottle_launched_before_seals_is_read_unchecked() -> None:
    bottle_dir = _bottle()
    config_seal.forget("b1")
    assert config_seal.checked_config_text("b1", bottle_dir) == TEXT
    assert not config_seal.seal_path("b1").exists()
