"""The headless subcommands: ``snapshot``, ``get``, ``set`` and ``watch`` (no terminal needed).

Exit codes (:class:`.exitcodes.ExitCode`): 0 ok, 1 refused or failed (unknown
component, rejected value, bad output path), 2 GraphServer unreachable (or
gone), 3 partial snapshot (some process did not answer; the document is still
written, with the failures listed under ``errors``), 64 usage error, 130
interrupted. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import sys
from typing import Any, AsyncIterator

from ..client.source import EZMSG_ADDRESS_ENV, EZMSG_DEFAULT_PORT, Backend, Located, ezmsg_address, locate, \
    make_source
from ..protocol.address import ADDRESS_ENV, DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV, resolve_address, resolve_token
from ..protocol.errors import ConfigurationError, ConnectionClosed, ConsoleError, RequestTimeout, ServerUnreachable
from . import formats
from .document import SECTIONS
from .exitcodes import EPILOG, ExitCode

EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = (
    ExitCode.OK, ExitCode.REFUSED, ExitCode.UNREACHABLE, ExitCode.USAGE, ExitCode.PARTIAL, ExitCode.INTERRUPTED)
DEFAULT_TIMEOUT = 5.0
SNAPSHOT_TIMEOUT = 15.0
PROFILING_WINDOW = 0.5
FORMATS = ("json", "csv", "dot", "mermaid")
TABLE_SECTION = {t: s for s, tables in formats.SECTION_TABLES.items() for t in tables}
"""CSV table name -> the section it comes from (accepted by --include too)."""


class CommandError(ConsoleError):
    """A command failed for a reason the user can fix (exit 1)."""


class UsageError(ConsoleError):
    """The command line asks for something impossible (exit 2)."""


# -- the parsers --------------------------------------------------------------------


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0.0") else positive_seconds(text)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _seq(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a sequence number >= 0, got {text!r}")
    return int(text)


def _include(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    valid = (*SECTIONS, *(t for t in TABLE_SECTION if t not in SECTIONS))
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown section {', '.join(bad) or repr(text)}; "
                                         f"choose from {', '.join(valid)}")
    return names


BACKEND_HELP = ("which kind of GraphServer: native (ezmsg-console's) or ezmsg (an ezmsg 3.9 pipeline's, needs "
                "the [ezmsg] extra); default: whichever answers")
ADDRESS_HELP = (f"the GraphServer (default: ${ADDRESS_ENV} or {DEFAULT_HOST}:{DEFAULT_PORT} if ours answers "
                f"there, else ezmsg's at ${EZMSG_ADDRESS_ENV} or {DEFAULT_HOST}:{EZMSG_DEFAULT_PORT})")


def add_backend_arg(parser: argparse._ActionsContainer, *, suppress: bool) -> None:  # a parser or a group
    parser.add_argument("--backend", choices=[b.value for b in Backend],
                        default=argparse.SUPPRESS if suppress else None, help=BACKEND_HELP)


def _server_args(parser: argparse.ArgumentParser, timeout_help: str) -> None:
    # SUPPRESS keeps a value given before the command ('ezmsg-console --address X snapshot').
    parser.add_argument("--address", metavar="HOST:PORT", default=argparse.SUPPRESS, help=ADDRESS_HELP)
    add_backend_arg(parser, suppress=True)
    parser.add_argument("--token", metavar="TOKEN", default=argparse.SUPPRESS,
                        help=f"shared secret of the server (default ${TOKEN_ENV})")
    parser.add_argument("--timeout", metavar="SECONDS", type=positive_seconds, default=None, help=timeout_help)


def add_headless_commands(sub: Any) -> None:
    """Add snapshot, get, set and watch to the ``ezmsg-console`` subparsers."""
    snap = sub.add_parser(
        "snapshot", help="print one versioned document of topology, processes, settings and profiling",
        description="Capture the GraphServer's topology, processes (with stats and ping), every component's "
        "settings with their schemas, and every process's profiling counters as one JSON document "
        "(schema ezmsg-console.snapshot/1, keys sorted so two snapshots diff cleanly), or as CSV tables, "
        "or the topology as a Graphviz DOT or Mermaid graph.",
        epilog="CSV: with -o FOLDER, one file per table (edges, processes, settings, publishers, subscribers, "
        "spans, errors); with -o FILE.csv or -o -, the single table named by --include. " + EPILOG)
    _server_args(snap, f"overall deadline for connecting and, with --embed-demo, for the demo to start "
                 f"(default {SNAPSHOT_TIMEOUT:g}); each process gets min(2, TIMEOUT/4) s to answer")
    snap.add_argument("--format", choices=FORMATS, default="json", help="output format (default json)")
    snap.add_argument("--include", metavar="SECTIONS", type=_include, default=None,
                      help=f"comma-separated sections to collect (default all: {','.join(SECTIONS)}); "
                      "CSV table names (edges, publishers, subscribers, spans) are accepted too")
    snap.add_argument("-o", "--output", metavar="PATH", default="-",
                      help="file to write (default -: stdout); for CSV a folder gets one file per table")
    snap.add_argument("--window", metavar="SECONDS", type=_non_negative, default=PROFILING_WINDOW,
                      help=f"sample profiling twice this far apart so rates are filled in (default "
                      f"{PROFILING_WINDOW:g}; 0: one sample, totals only)")
    snap.add_argument("--embed-demo", action="store_true",
                      help="if no GraphServer answers, start one with the demo pipeline, wait until it runs, "
                      "take the snapshot and stop it again")

    get = sub.add_parser("get", help="print the current settings of one component",
                         description="Print a component's current settings: each field's value, type, "
                         "constraints and description, the settings' sequence number and who set them.")
    get.add_argument("component", metavar="COMPONENT", help="component address, e.g. DEMO/FILTER")
    get.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    _server_args(get, f"request deadline (default {DEFAULT_TIMEOUT:g})")

    set_ = sub.add_parser(
        "set", help="change one settings field of a running unit",
        description="Change one field of a unit's settings in the process that runs it. The worker validates "
        "the value against the schema exactly as the console does; a rejected value changes nothing.",
        epilog="VALUE is parsed as JSON when it parses (45, 2.5, true, null, \"text\", [1, 2]), else taken as "
        "a plain string. Put -- before a VALUE that starts with '-' but is not a number.")
    set_.add_argument("component", metavar="COMPONENT", help="unit address, e.g. DEMO/FILTER")
    set_.add_argument("field", metavar="FIELD.PATH", help="field name, dotted for nested settings")
    set_.add_argument("value", metavar="VALUE", help="the new value (JSON, or a plain string)")
    set_.add_argument("--expected-seq", metavar="N", type=_seq, default=None,
                      help="refuse (exit 1, CONFLICT) if the settings changed since sequence number N")
    _server_args(set_, f"request deadline (default {DEFAULT_TIMEOUT:g})")

    watch = sub.add_parser(
        "watch", help="stream topology and settings events until Ctrl+C",
        description="Print topology and settings events as they happen, until Ctrl+C (exit 0) or the "
        "GraphServer goes away (exit 2).",
        epilog="With --jsonl, each line is one JSON object with 'stream' (topology|settings), 'seq', 'kind' "
        "(the event type) and the event's fields; lost events appear as {\"stream\": ..., \"gap\": [from, to]}.")
    watch.add_argument("--jsonl", action="store_true", help="one JSON object per line (default: readable text)")
    watch.add_argument("--topology", action="store_true", help="topology events (default: both streams)")
    watch.add_argument("--settings", action="store_true", help="settings events (default: both streams)")
    watch.add_argument("--after-seq", metavar="N", type=_seq, default=None,
                       help="replay each stream's retained events after sequence number N first "
                       "(default: new events only)")
    watch.add_argument("--count", metavar="N", type=_count, default=None, help="exit 0 after N lines")
    _server_args(watch, f"connect deadline (default {DEFAULT_TIMEOUT:g})")


# -- running ------------------------------------------------------------------------


def run_headless(args: argparse.Namespace) -> int:
    """Run ``args.command``; errors become one stderr line and an exit code, never a traceback."""
    from . import live

    handlers = {"snapshot": snapshot_command, "get": live.get_command, "set": live.set_command,
                "watch": live.watch_command}
    handler = handlers.get(args.command)
    if handler is None:
        return _fail(f"unknown command {args.command!r}", EXIT_USAGE)
    try:
        return handler(args)
    except (UsageError, ConfigurationError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ServerUnreachable as exc:
        hint = ", or use --embed-demo" if args.command == "snapshot" else ""
        return _fail(str(exc).replace(", or pass auto_start=True", hint), EXIT_UNREACHABLE)
    except ConnectionClosed as exc:
        return _fail(f"lost the connection to the GraphServer: {exc}", EXIT_UNREACHABLE)
    except ConsoleError as exc:
        return _fail(reason(exc), EXIT_FAILED)
    except BrokenPipeError:
        _silence_stdout()  # the reader went away (e.g. '| head'): that is not an error
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def reason(exc: ConsoleError) -> str:
    """The error's message, a routed request's without its prefix but with its code at the end."""
    from .document import route_reason

    text = route_reason(exc)
    return f"{text} ({exc.details['error_code']})" if text != str(exc) else text


def _fail(message: str, code: int) -> int:
    print(f"ezmsg-console: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return code


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@dataclasses.dataclass(frozen=True)
class ServerArgs:
    """The command line's --address (None: search), --token and --backend (None: auto)."""

    address: str | None
    token: str | None
    backend: str | None


