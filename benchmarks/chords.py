"""REMI's chord recogniser against music21's chord labels, and the chord-tone ratio of
chord-conditioned REMI generation.

``recogniser``: for every Bach chorale of music21's corpus (the ``bach_chorales`` dataset's
files, its SATB selection, converted to MIDI exactly as the dataset does), REMI's rule-based
recogniser labels every ``chord_quarters`` segment (``musicfw.music.chords.recognise_score(...,
every_segment=True)``, the chords a REMI tokenizer of that ``chord_quarters`` and
``chord_method`` writes; no tokenizer is built).  music21 labels the same segments: the score is ``chordify()``-ed and
each segment gets the root (``Chord.root()``) and quality of

* ``onset``: the chordified sonority sounding at the segment's first beat, and
* ``longest``: the chordified sonority that sounds longest inside the segment;

quality = ``dom7`` when ``isDominantSeventh()``, else ``Chord.quality`` (major/minor/diminished/
augmented: the underlying triad, so a minor seventh counts as minor); a sonority music21 calls
``other``, or of fewer than 2 pitch classes, has no label in REMI's vocabulary and is counted
apart.  Agreement = share of the labelled segments where REMI says the same root and quality
(and root only).  Segment times are the MIDI's (a pickup bar padded as the dataset does), so
both sides see the same notes at the same times.

    python benchmarks/chords.py recogniser [--max-count N] [--skip N] [--chord-quarters 2,1] [--method count,cosine]

``tone``: chord-tone ratio (plugins/metrics/chords.py) of a trained REMI run with chord tokens
(``tokenizer.use_chords: true``) on held-out progressions: the first ``--bars`` bars (without
an N.C.) of each test chorale (the run's split), as the recogniser reads them (the chord at
each bar's first beat).  For each progression the same model generates ``--per`` samples

* conditioned: ``chords=`` the progression (constrained decoding places the Chord tokens);
* unconditioned: no chords (the model writes its own, which are ignored);
* random pitches: the conditioned samples with every pitch replaced by a uniform random one
  in the same octave range (same rhythm);

and all three are scored against the progression laid over their bars
(``chord_track_of_progression``), pooled over notes.  Two more rows for scale: the
unconditioned samples against the Chord tokens they wrote themselves (their markers), and the
test chorales against their own recognised chords.  One torch thread.

    OMP_NUM_THREADS=1 python benchmarks/chords.py tone --run RUN_DIR [--bars 8] [--per 4] [--seed 0] [--per-beat]

``--per-beat``: the progressions hold the chord of every beat (quarter) instead of every bar
(``"G G D D | ..."``; a chord that goes on inside a bar is not written again), which is the
granularity a tokenizer with ``chord_quarters: 1`` was trained on.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

import numpy as np

M21_QUALITY = {"major": "maj", "minor": "min", "diminished": "dim", "augmented": "aug"}


def m21_label(chord) -> int | None:
    """music21's root + quality of a chordified sonority as a REMI chord index, or None."""
    from musicfw.music.chords import QUALITY_NAMES

    if chord is None or not chord.isChord or len({p.pitchClass for p in chord.pitches}) < 2:
        return None
    quality = "dom7" if chord.isDominantSeventh() else M21_QUALITY.get(chord.quality)
    if quality is None:
        return None
    return QUALITY_NAMES.index(quality) * 12 + chord.root().pitchClass


