"""Load ``"package.module:attribute"`` references, as uvicorn and gunicorn take them."""

from __future__ import annotations

import importlib
from typing import Any

from narun.errors import ConfigError

__all__ = ["import_from_string"]


def import_from_string(ref: str) -> Any:
    """Import ``module`` and return ``attribute`` (dotted attributes allowed)."""
    module_name, sep, attrs = ref.partition(":")
    if not sep or not module_name or not attrs:
        raise ConfigError(f"{ref!r}: expected the form 'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(f"{ref!r}: module {module_name!r} not found") from None
        raise
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise ConfigError(f"{ref!r}: {module_name!r} has no attribute {attrs!r}") from None
    return obj
