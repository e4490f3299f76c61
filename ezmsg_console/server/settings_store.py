"""Settings as the GraphServer's source of truth: state per component, and events.

Pure and synchronous; every mutation returns the events it caused (the
server publishes them on the settings stream, whose history serves
``settings_events(after_seq)``).

- A session registering metadata declares each component's initial value:
  one INITIAL_SETTINGS event per component. A live value reported by a
  process is kept (only the declaring session is recorded).
- The owning process reporting a value: SETTINGS_UPDATED.
- That process going away: the declared initial value is restored with a
  SETTINGS_UPDATED event (no process), or, if no session declares the
  component, its state is removed silently.
- A session going away (or clearing, or re-registering) releases what it
  declared: components with no process value are removed silently.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

from ..protocol.errors import InvalidRequest
from ..protocol.graph import GraphMetadata
from ..protocol.settings import SettingsChangedEvent, SettingsEventType, SettingsSnapshotValue, SettingsState


@dataclasses.dataclass(slots=True)
class _State:
    value: SettingsSnapshotValue
    metadata_session_id: str | None
    source_process_id: str | None
    seq: int


class SettingsStore:
    def __init__(self, epoch: str = "", clock: Callable[[], float] = time.time) -> None:
        self.epoch = epoch
        self.seq = 0
        self._clock = clock
        self._states: dict[str, _State] = {}
        self._initial: dict[str, tuple[str, SettingsSnapshotValue]] = {}  # address -> (session, initial value)

    def _event(self, event_type: SettingsEventType, address: str, value: SettingsSnapshotValue,
               session_id: str | None, process_id: str | None, timestamp: float | None = None) -> SettingsChangedEvent:
        self.seq += 1
        return SettingsChangedEvent(
            seq=self.seq, event_type=event_type, component_address=address,
            timestamp=self._clock() if timestamp is None else timestamp, value=value,
            source_session_id=session_id, source_process_id=process_id, server_epoch=self.epoch,
        )

    # -- queries ---------------------------------------------------------

    def state(self, address: str) -> SettingsState | None:
        st = self._states.get(address)
        if st is None:
            return None
        return SettingsState(address, st.value, st.metadata_session_id, st.source_process_id, st.seq)

    def snapshot(self) -> tuple[SettingsState, ...]:
        return tuple(s for a in sorted(self._states) if (s := self.state(a)) is not None)

    def schema_of(self, address: str) -> object:
        st = self._states.get(address)
        if st is not None and st.value.settings_schema is not None:
            return st.value.settings_schema
        initial = self._initial.get(address)
        return initial[1].settings_schema if initial else None

    # -- sessions --------------------------------------------------------

    def register_metadata(self, session_id: str, metadata: GraphMetadata) -> list[SettingsChangedEvent]:
        self.release_session(session_id)
        events = []
        for comp in metadata.components:
            value = SettingsSnapshotValue(comp.initial_settings, comp.initial_settings, comp.settings_schema)
            self._initial[comp.address] = (session_id, value)
            event = self._event(SettingsEventType.INITIAL_SETTINGS, comp.address, value, session_id, None)
            state = self._states.get(comp.address)
            if state is not None and state.source_process_id is not None:
                state.metadata_session_id = session_id  # a live process value wins
                if state.value.settings_schema is None and value.settings_schema is not None:
                    state.value = dataclasses.replace(state.value, settings_schema=value.settings_schema)
            else:
                self._states[comp.address] = _State(value, session_id, None, event.seq)
            events.append(event)
        return events

    def release_session(self, session_id: str) -> None:
        for address in [a for a, (s, _) in self._initial.items() if s == session_id]:
            del self._initial[address]
            state = self._states.get(address)
            if state is None or state.metadata_session_id != session_id:
                continue
            if state.source_process_id is None:
                del self._states[address]
            else:
                state.metadata_session_id = None

    # -- processes -------------------------------------------------------

    def process_update(self, process_id: str, owned: set[str], address: str, value: SettingsSnapshotValue,
                       timestamp: float) -> SettingsChangedEvent:
        if address not in owned:
            raise InvalidRequest(f"process {process_id} does not own {address!r}, so it cannot report its settings",
                                 {"component_address": address, "process_id": process_id})
        state = self._states.get(address)
        session_id = self._initial[address][0] if address in self._initial else (
            state.metadata_session_id if state else None)
        if value.settings_schema is None:
            value = dataclasses.replace(value, settings_schema=self.schema_of(address))
        event = self._event(SettingsEventType.SETTINGS_UPDATED, address, value, session_id, process_id, timestamp)
        if state is None:
            self._states[address] = _State(value, session_id, process_id, event.seq)
        else:
            state.value, state.source_process_id, state.seq = value, process_id, event.seq
            state.metadata_session_id = session_id
        return event

    def process_gone(self, process_id: str) -> list[SettingsChangedEvent]:
        events = []
        for address in sorted(a for a, s in self._states.items() if s.source_process_id == process_id):
            initial = self._initial.get(address)
            if initial is None:
                del self._states[address]
                continue
            session_id, value = initial
            event = self._event(SettingsEventType.SETTINGS_UPDATED, address, value, session_id, None)
            self._states[address] = _State(value, session_id, None, event.seq)
            events.append(event)
        return events
