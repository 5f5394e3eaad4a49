"""The one place that runs the ``smolvm`` CLI (the smolmachines microVM manager).

Nobody else in the engine starts smolvm. The binary is ``$BOTTLE_SMOLVM``, else ``smolvm`` on
``PATH``, else the ``smol-vmm`` that the ``smolmachines`` wheel ships (the same CLI, libkrun
beside it); ``$BOTTLE_SMOLVM_STATE_DIR`` (Linux) keeps smolvm's own state apart, e.g. for tests.
Supported and tested: smolvm 1.32.2 (`TESTED_VERSION`).

Every run gets the environment of `child_env`: the VMM confined by seccomp and Landlock (smolvm's
CLI leaves both off unless asked; its SDK turns them on for untrusted code, and the agent is
untrusted), a libkrun directory the per-VM unprivileged uid can read, and of the engine's own
environment (real secret values among it) only what smolvm reads (`passed_on`).

The installed version is probed once per process (`probe`), lazily: a pack-cache hit never runs
smolvm at all. The probe answers the one question the pack pipeline asks: does ``pack create -I``
take a local image archive (recent smolvm), or only a registry reference (0.8-era releases,
which need the ephemeral registry hop)? It reads ``pack create --help`` rather than comparing
version numbers, because the help text is what the CLI actually parses.

Argument lists are built by pure functions (``*_args``), so tests check them without running
anything; failures are translated here, once, into `BottleError` with the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bottle_engine.command_output import UNFINISHED, Tail, drain, read_before, stopped_waiting
from bottle_engine.errors import BottleError, CommandFailed
from bottle_engine.limits import (
    GUEST_SETUP_SECONDS,
    LOGS_BYTES,
    LOGS_SECONDS,
    MIB,
    PROBE_OUTPUT_BYTES,
)
from bottle_engine.settings import EngineSettings
from bottle_engine.terminal import run_in_pty, run_streamed

TESTED_VERSION = "1.32.2"
WHEEL_BINARY = "smol-vmm"
"""The CLI's name inside the ``smolmachines`` wheel's ``smol`` package."""
LIBKRUN_FILES = ("libkrun.so", "libkrunfw.so.5")
"""What smolvm's boot process loads from ``SMOLVM_LIB_DIR`` (Linux)."""
# The VMM's own confinement; "enforce" is what smolvm's SDK and `smolvm serve` default to.
HARDENING_ENV = {"SMOLVM_SECCOMP": "enforce", "SMOLVM_LANDLOCK": "enforce"}

# The engine's environment that smolvm gets (`passed_on`): where it keeps its state and finds
# programs, the terminal and locale `machine exec -it` relays, its own settings and logging.
PASSED_ON_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TERM", "COLORTERM", "NO_COLOR", "LANG", "TZ"}
    | {"RUST_LOG", "RUST_BACKTRACE"}
)
PASSED_ON_PREFIXES = ("SMOLVM_", "LC_", "XDG_")

# How long smolvm may take to end once its output has (or its reader stopped): then it is killed.
EXIT_SECONDS = 10
_SAID_CHARACTERS = 500  # of a failed guest command's output, in its error
_INSTALL_FIX = (
    f"`pip install smolmachines=={TESTED_VERSION}` (it ships the smolvm CLI as smol/smol-vmm, "
    "which bot-bottle finds by itself), or put smolvm on PATH, or set BOTTLE_SMOLVM; "
    'or use the docker backend (`backend = "docker"` in bottle.toml, or BOTTLE_BACKEND=docker)'
)
_NO_VM_FIX = (
    "this host cannot boot microVMs (smolvm needs a usable /dev/kvm on Linux, "
    'Hypervisor.framework on macOS); use the docker backend (`backend = "docker"` or '
    "BOTTLE_BACKEND=docker)"
)
# libkrun's words when it cannot open /dev/kvm: `KvmContext(KvmOpen(Error(13)))`, an errno.
_KVM_OPEN_ERRNO = re.compile(r"KvmOpen\(Error\((\d+)\)\)")
# smol-vmm (the copy shipped inside the Python package) prints this note on every run.
_NOISE = re.compile(r"^note: no packed assets found")


