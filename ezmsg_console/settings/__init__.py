"""Settings as plain data: conversion, schema (from dataclass fields + metadata) and field patching."""

from __future__ import annotations

from .patch import coerce_field, patch_settings
from .schema import (SettingsFieldMetadata, SettingsSchemaMetadata, build_schema, schema_from_plain,
                     schema_to_plain)
from .values import from_plain, to_plain

__all__ = [
    "SettingsFieldMetadata",
    "SettingsSchemaMetadata",
    "build_schema",
    "coerce_field",
    "from_plain",
    "patch_settings",
    "schema_from_plain",
    "schema_to_plain",
    "to_plain",
]
