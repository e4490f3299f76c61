"""Graphs far larger than one frame: 10,000 components, and replies between 8 and 16 MiB.

The metadata of thousands of components does not fit in one 16 MiB frame, and a
reply over ``max_pending_bytes`` (8 MiB) used to close its own requester as a slow
consumer: registration, ``snapshot()``, ``settings_snapshot()`` and the CLI all failed.
Now such messages travel in chunk frames and one message is always deliverable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys

from ezmsg_console.protocol.codec import packb
from ezmsg_console.protocol.graph import ComponentMetadata, GraphMetadata
from ezmsg_console.protocol.wire import to_wire
from ezmsg_console.runtime.assembly import assemble
from ezmsg_console.runtime.demo import BandpassFilter, FilterSettings

from ..conftest import TIMEOUT

SLOW = 4 * TIMEOUT  # tens of MB encoded, sent, joined and decoded on a shared 2-core machine


def components(n: int, doc_bytes: int = 0) -> tuple[ComponentMetadata, ...]:
    """``n`` units like the demo's filter (three streams, a five-field settings schema), each
    schema with a description of ``doc_bytes`` (a long docstring)."""
    base = assemble({"X": BandpassFilter(FilterSettings())}).metadata.components[0]
    schema = dict(base.settings_schema, description="Tuning notes. " * (doc_bytes // 14)) if doc_bytes \
        else base.settings_schema
    return tuple(
        dataclasses.replace(base, address=f"BIG/U{i:05d}", name=f"U{i:05d}", settings_schema=schema,
                            streams=tuple(dataclasses.replace(s, topic=f"BIG/U{i:05d}/{s.name}")
                                          for s in base.streams))
        for i in range(n))


async def test_a_graph_of_10000_components_registers_and_snapshots_whole(make_server, make_ctx) -> None:
    server = await make_server()
    comps = components(10_000)
    owner = await make_ctx(server.address, name="big-session", timeout=SLOW)
    await owner.register_metadata(GraphMetadata(comps))  # ~15 MB: a request in chunks
    ctx = await make_ctx(server.address, timeout=SLOW)
    snap = await ctx.snapshot()
    assert len(packb(to_wire(snap))) > server.max_frame_size  # the reply did not fit one frame
    (session,) = [s for s in snap.sessions if s.metadata is not None and s.metadata.components]
    assert [c.address for c in session.metadata.components] == [c.address for c in comps]
    states = await ctx.settings_snapshot()
    assert len(states) == 10_000
    assert {s.value.structured_value["cutoff_hz"] for s in states} == {FilterSettings().cutoff_hz}
    assert await owner.ping() >= 0 and await ctx.ping() >= 0  # both connections are fine


async def test_a_reply_between_8_and_16_mib_reaches_its_requester(make_server, make_ctx) -> None:
    """With default options, 1,100 components with long schema docs: a snapshot in one frame, over
    max_pending_bytes, is delivered (not a slow consumer), to a GraphContext and to the CLI."""
    server = await make_server()
    owner = await make_ctx(server.address, timeout=SLOW)
    await owner.register_metadata(GraphMetadata(components(1_100, doc_bytes=7_500)))
    ctx = await make_ctx(server.address, timeout=SLOW)
    bystander = await make_ctx(server.address)
    snap = await ctx.snapshot()
    size = len(packb(to_wire(snap)))
    assert server.max_pending_bytes < size < server.max_frame_size, size
    assert sum(len(s.metadata.components) for s in snap.sessions if s.metadata is not None) == 1_100
    assert len(await ctx.settings_snapshot()) == 1_100
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ezmsg_console", "snapshot", "--include", "topology,settings", "--address",
        str(server.address), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL)
    out, err = await asyncio.wait_for(proc.communicate(), SLOW)
    assert proc.returncode == 0, err.decode()
    doc = json.loads(out)
    assert len(doc["settings"]) == 1_100 and "BIG/U01099" in doc["settings"]
    await bystander.connect("still", "working")
    assert ("still", "working") in (await ctx.snapshot()).edges
