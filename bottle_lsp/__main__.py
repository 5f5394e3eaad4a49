"""`bottle-lsp [--tcp [--host H] [--port P]] [--version]`: parse arguments, start the server."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from bottle_lsp import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bottle-lsp",
        description="Language server for bot-bottle's bottle.toml (stdio by default).",
    )
    parser.add_argument("--version", action="version", version=f"bottle-lsp {__version__}")
    parser.add_argument(
        "--tcp", action="store_true", help="listen on TCP instead of stdio (debugging)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="TCP address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=2087, help="TCP port (default 2087)")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much the server logs (default WARNING)",
    )
    parser.add_argument("--log-file", help="log to this file instead of stderr")
    args = parser.parse_args(argv)
    destination: dict[str, Any] = (
        {"filename": args.log_file} if args.log_file else {"stream": sys.stderr}
    )
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        **destination,
    )
    from bottle_engine.exec_path import keep_absolute_entries

    # Language clients start a server in the workspace folder by default (VS Code's extension
    # no longer does), which the agent may have written.
    if dropped := keep_absolute_entries():
        logging.getLogger("bottle_lsp").warning(
            "PATH entries %s are not absolute; programs are not looked up there", dropped
        )
    from bottle_lsp.engine import Engine  # after parsing: --version stays instant
    from bottle_lsp.server import create_server

    server = create_server(Engine())

    if args.tcp:
        server.start_tcp(args.host, args.port)
    else:
        server.start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())
