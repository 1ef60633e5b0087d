"""The run's lifecycle hooks: ``musicfw_run_started``, ``musicfw_stage_finished`` (data, train,
generate, evaluate, report) and ``musicfw_run_finished`` (see :mod:`musicfw.core.hookspecs`
for what each receives).

A hook may write its own files into the run folder and return new top-level keys for
metrics.json.  Keys returned up to the ``evaluate`` stage are merged when metrics.json is
written (so the report shows them); keys returned after it are merged into metrics.json at
once and, after ``run_finished``, report.html is written again.  A key metrics.json already
has is never replaced: a warning names the plugin and the key.  A third party's hook that
raises or returns something else than a mapping is reported with a
:class:`~musicfw.core.plugins.PluginHookWarning`; the run goes on with its own results.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any, Mapping

from musicfw.core.hookspecs import STAGES


class Lifecycle:
    """Calls the lifecycle hooks of one run and keeps what they add to metrics.json."""

    def __init__(self, registries: Any, run_dir: Path, config: Mapping[str, Any]):
        self.pm = registries.pm
        self.run_dir = Path(run_dir)
        self.config = config
        #: keys returned by hooks, not yet in metrics.json: key -> (value, plugin)
        self.pending: dict[str, tuple[Any, str]] = {}

    # every hook gets its own copies: a plugin changing them cannot change the run's results
    def run_started(self) -> None:
        self._call("musicfw_run_started", run_dir=self.run_dir, config=copy.deepcopy(self.config))

    def stage_finished(self, stage: str, metrics: Mapping[str, Any]) -> None:
        assert stage in STAGES, stage
        self._call(
            "musicfw_stage_finished", run_dir=self.run_dir, stage=stage, config=copy.deepcopy(self.config),
            metrics=copy.deepcopy(dict(metrics)),
        )

    def run_finished(self, metrics: Mapping[str, Any]) -> None:
        self._call(
            "musicfw_run_finished", run_dir=self.run_dir, config=copy.deepcopy(self.config),
            metrics=copy.deepcopy(dict(metrics)),
        )

    def _call(self, hook: str, **kwargs: Any) -> None:
        from musicfw.core.plugins import BUILTIN_PROVIDER, PluginHookWarning, call_hook

        for call in call_hook(self.pm, hook, **kwargs):
            if call.error is not None or call.result is None:
                continue
            if not isinstance(call.result, Mapping):
                message = (
                    f"musicfw plugin {call.plugin!r} (from {call.provider}) returned a "
                    f"{type(call.result).__name__} from {hook}; return a mapping of new metrics.json keys or None"
                )
                if call.provider == BUILTIN_PROVIDER:
                    raise TypeError(message)
                warnings.warn(message + "; ignored.", PluginHookWarning, stacklevel=3)
                continue
            for key, value in call.result.items():
                if key in self.pending:
                    warnings.warn(
                        f"musicfw plugin {call.plugin!r} (from {call.provider}) adds metrics.json key {key!r}, "
                        f"which {self.pending[key][1]!r} added first; kept the first.",
                        PluginHookWarning,
                        stacklevel=3,
                    )
                    continue
                self.pending[str(key)] = (value, call.plugin)

    def merge(self, metrics: dict[str, Any], path: Path | None = None) -> bool:
        """Move the pending keys into ``metrics`` (a key it already has is kept, with a
        warning) and rewrite ``path`` (metrics.json) when something was added."""
        from musicfw.core.plugins import PluginHookWarning
        from musicfw.engine.evaluation import write_metrics

        added = False
        for key, (value, plugin) in self.pending.items():
            if key in metrics:
                warnings.warn(
                    f"musicfw plugin {plugin!r} returned metrics.json key {key!r}, which the run already "
                    "has; the run's own value was kept.",
                    PluginHookWarning,
                    stacklevel=2,
                )
                continue
            metrics[key] = json.loads(json.dumps(value, default=str))  # plain JSON, as written
            added = True
        self.pending.clear()
        if added and path is not None:
            write_metrics(metrics, path)
        return added