@dataclass(frozen=True)
class SmolvmInfo:
    """What the installed smolvm can do; `probe` fills it once per binary."""

    binary: Path
    version: str
    accepts_archives: bool
    """``pack create -I`` takes a docker-save / OCI layout archive, not only a registry ref."""
    error_format_json: bool
    """``--error-format json`` is understood (stable error codes on stderr)."""


@dataclass(frozen=True)
class MachineSpec:
    """One ``machine create`` call: a named machine from a packed ``.smolmachine`` sidecar."""

    name: str
    sidecar: Path
    allow_cidrs: tuple[str, ...]
    dns: str | None = None
    """The resolver the VM's gateway forwards every guest DNS query to (``--dns``). smolvm
    answers all of the guest's port-53 traffic itself, to whatever address it was sent, and
    forwards it from the host, ungated by `allow_cidrs`, to 1.1.1.1 unless told otherwise."""
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    cpus: int | None = None
    """vCPU cap (smolvm's default: 4)."""
    memory_mib: int | None = None
    """Memory cap in MiB (smolvm's default: 8192)."""
    workdir: str | None = None
    workload: tuple[str, ...] = ()
    """The machine's own long-running command (after ``--``); empty: the image's CMD."""
    user: str | None = None
    """Who the workload and ``exec`` run as by default (``uid[:gid]``); None: the image's USER."""


def find_binary(settings: EngineSettings | None = None) -> Path:
    """The smolvm executable to run, or a `BottleError` saying how to install one.

    Order: ``$BOTTLE_SMOLVM`` (`EngineSettings.smolvm`), ``smolvm`` on PATH, the
    ``smolmachines`` wheel's ``smol-vmm``.
    """
    override = (settings or EngineSettings.from_env()).smolvm
    if override:
        path = Path(override).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BottleError(
                f"BOTTLE_SMOLVM={override} is not an executable file",
                fix="point BOTTLE_SMOLVM at the smolvm binary, or unset it to use smolvm on PATH",
            )
        return path.resolve()
    found = shutil.which("smolvm")
    if found:
        return Path(found).resolve()
    wheel = wheel_binary()
    if wheel is not None:
        return wheel
    raise BottleError(
        "the smolmachines backend needs the smolvm CLI, and there is none on PATH "
        "nor in an installed smolmachines package",
        fix=_INSTALL_FIX,
    )


def wheel_binary() -> Path | None:
    """The ``smol-vmm`` of an installed ``smolmachines`` wheel, found without importing it."""
    spec = importlib.util.find_spec("smol")
    if spec is None or not spec.origin:
        return None
    candidate = Path(spec.origin).resolve().parent / WHEEL_BINARY
    return candidate if os.access(candidate, os.X_OK) else None


