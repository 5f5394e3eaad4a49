"""The one place that runs the ``smolvm`` CLI (the smolmachines microVM manager).

Nobody else in the engine starts smolvm. The binary is ``$BOTTLE_SMOLVM`` or ``smolvm`` on
``PATH``; ``$BOTTLE_SMOLVM_STATE_DIR`` (Linux) keeps smolvm's own state apart, e.g. for tests.

The installed version is probed once per process (`probe`), lazily: a pack-cache hit never runs
smolvm at all. The probe answers the one question the pack pipeline asks: does ``pack create -I``
take a local image archive (recent smolvm), or only a registry reference (0.8-era releases,
which need the ephemeral registry hop)? It reads ``pack create --help`` rather than comparing
version numbers, because the help text is what the CLI actually parses.

Argument lists are built by pure functions (``*_args``), so tests check them without running
anything; failures are translated here, once, into `BottleError` with the fix.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bottle_engine.errors import BottleError

ENV_BINARY = "BOTTLE_SMOLVM"
ENV_STATE_DIR = "BOTTLE_SMOLVM_STATE_DIR"

_INSTALL_FIX = (
    "install smolvm (https://github.com/smol-machines/smolvm; `pip install smolmachines` ships it "
    "as smol/smol-vmm) and put it on PATH, or set BOTTLE_SMOLVM=/path/to/smolvm; "
    'or use the docker backend (`backend = "docker"` in bottle.toml, or BOTTLE_BACKEND=docker)'
)
_NO_VM_FIX = (
    "this host cannot boot microVMs (smolvm needs a usable /dev/kvm on Linux, "
    'Hypervisor.framework on macOS); use the docker backend (`backend = "docker"` or '
    "BOTTLE_BACKEND=docker)"
)
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
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    smolfile: Path | None = None
    workload: tuple[str, ...] = ()
    """The machine's own long-running command (after ``--``); empty: the image's CMD."""
    user: str | None = None
    """Who the workload and ``exec`` run as by default (``uid[:gid]``); None: the image's USER."""


def find_binary() -> Path:
    """The smolvm executable to run, or a `BottleError` saying how to install one."""
    override = os.environ.get(ENV_BINARY)
    if override:
        path = Path(override).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BottleError(
                f"BOTTLE_SMOLVM={override} is not an executable file",
                fix="point BOTTLE_SMOLVM at the smolvm binary, or unset it to use smolvm on PATH",
            )
        return path.resolve()
    found = shutil.which("smolvm")
    if not found:
        raise BottleError(
            "the smolmachines backend needs the smolvm CLI, and there is none on PATH",
            fix=_INSTALL_FIX,
        )
    return Path(found).resolve()


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


def pack_create_args(image: str, output: Path, smolfile: Path | None = None) -> list[str]:
    """``pack create`` for a registry reference or a local archive path (absolute)."""
    args = ["pack", "create", "--image", image, "--output", str(output)]
    if smolfile is not None:
        args += ["--smolfile", str(smolfile)]
    return args


def machine_create_args(spec: MachineSpec) -> list[str]:
    """``machine create --from <sidecar>``: network limited to `spec.allow_cidrs` only."""
    if not spec.allow_cidrs:
        # Without an allow list the VM would have either no network or (with --net) all of it.
        raise BottleError(
            f"machine {spec.name}: refusing to create a VM without an egress allow list",
            fix="this is a bug in bot-bottle; please report it",
        )
    args = ["machine", "create", "--name", spec.name, "--from", str(spec.sidecar)]
    for cidr in spec.allow_cidrs:
        args += ["--allow-cidr", cidr]
    for key, value in spec.env.items():
        args += ["--env", f"{key}={value}"]
    for key, value in sorted(spec.labels.items()):
        args += ["--label", f"{key}={value}"]
    if spec.user is not None:
        args += ["--user", spec.user]
    if spec.smolfile is not None:
        args += ["--smolfile", str(spec.smolfile)]
    if spec.workload:
        args += ["--", *spec.workload]
    return args


def machine_exec_args(
    name: str, command: Sequence[str], *, interactive: bool = False, user: str | None = None
) -> list[str]:
    """``machine exec`` (which takes only the long ``--name``); ``-it`` for a terminal."""
    args = ["machine", "exec", "--name", name]
    if user is not None:
        args += ["--user", user]
    if interactive:
        args += ["--interactive", "--tty"]
    return [*args, "--", *command]


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

    def __init__(self, info: SmolvmInfo | None = None) -> None:
        self.info = info or probe()

    def command(self, args: Sequence[str]) -> list[str]:
        """The full argv for `args` (global options first), e.g. for `os.execvp` on attach."""
        argv = [str(self.info.binary)]
        state_dir = os.environ.get(ENV_STATE_DIR)
        if state_dir:
            argv += ["--state-dir", state_dir]
        if self.info.error_format_json:
            argv += ["--error-format", "json"]
        return [*argv, *args]

    def run(self, args: Sequence[str], *, doing: str) -> str:
        """Run smolvm to completion and return its stdout; failures become `BottleError`."""
        argv = self.command(args)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise BottleError(f"{doing}: cannot run {argv[0]}: {exc}", fix=_INSTALL_FIX) from exc
        if done.returncode != 0:
            raise translate_failure(doing, done.returncode, done.stderr)
        return done.stdout

    def pack_create(self, image: str, output: Path, smolfile: Path | None = None) -> None:
        self.run(pack_create_args(image, output, smolfile), doing=f"pack {image} with smolvm")

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

    def machine_exec(self, name: str, command: Sequence[str], *, user: str | None = None) -> str:
        """Run `command` in the machine to completion (no terminal); its stdout."""
        return self.run(
            machine_exec_args(name, command, user=user), doing=f"run {command[0]} in {name}"
        )

    def exec_output(
        self, name: str, command: Sequence[str], *, user: str | None = None
    ) -> tuple[int, bytes]:
        """Run `command` in the machine: its exit status and output (stdout, then stderr).

        A failing command is a result, not an error; only smolvm's own failures (no such
        machine, not running) raise `BottleError`.
        """
        argv = self.command(machine_exec_args(name, command, user=user))
        try:
            done = subprocess.run(argv, capture_output=True, check=False)
        except OSError as exc:
            raise BottleError(f"cannot run {argv[0]}: {exc}", fix=_INSTALL_FIX) from exc
        stderr = done.stderr.decode("utf-8", "replace")
        if done.returncode != 0 and _is_smolvm_error(stderr, self.info.error_format_json):
            raise translate_failure(f"run {command[0]} in {name}", done.returncode, stderr)
        return done.returncode, done.stdout + done.stderr

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
    if code in {"KVM_UNAVAILABLE", "HYPERVISOR_UNAVAILABLE"} or re.search(
        r"KvmOpen|/dev/kvm|hypervisor", message, re.IGNORECASE
    ):
        return BottleError(text, fix=_NO_VM_FIX)
    if returncode == 2:
        return BottleError(
            text,
            fix="the installed smolvm does not accept these arguments; install a supported "
            "release (`smolvm --version`; bot-bottle is tested with 1.32) or set BOTTLE_SMOLVM",
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
            [str(binary), *args], capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BottleError(f"{doing}: cannot run {binary}: {exc}", fix=_INSTALL_FIX) from exc
    if done.returncode != 0:
        raise translate_failure(doing, done.returncode, done.stderr)
    return done.stdout
