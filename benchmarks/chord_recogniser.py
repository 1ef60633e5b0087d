"""How well the ``melody_chords`` tokenizer's chord recogniser agrees with music21 on the
Bach chorales.

The recogniser is the music library's (``musicfw.music.chords.recognise``) at the tokenizer's
granularity and scoring (segments of one beat from tick 0, ``method="triads"``), read through
the tokenizer (``MelodyChords.step_chords``).  For each chorale (the first ``--n`` of music21's corpus, in name order): music21 parses it,
``m21convert.to_score`` converts it exactly as the shipped corpus was converted, and the
tokenizer recognises one chord per beat from the lower voices (every part but the soprano).
The reference: music21's ``chordify`` of the same lower voices, the vertical sonority sounding
at each beat's start, named by music21's ``root()`` and ``quality`` (major, minor, diminished,
augmented; beats where music21 calls the sonority "other", or where fewer than two pitch
classes sound, are left out).  Reported: the share of the compared beats where root and
quality agree, and the share where the root alone agrees.

The two differ by design: the recogniser weighs every note of the beat by its duration
(passing notes included), music21 names the onset sonority alone.

Usage::

    python benchmarks/chord_recogniser.py --n 60
"""

from __future__ import annotations

import argparse
import sys
import time

QUALITY = {"major": "maj", "minor": "min", "augmented": "aug", "diminished": "dim"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=60, help="chorales compared")
    args = p.parse_args(argv)
    import warnings

    warnings.simplefilter("ignore")
    from music21 import corpus, stream

    from musicfw.plugins.datasets.corpora import BachChorales
    from musicfw.plugins.datasets.m21convert import private_scratch_dir, to_score, use_private_scratch
    from musicfw.core.dataset import cache_root
    from musicfw.music.chords import QUALITY_NAMES, TRIAD_NO_CHORD, triad_chord, triad_class
    from musicfw.plugins.tokenizers.melody_chords import MelodyChords

    use_private_scratch(private_scratch_dir(cache_root()))
    units = BachChorales().units()[: args.n]
    tok = MelodyChords()
    t0 = time.perf_counter()
    both = root_only = compared = skipped_other = pieces = 0
    for unit in units:
        m21 = corpus.parse(unit.path, forceSource=True)
        parts = list(m21.parts)
        if len(parts) < 4:
            continue
        score = to_score(m21)
        names = [t.name.strip().lower() for t in score.tracks]
        if not names or not names[0].startswith("soprano"):
            continue
        first = parts[0].getElementsByClass(stream.Measure).first()
        shift = float(first.paddingLeft) if first is not None and first.paddingLeft else 0.0
        n_beats = int(score.end() // score.ticks_per_quarter)
        ours = tok.step_chords(score, n_beats * tok.config.steps_per_quarter)[:: tok.config.steps_per_quarter]
        lower = stream.Score(parts[1:]).chordify().flatten().notes
        pieces += 1
        for beat in range(n_beats):
            offset = beat - shift
            if offset < 0:
                continue
            sonority = lower.getElementAtOrBefore(offset)
            if sonority is None or not hasattr(sonority, "pitches") or len({p.pitchClass for p in sonority.pitches}) < 2:
                continue
            quality = QUALITY.get(sonority.quality)
            if quality is None:
                skipped_other += 1
                continue
            root = sonority.root().pitchClass
            expected = triad_class(QUALITY_NAMES.index(quality) * 12 + root)
            got = int(ours[beat])
            compared += 1
            both += int(got == expected)
            root_only += int(got != TRIAD_NO_CHORD and triad_chord(got) % 12 == root)
    seconds = time.perf_counter() - t0
    print(f"{pieces} chorales, {compared} beats compared ({skipped_other} beats music21 calls 'other' left out), {seconds:.0f} s")
    print(f"root and quality agree: {both / max(compared, 1):.3f}")
    print(f"root agrees:            {root_only / max(compared, 1):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
