"""One validation pass over an experiment: every plugin object of a run, built once.

:func:`musicfw.engine.config.load_config` checks the config's keys, types and values;
:func:`build_experiment` then builds what those sections describe -- the tokenizer, the
sampler chain and the model -- and checks what only the built objects can tell (the sampler
draws the tokenizer's kind of tokens, the chord progression fits the tokenizer, the model's
context holds ``train.seq_len`` and the prompt, ``init_from`` fits the model, every
``train.freeze`` prefix names a part of it, the hardware exists, the prompt and soundfont
files are there).  Every mistake is found here, before a run folder exists.

The runner then hands these same objects down its stages: the model that is trained is the
one built here, and the checkpoint generation and evaluation use is loaded back into it.

Seeding: the experiment's ``seed`` is set (Python, numpy, torch) right before the model is
built, so its initial weights depend on the seed alone.  Nothing the runner does between
this point and training draws from the global random generators (the data stage splits by a
hash and draws training windows from its own seeded generator; ``tests/test_build_once.py``
checks this), so the weights and every later draw are those of a run that seeded just before
training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from musicfw.core.errors import ConfigError


@dataclass
class Built:
    """The plugin objects of one experiment, built once by :func:`build_experiment`."""

    tokenizer: Any
    sampler: Any
    model: Any
    #: the ``generate.chords`` setting as a progression string or list (None: unconditioned)
    chords: Any = None
    #: the ``generate.controls`` setting as a mapping or a list of them (None: not forced)
    controls: Any = None
    #: the checkpoint ``init_from`` loaded into the model (None without ``init_from``)
    init_from: Path | None = None


def build_experiment(config: DictConfig, registries: Any) -> Built:
    """Build and check the tokenizer, sampler chain and model of a validated experiment
    ``config`` (from :func:`musicfw.engine.config.load_config`); seeds the global random
    generators with ``config.seed`` before building the model.  Raises ConfigError (or
    PluginError) for anything the built objects refuse."""
    from omegaconf import OmegaConf

    from musicfw.core.build import build_from_section
    from musicfw.engine.generation import (
        build_sampler_chain,
        check_chords,
        check_controls,
        chords_setting,
        controls_setting,
    )

    if config.get("limits") is not None:
        from musicfw.music.limits import Limits, configure

        configure(Limits.from_mapping(OmegaConf.to_container(config.limits), base=Limits.from_env(), where="limits"))
    sampler = build_sampler_chain(config.sampler, registries=registries)
    tokenizer = build_from_section("tokenizers", config.tokenizer, registries=registries, key="tokenizer")
    check_sampler_kind(sampler, tokenizer)
    chords = chords_setting(config.generate.chords)
    if chords is not None:  # an unknown chord name or a tokenizer without chords: before training
        check_chords(tokenizer, chords, bool(config.generate.constraints))
    controls = controls_setting(config.generate.get("controls"))
    if controls is not None:  # controls the tokenizer has no tokens for, levels out of range: before training
        check_controls(tokenizer, controls, bool(config.generate.constraints))

    from musicfw.engine.infill import InfillTokenizer, check_infill_config, infill_section

    if infill_section(config.train) is not None:  # the three markers join the vocabulary (ids of the rest unchanged)
        check_infill_config(config.train, tokenizer)
        tokenizer = InfillTokenizer(tokenizer, layout=str(config.train.infill.get("layout", "spm")))
    seed_everything(int(config.seed))
    model = build_from_section("models", config.model, registries=registries, key="model", tokenizer=tokenizer)
    check_infill_config(config.train, tokenizer, model)
    check_context(model, config, tokenizer)
    used = None
    if config.get("init_from"):
        from musicfw.engine.finetune import init_from

        used = init_from(model, tokenizer, config.init_from)  # a run, a pretrained name or folder; same tokenizer, weights that fit
    if list(config.train.freeze):
        from musicfw.engine.training import freeze

        if not model.trainable:
            raise ConfigError("train.freeze: the model is fitted by counting; there are no parameters to freeze.")
        freeze(model, list(config.train.freeze))  # every prefix names a part of the model
    if model.trainable:
        from musicfw.engine.training import check_hardware

        check_hardware(config.train)  # e.g. strategy=fsdp on the CPU
    for key in ("prompt", "soundfont"):
        value = config.generate.get(key)
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"Invalid config: generate.{key}: no such file {value!r}.")
    return Built(tokenizer=tokenizer, sampler=sampler, model=model, chords=chords, controls=controls,
                 init_from=used)


def seed_everything(seed: int) -> None:
    """One seed for Python, numpy and torch (Lightning's seeding, without its log line)."""
    import logging

    from lightning_fabric.utilities.seed import seed_everything as _seed

    logging.getLogger("lightning_fabric.utilities.seed").setLevel(logging.WARNING)
    _seed(seed, workers=False, verbose=False)


def check_sampler_kind(sampler: Any, tokenizer: Any) -> None:
    if tokenizer.kind not in sampler.token_kinds:
        raise ConfigError(
            f"The sampler {sampler!r} cannot draw {tokenizer.kind} tokens from tokenizer "
            f"{tokenizer.name!r}. "
            + (
                "Use sampler: {name: bernoulli} (or greedy) for piano-roll frames."
                if tokenizer.kind == "multihot"
                else "Use greedy, temperature, top_k or top_p for categorical tokens."
            )
        )


def check_context(model: Any, config: DictConfig, tokenizer: Any) -> None:
    """A model with a bounded ``max_context`` cannot train on longer windows, nor continue a
    prompt longer than its context (checked before a run folder is made)."""
    ctx = model.max_context
    if ctx is None:
        return
    if int(config.train.seq_len) > ctx:
        raise ConfigError(
            f"Invalid config: train.seq_len ({config.train.seq_len}) is longer than the model's "
            f"max_context ({ctx}); set train.seq_len <= {ctx} or raise model.max_context."
        )
    if config.generate.prompt:
        from musicfw.engine.generation import _load_prompt

        n = len(_load_prompt(config.generate.prompt, tokenizer))
        if n > ctx:
            raise ConfigError(
                f"Invalid config: generate.prompt {config.generate.prompt} is {n} {tokenizer.name} tokens, "
                f"longer than the model's max_context ({ctx}); use a shorter prompt or raise model.max_context."
            )
