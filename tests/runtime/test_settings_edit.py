"""Editing a running unit's settings end to end (reference-behaviour §4, §8 items 14, 19-25).

One module-scoped run of ``tunable.Rig`` (three worker processes, a GraphServer
in a background thread) serves most tests; they read the current state from
the server rather than assuming what an earlier test left. The kill test and
the read-only test start their own runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import signal
from typing import Any, AsyncIterator

import numpy as np
import psutil
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ezmsg_console.client import GraphContext
from ezmsg_console.client.connection import ClientConnection
from ezmsg_console.protocol import messages as m
from ezmsg_console.protocol.errors import (
    Conflict,
    ConsoleError,
    InvalidRequest,
    InvalidValue,
    ProcessUnavailable,
    ServerError,
    SettingsValidationError,
    UnknownField,
)
from ezmsg_console.protocol.graph import TopologyEvent, TopologyEventType
from ezmsg_console.protocol.settings import SettingsChangedEvent, SettingsEventType, SettingsState
from ezmsg_console.pubsub import shm
from ezmsg_console.pubsub.host import EndpointHost
from ezmsg_console.pubsub.subscriber import Subscriber
from ezmsg_console.runtime.runner import Runner
from ezmsg_console.server import GraphServer
from ezmsg_console.settings.values import to_plain

from ..conftest import TIMEOUT, eventually, fuzz_examples, snapshot_when
from .conftest import threaded_server
from .tunable import RIG_LABEL, Mode, NestedSettings, Rig, TunableSettings

pytestmark = pytest.mark.asyncio(loop_scope="module")

TUNE = "RIG/TUNE"
FIXED = "RIG/FIXED"
ADDRESSES = {"RIG", "RIG/FIXED", "RIG/SOURCE", "RIG/TUNE"}
UNITS = {"RIG/FIXED", "RIG/SOURCE", "RIG/TUNE"}
INITIAL_TUNE = to_plain(TunableSettings(label=RIG_LABEL))


# --------------------------------------------------------------------------- helpers


@dataclasses.dataclass
class RigHandle:
    address: Any
    runner: Runner
    ctx: GraphContext
    session_id: str  # the runner's session: declares every component
    owners: dict[str, str]  # unit address -> owning process id
    out: Subscriber  # RIG/TUNE/OUTPUT, leaky, in this test process


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def state_of(ctx: GraphContext, address: str) -> SettingsState:
    states = {s.component_address: s for s in await ctx.settings_snapshot()}
    assert address in states, f"{address} has no settings state: {sorted(states)}"
    return states[address]


async def last_seq(ctx: GraphContext) -> int:
    return (await ctx.settings_events(after_seq=0)).last_seq


async def owners_of(ctx: GraphContext) -> dict[str, tuple[str, int | None]]:
    """unit address -> (process id, pid) of its owner."""
    snap = await ctx.snapshot()
    return {unit: (p.process_id, p.pid) for p in snap.processes for unit in p.units}


async def wait_for_units(ctx: GraphContext, task: asyncio.Future[Any]) -> None:
    """Until every unit of the rig is owned by a process (fails at once if the run ended)."""
    def ok(snap: Any) -> bool:
        owners = {unit: p.process_id for p in snap.processes for unit in p.units}
        return set(owners) >= UNITS and len(set(owners.values())) == 3
    await snapshot_when(ctx, ok, "every unit of the rig owned", run=task)


async def open_output(address: Any) -> tuple[EndpointHost, ClientConnection, Subscriber]:
    """An endpoint host in this process, subscribed (leaky) to RIG/TUNE/OUTPUT."""
    conn = await ClientConnection.open(address, role=m.Role.PROCESS, name="test-output", token=None,
                                       timeout=TIMEOUT)
    host = EndpointHost(conn)  # joins a publisher that is already publishing, over shared memory
    await host.start()
    sub = await host.subscriber(f"{TUNE}/OUTPUT", leaky=True, max_queue=4)
    await sub.wait_for_publishers(1, TIMEOUT)
    return host, conn, sub


async def close_output(host: EndpointHost, conn: ClientConnection) -> None:
    await host.close()
    await conn.close()
    assert shm.ours(host.run_tag + "_") == []


async def next_output(sub: Subscriber) -> float:
    msg = await asyncio.wait_for(sub.recv(), TIMEOUT)
    assert isinstance(msg, np.ndarray) and msg.dtype == np.float64 and msg.shape == (1,)
    return float(msg[0])


async def output_becomes(sub: Subscriber, value: float) -> None:
    """TUNE's output reaches ``value`` (bounded) and stays there for the next messages."""
    async def reach() -> None:
        while await next_output(sub) != value:
            pass
    try:
        await asyncio.wait_for(reach(), TIMEOUT)
    except (TimeoutError, asyncio.TimeoutError):
        raise AssertionError(f"RIG/TUNE/OUTPUT never carried {value}") from None
    assert [await next_output(sub) for _ in range(3)] == [value] * 3


