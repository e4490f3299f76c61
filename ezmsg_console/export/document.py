"""The snapshot document: one versioned, plain-data picture of a GraphServer and its processes.

Shape (``schema`` ``ezmsg-console.snapshot/1``; a section not asked for is absent)::

    schema        "ezmsg-console.snapshot/1"
    captured      {"epoch": wall-clock seconds, "iso": the same in UTC, ISO 8601}
    address       "host:port" of the GraphServer
    backend       "native" (an ezmsg-console GraphServer) or "ezmsg" (an ezmsg 3.9 one)
    embedded_demo true when the command started the server and demo itself
    server        {"id", "epoch", "topology_seq", "label" (e.g. "ezmsg 3.9.0")}
    sections      the sections collected, sorted
    topology      {"graph": {topic: [downstream topics]},
                   "edges": [{"from", "to", "owners"}],
                   "sessions": [{"session_id", "name", "role", "peer_address", "connected_since",
                                 "edges", "components": [component metadata]}],
                   "publishers": [...], "subscribers": [...]}
    processes     [{"process_id", "pid", "host", "units", "connected_since",
                    "ping_ms", "stats": GET_PROCESS_STATS answer or null, "error": text or null}]
    settings      {component: {"value", "schema", "seq", "source" (reporting process id or null),
                               "session" (declaring session id or null)}}
    profiling     {process_id: profiling snapshot, or {"error_code", "error"}}; a counter the
                  backend does not measure (listed in the snapshot's "unmeasured") is null
    errors        [{"process_id", "section", "error_code", "error"}]

Lists are in a stable order (by topic, unit or id) and the JSON writer sorts
keys, so two snapshots of the same system diff cleanly. A process that does
not answer (stopped, hung, gone) leaves an entry in ``errors``; the rest of
the document is still complete.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any, Iterable

from ..client.context import GraphContext
from ..protocol import wire
from ..protocol.errors import ConnectionClosed, ConsoleError
from ..protocol.graph import ComponentType, GraphSnapshot, ProcessInfo
from ..protocol.profiling import UNMEASURED_FIELDS, ProcessProfilingSnapshot, ProfilingError
from ..protocol.settings import SettingsState

SCHEMA = "ezmsg-console.snapshot/1"
SECTIONS = ("topology", "settings", "profiling", "processes")


def iso_utc(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec="milliseconds")


def build_document(*, address: str, snapshot: GraphSnapshot, sections: Iterable[str], captured: float,
                   settings: Iterable[SettingsState] = (),
                   stats: dict[str, dict[str, Any]] | None = None,
                   profiling: dict[str, ProcessProfilingSnapshot | ProfilingError] | None = None,
                   errors: Iterable[dict[str, Any]] = (), embedded_demo: bool = False,
                   own_session: str | None = None, backend: str = "native",
                   server_label: str = "native") -> dict[str, Any]:
    """Assemble the document from data already fetched (pure; see the module docstring).

    ``own_session`` (the collecting session, which owns nothing) is left out of ``sessions``.
    ``stats`` maps a process id to its GET_PROCESS_STATS answer plus
    ``ping_ms``, or to ``{"error": text}``.
    """
    wanted = sorted(set(sections))
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "captured": {"epoch": captured, "iso": iso_utc(captured)},
        "address": address,
        "backend": backend,
        "embedded_demo": embedded_demo,
        "server": {"id": snapshot.server_id, "epoch": snapshot.server_epoch, "topology_seq": snapshot.topology_seq,
                   "label": server_label},
        "sections": wanted,
        "errors": sorted((dict(e) for e in errors),
                         key=lambda e: (e.get("section") or "", e.get("process_id") or "", e.get("error") or "")),
    }
    if "topology" in wanted:
        doc["topology"] = topology_section(snapshot, own_session)
    if "processes" in wanted:
        doc["processes"] = processes_section(snapshot.processes, stats or {})
    if "settings" in wanted:
        doc["settings"] = settings_section(settings)
    if "profiling" in wanted:
        doc["profiling"] = {pid: _profile(result) for pid, result in sorted((profiling or {}).items())}
    return doc


def topology_section(snap: GraphSnapshot, own_session: str | None = None) -> dict[str, Any]:
    sessions = []
    for s in sorted(snap.sessions, key=lambda s: (s.name, s.session_id)):
        if s.session_id == own_session:
            continue
        components = s.metadata.components if s.metadata is not None else ()
        sessions.append({
            "session_id": s.session_id, "name": s.name, "role": s.role, "peer_address": s.peer_address,
            "connected_since": s.connected_since,
            "edges": sorted([e.from_topic, e.to_topic] for e in s.edges),
            "components": [wire.to_wire(c) for c in sorted(components, key=lambda c: c.address)],
        })
    return {
        "graph": {topic: sorted(dsts) for topic, dsts in sorted(snap.graph.items())},
        "edges": [{"from": e.from_topic, "to": e.to_topic, "owners": sorted(e.owners)}
                  for e in sorted(snap.edge_owners, key=lambda e: (e.from_topic, e.to_topic))],
        "sessions": sessions,
        "publishers": [wire.to_wire(p) for p in sorted(snap.publishers, key=lambda p: (p.topic, p.pub_id))],
        "subscribers": [wire.to_wire(s) for s in sorted(snap.subscribers, key=lambda s: (s.topic, s.sub_id))],
    }


def processes_section(processes: Iterable[ProcessInfo], stats: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in sorted(processes, key=lambda p: (sorted(p.units)[:1], p.process_id)):
        answer = dict(stats.get(p.process_id) or {})
        error = answer.pop("error", None)
        ping = answer.pop("ping_ms", None)
        out.append({"process_id": p.process_id, "pid": p.pid, "host": p.host, "units": sorted(p.units),
                    "connected_since": p.connected_since, "ping_ms": ping, "stats": answer or None,
                    "error": error})
    return out


def settings_section(states: Iterable[SettingsState]) -> dict[str, Any]:
    return {s.component_address: {"value": s.value.structured_value, "schema": s.value.settings_schema,
                                  "seq": s.seq, "source": s.source_process_id, "session": s.metadata_session_id}
            for s in sorted(states, key=lambda s: s.component_address)}


def _profile(result: ProcessProfilingSnapshot | ProfilingError) -> dict[str, Any]:
    if isinstance(result, ProfilingError):
        return {"error_code": result.error_code, "error": result.error}
    doc: dict[str, Any] = wire.to_wire(result)
    unmeasured = [f for what in result.unmeasured for f in UNMEASURED_FIELDS.get(what, ())]
    for endpoint in (*doc.get("publishers", ()), *doc.get("subscribers", ())):
        for name in unmeasured:
            if name in endpoint:
                endpoint[name] = None  # not measured by this backend: never a fake zero
        for name in ("handler_ns", "handler_ns_window"):
            if "histograms" in result.unmeasured and (endpoint.get(name) or {}).get("count") == 0:
                endpoint[name] = None  # percentiles from trace samples only, and none were traced
    return doc


# -- collecting ---------------------------------------------------------------------


def route_reason(exc: ConsoleError) -> str:
    """The message of a failed routed request without its "Process request failed (CODE): " prefix."""
    code = exc.details.get("error_code")
    prefix = f"Process request failed ({code}): "
    return exc.message[len(prefix):] if code and exc.message.startswith(prefix) else exc.message


def _error(process_id: str | None, section: str, exc: ConsoleError) -> dict[str, Any]:
    code = str(exc.details.get("error_code") or exc.code)
    return {"process_id": process_id, "section": section, "error_code": code, "error": route_reason(exc)}


async def _stats(ctx: GraphContext, unit: str, timeout: float) -> dict[str, Any] | ConsoleError:
    try:
        return await ctx.process_stats(unit, timeout=timeout)
    except ConnectionClosed:
        raise
    except ConsoleError as exc:
        return exc


async def _profiling(ctx: GraphContext, unit: str, timeout: float) -> ProcessProfilingSnapshot | ConsoleError:
    try:
        return await ctx.process_profiling_snapshot(unit, timeout=timeout)
    except ConnectionClosed:
        raise
    except ConsoleError as exc:
        return exc


async def collect_document(ctx: GraphContext, sections: Iterable[str], *, process_timeout: float = 2.0,
                           window: float = 0.0, embedded_demo: bool = False,
                           extra_errors: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """Ask the server (and, through it, every process) for what ``sections`` need.

    Each process is asked through its first unit, all concurrently, each with
    ``process_timeout``. With ``window`` > 0 profiling is sampled twice,
    ``window`` seconds apart, so its ``*_window`` rates are filled in (a
    process that did not answer the first time is not asked again).
    Only a lost connection to the GraphServer raises.
    """
    wanted = set(sections)
    snap = await ctx.snapshot()
    captured = time.time()
    targets = {p.process_id: sorted(p.units)[0] for p in snap.processes if p.units}
    errors: list[dict[str, Any]] = list(extra_errors)
    stats: dict[str, dict[str, Any]] = {}
    profiling: dict[str, ProcessProfilingSnapshot | ProfilingError] = {}

    async def gather_stats() -> None:
        if "processes" not in wanted:
            return
        answers = await asyncio.gather(*(_stats(ctx, unit, process_timeout) for unit in targets.values()))
        for pid, answer in zip(targets, answers):
            if isinstance(answer, ConsoleError):
                errors.append(_error(pid, "processes", answer))
                stats[pid] = {"error": route_reason(answer)}
            else:
                stats[pid] = answer

    async def gather_profiling() -> None:
        if "profiling" not in wanted:
            return
        asked = dict(targets)
        for round_ in range(2 if window > 0 else 1):
            if round_:
                await asyncio.sleep(window)
            answers = await asyncio.gather(*(_profiling(ctx, unit, process_timeout) for unit in asked.values()))
            for pid, answer in zip(list(asked), answers):
                if isinstance(answer, ConsoleError):
                    err = _error(pid, "profiling", answer)
                    errors.append(err)
                    profiling[pid] = ProfilingError(pid, err["error_code"], err["error"])
                    del asked[pid]
                else:
                    profiling[pid] = answer

    settings = await ctx.settings_snapshot() if "settings" in wanted else ()
    await asyncio.gather(gather_stats(), gather_profiling())
    return build_document(address=str(ctx.address), snapshot=snap, sections=wanted, captured=captured,
                          settings=settings, stats=stats, profiling=profiling, errors=errors,
                          embedded_demo=embedded_demo, own_session=ctx.session_id,
                          backend=getattr(ctx, "backend", "native"),
                          server_label=getattr(ctx, "server_label", "native"))


async def wait_pipeline_ready(ctx: GraphContext, timeout: float, poll: float = 0.05) -> bool:
    """Wait until every declared unit is owned by a process and every subscriber of a
    connected topic has received messages; False if that did not happen in ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if await _pipeline_ready(ctx, max(0.1, min(1.0, deadline - time.monotonic()))):
            return True
        if time.monotonic() + poll > deadline:
            return False
        await asyncio.sleep(poll)


async def _pipeline_ready(ctx: GraphContext, timeout: float) -> bool:
    snap = await ctx.snapshot()
    declared = {c.address for s in snap.sessions if s.metadata is not None
                for c in s.metadata.components if c.component_type is ComponentType.UNIT}
    owned = {u for p in snap.processes for u in p.units}
    if not declared or not declared <= owned:
        return False
    fed = {dst for dsts in snap.graph.values() for dst in dsts}
    results = await ctx.profiling_snapshot_all(timeout_per_process=timeout)
    if any(isinstance(r, ProfilingError) for r in results.values()):
        return False
    subs = [s for r in results.values() if isinstance(r, ProcessProfilingSnapshot) for s in r.subscribers]
    return all(s.messages_received_total > 0 for s in subs if s.topic in fed)
