"""The hooks a musicfw plugin can implement.

Two families:

* **registry hooks** (``musicfw_register_<kind>``) add plugin classes to a registry;
* **feature hooks** let a plugin act on a run: contribute sections to ``report.html``
  (``musicfw_report_sections``) and act when a run starts, when each stage finishes and when
  the run finishes (``musicfw_run_started``, ``musicfw_stage_finished``,
  ``musicfw_run_finished``).  The engine calls every implementation, built-ins first, in
  registration order.  An implementation from a third-party package that raises is reported
  with a :class:`~musicfw.core.plugins.PluginHookWarning` naming the plugin and its package
  and the run goes on with its own results kept (a report section shows the failure on the
  page instead); a built-in's exception is a bug of ours and propagates.

Every registry hook receives a :class:`~musicfw.core.registry.Registry` and adds plugin classes to it
(``registry.add(MyTokenizer)``).  The registry, not pluggy's call order, owns the policy:
a duplicate name is an error that names both providers.

A plugin class has

* ``name``: the string used in YAML and on the command line;
* ``Config``: a dataclass of its parameters, with types and defaults (the single source of
  truth for validation, ``musicfw plugins`` and the docs);
* ``from_config(config, **context)``: a classmethod returning a ready instance.

Plugin modules must be cheap to import: import torch, Lightning or music21 inside the
functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from pathlib import Path
from typing import Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from musicfw.core.command import CommandRegistry
    from musicfw.core.registry import Registry
    from musicfw.core.report import ReportContext, ReportSection

#: the stages of ``musicfw run``, in order, as ``musicfw_stage_finished`` names them
STAGES = ("data", "train", "generate", "evaluate", "report")

PROJECT_NAME = "musicfw"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def musicfw_register_tokenizers(registry: "Registry") -> None:
    """Add :class:`musicfw.core.tokenizer.Tokenizer` subclasses: ``encode(Score) -> ndarray``,
    ``decode(ndarray) -> Score``, optionally a ``grammar`` and a ``clock``."""


@hookspec
def musicfw_register_models(registry: "Registry") -> None:
    """Add model plugins; ``from_config(config, tokenizer=...)`` returns a ``torch.nn.Module``
    that subclasses :class:`musicfw.core.model.Model` (``loss``, ``init_state``, ``step`` and
    the optional hooks)."""


@hookspec
def musicfw_register_samplers(registry: "Registry") -> None:
    """Add :class:`musicfw.core.sampler.Sampler` subclasses: one step's logits in, the next
    token out (``needs_history`` to see the tokens generated so far)."""


@hookspec
def musicfw_register_datasets(registry: "Registry") -> None:
    """Add :class:`musicfw.core.dataset.MusicDataset` subclasses: sources of
    ``symusic.Score`` pieces with a deterministic split."""


@hookspec
def musicfw_register_metrics(registry: "Registry") -> None:
    """Add :class:`musicfw.core.metric.Metric` subclasses: features of one piece (compared
    between sets) or a model's likelihood on a held-out split."""


@hookspec
def musicfw_register_commands(commands: "CommandRegistry") -> None:
    """Add CLI verbs: :class:`musicfw.core.command.Command` subclasses
    (``commands.add(MyCommand)``), run as ``musicfw <name> ...``."""


@hookspec
def musicfw_register_loggers(registry: "Registry") -> None:
    """Add :class:`musicfw.core.logger.Logger` subclasses: where training curves go, chosen by
    ``logger: {name: ...}`` (built-ins: wandb, csv, tensorboard, none)."""


@hookspec
def musicfw_register_exporters(registry: "Registry") -> None:
    """Add :class:`musicfw.core.export.ExportFormat` subclasses, chosen by
    ``musicfw export --format NAME`` (built-in: safetensors)."""


# --------------------------------------------------------------------------------------------
# feature hooks
# --------------------------------------------------------------------------------------------


@hookspec
def musicfw_report_sections(report: "ReportContext") -> "list[ReportSection] | ReportSection | None":
    """Sections of ``report.html``: return one :class:`~musicfw.core.report.ReportSection`, a
    list of them, or None (nothing for this run).

    ``report`` is a :class:`~musicfw.core.report.ReportContext`: ``run_dir`` (the run folder,
    a :class:`~pathlib.Path`), ``config`` (config.yaml as a plain dict), ``metrics``
    (metrics.json as a dict, or None) and ``metrics_problem`` (why it is None).  Called each
    time the page is written (``musicfw run``, ``musicfw report``, ``musicfw evaluate --run``);
    read the run folder, write nothing.  A third party's section that raises is replaced on
    the page by a note naming the plugin and the error (and a warning); the rest of the page
    is written as usual."""


@hookspec
def musicfw_run_started(run_dir: Path, config: Mapping[str, Any]) -> None:
    """``musicfw run`` made (or reopened, on ``--resume``) the run folder ``run_dir`` and saved
    ``config.yaml``; ``config`` is the resolved experiment as a plain dict (read-only).
    Called before the data stage, on the first process only."""


@hookspec
def musicfw_stage_finished(
    run_dir: Path, stage: str, config: Mapping[str, Any], metrics: Mapping[str, Any]
) -> "Mapping[str, Any] | None":
    """A stage of ``musicfw run`` finished: ``stage`` is one of ``data``, ``train``,
    ``generate``, ``evaluate``, ``report`` (:data:`STAGES`; ``evaluate`` only when
    ``evaluate.enabled``).  ``run_dir``: the run folder (a plugin may write its own files
    there); ``config``: the resolved experiment as a plain dict; ``metrics``: the run's
    numbers so far (after ``train``: the training numbers; after ``evaluate``: what
    metrics.json holds), read-only.

    Return None, or a mapping of new top-level keys to add to metrics.json (JSON values, e.g.
    ``{"my_plugin": {"score": 0.7}}``).  Numbers returned up to ``evaluate`` appear in
    report.html.  A key metrics.json already has is not replaced: a warning names the plugin
    and the key.  Called on the first process only."""


@hookspec
def musicfw_run_finished(run_dir: Path, config: Mapping[str, Any], metrics: Mapping[str, Any]) -> "Mapping[str, Any] | None":
    """``musicfw run`` finished every stage: report.html and metrics.json are written.
    ``run_dir``, ``config`` and ``metrics`` (all of metrics.json, read-only) as in
    :func:`musicfw_stage_finished`; return None or new top-level metrics.json keys, as there
    (when any are returned, metrics.json and report.html are written again to show them).
    Called on the first process only, not when a stage failed."""