async def next_event(sub: Any) -> SettingsChangedEvent | TopologyEvent:
    item = await sub.next(TIMEOUT)
    assert item is not None, "the stream ended"
    assert not isinstance(item, m.StreamGap), f"unexpected gap: {item}"
    return item


async def set_gain(ctx: GraphContext, gain: float) -> int:
    reply = await ctx.update_setting(TUNE, "gain", gain)
    assert reply["value"]["gain"] == gain
    return int(reply["seq"])


async def gain_other_than(ctx: GraphContext, avoid: float, fallback: float) -> None:
    if (await state_of(ctx, TUNE)).value.structured_value["gain"] == avoid:
        await set_gain(ctx, fallback)


# --------------------------------------------------------------------------- the running rig


@contextlib.asynccontextmanager
async def running_rig(address: Any) -> AsyncIterator[RigHandle]:
    """A Runner running ``Rig`` against the GraphServer at ``address``, stopped (and checked) on exit."""
    runner = Runner({"RIG": Rig()}, address=str(address), duration=120)
    task = asyncio.ensure_future(runner.run())
    ctx = GraphContext(address, timeout=TIMEOUT, name="settings-edit-tests")
    host = conn = None
    pids: list[int] = []
    try:
        await ctx.open()
        await wait_for_units(ctx, task)
        owners = await owners_of(ctx)
        pids = [pid for _, pid in owners.values() if pid]
        host, conn, out = await open_output(address)
        await next_output(out)  # TUNE runs: its handler has published
        assert runner.ctx is not None
        yield RigHandle(address, runner, ctx, runner.ctx.session_id, {u: o for u, (o, _) in owners.items()}, out)
    finally:
        if host is not None and conn is not None:
            await close_output(host, conn)
        await ctx.close()
        runner.request_stop("test done")
        result = await asyncio.wait_for(task, 3 * TIMEOUT)
    assert result.ok, result.errors
    assert result.reason == "test done"
    assert result.exit_codes == {"RIG/FIXED": 0, "RIG/SOURCE": 0, "RIG/TUNE": 0}
    assert shm.ours(runner.run_tag + "_") == []  # every segment of this run was unlinked
    assert not [p for p in pids if alive(p)]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig() -> AsyncIterator[RigHandle]:
    with threaded_server() as address:
        async with running_rig(address) as handle:
            yield handle


# --------------------------------------------------------------------------- 1. initial settings, schema


async def test_initial_settings_for_every_component_and_schemas(rig: RigHandle) -> None:
    reply = await rig.ctx.settings_events(after_seq=0)
    initial = [e for e in reply.events if e.event_type is SettingsEventType.INITIAL_SETTINGS]
    assert sorted(e.component_address for e in initial) == sorted(ADDRESSES)  # collections too, once each
    assert [e.seq for e in reply.events] == sorted(e.seq for e in reply.events)
    for event in initial:
        assert event.source_session_id == rig.session_id
        assert event.source_process_id is None
    by_address = {e.component_address: e for e in initial}
    assert by_address[TUNE].value.structured_value == INITIAL_TUNE
    assert by_address[FIXED].value.structured_value == {"offset": 0.0}
    assert by_address["RIG"].value.structured_value is None  # a collection without settings

    states = {s.component_address: s for s in await rig.ctx.settings_snapshot()}
    assert list(states) == sorted(states)  # sorted by address
    assert set(states) == ADDRESSES
    for state in states.values():
        assert state.metadata_session_id == rig.session_id
    fixed = states[FIXED]
    assert fixed.value.structured_value == {"offset": 0.0} and fixed.value.repr_value == {"offset": 0.0}
    assert fixed.source_process_id is None and fixed.seq == by_address[FIXED].seq

    tune = states[TUNE]
    assert set(tune.value.structured_value) == set(INITIAL_TUNE)
    assert tune.value.repr_value == tune.value.structured_value
    assert tune.value.structured_value["label"] == RIG_LABEL
    schema = tune.value.settings_schema
    assert schema["provider"] == "dataclass"
    assert schema["settings_type"] == "tests.runtime.tunable.TunableSettings"
    fields = {f["name"]: f for f in schema["fields"]}
    assert list(fields) == list(INITIAL_TUNE)
    hints = {name: f["widget_hint"] for name, f in fields.items()}
    assert hints["gain"] == "slider"
    assert hints["threshold"] == "slider"
    assert hints["order"] == "select"
    assert hints["mode"] == "select"
    assert hints["enabled"] == "checkbox"
    assert hints["label"] == "text_input"
    assert hints["limit"] == "int_input"
    assert fields["gain"]["bounds"] == [-10.0, 10.0] and fields["gain"]["description"] == "output = input * gain"
    assert fields["threshold"]["bounds"] == [0.0, 1.0]
    assert fields["order"]["choices"] == [1, 2, 4, 8]
    assert fields["mode"]["choices"] == ["fast", "slow"]
    assert fields["label"]["read_only"] is True and fields["gain"]["read_only"] is False
    assert fields["weights"]["default"] == [1.0, 2.0] and fields["weights"]["required"] is False
    nested = {f["name"]: f for f in fields["nested"]["fields"]}
    assert nested["depth"]["bounds"] == [0.0, 1.0] and nested["depth"]["widget_hint"] == "slider"