def recogniser(args: argparse.Namespace) -> int:
    from music21 import converter, stream

    from musicfw.core.dataset import cache_root
    from musicfw.plugins.datasets.corpora import VOICE_PREFIXES, BachChorales
    from musicfw.plugins.datasets.m21convert import private_scratch_dir, to_score, use_private_scratch
    from musicfw.music.chords import NO_CHORD, chord_name, recognise_score

    use_private_scratch(private_scratch_dir(cache_root()))
    units = BachChorales().units()[args.skip: (args.skip + args.max_count) if args.max_count else None]
    configs = [(m, int(q)) for q in args.chord_quarters.split(",") for m in args.method.split(",")]
    counts = {c: Counter() for c in configs}
    confusion = {c: Counter() for c in configs}
    t0 = time.perf_counter()
    for unit in units:
        # parsed and chordified once, labelled for every configuration
        m21 = converter.parse(unit.path, forceSource=True)
        parts = list(m21.parts)
        names = [(p.partName or "").strip().lower() for p in parts]
        voices = [p for p, n in zip(parts, names) if n.startswith(VOICE_PREFIXES)]
        if voices and len(voices) < len(parts):
            m21 = stream.Score(voices)
        first = parts[0].getElementsByClass(stream.Measure).first()
        shift = float(first.paddingLeft) if first is not None and first.paddingLeft else 0.0
        score = to_score(m21)
        tpq = int(score.ticks_per_quarter)
        chords = list(m21.chordify().flatten().notesAndRests)
        on = np.array([float(c.offset) + shift for c in chords])
        off = on + np.array([float(c.quarterLength) for c in chords])
        labels = [m21_label(c) if c.isChord else None for c in chords]
        for cfg in configs:
            ticks, remi = recognise_score(score, chord_quarters=cfg[1], method=cfg[0], every_segment=True)
            seg_q = float(cfg[1])
            cnt, conf = counts[cfg], confusion[cfg]
            for s, r in zip((ticks / tpq).tolist(), remi.tolist()):
                cnt["segments"] += 1
                # onset: the sonority sounding at the segment's start
                i = np.flatnonzero((on <= s + 1e-9) & (off > s + 1e-9))
                at_onset = int(i[-1]) if len(i) else None
                # longest: the sonority sounding longest inside [s, s + seg)
                overlap = np.minimum(off, s + seg_q) - np.maximum(on, s)
                j = int(np.argmax(overlap)) if len(overlap) else -1
                longest = j if j >= 0 and overlap[j] > 0 else None
                for ref_name, k in (("onset", at_onset), ("longest", longest)):
                    label = labels[k] if k is not None else None
                    if label is None:
                        cnt[f"{ref_name}_unlabelled"] += 1
                        cnt[f"{ref_name}_unlabelled_remi_nc"] += int(r == NO_CHORD)
                        continue
                    cnt[f"{ref_name}_labelled"] += 1
                    cnt[f"{ref_name}_exact"] += int(r == label)
                    cnt[f"{ref_name}_root"] += int(r != NO_CHORD and r % 12 == label % 12)
                    triad = lambda c: (c % 12, 0 if c // 12 == 4 else c // 12)  # dom7 ~ maj  # noqa: E731
                    cnt[f"{ref_name}_triad"] += int(r != NO_CHORD and triad(r) == triad(label))
                    if ref_name == "onset" and r != label:
                        conf[(chord_name(label).split(":")[1], "N.C." if r == NO_CHORD else chord_name(r).split(":")[1],
                              "same root" if r != NO_CHORD and r % 12 == label % 12 else "other root")] += 1
    elapsed = time.perf_counter() - t0
    print(f"REMI chord recogniser vs music21 chordify() on {len(units)} Bach chorales "
          f"(from #{args.skip}; {elapsed:.0f} s wall clock, shared machine)")
    print(f"{'method':<8}{'segment':>8}  {'music21 reference':<32}{'segments':>9}{'labelled':>9}"
          f"{'exact':>8}{'triad':>8}{'root':>8}")
    for cfg in configs:
        cnt = counts[cfg]
        for ref_name, what in (("onset", "sonority at the segment start"), ("longest", "longest sonority in it")):
            n = cnt[f"{ref_name}_labelled"]
            print(f"{cfg[0]:<8}{cfg[1]:>7}q  {what:<32}{cnt['segments']:>9}{n:>9}"
                  + "".join(f"{cnt[f'{ref_name}_{k}'] / max(n, 1):>8.1%}" for k in ("exact", "triad", "root")))
    print("exact = same root and quality; triad = dom7 counted as maj; root = same root; labelled = segments "
          "music21 labels in REMI's vocabulary")
    for cfg in configs:
        cnt = counts[cfg]
        print(f"{cfg[0]} {cfg[1]}q: music21 has no label (other / < 2 pitch classes / rest) for "
              f"{cnt['onset_unlabelled']} segments (onset), REMI says N.C. on {cnt['onset_unlabelled_remi_nc']} of them; "
              "most frequent disagreements (onset), music21 -> REMI quality: "
              + ", ".join(f"{a}->{b} {how} {k}" for (a, b, how), k in confusion[cfg].most_common(4)))
    return 0


def _progressions(datamodule, tokenizer, bars: int, per_beat: bool = False) -> list[tuple[str, list[list[int]]]]:
    """(piece id, first ``bars`` bars' chords) of the test chorales as the recogniser reads
    them: the chord sounding at each bar's first beat, or (``per_beat``) at each of its beats
    (quarters); bars with an N.C. are skipped."""
    from musicfw.music.chords import NO_CHORD
    from musicfw.music.notes import piece_notes

    out = []
    for piece in datamodule.pieces("test"):
        score = piece.score
        tpq = int(score.ticks_per_quarter)
        ticks, chords = tokenizer.recognise_chords(score)
        downbeats = np.asarray(piece_notes(score).downbeats, dtype=np.int64)
        prog = []
        for b, db in enumerate(downbeats):
            length = (downbeats[b + 1] - db) if b + 1 < len(downbeats) else (db - downbeats[b - 1] if b else 4 * tpq)
            beats = max(1, int(round(length / tpq))) if per_beat else 1
            at = np.searchsorted(ticks, db + np.arange(beats) * tpq, side="right") - 1
            bar = [int(chords[k]) if k >= 0 else NO_CHORD for k in at]
            if NO_CHORD not in bar:
                prog.append(bar)
            if len(prog) == bars:
                break
        if len(prog) == bars:
            out.append((piece.id, prog))
    return out


def tone(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    from musicfw.engine.data import MusicDataModule
    from musicfw.engine.generation import build_sampler_chain, generate
    from musicfw.core.plugins import load_registries
    from musicfw.engine.rundir import load_run_config
    from musicfw.core.build import build_from_section
    from musicfw.engine.training import load_model
    from musicfw.music.chords import chord_track_of_progression, format_progression, marker_chords
    from musicfw.plugins.metrics.chords import ratios_of

    registries = load_registries()
    config = load_run_config(args.run, registries=registries)
    model, tokenizer = load_model(args.run, registries=registries)
    if not tokenizer.config.use_chords:
        print("the run's tokenizer has no Chord tokens (tokenizer.use_chords: false)", file=sys.stderr)
        return 2
    dataset = build_from_section("datasets", config.data, registries=registries, key="data")
    data = MusicDataModule(dataset, tokenizer, seed=int(config.seed), batch_size=4, seq_len=64).prepare()
    progs = _progressions(data, tokenizer, args.bars, args.per_beat)[: args.max_progressions or None]
    sampler = build_sampler_chain(config.sampler, registries=registries)
    rng = np.random.default_rng(args.seed)
    sets = {"conditioned": ([], []), "unconditioned": ([], []), "random pitches": ([], [])}
    own = ([], [])  # the unconditioned samples against the Chord tokens they wrote themselves
    t0 = time.perf_counter()
    for k, (_, prog) in enumerate(progs):
        common = dict(n=args.per, batch_size=args.per, max_bars=args.bars, max_tokens=args.max_tokens,
                      seed=args.seed + k)
        cond = generate(model, tokenizer, sampler, chords=[" ".join(map(_name, bar)) for bar in prog], **common)
        free = generate(model, tokenizer, sampler, **common)
        for name, scores in (("conditioned", cond.scores), ("unconditioned", free.scores),
                             ("random pitches", [_random_pitches(s, rng) for s in cond.scores])):
            for s in scores:
                sets[name][0].append(s)
                sets[name][1].append(chord_track_of_progression(s, prog))
        for s in free.scores:
            own[0].append(s)
            own[1].append(marker_chords(s))
    elapsed = time.perf_counter() - t0
    print(f"chord-tone ratio on {len(progs)} held-out progressions ({args.bars} bars each, "
          f"{'one chord per beat' if args.per_beat else 'one chord per bar'}, from the test "
          f"chorales by REMI's recogniser), {args.per} samples each; run {args.run} ({elapsed:.0f} s, wall clock, shared machine)")
    print(f"e.g. {format_progression(progs[0][1])}" if progs else "no progression found")
    rows = {name: ratios_of(*sets[name]) for name in sets}
    base = rows["random pitches"]["chord_tone_ratio"]
    print(f"{'samples':<16}{'notes':>8}{'by onset':>10}{'by duration':>13}{'vs random':>11}")
    for name, r in rows.items():
        print(f"{name:<16}{r['notes']:>8}{r['chord_tone_ratio']:>10.3f}{r['chord_tone_ratio_duration']:>13.3f}"
              f"{r['chord_tone_ratio'] / base:>10.2f}x")
    r = ratios_of(*own)
    print(f"{'unconditioned':<16}{r['notes']:>8}{r['chord_tone_ratio']:>10.3f}{r['chord_tone_ratio_duration']:>13.3f}"
          "   (against the Chord tokens it wrote itself)")
    # the real test chorales under their own recognised progressions (same bars), for scale
    ref_scores, ref_tracks = [], []
    for piece in data.pieces("test"):
        ticks, chords = tokenizer.recognise_chords(piece.score)
        ref_scores.append(piece.score)
        ref_tracks.append((ticks, chords))
    r = ratios_of(ref_scores, ref_tracks)
    print(f"{'test chorales':<16}{r['notes']:>8}{r['chord_tone_ratio']:>10.3f}{r['chord_tone_ratio_duration']:>13.3f}"
          "   (under their own recognised chords, every segment)")
    return 0


def _name(chord: int) -> str:
    from musicfw.music.chords import chord_name

    return chord_name(chord)


def _random_pitches(score, rng):
    """The same notes with uniform random pitches in the piece's octave range (12 * floor)."""
    out = score.copy()
    for track in out.tracks:
        arr = track.notes.numpy()
        if not len(arr["pitch"]):
            continue
        lo = int(arr["pitch"].min()) // 12 * 12
        hi = (int(arr["pitch"].max()) // 12 + 1) * 12
        pitch = rng.integers(lo, hi, size=len(arr["pitch"])).astype(np.int8)
        track.notes = type(track.notes).from_numpy(arr["time"], arr["duration"], pitch, arr["velocity"])
    return out


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("recogniser", help="REMI's chord recogniser vs music21 on the chorales")
    r.add_argument("--max-count", type=int, default=0, help="N chorales (0: all)")
    r.add_argument("--skip", type=int, default=0, help="start after the first N chorales")
    r.add_argument("--chord-quarters", default="2,1", help="REMI's chord_quarters, comma-separated")
    r.add_argument("--method", default="count,cosine", help="REMI's chord_method(s), comma-separated")
    r.set_defaults(func=recogniser)
    t = sub.add_parser("tone", help="chord-tone ratio: conditioned vs unconditioned vs random pitches")
    t.add_argument("--run", required=True, help="a run folder of REMI with use_chords: true")
    t.add_argument("--bars", type=int, default=8)
    t.add_argument("--per", type=int, default=4, help="samples per progression")
    t.add_argument("--max-progressions", type=int, default=0, help="at most N progressions (0: every test chorale)")
    t.add_argument("--max-tokens", type=int, default=1024)
    t.add_argument("--per-beat", action="store_true", help="progressions with the chord of every beat, not of every bar")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=tone)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
