"""Settings schema: field metadata from a realistic settings class, widget rule order, plain round trip."""

from __future__ import annotations

import dataclasses
import enum
from typing import Literal, Optional

import pytest

from ezmsg_console.protocol.codec import packb, unpackb
from ezmsg_console.protocol.errors import InvalidRequest
from ezmsg_console.runtime.settings import Settings, setting
from ezmsg_console.settings import (SettingsFieldMetadata, SettingsSchemaMetadata, build_schema,
                                    schema_from_plain, schema_to_plain)

MOD = __name__


class FilterMode(enum.Enum):
    LOWPASS = "lowpass"
    HIGHPASS = "highpass"


class Window(Settings):
    length: int = setting(64, ge=1, le=4096, description="Samples per window")
    overlap: float = setting(0.5, ge=0.0, lt=1.0)


def _raising_factory() -> list[int]:
    raise RuntimeError("no default today")


class FilterSettings(Settings):
    channel: str
    cutoff_hz: float = setting(30.0, ge=0.5, le=200.0, unit="Hz", description="Low-pass corner")
    order: int = setting(4, choices=(2, 4, 6, 8))
    mode: FilterMode = FilterMode.LOWPASS
    enabled: bool = True
    label: str = setting("lp", read_only=True)
    decimation: Optional[int] = None
    limit: int | None = setting(None, ge=0)
    taps: list[float] = setting(default_factory=lambda: [1.0, 0.5])
    weights: tuple[float, ...] = (1.0, 2.0)
    shape: Literal["a", "b"] = "a"
    window: Window = setting(default_factory=Window)
    calib: Window = setting(default_factory=Window, read_only=True)
    gain: float = setting(1.0, gt=0.0, lt=10.0)
    armed: bool = setting(False, choices=(False, True))
    broken: list[int] = setting(default_factory=_raising_factory)
    routes: dict[str, Window] = setting(default_factory=dict)

    def __post_init__(self) -> None:
        if self.window.length < self.order:
            raise ValueError("window shorter than the filter order")


def _f(schema: SettingsSchemaMetadata, path: str) -> SettingsFieldMetadata:
    field = schema.field(path)
    assert field is not None, path
    return field


@pytest.fixture(scope="module")
def schema() -> SettingsSchemaMetadata:
    return build_schema(FilterSettings)


def test_top_level(schema: SettingsSchemaMetadata) -> None:
    assert schema.provider == "dataclass"
    assert schema.settings_type == f"{MOD}.FilterSettings"
    assert [f.name for f in schema.fields] == [f.name for f in dataclasses.fields(FilterSettings)]
    # an instance gives the same schema as the class (the raising factory needs a value here)
    assert build_schema(FilterSettings(channel="c0", broken=[])) == schema


def test_required_str(schema: SettingsSchemaMetadata) -> None:
    assert _f(schema, "channel") == SettingsFieldMetadata(
        name="channel", field_type="builtins.str", kind="str", required=True, default=None,
        widget_hint="text_input")


def test_bounded_float_with_unit(schema: SettingsSchemaMetadata) -> None:
    assert _f(schema, "cutoff_hz") == SettingsFieldMetadata(
        name="cutoff_hz", field_type="builtins.float", kind="float", required=False, default=30.0,
        description="Low-pass corner", bounds=(0.5, 200.0), bounds_inclusive=(True, True), unit="Hz",
        widget_hint="slider")


def test_int_with_choices(schema: SettingsSchemaMetadata) -> None:
    f = _f(schema, "order")
    assert (f.field_type, f.kind, f.default, f.choices, f.widget_hint) == ("builtins.int", "int", 4, (2, 4, 6, 8),
                                                                          "select")
    assert f.bounds is None and not f.optional and not f.read_only


def test_enum(schema: SettingsSchemaMetadata) -> None:
    f = _f(schema, "mode")
    assert f.field_type == f"{MOD}.FilterMode"
    assert (f.kind, f.default, f.choices, f.widget_hint) == ("enum", "lowpass", ("lowpass", "highpass"), "select")


