"""Built-in models: ``markov`` (counts), ``lstm`` (Performance RNN style) and ``transformer``
(Music Transformer style).

Each model is one package: its ``__init__`` holds the cheap plugin class (``name``, ``Config``,
``from_config``) and ``model.py`` the torch implementation, imported only when a model is built.
"""

from musicfw.core.hookspecs import hookimpl


@hookimpl
def musicfw_register_models(registry):
    from .lstm import LSTM
    from .markov import Markov
    from .transformer import Transformer

    for cls in (Markov, LSTM, Transformer):
        registry.add(cls)
    from .musicvae import MusicVAE

    registry.add(MusicVAE)


@hookimpl
def musicfw_register_metrics(registry):
    from .musicvae.metric import MusicVAEReconstruction

    registry.add(MusicVAEReconstruction)


@hookimpl
def musicfw_report_sections(report):
    """MusicVAE's reconstruction line in report.html's "In short" list."""
    from .musicvae.metric import report_sections

    return report_sections(report)


@hookimpl
def musicfw_register_commands(commands):
    from .musicvae.commands import Blend, Interpolate, Sample

    commands.add(Sample)
    commands.add(Interpolate)
    commands.add(Blend)
