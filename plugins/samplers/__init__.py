"""Built-in samplers: greedy, temperature, top_k, top_p, bernoulli, repetition_penalty."""

from musicfw.core.hookspecs import hookimpl


@hookimpl
def musicfw_register_samplers(registry):
    from .basic import Bernoulli, Greedy, Temperature, TopK, TopP
    from .history import RepetitionPenalty

    for cls in (Greedy, Temperature, TopK, TopP, Bernoulli, RepetitionPenalty):
        registry.add(cls)