# --------------------------------------------------------------------------- 2. one valid edit


async def test_field_edit_reaches_stream_snapshot_and_output(rig: RigHandle) -> None:
    ctx = rig.ctx
    await gain_other_than(ctx, 3.0, 1.0)
    before = await last_seq(ctx)
    sub = await ctx.subscribe_settings_events(after_seq=before)
    try:
        reply = await ctx.update_setting(TUNE, "gain", 3)  # an int for a float field
        assert type(reply["value"]["gain"]) is float and reply["value"]["gain"] == 3.0
        assert reply["value"]["label"] == RIG_LABEL
        seq = reply["seq"]
        assert isinstance(seq, int) and seq == before + 1

        event = await next_event(sub)
        assert isinstance(event, SettingsChangedEvent)
        assert (event.seq, event.event_type, event.component_address) == (
            seq, SettingsEventType.SETTINGS_UPDATED, TUNE)
        assert event.source_process_id == rig.owners[TUNE]
        assert event.source_session_id == rig.session_id
        assert event.value.structured_value == reply["value"]
    finally:
        await sub.close()
    # exactly one event for the edit
    assert [e.seq for e in (await ctx.settings_events(after_seq=before)).events] == [seq]

    state = await state_of(ctx, TUNE)
    assert state.seq == seq and state.value.structured_value["gain"] == 3.0
    assert state.source_process_id == rig.owners[TUNE] and state.metadata_session_id == rig.session_id
    assert state.value.settings_schema is not None
    await output_becomes(rig.out, 3.0)


VALID_EDITS = [
    # (field_path, value sent, the field's new plain value, the top-level field it changes)
    pytest.param("gain", -10, -10.0, "gain", id="inclusive-lower-bound-int"),
    pytest.param("gain", 10.0, 10.0, "gain", id="inclusive-upper-bound"),
    pytest.param("order", 8, 8, "order", id="choice"),
    pytest.param("mode", "slow", "slow", "mode", id="enum-value"),
    pytest.param("enabled", False, False, "enabled", id="bool"),
    pytest.param("limit", 3, 3, "limit", id="optional-int"),
    pytest.param("limit", None, None, "limit", id="optional-none"),
    pytest.param("weights", [1, 2.5], [1.0, 2.5], "weights", id="list-ints-coerced"),
    pytest.param("weights", [], [], "weights", id="empty-list"),
    pytest.param("threshold", 0.999, 0.999, "threshold", id="inside-exclusive-bounds"),
    pytest.param("nested.depth", 1.0, {"depth": 1.0}, "nested", id="nested-field"),
    pytest.param("nested", {"depth": 0.125}, {"depth": 0.125}, "nested", id="partial-nested-dict"),
    pytest.param("mode", Mode.SLOW, "slow", "mode", id="enum-member"),
    pytest.param("nested", NestedSettings(depth=0.25, tag="q"), {"depth": 0.25, "tag": "q"}, "nested",
                 id="nested-settings-object"),
    pytest.param("weights", (3.0, 4.0), [3.0, 4.0], "weights", id="tuple-for-list"),
]


@pytest.mark.parametrize(("path", "value", "applied", "top"), VALID_EDITS)
async def test_valid_edit_changes_exactly_that_field(rig: RigHandle, path: str, value: Any, applied: Any,
                                                     top: str) -> None:
    ctx = rig.ctx
    base = {**INITIAL_TUNE, "limit": 5}  # every edit below is a real change from this
    await ctx.update_settings(TUNE, base)
    before = (await state_of(ctx, TUNE)).value.structured_value
    assert before == base
    seq_before = await last_seq(ctx)
    reply = await ctx.update_setting(TUNE, path, value)
    expected = {**before, top: {**before[top], **applied} if isinstance(applied, dict) else applied}
    assert reply["value"] == expected  # every other field (and sub-field) kept
    assert reply["seq"] == seq_before + 1
    events = (await ctx.settings_events(after_seq=seq_before)).events
    assert [(e.seq, e.value.structured_value) for e in events] == [(reply["seq"], expected)]
    state = await state_of(ctx, TUNE)
    assert (state.seq, state.value.structured_value) == (reply["seq"], expected)


