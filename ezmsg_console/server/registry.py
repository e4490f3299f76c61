"""Who is connected: sessions (with their metadata) and processes.

Pure and synchronous. A session's registered component addresses must not
collide with another live session's; a session may replace its own metadata.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

from ..protocol.errors import AddressCollision, InvalidRequest, NotFound, OwnershipConflict, PermissionDenied
from ..protocol.graph import EdgeRef, GraphMetadata, ProcessInfo, SessionInfo
from ..protocol.messages import Role


@dataclasses.dataclass(slots=True)
class SessionRecord:
    session_id: str
    name: str
    role: Role
    peer_address: str
    connected_since: float
    metadata: GraphMetadata | None = None


@dataclasses.dataclass(slots=True)
class ProcessRecord:
    process_id: str
    connected_since: float
    pid: int | None = None
    host: str | None = None
    units: set[str] = dataclasses.field(default_factory=set)


class Registry:
    """Sessions and processes by id, plus component-address ownership."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.sessions: dict[str, SessionRecord] = {}
        self.processes: dict[str, ProcessRecord] = {}
        self._address_owner: dict[str, str] = {}  # component address -> session id
        self._unit_owner: dict[str, str] = {}  # unit address -> process id

    def add_peer(self, peer_id: str, name: str, role: Role, peer_address: str) -> None:
        now = self._clock()
        if role is Role.PROCESS:
            self.processes[peer_id] = ProcessRecord(peer_id, now)
        else:
            self.sessions[peer_id] = SessionRecord(peer_id, name, role, peer_address, now)

    def remove_peer(self, peer_id: str) -> SessionRecord | ProcessRecord | None:
        self.clear_metadata(peer_id)
        process = self.processes.pop(peer_id, None)
        if process is not None:
            for unit in process.units:
                if self._unit_owner.get(unit) == peer_id:
                    del self._unit_owner[unit]
            return process
        return self.sessions.pop(peer_id, None)

    # -- processes and unit ownership --------------------------------------

    def process(self, process_id: str) -> ProcessRecord:
        record = self.processes.get(process_id)
        if record is None:
            raise PermissionDenied("only a process connection can own units", {"peer_id": process_id})
        return record

    def owner_of(self, unit: str) -> ProcessRecord | None:
        owner = self._unit_owner.get(unit)
        return self.processes.get(owner) if owner is not None else None

    def _conflicts(self, process_id: str, units: set[str]) -> None:
        conflicts = []
        for unit in sorted(units):
            owner = self.owner_of(unit)
            if owner is not None and owner.process_id != process_id:
                conflicts.append({"unit": unit, "process_id": owner.process_id, "pid": owner.pid,
                                  "host": owner.host})
        if conflicts:
            named = ", ".join(f"{c['unit']} (process {c['process_id']}, pid {c['pid']} on {c['host']})"
                              for c in conflicts)
            raise OwnershipConflict(f"unit(s) owned by another process: {named}", {"conflicts": conflicts})

    @staticmethod
    def _check_units(units: tuple[str, ...]) -> set[str]:
        for unit in units:
            if not isinstance(unit, str) or not unit or unit != unit.strip():
                raise InvalidRequest(f"invalid unit address {unit!r}", {"unit": unit})
        return set(units)

    def register_process(self, process_id: str, pid: int, host: str, units: tuple[str, ...]) -> bool:
        """Replace pid, host and the whole unit set; True if the unit set changed.
        Atomic: an OwnershipConflict changes nothing."""
        record = self.process(process_id)
        wanted = self._check_units(units)
        self._conflicts(process_id, wanted)
        record.pid, record.host = pid, host
        return self._set_units(record, wanted)

    def update_ownership(self, process_id: str, added: tuple[str, ...], removed: tuple[str, ...]) -> bool:
        """Add, then remove (a unit in both ends removed); True if the set changed."""
        record = self.process(process_id)
        add, drop = self._check_units(added), self._check_units(removed)
        self._conflicts(process_id, add)
        return self._set_units(record, (record.units | add) - drop)

    def _set_units(self, record: ProcessRecord, units: set[str]) -> bool:
        if units == record.units:
            return False
        for unit in record.units - units:
            if self._unit_owner.get(unit) == record.process_id:
                del self._unit_owner[unit]
        for unit in units:
            self._unit_owner[unit] = record.process_id
        record.units = units
        return True

    def session(self, session_id: str) -> SessionRecord:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise NotFound(f"no session {session_id}", {"session_id": session_id}) from None

    def register_metadata(self, session_id: str, metadata: GraphMetadata) -> None:
        """Replace the session's metadata; AddressCollision (nothing changed) if
        any address belongs to another live session."""
        record = self.session(session_id)
        colliding = sorted(
            comp.address
            for comp in metadata.components
            if self._address_owner.get(comp.address, session_id) != session_id
        )
        if colliding:
            owners = sorted({self._address_owner[a] for a in colliding})
            raise AddressCollision(
                f"component address collision(s): {', '.join(colliding)}",
                {"addresses": colliding, "owner_session_ids": owners},
            )
        self.clear_metadata(session_id)
        record.metadata = metadata
        for comp in metadata.components:
            self._address_owner[comp.address] = session_id

    def clear_metadata(self, session_id: str) -> None:
        record = self.sessions.get(session_id)
        if record is None or record.metadata is None:
            return
        for comp in record.metadata.components:
            if self._address_owner.get(comp.address) == session_id:
                del self._address_owner[comp.address]
        record.metadata = None

    def session_infos(self, edges_of: Callable[[str], tuple[EdgeRef, ...]]) -> tuple[SessionInfo, ...]:
        return tuple(
            SessionInfo(
                session_id=r.session_id,
                name=r.name,
                role=r.role.value,
                peer_address=r.peer_address,
                connected_since=r.connected_since,
                edges=edges_of(r.session_id),
                metadata=r.metadata,
            )
            for r in sorted(self.sessions.values(), key=lambda r: r.session_id)
        )

    def process_infos(self) -> tuple[ProcessInfo, ...]:
        return tuple(
            ProcessInfo(
                process_id=r.process_id,
                pid=r.pid,
                host=r.host,
                units=tuple(sorted(r.units)),
                connected_since=r.connected_since,
            )
            for r in sorted(self.processes.values(), key=lambda r: r.process_id)
        )
