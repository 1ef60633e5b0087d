"""The experiment runner: data -> tokenizer -> model -> train -> generate -> evaluate -> report.

It only strings stages together; each stage lives in its own module (data, training,
generation, evaluation, report) and can be rerun on a run folder from the CLI.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .errors import ConfigError, UserError
from .rundir import RunFolder


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    samples: list[Path] = field(default_factory=list)
    report: Path | None = None

    def summary(self) -> str:
        lines = [f"run folder: {self.run_dir}"]
        mids = [p for p in self.samples if p.suffix == ".mid"]
        if mids:
            lines.append(f"samples:    {mids[0].parent} ({len(mids)} MIDI files)")
        if self.report is not None:
            lines.append(f"report:     {self.report}")
        return "\n".join(lines)


class Progress:
    """Stage-by-stage progress on stderr: ``[2/6] tokenizer: remi (vocab 300) 0.1 s``."""

    def __init__(self, total: int, stream: Any = None):
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()

    def stage(self, name: str, detail: str = "") -> "_Stage":
        self.done += 1
        return _Stage(self, name, detail)

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class _Stage:
    def __init__(self, progress: Progress, name: str, detail: str):
        self.progress, self.name, self.detail = progress, name, detail

    def __enter__(self) -> "_Stage":
        self.t0 = time.perf_counter()
        p = self.progress
        p.say(f"[{p.done}/{p.total}] {self.name}{': ' + self.detail if self.detail else ''} ...")
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.progress.say(f"      {self.name} done in {time.perf_counter() - self.t0:.1f} s")


def _check_sampler_kind(sampler: Any, tokenizer: Any) -> None:
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


def run_experiment(config: DictConfig, resume: str | Path | None = None) -> RunResult:
    """Run every stage of a validated experiment config into a (new or resumed) run folder."""
    from .api import build_from_section, get_registries
    from .seeding import seed_everything

    registries = get_registries()
    # sampler and tokenizer first: a mismatch must fail before a run folder is made
    from .generation import build_sampler_chain

    sampler = build_sampler_chain(config.sampler, registries=registries)
    tokenizer = build_from_section("tokenizers", config.tokenizer, registries=registries)
    _check_sampler_kind(sampler, tokenizer)
    # the model too (seeded, as before): a bad model value must fail before a run folder is made
    seed_everything(int(config.seed))
    model = build_from_section("models", config.model, registries=registries, tokenizer=tokenizer)
    _check_context(model, config, tokenizer)

    run = RunFolder.open(resume) if resume else RunFolder.create(config.output_dir, config.name)
    result = RunResult(run.path)
    progress = Progress(total=5)
    progress.say(f"musicfw run {config.name!r} -> {run.path}")
    if not resume:
        run.save_config(config)
    seed_everything(int(config.seed))
    tokenizer.save(run.tokenizer_path)

    from .data import build_datamodule

    with progress.stage("data", f"{config.data.name} -> {tokenizer.name} tokens"):
        try:
            datamodule = build_datamodule(config, tokenizer, run.path)
        except UserError:
            if not resume:  # nothing was made yet but the config: leave no half-empty run behind
                shutil.rmtree(run.path, ignore_errors=True)
            raise
        summary = datamodule.summary()
        progress.say(f"      {_format_data_summary(summary)}")

    from .training import fit, load_model

    with progress.stage("train", f"{config.model.name}"):
        fit_metrics = fit(model, datamodule, config, run.path, resume=bool(resume))
        model, _ = load_model(run.path)

    from .generation import generate, write_samples

    gen = config.generate
    with progress.stage("generate", f"{gen.n} samples with {sampler!r}"):
        generated = generate(
            model,
            tokenizer,
            sampler,
            n=gen.n,
            batch_size=gen.batch_size,
            max_tokens=gen.max_tokens,
            max_bars=gen.max_bars,
            max_seconds=gen.max_seconds,
            prompt=gen.prompt,
            constraints=gen.constraints,
            seed=int(config.seed),
        )
        result.samples = write_samples(
            generated, run.samples, render_audio=gen.render_audio, soundfont=gen.soundfont
        )
        _log_samples(run.path, config, result.samples)

    if config.evaluate.enabled:
        from .evaluation import evaluate_run

        with progress.stage("evaluate", ", ".join(m.name for m in config.evaluate.metrics)):
            result.metrics = evaluate_run(
                config,
                run.path,
                model=model,
                tokenizer=tokenizer,
                datamodule=datamodule,
                generated=generated.scores,
                fit_metrics=fit_metrics,
            )
    else:
        progress.stage("evaluate", "skipped (evaluate.enabled: false)")
        result.metrics = dict(fit_metrics)
        import json

        run.metrics_path.write_text(json.dumps({"training": fit_metrics}, indent=1, default=float))

    from .report import write_report

    with progress.stage("report"):
        result.report = write_report(run.path)
    progress.say(f"finished in {time.perf_counter() - progress.t0:.0f} s")
    return result


def _check_context(model: Any, config: DictConfig, tokenizer: Any) -> None:
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
        from .generation import _load_prompt

        n = len(_load_prompt(config.generate.prompt, tokenizer))
        if n > ctx:
            raise ConfigError(
                f"Invalid config: generate.prompt {config.generate.prompt} is {n} {tokenizer.name} tokens, "
                f"longer than the model's max_context ({ctx}); use a shorter prompt or raise model.max_context."
            )


def _log_samples(run_dir: Path, config: DictConfig, paths: list[Path]) -> None:
    if not config.logger.log_samples or config.logger.name == "none":
        return
    from .training import log_samples

    images = [p for p in paths if p.suffix == ".png"]
    audio = [p for p in paths if p.suffix == ".wav"]
    log_samples(run_dir, images, audio)


def _format_data_summary(summary: dict[str, Any]) -> str:
    parts = []
    for key in ("pieces", "notes", "splits", "skipped"):
        if key in summary:
            value = summary[key]
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            elif isinstance(value, list):
                value = len(value)
            parts.append(f"{key}: {value}")
    return "; ".join(parts) or str(summary)
