"""Settings as plain data: conversion (and, with the control-plane issue, schema and patching)."""

from __future__ import annotations

from .values import from_plain, to_plain

__all__ = ["from_plain", "to_plain"]
