"""Cut the beat blender's four corner beats (examples/midi/drums/*.mid) out of the drum tracks
of the shipped multitrack pop songs (examples/midi/multitrack/, from MidiTok's test suite).

Each corner is two 4/4 bars of one song's drum track(s), moved to start at 0 and kept at the
song's first tempo.  Which two bars: the first bar-aligned 2-bar window from bar 8 on (past the
intro) in which the kick, the snare and a hi-hat or ride are all struck and there are at least
16 hits -- a full groove rather than a fill or a break.  Deterministic; rerun it to check:

    python scripts/make_drum_corners.py            # writes examples/midi/drums/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SONGS = ["Funkytown", "All The Small Things", "Girls Just Want to Have Fun", "In Too Deep"]
KICK, SNARE = {35, 36}, {38, 40, 37}
HATS = {42, 44, 46, 51, 53, 59}


def corner(path: Path, first_bar: int = 8, bars: int = 2):
    import symusic

    score = symusic.Score(str(path))
    tpq = score.ticks_per_quarter
    bar = 4 * tpq  # every shipped song is in 4/4 (checked below)
    assert all((ts.numerator, ts.denominator) == (4, 4) for ts in score.time_signatures), path
    drums = [t for t in score.tracks if t.is_drum and t.note_num()]
    notes = np.concatenate([t.notes.numpy()["time"] for t in drums])
    pitches = np.concatenate([t.notes.numpy()["pitch"] for t in drums])
    n_bars = int(score.end() // bar)
    for start in range(first_bar, n_bars - bars):
        lo, hi = start * bar, (start + bars) * bar
        inside = (notes >= lo) & (notes < hi)
        hit = set(pitches[inside].tolist())
        if inside.sum() >= 16 and hit & KICK and hit & SNARE and hit & HATS:
            break
    else:
        raise SystemExit(f"{path}: no 2-bar window with kick, snare and hats")
    out = symusic.Score(tpq)
    out.tempos.append(symusic.Tempo(0, float(score.tempos[0].qpm) if len(score.tempos) else 120.0))
    out.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("Drums", program=0, is_drum=True)
    for t in drums:
        for n in t.notes:
            if lo <= n.time < hi:
                track.notes.append(symusic.Note(n.time - lo, min(n.duration, hi - n.time), n.pitch, n.velocity))
    track.notes.sort(key=lambda n: (n.time, n.pitch))
    out.tracks.append(track)
    return out, start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "examples" / "midi" / "drums"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for letter, song in zip("ABCD", SONGS):
        score, start = corner(REPO / "examples" / "midi" / "multitrack" / f"{song}.mid")
        name = f"{letter}_{song.replace(' ', '_')}.mid"
        score.dump_midi(str(out / name))
        print(f"{name}: bars {start + 1}-{start + 2} of {song}.mid, {score.note_num()} hits")


if __name__ == "__main__":
    main()
