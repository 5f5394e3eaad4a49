"""gVisor on this machine: which runsc the engine trusts, installing it, registering it with Docker.

Debian 12's own runsc (release 20221219) is too old for current userlands (`ls /` fails with
EINVAL), so the engine pins Debian trixie's build, a static binary that runs here. It is fetched
with apt from Debian's archive through a throw-away source list (the system's sources, lists and
packages are not touched), checked by SHA-256 (the package and the binary in it), unpacked beside
the system's runsc and registered as Docker's `runsc` runtime. Air-gapped machines bring the
same .deb file (`bottle-engine gvisor install --deb FILE`).

The runtime choice for `runtime = "auto"` is `choose_runtime`, a pure function of what the
daemon has and what the self-test said; the self-test itself is `self_test`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bottle_engine import state
from bottle_engine.errors import BottleError

RUNTIME_NAME = "runsc"
# --network=host: this runsc refuses its own network stack on current kernels ("cannot run with
#   network enabled in root network namespace": its root-namespace test reads a sysctl that
#   kernels now have in every namespace). The sandbox still lives in the container's own network
#   namespace (the self-test checks it sees no interface but loopback); socket calls go from
#   the sentry to the host kernel inside that namespace.
# --overlay2=root:memory: the container's root file system gets a writable layer in the sandbox's
#   memory, charged to the container's memory limit, so the agent cannot fill the host's disk;
#   what it writes there is gone when the container stops (files the engine put in stay).
RUNTIME_ARGS: tuple[str, ...] = ("--network=host", "--overlay2=root:memory")
DAEMON_JSON = Path("/etc/docker/daemon.json")
DOCKER_PID_FILES = (Path("/run/docker.pid"), Path("/var/run/docker.pid"))
INSTALL_ROOT = Path("/usr/local/lib/bot-bottle")
DEBIAN_ARCHIVE = "http://deb.debian.org/debian"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Bumped whenever the self-test's command or the container it runs in changes, so older
# verdicts are not reused (3: the image's entrypoint not run, a bottle's bounds, a time limit).
SELF_TEST_VERSION = 3
# Exit 0 only when basic tools work (the old runsc fails statx) and the sandbox, started with
# no network, sees loopback alone: --network=host must never mean the host's own interfaces.
SELF_TEST_COMMAND = (
    "sh",
    "-c",
    "ls -ld / /tmp >/dev/null || exit 1; seen=0; "
    'while IFS=: read -r name counters; do [ -n "$counters" ] || continue; '
    'set -- $name; [ "$1" = lo ] || exit 1; seen=1; done </proc/net/dev; [ $seen = 1 ]',
)


@dataclass(frozen=True)
class Release:
    """One runsc package from Debian's archive, pinned by version and digests."""

    version: str
    architecture: str
    suite: str
    pool_path: str
    deb_sha256: str
    binary_sha256: str
    install_name: str

    @property
    def deb_name(self) -> str:
        return Path(self.pool_path).name

    @property
    def archive_url(self) -> str:
        return f"{DEBIAN_ARCHIVE}/{self.pool_path}"

    @property
    def binary(self) -> Path:
        return INSTALL_ROOT / self.install_name / "runsc"


PINNED: Mapping[str, Release] = {
    "amd64": Release(
        version="0.0~20240729.0-4+b7",
        architecture="amd64",
        suite="trixie",
        pool_path="pool/main/g/golang-gvisor-gvisor/runsc_0.0~20240729.0-4+b7_amd64.deb",
        deb_sha256="3c25a5130dfac2f71237d5baad56ac86a255de87a0400f11b36a555156dc325a",
        binary_sha256="ce52e04038baa76d6069afae5fc1bee60c153bbf0276f2c3c25506553526f38f",
        install_name="gvisor-20240729",
    ),
}


def debian_architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def pinned_release(architecture: str | None = None) -> Release:
    architecture = architecture or debian_architecture()
    release = PINNED.get(architecture)
    if release is None:
        raise BottleError(
            f"bot-bottle pins a gVisor release for {', '.join(PINNED)} only, not {architecture}",
            fix="install a current runsc from https://gvisor.dev/docs/user_guide/install/ and "
            "register it: `bottle-engine gvisor register --binary PATH`",
        )
    return release


def air_gap_help(release: Release) -> str:
    """What to bring to a machine without Debian's archive, and the one command to run."""
    return (
        f"download {release.archive_url} (SHA-256 {release.deb_sha256}; if the archive has "
        f"moved on, https://snapshot.debian.org/binary/runsc/ keeps version {release.version}) "
        f"and run `sudo bottle-engine gvisor install --deb {release.deb_name}`"
    )


