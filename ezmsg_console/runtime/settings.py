"""``Settings``: the frozen dataclass base for unit settings, and ``setting()`` for field metadata.

::

    class FilterSettings(Settings):
        cutoff_hz: float = setting(30.0, ge=0.5, le=200.0, unit="Hz", description="Low-pass corner")
        order: int = setting(4, choices=(2, 4, 6, 8))
        mode: FilterMode = FilterMode.LOWPASS
        label: str = setting("lp", read_only=True)

Subclasses become frozen dataclasses automatically. The metadata keys
(``description``, ``ge``, ``le``, ``gt``, ``lt``, ``choices``, ``unit``,
``read_only``) are what the control plane's settings schema reads.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

if TYPE_CHECKING:  # typing has it from 3.11 on; at run time it only marks the class
    from typing_extensions import dataclass_transform
else:
    _T = TypeVar("_T")

    def dataclass_transform(**kwargs: Any) -> Callable[[_T], _T]:
        return lambda cls: cls

METADATA_KEYS = ("description", "ge", "le", "gt", "lt", "choices", "unit", "read_only")


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
            description: str = "", ge: float | None = None, le: float | None = None, gt: float | None = None,
            lt: float | None = None, choices: Iterable[Any] | None = None, unit: str | None = None,
            read_only: bool = False) -> Any:
    """A settings field with a default and schema metadata (bounds are inclusive for
    ``ge``/``le`` and exclusive for ``gt``/``lt``)."""
    metadata: dict[str, Any] = {}
    if description:
        metadata["description"] = description
    for key, value in (("ge", ge), ("le", le), ("gt", gt), ("lt", lt)):
        if value is not None:
            metadata[key] = value
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if unit:
        metadata["unit"] = unit
    if read_only:
        metadata["read_only"] = True
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass_transform(frozen_default=True, field_specifiers=(setting, dataclasses.field))
class Settings:
    """Base of unit settings: every subclass is a frozen dataclass."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True)(cls)

