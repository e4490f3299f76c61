"""``State``: a unit's mutable per-instance state, as ezmsg's ``ez.State``.

::

    class CounterState(State):
        count: int = 0
        last: float          # no default: unset until the unit assigns it

    class Counter(Unit):
        STATE = CounterState

Every subclass is a (mutable) dataclass. Each unit instance gets its own ``self.STATE`` when it
is created: fields with a default (or ``default_factory``) start with it, the others are unset
until the unit assigns them (typically in ``initialize``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

S = TypeVar("S", bound="State")


class State:
    """Base of unit state classes: every subclass is a mutable dataclass."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls)

    @classmethod
    def fresh(cls: type[S]) -> S:
        """A new state: defaults applied, fields without one left unset."""
        state = cls.__new__(cls)
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]  # every subclass is a dataclass
            if field.default is not dataclasses.MISSING:
                setattr(state, field.name, field.default)
            elif field.default_factory is not dataclasses.MISSING:
                setattr(state, field.name, field.default_factory())
        return state


def new_state(state_type: type) -> Any:
    """A fresh instance of a unit's STATE class (a :class:`State` or any class that takes no arguments)."""
    if isinstance(state_type, type) and issubclass(state_type, State):
        return state_type.fresh()
    return state_type()
