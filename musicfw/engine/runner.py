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

from musicfw.core.errors import UserError
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


def run_experiment(config: DictConfig, resume: str | Path | None = None, registries: Any = None) -> RunResult:
    """Run every stage of a validated experiment config into a (new or resumed) run folder.

    ``config`` comes from :func:`musicfw.engine.config.load_config` (validated once there); each
    stage gets only its own sections.  ``registries``: the plugins of this invocation (loaded
    here when None).
    """
    from omegaconf import OmegaConf

    from musicfw.core.plugins import load_registries
    from musicfw.engine.assemble import build_experiment

    if registries is None:
        registries = load_registries()
    # one validation pass builds the tokenizer, the sampler chain and the model (seeded), and
    # finds every mistake before a run folder exists; the stages below use these objects
    built = build_experiment(config, registries)
    tokenizer, sampler, model = built.tokenizer, built.sampler, built.model

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
    from musicfw.engine.lifecycle import Lifecycle

    # the lifecycle hooks run in the first process only (plugins see one run, not one per rank)
    life = None if worker else Lifecycle(registries, run.path, OmegaConf.to_container(config, resolve=True))
    if life is not None:
        life.run_started()
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
        if not worker and datamodule.tokenizer_fitted:  # fitted to the training split (remi control_binning: fit)
            tokenizer.save(run.tokenizer_path)
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
    if life is not None:
        life.stage_finished("data", {})

    from musicfw.engine.training import fit, load_into

    if built.init_from is not None and not resume:
        progress.say(f"      model starts from {built.init_from}")

    with progress.stage("train", f"{config.model.name}"):
        fit_metrics = fit(
            model, datamodule, config.train, run.path, logger=config.logger,
            hyperparams=OmegaConf.to_container(config, resolve=True), resume=bool(resume),
            registries=registries,
        )
        if worker:
            result.metrics = dict(fit_metrics)
            return result
        load_into(model, run.path)  # the checkpoint the model prefers, into the same instance
        from musicfw.engine.infill import run_metrics as infill_metrics

        # train.infill: the held-out gaps' NLL given both sides vs the left side only (docs/infill.md)
        fit_metrics = {**fit_metrics, **infill_metrics(model, tokenizer, datamodule, config.train)}
    assert life is not None
    life.stage_finished("train", {"training": dict(fit_metrics)})

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
            chords=built.chords,
            controls=built.controls,
            progress=generating,
        )
        generating.close()
        with Counter("render (MIDI, PNG" + (", WAV)" if gen.render_audio else ")"), gen.n,
                     stream=progress.stream) as writing:
            result.samples = write_samples(
                generated, run.samples, render_audio=gen.render_audio, soundfont=gen.soundfont, progress=writing
            )
        _record_generation(run.samples, progress, generated, gen, int(config.seed), max_tokens, budget_how)
        _log_samples(run.path, config.logger, result.samples, registries)
    life.stage_finished("generate", {"training": dict(fit_metrics)})

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
        life.stage_finished("evaluate", result.metrics)
    else:
        progress.stage("evaluate", "skipped (evaluate.enabled: false)")
        result.metrics = dict(fit_metrics)
        import json

        run.metrics_path.write_text(json.dumps({"training": fit_metrics}, indent=1, default=float))
    # metrics.json as written; what the lifecycle hooks added so far goes in before the report
    written = result.metrics if config.evaluate.enabled else {"training": dict(fit_metrics)}
    life.merge(written, run.metrics_path)

    from musicfw.engine.report import write_report

    with progress.stage("report"):
        result.report = write_report(run.path, registries)
    life.stage_finished("report", written)
    life.run_finished(written)
    if life.merge(written, run.metrics_path):  # numbers added at the end: the page shows them too
        write_report(run.path, registries)
    progress.say(f"finished in {time.perf_counter() - progress.t0:.0f} s")
    return result


def evaluate_run_folder(
    run_dir: str | Path, overrides: Sequence[str] = (), report: bool = True, registries: Any = None,
    samples: str | None = None,
) -> dict[str, Any]:
    """Re-run the evaluation stage on an existing run folder (``musicfw evaluate --run``).

    Uses the folder's config.yaml (with ``key=value`` overrides, e.g.
    ``evaluate.max_reference=50``), the checkpoint its model prefers when there is one, its
    samples/*.mid (or the folder / glob ``samples``, relative to the run folder: see
    :func:`musicfw.engine.evaluation.run_sample_files`), and keeps the training numbers of a
    previous metrics.json.  Rewrites metrics.json and, with ``report=True``, report.html.
    Random draws of the metrics (a MusicVAE's bound samples its latent) come from torch's
    generator seeded with the run's seed, so the same folder gives the same digits each time.
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
        model, tokenizer = load_model(run.path, registries=registries, config=config)
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
    import torch

    # a model whose held-out number draws random numbers (MusicVAE's bound samples z) gives the
    # same digits every time: torch's generator seeded with the run's seed, restored afterwards
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.seed))
        result = evaluate_run(
            config.evaluate, run.path, model=model, tokenizer=tokenizer, datamodule=datamodule,
            fit_metrics=previous, registries=registries, samples=samples,
        )
    if problem:
        result["notes"].insert(0, problem)
        write_metrics(result, run.metrics_path)
    if report:
        from musicfw.engine.report import write_report

        write_report(run.path, registries)
    return result


def _record_generation(
    samples: Path, progress: Progress, generated: Any, gen: Any, seed: int, max_tokens: int, budget_how: str
) -> None:
    """Say which limit stopped the samples and write ``samples/generation.json``."""
    import json

    from musicfw.engine.budget import stop_summary
    from musicfw.engine.generation import chords_setting, controls_setting

    progress.say(f"      max_tokens {max_tokens} ({budget_how}); "
                 + stop_summary(generated.stop_reasons, gen.max_bars, gen.max_seconds, max_tokens))
    record = {
        "settings": {"n": int(gen.n), "max_tokens": max_tokens, "max_tokens_from": budget_how,
                     "max_bars": gen.max_bars, "max_seconds": gen.max_seconds, "seed": seed,
                     "chords": chords_setting(gen.chords), "controls": controls_setting(gen.get("controls"))},
        "stop_reasons": list(generated.stop_reasons),
        "stats": generated.stats,
    }
    (samples / "generation.json").write_text(json.dumps(record, indent=1, default=str) + "\n")


def _log_samples(run_dir: Path, logger: Any, paths: list[Path], registries: Any) -> None:
    if not logger.log_samples:
        return
    from musicfw.engine.loggers import log_samples

    images = [p for p in paths if p.suffix == ".png"]
    audio = [p for p in paths if p.suffix == ".wav"]
    log_samples(run_dir, images, audio, registries=registries)


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
