"""The ``ezmsg-console`` command.

Errors become one line on stderr and a non-zero exit code, never a traceback:
0 ok, 1 failed, 2 bad usage or server unreachable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Sequence

from . import __version__
from .protocol.address import ADDRESS_ENV, DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV
from .protocol.errors import ConfigurationError, ConsoleError, ServerUnreachable
from .protocol.framing import MAX_FRAME_SIZE

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ezmsg-console",
        description="Operator console and control plane for live multi-process ezmsg-style pipelines.",
        epilog=f"Addresses default to ${ADDRESS_ENV} or {DEFAULT_HOST}:{DEFAULT_PORT}; "
        f"tokens to ${TOKEN_ENV}.",
    )
    parser.add_argument("--version", action="version", version=f"ezmsg-console {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run a GraphServer in the foreground until Ctrl+C",
        description="Run a GraphServer in the foreground. Prints the bound address, serves until "
        "Ctrl+C or SIGTERM, then exits 0.",
    )
    serve.add_argument("--address", metavar="HOST:PORT",
                       help=f"where to listen (port 0 = any free port; default ${ADDRESS_ENV} or "
                       f"{DEFAULT_HOST}:{DEFAULT_PORT})")
    serve.add_argument("--token", metavar="TOKEN",
                       help=f"shared secret clients must prove they hold (default ${TOKEN_ENV}); "
                       "required to listen on a non-loopback address")
    serve.add_argument("--max-frame-size", metavar="BYTES", type=int, default=MAX_FRAME_SIZE,
                       help=f"largest frame accepted after the handshake (default {MAX_FRAME_SIZE})")
    return parser


async def _serve(args: argparse.Namespace) -> int:
    from .server import GraphServer

    server = GraphServer(args.address, token=args.token, max_frame_size=args.max_frame_size)
    address = await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_shutdown)
    auth = "token required" if server.token else "loopback only, no token"
    print(f"GraphServer listening on {address} ({auth}); epoch {server.core.epoch}", flush=True)
    print("Press Ctrl+C to stop.", flush=True)
    await server.serve_forever()
    print("GraphServer stopped.", flush=True)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "serve":
            return asyncio.run(_serve(args))
    except ServerUnreachable as exc:
        print(f"ezmsg-console: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ConfigurationError as exc:
        print(f"ezmsg-console: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConsoleError as exc:
        print(f"ezmsg-console: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE
