"""Lazily imported implementations keyed by a vocabulary value (targets, runners ...).

Entries are ``"module:attribute"`` strings, imported on first use, so an optional converter or
runtime is only needed when its key is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import DeployError


class LazyRegistry(Mapping[str, Any]):
    """``key -> object`` where each object is imported from ``"module:attribute"`` when looked up."""

    def __init__(self, what: str, entries: Mapping[str, str]) -> None:
        self.what = what
        self._entries = dict(entries)

    def __getitem__(self, key: str) -> Any:
        if key not in self._entries:
            choices = ", ".join(self._entries)
            raise DeployError(f"unknown {self.what} '{key}'; choose from {choices}")
        module, attribute = self._entries[key].split(":")
        return getattr(importlib.import_module(module), attribute)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
