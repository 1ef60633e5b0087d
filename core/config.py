"""Experiment configuration: omegaconf structured configs with user-friendly errors.

An experiment YAML has ``name``, ``seed``, ``output_dir``, the plugin sections ``data``
(a dataset), ``tokenizer``, ``model``, ``sampler`` (one section or a chain), and the plain
sections ``train``, ``generate``, ``evaluate`` and ``logger``.  A plugin section is
``{name: <plugin>, <param>: <value>, ...}`` and is validated against that plugin's ``Config``
dataclass.  Every mistake becomes a :class:`~musicfw.core.errors.ConfigError` naming the
file, the line (where it can be found), the full key path, and what is allowed.

Dataclass fields may carry ``metadata={"choices": (...)}``; values outside are rejected with
the allowed list (for plugin configs as well as for the sections below).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError

# --------------------------------------------------------------------------------------
# The schema of the non-plugin sections
# --------------------------------------------------------------------------------------


def choice(default: Any, choices: tuple, help: str = "") -> Any:
    """A dataclass field whose value must be one of ``choices``."""
    return field(default=default, metadata={"choices": tuple(choices), "help": help})


@dataclass
class TrainSection:
    """How neural models are trained (Lightning ``Trainer`` options and the optimizer)."""

    max_epochs: int = 10
    max_steps: int = -1
    batch_size: int = 32
    seq_len: int = field(default=256, metadata={"help": "length of random training windows"})
    lr: float = 1e-3
    lr_schedule: str = choice("constant", ("constant", "cosine", "plateau"))
    warmup_steps: int = 0
    weight_decay: float = 0.0
    gradient_clip_val: float = 1.0
    precision: str = choice(
        "32-true", ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
    )
    accelerator: str = choice("auto", ("auto", "cpu", "gpu", "cuda", "mps", "tpu"))
    devices: Any = field(default="auto", metadata={"help": "per node: a count, a list of ids, or auto"})
    strategy: str = field(default="auto", metadata={"help": "auto, ddp, ddp_spawn, fsdp, ... (Lightning's)"})
    num_nodes: int = field(default=1, metadata={"help": "machines of a multi-node run (see docs/scaling.md)"})
    early_stopping_patience: int = field(default=0, metadata={"help": "0 disables"})
    num_workers: int = 0
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    check_val_every_n_epoch: int = 1
    window_align: int = field(
        default=1,
        metadata={"help": "training windows start at multiples of this many tokens (bar-aligned "
                  "windows for fixed-rate tokenizers)"},
    )
    checkpoint_every_n_steps: int = field(
        default=200, metadata={"help": "also save checkpoints/last.ckpt every N optimizer steps (0: epoch ends only)"}
    )
    accumulate_grad_batches: int = 1
    lr_plateau_factor: float = field(default=0.5, metadata={"help": "lr_schedule plateau: multiply lr by this"})
    lr_plateau_patience: int = field(default=2, metadata={"help": "lr_schedule plateau: epochs without improvement"})


@dataclass
class GenerateSection:
    """How many samples to generate after training, and when each one stops."""

    n: int = 8
    batch_size: int = 8
    max_tokens: int = 512
    max_bars: Optional[int] = None
    max_seconds: Optional[float] = None
    prompt: Optional[str] = field(default=None, metadata={"help": "a MIDI file to continue"})
    constraints: bool = True
    render_audio: bool = True
    soundfont: Optional[str] = None


@dataclass
class EvaluateSection:
    """Which metrics to compute, against which held-out split."""

    enabled: bool = True
    metrics: list = field(default_factory=lambda: ["nll", "yang_lerch", "muspy"])
    reference_split: str = choice("test", ("train", "valid", "test"))
    max_reference: int = 100


@dataclass
class LoggerSection:
    """Where training curves go. W&B runs offline by default: no account, no network."""

    name: str = choice("wandb", ("wandb", "csv", "tensorboard", "none"))
    project: str = "musicfw"
    log_every_n_steps: int = 10
    log_samples: bool = True
    offline: bool = field(default=True, metadata={"help": "wandb: keep the run offline in the run folder"})


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
    time_stretch: list = field(
        default_factory=lambda: [1.0],
        metadata={"help": "tempo stretch factors drawn uniformly (e.g. [0.95, 0.975, 1.0, 1.025, 1.05])"},
    )
    velocity_jitter: int = field(
        default=0, metadata={"help": "each note's velocity moves by up to this much (uniform)"}
    )
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

    name: str = "experiment"
    seed: int = 0
    output_dir: str = "runs"
    data: Any = None
    tokenizer: Any = None
    model: Any = None
    sampler: Any = None  # one section or a list (a chain); None means DEFAULT_SAMPLER
    train: TrainSection = field(default_factory=TrainSection)
    generate: GenerateSection = field(default_factory=GenerateSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    logger: LoggerSection = field(default_factory=LoggerSection)
    augment: AugmentSection = field(default_factory=AugmentSection)


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


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


def _read_yaml(path: Path) -> tuple[DictConfig, str]:
    import yaml

    if not path.exists():
        raise ConfigError(f"Experiment file not found: {path}")
    if path.is_dir():
        raise ConfigError(f"Expected an experiment YAML file, got a folder: {path}")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"Malformed YAML in {path}{where}: {problem}.") from None
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
        from .errors import PluginError

        raise PluginError(registry.unknown_message(name, where=f"{key}.name" + (f", {source.locate(key + '.name')[3:]}" if source.path or source.overrides else "")))
    plugin_cls = registry.get(name)
    sec_cls = section_class(plugin_cls)
    try:
        section = OmegaConf.merge(OmegaConf.structured(sec_cls), raw)
    except OmegaConfBaseException as exc:
        raise _schema_error(exc, source, key) from None
    _check_choices(section, sec_cls, source, key)
    return section


def _validate_slots(cfg: DictConfig, registries: Any, source: _Source) -> None:
    for key, kind in PLUGIN_SLOTS.items():
        raw = cfg.get(key)
        if raw is None:
            continue
        if isinstance(raw, ListConfig):
            if key != "sampler":
                raise ConfigError(f"Invalid config{_at(source, key)}: {key} must be one section, not a list.")
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
) -> DictConfig:
    """Load an experiment (a YAML path, a dict, or nothing for the defaults), apply
    ``key=value`` overrides, and validate every section.  Raises ConfigError/PluginError."""
    from .plugins import load_registries

    registries = registries if registries is not None else load_registries()
    overrides = list(overrides)
    if path is None:
        raw, source = OmegaConf.create({}), _Source(None, None, overrides)
    elif isinstance(path, (dict, DictConfig)):
        raw, source = OmegaConf.create(path if isinstance(path, dict) else OmegaConf.to_container(path)), _Source(None, None, overrides)
    else:
        p = Path(path)
        raw, text = _read_yaml(p)
        source = _Source(p, text, overrides)
    override_cfg = _parse_overrides(overrides)

    # plugin slots are validated separately (their schema depends on the chosen name)
    schema = OmegaConf.structured(Experiment)
    try:
        merged = OmegaConf.merge(schema, raw)
    except OmegaConfBaseException as exc:
        raise _schema_error(exc, source) from None
    try:
        merged = OmegaConf.merge(merged, override_cfg)
    except OmegaConfBaseException as exc:
        raise _schema_error(exc, source) from None
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
    _check_choices(merged, Experiment, source, "")
    for key in ("data", "tokenizer", "model"):
        if merged.get(key) is None:
            names = ", ".join(registries[PLUGIN_SLOTS[key]].names()) or "(none installed)"
            raise ConfigError(
                f"Invalid config{_at(source, key)}: the `{key}` section is missing. "
                f"Give it as {{name: ...}} with one of: {names}."
            )
    plain = OmegaConf.create(OmegaConf.to_container(merged))  # drop the schema's typing on slots
    if plain.sampler is None:
        plain.sampler = dict(DEFAULT_SAMPLER)
    _validate_slots(plain, registries, source)
    return plain


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def plugin_params(section: DictConfig) -> dict[str, Any]:
    """A validated plugin section as keyword arguments (without ``name``)."""
    params = OmegaConf.to_container(section, resolve=True)
    assert isinstance(params, dict)
    params.pop("name", None)
    return params