# --------------------------------------------------------------------------- 3. invalid edits

NAN = float("nan")
INF = float("inf")

BAD_EDITS = [
    # (field_path, value, error class, error code, field_path named in details (None: not checked))
    pytest.param("gain", "3", InvalidValue, "INVALID_VALUE", "gain", id="str-for-float"),
    pytest.param("gain", True, InvalidValue, "INVALID_VALUE", "gain", id="bool-for-float"),
    pytest.param("order", True, InvalidValue, "INVALID_VALUE", "order", id="bool-for-int"),
    pytest.param("order", 4.0, InvalidValue, "INVALID_VALUE", "order", id="float-for-int"),
    pytest.param("gain", NAN, InvalidValue, "INVALID_VALUE", "gain", id="nan"),
    pytest.param("gain", INF, InvalidValue, "INVALID_VALUE", "gain", id="inf"),
    pytest.param("gain", -INF, InvalidValue, "INVALID_VALUE", "gain", id="-inf"),
    pytest.param("gain", -10.001, InvalidValue, "INVALID_VALUE", "gain", id="below-bound"),
    pytest.param("gain", 10.5, InvalidValue, "INVALID_VALUE", "gain", id="above-bound"),
    pytest.param("gain", 11, InvalidValue, "INVALID_VALUE", "gain", id="int-above-bound"),
    pytest.param("threshold", 0.0, InvalidValue, "INVALID_VALUE", "threshold", id="exclusive-lower-equal"),
    pytest.param("threshold", 1, InvalidValue, "INVALID_VALUE", "threshold", id="exclusive-upper-equal"),
    pytest.param("order", 3, InvalidValue, "INVALID_VALUE", "order", id="not-in-choices"),
    pytest.param("mode", "medium", InvalidValue, "INVALID_VALUE", "mode", id="bad-enum-value"),
    pytest.param("mode", 1, InvalidValue, "INVALID_VALUE", "mode", id="enum-wrong-type"),
    pytest.param("enabled", 1, InvalidValue, "INVALID_VALUE", "enabled", id="int-for-bool"),
    pytest.param("enabled", "true", InvalidValue, "INVALID_VALUE", "enabled", id="str-for-bool"),
    pytest.param("nope", 1.0, UnknownField, "UNKNOWN_FIELD", "nope", id="unknown-field"),
    pytest.param("nested.nope", 1.0, UnknownField, "UNKNOWN_FIELD", "nested.nope", id="unknown-nested-field"),
    pytest.param("gain.x", 1.0, UnknownField, "UNKNOWN_FIELD", "gain.x", id="path-through-scalar"),
    pytest.param("", 1.0, InvalidRequest, "INVALID_REQUEST", None, id="empty-path"),
    pytest.param("  ", 1.0, InvalidRequest, "INVALID_REQUEST", None, id="blank-path"),
    pytest.param("nested.", 0.5, InvalidRequest, "INVALID_REQUEST", None, id="empty-segment"),
    pytest.param("label", "y", InvalidValue, "INVALID_VALUE", "label", id="read-only"),
    pytest.param("gain", None, InvalidValue, "INVALID_VALUE", "gain", id="none-for-float"),
    pytest.param("order", None, InvalidValue, "INVALID_VALUE", "order", id="none-for-int"),
    pytest.param("limit", "5", InvalidValue, "INVALID_VALUE", "limit", id="str-for-optional-int"),
    pytest.param("limit", 2.5, InvalidValue, "INVALID_VALUE", "limit", id="float-for-optional-int"),
    pytest.param("weights", [1.0, "a"], InvalidValue, "INVALID_VALUE", "weights[1]", id="list-with-str"),
    pytest.param("weights", [1.0, NAN], InvalidValue, "INVALID_VALUE", "weights[1]", id="list-with-nan"),
    pytest.param("weights", [True], InvalidValue, "INVALID_VALUE", "weights[0]", id="list-with-bool"),
    pytest.param("weights", 1.0, InvalidValue, "INVALID_VALUE", "weights", id="float-for-list"),
    pytest.param("nested.depth", 1.5, InvalidValue, "INVALID_VALUE", "nested.depth", id="nested-out-of-bounds"),
    pytest.param("nested", {"depth": -0.1}, InvalidValue, "INVALID_VALUE", "nested.depth",
                 id="nested-dict-out-of-bounds"),
    pytest.param("nested", {"bogus": 1}, UnknownField, "UNKNOWN_FIELD", "nested.bogus", id="nested-dict-unknown-key"),
    pytest.param("nested", 3, InvalidValue, "INVALID_VALUE", "nested", id="int-for-nested"),
    pytest.param("nested.tag", 5, InvalidValue, "INVALID_VALUE", "nested.tag", id="int-for-nested-str"),
    pytest.param("gain", {"v": 1.0}, InvalidValue, "INVALID_VALUE", "gain", id="dict-for-float"),
    pytest.param("gain", [1.0], InvalidValue, "INVALID_VALUE", "gain", id="list-for-float"),
]

