"""Agent containers: create with the bottle's hardening, put files in, attach, exec, stop."""

from __future__ import annotations

import contextlib
import os
import posixpath
import select
import socket
import sys
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import docker.errors
import requests.exceptions

from bottle_engine.command_output import (
    UNFINISHED,
    Tail,
    receive,
    recv_before,
    stopped_waiting,
)
from bottle_engine.dockerapi.client import (
    LABEL_MANAGED,
    NO_HEALTHCHECK,
    bottle_bounds,
    docker_errors,
    refuse_engine_labels,
    with_label,
)
from bottle_engine.dockerapi.images import image_config
from bottle_engine.errors import BottleError, CommandFailed
from bottle_engine.limits import (
    SELF_TEST_CPUS,
    SELF_TEST_MEMORY_BYTES,
    SELF_TEST_PIDS,
    SELF_TEST_SECONDS,
    AgentDisk,
    agent_disk,
    tmpfs_options,
)
from bottle_engine.terminal import GuardedOutput, relay_session, socket_peer, write_replay

_EXIT_CODE_TRIES = 20  # tenths of a second an ended exec may take to note its exit code
# Storage drivers whose writable layer `--storage-opt size=` can bound (overlay2 only on xfs
# with project quotas: the probe in `writable_layer_bounded` settles that case).
_SIZED_DRIVERS = {"overlay2", "btrfs", "zfs", "devicemapper", "windowsfilter"}

# The agent's DNS servers: none Docker's embedded DNS (127.0.0.11) forwards to. Before Moby 26
# it forwards a name it does not know to the container's IPv4 servers for internal networks
# too, from the host's namespace (CVE-2024-29018): a way out by DNS. And each lookup over TCP
# that it cannot forward is a warning line in the daemon's own log on the host: an agent
# asking in a loop wrote there without end (the bundle's address, where nothing answers on
# 53, closed the first and not the second). Given only an IPv6 server, it forwards nowhere
# and makes no connection. The agent's resolver lists that server after 127.0.0.11 and cannot
# reach it: the bottle's network has no IPv6, and 100::/64 is discard-only (RFC 6666).
AGENT_DNS_SERVERS = ("100::1",)
# The self-test's user: not root, and numeric, so the image's /etc/passwd need not name it.
NOBODY = "65534:65534"


@dataclass(frozen=True)
class AgentContainerSpec:
    """How the agent container is made; every isolation setting is spelled out here."""

    name: str
    image: str
    command: Sequence[str]
    env: Mapping[str, str]
    network: str
    ip: str
    user: str
    workdir: str
    runtime: str | None
    nano_cpus: int
    memory_bytes: int
    labels: Mapping[str, str]
    dns_servers: Sequence[str] = AGENT_DNS_SERVERS
    hostname: str = "bottle"
    pids_limit: int = 4096
    # /tmp as a sized tmpfs (its pages count in `memory_bytes`) and, where the storage driver
    # can, a bound on the writable layer. None: neither (plain image /tmp, unbounded layer).
    disk: AgentDisk | None = None
    tty: bool = True  # see backends.base.wants_tty
    # Paths the launch fills before the first start (the workspace, the agent's home): a tmpfs
    # over an image's VOLUME there would hide what it put (`image_volumes`).
    filled: Sequence[str] = ()


class NameTaken(Exception):
    """The container name is already in use (the launch moves on to the next candidate)."""