def test_bool_and_read_only_str(schema: SettingsSchemaMetadata) -> None:
    enabled = _f(schema, "enabled")
    assert (enabled.field_type, enabled.kind, enabled.default, enabled.widget_hint) == (
        "builtins.bool", "bool", True, "checkbox")
    label = _f(schema, "label")
    assert (label.kind, label.default, label.read_only, label.widget_hint) == ("str", "lp", True, "text_input")
    assert not enabled.read_only


def test_optionals(schema: SettingsSchemaMetadata) -> None:
    dec = _f(schema, "decimation")
    assert (dec.field_type, dec.kind, dec.optional, dec.default, dec.required, dec.widget_hint) == (
        "typing.Optional[int]", "int", True, None, False, "int_input")
    limit = _f(schema, "limit")
    assert (limit.field_type, limit.kind, limit.optional, limit.bounds, limit.widget_hint) == (
        "int | None", "int", True, (0.0, None), "slider")


def test_lists_and_default_factories(schema: SettingsSchemaMetadata) -> None:
    taps = _f(schema, "taps")
    assert (taps.field_type, taps.kind, taps.item_kind, taps.default, taps.widget_hint) == (
        "list[float]", "list", "float", [1.0, 0.5], "list")
    weights = _f(schema, "weights")
    assert (weights.field_type, weights.kind, weights.item_kind, weights.default) == (
        "tuple[float, ...]", "list", "float", [1.0, 2.0])
    broken = _f(schema, "broken")
    assert (broken.kind, broken.item_kind, broken.default, broken.required) == ("list", "int", "<factory>", False)


def test_literal(schema: SettingsSchemaMetadata) -> None:
    f = _f(schema, "shape")
    assert (f.field_type, f.kind, f.choices, f.default, f.widget_hint) == (
        "typing.Literal['a', 'b']", "choices", ("a", "b"), "a", "select")


def test_nested_settings(schema: SettingsSchemaMetadata) -> None:
    window = _f(schema, "window")
    assert (window.field_type, window.kind, window.widget_hint, window.default) == (
        f"{MOD}.Window", "nested", None, {"length": 64, "overlap": 0.5})
    assert [f.name for f in window.fields] == ["length", "overlap"]
    assert _f(schema, "window.length") == SettingsFieldMetadata(
        name="length", field_type="builtins.int", kind="int", required=False, default=64,
        description="Samples per window", bounds=(1.0, 4096.0), widget_hint="slider")
    overlap = _f(schema, "window.overlap")
    assert (overlap.bounds, overlap.bounds_inclusive, overlap.widget_hint) == ((0.0, 1.0), (True, False), "slider")
    assert _f(schema, "calib").read_only
    assert schema.field("window.nope") is None and schema.field("nope") is None
    assert schema.field("cutoff_hz.x") is None


def test_exclusive_bounds_and_bool_choices(schema: SettingsSchemaMetadata) -> None:
    gain = _f(schema, "gain")
    assert (gain.bounds, gain.bounds_inclusive, gain.widget_hint) == ((0.0, 10.0), (False, False), "slider")
    armed = _f(schema, "armed")  # choices come before "bool" in the rule order
    assert (armed.kind, armed.choices, armed.widget_hint) == ("bool", (False, True), "select")


def test_mapping_field_follows_substring_rules(schema: SettingsSchemaMetadata) -> None:
    routes = _f(schema, "routes")
    assert routes.field_type == f"dict[str, {MOD}.Window]"
    assert (routes.kind, routes.default, routes.fields) == ("any", {}, ())
    assert routes.widget_hint == "text_input"  # reference rule: "str" is a substring of the type text


class _Color(enum.Enum):
    RED = 1


class _Inner(Settings):
    x: int = 0