def child_env(
    binary: Path, base: Mapping[str, str] | None = None, *, boots: bool = True
) -> dict[str, str]:
    """The environment smolvm runs with: hardening on, and a libkrun the VM's uid can read.

    smolvm boots every VM as its own unprivileged uid (per-VM uid isolation). The wheel's
    libkrun sits beside its binary, often under a home directory that uid cannot enter (e.g.
    /root, mode 0700); then the boot fails with "libkrun/libkrunfw not found". In that case a
    verified copy of the two libraries is used from a root-owned 0755 directory instead. An
    explicit ``SMOLVM_LIB_DIR`` or hardening setting in the environment wins.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if passed_on(k)}
    env.pop("SMOLVM_MACHINE_NAME", None)  # every command names its machine with --name
    for key, value in HARDENING_ENV.items():
        env.setdefault(key, value)
    if (
        boots
        and "SMOLVM_LIB_DIR" not in env
        and all((binary.parent / name).is_file() for name in LIBKRUN_FILES)
    ):
        env["SMOLVM_LIB_DIR"] = str(vm_readable_lib_dir(binary.parent))
    return env


def passed_on(name: str) -> bool:
    """Whether the environment variable `name` of the engine's process reaches smolvm: only
    what smolvm itself reads. `machine start` re-executes smolvm as the VMM, the process that
    runs the guest and the first one an escape from it lands in; the engine's environment holds
    the real values of `from_env` secrets (and whatever else of the user's), none for it."""
    return name in PASSED_ON_NAMES or name.startswith(PASSED_ON_PREFIXES)


def readable_by_others(path: Path) -> bool:
    """Whether a user with no relation to the owner can reach and read `path` (pure stat)."""
    path = path.resolve()
    for directory in (path, *path.parents) if path.is_dir() else path.parents:
        if not directory.stat().st_mode & stat.S_IXOTH:
            return False
    return path.is_dir() or bool(path.stat().st_mode & stat.S_IROTH)


def vm_readable_lib_dir(lib_dir: Path) -> Path:
    """`lib_dir` if the VM's unprivileged uid can read libkrun there, else a verified copy.

    The copy lives in ``$TMPDIR/bot-bottle-smolvm-libs-<euid>-<content hash>``, made under a
    temporary name and renamed into place; an existing one is used only if it is a real
    directory owned by us, writable by nobody else, holding exactly the expected bytes (so
    another local user cannot plant a libkrun that we would then load as root).
    """
    sources = [lib_dir / name for name in LIBKRUN_FILES]
    key = (str(lib_dir), *((s.stat().st_mtime_ns, s.stat().st_size) for s in sources))
    if key not in _LIB_DIRS:
        _LIB_DIRS[key] = _vm_readable_lib_dir(lib_dir, sources)
    return _LIB_DIRS[key]


_LIB_DIRS: dict[tuple[object, ...], Path] = {}


def _vm_readable_lib_dir(lib_dir: Path, sources: list[Path]) -> Path:
    if all(readable_by_others(source) for source in sources):
        return lib_dir
    digest = hashlib.sha256()
    contents = {}
    for source in sources:
        contents[source.name] = source.read_bytes()
        digest.update(source.name.encode() + b"\0" + contents[source.name])
    final = Path(tempfile.gettempdir()) / (
        f"bot-bottle-smolvm-libs-{os.geteuid()}-{digest.hexdigest()[:16]}"
    )
    if not final.exists():
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            for name, data in contents.items():
                (staging / name).write_bytes(data)
                (staging / name).chmod(0o755)
            staging.chmod(0o755)
            os.rename(staging, final)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # someone else's copy won the race
    _check_lib_copy(final, contents)
    return final


def _check_lib_copy(directory: Path, contents: Mapping[str, bytes]) -> None:
    info = directory.lstat()
    trusted = (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        and all(
            (directory / name).is_file()
            and not (directory / name).is_symlink()
            and (directory / name).lstat().st_uid == os.geteuid()
            and (directory / name).read_bytes() == data
            for name, data in contents.items()
        )
    )
    if not trusted:
        raise BottleError(
            f"{directory} is not the copy of smolvm's libkrun that bot-bottle made",
            fix=f"remove {directory} (another user may have made it), or set SMOLVM_LIB_DIR to "
            "a directory holding libkrun.so and libkrunfw.so.5 that every user can read",
        )


_PROBES: dict[tuple[str, int, int], SmolvmInfo] = {}


def probe(binary: Path | None = None) -> SmolvmInfo:
    """Version and capabilities of `binary` (default: `find_binary()`), asked once per process.

    The cache key includes the file's size and mtime, so replacing the binary re-probes.
    """
    binary = binary or find_binary()
    stat = binary.stat()
    key = (str(binary), stat.st_mtime_ns, stat.st_size)
    if key not in _PROBES:
        version_out = _run_plain(binary, ["--version"], "ask smolvm for its version")
        help_out = _run_plain(
            binary, ["pack", "create", "--help"], "read `smolvm pack create --help`"
        )
        _PROBES[key] = parse_probe(binary, version_out, help_out)
    return _PROBES[key]


def parse_probe(binary: Path, version_output: str, pack_create_help: str) -> SmolvmInfo:
    """Pure part of `probe`: read the version and capabilities from the CLI's own text."""
    match = re.search(r"(\d+\.\d+(?:\.\d+)?)", version_output)
    if not match:
        raise BottleError(
            f"{binary} --version printed {version_output.strip()!r}, which names no version",
            fix="check that BOTTLE_SMOLVM (or smolvm on PATH) is the smolmachines smolvm CLI",
        )
    image_help = _option_help(pack_create_help, "--image")
    accepts_archives = bool(re.search(r"docker save|archive|\.tar", image_help, re.IGNORECASE))
    return SmolvmInfo(
        binary=binary,
        version=match.group(1),
        accepts_archives=accepts_archives,
        error_format_json="--error-format" in pack_create_help,
    )


def _option_help(help_text: str, flag: str) -> str:
    """The help paragraph of one option (from its flag line to the next option line)."""
    lines = help_text.splitlines()
    for index, line in enumerate(lines):
        if re.match(rf"\s*(-\w, )?{re.escape(flag)}\b", line):
            paragraph = [line]
            for follow in lines[index + 1 :]:
                if re.match(r"\s*-", follow):
                    break
                paragraph.append(follow)
            return "\n".join(paragraph)
    return ""


# --- argument lists (pure) -------------------------------------------------------------------


def pack_create_args(image: str, output: Path) -> list[str]:
    """``pack create`` for a registry reference or a local archive path (absolute)."""
    return ["pack", "create", "--image", image, "--output", str(output)]


def machine_create_args(spec: MachineSpec) -> list[str]:
    """``machine create --from <sidecar>``: network limited to `spec.allow_cidrs` only.

    Everything is a flag (smolvm 1.32 refuses ``--smolfile`` beside ``--from``), so the whole
    machine, its one allowed CIDR included, can be audited from this argv alone. The network
    backend is pinned to virtio-net: it is the one that enforces an allow list (smolvm refuses
    an allow list with TSI, which "does not enforce it"), and the resolver is pinned too: the
    allow list does not gate DNS (`MachineSpec.dns`).
    """
    # Without an allow list the VM would have either no network or (with --net) all of it;
    # without a resolver of ours its DNS would go out from the host, past the allow list.
    missing = "an egress allow list" if not spec.allow_cidrs else "a DNS upstream"
    if not spec.allow_cidrs or not spec.dns:
        raise BottleError(
            f"machine {spec.name}: refusing to create a VM without {missing}",
            fix="this is a bug in bot-bottle; please report it",
        )
    args = ["machine", "create", "--name", spec.name, "--from", str(spec.sidecar)]
    args += ["--net-backend", "virtio-net"]
    for cidr in spec.allow_cidrs:
        args += ["--allow-cidr", cidr]
    args += ["--dns", spec.dns]
    if spec.cpus is not None:
        args += ["--cpus", str(spec.cpus)]
    if spec.memory_mib is not None:
        args += ["--mem", str(spec.memory_mib)]
    if spec.workdir is not None:
        args += ["--workdir", spec.workdir]
    for key, value in spec.env.items():
        args += ["--env", f"{key}={value}"]
    for key, value in sorted(spec.labels.items()):
        args += ["--label", f"{key}={value}"]
    if spec.user is not None:
        args += ["--user", spec.user]
    if spec.workload:
        args += ["--", *spec.workload]
    return args


def machine_exec_args(
    name: str,
    command: Sequence[str],
    *,
    interactive: bool = False,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """``machine exec`` (which takes only the long ``--name``); ``-it`` for a terminal; `env`
    over the machine's environment."""
    args = ["machine", "exec", "--name", name]
    if user is not None:
        args += ["--user", user]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    if interactive:
        args += ["--interactive", "--tty"]
    return [*args, "--", *command]


def machine_logs_args(name: str, *, follow: bool = False) -> list[str]:
    """``machine logs``: the workload's output, kept by smolvm even while the machine is stopped."""
    return ["machine", "logs", "--name", name, *(["--follow"] if follow else [])]


def machine_cp_args(source: Path, name: str, guest_path: str, *, mode: int, uid: int) -> list[str]:
    """Upload one host file to ``name:guest_path`` with an exact mode and owner."""
    return [
        "machine",
        "cp",
        "--mode",
        f"{mode:o}",
        "--uid",
        str(uid),
        "--gid",
        str(uid),
        str(source),
        f"{name}:{guest_path}",
    ]


# --- running it ------------------------------------------------------------------------------


class Smolvm:
    """The installed smolvm, driven in the engine's vocabulary."""

    def __init__(
        self, info: SmolvmInfo | None = None, *, settings: EngineSettings | None = None
    ) -> None:
        settings = settings or EngineSettings.from_env()
        self.info = info or probe(find_binary(settings))
        self.state_dir = settings.smolvm_state_dir  # smolvm's --state-dir; None: its default

    def command(self, args: Sequence[str]) -> list[str]:
        """The full argv for `args` (global options first)."""
        argv = [str(self.info.binary)]
        if self.state_dir:
            argv += ["--state-dir", self.state_dir]
        if self.info.error_format_json:
            argv += ["--error-format", "json"]
        return [*argv, *args]

    def env(self) -> dict[str, str]:
        """The environment every smolvm run gets (`child_env`)."""
        return child_env(self.info.binary)

    def run(self, args: Sequence[str], *, doing: str) -> str:
        """Run smolvm to completion and return its stdout; failures become `BottleError`."""
        argv = self.command(args)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False, env=self.env())
        except OSError as exc:
            raise BottleError(f"{doing}: cannot run {argv[0]}: {exc}", fix=_INSTALL_FIX) from exc
        if done.returncode != 0:
            raise translate_failure(doing, done.returncode, done.stderr)
        return done.stdout

    def pack_create(self, image: str, output: Path) -> None:
        self.run(pack_create_args(image, output), doing=f"pack {image} with smolvm")

    def machine_create(self, spec: MachineSpec) -> None:
        self.run(machine_create_args(spec), doing=f"create microVM {spec.name}")

    def machine_start(self, name: str) -> None:
        self.run(["machine", "start", "--name", name], doing=f"start microVM {name}")

    def machine_stop(self, name: str) -> None:
        self.run(["machine", "stop", "--name", name], doing=f"stop microVM {name}")

    def machine_delete(self, name: str) -> None:
        self.run(["machine", "delete", "--name", name, "--force"], doing=f"delete microVM {name}")

    def machine_copy_in(
        self, source: Path, name: str, guest_path: str, *, mode: int, uid: int = 0
    ) -> None:
        self.run(
            machine_cp_args(source, name, guest_path, mode=mode, uid=uid),
            doing=f"copy {source.name} into microVM {name}",
        )

    def machine_exec(
        self,
        name: str,
        command: Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        seconds: float = GUEST_SETUP_SECONDS,
    ) -> str:
        """Run `command` in the machine to its end (no terminal); the end of its output. The
        programs it runs are the agent image's, which may write, or last, without end: it is
        read for `seconds` at most, and no more than `PROBE_OUTPUT_BYTES` of it is kept."""
        doing = f"run {command[0]} in {name}"
        code, output = self.exec_output(
            name, command, user=user, env=env, max_bytes=PROBE_OUTPUT_BYTES, seconds=seconds
        )
        if code == UNFINISHED:
            raise BottleError(
                f"{doing}: it had not finished after {seconds:g} s (the agent image's own "
                "programs run it): the image is not one to trust",
                fix="rebuild the agent image from a Dockerfile and context you have checked",
            )
        text = output.decode("utf-8", "replace")
        if code != 0:  # the guest command's (exec_output raised smolvm's own)
            said = text.strip()[-_SAID_CHARACTERS:]
            raise BottleError(f"{doing}: it exited with status {code}" + (f": {said}" * bool(said)))
        return text

    def exec_output(
        self,
        name: str,
        command: Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        max_bytes: int,
        seconds: float,
    ) -> tuple[int, bytes]:
        """Run `command` in the machine: its exit status and the last `max_bytes` of its stdout,
        then of its stderr, read for at most `seconds` (then smolvm is ended and the status is
        `UNFINISHED`): a command run as the agent writes, and lasts, as the agent likes.

        A failing command is a result, not an error; only smolvm's own failures (no such
        machine, not running) raise `BottleError`.
        """
        argv = self.command(machine_exec_args(name, command, user=user, env=env))
        process = self._start(argv, stdin=subprocess.DEVNULL)
        stdout, stderr = Tail(max_bytes), Tail(max_bytes)
        assert process.stdout is not None and process.stderr is not None
        with process, contextlib.ExitStack() as undo:
            undo.callback(process.kill)  # once waited for, a no-op
            sinks = {process.stdout.fileno(): stdout.write, process.stderr.fileno(): stderr.write}
            if not _drained_and_ended(process, sinks, seconds):
                return UNFINISHED, stopped_waiting(stdout.data + stderr.data, seconds)
        message = stderr.data.decode("utf-8", "replace")
        if process.returncode != 0 and _is_smolvm_error(message, self.info.error_format_json):
            raise translate_failure(f"run {command[0]} in {name}", process.returncode, message)
        return process.returncode, stdout.data + stderr.data

    def exec_attached(
        self,
        name: str,
        command: Sequence[str],
        *,
        interactive: bool,
        user: str | None = None,
        guard: bool = False,
    ) -> int:
        """Run `command` in the machine on this process's stdin, stdout and stderr (with a
        terminal when `interactive`); its exit code, which smolvm passes through.

        smolvm never writes to this terminal itself: an interactive session runs on a
        pseudo-terminal of ours, relayed through the terminal guard; otherwise its output is
        read here and made safe (always with `guard`, else where the output is a terminal)."""
        argv = self.command(machine_exec_args(name, command, interactive=interactive, user=user))
        try:
            if interactive:
                return run_in_pty(argv, self.env())
            return run_streamed(argv, self.env(), guard=True if guard else None)
        except OSError as exc:
            raise BottleError(f"cannot run {argv[0]}: {exc}", fix=_INSTALL_FIX) from exc

    def exec_stream(
        self,
        name: str,
        command: Sequence[str],
        *,
        user: str | None = None,
        until: float,
        env: Mapping[str, str] | None = None,
    ) -> Iterator[bytes]:
        """What `command` run in the machine writes to its stdout, as it is read: it can be
        larger than this process's memory (a sparse file costs the guest nothing and tars to
        its full length). The command's stderr must be sent elsewhere by the command itself
        (smolvm's own errors, read at the end, must stay small); smolvm's failure raises, and
        so does the command's (`CommandFailed`, once its output is read, or when it is still
        open at `until`, a `time.monotonic()`: the agent can stop a command in its machine)."""
        argv = self.command(machine_exec_args(name, command, user=user, env=env))
        return self._stream(argv, f"run {command[0]} in {name}", command_exits=True, until=until)

    def logs(self, name: str, *, follow: bool = False) -> Iterator[bytes]:
        """``machine logs`` of `name`: the workload's output as it is read (with `follow`, until
        the reader stops: smolvm is then ended); smolvm's own failure raises `BottleError`.

        Without `follow` it is cut (smolvm ended, `BottleError` saying so) after `LOGS_BYTES`,
        or after `LOGS_SECONDS` spent waiting on smolvm: an agent writing to its console
        without end kept it coming for ever, to a terminal that takes its time. The time the
        reader holds a chunk (a person's pager) is not counted."""
        argv = self.command(machine_logs_args(name, follow=follow))
        doing = f"read the logs of {name}"
        if follow:  # the person asked for what comes, for as long as they like (Ctrl-C)
            yield from self._stream(argv, doing, command_exits=False)
            return
        fix = (
            "`bottle-engine logs --follow` reads them for as long as you leave it running "
            "(Ctrl-C ends it)"
        )
        read = 0
        chunks = self._stream(argv, doing, command_exits=False, waiting=LOGS_SECONDS)
        with contextlib.closing(chunks):  # a cut ends smolvm now, not when collected
            try:
                for chunk in chunks:
                    yield chunk[: LOGS_BYTES - read]
                    read += len(chunk)
                    if read >= LOGS_BYTES:
                        raise BottleError(
                            f"the logs of {name} were cut after {LOGS_BYTES // MIB} MiB, more "
                            "than smolvm keeps: its workload was still writing",
                            fix=fix,
                        )
            except CommandFailed as held_open:  # the deadline: nothing else fails with it here
                raise BottleError(
                    f"the logs of {name} were cut after {LOGS_SECONDS:g} s of reading: its "
                    "output was still coming, or held open, then",
                    fix=fix,
                ) from held_open

    def _stream(
        self,
        argv: list[str],
        doing: str,
        *,
        command_exits: bool,
        until: float | None = None,
        waiting: float | None = None,
    ) -> Generator[bytes, None, None]:
        """smolvm's stdout for `argv`, read as it comes; a failure of smolvm's raises after.
        With `command_exits` smolvm passes on a guest command's exit status, so only stderr
        naming smolvm's own error is smolvm's failure; another is the command's
        (`CommandFailed`). It is read to `until` (a `time.monotonic()`), or for `waiting`
        seconds spent waiting on smolvm, whatever the reader takes over each chunk; either
        way `CommandFailed` once the time is up."""
        process = self._start(argv)
        stdout = process.stdout
        assert stdout is not None
        read_to_end = False
        try:
            while True:
                began = time.monotonic()
                chunk = read_before(stdout.fileno(), until if waiting is None else began + waiting)
                if waiting is not None:
                    waiting -= time.monotonic() - began
                if not chunk:
                    read_to_end = True  # smolvm is on its way out: not to be ended
                    break
                yield chunk
        finally:
            if not read_to_end:  # the reader stopped early (Ctrl-C on --follow, a deadline)
                process.terminate()
            errors, returncode = _ended(process)
        own = not command_exits or _is_smolvm_error(errors, self.info.error_format_json)
        if returncode > 0 and own:
            raise translate_failure(doing, returncode, errors)
        if command_exits and returncode != 0:  # the guest command's: what it wrote may be short
            raise CommandFailed(f"the command exited with status {returncode}")

    def _start(self, argv: list[str], **streams: Any) -> subprocess.Popen[bytes]:
        """smolvm started on `argv`, its stdout and stderr piped to us (and `streams`)."""
        try:
            return subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(), **streams
            )
        except OSError as exc:
            raise BottleError(f"cannot run {argv[0]}: {exc}", fix=_INSTALL_FIX) from exc

    def machines(self) -> list[dict[str, Any]]:
        """``machine ls --json``: one dict per machine (``name``, ``state``, ``labels``, ...)."""
        out = self.run(["machine", "ls", "--json"], doing="list microVMs")
        try:
            listed = json.loads(out or "[]")
        except json.JSONDecodeError as exc:
            raise BottleError(
                f"`smolvm machine ls --json` printed something that is not JSON: {exc}",
                fix="check that the installed smolvm is a supported release (`smolvm --version`)",
            ) from exc
        return [entry for entry in listed if isinstance(entry, dict)]