BAD_PAYLOADS = [
    pytest.param({"value": 1.0}, id="missing-field_path"),
    pytest.param({"field_path": "gain"}, id="missing-value"),
    pytest.param({"field_path": 7, "value": 1.0}, id="int-field_path"),
    pytest.param("gain=1", id="str-payload"),
    pytest.param(None, id="no-payload"),
]


async def assert_nothing_changed_and_unit_alive(ctx: GraphContext, before: SettingsState, seq_before: int) -> None:
    after = await state_of(ctx, TUNE)
    assert after.seq == before.seq
    assert after.value.structured_value == before.value.structured_value
    assert (await ctx.settings_events(after_seq=seq_before)).events == ()
    # the unit still applies edits: exactly the next seq
    gain = before.value.structured_value["gain"]
    new_gain = 2.0 if gain != 2.0 else -2.0
    assert await set_gain(ctx, new_gain) == seq_before + 1


@pytest.mark.parametrize(("path", "value", "error", "code", "named"), BAD_EDITS)
async def test_invalid_edit_is_rejected_and_changes_nothing(rig: RigHandle, path: str, value: Any,
                                                            error: type[ConsoleError], code: str,
                                                            named: str | None) -> None:
    ctx = rig.ctx
    before = await state_of(ctx, TUNE)
    seq_before = await last_seq(ctx)
    with pytest.raises(error) as info:
        await ctx.update_setting(TUNE, path, value)
    assert type(info.value) is error
    assert info.value.details["error_code"] == code
    assert info.value.details["process_id"] == rig.owners[TUNE]  # the worker answered
    if named is not None:
        assert info.value.details.get("field_path") == named, info.value.details
        assert named in str(info.value)
    await assert_nothing_changed_and_unit_alive(ctx, before, seq_before)


EDGE_PATHS = [
    pytest.param("g" * 100_000, "100000 characters", id="100-kB-path"),
    pytest.param("gain\x1b[2J", "control characters", id="terminal-escape-in-path"),
    pytest.param("gain\nSPOOFED LOG LINE", "control characters", id="newline-in-path"),
    pytest.param(".".join(["a"] * 40), "more than 32 levels", id="deep-path"),
]


@pytest.mark.parametrize(("path", "why"), EDGE_PATHS)
async def test_edge_case_paths_are_refused_escaped_and_short(rig: RigHandle, path: str, why: str) -> None:
    """The refusal names the path escaped (no raw control codes reach a terminal or a log) and
    shortened (a 100 kB path is not echoed back whole)."""
    ctx = rig.ctx
    before = await state_of(ctx, TUNE)
    seq_before = await last_seq(ctx)
    with pytest.raises(InvalidRequest) as info:
        await ctx.update_setting(TUNE, path, 1.0)
    message = str(info.value)
    assert why in message and message.isprintable() and len(message) < 400, message
    assert repr(path)[:40] in message  # the path, as Python would escape it
    await assert_nothing_changed_and_unit_alive(ctx, before, seq_before)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, [1.0, 2**70]], ids=["2**64", "below-int64", "in-a-list"])
async def test_integers_beyond_64_bits_are_refused_naming_the_field(rig: RigHandle, value: Any) -> None:
    ctx = rig.ctx
    before = await state_of(ctx, TUNE)
    seq_before = await last_seq(ctx)
    with pytest.raises(InvalidValue, match=r"^gain: .* does not fit in 64 bits") as info:
        await ctx.update_setting(TUNE, "gain", value)
    assert info.value.details["field_path"] == "gain" and info.value.details["reason"] == "int_range"
    await assert_nothing_changed_and_unit_alive(ctx, before, seq_before)


@pytest.mark.parametrize("payload", BAD_PAYLOADS)
async def test_malformed_edit_payload_is_invalid_request(rig: RigHandle, payload: Any) -> None:
    ctx = rig.ctx
    before = await state_of(ctx, TUNE)
    seq_before = await last_seq(ctx)
    response = await ctx.process_request(TUNE, "UPDATE_SETTING_FIELD", payload)
    assert not response.ok
    assert response.error_code == "INVALID_REQUEST"
    assert response.process_id == rig.owners[TUNE]
    await assert_nothing_changed_and_unit_alive(ctx, before, seq_before)


