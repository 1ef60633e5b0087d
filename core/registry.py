"""Registries: one per plugin kind, filled by the ``musicfw_register_*`` hooks."""

from __future__ import annotations

import dataclasses
import difflib
import weakref
from dataclasses import dataclass
from typing import Any, Iterator

from musicfw.core.errors import PluginError

#: the provider of what is added to a registry by hand, not through the plugin manager
PYTHON_API = "<python api>"

KINDS = ("tokenizers", "models", "samplers", "datasets", "metrics", "loggers", "exporters")

#: singular form used in error messages and in ``musicfw.build(kind, ...)``
SINGULAR = {
    "tokenizers": "tokenizer",
    "models": "model",
    "samplers": "sampler",
    "datasets": "dataset",
    "metrics": "metric",
    "loggers": "logger",
    "exporters": "exporter",
}


def normalize_kind(kind: str) -> str:
    """Accept ``"tokenizer"`` or ``"tokenizers"``; return the plural registry kind."""
    if kind in KINDS:
        return kind
    for plural, singular in SINGULAR.items():
        if kind == singular:
            return plural
    raise PluginError(f"Unknown plugin kind {kind!r}. Known kinds: {', '.join(KINDS)}.")


@dataclass(frozen=True)
class PluginInfo:
    """What the registry knows about one plugin."""

    name: str
    cls: type
    kind: str
    provider: str  # distribution (or plugin module) that registered it
    #: the provider distribution's version (None for plugins registered from Python)
    version: str | None = None

    def identity(self) -> dict[str, Any]:
        """``{"distribution", "version"}`` of the package that provides this plugin: what a
        token cache key and an exported model record, and what to install to get it back."""
        return {"distribution": self.provider, "version": self.version}

    @property
    def description(self) -> str:
        doc = (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def config_fields(self) -> list[dict[str, Any]]:
        """The plugin's parameters: name, type, default, help, and what the field allows
        (``choices``, ``bounds``, ``allowed`` in words; see :func:`musicfw.core.params.field_rules`)."""
        from musicfw.core.params import field_rules

        fields = []
        for f in dataclasses.fields(self.cls.Config):
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = f.default_factory()  # type: ignore[misc]
            else:
                default = None
            fields.append(
                {
                    "name": f.name,
                    "type": _type_name(f.type),
                    "default": default,
                    "help": f.metadata.get("help", ""),
                    **field_rules(self.cls.Config, f),
                }
            )
        return fields


def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class Registry:
    """Named plugin classes of one kind.

    The registry owns the policy: a name registered twice is an error naming both providers,
    and an unknown name is an error listing the known ones.
    """

    def __init__(self, kind: str, strict: bool = True):
        self.kind = normalize_kind(kind)
        self._plugins: dict[str, PluginInfo] = {}
        #: strict: a duplicate name raises at once; otherwise it is recorded in ``clashes``
        #: and only looking that name up raises (what the plugin manager does)
        self.strict = strict
        self.clashes: dict[str, str] = {}
        #: set by the plugin manager while a provider's hook runs
        self.current_provider = PYTHON_API
        self.current_version: str | None = None

    # -- filling -------------------------------------------------------------------------
    def add(self, cls: type) -> type:
        """Register a plugin class (usable as a decorator). Returns the class unchanged."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"{self.current_provider}: {SINGULAR[self.kind]} class {cls!r} has no string "
                "attribute `name` (the name used in YAML)."
            )
        config = getattr(cls, "Config", None)
        if config is None or not dataclasses.is_dataclass(config):
            raise PluginError(
                f"{self.current_provider}: {SINGULAR[self.kind]} {name!r} needs a `Config` "
                "dataclass (its parameters, with types and defaults)."
            )
        if not callable(getattr(cls, "from_config", None)):
            raise PluginError(
                f"{self.current_provider}: {SINGULAR[self.kind]} {name!r} needs a "
                "`from_config(config, **context)` classmethod."
            )
        if name in self._plugins:
            other = self._plugins[name]
            message = (
                f"Two {self.kind} are named {name!r}: one from {other.provider} "
                f"({other.cls.__module__}.{other.cls.__qualname__}) and one from "
                f"{self.current_provider} ({cls.__module__}.{cls.__qualname__}). "
                "Rename one, or block one with MUSICFW_BLOCK_PLUGINS."
            )
            if self.strict:
                raise PluginError(message)
            # a clash fails only what asks for this name; the rest of musicfw keeps working
            self.clashes[name] = message
            return cls
        info = PluginInfo(name, cls, self.kind, self.current_provider, self.current_version)
        self._plugins[name] = info
        if self.current_provider != PYTHON_API:  # filled by the plugin manager
            _remember_identity(cls, info.identity())
        return cls

    # -- reading -------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._plugins)

    def __contains__(self, name: object) -> bool:
        return name in self._plugins

    def __iter__(self) -> Iterator[PluginInfo]:
        return iter(self._plugins[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._plugins)

    def info(self, name: str, where: str | None = None) -> PluginInfo:
        """Look a plugin up; an unknown name is a :class:`PluginError` listing known ones, and
        a name two plugins claim is one naming both."""
        if name in self.clashes:
            raise PluginError(self.clashes[name] + (f" (needed at {where})" if where else ""))
        try:
            return self._plugins[name]
        except KeyError:
            raise PluginError(self.unknown_message(name, where)) from None

    def get(self, name: str, where: str | None = None) -> type:
        return self.info(name, where).cls

    def unknown_message(self, name: object, where: str | None = None) -> str:
        singular = SINGULAR[self.kind]
        known = ", ".join(self.names()) or "(none installed)"
        location = f" (at {where})" if where else ""
        hint = ""
        if isinstance(name, str):
            close = difflib.get_close_matches(name, self.names(), n=1)
            if close:
                hint = f" Did you mean {close[0]!r}?"
        return f"Unknown {singular} {name!r}{location}.{hint} Available {self.kind}: {known}."


# -- plugin identity -------------------------------------------------------------------------
#: class -> {"distribution", "version"} of the last registry that added it, and the same per
#: top-level package (a model plugin's ``from_config`` returns an instance of another class of
#: its package).  A fact about the class, kept weakly: it never keeps a class alive.
_CLASS_IDENTITY: "weakref.WeakKeyDictionary[type, dict[str, Any]]" = weakref.WeakKeyDictionary()
_PACKAGE_IDENTITY: dict[str, dict[str, Any]] = {}


def _remember_identity(cls: type, identity: dict[str, Any]) -> None:
    try:
        _CLASS_IDENTITY[cls] = identity
    except TypeError:  # pragma: no cover - a class that cannot be weakly referenced
        pass
    package = (getattr(cls, "__module__", "") or "").partition(".")[0]
    if package and package != "__main__":
        _PACKAGE_IDENTITY[package] = identity


def plugin_identity(obj: Any) -> dict[str, Any]:
    """``{"distribution", "version"}`` of the package that provides ``obj`` (a plugin instance
    or class): what the registry recorded when the class was added (built-ins: ``musicfw`` and
    its version; third-party plugins: the distribution of their entry point), else what it
    recorded for another class of the same top-level package, else for a registered base
    class, else ``None`` for both."""
    cls = obj if isinstance(obj, type) else type(obj)
    package = (getattr(cls, "__module__", "") or "").partition(".")[0]
    identity = _class_identity(cls) or _PACKAGE_IDENTITY.get(package)
    for klass in cls.__mro__[1:]:
        identity = identity or _class_identity(klass)
    return dict(identity or {"distribution": None, "version": None})


def _class_identity(cls: type) -> dict[str, Any] | None:
    try:
        return _CLASS_IDENTITY.get(cls)
    except TypeError:  # pragma: no cover - not weakly referenceable
        return None
