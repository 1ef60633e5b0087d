"""One loader for every command that takes a model: ``--run RUN`` or ``--model NAME|FOLDER``.

A model comes from one of three places, and every verb (``generate``, ``infill``,
``harmonize``, ``sample|interpolate|blend``, ``studio``, ``play``) and the Python API
(``musicfw.infill``, ``musicfw.harmonize``) reads it through :func:`open_model`:

* a **run folder** (``musicfw run``): its saved config (the run's own limits then hold, see
  :func:`~musicfw.engine.rundir.load_run_config`), its tokenizer.json and a checkpoint
  (``checkpoint``: ``auto`` = the model's preference, ``best``, ``last`` or a path);
* an **exported folder** (``musicfw export``) or ``hf:OWNER/NAME``: read as a stranger's folder
  by :mod:`musicfw.engine.pretrained` (bounded, checked, no pickle);
* a **shipped model's name** (``chorales-lstm``: :mod:`musicfw.engine.zoo`; an existing path
  wins), its files checked against their sha256 first.

Opening reads the config only (:class:`ModelSource`: the sampler and generate sections a
command needs to check its flags before any weights load); :meth:`ModelSource.load` builds the
model (eval mode, CPU) and its tokenizer and says what it supports (:attr:`LoadedModel.supports`).
The errors are the user's, each naming what to do: an unknown name lists the installed models;
a damaged shipped file is named with the reinstall command; ``--checkpoint`` with a folder is
refused; :meth:`LoadedModel.require` refuses a model not trained for what a verb needs
(infilling, harmonisation, a MusicVAE's latent space).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musicfw.core.errors import ConfigError, UserError

#: what :attr:`LoadedModel.supports` reports, in this order
CAPABILITIES = ("generate", "infill", "harmonize", "controls", "chords", "latent")


@dataclass
class LoadedModel:
    """A built model: ``model`` (eval mode, CPU), ``tokenizer``, ``config`` (a run's whole
    config, or an exported folder's ``{seed, sampler, generate}``) and where it came from."""

    model: Any
    tokenizer: Any
    config: Any
    source: "ModelSource"

    @property
    def sampler(self) -> Any:
        """The sampler section generation starts from (the run's or the folder's)."""
        return self.config.get("sampler")

    @property
    def generate(self) -> Any:
        return self.config.get("generate")

    @property
    def supports(self) -> dict[str, bool]:
        """What this model can do: ``generate`` (a token language model continues a prompt),
        ``infill`` (trained with ``train.infill``), ``harmonize`` (a tokenizer that writes voices
        as tracks), ``controls`` (attribute-control tokens), ``chords`` (chord tokens to follow
        a progression), ``latent`` (a MusicVAE: sample, interpolate, blend)."""
        return capabilities(self.model, self.tokenizer)

    def require(self, what: str) -> None:
        """A UserError naming the source when the model cannot do ``what`` (a key of
        :attr:`supports`), with how to train one that can."""
        if what not in CAPABILITIES:
            raise ValueError(f"unknown capability {what!r}; one of {', '.join(CAPABILITIES)}")
        if self.supports[what]:
            return
        name = getattr(self.tokenizer, "name", type(self.tokenizer).__name__)
        raise UserError(f"{self.source.label} {_WHY[what].format(tokenizer=name, model=type(self.model).__name__)}")


_WHY = {
    "generate": "holds a {model}, which does not continue a prompt token by token.",
    "infill": "was not trained to infill (its {tokenizer!r} vocabulary has no Infill_Fill, Infill_Sep, Infill_End "
              "tokens); train one with train.infill.enabled: true (examples/infill_chorales.yaml).",
    "harmonize": "was not trained to harmonise: its tokenizer is {tokenizer!r}, and harmonisation needs the 'tracks' "
                 "tokenizer, which writes each voice as a track (train one with examples/harmonize_chorales.yaml).",
    "controls": "has no control tokens (its {tokenizer!r} tokenizer was trained without tokenizer.controls).",
    "chords": "has no chord tokens (its {tokenizer!r} tokenizer was trained without chords, e.g. remi use_chords: true).",
    "latent": "is a {model}, not a MusicVAE; this command needs a MusicVAE.",
}


def is_latent(model: Any) -> bool:
    """A MusicVAE-like model: ``encode``, ``decode``, ``sample`` and ``interpolate``."""
    return all(callable(getattr(model, a, None)) for a in ("encode", "decode", "sample", "interpolate"))


def capabilities(model: Any, tokenizer: Any) -> dict[str, bool]:
    """:attr:`LoadedModel.supports` of any ``(model, tokenizer)`` pair."""
    from musicfw.engine.infill import InfillTokenizer

    base = tokenizer.base if isinstance(tokenizer, InfillTokenizer) else tokenizer
    latent = is_latent(model)
    chords = False
    if not latent and tokenizer.kind == "categorical":
        try:
            chords = tokenizer.chord_grammar("C", 1) is not None
        except ConfigError:
            chords = False
    return {
        "generate": not latent,
        "infill": isinstance(tokenizer, InfillTokenizer),
        "harmonize": callable(getattr(base, "decode_voices", None)) and len(getattr(base, "voices", ())) >= 2,
        "controls": bool(tuple(getattr(base, "controls", ()) or ())) and hasattr(base, "control_plan"),
        "chords": chords,
        "latent": latent,
    }


@dataclass
class ModelSource:
    """A run folder, an exported folder or a shipped model, opened: its config read, nothing
    built.  ``kind``: "run", "folder" or "shipped"; ``label``: what to call it in messages (the
    run's path, or ``--model`` as given); ``path``: the run folder or the exported folder;
    ``samples``: where outputs go by default (``RUN/samples``, else ``./samples``)."""

    kind: str
    label: str
    path: Path
    config: Any
    samples: Path
    checkpoint: str = "auto"
    _loaded: LoadedModel | None = field(default=None, repr=False)

    @property
    def sampler(self) -> Any:
        return self.config.get("sampler")

    def load(self, registries: Any = None) -> LoadedModel:
        """The model and its tokenizer (built once per source)."""
        if self._loaded is not None:
            return self._loaded
        if self.kind == "run":
            from musicfw.engine.training import load_model

            model, tokenizer = load_model(self.path, which=self.checkpoint, registries=registries, config=self.config)
        else:
            from musicfw.engine.pretrained import load_pretrained

            model, tokenizer = load_pretrained(self.path, registries=registries)
        self._loaded = LoadedModel(model, tokenizer, self.config, self)
        return self._loaded


def open_model(
    run: str | Path | None = None,
    model: str | Path | None = None,
    *,
    checkpoint: str | None = "auto",
    registries: Any = None,
    flag: str = "--model",
) -> ModelSource:
    """``run`` (a run folder) or ``model`` (a shipped model's name, an exported folder, or
    ``hf:OWNER/NAME``), opened: the config read and checked, the plugins it names present.
    ``checkpoint`` applies to a run (None = "auto"); with a folder anything but "auto"/None is
    a ConfigError.  ``flag``: how messages name ``model``."""
    if (run is None) == (model is None):
        raise ConfigError("give a run folder (--run RUN) or a model (--model NAME|FOLDER), one of them.")
    if run is not None:
        from musicfw.engine.rundir import RunFolder, load_run_config

        folder = RunFolder.open(run)
        config = load_run_config(folder.path, registries=registries)
        return ModelSource("run", str(folder.path), folder.path, config, folder.samples, checkpoint or "auto")
    if checkpoint not in (None, "auto"):
        raise ConfigError("--checkpoint applies to --run; an exported or pretrained model holds one set of weights.")
    from musicfw.engine import zoo
    from musicfw.engine.pretrained import HUB_PREFIX, generation_defaults, resolve

    text = str(model)
    kind = "folder"
    if not text.startswith(HUB_PREFIX) and not Path(text).exists():
        if zoo.looks_like_name(text):
            kind = "shipped"  # zoo.resolve: an unknown name lists the installed ones
        else:
            raise ConfigError(f"{flag} {text}: no such folder (musicfw export --run RUN OUT_DIR makes one). {zoo.hint()}")
    path = resolve(text)  # a shipped model's files checked against their sha256; a Hub model downloaded
    config = generation_defaults(path, registries)
    return ModelSource(kind, text, path, config, Path("samples"))


def load(run: str | Path | None = None, model: str | Path | None = None, *, checkpoint: str | None = "auto",
         registries: Any = None, require: str | None = None) -> LoadedModel:
    """:func:`open_model` then :meth:`ModelSource.load`; with ``require``, the model must
    support it (:meth:`LoadedModel.require`)."""
    loaded = open_model(run, model, checkpoint=checkpoint, registries=registries).load(registries)
    if require is not None:
        loaded.require(require)
    return loaded


def open_any(source: str | Path, *, checkpoint: str | None = "auto", registries: Any = None) -> ModelSource:
    """The Python API's ``source``: a run folder (it holds a config.yaml), else whatever
    ``--model`` takes (an exported folder, ``hf:OWNER/NAME``, a shipped model's name)."""
    if (Path(str(source)) / "config.yaml").is_file():
        return open_model(run=source, checkpoint=checkpoint, registries=registries)
    return open_model(model=source, checkpoint=None if checkpoint == "auto" else checkpoint, registries=registries)