def create_agent_container(client: Any, spec: AgentContainerSpec) -> Any:
    """Create (not start) the agent container.

    No capabilities, no privilege escalation, no core dumps, no Docker socket, no host mounts,
    one network.
    """
    api = client.api
    config = image_config(client, spec.image)
    refuse_engine_labels(
        config,
        spec.image,
        "agent",
        fix="remove those labels from the Dockerfile (an image FROM one that sets them cannot "
        "undo them: build from another base)",
    )
    volumes = _declared_volumes(config)
    _refuse_hidden(spec, volumes)
    host_config = api.create_host_config(
        **bottle_bounds(
            memory_bytes=spec.memory_bytes, pids=spec.pids_limit, nano_cpus=spec.nano_cpus
        ),
        network_mode=spec.network,
        runtime=spec.runtime,
        init=True,
        ipc_mode="private",
        dns=list(spec.dns_servers),
        **_disk_options(spec, volumes),
    )
    networking = api.create_networking_config(
        {spec.network: api.create_endpoint_config(ipv4_address=spec.ip)}
    )
    try:
        created = api.create_container(
            spec.image,
            command=list(spec.command),
            name=spec.name,
            hostname=spec.hostname,
            environment=dict(spec.env),
            user=spec.user,
            working_dir=spec.workdir,
            labels={**spec.labels, LABEL_MANAGED: "1"},
            host_config=host_config,
            networking_config=networking,
            tty=spec.tty,
            healthcheck=NO_HEALTHCHECK,
            # Without a TTY nobody types to the agent: stdin at EOF, so `claude -p` does not
            # wait for input that never comes.
            stdin_open=spec.tty,
        )
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise NameTaken(spec.name) from exc
        with docker_errors(f"create container {spec.name}"):
            raise
    with docker_errors(f"inspect container {spec.name}"):
        return client.containers.get(created["Id"])


def image_volumes(client: Any, image: str) -> tuple[str, ...]:
    """The paths `image` declares with VOLUME, cleaned as Docker compares them.

    Docker gives each an anonymous volume, a directory on the host's disk outside the writable
    layer's bound, the memory limit and every tmpfs: an agent wrote 192 MiB into one under a
    64 MiB limit. A tmpfs at the same path takes its place (Docker then makes no volume)."""
    return _declared_volumes(image_config(client, image))


