"""Built-in metrics: ``nll`` (held-out likelihood), ``yang_lerch`` (Yang & Lerch 2020
features and set comparison), ``muspy`` (MusPy-style statistics), ``chord_tone_ratio``
(share of notes in the chord of their time) and ``originality`` (melody runs shared with the
training split: a memorisation audit) and ``control_adherence`` (how closely a model with
attribute controls follows them; nothing for other runs)."""

from musicfw.core.hookspecs import hookimpl


@hookimpl
def musicfw_register_metrics(registry):
    from .chords import ChordToneRatio
    from .controls import ControlAdherence
    from .likelihood import NLL
    from .muspy_stats import MusPyStatistics
    from .originality import Originality
    from .yang_lerch import YangLerch

    for cls in (NLL, YangLerch, MusPyStatistics, ChordToneRatio, Originality, ControlAdherence):
        registry.add(cls)


@hookimpl
def musicfw_report_sections(report):
    """The "In short" line of every held-out likelihood in the nll format (``nll_per_token``),
    and the originality and control-adherence tables (when a run measured them)."""
    from .controls import report_sections as control_sections
    from .likelihood import report_sections
    from .originality import report_sections as originality_sections

    return report_sections(report) + originality_sections(report) + control_sections(report)
