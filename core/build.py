"""Building plugins from names and parameters, with the same validation as YAML.

The registries are always passed in (the CLI and the runner build them once per invocation;
:mod:`musicfw.core.api` caches one set for Python users).  ``registries=None`` loads a fresh
set with :func:`musicfw.core.plugins.load_registries`.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from .config import validate_plugin_section
from .errors import ConfigError
from .plugins import Registries, load_registries
from .registry import normalize_kind


def _registries(registries: Registries | None) -> Registries:
    return registries if registries is not None else load_registries()


def make_config(kind: str, name: str, registries: Registries | None = None, key: str | None = None, **params: Any) -> Any:
    """A plugin's validated ``Config`` instance from keyword parameters.  ``key`` is the config
    path named in errors (default: the kind, e.g. ``sampler``)."""
    registries = _registries(registries)
    kind = normalize_kind(kind)
    key = key or kind.rstrip("s")
    section = validate_plugin_section(OmegaConf.create({"name": name, **params}), kind, registries, key=key)
    plugin_cls = registries[kind].get(name)
    values = OmegaConf.to_container(section, resolve=True)
    assert isinstance(values, dict)
    values.pop("name")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(plugin_cls.Config), values))


def build(
    kind: str,
    name: str,
    *,
    registries: Registries | None = None,
    context: dict[str, Any] | None = None,
    key: str | None = None,
    **params: Any,
) -> Any:
    """Build the plugin ``name`` of ``kind`` with validated parameters.

    ``context`` carries what the plugin needs besides its parameters (a model's tokenizer).
    A ``ValueError`` from ``from_config`` (a value the Config's types allow but the plugin
    refuses) is a :class:`ConfigError` naming the plugin and the key.
    """
    registries = _registries(registries)
    kind = normalize_kind(kind)
    plugin_cls = registries[kind].get(name, where=key)
    config = make_config(kind, name, registries=registries, key=key, **params)
    try:
        built = plugin_cls.from_config(config, **(context or {}))
    except ValueError as exc:
        where = f"{key}: " if key else ""
        raise ConfigError(f"Invalid {kind.rstrip('s')} {name!r} parameters: {where}{str(exc).rstrip('.')}.") from None
    if kind == "models":
        from .model import check_model

        check_model(built, where=f"model {name!r}")
    return built


def section_params(section: Any) -> tuple[str, dict[str, Any]]:
    """``(name, params)`` of a plugin section (a ``{name: ..., params}`` mapping or a bare name)."""
    if isinstance(section, str):
        return section, {}
    params = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section)
    assert isinstance(params, dict)
    if "name" not in params:
        raise ConfigError(f"A plugin section needs a `name`, got {params!r}.")
    return str(params.pop("name")), params


def build_from_section(kind: str, section: Any, registries: Registries | None = None, key: str | None = None, **context: Any) -> Any:
    """Build a plugin from a config section ``{name: ..., params}``."""
    name, params = section_params(section)
    return build(kind, name, registries=registries, context=context, key=key, **params)
