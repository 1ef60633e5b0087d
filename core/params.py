"""Plugin parameters: validation of a plugin's section against its ``Config`` dataclass.

A plugin section is ``{name: <plugin>, <param>: <value>, ...}``; it is merged into that plugin's
own ``Config`` (plus ``name``) so omegaconf's errors keep full key paths, and every mistake becomes
a :class:`~musicfw.core.errors.ConfigError` naming the file, the line (where it can be found), the
full key path and what is allowed.  Dataclass fields may carry ``metadata={"choices": (...)}``;
values outside are rejected with the allowed list.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from musicfw.core.errors import ConfigError

def choice(default: Any, choices: tuple, help: str = "") -> Any:
    """A dataclass field whose value must be one of ``choices``."""
    return field(default=default, metadata={"choices": tuple(choices), "help": help})


@dataclass
class _Source:
    """Where a config came from, to point errors at the right place."""

    path: Path | None
    text: str | None
    overrides: list[str]

    def locate(self, full_key: str) -> str:
        for item in self.overrides:
            if item.split("=", 1)[0].strip() == full_key:
                return f"in the command-line override {item!r}"
        if self.path is None:
            return ""
        line = _line_of_key(self.text or "", full_key)
        return f"in {self.path}" + (f", line {line}" if line else "")


def _line_of_key(text: str, full_key: str) -> int | None:
    """1-based line of ``a.b[0].c`` in a YAML text, if it can be found."""
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    parts = [p for p in full_key.replace("[", ".").replace("]", "").split(".") if p]
    line = None
    for part in parts:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    line, node = key_node.start_mark.line + 1, value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _schema_error(exc: OmegaConfBaseException, source: _Source, prefix: str = "") -> ConfigError:
    key = getattr(exc, "full_key", "") or ""
    if prefix:
        key = f"{prefix}.{key}" if key else prefix
    msg = getattr(exc, "msg", None) or str(exc)
    msg = msg.split("\n")[0].strip()
    # omegaconf names our generated dataclasses; keep the user-facing part of the message
    allowed = ""
    obj_type = getattr(exc, "object_type", None)
    if "not in" in msg and obj_type is not None and dataclasses.is_dataclass(obj_type):
        names = [f.name for f in dataclasses.fields(obj_type)]
        allowed = f" Allowed keys: {', '.join(names)}."
        msg = "unknown " + msg.split(" not in ")[0].lower() + "."
    return ConfigError(f"Invalid config{_at(source, key)}: {key}: {msg}{allowed}")


def _at(source: _Source, key: str) -> str:
    where = source.locate(key)
    return f" {where}" if where else ""


def _check_choices(cfg: Any, schema: type, source: _Source, prefix: str) -> None:
    import typing

    try:
        hints = typing.get_type_hints(schema)
    except Exception:  # unresolvable annotations in a third-party Config: no nested check
        hints = {}
    for f in dataclasses.fields(schema):
        value = getattr(cfg, f.name, None)
        path = f"{prefix}.{f.name}" if prefix else f.name
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(
                f"Invalid config{_at(source, path)}: {path}: {value!r} is not allowed. "
                f"Allowed values: {', '.join(map(str, choices))}."
            )
        field_type = hints.get(f.name, f.type)
        if dataclasses.is_dataclass(field_type) and isinstance(value, DictConfig):
            _check_choices(value, field_type, source, path)


def section_class(plugin_cls: type) -> type:
    """The dataclass of a plugin section: the plugin's Config plus its ``name``."""
    config = plugin_cls.Config
    return dataclasses.make_dataclass(
        f"{plugin_cls.__name__}Section",
        [("name", str, field(default=plugin_cls.name))],
        bases=(config,),
    )


def validate_plugin_section(
    raw: Any, kind: str, registries: Any, key: str, source: _Source | None = None
) -> DictConfig:
    """Validate ``{name: ..., params}`` against that plugin's Config; returns the section."""
    source = source or _Source(None, None, [])
    if isinstance(raw, str):
        raw = OmegaConf.create({"name": raw})
    if not isinstance(raw, DictConfig) or "name" not in raw:
        raise ConfigError(
            f"Invalid config{_at(source, key)}: {key} must be a section with a `name` "
            f"(one of: {', '.join(registries[kind].names()) or '(none installed)'})."
        )
    name = raw["name"]
    registry = registries[kind]
    if name not in registry:
        from musicfw.core.errors import PluginError

        raise PluginError(registry.unknown_message(name, where=f"{key}.name" + (f", {source.locate(key + '.name')[3:]}" if source.path or source.overrides else "")))
    plugin_cls = registry.get(name)
    sec_cls = section_class(plugin_cls)
    try:
        section = OmegaConf.merge(OmegaConf.structured(sec_cls), raw)
    except OmegaConfBaseException as exc:
        raise _schema_error(exc, source, key) from None
    _check_choices(section, sec_cls, source, key)
    return section