def server_of(args: argparse.Namespace) -> ServerArgs:
    return ServerArgs(getattr(args, "address", None) or None, resolve_token(getattr(args, "token", None)),
                      getattr(args, "backend", None) or None)


async def find_server(server: ServerArgs, timeout: float) -> Located:
    """Where the GraphServer is (see :func:`~ezmsg_console.client.source.locate`); ``backend`` None
    when nothing answers. Its warnings go to stderr here."""
    located = await locate(server.address, server.token, server.backend, timeout=min(timeout, 2.0))
    for warning in located.warnings:
        print(f"ezmsg-console: warning: {warning}", file=sys.stderr, flush=True)
    return located


def nobody_answers(server: ServerArgs, located: Located) -> ServerUnreachable:
    searched = f"{located.address}"
    if server.address is None and server.backend is None and ezmsg_address() != located.address:
        searched += f" (ezmsg-console) nor at {ezmsg_address()} (ezmsg)"
    return ServerUnreachable(f"no GraphServer answered at {searched}", {"address": str(located.address)})


@contextlib.asynccontextmanager
async def connected(server: ServerArgs, timeout: float, name: str, located: Located | None = None
                    ) -> AsyncIterator[Any]:
    """An open graph source (native or ezmsg, whichever answers); a server that does not
    complete the handshake counts as unreachable."""
    if located is None:
        located = await find_server(server, timeout)
    if located.backend is None:
        raise nobody_answers(server, located)
    ctx = make_source(located.backend, located.address, token=server.token, name=name, timeout=timeout,
                      version=located.version)
    try:
        await ctx.open()
    except RequestTimeout as exc:
        raise ServerUnreachable(str(exc), {"address": str(located.address)}) from None
    except OSError as exc:
        raise ServerUnreachable(f"no GraphServer answered at {located.address} ({exc})",
                                {"address": str(located.address)}) from None
    try:
        yield ctx
    finally:
        await ctx.close()


