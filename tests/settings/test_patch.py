"""Field validation and copy-on-write patching of settings objects."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ezmsg_console.protocol.errors import ConsoleError, InvalidRequest, InvalidValue, UnknownField
from ezmsg_console.settings import build_schema, coerce_field, patch_settings, schema_from_plain, schema_to_plain

from .test_schema import FilterMode, FilterSettings, Window


def make(**changes: Any) -> FilterSettings:
    return FilterSettings(**{"channel": "c0", "broken": [], "routes": {"main": Window()}, **changes})


SCHEMA = build_schema(FilterSettings)


def field(path: str) -> Any:
    found = SCHEMA.field(path)
    assert found is not None
    return found


# --------------------------------------------------------------------------- good edits


def test_nested_patch_changes_only_a_copy() -> None:
    original = make()
    patched = patch_settings(original, "window.length", 128)
    assert patched is not original and patched.window is not original.window
    assert patched.window.length == 128 and patched.window.overlap == 0.5
    assert original.window.length == 64
    assert dataclasses.replace(patched, window=original.window) == original  # nothing else changed


def test_dataclass_inside_a_mapping_is_patched_on_a_copy() -> None:
    original = make()
    patched = patch_settings(original, "routes.main.overlap", 0.25)
    assert patched.routes is not original.routes and patched.routes["main"] is not original.routes["main"]
    assert patched.routes["main"].overlap == 0.25
    assert original.routes["main"].overlap == 0.5
    with pytest.raises(InvalidValue) as info:  # the leaf is still checked against Window's schema
        patch_settings(original, "routes.main.overlap", 1.0)
    assert info.value.details["field_path"] == "routes.main.overlap"


def test_plain_mapping_settings() -> None:
    original = {"gain": 7, "nested": {"a": 1}}
    patched = patch_settings(original, "nested.a", 2)
    assert patched == {"gain": 7, "nested": {"a": 2}}
    assert original == {"gain": 7, "nested": {"a": 1}}


def test_int_is_accepted_for_float() -> None:
    patched = patch_settings(make(), "cutoff_hz", 100)
    assert patched.cutoff_hz == 100.0 and type(patched.cutoff_hz) is float
    assert coerce_field(field("cutoff_hz"), 200, "cutoff_hz") == 200.0


def test_enum_by_value_or_member() -> None:
    assert patch_settings(make(), "mode", "highpass").mode is FilterMode.HIGHPASS
    assert patch_settings(make(), "mode", FilterMode.HIGHPASS).mode is FilterMode.HIGHPASS
    assert coerce_field(field("mode"), FilterMode.HIGHPASS, "mode") == "highpass"


def test_lists_optionals_literals_and_choices() -> None:
    s = make()
    assert patch_settings(s, "taps", [1, 2.5]).taps == [1.0, 2.5]
    assert patch_settings(s, "weights", [3, 4]).weights == (3.0, 4.0)
    assert patch_settings(s, "decimation", 3).decimation == 3
    assert patch_settings(patch_settings(s, "decimation", 3), "decimation", None).decimation is None
    assert patch_settings(s, "shape", "b").shape == "b"
    assert patch_settings(s, "order", 8).order == 8
    assert patch_settings(s, "armed", True).armed is True
    assert patch_settings(s, "gain", 9.999).gain == 9.999


def test_nested_dict_is_a_partial_update() -> None:
    original = make(window=Window(length=32, overlap=0.75))
    patched = patch_settings(original, "window", {"length": 256})
    assert patched.window == Window(length=256, overlap=0.75)
    assert original.window == Window(length=32, overlap=0.75)


def test_explicit_schema_from_the_wire_is_used() -> None:
    wire_schema = schema_from_plain(schema_to_plain(SCHEMA))
    assert patch_settings(make(), "window.overlap", 0, wire_schema).window.overlap == 0.0
    with pytest.raises(InvalidValue):
        patch_settings(make(), "cutoff_hz", 0.25, wire_schema)


# --------------------------------------------------------------------------- bad edits

BAD = [
    # (id, path, value, exception, field_path in details)
    ("str for float", "cutoff_hz", "fast", InvalidValue, "cutoff_hz"),
    ("dict for float", "cutoff_hz", {"a": 1}, InvalidValue, "cutoff_hz"),
    ("bool for float", "cutoff_hz", True, InvalidValue, "cutoff_hz"),
    ("huge int for float", "cutoff_hz", 10 ** 400, InvalidValue, "cutoff_hz"),
    ("bool for int", "order", True, InvalidValue, "order"),
    ("float for int", "order", 4.0, InvalidValue, "order"),
    ("int for bool", "enabled", 1, InvalidValue, "enabled"),
    ("int for str", "channel", 5, InvalidValue, "channel"),
    ("NaN", "cutoff_hz", math.nan, InvalidValue, "cutoff_hz"),
    ("inf", "cutoff_hz", math.inf, InvalidValue, "cutoff_hz"),
    ("-inf", "cutoff_hz", -math.inf, InvalidValue, "cutoff_hz"),
    ("above upper bound", "cutoff_hz", 500.0, InvalidValue, "cutoff_hz"),
    ("below lower bound", "cutoff_hz", 0.1, InvalidValue, "cutoff_hz"),
    ("exclusive lower bound", "gain", 0.0, InvalidValue, "gain"),
    ("exclusive upper bound", "gain", 10, InvalidValue, "gain"),
    ("nested exclusive bound", "window.overlap", 1.0, InvalidValue, "window.overlap"),
    ("nested below bound", "window.length", 0, InvalidValue, "window.length"),
    ("not in choices", "order", 5, InvalidValue, "order"),
    ("enum name is not a value", "mode", "LOWPASS", InvalidValue, "mode"),
    ("Literal not allowed", "shape", "c", InvalidValue, "shape"),
    ("read-only", "label", "x", InvalidValue, "label"),
    ("read-only ancestor", "calib.length", 8, InvalidValue, "calib.length"),
    ("None for non-optional", "cutoff_hz", None, InvalidValue, "cutoff_hz"),
    ("float for Optional[int]", "decimation", 2.5, InvalidValue, "decimation"),
    ("list with a str item", "taps", [1.0, "x"], InvalidValue, "taps[1]"),
    ("list with NaN", "taps", [math.nan], InvalidValue, "taps[0]"),
    ("list with a bool", "weights", [1, True], InvalidValue, "weights[1]"),
    ("str for list", "taps", "1,2", InvalidValue, "taps"),
    ("nested bad value", "window", {"length": "x"}, InvalidValue, "window.length"),
    ("rejected by __post_init__", "window.length", 2, InvalidValue, "window.length"),
    ("nested dict with unknown key", "window", {"length": 8, "bogus": 1}, UnknownField, "window.bogus"),
    ("unknown path", "nope", 1, UnknownField, "nope"),
    ("unknown nested path", "window.nope", 1, UnknownField, "window.nope"),
    ("path below a scalar", "cutoff_hz.x", 1, UnknownField, "cutoff_hz.x"),
    ("missing mapping key", "routes.other.overlap", 0.1, UnknownField, "routes.other.overlap"),
    ("empty path", "", 1, InvalidRequest, ""),
    ("empty segment", "window..length", 1, InvalidRequest, "window..length"),
    ("trailing dot", "window.", 1, InvalidRequest, "window."),
]


@pytest.mark.parametrize(("path", "value", "exc", "detail_path"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_values_raise_typed_errors(path: str, value: Any, exc: type[ConsoleError], detail_path: str) -> None:
    original = make()
    before = repr(original)
    with pytest.raises(ConsoleError) as info:
        patch_settings(original, path, value)
    assert type(info.value) is exc
    assert info.value.details["field_path"] == detail_path
    if exc is InvalidRequest:
        assert repr(path) in str(info.value)
    else:
        assert str(info.value).startswith(f"{detail_path}:")
    if exc is InvalidValue:
        assert {"expected", "got", "reason"} <= set(info.value.details)
    assert repr(original) == before


def test_message_names_path_expectation_and_value() -> None:
    with pytest.raises(InvalidValue) as info:
        patch_settings(make(), "cutoff_hz", 500.0)
    assert str(info.value) == "cutoff_hz: expected a float in [0.5, 200], got 500.0"
    assert info.value.details == {"field_path": "cutoff_hz", "expected": "a float in [0.5, 200]",
                                  "got": "500.0", "reason": "bounds"}
    with pytest.raises(InvalidValue) as info:
        patch_settings(make(), "gain", 10)
    assert "expected a float in (0, 10)" in str(info.value)
    with pytest.raises(InvalidValue) as info:
        patch_settings(make(), "label", "x")
    assert info.value.details["reason"] == "read_only"
    with pytest.raises(InvalidValue) as info:
        patch_settings(make(), "cutoff_hz", math.nan)
    assert info.value.details["reason"] == "not_finite" and "finite" in str(info.value)


def test_non_string_path_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        patch_settings(make(), None, 1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_bounded_float_is_within_bounds_or_invalid(value: float) -> None:
    for path, lower, upper, strict in (("cutoff_hz", 0.5, 200.0, False), ("gain", 0.0, 10.0, True)):
        try:
            result = coerce_field(field(path), value, path)
        except InvalidValue as err:
            assert err.details["field_path"] == path
            continue
        assert type(result) is float and math.isfinite(result)
        assert (lower < result < upper) if strict else (lower <= result <= upper)


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)))
def test_any_value_is_accepted_in_range_or_invalid(value: Any) -> None:
    try:
        result = coerce_field(field("window.length"), value, "window.length")
    except InvalidValue:
        return
    assert type(result) is int and 1 <= result <= 4096
