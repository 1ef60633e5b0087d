"""Built-in metrics: ``nll`` (held-out likelihood), ``yang_lerch`` (Yang & Lerch 2020
features and set comparison) and ``muspy`` (MusPy-style statistics)."""

from musicfw.core.hookspecs import hookimpl


@hookimpl
def musicfw_register_metrics(registry):
    from .likelihood import NLL
    from .muspy_stats import MusPyStatistics
    from .yang_lerch import YangLerch

    for cls in (NLL, YangLerch, MusPyStatistics):
        registry.add(cls)
