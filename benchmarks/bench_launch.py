"""Warm launch to "agent ready" vs. a bare `docker run` of the same image, under runc and gVisor.

Every side runs in the same process against the same daemon, rounds interleaved so that drift
in the machine's load hits all of them alike. The artifacts (agent and bundle
images) are built or reused once before timing, so every timed launch is warm. A launch is
everything `bottle-engine launch --detach` does: load and validate the manifest, plan, find the
artifacts by input key, create the internal and outbound networks, start the bundle and wait
until its proxy answers, create the agent container with its files and start it. The baseline
is `docker run -d IMAGE sleep infinity` until the container runs: no network, no gateway, no
hardening, what a user gives up by not using a bottle.

Both are measured under runc and, where the daemon's runsc passes the engine's self-test, under
gVisor (BOTTLE_RUNTIME forced; the bundle follows the agent's runtime, as in a real launch).

    python benchmarks/bench_launch.py             # 5 rounds each
    python benchmarks/bench_launch.py --rounds 10
    python benchmarks/bench_launch.py --runtime runc

No traffic leaves the machine: the sample agent sleeps and the allowlist is empty.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bottle_engine import gvisor, lifecycle
from bottle_engine.artifacts.base import DEFAULT_BASE_TAG, ensure_base_image
from bottle_engine.dockerapi import connect

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

MANIFEST = """\
[agents.bench]
command = ["sleep", "infinity"]
copy_cwd = false

[bottles.default]
dockerfile = "{repo}/Dockerfile"
context = "{repo}"
memory = "512m"
cpus = 1
"""


def timed_once(work: Callable[..., Callable[[], None]], *args: Any) -> float:
    """Time `work(*args)` (which returns its own cleanup); cleanup is not timed."""
    started = time.perf_counter()
    cleanup = work(*args)
    elapsed = time.perf_counter() - started
    cleanup()
    return elapsed


def bottle_launch(manifest: Path, runtime: str) -> Callable[[], None]:
    os.environ["BOTTLE_RUNTIME"] = runtime
    record = lifecycle.launch(manifest, "bench", cwd=manifest.parent)
    assert record.resources.runtime == runtime, record.resources
    return lambda: lifecycle.stop(record.slug, remove=True)


def bare_docker_run(client: Any, image: str, runtime: str) -> Callable[[], None]:
    container = client.containers.run(
        image, ["sleep", "infinity"], detach=True, runtime=None if runtime == "runc" else runtime
    )
    while container.status != "running":
        container.reload()
    return lambda: container.remove(force=True)


def runtimes_here(client: Any, image: str, wanted: str | None) -> list[str]:
    """runc, and runsc where the engine would use it (registered, passes the self-test)."""
    if wanted:
        return [wanted]
    runtimes = client.info().get("Runtimes") or {}
    works = "runsc" in runtimes and gvisor.self_test(client, image, runtimes["runsc"])
    if not works:
        print("gVisor: not measured (no runsc that passes the self-test here)", flush=True)
    return ["runc", "runsc"] if works else ["runc"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runtime", choices=["runc", "runsc"], help="measure only this one")
    args = parser.parse_args()

    client = connect()
    os.environ.setdefault("BOTTLE_BASE_IMAGE", DEFAULT_BASE_TAG)
    if os.environ["BOTTLE_BASE_IMAGE"] == DEFAULT_BASE_TAG:
        ensure_base_image(client)
    if HOST_CA_BUNDLE.is_file():
        os.environ.setdefault("BOTTLE_CA_BUNDLE", str(HOST_CA_BUNDLE))

    launches: dict[str, list[float]] = {}
    baseline: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-launch-") as scratch:
        os.environ.setdefault("BOTTLE_STATE_DIR", str(Path(scratch) / "state"))
        manifest = Path(scratch) / "bottle.toml"
        manifest.write_text(MANIFEST.format(repo=REPO_ROOT))

        print("preparing: build (or reuse) the agent and bundle images ...", flush=True)
        os.environ["BOTTLE_RUNTIME"] = "runc"
        record = lifecycle.launch(manifest, "bench", cwd=manifest.parent)
        image = client.containers.get(record.name).image.id
        lifecycle.stop(record.slug, remove=True)
        runtimes = runtimes_here(client, image, args.runtime)

        for _ in range(args.rounds):
            for runtime in runtimes:
                launches.setdefault(runtime, []).append(
                    timed_once(bottle_launch, manifest, runtime)
                )
                baseline.setdefault(runtime, []).append(
                    timed_once(bare_docker_run, client, image, runtime)
                )

    print(f"image              {image}")
    print(f"rounds             {args.rounds}")
    print(f"{'runtime':<10} {'warm launch':>12} {'docker run':>12} {'launch/run':>11}")
    medians = {}
    for runtime in runtimes:
        launch_median = statistics.median(launches[runtime])
        base_median = statistics.median(baseline[runtime])
        medians[runtime] = (launch_median, base_median)
        print(
            f"{runtime:<10} {launch_median * 1000:>9.0f} ms {base_median * 1000:>9.0f} ms "
            f"{launch_median / base_median:>10.1f}x"
        )
    if len(medians) == 2:
        (runc_launch, runc_run), (gvisor_launch, gvisor_run) = medians["runc"], medians["runsc"]
        print(
            f"gVisor / runc      launch {gvisor_launch / runc_launch:.2f}x, "
            f"docker run {gvisor_run / runc_run:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
