"""An example musicfw plugin package: one hook per registry it fills.

It holds one plugin of every kind a built-in can be: a tokenizer with its own grammar and
clock, a model, two samplers (one reads the generated history), and a command.  The modules
are imported inside the hooks, and torch only when a model is built.
"""

from musicfw import hookimpl


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