# -- snapshot -----------------------------------------------------------------------


def plan(fmt: str, include: Any, output: str) -> tuple[set[str], list[str] | None]:
    """(sections to collect, CSV tables to write or None) for the arguments; UsageError if impossible.

    CSV goes to one file (``-`` or ``*.csv``, then exactly one table) or to a folder (one file per table).
    """
    if isinstance(include, str):
        try:
            include = _include(include)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--include: {exc}") from None
    if fmt in ("dot", "mermaid"):
        return {"topology"}, None
    sections = set(SECTIONS) if not include else {TABLE_SECTION.get(n, n) for n in include}
    if fmt != "csv":
        return sections, None
    if _single_file(output):
        where = "stdout" if output == "-" else output
        if not include or len(include) != 1:
            raise UsageError(f"CSV to {where} holds one table: name it with --include (one of "
                             f"{', '.join(sorted(TABLE_SECTION))}), or write every table with -o FOLDER")
        tables = formats.SECTION_TABLES.get(include[0], (include[0],))
        if len(tables) != 1:
            raise UsageError(f"--include {include[0]} is {len(tables)} CSV tables ({', '.join(tables)}): "
                             f"name one of them, or write both with -o FOLDER")
        return sections, list(tables)
    return sections, [t for s in SECTIONS if s in sections for t in formats.SECTION_TABLES[s]] + ["errors"]


