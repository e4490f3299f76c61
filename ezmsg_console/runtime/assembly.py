"""Turn a tree of components into what a run needs: addresses, metadata,
edges, and the units of each worker process (as plain data, never pickled)."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Iterable, Mapping

from ..protocol.errors import ConfigurationError
from ..protocol.graph import ComponentMetadata, ComponentType, GraphMetadata, StreamDirection, StreamMetadata
from ..settings.schema import build_schema, schema_to_plain
from ..settings.schema import type_name as class_name
from ..settings.values import to_plain
from .unit import BoundStream, Collection, Component, InputStream, Unit


@dataclasses.dataclass(frozen=True)
class UnitSpec:
    """How a worker recreates one unit: import path of its class and its settings as plain data."""

    address: str
    class_path: str
    settings: Any = None


@dataclasses.dataclass(frozen=True)
class Assembly:
    metadata: GraphMetadata
    edges: tuple[tuple[str, str], ...]
    groups: tuple[tuple[str, tuple[UnitSpec, ...]], ...]  # (group name, its units)
    main_script: str | None


def type_name(tp: Any) -> str:
    """A readable, stable name for a type or annotation."""
    return class_name(tp) if isinstance(tp, type) else str(tp)


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _topic(ref: Any, where: str) -> str:
    if isinstance(ref, BoundStream):
        return ref.topic
    if isinstance(ref, str) and ref:
        return ref
    raise ConfigurationError(f"{where}: network() entries must be streams or topic strings, got {ref!r}")


def _metadata(comp: Component, name: str) -> ComponentMetadata:
    streams = tuple(
        StreamMetadata(
            name=sname,
            direction=StreamDirection.INPUT if isinstance(stream, InputStream) else StreamDirection.OUTPUT,
            topic=f"{comp.address}/{sname}",
            msg_type=type_name(stream.msg_type),
            options=stream.options(),
        )
        for sname, stream in sorted(type(comp).streams().items())
    )
    settings_type = type(comp).settings_type()
    value = comp.settings_value
    children = tuple(sorted(comp.components())) if isinstance(comp, Collection) else ()
    return ComponentMetadata(
        address=comp.address,
        name=name,
        component_type=ComponentType.UNIT if isinstance(comp, Unit) else ComponentType.COLLECTION,
        python_type=type_name(type(comp)),
        children=children,
        streams=streams,
        settings_type=type_name(settings_type) if settings_type is not None else None,
        initial_settings=to_plain(value) if value is not None else None,
        settings_schema=schema_to_plain(build_schema(settings_type)) if settings_type is not None else None,
        dynamic_settings=isinstance(comp, Unit) and type(comp).has_dynamic_settings(),
    )


def _check_importable(cls: type, address: str) -> None:
    """A worker process imports a unit's class (and so its settings class) by module and name:
    a class defined inside a function has no such name."""
    settings_type = cls.settings_type()  # type: ignore[attr-defined]
    for what, klass in (("unit", cls), ("settings", settings_type)):
        if klass is not None and "<locals>" in klass.__qualname__:
            raise ConfigurationError(
                f"{address}: the {what} class {klass.__qualname__} is defined inside a function; worker "
                "processes import units and their settings by name, so define them at module level")


def assemble(components: Mapping[str, Component], *, connections: Iterable[tuple[Any, Any]] = (),
             single_process: bool = False) -> Assembly:
    """Address every component (``ROOT/CHILD/...``), read the network and process groups.

    ``connections``: more ``(from, to)`` edges (streams or topic strings), as ezmsg's
    ``run(connections=...)``; ``single_process``: every unit in one worker process."""
    if not components:
        raise ConfigurationError("run() needs at least one component")
    metas: list[ComponentMetadata] = []
    edges: list[tuple[str, str]] = []
    groups: dict[str, list[Unit]] = {}
    needs_main = False

    def visit(comp: Component, name: str, address: str, group: str) -> None:
        nonlocal needs_main
        if not isinstance(comp, (Unit, Collection)):
            raise ConfigurationError(f"{address}: {type(comp).__name__} is neither a Unit nor a Collection")
        if comp.address:
            raise ConfigurationError(f"{address}: the same component instance appears twice (also at {comp.address})")
        comp.address = address
        if type(comp).__module__ == "__main__":
            needs_main = True
        if isinstance(comp, Unit):
            _check_importable(type(comp), address)
            if type(comp).settings_type() is not None and comp.settings_value is None:
                raise ConfigurationError(f"{address}: {type(comp).__name__} has no settings; apply_settings() "
                                         "in the parent's configure() or pass them to the constructor")
            groups.setdefault(group, []).append(comp)
            metas.append(_metadata(comp, name))
            return
        assert isinstance(comp, Collection)
        comp.configure()
        separate = {id(c) for c in comp.process_components()}
        for child_name, child in sorted(comp.components().items()):
            child_address = f"{address}/{child_name}"
            visit(child, child_name, child_address, child_address if id(child) in separate else group)
        metas.append(_metadata(comp, name))
        for pair in comp.network():
            try:
                src, dst = pair
            except (TypeError, ValueError):
                raise ConfigurationError(f"{address}: network() must yield (from, to) pairs") from None
            edges.append((_topic(src, address), _topic(dst, address)))

    for root_name, comp in components.items():
        if "/" in root_name or not root_name:
            raise ConfigurationError(f"invalid component name {root_name!r}")
        visit(comp, root_name, root_name, root_name)
    for pair in connections:
        try:
            src, dst = pair
        except (TypeError, ValueError):
            raise ConfigurationError("connections must be (from, to) pairs") from None
        edges.append((_topic(src, "connections"), _topic(dst, "connections")))
    if single_process and groups:
        first = sorted(groups)[0]
        groups = {first: [unit for group in sorted(groups) for unit in groups[group]]}

    specs = tuple(
        (group, tuple(UnitSpec(u.address, class_path(type(u)), to_plain(u.settings_value)) for u in units))
        for group, units in sorted(groups.items())
    )
    main_file = getattr(sys.modules.get("__main__"), "__file__", None) if needs_main else None
    if needs_main and not main_file:
        raise ConfigurationError("units defined in an interactive __main__ cannot run in worker processes; "
                                 "define them in a module or a script file")
    return Assembly(
        metadata=GraphMetadata(tuple(sorted(metas, key=lambda c: c.address))),
        edges=tuple(dict.fromkeys(edges)),
        groups=specs,
        main_script=os.path.abspath(main_file) if main_file else None,
    )