# -- the runtime choice (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeChoice:
    """The OCI runtime a sandbox runs under, and the sentence saying why."""

    runtime: Literal["runc", "runsc"]
    reason: str

    @property
    def docker_runtime(self) -> str | None:
        """The name to give Docker (None: the daemon's default, runc)."""
        return RUNTIME_NAME if self.runtime == "runsc" else None

    @property
    def label(self) -> str:
        return "gVisor (runsc)" if self.runtime == "runsc" else "runc"


def choose_runtime(
    wanted: str, registered: Mapping[str, Any], passes_self_test: Callable[[], bool]
) -> RuntimeChoice:
    """`runsc` when asked for or, for `auto`, when registered and it passes the self-test.

    `registered` is the daemon's runtimes (`docker info`); the self-test runs only when needed.
    """
    if wanted == "runc":
        return RuntimeChoice("runc", 'runtime = "runc" asked for it')
    if wanted == "runsc":
        if RUNTIME_NAME not in registered:
            raise BottleError(
                "runtime 'runsc' (gVisor) was asked for but the Docker daemon has no runtime of "
                "that name",
                fix="`sudo bottle-engine gvisor install` (scripts/setup runs it), or set "
                'runtime = "auto"',
            )
        return RuntimeChoice("runsc", 'runtime = "runsc" asked for it')
    if wanted != "auto":
        raise BottleError(
            f"unknown runtime '{wanted}'",
            fix='use "auto", "runc" or "runsc" (BOTTLE_RUNTIME or the bottle\'s runtime key)',
        )
    if RUNTIME_NAME not in registered:
        return RuntimeChoice(
            "runc",
            "auto: the Docker daemon has no runsc runtime (`sudo bottle-engine gvisor install`)",
        )
    if not passes_self_test():
        return RuntimeChoice(
            "runc",
            "auto: the registered runsc fails the self-test on this machine "
            "(`bottle-engine doctor` explains)",
        )
    return RuntimeChoice("runsc", "auto: runsc is registered and passes the self-test")


# -- the self-test ---------------------------------------------------------------------------


def self_test(client: Any, image: str, runtime_info: Mapping[str, Any] | None) -> bool:
    """Does the registered runsc run `image`'s basic tools in a sandbox of its own network?

    Cached in the cache dir per runsc binary (path, size, mtime), runtime arguments and image;
    a test that did not end in time is a no for now, not kept (a busy machine's slow start
    would otherwise keep runc for good).
    """
    from bottle_engine.dockerapi.containers import runs_cleanly

    info = dict(runtime_info or {})
    binary = str(info.get("path", RUNTIME_NAME))
    args = " ".join(str(arg) for arg in info.get("runtimeArgs") or ())
    try:
        found = os.stat(shutil.which(binary) or binary)
        identity = f"{binary}:{found.st_size}:{int(found.st_mtime)}"
    except OSError:
        identity = binary
    fingerprint = f"v{SELF_TEST_VERSION}:{identity}:{args}:{image}"
    cache = state.cache_dir() / "gvisor-check.json"
    try:
        verdicts: dict[str, bool] = json.loads(cache.read_text())
    except (OSError, ValueError):
        verdicts = {}
    if fingerprint not in verdicts:
        verdict = runs_cleanly(client, image, RUNTIME_NAME, SELF_TEST_COMMAND)
        if verdict is None:
            return False
        verdicts[fingerprint] = verdict
        state.make_cache_dir()
        scratch = cache.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps(verdicts, indent=2))
        scratch.replace(cache)
    return verdicts[fingerprint]


# -- daemon.json (pure, then written) --------------------------------------------------------


def runtime_entry(binary: Path, args: Sequence[str] = RUNTIME_ARGS) -> dict[str, Any]:
    return {"path": str(binary), "runtimeArgs": list(args)}


def with_runtime(config: Mapping[str, Any], binary: Path) -> dict[str, Any]:
    """`config` (daemon.json) with `runsc` pointing at `binary`; every other key kept."""
    updated = dict(config)
    runtimes = dict(updated.get("runtimes") or {})
    runtimes[RUNTIME_NAME] = runtime_entry(binary)
    updated["runtimes"] = runtimes
    return updated


def read_daemon_config(path: Path = DAEMON_JSON) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BottleError(f"{path}: {exc.strerror}", fix="run as root (sudo)") from exc
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise BottleError(
            f"{path} is not valid JSON ({exc})",
            fix=f"repair {path} (dockerd refuses it too), then run this again",
        ) from exc
    if not isinstance(config, dict):
        raise BottleError(f"{path} is not a JSON object", fix=f"repair {path}")
    return config