def _ended(process: subprocess.Popen[bytes]) -> tuple[str, int]:
    """smolvm's stderr (its last MiB) and exit status, once it has ended, or killed after
    `EXIT_SECONDS`: one waiting on a guest command the agent stopped, or passing on a guest's
    stderr without end, held its reader for ever, and what it wrote took the host's memory."""
    assert process.stderr is not None
    errors = Tail(MIB)
    with process:  # its pipes closed, and waited for
        try:
            if not _drained_and_ended(process, {process.stderr.fileno(): errors.write}):
                process.kill()
        except BaseException:  # Ctrl-C: Popen's exit would give it a quarter of a second only
            process.kill()
            process.wait()  # killed: at once
            raise
    return errors.data.decode("utf-8", "replace"), process.returncode


def _drained_and_ended(
    process: subprocess.Popen[bytes],
    sinks: Mapping[int, Callable[[bytes], None]],
    seconds: float = EXIT_SECONDS,
) -> bool:
    """Has smolvm closed its outputs (read into `sinks`) within `seconds`, then ended within
    `EXIT_SECONDS`? False leaves it running, for the caller to end."""
    if not drain(sinks, seconds):
        return False
    try:
        process.wait(EXIT_SECONDS)  # its outputs closed: smolvm is on its way out
    except subprocess.TimeoutExpired:
        return False
    return True


