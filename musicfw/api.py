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


def infill(
    source: Any,
    song: Any,
    bars: Any,
    *,
    n: int = 1,
    seed: int = 0,
    sampler: Any = None,
    out_dir: str | Path | None = None,
    max_tokens: int | None = None,
    checkpoint: str = "auto",
    controls: Any = None,
) -> Any:
    """Fill ``bars`` (``"5-8"``: 1-based, inclusive) of ``song`` (a MIDI path or a
    ``symusic.Score``) ``n`` times with a model trained to infill (``train.infill.enabled``).

    ``source``: a run folder, a folder made by ``musicfw export``, the name of a shipped model
    (``musicfw models``), or a ``(model, tokenizer)`` pair.  ``sampler``: a sampler object or
    section (default: the run's sampler, else top_p).
    With ``out_dir`` the songs are written there as ``<song>_infill_<bars>_NNN.mid``.  Returns
    an :class:`musicfw.engine.infill.InfillOutput` (``scores``, ``paths``, ``bars``).  Notes
    outside the bars are the song's own; every check comes before anything is written.
    ``controls``: attribute controls forced in every filled bar (``"density=4,pitch=high"``,
    ``{"density": 4}``, or a list of them, filled bar by filled bar) for a model whose
    tokenizer was trained with ``controls``; a ConfigError otherwise."""
    from musicfw.engine.generation import build_sampler_chain
    from musicfw.engine.infill import infill as _infill

    registries = get_registries()
    section = None
    if isinstance(source, (tuple, list)):
        model, tokenizer = source
    else:
        from musicfw.engine.loading import open_any

        loaded = open_any(source, checkpoint=checkpoint, registries=registries).load(registries)
        loaded.require("infill")
        model, tokenizer, section = loaded.model, loaded.tokenizer, loaded.sampler
    if sampler is None or isinstance(sampler, (dict, list, tuple, DictConfig)):
        sampler = build_sampler_chain(sampler if sampler is not None else section, registries=registries)
    return _infill(model, tokenizer, song, bars, sampler=sampler, n=n, seed=seed, max_tokens=max_tokens, out_dir=out_dir,
                   controls=controls)


def harmonize(
    source: Any,
    piece: Any,
    *,
    tokenizer: Any = None,
    voices: Any = None,
    given: Any = None,
    n: int = 4,
    seed: int = 0,
    sampler: Any = None,
    checkpoint: str = "auto",
    batch_size: int = 8,
    controls: Any = None,
    forbid_parallels: bool = False,
    pitch_temperature: float | None = None,
) -> list:
    """Write the missing voices of ``piece`` (a MIDI path or a ``symusic.Score``) ``n`` times
    with a model trained on the ``tracks`` tokenizer; returns the Scores (the input with the
    written voices added; its own tracks unchanged).  ``source``: a run folder, a folder made
    by ``musicfw export``, or a model (then pass its ``tokenizer``).  ``voices`` / ``given``:
    as ``musicfw harmonize --voices / --given`` (default: soprano given, the rest written).
    ``sampler``: a Sampler or chain (default: the run's or folder's sampler section; a model
    passed in: temperature 1).  ``controls``: attribute levels for the written voices, as
    ``musicfw harmonize --controls`` (``"density=high"``, ``"bass:pitch=low,alto:density=1"``, a
    mapping, or a list of them segment by segment; a model trained with ``tokenizer.controls``).
    ``forbid_parallels``: as ``--forbid-parallels`` (no parallel fifths or octaves written).
    ``pitch_temperature``: as ``--pitch-temperature`` (a temperature on the choice among
    pitches only).  See docs/harmonize.md."""
    from musicfw.plugins.harmonize.harmonize import harmonize as _harmonize

    registries = get_registries()
    if isinstance(source, (str, Path)):
        from musicfw.engine.generation import build_sampler_chain
        from musicfw.engine.loading import open_any
        from musicfw.plugins.harmonize import check_harmonizer_config

        opened = open_any(source, checkpoint=checkpoint, registries=registries)
        if opened.kind == "run":
            check_harmonizer_config(opened.config, opened.label)  # before the weights load
        loaded = opened.load(registries)
        model, tokenizer = loaded.model, loaded.tokenizer
        if sampler is None:
            sampler = build_sampler_chain(loaded.sampler, registries=registries)
    else:
        model = source
        if tokenizer is None:
            raise ConfigError("harmonize: a model passed in needs its tokenizer (tokenizer=...).")
    return _harmonize(model, tokenizer, piece, voices=voices, given=given, n=n, seed=seed, sampler=sampler,
                      batch_size=batch_size, source=str(source) if isinstance(source, (str, Path)) else "the model",
                      controls=controls, forbid_parallels=forbid_parallels,
                      pitch_temperature=pitch_temperature)


def pretrained_models() -> list[dict[str, Any]]:
    """The installed pretrained models (name, task, size, held-out metrics, licence, where from),
    as ``musicfw models`` lists them; load one with ``load_pretrained(name)``."""
    from musicfw.engine.zoo import describe

    return describe()
