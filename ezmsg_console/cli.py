"""The ``ezmsg-console`` command.

Errors become one line on stderr and a non-zero exit code, never a traceback (the codes:
:class:`.export.exitcodes.ExitCode`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from typing import Any, NoReturn, Sequence

from . import __version__
from .client.source import EZMSG_ADDRESS_ENV, EZMSG_DEFAULT_PORT, Backend
from .export.exitcodes import EPILOG, ExitCode
from .protocol.address import ADDRESS_ENV, DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV
from .protocol.errors import ConfigurationError, ConsoleError, ServerUnreachable
from .protocol.framing import FRAME_TIMEOUT_S, MAX_CONNECTIONS, MAX_FRAME_SIZE, MAX_MESSAGE_SIZE, MAX_PENDING_BYTES

EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE = ExitCode.OK, ExitCode.REFUSED, ExitCode.UNREACHABLE, ExitCode.USAGE


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors exiting 64 (EX_USAGE) like every other usage error."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    from .export.commands import ADDRESS_HELP, add_backend_arg, add_headless_commands, positive_seconds

    parser = _Parser(
        prog="ezmsg-console",
        description="Operator console and control plane for live multi-process ezmsg-style pipelines.",
        epilog=f"Addresses default to ${ADDRESS_ENV} or {DEFAULT_HOST}:{DEFAULT_PORT} (ezmsg-console's "
        f"GraphServer), then ${EZMSG_ADDRESS_ENV} or {DEFAULT_HOST}:{EZMSG_DEFAULT_PORT} (an ezmsg 3.9 one); "
        f"tokens to ${TOKEN_ENV}. Attaching to an ezmsg GraphServer means trusting it: its wire format is "
        f"pickle without authentication. {EPILOG}",
    )
    parser.add_argument("--version", action="version", version=f"ezmsg-console {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    console = parser.add_argument_group(
        "the console (no COMMAND)",
        "With no COMMAND, open the interactive console on the GraphServer at --address: ezmsg-console's "
        "own, or a live ezmsg 3.9 pipeline's (with the [ezmsg] extra). If none answers, an embedded "
        "GraphServer with the demo pipeline is started. Without a terminal, print a snapshot "
        "(as 'snapshot --embed-demo') instead.")
    console.add_argument("--address", metavar="HOST:PORT", help=ADDRESS_HELP)
    console.add_argument("--token", metavar="TOKEN", help=f"shared secret of the server (default ${TOKEN_ENV})")
    add_backend_arg(console, suppress=False)
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
                       help=f"largest frame accepted after the handshake (default {MAX_FRAME_SIZE}); bigger "
                       "messages travel in chunks of at most this size")
    serve.add_argument("--max-message-size", metavar="BYTES", type=int, default=MAX_MESSAGE_SIZE,
                       help=f"largest message, once its chunks are joined, in either direction (default "
                       f"{MAX_MESSAGE_SIZE}: a snapshot of a graph with tens of thousands of components)")
    serve.add_argument("--max-connections", metavar="N", type=int, default=MAX_CONNECTIONS,
                       help=f"peers served at once; more are refused with TOO_MANY_CONNECTIONS (default "
                       f"{MAX_CONNECTIONS})")
    serve.add_argument("--frame-timeout", metavar="SECONDS", type=positive_seconds, default=FRAME_TIMEOUT_S,
                       help=f"a frame (or chunked message) must be whole this long after its first byte, or "
                       f"its peer is closed (default {FRAME_TIMEOUT_S:g})")
    serve.add_argument("--max-pending-bytes", metavar="BYTES", type=int, default=MAX_PENDING_BYTES,
                       help=f"bytes of replies queued for one client above which it is closed as a slow "
                       f"consumer (default {MAX_PENDING_BYTES}; one message is always delivered whole)")

    demo = sub.add_parser(
        "demo",
        help="run the built-in demo pipeline (synthetic 32-channel source -> filter -> band power -> sink)",
        description="Run the built-in BCI-style demo pipeline in three worker processes: a real-time "
        "32-channel 1 kHz synthetic source, a causal IIR filter, per-channel band power and a sink. "
        "Starts an embedded GraphServer if none answers at the address. With --headless, prints a "
        "per-topic message table when the run ends.",
    )
    demo.add_argument("--ezmsg", action="store_true",
                      help="run the ezmsg demo instead: a real ezmsg GraphServer and a four-process pipeline "
                      "written against ezmsg.core, shown in the console (needs the [ezmsg] extra)")
    demo.add_argument("--headless", action="store_true",
                      help="run without the interactive console and print a per-topic summary at the end "
                      "(required without --ezmsg)")
    demo.add_argument("--duration", metavar="SECONDS", type=positive_seconds, default=None,
                      help="stop after this many seconds (default: run until Ctrl+C)")
    demo.add_argument("--address", metavar="HOST:PORT",
                      help=f"GraphServer to use, started embedded if none answers (default ${ADDRESS_ENV} "
                      f"or {DEFAULT_HOST}:{DEFAULT_PORT}); with --ezmsg, where the ezmsg GraphServer listens "
                      f"(default {DEFAULT_HOST}:{EZMSG_DEFAULT_PORT} if free, else any free port)")
    add_headless_commands(sub)
    return parser



async def _serve(args: argparse.Namespace) -> int:
    from .server import GraphServer

    server = GraphServer(args.address, token=args.token, max_frame_size=args.max_frame_size,
                         max_message_size=args.max_message_size, max_pending_bytes=args.max_pending_bytes,
                         max_connections=args.max_connections, frame_timeout=args.frame_timeout)
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
             f"{stats.get('messages', 0) / duration:.1f}" if duration > 0 else "-",
             "n/a" if stats.get("bytes", 0) is None else str(stats.get("bytes", 0)))
            for topic, stats in sorted(topics.items())]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join([row[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:]))])
             for row in (header, *rows)]
    return "\n".join(lines)


def _ezmsg_demo(args: argparse.Namespace) -> int:
    """``demo --ezmsg``: an ezmsg GraphServer and pipeline, shown in the console (or summed up headless)."""
    from .client.source import EZMSG_EXTRA_HINT, ezmsg_available
    from .protocol.address import parse_address

    if not ezmsg_available():
        print(f"ezmsg-console: the ezmsg demo needs the ezmsg package: {EZMSG_EXTRA_HINT}", file=sys.stderr)
        return EXIT_USAGE
    from .ezmsg_backend.launcher import EzmsgDemo, topic_counts

    demo = EzmsgDemo(parse_address(args.address) if args.address else None)

    def stop_on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds to the finally below, which stops the server and pipeline

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop_on_signal)
    print("Starting an ezmsg GraphServer and the ezmsg demo pipeline...", file=sys.stderr, flush=True)
    try:
        address = demo.start()
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    try:
        interactive = not args.headless and sys.stdin.isatty() and sys.stdout.isatty()
        if interactive:
            return _run_console(args, address, Backend.EZMSG, demo.version, demo)
        print(f"ezmsg demo running: ezmsg {demo.version} GraphServer at {address} "
              f"(attach with: ezmsg-console --address {address})"
              + ("" if args.duration else "; press Ctrl+C to stop"), flush=True)
        started = time.monotonic()
        try:
            deadline = None if args.duration is None else started + args.duration
            while demo.running() and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
        except KeyboardInterrupt:
            pass
        duration = time.monotonic() - started
        if not demo.running():
            print(f"ezmsg-console: the ezmsg demo stopped by itself ({demo.output_tail()})", file=sys.stderr)
            return EXIT_FAILED
        topics = asyncio.run(topic_counts(address, demo.version))
        print(f"Demo ran {duration:.2f} s.")
        print(format_topic_table(topics, duration))
        print("(ezmsg counts no bytes: n/a)", flush=True)
        return EXIT_OK
    finally:
        demo.stop()


def _demo(args: argparse.Namespace) -> int:
    if args.ezmsg:
        return _ezmsg_demo(args)
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
    from .tui.launch import find_or_embed

    target = find_or_embed(args.address, args.token, embed=not args.no_embed, demo=args.demo,
                           backend=args.backend)
    for warning in target.warnings:
        print(f"ezmsg-console: warning: {warning}", file=sys.stderr, flush=True)
    return _run_console(args, target.address, target.backend, target.version, target.embedded, target.token)


def _run_console(args: argparse.Namespace, address: Any, backend: Any, version: str, embedded: Any,
                 token: str | None = None) -> int:
    from .client.monitor import GraphMonitor
    from .tui.app import ConsoleApp

    read_only = bool(getattr(args, "read_only", False))
    monitor = GraphMonitor(address, token=token, profiling_interval=getattr(args, "refresh", 1.0),
                           read_only=read_only, backend=backend, version=version)
    app = ConsoleApp(monitor, embedded=embedded, read_only=read_only)

    def exit_on_signal(signum: int, _frame: Any) -> None:
        # SIGTERM or a closed terminal: leave like 'q' does (the finally below stops what we started).
        try:
            asyncio.get_running_loop().call_soon_threadsafe(app.exit, 128 + signum)
        except RuntimeError:  # not running yet, or already gone
            raise KeyboardInterrupt from None

    previous = {sig: signal.signal(sig, exit_on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        result = app.run()
    finally:
        if app.embedded is not None:  # the app did not get to stop it (crash or signal)
            app.embedded.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
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
        return ExitCode.INTERRUPTED
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE
