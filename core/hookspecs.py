"""The hooks a musicfw plugin can implement.

Every hook receives a :class:`~musicfw.core.registry.Registry` and adds plugin classes to it
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

if TYPE_CHECKING:  # pragma: no cover
    from musicfw.core.command import CommandRegistry
    from musicfw.core.registry import Registry

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
