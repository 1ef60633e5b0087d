"""Built-in samplers: greedy, temperature, top_k, top_p, bernoulli."""

from musicfw.core.hookspecs import hookimpl


@hookimpl
def musicfw_register_samplers(registry):
    from .basic import Bernoulli, Greedy, Temperature, TopK, TopP

    for cls in (Greedy, Temperature, TopK, TopP, Bernoulli):
        registry.add(cls)
