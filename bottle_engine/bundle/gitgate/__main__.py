"""``python -m bottle_engine.bundle.gitgate``: the git gate service of the bundle."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bottle_engine.bundle.config import CONFIG_PATH, GIT_GATE_PORT, BundleConfig
from bottle_engine.bundle.gitgate.server import serve
from bottle_engine.bundle.waiting import WAIT_FLAG, wait_for_file
from bottle_engine.errors import BottleError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bottle_engine.bundle.gitgate",
        description="Serve the bottle's git upstreams at git://LISTEN:PORT/<name>, "
        "gating pushes by branch policy and secret scanning.",
    )
    parser.add_argument("--config", type=Path, default=CONFIG_PATH, help="bundle.json")
    parser.add_argument(
        "--listen", default="127.0.0.1", help="address to listen on (the bundle's internal one)"
    )
    parser.add_argument(
        "--allowed-client", help="the agent's address: requests from any other are refused"
    )
    parser.add_argument("--port", type=int, default=GIT_GATE_PORT)
    parser.add_argument(
        "--repos-dir",
        type=Path,
        help="where the gate keeps its mirrors (default: git-gate/ in the bottle's state dir, "
        "so that big repositories fit and a restarted bundle fetches only what is new)",
    )
    parser.add_argument(
        WAIT_FLAG, action="store_true", help="a warm pool member: wait for the config file"
    )
    args = parser.parse_args(argv)
    if args.wait_for_config:
        wait_for_file(args.config, service="gitgate")
    try:
        if args.wait_for_config and not BundleConfig.load(args.config).git:
            return 0  # a warm pool member's bottle without git: never listen
        return serve(args.config, args.listen, args.port, args.repos_dir, args.allowed_client)
    except BottleError as exc:
        sys.stderr.write(f"git gate: error: {exc}\n")
        return 1
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write(f"git gate: error: cannot read the bundle config {args.config}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
