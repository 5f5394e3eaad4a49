"""How much of the host a bottle may take: the rules, as pure functions of the bottle's size.

The agent's own memory, CPUs and pids come from the manifest (`memory`, `cpus`). The bundle is
sized from them here, so that a hostile agent driving its bundle (decompression bombs through
the proxy, a huge push through the git gate, floods of connections) hits the bundle's limit and
not the host's: the kernel's OOM killer then ends a process inside the bundle container, and a
fork past the pids limit fails inside it.

The rules:

* bundle memory: a quarter of the agent's memory, at least 768 MiB (the idle bundle, three
  Python services, takes about 250 MiB) and at most 2 GiB; no swap beyond it. Its /tmp is a
  256 MiB tmpfs, counted in that memory.
* bundle CPU: one CPU, whatever the agent has (one proxy event loop, plus git for a push).
* bundle pids: 512 (git daemon serves at most `GIT_GATE_MAX_CONNECTIONS` at once).
* git gate push: each process of one push (receive-pack, index-pack, the pre-receive scan) at
  most `GIT_GATE_PUSH_CPU_SECONDS` of CPU. The pack's byte bound does not bound the work: a
  delta that copies its base many times costs a few bytes and makes a blob of any size, so a
  1 MiB pack held index-pack for 12 CPU-seconds, a 32 MiB one for days.
* git gate store: each push is bounded (bundle/config.py: its pack, and at most 1000 refs with
  names of at most 255 bytes and 16 parts), and so is what the gate keeps of the pushes it
  accepted, per upstream between two starts of the bundle (`max_stored_bytes`, 1 GiB, packs and
  a block per part of each new ref; bundle/gitgate/store.py); its audit log rotates
  (`GIT_GATE_LOG_MAX_BYTES`, three files).
* core dumps: none, in the agent and the bundle alike (core size 0, soft and hard). Under the
  usual core_pattern a dump lands in the process's working directory, for the gate its
  repository in the state dir on the host; with a pipe (systemd-coredump, apport) a helper
  the kernel starts on the host reads, compresses and stores it, outside the bottle's share.
  Docker hands a container the daemon's own limit (unlimited): an agent raised it and a crash
  of 64 MiB left a 112 MiB core.
* bundle state dir (a host directory, bind-mounted read-write; the host reads the logs and
  approvals there and the CA and logs outlive a stop): each file the bundle's own code writes is
  bounded (egress and git gate logs rotated, approvals capped, the gate's store budgeted), but
  a taken-over bundle can write there without bound. Docker cannot bound a bind mount, its
  local volume driver cannot loop-mount a sized image (`o=loop`: EINVAL, it calls mount(2)
  without losetup), and the only sized filesystem it makes without quotas is a tmpfs, which
  loses its contents when the bundle stops.
* agent /tmp: a tmpfs of half the agent's memory; the kernel counts its pages in the agent's
  memory limit, so filling it is an out-of-memory in the bottle, never a full host disk.
* paths the agent's image declares with VOLUME (postgres's, mysql's, redis's data dirs): Docker
  gives each an anonymous volume on the host's disk, outside the writable layer's bound, the
  memory limit and every tmpfs (an agent wrote 192 MiB into one under a 64 MiB limit). Each is
  a tmpfs like /tmp instead, so Docker makes no volume; one over what a launch puts in before
  the first start (the workspace, the agent's home) would hide it, and is refused.
* agent writable layer (/workspace, home, the rest of the root file system): bounded to
  `AGENT_DISK_BYTES` only where Docker's storage driver can (`--storage-opt size`: overlay2 on
  xfs mounted with pquota, btrfs, zfs, devicemapper); elsewhere unbounded, and `doctor` says so.
* kernel socket buffers (what a TCP connection sent and its peer has not read): under cgroup v2
  counted in the container's memory limit, agent and bundle alike. Under cgroup v1 in none:
  Docker's KernelMemoryTCP is ignored by runc 1.1 and this runsc uses the host's network stack,
  so an agent sending to itself over loopback without reading held 160 MiB of the host's TCP
  memory under a 48 MiB limit, up to `net.ipv4.tcp_mem`, shared by the whole host; `doctor`
  says so.
* the host's open-file table (`fs.file-max`): not bounded. No cgroup counts open files, the
  daemon's `nofile` (per process) times the pids limit is far above any host's table, and the
  memory limit comes late: five processes of a 512 MiB runc agent held 100,000 files while it
  used 63 MiB. Under gVisor only the agent's sockets are host files (hostinet). Past the
  table's size every process not running as root on the host gets ENFILE.
* container logs (agent and bundle, pool members alike): what a container's main process prints
  is kept by the daemon in a file on the host, which its json-file driver never rotates unless
  told to; an agent printing forever filled the host's disk. Each container is created with
  json-file (what `docker logs`, `bottle-engine logs` and the replay of a finished agent read)
  rotated at `CONTAINER_LOG_FILE_BYTES`, `CONTAINER_LOG_FILES` files kept: at most
  `CONTAINER_LOG_BYTES` per container, the newest output. A smolmachines VM's workload output
  is kept by smolvm itself (1.32.2: `workload.log`, rotated at 10 MiB, three old files kept, no
  option to change it): 40 MiB per machine. `bottle-engine logs` without `--follow` reads
  `LOGS_BYTES` of it at most, and waits on smolvm for `LOGS_SECONDS` at most (the time its
  reader takes is not counted), then ends smolvm and says the log was cut: an agent writing to
  its console without end kept smolvm's `machine logs` going, and the person's `logs` with it.
* the Docker daemon's own log: nothing the agent does may write there. Before Moby 26 each
  lookup over TCP that Docker's embedded DNS could not forward to the agent's DNS server was a
  warning line in it, on the host; the agent has no server it forwards to
  (dockerapi/containers.py: `AGENT_DNS_SERVERS`).
* what `probe` reads of a command it runs as the agent: the last `PROBE_OUTPUT_BYTES`, for at
  most `PROBE_SECONDS`. The agent can open the command's output (/proc/PID/fd/1) and write
  into it without end, or hold it open after the command ended: read whole, that took the
  person's memory; waited for, their terminal (command_output.py).
* the gVisor self-test (gvisor.py), which runs the agent image's own tools under runsc before a
  launch with `runtime = "auto"`: the image is not trusted (an agent's merged branch changes its
  Dockerfile and context; a shared cache's pushers choose what a key maps to), so the test's
  container has a bottle's bounds, smaller: `SELF_TEST_MEMORY_BYTES` (no swap, the image's
  VOLUMEs in it as tmpfs), `SELF_TEST_PIDS`, one CPU, a read-only root, and it is killed after
  `SELF_TEST_SECONDS`: a `sh` that never exits held the launch forever.
* what a launch reads of the agent image, on the host (the image is not trusted, see the
  self-test above; a file of zeros costs it nearly nothing in a layer): its CA bundle, and under
  runc its /etc/passwd and /etc/group, each at most `IMAGE_FILE_MAX_BYTES`, refused from the tar
  header before a byte of it is read; under runc its home, streamed through a temporary file in
  the cache dir (the daemon holds the container while it sends it, so it cannot go straight
  back in) of at most `AGENT_HOME_COPY_BYTES`: host memory a buffer, host disk that bound while
  the copy lasts.
* how long `probe` searches the sandbox for the bottle's secret values: `SECRET_SEARCH_SECONDS`
  for all its places. A sparse file as large as the file system allows costs the agent nothing
  and tars to its whole length (years of zeros), and the agent can stop a command that runs as
  its user, its output left open: a place not read to its end by then is reported with the
  leaks, so `probe` does not pass.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
GIB = 1024 * MIB

BUNDLE_MIN_MEMORY = 768 * MIB
BUNDLE_MAX_MEMORY = 2 * GIB
BUNDLE_CPUS = 1.0
BUNDLE_PIDS = 512
BUNDLE_TMP_BYTES = 256 * MIB
GIT_GATE_MAX_CONNECTIONS = 8
GIT_GATE_PUSH_CPU_SECONDS = 300  # a 32 MiB scan takes about a minute; index-pack far less
AGENT_DISK_BYTES = 20 * GIB
CONTAINER_LOG_FILE_BYTES = 8 * MIB
CONTAINER_LOG_FILES = 3
CONTAINER_LOG_BYTES = CONTAINER_LOG_FILE_BYTES * CONTAINER_LOG_FILES
PROBE_OUTPUT_BYTES = 64 * 1024
GUEST_SETUP_SECONDS = 300  # a launch's steps run as root in a microVM, with the image's tools
LOGS_SECONDS = 120  # smolvm keeps 40 MiB of a VM's output: 3 s to replay here, more to a terminal
LOGS_BYTES = 64 * MIB  # smolvm keeps 40 MiB of it; more is a workload writing while it is read
PROBE_SECONDS = 60  # a probe's own attempts each stop after probes.TIMEOUT (5 s)
SECRET_SEARCH_SECONDS = 600  # 1.5 GiB of agent files took about 30 s under gVisor
SELF_TEST_SECONDS = 60  # it takes a second or two; the rest is for a sandbox started under load
SELF_TEST_MEMORY_BYTES = 256 * MIB  # the sentry and a few small tools
SELF_TEST_PIDS = 256  # runsc's own threads count here, not the sandbox's processes
SELF_TEST_CPUS = 1.0
# What a launch reads of the agent image on the host: a CA bundle is some hundred KB (Debian's
# with ours, 430 KB), /etc/passwd and /etc/group a few KB.
IMAGE_FILE_MAX_BYTES = 4 * MIB
# The image's home, copied under runc to give it to the agent's uid: spooled to a file in the
# cache dir, never held (a home with toolchains in it can be large; the repository's is 8 KB).
AGENT_HOME_COPY_BYTES = 1 * GIB


@dataclass(frozen=True)
class BundleLimits:
    """The bundle container's share of the host."""

    memory_bytes: int
    nano_cpus: int
    pids: int
    tmp_bytes: int


