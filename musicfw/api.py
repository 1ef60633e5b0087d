"""The Python API: the same pieces the CLI uses, composed by hand.

>>> import musicfw
>>> tok = musicfw.build_tokenizer("remi")
>>> sampler = musicfw.build_sampler("top_p", p=0.9)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from musicfw.core import build as _build
from musicfw.core.errors import ConfigError
from musicfw.core.plugins import Registries, load_registries

_default_registries: Registries | None = None


def get_registries(refresh: bool = False) -> Registries:
    """The registries of this process, built on first use (not at import time)."""
    global _default_registries
    if _default_registries is None or refresh:
        _default_registries = load_registries()
    return _default_registries


def refresh_plugins() -> Registries:
    """Rebuild the registries, e.g. after installing a plugin package in a notebook."""
    return get_registries(refresh=True)


def list_plugins(registries: Registries | None = None) -> dict[str, list[str]]:
    """kind -> sorted plugin names, e.g. ``{"tokenizers": ["remi", ...], ...}``."""
    return (registries or get_registries()).names()


def make_config(kind: str, name: str, registries: Registries | None = None, **params: Any) -> Any:
    """A plugin's validated ``Config`` instance from keyword parameters."""
    return _build.make_config(kind, name, registries=registries or get_registries(), **params)


def build(
    kind: str,
    name: str,
    *,
    registries: Registries | None = None,
    context: dict[str, Any] | None = None,
    **params: Any,
) -> Any:
    """Build the plugin ``name`` of ``kind`` with validated parameters.

    ``context`` carries what the plugin needs besides its parameters (a model's tokenizer);
    a keyword that is not a config value joins it, so ``build("model", "lstm",
    tokenizer=tok, hidden_size=256)`` works as ``context={"tokenizer": tok}`` does.
    """
    return _build.build(kind, name, registries=registries or get_registries(), context=context, **params)


def build_from_section(kind: str, section: Any, registries: Registries | None = None, **context: Any) -> Any:
    """Build a plugin from a config section ``{name: ..., params}``."""
    return _build.build_from_section(kind, section, registries=registries or get_registries(), **context)


def build_tokenizer(name: str, **params: Any) -> Any:
    return build("tokenizers", name, **params)


def build_model(name: str, tokenizer: Any = None, **params: Any) -> Any:
    if tokenizer is None:
        raise ConfigError(f"build_model({name!r}) needs tokenizer=... (the model's vocabulary).")
    return build("models", name, context={"tokenizer": tokenizer}, **params)


def build_sampler(name: str, **params: Any) -> Any:
    return build("samplers", name, **params)


def build_dataset(name: str, **params: Any) -> Any:
    return build("datasets", name, **params)


def load_data(dataset: Any, seed: int = 0, progress: bool = True) -> Any:
    """A dataset's pieces with their splits, as ``musicfw run`` makes them (by tune where the
    dataset says ``split_by: tune``), and the split's leakage report in ``split_report``.
    ``dataset``: a dataset plugin (``build_dataset``) or its name."""
    from musicfw.engine.splits import load_data as _load

    if isinstance(dataset, str):
        dataset = build_dataset(dataset)
    return _load(dataset, seed=seed, progress=progress)


def build_metric(name: str, **params: Any) -> Any:
    return build("metrics", name, **params)


def load_config(path: str | Path | dict | None = None, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Load and validate an experiment YAML (or dict) with ``key=value`` overrides."""
    from musicfw.engine.config import load_config as _load

    return _load(path, overrides, registries=get_registries())


def run(config: DictConfig | dict | str | Path, resume: str | Path | None = None) -> Any:
    """Run an experiment end to end; returns the :class:`~musicfw.engine.runner.RunResult`."""
    from musicfw.engine.runner import run_experiment

    if not isinstance(config, DictConfig):
        config = load_config(config)
    return run_experiment(config, resume=resume, registries=get_registries())


def pretrained_models() -> list[dict[str, Any]]:
    """The installed pretrained models (name, task, size, held-out metrics, licence, where from),
    as ``musicfw models`` lists them; load one with ``load_pretrained(name)``."""
    from musicfw.engine.zoo import describe

    return describe()
