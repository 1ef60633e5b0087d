"""Built-in tokenizers: remi, midi_like, pianoroll, melody, melody_chords, drums, tracks (voices as
MMM-style tracks, for harmonisation), and miditok (any MidiTok
tokenizer; MidiTok is optional and imported only when that tokenizer is built).

Registered through the ``musicfw_register_tokenizers`` hook; the modules are numpy-only and
imported inside the hook.
"""

from musicfw.core.hookspecs import hookimpl


@hookimpl
def musicfw_register_tokenizers(registry):
    from .drums import Drums
    from .melody import Melody
    from .melody_chords import MelodyChords
    from .midi_like import MIDILike
    from .miditok_wrap import MidiTok
    from .pianoroll import PianoRoll
    from .remi import REMI
    from .tracks import Tracks

    for cls in (REMI, MIDILike, PianoRoll, Melody, MelodyChords, Drums, MidiTok, Tracks):
        registry.add(cls)
