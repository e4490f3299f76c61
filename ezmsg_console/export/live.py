"""``get``, ``set`` and ``watch``: read, change and follow a live GraphServer from a script.

The pure helpers (:func:`parse_value`, :func:`settings_summary`,
:func:`settings_text`, :func:`event_record`, :func:`event_text`) hold the
formatting and are tested without a server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

from ..protocol import messages as m
from ..protocol.errors import ConnectionClosed, ConsoleError
from ..protocol.graph import TopologyEvent
from ..protocol.settings import SettingsChangedEvent, SettingsState
from ..settings.values import at_path
from .commands import DEFAULT_TIMEOUT, EXIT_OK, EXIT_UNREACHABLE, CommandError, connected, reason, server_of
from .formats import to_json, to_json_line

# -- pure helpers -------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """``text`` as JSON if it parses (45, true, "x", [1, 2], null), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def schema_fields(fields: Any, value: Any, prefix: str = "") -> list[dict[str, Any]]:
    """One summary per leaf field of a plain schema (nested settings flattened to dotted paths)."""
    out: list[dict[str, Any]] = []
    for f in fields or ():
        path = f"{prefix}{f['name']}"
        current = value.get(f["name"]) if isinstance(value, dict) else None
        if f.get("fields"):
            out.extend(schema_fields(f["fields"], current, path + "."))
            continue
        out.append({"path": path, "value": current, "kind": f.get("kind"), "type": f.get("field_type"),
                    "default": f.get("default"), "bounds": f.get("bounds"), "choices": f.get("choices"),
                    "unit": f.get("unit"), "read_only": bool(f.get("read_only")),
                    "description": f.get("description") or ""})
    return out


def settings_summary(state: SettingsState) -> dict[str, Any]:
    """What ``get --format json`` prints for one component."""
    schema = state.value.settings_schema or {}
    return {"component": state.component_address, "seq": state.seq, "source": state.source_process_id,
            "settings_type": schema.get("settings_type"), "value": state.value.structured_value,
            "fields": schema_fields(schema.get("fields"), state.value.structured_value)}


def constraints(field: dict[str, Any]) -> str:
    parts = []
    if field.get("choices") is not None:
        parts.append("|".join(str(c) for c in field["choices"]))
    if field.get("bounds"):
        low, high = field["bounds"]
        parts.append(f"{_number(low, '-inf')}..{_number(high, 'inf')}")
    if field.get("unit"):
        parts.append(str(field["unit"]))
    if field.get("read_only"):
        parts.append("read-only")
    return " ".join(parts)