@dataclass(frozen=True)
class AgentDisk:
    """What the agent may write: its /tmp (in memory) and, where bounded, its writable layer."""

    tmp_bytes: int
    layer_bytes: int | None  # None: the storage driver cannot bound it here


def bundle_limits(agent_memory_bytes: int) -> BundleLimits:
    """The bundle's limits for a bottle whose agent has `agent_memory_bytes`."""
    memory = min(max(agent_memory_bytes // 4, BUNDLE_MIN_MEMORY), BUNDLE_MAX_MEMORY)
    return BundleLimits(
        memory_bytes=memory,
        nano_cpus=int(BUNDLE_CPUS * 1e9),
        pids=BUNDLE_PIDS,
        tmp_bytes=BUNDLE_TMP_BYTES,
    )


def agent_disk(agent_memory_bytes: int, *, layer_bounded: bool) -> AgentDisk:
    """The agent's disk bounds; `layer_bounded`: can the storage driver bound the layer here?"""
    return AgentDisk(
        tmp_bytes=max(agent_memory_bytes // 2, 64 * MIB),
        layer_bytes=AGENT_DISK_BYTES if layer_bounded else None,
    )


def container_log_options() -> dict[str, str]:
    """The json-file driver's options that bound a container's log to `CONTAINER_LOG_BYTES`."""
    return {"max-size": str(CONTAINER_LOG_FILE_BYTES), "max-file": str(CONTAINER_LOG_FILES)}


def tmpfs_options(size_bytes: int, *, executable: bool) -> str:
    """Mount options for a private, sized tmpfs (`size` in bytes; sticky and world-writable
    like any /tmp, no devices, no set-uid)."""
    exec_flag = "exec" if executable else "noexec"
    return f"rw,{exec_flag},nosuid,nodev,size={size_bytes},mode=1777"