def translate_failure(doing: str, returncode: int, stderr: str) -> BottleError:
    """A failed smolvm run as a sentence with a fix; reads ``--error-format json`` codes."""
    lines = [line for line in stderr.splitlines() if line.strip() and not _NOISE.match(line)]
    code = ""
    message = ""
    for line in lines:
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            code = str(parsed["error"].get("code", ""))
            message = str(parsed["error"].get("message", ""))
    if not message:
        message = next(
            (line.strip() for line in lines if line.lower().startswith("error")),
            lines[0].strip() if lines else f"exit status {returncode}",
        )
    text = f"{doing}: smolvm failed: {message}"
    if opened := _KVM_OPEN_ERRNO.search(message):
        text += f" (/dev/kvm: {os.strerror(int(opened[1]))})"  # libkrun gives only the number
    if code in {"KVM_UNAVAILABLE", "HYPERVISOR_UNAVAILABLE"} or re.search(
        r"KvmOpen|/dev/kvm|\bKVM\b|hypervisor", message, re.IGNORECASE
    ):
        return BottleError(text, fix=_NO_VM_FIX)
    if returncode == 2:
        return BottleError(
            text,
            fix="the installed smolvm does not accept these arguments; install a supported "
            f"release (`smolvm --version`; bot-bottle is tested with {TESTED_VERSION}) or set "
            "BOTTLE_SMOLVM",
        )
    if code == "NOT_FOUND":
        return BottleError(text, fix="`bottle-engine ls` shows the bottles that exist")
    if code == "CONFLICT":
        return BottleError(
            text,
            fix="a machine of that name exists already: `bottle-engine stop --rm SLUG` if it is "
            "a bottle (`bottle-engine ls`), else `smolvm machine delete --name NAME --force`",
        )
    return BottleError(text, fix="rerun with --debug, and see `smolvm machine ls` for its state")


def _is_smolvm_error(stderr: str, json_errors: bool) -> bool:
    """Whether stderr carries smolvm's own failure rather than the command's output."""
    for line in stderr.splitlines():
        if json_errors and line.startswith('{"error"'):
            return True
        if not json_errors and line.startswith(("Error: ", "error: ")):
            return True
    return False


def _run_plain(binary: Path, args: list[str], doing: str) -> str:
    try:
        done = subprocess.run(
            [str(binary), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env=child_env(binary, boots=False),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BottleError(f"{doing}: cannot run {binary}: {exc}", fix=_INSTALL_FIX) from exc
    if done.returncode != 0:
        raise translate_failure(doing, done.returncode, done.stderr)
    return done.stdout
