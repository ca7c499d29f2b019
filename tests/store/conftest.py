"""The store tests reuse the runtime tests' small fleet and settings."""

from __future__ import annotations

from tests.runtime.conftest import registry, settings

__all__ = ["registry", "settings"]
