"""Settings in the worker: reporting changes, and validated edits routed from consoles.

Every ``INPUT_SETTINGS`` message passes the report hook before the unit's
handlers: the new value is sent to the GraphServer (PROCESS_SETTINGS_UPDATE)
and acknowledged. ``UPDATE_SETTING_FIELD`` patches one field of the unit's
current settings: the patched copy is validated against the schema (the
first failure wins; nothing is published on failure), published on the
unit's ``INPUT_SETTINGS`` stream like any settings message, and answered
only once the unit has applied it and the server has the new value.
``UPDATE_SETTINGS`` does the same for a whole settings value.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..protocol import messages as m
from ..protocol.errors import ConsoleError, InvalidRequest, UnknownField
from ..protocol.process import ErrorCode, Operation, RoutedRequest
from ..protocol.settings import ProcessSettingsUpdate, SettingsSnapshotValue
from ..pubsub.host import EndpointHost
from ..pubsub.publisher import Publisher
from ..settings.patch import coerce_field, patch_settings
from ..settings.schema import SettingsSchemaMetadata, build_schema, schema_to_plain
from ..settings.values import from_plain, to_plain
from .process_control import OperationRefused, ProcessControlClient
from .unit import SETTINGS_STREAM, Unit
from .unit_runner import UnitRunner

log = logging.getLogger(__name__)

APPLY_TIMEOUT = 5.0
REPORT_TIMEOUT = 5.0
SETUP_TIMEOUT = 5.0
"""How long a request for a claimed unit waits for that unit to be set up."""


class SettingsOps:
    def __init__(self, control: ProcessControlClient, host: EndpointHost) -> None:
        self.control = control
        self.host = host
        self.runners: dict[str, UnitRunner] = {}
        self.schemas: dict[str, SettingsSchemaMetadata] = {}
        self._set_up: dict[str, asyncio.Future[None]] = {}
        self._publishers: dict[str, Publisher] = {}
        self._waiters: dict[int, asyncio.Future[None]] = {}
        control.set_operation(Operation.UPDATE_SETTING_FIELD.value, self.update_field)
        control.set_operation(Operation.UPDATE_SETTINGS.value, self.replace)

    def expect(self, addresses: list[str]) -> None:
        """These units are about to be claimed: a request for one of them that arrives before
        :meth:`add` has set it up waits for that (the GraphServer routes to a process as soon
        as it claims a unit)."""
        loop = asyncio.get_running_loop()
        for address in addresses:
            self._set_up.setdefault(address, loop.create_future())

    async def add(self, runner: UnitRunner) -> None:
        """Track ``runner``'s unit; units with dynamic settings get a settings publisher."""
        try:
            await self._add(runner)
        finally:
            done = self._set_up.setdefault(runner.address, asyncio.get_running_loop().create_future())
            if not done.done():
                done.set_result(None)

    async def _add(self, runner: UnitRunner) -> None:
        self.runners[runner.address] = runner
        settings_type = type(runner.unit).settings_type()
        if settings_type is not None:
            self.schemas[runner.address] = build_schema(settings_type)
        if type(runner.unit).has_dynamic_settings():
            runner.settings_hook = self.report
            topic = f"{runner.address}/{SETTINGS_STREAM}"
            self._publishers[runner.address] = await self.host.publisher(topic, num_buffers=4)

    def value_of(self, address: str, settings: Any) -> SettingsSnapshotValue:
        plain = to_plain(settings)
        schema = self.schemas.get(address)
        return SettingsSnapshotValue(plain, plain, schema_to_plain(schema) if schema is not None else None)

    async def report(self, unit: Unit, new: Any) -> None:
        """The report hook: tell the GraphServer, then release whoever waits for this value."""
        try:
            await self.control.conn.request(
                lambda rid: ProcessSettingsUpdate(rid, unit.address, self.value_of(unit.address, new), time.time()),
                m.Ack, REPORT_TIMEOUT)
        except ConsoleError as exc:
            log.warning("could not report new settings of %s: %s", unit.address, exc)
        waiter = self._waiters.pop(id(new), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def report_all(self) -> None:
        """Re-report every unit's current settings (after reconnecting to a new server)."""
        for address, runner in self.runners.items():
            if address in self._publishers and runner.unit.settings_value is not None:
                await self.report(runner.unit, runner.unit.settings_value)

    async def _dynamic(self, msg: RoutedRequest) -> tuple[UnitRunner, Publisher]:
        set_up = self._set_up.get(msg.unit_address)
        if set_up is not None and not set_up.done():
            try:
                await asyncio.wait_for(asyncio.shield(set_up), SETUP_TIMEOUT)
            except (TimeoutError, asyncio.TimeoutError):
                pass  # answered below, from what exists
        runner = self.runners.get(msg.unit_address)
        publisher = self._publishers.get(msg.unit_address)
        if runner is None or publisher is None:
            raise OperationRefused(ErrorCode.UNSUPPORTED_OPERATION,
                                   f"{msg.unit_address} has no {SETTINGS_STREAM} stream: its settings cannot "
                                   "change while it runs")
        return runner, publisher

    async def update_field(self, msg: RoutedRequest) -> Any:
        runner, publisher = await self._dynamic(msg)
        payload = msg.payload
        if not isinstance(payload, dict) or not isinstance(payload.get("field_path"), str) \
                or "value" not in payload:
            raise InvalidRequest("UPDATE_SETTING_FIELD needs a payload {'field_path': str, 'value': ...}")
        if not payload["field_path"].strip():
            raise InvalidRequest("the field path is empty", {"field_path": payload["field_path"]})
        new = patch_settings(runner.unit.settings_value, payload["field_path"], payload["value"],
                             self.schemas.get(msg.unit_address))
        await self._apply(publisher, new)
        return to_plain(new)

    async def replace(self, msg: RoutedRequest) -> Any:
        runner, publisher = await self._dynamic(msg)
        payload = msg.payload
        if not isinstance(payload, dict) or not isinstance(payload.get("value"), dict):
            raise InvalidRequest("UPDATE_SETTINGS needs a payload {'value': {field: value, ...}}")
        schema = self.schemas[msg.unit_address]
        current = to_plain(runner.unit.settings_value)
        checked: dict[str, Any] = dict(current)  # a field left out keeps its current value
        for name, value in payload["value"].items():
            field = schema.field(name)
            if field is None:
                raise UnknownField(f"{name}: no such field", {"field_path": name})
            if field.read_only and current.get(name) == value:
                checked[name] = value  # restating a read-only value is not changing it
                continue
            checked[name] = coerce_field(field, value, name)
        new = from_plain(type(runner.unit).settings_type(), checked)
        await self._apply(publisher, new)
        return to_plain(new)

    async def _apply(self, publisher: Publisher, new: Any) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[id(new)] = waiter
        try:
            await publisher.broadcast(new)
            await asyncio.wait_for(waiter, APPLY_TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError):
            raise OperationRefused(ErrorCode.HANDLER_ERROR,
                                   f"the unit did not apply the new settings within {APPLY_TIMEOUT:g} s") from None
        finally:
            self._waiters.pop(id(new), None)
