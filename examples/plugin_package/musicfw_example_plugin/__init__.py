"""An example musicfw plugin package: one hook per registry it fills.

It holds one plugin of every kind a built-in can be: a tokenizer with its own grammar and
clock, a model, two samplers (one reads the generated history), a command, a logger and an
export format; and the features a built-in gives through hooks: a report section and
lifecycle hooks (``features.py``).  The modules are imported inside the hooks, and torch only
when a model is built.
"""

from musicfw import hookimpl

# the feature hooks (a report section, run started / stage finished / run finished) live in
# features.py; pluggy finds them on this module through these names
from .features import (  # noqa: F401
    musicfw_report_sections,
    musicfw_run_finished,
    musicfw_run_started,
    musicfw_stage_finished,
)


@hookimpl
def musicfw_register_tokenizers(registry):
    from .pitch_sequence import PitchSequence

    registry.add(PitchSequence)


@hookimpl
def musicfw_register_samplers(registry):
    from .min_p import MinP
    from .no_repeat import NoRepeatNGram

    registry.add(MinP)
    registry.add(NoRepeatNGram)


@hookimpl
def musicfw_register_models(registry):
    from .bigram import Bigram

    registry.add(Bigram)


@hookimpl
def musicfw_register_commands(commands):
    from .commands import Pitches

    commands.add(Pitches)


@hookimpl
def musicfw_register_loggers(registry):
    from .features import JsonLinesLogger

    registry.add(JsonLinesLogger)


@hookimpl
def musicfw_register_exporters(registry):
    from .features import Npz

    registry.add(Npz)
