"""An example musicfw plugin package: one hook per registry it fills."""

from musicfw import hookimpl


@hookimpl
def musicfw_register_tokenizers(registry):
    from .pitch_sequence import PitchSequence

    registry.add(PitchSequence)


@hookimpl
def musicfw_register_samplers(registry):
    from .min_p import MinP

    registry.add(MinP)