def write_daemon_config(config: Mapping[str, Any], path: Path = DAEMON_JSON) -> None:
    """Replace daemon.json atomically (a dockerd reading it never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(json.dumps(config, indent=2) + "\n")
    if path.exists():
        shutil.copymode(path, scratch)
    scratch.replace(path)


# -- fetching and unpacking the package ------------------------------------------------------


def fetch_deb(release: Release, directory: Path) -> Path:
    """Download the pinned package with apt, from a source list that exists for this call only."""
    if shutil.which("apt-get") is None:
        raise BottleError("apt-get is not available here", fix=air_gap_help(release))
    if not DEBIAN_KEYRING.is_file():
        raise BottleError(
            f"Debian's archive keyring {DEBIAN_KEYRING} is missing, so apt cannot check "
            f"Debian {release.suite}'s index",
            fix=f"apt-get install debian-archive-keyring, or {air_gap_help(release)}",
        )
    with tempfile.TemporaryDirectory(prefix="bot-bottle-apt-") as scratch:
        root = Path(scratch)
        (root / "sources").mkdir()
        (root / "lists" / "partial").mkdir(parents=True)
        (root / "cache" / "archives" / "partial").mkdir(parents=True)
        (root / "sources" / f"{release.suite}.sources").write_text(
            f"Types: deb\nURIs: {DEBIAN_ARCHIVE}\nSuites: {release.suite}\nComponents: main\n"
            f"Architectures: {release.architecture}\nSigned-By: {DEBIAN_KEYRING}\n"
        )
        options = [
            "-o", "Dir::Etc::SourceList=/dev/null",
            "-o", f"Dir::Etc::SourceParts={root / 'sources'}",
            "-o", f"Dir::State::Lists={root / 'lists'}",
            "-o", f"Dir::Cache={root / 'cache'}",
            "-o", "Dir::Etc::PreferencesParts=/dev/null",
            "-o", "APT::Sandbox::User=root",
            "-qq",
        ]  # fmt: skip
        _apt(["apt-get", *options, "update"], release)
        _apt(["apt-get", *options, "download", f"runsc={release.version}"], release, cwd=directory)
    found = directory / release.deb_name.replace("~", "%7e")
    if not found.exists():
        found = directory / release.deb_name
    if not found.exists():
        raise BottleError(
            f"apt reported success but {release.deb_name} is not in {directory}",
            fix=air_gap_help(release),
        )
    return found


def _apt(argv: list[str], release: Release, cwd: Path | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise BottleError(
            f"could not fetch runsc {release.version} from Debian {release.suite} with "
            f"`{' '.join(argv[:1] + argv[-2:])}`: {' / '.join(detail)}",
            fix=air_gap_help(release),
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def runsc_from_deb(release: Release, deb: Path) -> bytes:
    """The runsc binary inside the pinned .deb, after both digests matched."""
    if not deb.is_file():
        raise BottleError(f"{deb} does not exist", fix=air_gap_help(release))
    found = sha256_of(deb)
    if found != release.deb_sha256:
        raise BottleError(
            f"{deb} has SHA-256 {found}, not the pinned {release.deb_sha256} of {release.deb_name}",
            fix=air_gap_help(release),
        )
    data = _deb_member(deb, "data.tar")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive:
            if member.isfile() and member.name.lstrip("./") == "usr/bin/runsc":
                extracted = archive.extractfile(member)
                binary = extracted.read() if extracted else b""
                break
        else:
            raise BottleError(f"{deb} has no usr/bin/runsc", fix=air_gap_help(release))
    if hashlib.sha256(binary).hexdigest() != release.binary_sha256:
        raise BottleError(
            f"usr/bin/runsc in {deb} does not have the pinned SHA-256 {release.binary_sha256}",
            fix=air_gap_help(release),
        )
    return binary


def _deb_member(deb: Path, prefix: str) -> bytes:
    """A member of a .deb (an `ar` archive) whose name starts with `prefix`."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise BottleError(f"{deb} is not a Debian package (no ar header)")
    offset = 8
    while offset + 60 <= len(raw):
        header = raw[offset : offset + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        start = offset + 60
        if name.startswith(prefix):
            return raw[start : start + size]
        offset = start + size + (size % 2)
    raise BottleError(f"{deb} has no {prefix}.* member")


def install_binary(release: Release, binary: bytes) -> Path:
    """Put the checked binary at `release.binary` (root-owned, 0755), replacing it atomically."""
    target = release.binary
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    scratch = target.with_name(f".runsc.{os.getpid()}.tmp")
    scratch.write_bytes(binary)
    scratch.chmod(0o755)
    scratch.replace(target)
    return target


def installed(release: Release) -> bool:
    return release.binary.is_file() and sha256_of(release.binary) == release.binary_sha256


# -- telling dockerd ---------------------------------------------------------------------------


def reload_docker() -> None:
    """SIGHUP dockerd: it re-reads daemon.json's runtimes; running containers are untouched."""
    for pid_file in DOCKER_PID_FILES:
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            continue
        return
    raise BottleError(
        "found no running dockerd to reload (no pid in /run/docker.pid)",
        fix="reload it yourself: `sudo systemctl reload docker` or "
        "`sudo kill -HUP $(pidof dockerd)`",
    )


def wait_registered(client: Any, binary: Path, timeout: float = 30.0) -> Mapping[str, Any]:
    """Wait until the daemon lists `runsc` at `binary`; its runtime info."""
    deadline = time.monotonic() + timeout
    while True:
        info = (client.info().get("Runtimes") or {}).get(RUNTIME_NAME) or {}
        if info.get("path") == str(binary) and list(info.get("runtimeArgs") or []) == list(
            RUNTIME_ARGS
        ):
            return dict(info)
        if time.monotonic() > deadline:
            raise BottleError(
                f"dockerd did not pick up the runsc runtime at {binary} from {DAEMON_JSON} "
                f"within {timeout:.0f}s",
                fix="reload it yourself: `sudo systemctl reload docker` or "
                "`sudo kill -HUP $(pidof dockerd)`, and check its log",
            )
        time.sleep(0.2)


# -- the whole set-up --------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupReport:
    """What `ensure_gvisor` found or did."""

    binary: Path
    source: Literal["registered", "system", "pinned"]
    changed: bool  # daemon.json was rewritten and dockerd reloaded
    passes_self_test: bool


def ensure_gvisor(
    client: Any, image: str, *, deb: Path | None = None, say: Callable[[str], None] = print
) -> SetupReport:
    """Leave the daemon with a `runsc` runtime that passes the self-test with `image`.

    Tries, in order: the runsc already registered, the distribution's runsc on PATH, the pinned
    release (from `deb` when given, else fetched with apt). Each is registered with
    `RUNTIME_ARGS` before its self-test, so the verdict is about the arguments bottles get.
    """
    if os.geteuid() != 0:
        raise BottleError(
            f"setting up gVisor writes {INSTALL_ROOT} and {DAEMON_JSON}, which needs root",
            fix="sudo bottle-engine gvisor install",
        )
    candidates: list[tuple[Literal["registered", "system"], Path]] = []
    if deb is None:
        registered = (client.info().get("Runtimes") or {}).get(RUNTIME_NAME) or {}
        if registered.get("path"):
            candidates.append(("registered", Path(str(registered["path"]))))
        system = shutil.which("runsc")
        if system and all(Path(system) != path for _, path in candidates):
            candidates.append(("system", Path(system)))
    changed = False
    for source, binary in candidates:
        changed |= register(client, binary)
        if self_test(client, image, runtime_entry(binary)):
            return SetupReport(binary, source, changed, True)
        say(f"{binary} fails the self-test with {image} (too old for its system calls)")
    release = pinned_release()
    # A given file is checked even when the binary is in place: bad input is never ignored.
    from_file = runsc_from_deb(release, deb) if deb is not None else None
    if not installed(release):
        if from_file is None:
            say(f"fetching runsc {release.version} from Debian {release.suite} (apt)")
            with tempfile.TemporaryDirectory(prefix="bot-bottle-runsc-") as scratch:
                from_file = runsc_from_deb(release, fetch_deb(release, Path(scratch)))
        install_binary(release, from_file)
        say(f"installed runsc {release.version} at {release.binary} (SHA-256 checked)")
    changed |= register(client, release.binary)
    if not self_test(client, image, runtime_entry(release.binary)):
        raise BottleError(
            f"the pinned runsc {release.version} at {release.binary} fails the self-test with "
            f"{image} on this machine",
            fix="`bottle-engine doctor` shows the state; run "
            f"`docker run --rm --runtime runsc --network none --entrypoint ls {image} /` to see "
            "the error",
        )
    return SetupReport(release.binary, "pinned", changed, True)


def register(client: Any, binary: Path) -> bool:
    """Point Docker's `runsc` at `binary` with `RUNTIME_ARGS`; True when daemon.json changed."""
    config = read_daemon_config()
    wanted = with_runtime(config, binary)
    current = (client.info().get("Runtimes") or {}).get(RUNTIME_NAME) or {}
    live = current.get("path") == str(binary) and list(current.get("runtimeArgs") or []) == list(
        RUNTIME_ARGS
    )
    if wanted == config and live:
        return False
    if wanted != config:
        write_daemon_config(wanted)
    reload_docker()
    wait_registered(client, binary)
    return True