def _single_file(output: str) -> bool:
    return output == "-" or (output.lower().endswith(".csv") and not os.path.isdir(output))


def snapshot_command(args: argparse.Namespace) -> int:
    fmt = getattr(args, "format", None) or "json"
    output = getattr(args, "output", None) or "-"
    sections, tables = plan(fmt, getattr(args, "include", None), output)
    timeout = getattr(args, "timeout", None) or SNAPSHOT_TIMEOUT
    window = getattr(args, "window", PROFILING_WINDOW) if "profiling" in sections else 0.0
    doc = take_snapshot(server_of(args), sections, timeout=timeout, window=window,
                        embed_demo=bool(getattr(args, "embed_demo", False)))
    if fmt == "csv":
        assert tables is not None
        if _single_file(output):
            _write(output, formats.table_csv(doc, tables[0]))
        else:
            try:
                os.makedirs(output, exist_ok=True)
            except OSError as exc:
                raise CommandError(f"cannot create the folder {output}: {exc.strerror or exc}") from None
            for name in tables:
                _write(os.path.join(output, f"{name}.csv"), formats.table_csv(doc, name))
    else:
        writer = {"json": formats.to_json, "dot": formats.to_dot, "mermaid": formats.to_mermaid}[fmt]
        _write(output, writer(doc))
    errors = doc["errors"]
    if errors:
        first = errors[0]
        who = f" of process {first['process_id']}" if first.get("process_id") else ""
        _fail(f"partial snapshot ({len(errors)} error(s), listed under 'errors'): {first['section']}{who}: "
              f"{first['error']} ({first['error_code']})", EXIT_PARTIAL)
        return EXIT_PARTIAL
    return EXIT_OK


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None


def take_snapshot(server: ServerArgs, sections: set[str], *, timeout: float, window: float,
                  embed_demo: bool) -> dict[str, Any]:
    """Collect the document; with ``embed_demo`` and nobody answering, on a demo started (and stopped) here."""
    from ..runtime.embedded import EmbeddedDemo

    embedded = None
    try:
        located = asyncio.run(find_server(server, min(DEFAULT_TIMEOUT, 1.0)))
        if embed_demo and located.backend is None:
            if server.backend == Backend.EZMSG.value:
                raise UsageError("--embed-demo starts an ezmsg-console GraphServer: it cannot be combined with "
                                 "--backend ezmsg (run 'ezmsg-console demo --ezmsg' for an ezmsg demo)")
            embedded = EmbeddedDemo.start_anywhere(resolve_address(located.address), server.token, timeout)
            located = Located(embedded.bound_address, Backend.NATIVE)
        return asyncio.run(_collect(server, located, sections, timeout=timeout, window=window,
                                    wait_ready=embedded is not None))
    finally:
        if embedded is not None:
            embedded.stop()


async def _collect(server: ServerArgs, located: Located, sections: set[str], *, timeout: float, window: float,
                   wait_ready: bool) -> dict[str, Any]:
    from .document import collect_document, wait_pipeline_ready

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with connected(server, min(timeout, DEFAULT_TIMEOUT), "ezmsg-console snapshot", located) as ctx:
        extra = []
        if wait_ready and not await wait_pipeline_ready(ctx, max(0.1, deadline - loop.time())):
            extra.append({"process_id": None, "section": "demo", "error_code": "TIMEOUT",
                          "error": f"the demo pipeline was not running fully within {timeout:g} s"})
        return await collect_document(ctx, sections, process_timeout=min(2.0, max(0.2, timeout / 4)),
                                      window=window, embedded_demo=wait_ready, extra_errors=extra)