@settings(max_examples=fuzz_examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gain=st.one_of(st.floats(), st.integers(min_value=-30, max_value=30)))
@example(gain=10)
@example(gain=-10.0)
@example(gain=10.000000001)
@example(gain=-0.0)
@example(gain=float("nan"))
async def test_random_gains_are_accepted_exactly_within_bounds(rig: RigHandle, gain: float | int) -> None:
    ctx = rig.ctx
    before = await state_of(ctx, TUNE)
    seq_before = await last_seq(ctx)
    valid = math.isfinite(gain) and -10 <= gain <= 10
    try:
        reply = await ctx.update_setting(TUNE, "gain", gain)
    except InvalidValue as exc:
        assert not valid, f"{gain!r} is within [-10, 10] but was rejected: {exc}"
        assert exc.details["field_path"] == "gain"
        after = await state_of(ctx, TUNE)
        assert (after.seq, after.value.structured_value) == (before.seq, before.value.structured_value)
        assert await last_seq(ctx) == seq_before
    else:
        assert valid, f"{gain!r} is outside [-10, 10] but was accepted"
        assert reply["value"]["gain"] == float(gain) and type(reply["value"]["gain"]) is float
        assert reply["seq"] == seq_before + 1
        after = await state_of(ctx, TUNE)
        assert after.seq == reply["seq"] and after.value.structured_value["gain"] == float(gain)


# --------------------------------------------------------------------------- 4. concurrent editors


async def test_two_editors_with_the_same_expected_seq_one_wins(rig: RigHandle) -> None:
    async with GraphContext(rig.address, timeout=TIMEOUT, name="editor-a") as a, \
            GraphContext(rig.address, timeout=TIMEOUT, name="editor-b") as b:
        base = (await state_of(a, TUNE)).seq
        seq_before = await last_seq(a)
        results = await asyncio.gather(
            a.update_setting(TUNE, "gain", 4.0, expected_seq=base),
            b.update_setting(TUNE, "gain", -4.0, expected_seq=base),
            return_exceptions=True,
        )
        wins = [r for r in results if isinstance(r, dict)]
        losses = [r for r in results if isinstance(r, BaseException)]
        assert len(wins) == 1 and len(losses) == 1, results
        winner, loser = wins[0], losses[0]
        assert isinstance(loser, Conflict), repr(loser)
        assert loser.details["error_code"] == "CONFLICT"
        assert loser.details["current_seq"] == winner["seq"] == seq_before + 1
        assert loser.details["current_value"] == winner["value"]
        events = (await a.settings_events(after_seq=seq_before)).events
        assert [(e.seq, e.value.structured_value["gain"]) for e in events] == [(winner["seq"], winner["value"]["gain"])]

        with pytest.raises(Conflict) as stale:  # still stale
            await b.update_setting(TUNE, "gain", 5.0, expected_seq=base)
        assert stale.value.details["current_seq"] == winner["seq"]
        fresh = await b.update_setting(TUNE, "gain", 5.0, expected_seq=winner["seq"])
        assert fresh["seq"] == winner["seq"] + 1
        assert (await state_of(a, TUNE)).value.structured_value["gain"] == 5.0


# --------------------------------------------------------------------------- 5. ordering


async def test_a_burst_of_edits_arrives_in_seq_order_on_two_subscribers(rig: RigHandle) -> None:
    gains = [round(0.5 * i - 2.0, 3) for i in range(10)]
    async with GraphContext(rig.address, timeout=TIMEOUT, name="watcher") as other:
        seq_before = await last_seq(rig.ctx)
        subs = [await rig.ctx.subscribe_settings_events(after_seq=seq_before),
                await other.subscribe_settings_events(after_seq=seq_before)]
        try:
            replies = await asyncio.gather(*(rig.ctx.update_setting(TUNE, "gain", g) for g in gains))
            assert sorted(r["seq"] for r in replies) == list(range(seq_before + 1, seq_before + 11))
            by_seq = {r["seq"]: r["value"] for r in replies}
            streams = []
            for sub in subs:
                events = [await next_event(sub) for _ in gains]
                assert all(isinstance(e, SettingsChangedEvent) for e in events)
                assert [e.seq for e in events] == list(range(seq_before + 1, seq_before + 11))
                assert all(e.event_type is SettingsEventType.SETTINGS_UPDATED and e.component_address == TUNE
                           for e in events)
                assert all(e.value.structured_value == by_seq[e.seq] for e in events)
                streams.append([(e.seq, e.value.structured_value["gain"]) for e in events])
            assert streams[0] == streams[1]
            assert sorted(g for _, g in streams[0]) == sorted(gains)
        finally:
            for sub in subs:
                await sub.close()
    last = max(by_seq)
    state = await state_of(rig.ctx, TUNE)
    assert state.seq == last and state.value.structured_value == by_seq[last]
    await output_becomes(rig.out, by_seq[last]["gain"])


# --------------------------------------------------------------------------- 6. units that cannot be edited


