"""Building plugins from names and parameters, with the same validation as YAML.

The registries are always passed in (the CLI and the runner build them once per invocation;
:mod:`musicfw.api` caches one set for Python users).  ``registries=None`` loads a fresh
set with :func:`musicfw.core.plugins.load_registries`.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from musicfw.core.params import Source, validate_plugin_section
from musicfw.core.errors import ConfigError
from musicfw.core.plugins import Registries, load_registries
from musicfw.core.registry import normalize_kind


def _registries(registries: Registries | None) -> Registries:
    return registries if registries is not None else load_registries()


def make_config(kind: str, name: str, registries: Registries | None = None, key: str | None = None, **params: Any) -> Any:
    """A plugin's validated ``Config`` instance from keyword parameters.  ``key`` is the config
    path named in errors (default: the kind, e.g. ``sampler``)."""
    registries = _registries(registries)
    kind = normalize_kind(kind)
    key = key or kind.rstrip("s")
    for param, value in params.items():
        if not _is_config_value(value):
            raise ConfigError(
                f"Invalid config: {key}.{param}: a {type(value).__name__} is not a config value "
                "(numbers, strings, booleans, None, and lists and mappings of them)."
            )
    source = Source(label=f"{kind.rstrip('s')} {name!r}")
    section = validate_plugin_section(OmegaConf.create({"name": name, **params}), kind, registries, key=key, source=source)
    plugin_cls = registries[kind].get(name)
    values = OmegaConf.to_container(section, resolve=True)
    assert isinstance(values, dict)
    values.pop("name")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(plugin_cls.Config), values))


def _is_config_value(value: Any) -> bool:
    """Whether omegaconf can hold ``value`` (a number, string, list of them, ...)."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.create({"value": value})
    except (OmegaConfBaseException, ValueError, TypeError):
        return False
    return True


def split_context(plugin_cls: type, params: dict[str, Any], context: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(params, context)``: a keyword that is not a field of the plugin's ``Config`` and
    holds an object omegaconf cannot (a model's ``tokenizer=``) is context for
    ``from_config``, never a config value; everything else is validated as a parameter."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(plugin_cls.Config)}
    context = dict(context or {})
    kept = {}
    for param, value in params.items():
        if param not in fields and not _is_config_value(value):
            context[param] = value
        else:
            kept[param] = value
    return kept, context


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

    ``context`` carries what the plugin needs besides its parameters (a model's tokenizer);
    a keyword argument that is no ``Config`` field and no config value (``tokenizer=tok``)
    joins it.  A ``ValueError`` from ``from_config`` (a value the Config's types allow but
    the plugin refuses) is a :class:`ConfigError` naming the plugin and the key.
    """
    registries = _registries(registries)
    kind = normalize_kind(kind)
    plugin_cls = registries[kind].get(name, where=key)
    params, context = split_context(plugin_cls, params, context)
    config = make_config(kind, name, registries=registries, key=key, **params)
    return _construct(kind, name, plugin_cls, config, context, key)


def _construct(kind: str, name: str, plugin_cls: type, config: Any, context: dict[str, Any] | None, key: str | None) -> Any:
    try:
        built = plugin_cls.from_config(config, **(context or {}))
    except (ValueError, ConfigError) as exc:
        message = str(exc).rstrip(".")
        if key:
            raise ConfigError(f"Invalid config: {key}: {message}.") from None
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"Invalid {kind.rstrip('s')} {name!r} parameters: {message}.") from None
    if kind == "models":
        from musicfw.core.model import check_model

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


def _validated_config(plugin_cls: type, section: Any) -> Any:
    """The plugin's Config from a section that :func:`musicfw.engine.config.load_config` already
    validated (its node type is the plugin's section class), or None for a raw section."""
    import dataclasses

    if not isinstance(section, DictConfig):
        return None
    typ = OmegaConf.get_type(section)
    config_cls = plugin_cls.Config
    if not (isinstance(typ, type) and typ is not config_cls and issubclass(typ, config_cls)):
        return None
    obj = OmegaConf.to_object(section)
    return config_cls(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(config_cls) if f.init})


def build_from_section(kind: str, section: Any, registries: Registries | None = None, key: str | None = None, **context: Any) -> Any:
    """Build a plugin from a config section ``{name: ..., params}``.  A section of a config
    validated by ``load_config`` is not validated a second time."""
    registries = _registries(registries)
    kind = normalize_kind(kind)
    name, params = section_params(section)
    plugin_cls = registries[kind].get(name, where=key)
    config = _validated_config(plugin_cls, section)
    if config is None:
        return build(kind, name, registries=registries, context=context, key=key, **params)
    return _construct(kind, name, plugin_cls, config, context, key)