def _declared_volumes(config: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(
        sorted({"/" + posixpath.normpath(p).lstrip("/") for p in config.get("Volumes") or {}})
    )


def _overlaps(path: str, other: str) -> bool:
    """Is one of the two paths the other or beneath it?"""
    return (
        path == other
        or path.startswith(other.rstrip("/") + "/")
        or other.startswith(path.rstrip("/") + "/")
    )


def _refuse_hidden(spec: AgentContainerSpec, volumes: Sequence[str]) -> None:
    for volume in volumes:
        for filled in spec.filled:
            if _overlaps(volume, filled):
                raise BottleError(
                    f"the agent image {spec.image} declares VOLUME {volume}, where the launch "
                    f"puts {filled} before the agent starts: Docker would keep it on the host's "
                    "disk, outside the bottle's bounds, and the tmpfs bot-bottle mounts there "
                    "instead would hide what was put",
                    fix=f"remove `VOLUME {volume}` from the Dockerfile (an image FROM one that "
                    "declares it cannot undo it: build from another base)",
                )


def _disk_options(spec: AgentContainerSpec, volumes: Sequence[str]) -> dict[str, Any]:
    """/tmp and each of the image's `volumes` a tmpfs counted in the memory limit; the
    writable layer sized where the storage driver can."""
    disk = spec.disk or agent_disk(spec.memory_bytes, layer_bounded=False)
    tmpfs = {path: tmpfs_options(disk.tmp_bytes, executable=True) for path in volumes}
    if spec.disk is not None:
        tmpfs["/tmp"] = tmpfs_options(disk.tmp_bytes, executable=True)
    options: dict[str, Any] = {"tmpfs": tmpfs} if tmpfs else {}
    if spec.disk is not None and spec.disk.layer_bytes is not None:
        options["storage_opt"] = {"size": str(spec.disk.layer_bytes)}
    return options


def writable_layer_bounded(client: Any, image: str, info: Mapping[str, Any] | None = None) -> bool:
    """Can this daemon bound a container's writable layer (`--storage-opt size=`)?

    Asked the only reliable way: create (never start) a container of `image` with a size, and
    remove it. overlay2 on anything but xfs is known to refuse and is not asked. `info`: the
    daemon's `info()` when the caller has it already (one round trip less per launch).
    """
    if info is None:
        with docker_errors("ask the Docker daemon about its storage driver"):
            info = client.info()
    driver = str(info.get("Driver", ""))
    status = dict(info.get("DriverStatus") or [])
    if driver not in _SIZED_DRIVERS:
        return False
    if driver == "overlay2" and status.get("Backing Filesystem") != "xfs":
        return False
    try:
        probe = client.api.create_container(
            image,
            command=["true"],
            labels={LABEL_MANAGED: "1"},
            host_config=client.api.create_host_config(
                storage_opt={"size": "1G"}, network_mode="none"
            ),
        )
    except docker.errors.APIError:
        return False
    with contextlib.suppress(docker.errors.APIError):
        client.api.remove_container(probe["Id"], force=True)
    return True


def put_tree(container: Any, archive: bytes | IO[bytes], dest: str = "/") -> None:
    """Unpack a tar archive (guest files, a skill, the launch directory; bytes, or a file read
    as it is sent) at `dest`."""
    with docker_errors(f"copy files into {container.name}"):
        container.put_archive(dest, archive)


@contextlib.contextmanager
def archive_of(container: Any, path: str) -> Iterator[IO[bytes] | None]:
    """`path` of a container (created or running) as a tar stream, read as it comes; None
    when it is absent. The daemon holds the container until the stream is closed (a
    `put_tree` into it waits): use it within the `with`, never hold it past.

    What is read is the image's to choose, and a file of zeros costs it nearly nothing in a
    layer: the reader bounds what it takes (`read_file`). Not docker-py's `get_archive`, whose
    chunk generator never closes the response: the container would stay held."""
    api = container.client.api
    with docker_errors(f"read {path} from {container.name}"):
        response = api._get(
            api._url("/containers/{0}/archive", container.id),
            params={"path": path},
            headers={"Accept-Encoding": "identity"},
            stream=True,
        )
        with contextlib.closing(response):
            try:
                api._raise_for_status(response)
            except docker.errors.NotFound:
                yield None
                return
            yield response.raw


def read_file(container: Any, path: str, *, max_bytes: int) -> bytes | None:
    """A file's bytes from a container (created or running), or None when it is absent or not
    a file. One larger than `max_bytes` is refused (`BottleError`) from its tar header, before
    any of it is read."""
    with archive_of(container, path) as stream:
        if stream is None:
            return None
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            member = archive.next()
            if member is None or not member.isfile():
                return None
            if member.size > max_bytes:
                raise BottleError(
                    f"{path} in the image of {container.name} is {member.size} bytes, more than "
                    f"the {max_bytes} bot-bottle reads of it: the image is not one to trust",
                    fix=f"rebuild the agent image so that {path} is an ordinary one, from a "
                    "Dockerfile and context you have checked",
                )
            extracted = archive.extractfile(member)
            return extracted.read() if extracted else None


def exec_bounded(
    client: Any,
    container: Any,
    command: Sequence[str],
    *,
    user: str,
    max_bytes: int,
    seconds: float,
) -> tuple[int, bytes]:
    """Run `command` in a running container, without stdin or a terminal: its exit code and
    the last `max_bytes` of its stdout and stderr as they came, read for at most `seconds`
    (then the exit code is `UNFINISHED`). What the command writes, and how long it keeps its
    output open, is the agent's to choose when it runs as the agent."""
    with docker_errors(f"run a command in {container.name}"):
        exec_id = client.api.exec_create(container.id, list(command), user=user)["Id"]
        socket_io = client.api.exec_start(exec_id, socket=True)
    sock, early = _hijacked(socket_io)
    tail = Tail(max_bytes)
    sinks = {1: tail.write, 2: tail.write}
    pending = _write_frames(early, sinks)

    def frames(chunk: bytes) -> None:
        nonlocal pending
        pending = _write_frames(pending + chunk, sinks)

    try:
        finished = receive(sock, seconds, frames)
    except OSError as exc:
        raise BottleError(f"lost the connection to {container.name}: {exc}") from exc
    finally:
        socket_io.close()
    if not finished:
        return UNFINISHED, stopped_waiting(tail.data, seconds)
    with docker_errors(f"read the exit code of a command in {container.name}"):
        code = client.api.exec_inspect(exec_id).get("ExitCode")
    # No code yet: its output was closed while it still runs.
    return (int(code) if code is not None else UNFINISHED), tail.data


def exec_interactive(
    client: Any, container: Any, command: Sequence[str], *, user: str, tty: bool
) -> int:
    """Run `command` in a running container with this process's stdin, stdout and stderr;
    its exit code. With `tty` (stdin is a terminal) the command gets a TTY and the terminal
    is put in raw mode, the window size forwarded; otherwise stdin is streamed until its end
    (then the command sees end of file) and stdout and stderr are kept apart."""
    with docker_errors(f"run a command in {container.name}"):
        exec_id = client.api.exec_create(
            container.id, list(command), stdin=True, tty=tty, user=user
        )["Id"]
        socket_io = client.api.exec_start(exec_id, tty=tty, socket=True)
    sock, early = _hijacked(socket_io)
    try:
        if tty:
            relay_session(
                socket_peer(sock, early),
                lambda rows, columns: client.api.exec_resize(exec_id, rows, columns),
            )
        else:
            _pump_streams(sock, early)
    except OSError as exc:
        raise BottleError(f"lost the connection to {container.name}: {exc}") from exc
    finally:
        socket_io.close()
    with docker_errors(f"read the exit code of a command in {container.name}"):
        code = client.api.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else 1


_FRAME_HEADER = 8  # Docker's multiplexed stream: kind (1 stdout, 2 stderr), 3 zero bytes, size


def _hijacked(socket_io: Any) -> tuple[Any, bytes]:
    """The socket of an attach or exec session, and the session's first bytes.

    docker-py reads the HTTP head of the upgraded connection through a buffered reader and
    hands out the socket under it: whatever arrived with the head (a live attach's replay of
    the agent's output, up to 8 KiB) stays in that reader, and reading the socket alone lost
    it whenever the daemon was quick. The reader is emptied here, without waiting."""
    sock = getattr(socket_io, "_sock", socket_io)
    response = getattr(socket_io, "_response", None)
    reader = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
    if reader is None or not hasattr(reader, "read1"):
        return sock, b""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        early: bytes = reader.read1(_EARLY_MAX) or b""
    except OSError:  # nothing came with the head (over TLS the error is SSLWantReadError)
        early = b""
    finally:
        sock.settimeout(timeout)
    # Over TLS the rest of the record read with the head is decrypted in the SSL object,
    # where select does not see it.
    pending = getattr(sock, "pending", None)
    while pending is not None and (size := pending()) > 0:
        early += sock.recv(size)
    return sock, early


_EARLY_MAX = 1 << 20  # more than any reader's buffer: one read takes all it holds
_READ = 65536


def _pump_streams(sock: Any, early: bytes = b"") -> None:
    """stdin -> socket (half-closed at its end); the socket's multiplexed frames -> stdout and
    stderr (each made safe where it is a terminal), until the command ends."""
    stdin_fd: int | None = sys.stdin.fileno()
    outputs = {1: GuardedOutput(sys.stdout.buffer), 2: GuardedOutput(sys.stderr.buffer)}
    try:
        _pump_frames(sock, stdin_fd, {kind: out.write for kind, out in outputs.items()}, early)
    finally:
        for output in outputs.values():
            output.close()


def _pump_frames(
    sock: Any, stdin_fd: int | None, outputs: Mapping[int, Callable[[bytes], None]], early: bytes
) -> None:
    pending = _write_frames(early, outputs)
    while True:
        watched = [sock] if stdin_fd is None else [sock, stdin_fd]
        readable, _, _ = select.select(watched, [], [])
        if stdin_fd is not None and stdin_fd in readable:
            data = os.read(stdin_fd, 65536)
            if data:
                sock.sendall(data)
            else:
                stdin_fd = None
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
        if sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            pending = _write_frames(pending + data, outputs)


def _write_frames(pending: bytes, outputs: Mapping[int, Callable[[bytes], None]]) -> bytes:
    """Write each whole frame of `pending` to its output; the start of a frame that is not.
    (The daemon cuts frames at 32 KiB, whatever the command writes.)"""
    while len(pending) >= _FRAME_HEADER:
        size = int.from_bytes(pending[4:_FRAME_HEADER], "big")
        if len(pending) < _FRAME_HEADER + size:
            break
        outputs.get(pending[0], outputs[1])(pending[_FRAME_HEADER : _FRAME_HEADER + size])
        pending = pending[_FRAME_HEADER + size :]
    return pending


def runs_cleanly(
    client: Any,
    image: str,
    runtime: str,
    command: Sequence[str],
    *,
    seconds: float = SELF_TEST_SECONDS,
) -> bool | None:
    """Does `command` exit 0 within `seconds` in a throwaway, network-less container of `image`
    under `runtime`? None: it did not end within `seconds` (no answer, not a no).

    `image` is not trusted: its entrypoint is not run (`command[0]` takes its place) and the
    command runs as nobody with a bottle's bounds, smaller (limits.py: the self-test). It is
    killed after `seconds`; the container is removed whatever happens.
    """
    api = client.api
    tmpfs = {
        path: tmpfs_options(SELF_TEST_MEMORY_BYTES // 4, executable=False)
        for path in image_volumes(client, image)
    }
    host_config = api.create_host_config(
        **bottle_bounds(
            memory_bytes=SELF_TEST_MEMORY_BYTES,
            pids=SELF_TEST_PIDS,
            nano_cpus=int(SELF_TEST_CPUS * 1e9),
        ),
        runtime=runtime,
        network_mode="none",
        read_only=True,
        tmpfs=tmpfs,
    )
    container_id: str | None = None
    try:
        container_id = api.create_container(
            image,
            entrypoint=list(command[:1]),
            command=list(command[1:]),
            user=NOBODY,
            labels={LABEL_MANAGED: "1"},
            host_config=host_config,
            healthcheck=NO_HEALTHCHECK,
        )["Id"]
        api.start(container_id)
        status = api.wait(container_id, timeout=seconds)
    except docker.errors.APIError:
        return False
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        return None  # no exit within `seconds` (docker-py raises either, "Read timed out")
    finally:
        if container_id is not None:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(container_id, force=True, v=True)
    return int(status.get("StatusCode", 1)) == 0


def containers_with_label(client: Any, label: str, value: str | None = None) -> list[Any]:
    return with_label(client.containers, label, value, "list containers", all=True)


def container_logs(client: Any, name: str, *, follow: bool) -> Iterator[bytes]:
    """A container's output, as it is so far or (with `follow`) as it comes."""
    try:
        container = client.containers.get(name)
    except docker.errors.NotFound as exc:
        raise BottleError(f"no container {name}", fix="`bottle-engine ls` lists bottles") from exc
    with docker_errors(f"read the logs of {name}"):
        yield from _output(client, container, follow=follow)


def remove_container(client: Any, name_or_id: str) -> None:
    """Force-remove a container; absent is fine."""
    try:
        container = client.containers.get(name_or_id)
    except docker.errors.NotFound:
        return
    with (
        docker_errors(f"remove container {name_or_id}"),
        contextlib.suppress(docker.errors.NotFound),
    ):
        container.remove(force=True, v=True)


def stop_container(client: Any, name_or_id: str, timeout: int = 10) -> None:
    try:
        container = client.containers.get(name_or_id)
    except docker.errors.NotFound:
        return
    with docker_errors(f"stop container {name_or_id}"):
        container.stop(timeout=timeout)


def attach(client: Any, container: Any) -> int:
    """Connect this terminal to the container's TTY until it exits; returns its exit code.

    With a terminal on stdin and a TTY in the container the session is interactive (raw mode,
    window size forwarded); otherwise (CI, pipes, a printing agent) the output is streamed and
    stdin is not forwarded.
    """
    container.reload()
    # The agent's output reaches this terminal only through the terminal guard: a replay
    # (no query, no input mode) unless the session is interactive.
    if container.status != "running":
        with docker_errors(f"read the output of {container.name}"):
            write_replay(_output(client, container, follow=False))
    elif sys.stdin.isatty() and sys.stdout.isatty() and has_tty(container):
        _attach_tty(client, container)
    else:
        # Following the logs gives everything from the start, then live output until the agent
        # exits; a streamed attach with logs=True loses what was written before it connected.
        with docker_errors(f"follow the output of {container.name}"):
            write_replay(_output(client, container, follow=True))
    with docker_errors(f"wait for {container.name}"):
        status = container.wait()
    return int(status.get("StatusCode", 1))


def _output(client: Any, container: Any, *, follow: bool) -> Iterator[bytes]:
    """The container's output (up to CONTAINER_LOG_BYTES kept by the daemon) as it is read,
    never held whole. docker-py hands a TTY container's output out one byte at a time, 150
    times slower (38 s for 2 MB, eight minutes for a full log): read in the chunks that come."""
    if not has_tty(container):
        yield from container.logs(stream=True, follow=follow)  # frames, demultiplexed
        return
    api = client.api
    params = {"stdout": 1, "stderr": 1, "follow": int(follow), "tail": "all"}
    response = api._get(api._url("/containers/{0}/logs", container.id), params=params, stream=True)
    with contextlib.closing(response):
        api._raise_for_status(response)
        while chunk := response.raw.read1(_READ):
            yield chunk


def has_tty(container: Any) -> bool:
    """Was the container made with a TTY (an agent that prints one answer is not)?"""
    return bool((container.attrs.get("Config") or {}).get("Tty", True))


def _attach_tty(client: Any, container: Any) -> None:
    with docker_errors(f"attach to {container.name}"):
        socket_io = client.api.attach_socket(
            container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1, "logs": 1}
        )
    sock, early = _hijacked(socket_io)
    try:
        relay_session(
            socket_peer(sock, early),
            lambda rows, columns: container.resize(height=rows, width=columns),
        )
    except OSError as exc:
        raise BottleError(f"lost the connection to {container.name}: {exc}") from exc
    finally:
        socket_io.close()


def stream_inside(
    client: Any,
    container: Any,
    command: Sequence[str],
    *,
    user: str,
    until: float,
    environment: Mapping[str, str] | None = None,
) -> Iterator[bytes]:
    """What `command` run in a running container writes to its stdout, as it is read, then
    `CommandFailed` if it did not exit 0 (with `environment` over the container's own), or if
    its output was still open at `until` (a `time.monotonic()`).

    Streamed, never held whole: what the agent controls can be larger than this process's
    memory (a sparse file costs it nothing and tars to its full length). Read to a deadline:
    a command that runs as the agent is the agent's to stop, and its output stays open."""
    doing = f"run {command[0]} inside {container.name}"
    with docker_errors(doing):
        exec_id = client.api.exec_create(
            container.id,
            list(command),
            user=user,
            environment=dict(environment or {}),
            stdout=True,
            stderr=False,
        )["Id"]
        socket_io = client.api.exec_start(exec_id, socket=True)
    # docker-py's own stream (`stream=True, demux=True`) reads frames from under its buffered
    # reader, one recv per header: the first frames and a header split across reads went out
    # of step, and file bytes were read as a frame header.
    sock, early = _hijacked(socket_io)
    read: list[bytes] = []
    sinks = {1: read.append, 2: lambda _: None}
    try:
        pending = _write_frames(early, sinks)
        while True:
            yield from read
            read.clear()
            if not (chunk := recv_before(sock, until)):
                break
            pending = _write_frames(pending + chunk, sinks)
    except OSError as exc:
        raise BottleError(f"lost the connection to {container.name}: {exc}") from exc
    finally:
        socket_io.close()
    with docker_errors(doing):
        code = _exit_code(client, exec_id)
    if code != 0:
        raise CommandFailed(f"the command exited with status {code}")


def _exit_code(client: Any, exec_id: str) -> int | None:
    """An exec's exit code once its output has ended: the daemon may note it a moment later."""
    for _ in range(_EXIT_CODE_TRIES):
        code = client.api.exec_inspect(exec_id).get("ExitCode")
        if code is not None:
            return int(code)
        time.sleep(0.1)
    return None
