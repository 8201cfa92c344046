"""Packages that are also API functions: ``edgesam_deploy.parity`` and ``edgesam_deploy.bench``.

The package ``edgesam_deploy.parity`` and the API function ``edgesam_deploy.parity(...)`` share a
name, and importing a subpackage sets the parent's attribute to it. So these packages are made
callable: calling one calls the API function of the same name; its modules stay as they are.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _ApiPackage(types.ModuleType):
    """A package module that, called, runs ``edgesam_deploy.api.<its last name>``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from . import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Make the (already imported) package ``module_name`` call the API function of its name."""
    sys.modules[module_name].__class__ = _ApiPackage