def _number(x: Any, missing: str) -> str:
    if x is None:
        return missing
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def settings_text(state: SettingsState) -> str:
    """What ``get`` prints: a header line and an aligned table of fields."""
    summary = settings_summary(state)
    source = f", set by process {summary['source']}" if summary["source"] else ""
    head = f"{summary['component']}  {summary['settings_type'] or '(no schema)'}  seq {summary['seq']}{source}"
    if summary["value"] is None:
        return f"{summary['component']}: no settings (seq {summary['seq']})"
    rows = [("FIELD", "VALUE", "TYPE", "CONSTRAINTS", "DESCRIPTION")]
    fields = summary["fields"]
    if not fields and isinstance(summary["value"], dict):  # no schema: show the values as they are
        fields = [{"path": k, "value": v, "kind": type(v).__name__} for k, v in sorted(summary["value"].items())]
    for f in fields:
        rows.append((f["path"], json.dumps(f["value"]), str(f.get("kind") or ""), constraints(f),
                     f.get("description") or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [head] + ["  ".join([*(c.ljust(w) for c, w in zip(r[:4], widths)), r[4]]).rstrip() for r in rows]
    return "\n".join(lines)


def event_record(stream: str, item: Any) -> dict[str, Any]:
    """One ``watch --jsonl`` line: ``stream``, ``seq``, ``kind`` and the event's fields, or a gap."""
    if isinstance(item, m.StreamGap):
        return {"stream": stream, "gap": [item.from_seq, item.to_seq], "reason": item.reason}
    if isinstance(item, TopologyEvent):
        return {"stream": stream, "seq": item.seq, "kind": item.event_type.value, "timestamp": item.timestamp,
                "changed_topics": list(item.changed_topics), "source_session_id": item.source_session_id,
                "source_process_id": item.source_process_id, "server_epoch": item.server_epoch}
    if isinstance(item, SettingsChangedEvent):
        return {"stream": stream, "seq": item.seq, "kind": item.event_type.value,
                "component_address": item.component_address, "timestamp": item.timestamp,
                "value": item.value.structured_value, "source_session_id": item.source_session_id,
                "source_process_id": item.source_process_id, "server_epoch": item.server_epoch}
    return {"stream": stream, "seq": getattr(item, "seq", None), "kind": getattr(item, "KIND", type(item).__name__)}


def event_text(record: dict[str, Any]) -> str:
    """One readable ``watch`` line for an :func:`event_record`."""
    when = time.strftime("%H:%M:%S", time.localtime(record.get("timestamp") or time.time()))
    stream = f"{record['stream']:<8}"
    if "gap" in record:
        return f"{when} {stream} gap {record['gap'][0]}..{record['gap'][1]} ({record.get('reason', '')}): " \
               "events lost; take a snapshot to resynchronise"
    if record["stream"] == "settings":
        detail = f"{record.get('component_address')} {json.dumps(record.get('value'), sort_keys=True)}"
    else:
        detail = " ".join(record.get("changed_topics") or ()) or f"process {record.get('source_process_id')}"
    return f"{when} {stream} #{record['seq']} {record['kind']} {detail}".rstrip()


# -- get and set --------------------------------------------------------------------


async def _state_of(ctx: Any, component: str) -> SettingsState:
    states = {s.component_address: s for s in await ctx.settings_snapshot()}
    if component not in states:
        known = ", ".join(sorted(states)) or "none"
        raise CommandError(f"unknown component {component!r} (known: {known})")
    return states[component]


def get_command(args: argparse.Namespace) -> int:
    server = server_of(args)

    async def run() -> SettingsState:
        async with connected(server, args.timeout or DEFAULT_TIMEOUT, "ezmsg-console get") as ctx:
            return await _state_of(ctx, args.component)

    state = asyncio.run(run())
    text = to_json(settings_summary(state)) if args.format == "json" else settings_text(state) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()
    return EXIT_OK


def set_command(args: argparse.Namespace) -> int:
    server = server_of(args)
    value = parse_value(args.value)
    timeout = args.timeout or DEFAULT_TIMEOUT

    async def run() -> dict[str, Any]:
        async with connected(server, timeout, "ezmsg-console set") as ctx:
            state = await _state_of(ctx, args.component)
            if state.value.structured_value is None:
                raise CommandError(f"{args.component} has no settings to change")
            try:
                return await ctx.update_setting(args.component, args.field, value,
                                                expected_seq=args.expected_seq, timeout=timeout)
            except ConnectionClosed:
                raise
            except ConsoleError as exc:
                raise CommandError(f"{args.component}: {reason(exc)}", exc.details) from None

    reply = asyncio.run(run())
    applied = at_path(reply.get("value"), args.field)
    seq = f" (seq {reply['seq']})" if reply.get("seq") is not None else ""
    print(f"{args.component} {args.field} = {json.dumps(applied)}{seq}", flush=True)
    return EXIT_OK


# -- watch --------------------------------------------------------------------------


def watch_command(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_watch(args))
    except KeyboardInterrupt:  # Ctrl+C before the signal handlers were installed
        return EXIT_OK


async def _watch(args: argparse.Namespace) -> int:
    server = server_of(args)
    wanted = [s for s in ("topology", "settings") if getattr(args, s)] or ["topology", "settings"]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    async with connected(server, args.timeout or DEFAULT_TIMEOUT, "ezmsg-console watch") as ctx:
        subs = {"topology": ctx.subscribe_topology_events, "settings": ctx.subscribe_settings_events}
        streams = {name: await subs[name](after_seq=args.after_seq) for name in wanted}

        async def pump(name: str, sub: Any) -> None:
            try:
                while True:
                    item = await sub.next(timeout=None)
                    await queue.put((name, item if item is not None else ConnectionClosed("the stream ended")))
                    if item is None:
                        return
            except ConsoleError as exc:
                await queue.put((name, exc))

        tasks = [asyncio.ensure_future(pump(n, s)) for n, s in streams.items()]
        print(f"ezmsg-console: watching {' and '.join(wanted)} events on {ctx.address} (Ctrl+C to stop)",
              file=sys.stderr, flush=True)
        printed = 0
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while args.count is None or printed < args.count:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait([getter, stopper], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return EXIT_OK
                name, item = getter.result()
                if isinstance(item, ConsoleError):
                    print(f"ezmsg-console: the GraphServer at {ctx.address} went away ({item})", file=sys.stderr,
                          flush=True)
                    return EXIT_UNREACHABLE
                record = event_record(name, item)
                print(to_json_line(record) if args.jsonl else event_text(record), flush=True)
                printed += 1
            return EXIT_OK
        finally:
            stopper.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(stopper, *tasks, return_exceptions=True)
