"""Plugin parameters: declaring and checking the values a ``Config`` dataclass field allows.

A ``Config`` field says what it allows next to its type and default, in its metadata:

* ``choices``: the allowed values (:func:`choice`);
* ``ge`` / ``gt`` / ``le`` / ``lt``: numeric bounds (:func:`bounded`); a bounded float must also
  be finite;
* on a list field, choices and bounds apply to every item, and ``min_items`` sets its length.

Both are checked in one place, :func:`check_values` -- for an experiment YAML, its command-line
overrides and the Python API (``musicfw.build``, ``make_config``) alike -- and a value outside is a
:class:`~musicfw.core.errors.ConfigError` naming the file, the line (where it can be found), the
full key path and what is allowed.  ``musicfw plugins`` lists the same declarations.

A plugin section is ``{name: <plugin>, <param>: <value>, ...}``; it is merged into that plugin's
own ``Config`` (plus ``name``) so omegaconf's errors keep full key paths.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from musicfw.core.errors import ConfigError

#: the metadata keys of a numeric bound
BOUND_KEYS = ("ge", "gt", "le", "lt")


def choice(default: Any, choices: tuple, help: str = "") -> Any:
    """A dataclass field whose value must be one of ``choices``."""
    return field(default=default, metadata={"choices": tuple(choices), "help": help})


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    min_items: int | None = None,
    help: str = "",
) -> Any:
    """A dataclass field with numeric bounds: ``ge`` (>=), ``gt`` (>), ``le`` (<=), ``lt`` (<).

    A list default (a list field) is copied per instance; its items are bounded, and
    ``min_items`` is its shortest allowed length.  ``None`` (an ``Optional`` field) is allowed.
    """
    metadata: dict[str, Any] = {"help": help}
    for key, value in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt), ("min_items", min_items)):
        if value is not None:
            metadata[key] = value
    if isinstance(default, list):
        items = list(default)
        return field(default_factory=lambda: list(items), metadata=metadata)
    return field(default=default, metadata=metadata)


def field_bounds(f: dataclasses.Field) -> dict[str, Any]:
    """The bounds a field declares (``ge``/``gt``/``le``/``lt``/``min_items``); empty: none."""
    return {key: f.metadata[key] for key in (*BOUND_KEYS, "min_items") if f.metadata.get(key) is not None}


def field_rules(schema: type, f: dataclasses.Field) -> dict[str, Any]:
    """What a field of ``schema`` allows, for ``musicfw plugins`` and docs: ``choices`` (a list
    or None), ``bounds`` (the declared ``ge``/``gt``/``le``/``lt``/``min_items``, or None) and
    ``allowed`` (the same in words, "" when the field declares neither)."""
    choices = f.metadata.get("choices")
    bounds = field_bounds(f)
    integer = _is_integer_type(_type_hints(schema).get(f.name, f.type))
    allowed = ""
    if choices is not None or set(bounds) - {"min_items"}:
        allowed = _allowed(choices, bounds, integer)
    if bounds.get("min_items") is not None:
        least = bounds["min_items"]
        allowed = f"a list of at least {least} item{'s' if least != 1 else ''}" + (f", each {allowed}" if allowed else "")
    return {
        "choices": list(choices) if choices is not None else None,
        "bounds": bounds or None,
        "allowed": allowed,
    }


def _is_integer_type(tp: Any) -> bool:
    """``int``, ``Optional[int]``, ``list[int]``: bounds read as integer ranges."""
    if isinstance(tp, str):  # an annotation typing could not resolve
        return tp.replace(" ", "").replace("typing.", "") in {
            "int", "Optional[int]", "int|None", "List[int]", "list[int]", "Optional[List[int]]"
        }
    if tp is int:
        return True
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return bool(args) and all(a is int for a in args)


def allowed_range(bounds: dict[str, Any], integer: bool) -> str:
    """Words for the values ``bounds`` allow: ``an integer >= 1``, ``in 1..127``,
    ``a finite number > 0``, ``in (0, 1]``."""
    ge, gt, le, lt = (bounds.get(k) for k in BOUND_KEYS)
    if integer:  # an integer range is closed: 0 < x < 10 is 1..9
        lo = ge if ge is not None else (math.floor(gt) + 1 if gt is not None else None)
        hi = le if le is not None else (math.ceil(lt) - 1 if lt is not None else None)
        if lo is not None and hi is not None:
            return f"in {lo}..{hi}"
        if lo is not None:
            return f"an integer >= {lo}"
        if hi is not None:
            return f"an integer <= {hi}"
        return "an integer"
    lower = f"[{ge}" if ge is not None else (f"({gt}" if gt is not None else None)
    upper = f"{le}]" if le is not None else (f"{lt})" if lt is not None else None)
    if lower is not None and upper is not None:
        return f"in {lower}, {upper}"
    if lower is not None:
        return f"a finite number {'>=' if ge is not None else '>'} {ge if ge is not None else gt}"
    if upper is not None:
        return f"a finite number {'<=' if le is not None else '<'} {le if le is not None else lt}"
    return "a finite number"


def _within(value: Any, bounds: dict[str, Any]) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    ge, gt, le, lt = (bounds.get(k) for k in BOUND_KEYS)
    return (
        (ge is None or value >= ge)
        and (gt is None or value > gt)
        and (le is None or value <= le)
        and (lt is None or value < lt)
    )


@dataclass
class Source:
    """Where a config came from, to point errors at the right place: a file (and its text, to
    find a key's line), command-line overrides, or -- for the Python API -- a ``label`` such as
    ``tokenizer 'remi'``."""

    path: Path | None = None
    text: str | None = None
    overrides: list[str] = field(default_factory=list)
    label: str = ""

    def locate(self, full_key: str) -> str:
        """``in FILE, line N`` / ``in the command-line override '...'`` / ``""``."""
        for item in self.overrides:
            if item.split("=", 1)[0].strip() == full_key:
                return f"in the command-line override {item!r}"
        if self.path is None:
            return ""
        line = _line_of_key(self.text or "", full_key)
        return f"in {self.path}" + (f", line {line}" if line else "")

    def at(self, key: str) -> str:
        """`` in FILE, line N`` (with its leading space) or ``""``: for ``Invalid config{at}: ...``."""
        where = self.locate(key)
        return f" {where}" if where else ""

    def error(self, key: str, message: str) -> ConfigError:
        """``Invalid config in FILE, line N: MESSAGE`` (``Invalid tokenizer 'remi' parameters:
        MESSAGE`` from the Python API) as a ConfigError."""
        where = self.at(key)
        if not where and self.label:
            return ConfigError(f"Invalid {self.label} parameters: {message}")
        return ConfigError(f"Invalid config{where}: {message}")


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




def schema_error(exc: OmegaConfBaseException, source: Source, prefix: str = "") -> ConfigError:
    """omegaconf's error (a wrong type, an unknown key) as a ConfigError with file, line and key."""
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
    return source.error(key, f"{key}: {msg}{allowed}")


@functools.lru_cache(maxsize=512)
def _type_hints(schema: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(schema)
    except Exception:  # unresolvable annotations in a third-party Config: the raw annotations
        return {}


def check_values(cfg: Any, schema: type, source: Source | None = None, prefix: str = "") -> None:
    """Check every value of ``cfg`` (a DictConfig or a ``schema`` instance) against the
    ``choices`` and bounds its ``schema`` dataclass declares, nested sections included.
    The first value outside is a ConfigError naming file, line, key path and what is allowed.
    On a list value, ``choices`` and bounds apply to each item and ``min_items`` to its length."""
    source = source or Source()
    hints = _type_hints(schema)
    for f in dataclasses.fields(schema):
        value = getattr(cfg, f.name, None)
        path = f"{prefix}.{f.name}" if prefix else f.name
        field_type = hints.get(f.name, f.type)
        _check_field(value, f, _is_integer_type(field_type), source, path)
        if dataclasses.is_dataclass(field_type) and (isinstance(value, DictConfig) or dataclasses.is_dataclass(value)):
            check_values(value, field_type, source, path)


def _check_field(value: Any, f: dataclasses.Field, integer: bool, source: Source, path: str) -> None:
    choices = f.metadata.get("choices")
    bounds = field_bounds(f)
    if value is None or (choices is None and not bounds):
        if choices is not None and value not in choices:
            raise source.error(path, f"{path}: {value!r} is not allowed. Allowed values: {', '.join(map(str, choices))}.")
        return
    if isinstance(value, (list, tuple, ListConfig)):
        items = list(value)
        least = bounds.get("min_items")
        if least is not None and len(items) < least:
            each = f", each {_allowed(choices, bounds, integer)}" if choices is not None or set(bounds) - {"min_items"} else ""
            raise source.error(
                path, f"{path} must be a list of at least {least} item{'s' if least != 1 else ''}{each}, got {items!r}."
            )
        checks = [(f"{path}[{i}]", item) for i, item in enumerate(items)]
    else:
        checks = [(path, value)]
    for key, item in checks:
        if choices is not None and item not in choices:
            raise source.error(key, f"{key}: {item!r} is not allowed. Allowed values: {', '.join(map(str, choices))}.")
        if set(bounds) - {"min_items"} and not _within(item, bounds):
            raise source.error(key, f"{key} must be {allowed_range(bounds, integer)}, got {item!r}.")


def _allowed(choices: Any, bounds: dict[str, Any], integer: bool) -> str:
    if choices is not None:
        return f"one of {', '.join(map(str, choices))}"
    return allowed_range(bounds, integer)


def check_params(config: Any, key: str) -> None:
    """Check a plugin's ``Config`` instance built in Python (``TopP(TopP.Config(p=2))``) as
    :func:`check_values` checks a YAML section; ``key`` names it in the error."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        check_values(config, type(config), None, key)


@functools.lru_cache(maxsize=512)
def section_class(plugin_cls: type) -> type:
    """The dataclass of a plugin section: the plugin's Config plus its ``name``."""
    config = plugin_cls.Config
    return dataclasses.make_dataclass(
        f"{plugin_cls.__name__}Section",
        [("name", str, field(default=plugin_cls.name))],
        bases=(config,),
    )


def validate_plugin_section(
    raw: Any, kind: str, registries: Any, key: str, source: Source | None = None
) -> DictConfig:
    """Validate ``{name: ..., params}`` against that plugin's Config; returns the section."""
    source = source or Source()
    if isinstance(raw, str):
        raw = OmegaConf.create({"name": raw})
    if not isinstance(raw, DictConfig) or "name" not in raw:
        raise source.error(
            key,
            f"{key} must be a section with a `name` "
            f"(one of: {', '.join(registries[kind].names()) or '(none installed)'}).",
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
        raise schema_error(exc, source, key) from None
    check_values(section, sec_cls, source, key)
    return section
