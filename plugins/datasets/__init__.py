"""Built-in datasets: bach_chorales, folk_melodies, midi_folder, piano_roll_benchmark."""

from musicfw.core.hookspecs import hookimpl


@hookimpl
def musicfw_register_datasets(registry):
    from .corpora import BachChorales, FolkMelodies
    from .midi_folder import MidiFolder
    from .piano_roll_benchmark import PianoRollBenchmark

    for cls in (BachChorales, FolkMelodies, MidiFolder, PianoRollBenchmark):
        registry.add(cls)
