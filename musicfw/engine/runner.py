"""The experiment runner: data -> tokenizer -> model -> train -> generate -> evaluate -> report.

It only strings stages together; each stage lives in its own module (data, training,
generation, evaluation, report) and can be rerun on a run folder from the CLI.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig

from musicfw.core.errors import ConfigError, UserError
from musicfw.engine.rundir import RunFolder


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


def run_experiment(config: DictConfig, resume: str | Path | None = None, registries: Any = None) -> RunResult:
    """Run every stage of a validated experiment config into a (new or resumed) run folder.

    ``config`` comes from :func:`musicfw.engine.config.load_config` (validated once there); each
    stage gets only its own sections.  ``registries``: the plugins of this invocation (loaded
    here when None).
    """
    from omegaconf import OmegaConf

    from musicfw.core.build import build_from_section
    from musicfw.engine.generation import build_sampler_chain
    from musicfw.core.plugins import load_registries

    if registries is None:
        registries = load_registries()
    if config.get("limits") is not None:
        from musicfw.music.limits import Limits, configure

        configure(Limits.from_mapping(OmegaConf.to_container(config.limits), base=Limits.from_env(), where="limits"))
    # sampler and tokenizer first: a mismatch must fail before a run folder is made
    sampler = build_sampler_chain(config.sampler, registries=registries)
    tokenizer = build_from_section("tokenizers", config.tokenizer, registries=registries, key="tokenizer")
    _check_sampler_kind(sampler, tokenizer)
    from musicfw.engine.generation import check_chords, chords_setting

    chords = chords_setting(config.generate.chords)
    if chords is not None:  # an unknown chord name or a tokenizer without chords: before training
        check_chords(tokenizer, chords, bool(config.generate.constraints))
    # Every mistake is found before a run folder exists: the model's parameters too (a probe
    # build, discarded: the real model is built after seeding, where it always was, so a seed
    # gives the same weights as before), and the files the generate stage will read.
    probe = build_from_section("models", config.model, registries=registries, key="model", tokenizer=tokenizer)
    _check_context(probe, config, tokenizer)
    if config.get("init_from"):
        from musicfw.engine.training import init_from_run

        init_from_run(probe, tokenizer, config.init_from)  # same tokenizer, weights that fit
    if list(config.train.freeze):
        from musicfw.engine.training import freeze

        if not probe.trainable:
            raise ConfigError("train.freeze: the model is fitted by counting; there are no parameters to freeze.")
        freeze(probe, list(config.train.freeze))  # every prefix names a part of the model
    if probe.trainable:
        from musicfw.engine.training import check_hardware

        check_hardware(config.train)  # e.g. strategy=fsdp on the CPU
    del probe
    for key in ("prompt", "soundfont"):
        value = config.generate.get(key)
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"Invalid config: generate.{key}: no such file {value!r}.")

    from musicfw.engine.distributed import is_rank_zero, run_folder

    # rank 0 makes the run folder; the other processes of a multi-process run join it, train,
    # and stop after training (docs/scaling.md)
    worker = not is_rank_zero()
    run = run_folder(config, resume)
    result = RunResult(run.path)
    progress = Progress(total=5, stream=open(os.devnull, "w") if worker else None)
    progress.say(f"musicfw run {config.name!r} -> {run.path}")
    if not resume and not worker:
        run.save_config(config)
    _seed_everything(int(config.seed))
    if not worker:
        tokenizer.save(run.tokenizer_path)

    from musicfw.engine.data import build_datamodule

    with progress.stage("data", f"{config.data.name} -> {tokenizer.name} tokens"):
        try:
            datamodule = build_datamodule(
                config.data, tokenizer, train=config.train, augment=config.get("augment"),
                seed=int(config.seed), run_dir=None if worker else run.path, registries=registries,
            )
        except UserError:
            if not resume and not worker:  # nothing was made yet but the config: leave no half-empty run behind
                shutil.rmtree(run.path, ignore_errors=True)
            raise
        summary = datamodule.summary()
        progress.say(f"      {_format_data_summary(summary)}")
        if summary.get("split"):  # split unit and leakage (musicfw/engine/splits.py); metrics.json has it too
            from musicfw.engine.splits import format_split_report

            progress.say(f"      {format_split_report(summary['split'])}")
        lost = summary.get("not_represented") or {}
        if lost.get("dropped"):
            reasons = ", ".join(f"{why}: {n:,}" for why, n in sorted(lost["reasons"].items(), key=lambda kv: -kv[1]))
            progress.say(
                f"      note: the {tokenizer.name} tokenizer cannot represent {lost['dropped']:,} of "
                f"{lost['notes']:,} notes ({100 * lost['dropped'] / max(lost['notes'], 1):.1f}%; {reasons})"
            )
        from musicfw.engine.budget import measure_token_rates, save_rates

        if not worker:
            save_rates(run.path, measure_token_rates(datamodule))  # sizes generate's token budget
        from musicfw.engine.datacheck import small_split_warnings

        for warning in small_split_warnings(summary["splits"], config.data, str(config.evaluate.reference_split)):
            progress.say(f"      {warning}")

    model = build_from_section("models", config.model, registries=registries, key="model", tokenizer=tokenizer)
    from musicfw.engine.training import fit, init_from_run, load_model

    if config.get("init_from") and not resume:
        used = init_from_run(model, tokenizer, config.init_from)
        progress.say(f"      model starts from {used}")

    with progress.stage("train", f"{config.model.name}"):
        fit_metrics = fit(
            model, datamodule, config.train, run.path, logger=config.logger,
            hyperparams=OmegaConf.to_container(config, resolve=True), resume=bool(resume),
        )
        if worker:
            result.metrics = dict(fit_metrics)
            return result
        model, _ = load_model(run.path, registries=registries)

    from musicfw.engine.generation import generate, write_samples

    gen = config.generate
    from musicfw.engine.budget import load_rates, token_budget

    max_tokens, budget_how = token_budget(gen.max_tokens, gen.max_bars, gen.max_seconds, load_rates(run.path))
    from musicfw.engine.describe import describe

    from musicfw.engine.progress import Counter

    with progress.stage("generate", f"{gen.n} samples with {describe(sampler)}"), \
            Counter("generate", gen.n, stream=progress.stream) as generating:
        generated = generate(
            model,
            tokenizer,
            sampler,
            n=gen.n,
            batch_size=gen.batch_size,
            max_tokens=max_tokens,
            max_bars=gen.max_bars,
            max_seconds=gen.max_seconds,
            prompt=gen.prompt,
            constraints=gen.constraints,
            seed=int(config.seed),
            chords=chords_setting(gen.chords),
            progress=generating,
        )
        generating.close()
        with Counter("render (MIDI, PNG" + (", WAV)" if gen.render_audio else ")"), gen.n,
                     stream=progress.stream) as writing:
            result.samples = write_samples(
                generated, run.samples, render_audio=gen.render_audio, soundfont=gen.soundfont, progress=writing
            )
        _record_generation(run.samples, progress, generated, gen, int(config.seed), max_tokens, budget_how)
        _log_samples(run.path, config.logger, result.samples)

    if config.evaluate.enabled:
        from musicfw.engine.evaluation import evaluate_run

        with progress.stage("evaluate", ", ".join(m.name for m in config.evaluate.metrics)):
            result.metrics = evaluate_run(
                config.evaluate,
                run.path,
                model=model,
                tokenizer=tokenizer,
                datamodule=datamodule,
                generated=generated.scores,
                fit_metrics=fit_metrics,
                registries=registries,
            )
    else:
        progress.stage("evaluate", "skipped (evaluate.enabled: false)")
        result.metrics = dict(fit_metrics)
        import json

        run.metrics_path.write_text(json.dumps({"training": fit_metrics}, indent=1, default=float))

    from musicfw.engine.report import write_report

    with progress.stage("report"):
        result.report = write_report(run.path)
    progress.say(f"finished in {time.perf_counter() - progress.t0:.0f} s")
    return result


def _seed_everything(seed: int) -> None:
    """One seed for Python, numpy and torch (Lightning's seeding, without its log line)."""
    import logging

    from lightning_fabric.utilities.seed import seed_everything

    logging.getLogger("lightning_fabric.utilities.seed").setLevel(logging.WARNING)
    seed_everything(seed, workers=False, verbose=False)


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
        from musicfw.engine.generation import _load_prompt

        n = len(_load_prompt(config.generate.prompt, tokenizer))
        if n > ctx:
            raise ConfigError(
                f"Invalid config: generate.prompt {config.generate.prompt} is {n} {tokenizer.name} tokens, "
                f"longer than the model's max_context ({ctx}); use a shorter prompt or raise model.max_context."
            )


def evaluate_run_folder(
    run_dir: str | Path, overrides: Sequence[str] = (), report: bool = True, registries: Any = None
) -> dict[str, Any]:
    """Re-run the evaluation stage on an existing run folder (``musicfw evaluate --run``).

    Uses the folder's config.yaml (with ``key=value`` overrides, e.g.
    ``evaluate.max_reference=50``), the checkpoint its model prefers when there is one, its
    samples/*.mid, and keeps the training numbers of a previous metrics.json.  Rewrites
    metrics.json and, with ``report=True``, report.html.
    """
    import json

    from musicfw.core.build import build_from_section
    from musicfw.engine.data import build_datamodule
    from musicfw.core.errors import RunFolderError
    from musicfw.engine.evaluation import evaluate_run, write_metrics
    from musicfw.core.plugins import load_registries
    from musicfw.engine.rundir import load_run_config
    from musicfw.engine.training import load_model

    if registries is None:
        registries = load_registries()
    run = RunFolder.open(run_dir)
    config = load_run_config(run.path, overrides=list(overrides), registries=registries)
    model = tokenizer = None
    problem = None
    try:
        model, tokenizer = load_model(run.path, registries=registries)
    except RunFolderError as exc:
        problem = f"no model to measure the likelihood of: {exc}"
    if tokenizer is None:
        tokenizer = build_from_section("tokenizers", config.tokenizer, registries=registries, key="tokenizer")
    datamodule = build_datamodule(
        config.data, tokenizer, train=config.train, augment=config.get("augment"), seed=int(config.seed),
        run_dir=run.path, registries=registries, progress=False,
    )
    previous: dict[str, Any] = {}
    if run.metrics_path.is_file():
        try:
            previous = json.loads(run.metrics_path.read_text()).get("training") or {}
        except (json.JSONDecodeError, AttributeError):
            previous = {}
    result = evaluate_run(
        config.evaluate, run.path, model=model, tokenizer=tokenizer, datamodule=datamodule,
        fit_metrics=previous, registries=registries,
    )
    if problem:
        result["notes"].insert(0, problem)
        write_metrics(result, run.metrics_path)
    if report:
        from musicfw.engine.report import write_report

        write_report(run.path)
    return result


def _record_generation(
    samples: Path, progress: Progress, generated: Any, gen: Any, seed: int, max_tokens: int, budget_how: str
) -> None:
    """Say which limit stopped the samples and write ``samples/generation.json``."""
    import json

    from musicfw.engine.budget import stop_summary
    from musicfw.engine.generation import chords_setting

    progress.say(f"      max_tokens {max_tokens} ({budget_how}); "
                 + stop_summary(generated.stop_reasons, gen.max_bars, gen.max_seconds, max_tokens))
    record = {
        "settings": {"n": int(gen.n), "max_tokens": max_tokens, "max_tokens_from": budget_how,
                     "max_bars": gen.max_bars, "max_seconds": gen.max_seconds, "seed": seed,
                     "chords": chords_setting(gen.chords)},
        "stop_reasons": list(generated.stop_reasons),
        "stats": generated.stats,
    }
    (samples / "generation.json").write_text(json.dumps(record, indent=1, default=str) + "\n")


def _log_samples(run_dir: Path, logger: Any, paths: list[Path]) -> None:
    if not logger.log_samples or logger.name == "none":
        return
    from musicfw.engine.training import log_samples

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
