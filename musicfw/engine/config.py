"""Experiment configuration: omegaconf structured configs with user-friendly errors.

An experiment YAML has ``name``, ``seed``, ``output_dir``, the plugin sections ``data``
(a dataset), ``tokenizer``, ``model``, ``sampler`` (one section or a chain), and the plain
sections ``train``, ``generate``, ``evaluate`` and ``logger``.  A plugin section is
``{name: <plugin>, <param>: <value>, ...}`` and is validated against that plugin's ``Config``
dataclass.  Every mistake becomes a :class:`~musicfw.core.errors.ConfigError` naming the
file, the line (where it can be found), the full key path, and what is allowed.

The sections below declare what each field allows on the field itself (``choice`` and
``bounded`` from :mod:`musicfw.core.params`), as plugin ``Config`` dataclasses do, and one pass
(:func:`musicfw.core.params.check_values`) checks them all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from musicfw.core.errors import ConfigError
from musicfw.core.params import Source, bounded, check_values, choice, schema_error, validate_plugin_section

# --------------------------------------------------------------------------------------
# The schema of the non-plugin sections
# --------------------------------------------------------------------------------------


@dataclass
class InfillSection:
    """Bar infilling (musicfw/engine/infill.py): some training windows become
    infilling examples, so the model learns to fill bars between a left and a right context."""

    enabled: bool = field(
        default=False,
        metadata={"help": "train to infill bars too: appends 3 marker tokens to the vocabulary "
                  "(Infill_Fill, Infill_Sep, Infill_End; ids of the tokenizer's tokens unchanged); "
                  "needs a tokenizer with bar tokens (remi)"},
    )
    probability: float = bounded(
        0.5, ge=0, le=1, help="share of training windows turned into infilling examples (the rest: plain continuation)"
    )
    layout: str = choice(
        "spm", ("spm", "mmm"),
        "where the bars to fill go: spm (the right context first, then the left context and the bars in plain "
        "order, so they follow their left context as in continuation; Bavarian et al. 2022) or mmm (the bars moved "
        "after the right context, each closed by an End marker; Ens & Pasquier 2020); docs/infill.md, \"Measured\"",
    )
    min_bars: int = bounded(1, ge=1, help="fewest bars masked in an infilling example")
    max_bars: int = bounded(4, ge=1, help="most bars masked in an infilling example (>= min_bars)")


@dataclass
class TrainSection:
    """How neural models are trained (Lightning ``Trainer`` options and the optimizer)."""

    max_epochs: int = bounded(
        10, ge=-1,
        help="passes over the train split (an epoch draws as many random windows as the split holds "
        "seq_len-long stretches); -1: no limit",
    )
    max_steps: int = bounded(
        -1, ge=-1,
        help="optimizer steps at most; -1: no limit (max_epochs decides); 0: no training, "
        "the run samples and evaluates its starting weights (init_from's: fine-tuning's 'before')",
    )
    batch_size: int = bounded(32, ge=1, help="training windows per optimizer step (and pieces per evaluation batch)")
    seq_len: int = bounded(256, ge=1, help="length of random training windows")
    lr: float = bounded(1e-3, gt=0, help="peak learning rate (AdamW unless the model configures its own optimizer)")
    lr_schedule: str = choice(
        "constant", ("constant", "cosine", "plateau"),
        "after warm-up: constant, cosine decay over the run, or multiply by lr_plateau_factor when the validation NLL stalls",
    )
    warmup_steps: int = bounded(0, ge=0, help="linear learning-rate warm-up over this many optimizer steps")
    weight_decay: float = bounded(0.0, ge=0, help="AdamW weight decay")
    gradient_clip_val: float = bounded(1.0, ge=0, help="clip the gradient norm to this (0: no clipping)")
    precision: str = choice(
        "32-true", ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true"),
        "Lightning's Trainer precision",
    )
    accelerator: str = choice(
        "auto", ("auto", "cpu", "gpu", "cuda", "mps", "tpu"), "Lightning's Trainer accelerator"
    )
    devices: Any = field(default="auto", metadata={"help": "per node: a count, a list of ids, or auto"})
    strategy: str = field(default="auto", metadata={"help": "auto, ddp, ddp_spawn, fsdp, ... (Lightning's)"})
    num_nodes: int = bounded(1, ge=1, help="machines of a multi-node run (see docs/scaling.md)")
    early_stopping_patience: int = bounded(0, ge=0, help="stop after this many validations without a better val NLL; 0 disables")
    num_workers: int = bounded(0, ge=0, help="DataLoader worker processes (0: load in the main process)")
    limit_train_batches: float = bounded(1.0, gt=0, help="share (<= 1.0) or number of training batches per epoch")
    limit_val_batches: float = bounded(1.0, ge=0, help="share (<= 1.0) or number of validation batches per check")
    check_val_every_n_epoch: int = bounded(1, ge=1, help="validate every N epochs")
    window_align: int = bounded(
        1, ge=1,
        help="training windows start at multiples of this many tokens (bar-aligned windows for fixed-rate tokenizers)",
    )
    checkpoint_every_n_steps: int = bounded(200, ge=0, help="also save checkpoints/last.ckpt every N optimizer steps (0: epoch ends only)")
    accumulate_grad_batches: int = bounded(1, ge=1, help="batches summed per optimizer step")
    lr_plateau_factor: float = bounded(0.5, gt=0, lt=1, help="lr_schedule plateau: multiply lr by this")
    lr_plateau_patience: int = bounded(2, ge=0, help="lr_schedule plateau: epochs without improvement")
    freeze: list = field(
        default_factory=list,
        metadata={"help": "parameter-name prefixes not trained (fine-tuning), e.g. [encoder] or [embed, lstm]"},
    )
    infill: InfillSection = field(
        default_factory=InfillSection,
        metadata={"help": "bar infilling: {enabled, probability, layout, min_bars, max_bars} (section train.infill below; docs/infill.md)"},
    )


@dataclass
class GenerateSection:
    """How many samples to generate after training, and when each one stops."""

    n: int = bounded(8, ge=1, help="samples generated after training")
    batch_size: int = bounded(8, ge=1, help="samples generated together")
    max_tokens: Optional[int] = bounded(
        None, ge=1,
        help="new tokens per sample at most; empty: 512, or sized from max_seconds / "
        "max_bars and the training data's tokens per second / per bar (musicfw/engine/budget.py)",
    )
    max_bars: Optional[int] = bounded(None, ge=1, help="stop a sample after this many new bars")
    max_seconds: Optional[float] = bounded(None, gt=0, help="stop a sample after this many seconds of new music")
    prompt: Optional[str] = field(default=None, metadata={"help": "a MIDI file to continue"})
    chords: Any = field(
        default=None,
        metadata={"help": "a chord progression placed by constrained decoding, one chord per bar "
                  "(\"C G Am F\"; \"C G | Am F\": two chords in the first bar) or a list of bars; "
                  "repeats when the piece is longer; needs tokenizer remi with use_chords: true "
                  "(docs/tokenizers.md)"},
    )
    controls: Any = field(
        default=None,
        metadata={"help": "attribute controls forced after every bar: \"density=4,pitch_range=high\" or "
                  "{density: 4, pitch_range: high} (levels 0..control_levels-1 or low/mid/high), or a list, "
                  "one per bar, repeated; unset attributes are sampled; needs tokenizer remi with controls "
                  "(docs/tokenizers.md)"},
    )
    constraints: bool = field(
        default=True, metadata={"help": "mask tokens the tokenizer's grammar forbids (remi, midi_like), so nothing is dropped"}
    )
    render_audio: bool = field(default=True, metadata={"help": "write a .wav per sample (needs a General MIDI soundfont)"})
    soundfont: Optional[str] = field(
        default=None,
        metadata={"help": "an .sf2/.sf3 file; empty: $MUSICFW_SOUNDFONT, then the Debian paths "
                  "(timgm6mb-soundfont, fluid-soundfont-gm)"},
    )


@dataclass
class EvaluateSection:
    """Which metrics to compute, against which held-out split."""

    enabled: bool = field(default=True, metadata={"help": "false: skip the evaluation stage"})
    metrics: list = field(
        default_factory=lambda: ["nll", "yang_lerch", "muspy", "control_adherence"],
        metadata={"help": "metric plugins, by name or as {name: ..., params} (see musicfw plugins); "
                  "control_adherence measures only runs whose tokenizer has controls"},
    )
    reference_split: str = choice(
        "test", ("train", "valid", "test"), "the held-out split the likelihood and the generated set are measured against"
    )
    max_reference: int = bounded(100, ge=1, help="reference pieces compared with the samples at most")


@dataclass
class LoggerSection:
    """Where training curves go: ``name`` picks a logger plugin (wandb, csv, tensorboard, none,
    or one a package adds; `musicfw plugins` lists them and their own parameters, e.g. wandb's
    ``project`` and ``offline``). W&B runs offline by default: no account, no network. The keys
    below are read by musicfw itself, whichever logger is chosen."""

    name: str = field(
        default="wandb",
        metadata={"help": "a logger plugin: wandb, csv, tensorboard, none, or one a package adds (all write inside the run folder)"},
    )
    log_every_n_steps: int = bounded(10, ge=1, help="log the training loss every N optimizer steps")
    log_samples: bool = field(default=True, metadata={"help": "log the samples' piano rolls and audio to the logger"})


@dataclass
class AugmentSection:
    """Data augmentation of the training split, drawn afresh per sample per epoch.

    Transposition never wraps: with ``out_of_range: drop`` notes pushed outside the
    tokenizer's pitch range are dropped; with ``refuse`` only shifts that keep every note in
    range are drawn (none possible: the piece stays untransposed).  Time stretch scales the
    tempo (performance speed, as Magenta's Performance RNN did), not the notated rhythm, so
    tokenizers that count time in beats are unaffected by it.
    """

    transpose: list = field(
        default_factory=lambda: [0, 0],
        metadata={"help": "[lowest, highest] semitone shift, drawn uniformly (e.g. [-5, 6])"},
    )
    time_stretch: list = bounded(
        [1.0], gt=0, min_items=1,
        help="tempo stretch factors drawn uniformly (e.g. [0.95, 0.975, 1.0, 1.025, 1.05])",
    )
    velocity_jitter: int = bounded(0, ge=0, help="each note's velocity moves by up to this much (uniform)")
    out_of_range: str = choice(
        "drop", ("drop", "refuse"), "notes transposed out of the tokenizer's pitch range"
    )


DEFAULT_SAMPLER = {"name": "top_p"}

PLUGIN_SLOTS = {
    # section key -> registry kind
    "data": "datasets",
    "tokenizer": "tokenizers",
    "model": "models",
    "sampler": "samplers",
}


@dataclass
class Experiment:
    """The top level of an experiment YAML."""

    name: str = field(default="experiment", metadata={"help": "run folders are OUTPUT_DIR/NAME-TIMESTAMP/"})
    seed: int = bounded(0, ge=0, le=2**32 - 1, help="one seed for splits, initialisation and sampling (numpy's range)")
    output_dir: str = field(default="runs", metadata={"help": "where run folders go"})
    init_from: Optional[str] = field(
        default=None,
        metadata={"help": "weights that start this run (fine-tuning; same tokenizer and model): a trained run folder, "
                  "an installed pretrained model's name (musicfw models) or a folder made by musicfw export"},
    )
    data: Any = field(default=None, metadata={"help": "a dataset plugin section {name: ..., params} (see musicfw plugins)"})
    tokenizer: Any = field(default=None, metadata={"help": "a tokenizer plugin section (see musicfw plugins)"})
    model: Any = field(default=None, metadata={"help": "a model plugin section (see musicfw plugins)"})
    # one section or a list (a chain); None means DEFAULT_SAMPLER
    sampler: Any = field(
        default=None, metadata={"help": "a sampler plugin section, or a list of them applied in order (default: {name: top_p})"}
    )
    train: TrainSection = field(default_factory=TrainSection)
    generate: GenerateSection = field(default_factory=GenerateSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    logger: Any = field(
        default=None,
        metadata={"help": "the logger: {name: wandb | csv | tensorboard | none | a plugin's, its parameters, "
                  "log_every_n_steps, log_samples} (default: {name: wandb}, offline; see `musicfw config logger`)"},
    )
    augment: AugmentSection = field(default_factory=AugmentSection)
    #: what one piece may cost (max_notes, max_seconds, ...; see docs/reliability.md); keys
    #: given here replace the defaults and MUSICFW_LIMITS
    limits: Any = field(
        default=None,
        metadata={"help": "what one piece may cost, e.g. {max_notes: 500000, on_exceed: cut} (docs/reliability.md)"},
    )


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


#: an experiment file is a page of YAML; these bounds stop hostile ones before they cost memory
MAX_YAML_BYTES = 1_000_000
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 50


def _check_expanded_size(data: Any, path: Path) -> None:
    """Refuse YAML whose aliases expand to a huge tree ("billion laughs"), that refers to
    itself, or that nests absurdly deep -- before omegaconf copies it."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any, depth: int) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{path} refers to itself (a YAML alias inside its own anchor); write the values out.")
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{path} nests more than {MAX_YAML_DEPTH} levels deep; an experiment is a few levels deep.")
        active.add(key)
        children = node.values() if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_YAML_NODES:
                raise ConfigError(
                    f"{path} expands to more than {MAX_YAML_NODES:,} values (YAML aliases repeating "
                    "large blocks?); an experiment file is far smaller."
                )
        active.discard(key)
        sizes[key] = total
        return total

    size(data, 0)


