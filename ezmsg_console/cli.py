"""The ``ezmsg-console`` command.

Errors become one line on stderr and a non-zero exit code, never a traceback:
0 ok, 1 failed, 2 bad usage or server unreachable, 3 partial snapshot, 130 interrupted.
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
    from .export.commands import add_headless_commands, positive_seconds

    parser = argparse.ArgumentParser(
        prog="ezmsg-console",
        description="Operator console and control plane for live multi-process ezmsg-style pipelines.",
        epilog=f"Addresses default to ${ADDRESS_ENV} or {DEFAULT_HOST}:{DEFAULT_PORT}; "
        f"tokens to ${TOKEN_ENV}.",
    )
    parser.add_argument("--version", action="version", version=f"ezmsg-console {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    console = parser.add_argument_group(
        "the console (no COMMAND)",
        "With no COMMAND, open the interactive console on the GraphServer at --address. If none answers, "
        "an embedded GraphServer with the demo pipeline is started. Without a terminal, print a snapshot "
        "(as 'snapshot --embed-demo') instead.")
    console.add_argument("--address", metavar="HOST:PORT",
                         help=f"GraphServer to observe (default ${ADDRESS_ENV} or {DEFAULT_HOST}:{DEFAULT_PORT})")
    console.add_argument("--token", metavar="TOKEN", help=f"shared secret of the server (default ${TOKEN_ENV})")
    console.add_argument("--no-embed", action="store_true",
                         help="observe only: fail (exit 2) if no GraphServer answers instead of starting one")
    console.add_argument("--demo", action="store_true",
                         help="run the demo pipeline even when a GraphServer answers (on that server)")
    console.add_argument("--read-only", action="store_true", help="hide and refuse every edit and trace change")
    console.add_argument("--refresh", metavar="SECONDS", type=positive_seconds, default=1.0,
                         help="profiling refresh interval (default 1; '+'/'-' change it live)")
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

    demo = sub.add_parser(
        "demo",
        help="run the built-in demo pipeline (synthetic 32-channel source -> filter -> band power -> sink)",
        description="Run the built-in BCI-style demo pipeline in three worker processes: a real-time "
        "32-channel 1 kHz synthetic source, a causal IIR filter, per-channel band power and a sink. "
        "Starts an embedded GraphServer if none answers at the address. With --headless, prints a "
        "per-topic message table when the run ends.",
    )
    demo.add_argument("--headless", action="store_true",
                      help="run without the interactive console and print a per-topic summary at the end "
                      "(currently required)")
    demo.add_argument("--duration", metavar="SECONDS", type=positive_seconds, default=None,
                      help="stop after this many seconds (default: run until Ctrl+C)")
    demo.add_argument("--address", metavar="HOST:PORT",
                      help=f"GraphServer to use, started embedded if none answers (default ${ADDRESS_ENV} "
                      f"or {DEFAULT_HOST}:{DEFAULT_PORT})")
    add_headless_commands(sub)
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


def format_topic_table(topics: dict[str, dict[str, int]], duration: float) -> str:
    """An aligned plain-text table: topic, messages, rate (messages/s over ``duration``), bytes."""
    header = ("TOPIC", "MESSAGES", "RATE (msg/s)", "BYTES")
    rows = [(topic, str(stats.get("messages", 0)),
             f"{stats.get('messages', 0) / duration:.1f}" if duration > 0 else "-", str(stats.get("bytes", 0)))
            for topic, stats in sorted(topics.items())]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join([row[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:]))])
             for row in (header, *rows)]
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    if not args.headless:
        print("ezmsg-console: the interactive console is not available yet; use 'ezmsg-console demo --headless'",
              file=sys.stderr)
        return EXIT_USAGE
    from .runtime.demo import run_demo

    if args.duration is None:
        print("Running the demo pipeline; press Ctrl+C to stop.", flush=True)
    result = run_demo(duration=args.duration, address=args.address)
    print(f"Demo ran {result.duration:.2f} s ({result.reason or 'stopped'}).")
    print(format_topic_table(result.topics, result.duration))
    print("(rates are over the whole run, start-up included; bytes count only messages that left their "
          "publisher's process)", flush=True)
    if not result.ok:
        first = result.errors[0]
        where = first.get("unit") or f"worker {first.get('group')}"
        print(f"ezmsg-console: demo failed: {where}: {first.get('error')}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _console(args: argparse.Namespace) -> int:
    """The interactive console (or, with no terminal, a snapshot on the embedded demo)."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        from .export.commands import run_headless

        print("ezmsg-console: no terminal; printing a snapshot instead (use 'ezmsg-console snapshot --help')",
              file=sys.stderr)
        args.command = "snapshot"
        args.embed_demo = not args.no_embed
        for name, default in (("format", "json"), ("include", None), ("output", "-"), ("timeout", None)):
            if not hasattr(args, name):
                setattr(args, name, default)
        return run_headless(args)
    from .client.monitor import GraphMonitor
    from .tui.app import ConsoleApp
    from .tui.launch import find_or_embed

    target = find_or_embed(args.address, args.token, embed=not args.no_embed, demo=args.demo)
    monitor = GraphMonitor(target.address, token=target.token, profiling_interval=args.refresh,
                           read_only=args.read_only)
    app = ConsoleApp(monitor, embedded=target.embedded, read_only=args.read_only)
    try:
        result = app.run()
    finally:
        if app.embedded is not None:  # the app did not get to stop it (crash or kill)
            app.embedded.stop()
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command is None:
            return _console(args)
        if args.command == "serve":
            return asyncio.run(_serve(args))
        if args.command == "demo":
            return _demo(args)
        from .export.commands import run_headless

        return run_headless(args)
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
