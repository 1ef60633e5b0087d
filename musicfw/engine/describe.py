"""Readable one-line descriptions of plugin objects for progress lines and logs:
``temperature(temperature=0.9) -> top_p(p=0.95)`` instead of their Python reprs
(``Temperature(Temperature.Config(temperature=0.9))``)."""

from __future__ import annotations

import dataclasses
from typing import Any


def describe(obj: Any) -> str:
    """``name(param=value, ...)`` of a plugin object (its registry name and Config fields);
    a sampler chain as its samplers joined by ``->``."""
    chain = getattr(obj, "samplers", None)
    if isinstance(chain, (list, tuple)):
        return " -> ".join(describe(s) for s in chain)
    name = getattr(obj, "name", None) or type(obj).__name__
    config = getattr(obj, "config", None)
    if config is not None and dataclasses.is_dataclass(config):
        params = ", ".join(f"{f.name}={getattr(config, f.name)!r}" for f in dataclasses.fields(config))
        return f"{name}({params})"
    return str(name)