def _read_yaml(path: Path) -> tuple[DictConfig, str]:
    import yaml

    if not path.exists():
        raise ConfigError(f"Experiment file not found: {path}")
    if path.is_dir():
        raise ConfigError(f"Expected an experiment YAML file, got a folder: {path}")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise ConfigError(f"{path} is {path.stat().st_size:,} bytes; an experiment file is at most {MAX_YAML_BYTES:,}.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}): save the experiment file as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"Malformed YAML in {path}{where}: {problem}.") from None
    except RecursionError:
        raise ConfigError(f"{path} nests deeper than YAML can be read; an experiment is a few levels deep.") from None
    _check_expanded_size(data, path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a mapping of sections (name, seed, data, tokenizer, model, ...), "
            f"not a {type(data).__name__}."
        )
    try:
        return OmegaConf.create(data), text
    except OmegaConfBaseException as exc:
        raise ConfigError(f"Cannot read {path}: {exc}") from None


def _parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"Override {item!r} is not of the form key=value "
                "(for example model.hidden_size=256 or train.max_epochs=3)."
            )
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"Cannot parse the command-line overrides: {exc}") from None


def _validate_logger(raw: Any, registries: Any, source: Source, saved: bool = False) -> DictConfig:
    """``logger:``: the engine's own keys (:class:`LoggerSection`) and the chosen logger
    plugin's parameters (validated against its ``Config`` like any plugin section).

    ``saved``: the config.yaml of a run folder.  Folders written before loggers were plugins
    saved every logger key (wandb's ``project`` and ``offline`` too) whatever the logger; in
    them, keys the chosen logger does not declare are dropped instead of refused."""
    if raw is None:
        raw = OmegaConf.create({})
    elif isinstance(raw, str):
        raw = OmegaConf.create({"name": raw})
    if not isinstance(raw, DictConfig):
        raise ConfigError(
            f"Invalid config{source.at('logger')}: logger must be a section such as {{name: csv}}, "
            f"not {type(raw).__name__}."
        )
    engine = {f.name for f in dataclasses.fields(LoggerSection)} - {"name"}
    own = OmegaConf.create({k: v for k, v in raw.items() if k in engine})
    rest = OmegaConf.create({k: v for k, v in raw.items() if k not in engine})
    if "name" not in rest:
        rest["name"] = LoggerSection.name
    # `logger.name=none` on the command line switches the logger off whatever the file's logger
    # was: the file's parameters of that other logger are dropped (those given on the command
    # line are still checked), as are a saved run folder's keys of other loggers
    overridden = {item.split("=", 1)[0].strip() for item in source.overrides}
    if (saved or "logger.name" in overridden) and rest["name"] in registries["loggers"]:
        declared = {f.name for f in dataclasses.fields(registries["loggers"].get(rest["name"]).Config)} | {"name"}
        rest = OmegaConf.create({k: v for k, v in rest.items() if k in declared or f"logger.{k}" in overridden})
    try:
        common = OmegaConf.merge(OmegaConf.structured(LoggerSection), own)
    except OmegaConfBaseException as exc:
        raise schema_error(exc, source, "logger") from None
    check_values(common, LoggerSection, source, "logger")
    plugin = validate_plugin_section(rest, "loggers", registries, "logger", source)
    merged = OmegaConf.create(OmegaConf.to_container(plugin))
    for key in sorted(engine, key=[f.name for f in dataclasses.fields(LoggerSection)].index):
        merged[key] = common[key]
    return merged