async def test_edit_of_a_unit_without_input_settings_is_unsupported(rig: RigHandle) -> None:
    before = await state_of(rig.ctx, FIXED)
    seq_before = await last_seq(rig.ctx)
    with pytest.raises(ServerError) as info:
        await rig.ctx.update_setting(FIXED, "offset", 0.5)
    assert info.value.details["error_code"] == "UNSUPPORTED_OPERATION"
    assert info.value.details["process_id"] == rig.owners[FIXED]
    with pytest.raises(ServerError) as whole:
        await rig.ctx.update_settings(FIXED, {"offset": 0.5})
    assert whole.value.details["error_code"] == "UNSUPPORTED_OPERATION"
    after = await state_of(rig.ctx, FIXED)
    assert (after.seq, after.value) == (before.seq, before.value)
    assert (await rig.ctx.settings_events(after_seq=seq_before)).events == ()


@pytest.mark.parametrize("address", ["RIG/NOPE", "RIG"])
async def test_edit_of_an_unowned_address_is_unroutable(rig: RigHandle, address: str) -> None:
    seq_before = await last_seq(rig.ctx)
    with pytest.raises(ProcessUnavailable) as info:
        await rig.ctx.update_setting(address, "gain", 1.0)
    assert info.value.details["error_code"] == "UNROUTABLE_UNIT"
    assert "No process owns unit" in str(info.value)
    assert (await rig.ctx.settings_events(after_seq=seq_before)).events == ()


# --------------------------------------------------------------------------- 7. whole-value edits


async def test_whole_value_edit_applies(rig: RigHandle) -> None:
    ctx = rig.ctx
    current = (await state_of(ctx, TUNE)).value.structured_value
    new = {**current, "gain": 2.5 if current["gain"] != 2.5 else -2.5, "order": 8, "mode": "slow",
           "enabled": False, "limit": 7, "weights": [0.5, 0.25, 3], "threshold": 0.25,
           "nested": {"depth": 0.75, "tag": "m"}}
    seq_before = await last_seq(ctx)
    reply = await ctx.update_settings(TUNE, new)
    expected = {**new, "weights": [0.5, 0.25, 3.0]}
    assert reply["value"] == expected and reply["seq"] == seq_before + 1
    events = (await ctx.settings_events(after_seq=seq_before)).events
    assert len(events) == 1 and events[0].value.structured_value == expected
    assert events[0].source_process_id == rig.owners[TUNE]
    state = await state_of(ctx, TUNE)
    assert state.seq == reply["seq"] and state.value.structured_value == expected
    await output_becomes(rig.out, expected["gain"])

    # a settings object works too (sent as its plain field dict)
    obj = TunableSettings(gain=-1.25, order=2, mode=Mode.FAST, label=RIG_LABEL, nested=NestedSettings(depth=0.0))
    reply = await ctx.update_settings(TUNE, obj)
    assert reply["value"] == to_plain(obj)
    assert (await state_of(ctx, TUNE)).value.structured_value == to_plain(obj)
    await output_becomes(rig.out, -1.25)


@pytest.mark.parametrize(("change", "error"), [
    pytest.param({"gain": 11.0}, InvalidValue, id="out-of-bounds"),
    pytest.param({"label": "changed"}, InvalidValue, id="read-only-changed"),
    pytest.param({"bogus": 1}, UnknownField, id="unknown-field"),
    pytest.param({"nested": {"depth": 2.0, "tag": "n"}}, InvalidValue, id="nested-out-of-bounds"),
])
async def test_invalid_whole_value_edit_changes_nothing(rig: RigHandle, change: dict[str, Any],
                                                        error: type[ConsoleError]) -> None:
    ctx = rig.ctx
    before = await state_of(ctx, TUNE)
    seq_before = await last_seq(ctx)
    with pytest.raises(error):
        await ctx.update_settings(TUNE, {**before.value.structured_value, **change})
    await assert_nothing_changed_and_unit_alive(ctx, before, seq_before)


@pytest.mark.parametrize("payload", [pytest.param({"value": 5}, id="value-not-a-mapping"),
                                     pytest.param({}, id="no-value"), pytest.param([1], id="not-a-mapping")])
async def test_malformed_whole_value_payload_is_invalid_request(rig: RigHandle, payload: Any) -> None:
    ctx = rig.ctx
    before = await state_of(ctx, TUNE)
    seq_before = await last_seq(ctx)
    response = await ctx.process_request(TUNE, "UPDATE_SETTINGS", payload)
    assert not response.ok and response.error_code == "INVALID_REQUEST"
    await assert_nothing_changed_and_unit_alive(ctx, before, seq_before)


