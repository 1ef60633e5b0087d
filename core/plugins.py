"""The plugin manager factory: built-ins and entry-point plugins, through one door.

Built-in plugins are listed in :data:`DEFAULT_PLUGINS` (as pytest and datasette do) and are
registered with the same ``pm.register`` call as third-party plugins, which are loaded from
the ``musicfw`` entry-point group.  Nothing here runs at import time: every CLI invocation
and every test builds a fresh manager with :func:`get_plugin_manager`.

Environment variables:

* ``MUSICFW_DISABLE_PLUGIN_AUTOLOAD=1``: do not load entry-point plugins.
* ``MUSICFW_BLOCK_PLUGINS=a,b``: skip these plugins (entry-point names, distribution
  names, or built-in module names such as ``musicfw.plugins.samplers``).
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable

import pluggy

from musicfw.core import hookspecs
from musicfw.core.errors import PluginError
from musicfw.core.registry import KINDS, PYTHON_API, Registry

ENTRY_POINT_GROUP = "musicfw"
DISABLE_AUTOLOAD_ENV = "MUSICFW_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "MUSICFW_BLOCK_PLUGINS"
BUILTIN_PROVIDER = "musicfw"

DEFAULT_PLUGINS = (
    "musicfw.plugins.tokenizers",
    "musicfw.plugins.models",
    "musicfw.plugins.samplers",
    "musicfw.plugins.datasets",
    "musicfw.plugins.metrics",
    "musicfw.plugins.listen",
    "musicfw.plugins.studio",
    "musicfw.plugins.harmonize",
    "musicfw.plugins.live",
    "musicfw.plugins.loggers",
    "musicfw.plugins.report",
    "musicfw.plugins.export",
)


class PluginLoadWarning(UserWarning):
    """An entry-point plugin failed to import or to register; the others still load."""


def distribution_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (None when it is not installed)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class LoadFailure:
    entry_point: str
    value: str
    distribution: str
    error: str


@dataclass
class Registries:
    """All registries, plus what failed to load on the way."""

    by_kind: dict[str, Registry]
    failures: list[LoadFailure] = field(default_factory=list)
    pm: pluggy.PluginManager | None = None
    #: CLI verbs added by plugins (``musicfw_register_commands``)
    commands: Any = None

    def __getitem__(self, kind: str) -> Registry:
        from musicfw.core.registry import normalize_kind

        return self.by_kind[normalize_kind(kind)]

    def names(self) -> dict[str, list[str]]:
        return {kind: reg.names() for kind, reg in self.by_kind.items()}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _blocked_from_env() -> set[str]:
    return {s.strip() for s in os.environ.get(BLOCK_ENV, "").split(",") if s.strip()}


def get_plugin_manager(
    autoload: bool | None = None,
    blocked: Iterable[str] | None = None,
    extra_plugins: Iterable[object] = (),
) -> pluggy.PluginManager:
    """A fresh PluginManager with the built-ins and (unless disabled) entry-point plugins.

    ``extra_plugins`` are objects or modules with hook implementations, registered after
    the built-ins, exactly like an entry-point plugin (handy in tests and notebooks).
    An entry-point plugin that fails to import, or has an invalid hook (a misspelled
    ``musicfw_*`` name, arguments its spec lacks), is warned about, recorded on
    ``pm.musicfw_failures`` and skipped; the others load.  In ``extra_plugins`` (the
    caller's own code) an invalid hook raises pluggy's ``PluginValidationError``.
    ``pm.musicfw_providers`` maps each plugin name to ``(distribution, version)``.
    """
    if autoload is None:
        autoload = not _env_flag(DISABLE_AUTOLOAD_ENV)
    blocked_names = set(blocked if blocked is not None else _blocked_from_env())

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    #: plugin name -> (distribution, version) of its provider
    providers: dict[str, tuple[str, str | None]] = {}
    failures: list[LoadFailure] = []
    #: entry-point plugins: a broken one is isolated and reported, never fatal
    third_party: dict[int, LoadFailure] = {}

    def register(plugin: object, name: str, provider: str, version: str | None) -> None:
        pm.register(plugin, name=name)
        providers[name] = (provider, version)

    def isolate(failure: LoadFailure, what: str) -> None:
        failures.append(failure)
        warnings.warn(
            f"musicfw plugin entry point {failure.entry_point!r} ({failure.value}, from "
            f"{failure.distribution}) {what} and was skipped: {failure.error}",
            PluginLoadWarning,
            stacklevel=3,
        )

    builtin_version = distribution_version(BUILTIN_PROVIDER)
    for module_name in DEFAULT_PLUGINS:
        if module_name in blocked_names:
            continue
        register(importlib.import_module(module_name), module_name, BUILTIN_PROVIDER, builtin_version)

    if autoload:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else None
            if ep.name in blocked_names or dist in blocked_names or pm.has_plugin(ep.name):
                continue
            failure = LoadFailure(ep.name, ep.value, dist, "")
            try:
                plugin = ep.load()
            except Exception as exc:  # a third party's broken import must not break us
                failure.error = f"{type(exc).__name__}: {exc}"
                isolate(failure, "failed to import")
                continue
            try:
                register(plugin, ep.name, dist, version)
            except (pluggy.PluginValidationError, ValueError) as exc:
                # a hook with the wrong arguments (or a module registered twice)
                failure.error = f"{type(exc).__name__}: {exc}"
                isolate(failure, "has an invalid hook")
                continue
            third_party[id(plugin)] = failure

    for i, plugin in enumerate(extra_plugins):
        name = getattr(plugin, "__name__", None) or f"extra-plugin-{i}"
        register(plugin, name, name, None)

    # a misspelled musicfw_* hook name is an error, not silence: in an entry-point plugin it
    # costs that plugin only; in a plugin passed in from Python (or a built-in) it is raised
    while True:
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            failure = third_party.pop(id(exc.plugin), None)
            if failure is None:
                raise
            failure.error = f"PluginValidationError: {_unknown_hooks(pm, exc.plugin) or exc}"
            pm.unregister(exc.plugin)
            providers.pop(failure.entry_point, None)
            isolate(failure, "has an invalid hook")
    pm.musicfw_providers = providers  # type: ignore[attr-defined]
    pm.musicfw_failures = failures  # type: ignore[attr-defined]
    return pm


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> str:
    """``unknown hook 'x' (did you mean 'y'?)`` for each hook of ``plugin`` without a spec."""
    import difflib

    known = [name for name in dir(hookspecs) if name.startswith(hookspecs.PROJECT_NAME + "_")]
    parts = []
    for caller in pm.get_hookcallers(plugin) or []:
        if not caller.has_spec():
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; the hooks are: {', '.join(known)}"
            parts.append(f"unknown hook {caller.name!r}{hint}")
    return "; ".join(parts)


def load_registries(pm: pluggy.PluginManager | None = None, reserved_commands: dict[str, str] | None = None) -> Registries:
    """Call every ``musicfw_register_<kind>`` hook into fresh registries.

    Implementations are called one by one (pluggy's ``get_hookimpls``) so that the registry
    knows which provider adds which plugin and can name both sides of a duplicate.
    """
    if pm is None:
        pm = get_plugin_manager()
    providers: dict[str, tuple[str, str | None]] = getattr(pm, "musicfw_providers", {})
    failures: list[LoadFailure] = list(getattr(pm, "musicfw_failures", []))
    from musicfw.core.command import CommandRegistry

    registries = {kind: Registry(kind, strict=False) for kind in KINDS}
    commands = CommandRegistry(reserved_commands)
    targets: list[tuple[str, Any, str]] = [(kind, reg, "registry") for kind, reg in registries.items()]
    targets.append(("commands", commands, "commands"))
    for kind, registry, argname in targets:
        caller = getattr(pm.hook, f"musicfw_register_{kind}")
        # pluggy returns implementations last-registered-last; call in registration order
        for impl in caller.get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            provider, version = providers.get(plugin_name, (plugin_name, None))
            registry.current_provider = provider
            registry.current_version = version
            try:
                impl.function(**{argname: registry})
            except PluginError:
                raise
            except Exception as exc:
                if provider == BUILTIN_PROVIDER:
                    raise  # our own bug: keep the traceback
                failures.append(
                    LoadFailure(plugin_name, str(impl.plugin), provider, f"{type(exc).__name__}: {exc}")
                )
                warnings.warn(
                    f"musicfw plugin {plugin_name!r} (from {provider}) failed while registering "
                    f"{kind} and was skipped: {type(exc).__name__}: {exc}",
                    PluginLoadWarning,
                    stacklevel=2,
                )
        registry.current_provider, registry.current_version = PYTHON_API, None
    for kind, registry in registries.items():
        for name, message in registry.clashes.items():
            failures.append(LoadFailure(f"{kind}:{name}", "name clash", "-", message))
            warnings.warn(message + " Only what needs that name fails.", PluginLoadWarning, stacklevel=2)
    return Registries(registries, failures, pm, commands)


class PluginHookWarning(UserWarning):
    """A third-party plugin's feature hook (a report section, a lifecycle hook) raised; what it
    would have added is missing, everything else went on."""


@dataclass
class HookCall:
    """One implementation's answer to a feature hook."""

    plugin: str  # the registered plugin name (module or entry point)
    provider: str  # the distribution that provides it ("musicfw" for built-ins)
    result: Any = None
    error: str | None = None  # "ExcType: message" when a third party's implementation raised


def call_hook(pm: pluggy.PluginManager, hook: str, **kwargs: Any) -> list[HookCall]:
    """Call every implementation of the feature hook ``hook`` one by one, in registration order
    (built-ins first), each with the arguments it declares.

    The policy of every feature hook: an exception from a third party's implementation is
    caught, warned about (:class:`PluginHookWarning` naming the plugin, its distribution and
    the error) and returned as :attr:`HookCall.error`; a built-in's exception is a bug of ours
    and propagates with its traceback.
    """
    providers: dict[str, tuple[str, str | None]] = getattr(pm, "musicfw_providers", {})
    calls: list[HookCall] = []
    for impl in getattr(pm.hook, hook).get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
        provider = providers.get(plugin_name, (plugin_name, None))[0]
        try:
            result = impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception as exc:
            if provider == BUILTIN_PROVIDER:
                raise
            error = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"musicfw plugin {plugin_name!r} (from {provider}) failed in {hook}: {error}",
                PluginHookWarning,
                stacklevel=2,
            )
            calls.append(HookCall(plugin_name, provider, None, error))
            continue
        calls.append(HookCall(plugin_name, provider, result))
    return calls