def _one(annotation: object, **meta: object) -> SettingsFieldMetadata:
    cls = dataclasses.make_dataclass("One", [("v", annotation, dataclasses.field(default=None, metadata=meta))])
    return build_schema(cls).fields[0]


@pytest.mark.parametrize(("annotation", "meta", "hint"), [
    (bool, {"choices": (True, False)}, "select"),
    (bool, {}, "checkbox"),
    (Optional[bool], {}, "checkbox"),
    (bool, {"ge": 0, "le": 1}, "checkbox"),   # "bool" comes before bounds
    (int, {"ge": 0, "le": 9}, "slider"),
    (float, {"gt": 0.0}, "slider"),
    (int, {"min": 0, "max": 5}, "slider"),
    (int, {}, "int_input"),
    (Optional[int], {}, "int_input"),
    (float, {}, "float_input"),
    (str, {}, "text_input"),
    (str, {"ge": 1}, "text_input"),           # bounds need "int" or "float"
    (str, {"choices": ("x", "y")}, "select"),
    (_Color, {}, "select"),
    (Literal[1, 2], {}, "select"),
    (list[int], {}, "list"),
    (list[str], {}, "list"),
    (_Inner, {}, None),
    (bytes, {}, None),
])
def test_widget_hint_rule_order(annotation: object, meta: dict[str, object], hint: str | None) -> None:
    assert _one(annotation, **meta).widget_hint == hint


def test_bounds_from_min_max_and_the_stricter_limit() -> None:
    f = _one(int, min=0, max=5)
    assert (f.field_type, f.bounds, f.bounds_inclusive) == ("builtins.int", (0.0, 5.0), (True, True))
    f = _one(float, ge=0.0, gt=1.0, le=5.0, lt=9.0)
    assert (f.bounds, f.bounds_inclusive) == ((1.0, 5.0), (False, True))
    f = _one(float, ge=0.0, gt=0.0)
    assert (f.bounds, f.bounds_inclusive) == ((0.0, None), (False, True))


def test_sanitized_defaults() -> None:
    @dataclasses.dataclass(frozen=True)
    class Defaults:
        e: _Color = _Color.RED
        m: dict = dataclasses.field(default_factory=lambda: {1: (1, 2), "k": {3}})
        d: _Inner = dataclasses.field(default_factory=_Inner)
        b: bytes = b"x"
        o: object = dataclasses.field(default_factory=object)

    defaults = {f.name: f.default for f in build_schema(Defaults).fields}
    assert defaults["e"] == 1 and defaults["m"] == {"1": [1, 2], "k": [3]}
    assert defaults["d"] == {"x": 0} and defaults["b"] == "b'x'"
    assert isinstance(defaults["o"], str) and defaults["o"].startswith("<object object")


def test_build_schema_refuses_non_dataclasses() -> None:
    with pytest.raises(TypeError):
        build_schema({"gain": 7})


def test_round_trip_through_plain_and_msgpack(schema: SettingsSchemaMetadata) -> None:
    plain = schema_to_plain(schema)
    assert schema_from_plain(plain) == schema
    wire = unpackb(packb(plain))
    assert wire == plain
    assert schema_from_plain(wire) == schema
    assert wire["fields"][1]["bounds"] == [0.5, 200.0]


@pytest.mark.parametrize("bad", [
    None,
    [],
    {"provider": "dataclass"},
    {"provider": "dataclass", "settings_type": "m.X", "fields": {}},
    {"provider": "dataclass", "settings_type": "m.X", "fields": [{"name": "x"}]},
    {"provider": "dataclass", "settings_type": "m.X",
     "fields": [{"name": "x", "field_type": "int", "kind": "weird", "required": False}]},
    {"provider": "dataclass", "settings_type": "m.X",
     "fields": [{"name": "x", "field_type": "int", "kind": "int", "required": False, "bounds": [1]}]},
])
def test_schema_from_plain_rejects_malformed_data(bad: object) -> None:
    with pytest.raises(InvalidRequest):
        schema_from_plain(bad)
