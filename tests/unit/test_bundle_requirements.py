"""The bundle's requirements pin every file by sha256, and its Dockerfile makes pip check them.

The bundle holds every bottle's real secrets and its build trusts an extra CA: a requirement
pip may fetch without a hash lets whoever sits between PyPI and the build choose its code.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bottle_engine.artifacts.bundle_requirements import (
    REQUIREMENT_FILES,
    Pin,
    logical_lines,
    parse_pin,
    pins,
    problems,
    rehash,
    release_file_version,
)
from tests.conftest import REPO_ROOT
from tests.fixtures_artifacts import bundle_instructions, bundle_pip_install

GOOD = "a" * 64
OTHER = "b" * 64


def test_every_committed_requirement_is_a_pin_with_sha256_hashes() -> None:
    for path in REQUIREMENT_FILES:
        assert problems(path.read_text(), path.name) == []
        assert pins(path.read_text(), path.name), f"{path.name} pins nothing"


def test_the_check_script_passes_on_the_committed_files() -> None:
    script = REPO_ROOT / "scripts" / "update-bundle-hashes"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    "line",
    [
        "mitmproxy==11.0.2",  # no hash: pip would take whatever the index serves
        f"mitmproxy==11.0.2 --hash=sha256:{GOOD[:-1]}",  # truncated
        f"mitmproxy==11.0.2 --hash=md5:{GOOD[:32]}",
        f"mitmproxy==11.0.2 --hash=sha256:{GOOD.upper()}",
        f"mitmproxy>=11 --hash=sha256:{GOOD}",  # not one release
        f"mitmproxy==11.0.2 --hash=sha256:{GOOD} --extra-index-url https://pypi.invalid/simple",
        f"mitmproxy @ https://pypi.invalid/m.whl --hash=sha256:{GOOD}",
        f"mitmproxy==11.0.2 ; python_version > '3' --hash=sha256:{GOOD}",
        "--extra-index-url https://pypi.invalid/simple",
        "-e .",
    ],
)
def test_a_requirement_line_pip_would_not_hash_check_is_named(line: str) -> None:
    text = f"# the proxy venv\nh11==0.14.0 --hash=sha256:{GOOD}\n{line}\n"
    assert problems(text, "requirements.txt") == [
        f"requirements.txt:3: {line.split()[0]!r} is not `NAME==VERSION --hash=sha256:...`"
        " (run scripts/update-bundle-hashes)"
    ]


def test_a_hash_line_cut_from_its_pin_leaves_both_named() -> None:
    """A lost trailing backslash: pip would read `h11==0.14.0` alone, and a stray option."""
    text = f"h11==0.14.0\n    --hash=sha256:{GOOD}\n"
    assert [p.split(":")[1] for p in problems(text, "r.txt")] == ["1", "2"]


def test_continued_lines_are_one_pin_with_every_hash() -> None:
    text = f"# header\nh11==0.14.0 \\\n    --hash=sha256:{GOOD} \\\n    --hash=sha256:{OTHER}\n"
    assert logical_lines(text)[1][0] == 2
    assert parse_pin(logical_lines(text)[1][1]) == Pin("h11", "0.14.0", (GOOD, OTHER))
    assert problems(text, "r.txt") == []


def test_rehash_replaces_every_pins_hashes_and_keeps_the_comments() -> None:
    text = f"# header\n# second\nh11==0.14.0 \\\n    --hash=sha256:{GOOD}\nBrotli==1.1.0\n"
    updated = rehash(text, {("h11", "0.14.0"): (OTHER,), ("Brotli", "1.1.0"): (GOOD, OTHER)})
    assert updated == (
        f"# header\n# second\nh11==0.14.0 \\\n    --hash=sha256:{OTHER}\n"
        f"Brotli==1.1.0 \\\n    --hash=sha256:{GOOD} \\\n    --hash=sha256:{OTHER}\n"
    )
    assert rehash(updated, {("h11", "0.14.0"): (OTHER,), ("Brotli", "1.1.0"): (GOOD, OTHER)}) == (
        updated
    )


def test_a_line_that_is_no_pin_stops_a_rehash() -> None:
    with pytest.raises(ValueError, match=r"r\.txt:2: 'mitmproxy>=11' is not NAME==VERSION"):
        pins("h11==0.14.0\nmitmproxy>=11\n", "r.txt")


@pytest.mark.parametrize(
    ("filename", "version"),
    [
        ("cryptography-50.0.2-cp311-abi3-manylinux_2_28_aarch64.whl", "50.0.2"),
        ("ruamel.yaml.clib-0.2.15.tar.gz", "0.2.15"),
        ("publicsuffix2-2.20191221.zip", "2.20191221"),
        ("pyperclip-1.9.0.tar.gz", "1.9.0"),
        ("pyperclip-1.9.0.exe", None),
    ],
)
def test_a_release_files_version_is_read_from_its_name(filename: str, version: str) -> None:
    assert release_file_version(filename) == version


def test_the_bundle_installs_with_hashes_required_and_nothing_unpinned() -> None:
    """With hashes in every line pip checks them anyway; said explicitly, a line without one
    fails the build. --no-deps: a dependency missing from the pins fails `pip check` instead of
    being fetched unhashed; no build isolation: pip fetches build dependencies unhashed."""
    command = bundle_pip_install()
    assert command[:2] == ["pip", "install"]
    assert {"--require-hashes", "--no-deps", "--no-build-isolation"} <= set(command)
    runs = " ".join(bundle_instructions("RUN"))
    assert runs.count("bin/$PIP_INSTALL -r ") == len(REQUIREMENT_FILES)
    assert "pip install" not in runs  # every install goes through PIP_INSTALL
    assert runs.count("bin/pip check") == len(REQUIREMENT_FILES)