@pytest.mark.asyncio(loop_scope="function")
async def test_whole_value_edit_cannot_reset_a_read_only_field_by_omitting_it(server: GraphServer) -> None:
    async with running_rig(server.address) as own:  # its own run: the bug would spoil the shared one
        ctx = own.ctx
        before = await state_of(ctx, TUNE)
        assert before.value.structured_value["label"] == RIG_LABEL  # not the field's default "x"
        partial = {k: v for k, v in before.value.structured_value.items() if k != "label"}
        try:
            await ctx.update_settings(TUNE, partial)
        except (SettingsValidationError, InvalidRequest):  # refusing is fine too, if nothing changed
            assert (await state_of(ctx, TUNE)).seq == before.seq
        assert (await state_of(ctx, TUNE)).value.structured_value["label"] == RIG_LABEL


# --------------------------------------------------------------------------- 8. the owner dies


@pytest.mark.asyncio(loop_scope="function")
async def test_killed_owner_reverts_settings_to_initial_value(server: GraphServer) -> None:
    runner = Runner({"RIG": Rig()}, address=str(server.address), duration=TIMEOUT * 3)
    task = asyncio.ensure_future(runner.run())
    host = conn = None
    pids: list[int] = []
    killed = False
    try:
        async with GraphContext(server.address, timeout=TIMEOUT, name="killer") as ctx:
            await wait_for_units(ctx, task)
            owners = await owners_of(ctx)
            pids = [pid for _, pid in owners.values() if pid]
            tune_process, tune_pid = owners[TUNE]
            assert tune_pid and tune_pid != os.getpid()
            host, conn, out = await open_output(server.address)
            await next_output(out)  # TUNE is running

            session = (await state_of(ctx, TUNE)).metadata_session_id
            assert session is not None
            reply = await ctx.update_setting(TUNE, "gain", 5.0)  # a live process value to revert
            assert (await state_of(ctx, TUNE)).source_process_id == tune_process
            await output_becomes(out, 5.0)

            topology = await ctx.subscribe_topology_events(after_seq=(await ctx.snapshot()).topology_seq)
            events = await ctx.subscribe_settings_events(after_seq=reply["seq"])
            # An edit in flight when the owner dies: stop the worker, route the edit to it, then kill it.
            os.kill(tune_pid, signal.SIGSTOP)
            in_flight = asyncio.ensure_future(ctx.update_setting(TUNE, "gain", 6.0, timeout=TIMEOUT))
            await eventually(lambda: server.core.router.pending == 1 or in_flight.done(),
                             what="the edit was routed to the stopped worker")
            assert not in_flight.done()
            os.kill(tune_pid, signal.SIGKILL)
            killed = True
            with pytest.raises(ProcessUnavailable) as lost:
                await asyncio.wait_for(in_flight, TIMEOUT)
            assert lost.value.details["error_code"] == "PROCESS_DISCONNECTED"
            assert lost.value.details["process_id"] == tune_process

            # The settings first: the runner ends the run, and its session, soon after the kill.
            restored = await next_event(events)
            assert isinstance(restored, SettingsChangedEvent)
            assert (restored.event_type, restored.component_address) == (SettingsEventType.SETTINGS_UPDATED, TUNE)
            assert restored.source_process_id is None and restored.source_session_id == session
            assert restored.value.structured_value == INITIAL_TUNE
            state = await state_of(ctx, TUNE)
            assert (state.seq, state.source_process_id, state.value.structured_value) == (
                restored.seq, None, INITIAL_TUNE)

            response = await ctx.process_request(TUNE, "PING")  # the owner is gone: nothing to route to
            assert not response.ok and response.error_code == "UNROUTABLE_UNIT", response

            async def process_changed() -> TopologyEvent:
                while True:
                    event = await next_event(topology)
                    if event.event_type is TopologyEventType.PROCESS_CHANGED \
                            and event.source_process_id == tune_process:
                        return event
            await asyncio.wait_for(process_changed(), TIMEOUT)
            assert TUNE not in await owners_of(ctx)
            with pytest.raises(ProcessUnavailable):
                await ctx.update_setting(TUNE, "gain", 6.0)
            await topology.close()
            await events.close()
    finally:
        if host is not None and conn is not None:
            await close_output(host, conn)
        if not killed:
            runner.request_stop("the test failed early")
        result = await asyncio.wait_for(task, 3 * TIMEOUT)  # after the kill, the run stops by itself
    # the run ends as failed, naming the killed worker (run() would raise RunError for it)
    assert not result.ok and result.reason == "worker RIG/TUNE failed"
    assert result.errors == [{"group": TUNE, "unit": None, "error": "worker RIG/TUNE exited with code -9"}]
    assert result.exit_codes == {"RIG/FIXED": 0, "RIG/SOURCE": 0, "RIG/TUNE": -9}
    assert shm.ours(runner.run_tag + "_") == []  # the killed worker's ring was swept
    await eventually(lambda: not [p for p in pids if alive(p)], what="every worker of the killed run exited")