def _validate_slots(cfg: DictConfig, registries: Any, source: Source) -> None:
    for key, kind in PLUGIN_SLOTS.items():
        raw = cfg.get(key)
        if raw is None:
            continue
        if isinstance(raw, ListConfig):
            if key != "sampler":
                raise source.error(key, f"{key} must be one section, not a list.")
            cfg[key] = [
                validate_plugin_section(item, kind, registries, f"{key}[{i}]", source)
                for i, item in enumerate(raw)
            ]
        else:
            cfg[key] = validate_plugin_section(raw, kind, registries, key, source)
    metrics = cfg.evaluate.metrics
    cfg.evaluate.metrics = [
        validate_plugin_section(m, "metrics", registries, f"evaluate.metrics[{i}]", source)
        for i, m in enumerate(metrics)
    ]


def load_config(
    path: str | Path | dict | DictConfig | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    registries: Any = None,
    saved: bool = False,
) -> DictConfig:
    """Load an experiment (a YAML path, a dict, or nothing for the defaults), apply
    ``key=value`` overrides, and validate every section.  Raises ConfigError/PluginError.
    ``saved``: the config.yaml of a run folder (see :func:`_validate_logger`)."""
    from musicfw.core.plugins import load_registries

    registries = registries if registries is not None else load_registries()
    overrides = list(overrides)
    if path is None:
        raw, source = OmegaConf.create({}), Source(None, None, overrides)
    elif isinstance(path, (dict, DictConfig)):
        raw, source = OmegaConf.create(path if isinstance(path, dict) else OmegaConf.to_container(path)), Source(None, None, overrides)
    else:
        p = Path(path)
        raw, text = _read_yaml(p)
        source = Source(p, text, overrides)
    override_cfg = _parse_overrides(overrides)

    # plugin slots are validated separately (their schema depends on the chosen name)
    schema = OmegaConf.structured(Experiment)
    try:
        merged = OmegaConf.merge(schema, raw)
    except OmegaConfBaseException as exc:
        raise schema_error(exc, source) from None
    try:
        merged = OmegaConf.merge(merged, override_cfg)
    except OmegaConfBaseException as exc:
        raise schema_error(exc, source) from None
    except TypeError:  # a dict override onto a list (or back): omegaconf cannot merge them
        key = next(
            (k for k in override_cfg if isinstance(merged.get(k), ListConfig) != isinstance(override_cfg[k], ListConfig)),
            "?",
        )
        raise ConfigError(
            f"Invalid command-line override of `{key}`: it is a list (a chain) in {source.path or 'the config'}, "
            f"so a key inside it cannot be overridden. Replace the whole value instead, e.g. "
            f"'{key}=[{{name: bernoulli}}]'."
        ) from None
    try:  # interpolations (${a.b}, ${oc.env:VAR}) resolve once, here
        OmegaConf.resolve(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        msg = str(exc).strip().splitlines()[0]
        raise source.error(str(key), f"cannot resolve the interpolation at {key}: {msg}") from None
    check_values(merged, Experiment, source)
    for key in ("data", "tokenizer", "model"):
        if merged.get(key) is None:
            names = ", ".join(registries[PLUGIN_SLOTS[key]].names()) or "(none installed)"
            raise source.error(key, f"the `{key}` section is missing. Give it as {{name: ...}} with one of: {names}.")
    plain = OmegaConf.create(OmegaConf.to_container(merged))  # drop the schema's typing on slots
    if plain.sampler is None:
        plain.sampler = dict(DEFAULT_SAMPLER)
    plain.logger = _validate_logger(plain.get("logger"), registries, source, saved)
    if plain.get("limits") is not None:
        from musicfw.music.limits import Limits

        raw_limits = plain.limits
        if not isinstance(raw_limits, DictConfig):
            raise source.error("limits", "limits must be a mapping such as {max_notes: 500000}.")
        Limits.from_mapping(OmegaConf.to_container(raw_limits), base=Limits.from_env(), where="limits")
    _validate_slots(plain, registries, source)
    return plain


def train_section(train: Any = None) -> DictConfig:
    """The ``train:`` section (a mapping, a TrainSection or None) with every default filled in."""
    return OmegaConf.merge(OmegaConf.structured(TrainSection), train or {})


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def plugin_params(section: DictConfig) -> dict[str, Any]:
    """A validated plugin section as keyword arguments (without ``name``)."""
    params = OmegaConf.to_container(section, resolve=True)
    assert isinstance(params, dict)
    params.pop("name", None)
    return params
