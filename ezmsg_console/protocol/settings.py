"""Settings on the wire: values, per-component state, change events, requests.

Values are plain data (a settings dataclass's field dict), with the schema
that lets a console build editors without importing the user's classes.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .graph import Event
from .messages import Reply, Request


class SettingsEventType(str, enum.Enum):
    INITIAL_SETTINGS = "INITIAL_SETTINGS"
    SETTINGS_UPDATED = "SETTINGS_UPDATED"


@dataclasses.dataclass(frozen=True, slots=True)
class SettingsSnapshotValue:
    """``structured_value``: the field dict; ``repr_value``: what to show (the same,
    or repr text); ``settings_schema``: plain schema data (or None)."""

    structured_value: Any
    repr_value: Any
    settings_schema: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class SettingsState:
    """A component's current settings: the value, who declared it, who last reported
    it, and the seq of the event that set it."""

    component_address: str
    value: SettingsSnapshotValue
    metadata_session_id: str | None
    source_process_id: str | None
    seq: int


@dataclasses.dataclass(frozen=True, slots=True)
class SettingsChangedEvent(Event):
    KIND = "SETTINGS_EVENT"
    event_type: SettingsEventType
    component_address: str
    timestamp: float
    value: SettingsSnapshotValue
    source_session_id: str | None = None
    source_process_id: str | None = None
    server_epoch: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessSettingsUpdate(Request):
    """Process -> server: the owning process reports a unit's current settings."""

    KIND = "PROCESS_SETTINGS_UPDATE"
    component_address: str
    value: SettingsSnapshotValue
    timestamp: float


@dataclasses.dataclass(frozen=True, slots=True)
class SettingsSnapshotRequest(Request):
    KIND = "SETTINGS_SNAPSHOT"


@dataclasses.dataclass(frozen=True, slots=True)
class SettingsSnapshotReply(Reply):
    KIND = "SETTINGS_SNAPSHOT_REPLY"
    states: tuple[SettingsState, ...]
    last_seq: int


@dataclasses.dataclass(frozen=True, slots=True)
class SettingsEventsRequest(Request):
    KIND = "SETTINGS_EVENTS"
    after_seq: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class SettingsEventsReply(Reply):
    """Retained events after ``after_seq``; ``gap_from``..``gap_to`` were no longer retained."""

    KIND = "SETTINGS_EVENTS_REPLY"
    events: tuple[SettingsChangedEvent, ...]
    last_seq: int
    gap_from: int | None = None
    gap_to: int | None = None
