"""Harmonisation (track infilling): write the missing voices of a piece given the others.

A model trained on the ``tracks`` tokenizer (:mod:`musicfw.plugins.tokenizers.tracks`) reads,
segment by segment, the given voices first -- their tokens forced, exactly as encode writes
them -- and then writes each missing voice, its Track token forced and its notes sampled under
a grammar that keeps every written voice complete and singable:

* exactly the segment's bars (Bar tokens), then TrackEnd;
* one note at a time (no chords inside a voice): a ``Pos`` only ahead of the voice's cursor and
  inside its bar, a ``Pitch`` always followed by a ``Dur``, no note past the segment's end;
* with a tokenizer that has attribute controls (``tokenizer.controls``), first the voice's
  control tokens, one per attribute in order: the level ``controls`` asks for
  (:meth:`~musicfw.plugins.tokenizers.tracks.Tracks.control_plan`: per written voice and
  segment), any level where it asks nothing (the model's choice).  The given voices carry the
  levels their own notes have, as encode writes them.

The given voices come back untouched: each output is a copy of the input score with the written
voices added as new tracks (at the input's ticks per quarter); the given notes are never
re-quantised or rewritten.  Every check (model, voices, file, representability) runs before
anything is sampled or written.
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from musicfw.core.errors import ConfigError, DataError, UserError


def parse_voices(value: Any, where: str) -> list[str] | None:
    """``"alto,tenor"`` / ``["alto", "tenor"]`` -> ``["alto", "tenor"]``; None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out = [str(v).strip().lower() for v in items if str(v).strip()]
    if not out:
        raise ConfigError(f"{where}: no voice named (give e.g. alto,tenor,bass).")
    if len(set(out)) != len(out):
        raise ConfigError(f"{where}: {','.join(out)} names a voice twice.")
    return out


def check_harmonizer(tokenizer: Any, source: str = "the model") -> None:
    """A model can harmonise when its tokenizer writes voices as tracks (``tracks``)."""
    from musicfw.plugins.tokenizers.tracks import Tracks

    if not isinstance(tokenizer, Tracks):
        raise UserError(
            f"{source} was not trained to harmonise: its tokenizer is {getattr(tokenizer, 'name', type(tokenizer).__name__)!r}, "
            "and harmonisation needs the 'tracks' tokenizer, which writes each voice as a track "
            "(train one with examples/harmonize_chorales.yaml)."
        )
    if len(tokenizer.voices) < 2:
        raise UserError(f"{source} knows one voice ({tokenizer.voices[0]}); harmonisation needs two or more.")


def resolve_voices(tokenizer: Any, write: Any = None, given: Any = None, score: Any = None) -> tuple[list[str], list[str]]:
    """(given, write) in the model's voice order.  ``given`` by default: the voices ``score``
    has tracks named after, else the first voice not written (soprano: a melody file);
    ``write`` by default: every other voice the model knows."""
    voices = list(tokenizer.voices)
    write_l = parse_voices(write, "--voices")
    given_l = parse_voices(given, "--given")
    for name, lst in (("--voices", write_l), ("--given", given_l)):
        for v in lst or []:
            if v not in voices:
                raise ConfigError(
                    f"{name}: the model was not trained for the voice {v!r}; it knows "
                    f"{', '.join(voices)} (its tokenizer.voices)."
                )
    if given_l is None:
        pool = [v for v in voices if v not in (write_l or [])]
        given_l = pool[:1]
        if score is not None:
            named = [tokenizer.voice_of_name(t.name) for t in score.tracks if not t.is_drum and len(t.notes)]
            if any(v is not None for v in named):
                given_l = [v for v in pool if v in named] or pool[:1]
    if write_l is None:
        write_l = [v for v in voices if v not in given_l]
    both = sorted(set(given_l) & set(write_l))
    if both:
        raise ConfigError(f"--voices and --given both name {', '.join(both)}: a voice is either given or written.")
    if not given_l:
        raise ConfigError("--given: no voice is left to give; harmonisation writes voices under at least one given voice.")
    if not write_l:
        raise ConfigError("--voices: no voice is left to write (every voice the model knows is given).")
    given_l = [v for v in voices if v in given_l]
    write_l = [v for v in voices if v in write_l]
    if tokenizer.config.order == "fixed":
        late = [g for g in given_l if voices.index(g) > min(voices.index(w) for w in write_l)]
        if late:
            raise UserError(
                f"The model was trained with its voices in the fixed order {', '.join(voices)} "
                "(tokenizer.order: fixed), so it writes only later voices given earlier ones; it was "
                f"not trained to write {', '.join(write_l)} given {', '.join(late)}. Train with "
                "tokenizer.order: shuffled."
            )
    return given_l, write_l


def read_input(path: str | Path) -> Any:
    """The MIDI file to harmonise (never written to)."""
    from musicfw.music.midiload import load_score

    p = Path(path)
    if not p.is_file():
        raise DataError(f"Input file not found: {p}")
    score, reason = load_score(p, min_notes=0, check_limits=False)
    if reason is not None:
        raise DataError(f"Cannot read {p}: {reason}")
    return score


def map_given(tokenizer: Any, score: Any, given: Sequence[str], write: Sequence[str], where: str) -> dict[str, list[int]]:
    """Which tracks of ``score`` hold each given voice (by name; a file whose tracks carry no
    voice name and has exactly as many non-drum tracks with notes as given voices: in order)."""
    names = [t.name.strip() or f"track {i}" for i, t in enumerate(score.tracks)]
    voice_of = [None if t.is_drum else tokenizer.voice_of_name(t.name) for t in score.tracks]
    mapping: dict[str, list[int]] = {}
    if any(v is not None for v in voice_of):
        for i, v in enumerate(voice_of):
            if v is not None and len(score.tracks[i].notes):
                mapping.setdefault(v, []).append(i)
    else:
        pitched = [i for i, t in enumerate(score.tracks) if not t.is_drum and len(t.notes)]
        if len(pitched) == len(given):
            mapping = {v: [i] for v, i in zip(given, pitched)}
    clash = [w for w in write if w in mapping]
    if clash:
        raise DataError(
            f"{where} already has a track for {', '.join(clash)} ({', '.join(names[i] for w in clash for i in mapping[w])}), "
            "which you asked to write; give it with --given, or remove the track."
        )
    missing = [g for g in given if g not in mapping]
    if missing:
        listed = ", ".join(repr(n) for n in names) or "none"
        raise DataError(
            f"{where} has no track for the given voice{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(its tracks: {listed}). Name each given voice's track after it ({', '.join(given)}), or give a "
            f"file with exactly {len(given)} unnamed track{'s' if len(given) > 1 else ''} with notes."
        )
    return {g: mapping[g] for g in given}


def check_representable(tokenizer: Any, score: Any, mapping: dict[str, list[int]], where: str) -> None:
    """The given voices must be what the tokenizer can write: every note in its pitch range, no
    drum track, a time signature whose bar fits, notes in each given voice; the piece within the
    limits (:mod:`musicfw.music.limits`)."""
    from musicfw.music.grid import to_steps
    from musicfw.music.limits import PieceRejected, check_piece

    c = tokenizer.config
    try:
        check_piece(score, allow_cut=False)
    except PieceRejected as exc:
        raise DataError(f"{where} cannot be harmonised: {exc}") from None
    tpq = int(score.ticks_per_quarter)
    for ts in score.time_signatures:
        n, d = int(ts.numerator), int(ts.denominator)
        if (n, d) not in tokenizer.table:
            raise DataError(
                f"{where} cannot be harmonised: its time signature {n}/{d} (tick {int(ts.time)}) is not one "
                f"the tokenizer can write (bars of at most {c.max_bar_quarters} quarters on a grid of "
                f"{c.beat_resolution} positions per quarter: tokenizer.max_bar_quarters, beat_resolution)."
            )
    for v, idx in mapping.items():
        for i in idx:
            t = score.tracks[i]
            if t.is_drum:
                raise DataError(f"{where}: the track for {v} ({t.name!r}) is a drum track; a voice must be pitched.")
            a = t.notes.numpy()
            out = (a["pitch"] < c.min_pitch) | (a["pitch"] > c.max_pitch)
            if out.any():
                k = int(np.flatnonzero(out)[0])
                raise DataError(
                    f"{where} cannot be harmonised: {int(out.sum())} note(s) of {v} ({t.name!r}) are outside "
                    f"the pitch range {c.min_pitch}..{c.max_pitch} the model was trained on "
                    f"(tokenizer.min_pitch, max_pitch), the first pitch {int(a['pitch'][k])} at tick {int(a['time'][k])}."
                )
            on = to_steps(a["time"], tpq, c.beat_resolution)
            if len(on) and (on < 0).any():
                raise DataError(f"{where}: {v} has notes before the start of the piece.")
        if not sum(len(score.tracks[i].notes) for i in idx):
            raise DataError(f"{where}: the given voice {v} has no notes.")


class _Voices:
    """The notes one row knows so far, per voice (grid positions: onset, end, pitch): the given
    voices', then each written voice's as its notes are written.  For ``forbid_parallels``:
    :meth:`parallel_pitches` are the pitches a voice's next note may not take."""

    def __init__(self, parts: dict[str, dict[str, np.ndarray]]):
        #: per voice, its notes sorted by onset as lists (onsets, ends, pitches, the latest end so
        #: far): a lookup is a bisection, not a pass over the piece (one per written note)
        self.notes: dict[str, tuple[list[int], list[int], list[int], list[int]]] = {}
        for v, p in parts.items():
            for on, end, pitch in sorted(zip(p["onset"].tolist(), (p["onset"] + p["duration"]).tolist(), p["pitch"].tolist())):
                self.add(v, on, end, pitch)

    def add(self, voice: str, onset: int, end: int, pitch: int) -> None:
        """A voice's next note (notes come in onset order: the given ones sorted, the written
        ones as the segments are written)."""
        ons, ends, pitches, reach = self.notes.setdefault(voice, ([], [], [], []))
        ons.append(int(onset))
        ends.append(int(end))
        pitches.append(int(pitch))
        reach.append(max(int(end), reach[-1]) if reach else int(end))

    def _before(self, voice: str, t: int) -> int:
        """The pitch of the voice's latest note starting before ``t`` (-1: none)."""
        ons, _, pitches, _ = self.notes.get(voice, ((), (), (), ()))
        i = bisect.bisect_left(ons, t) - 1
        return pitches[i] if i >= 0 else -1

    def _at(self, voice: str, t: int) -> int:
        """The pitch the voice sounds at ``t`` (its latest note starting at or before it and
        still sounding; -1: a rest or not known yet)."""
        ons, ends, pitches, reach = self.notes.get(voice, ((), (), (), ()))
        for i in range(bisect.bisect_right(ons, t) - 1, -1, -1):
            if reach[i] <= t:  # no note up to here sounds at t
                break
            if t < ends[i]:
                return pitches[i]
        return -1

    def parallel_pitches(self, voice: str, t: int, pitches: np.ndarray) -> np.ndarray:
        """Which of ``pitches`` for a note of ``voice`` starting at ``t`` would move in parallel
        fifths or octaves (musicfw.music.voiceleading's rule: both voices move, in the same
        direction, into the same perfect interval class they left) with a voice whose note at
        ``t`` is known.  The note each voice left is its latest one starting before ``t``
        (held or not), so a rest between two notes does not hide a parallel."""
        bad = np.zeros(len(pitches), dtype=bool)
        v1 = self._before(voice, t)
        if v1 < 0:
            return bad
        for other in self.notes:
            if other == voice:
                continue
            u1, u2 = self._before(other, t), self._at(other, t)
            if u1 < 0 or u2 < 0 or u1 == u2:
                continue
            interval = abs(u1 - v1) % 12
            if interval not in (0, 7):
                continue
            bad |= ((pitches - v1) * (u2 - u1) > 0) & (np.abs(u2 - pitches) % 12 == interval)
        return bad


class _Writer:
    """The grammar of one written voice in one segment (see the module docstring); ``levels``:
    the level to force per control (-1: any), None: none forced; ``known``: the row's
    :class:`_Voices` when parallel fifths and octaves are forbidden (``seg_start``: where the
    segment starts on the grid)."""

    def __init__(self, tokenizer: Any, lens: Sequence[int], levels: np.ndarray | None = None,
                 voice: str = "", seg_start: int = 0, known: _Voices | None = None):
        self.voice, self.seg_start, self.known = voice, int(seg_start), known
        self.t, self.lens = tokenizer, [int(x) for x in lens]
        n = len(tokenizer.controls)
        self.levels = np.full(n, -1, dtype=np.int64) if levels is None else np.asarray(levels, dtype=np.int64)
        self.owed = 0  # the next control token (after the Track token; n: all written)
        self.seg_len = int(sum(self.lens))
        self.bar = -1
        self.bar_start = 0
        self.cursor = 0  # relative to the segment start
        self.pos: int | None = None
        self.pitch = -1
        self.last = "track"
        self.done = False

    def mask(self) -> np.ndarray:
        from musicfw.plugins.tokenizers.tracks import BAR, DUR, PITCH, POS, TRACK_END

        t = self.t
        m = np.zeros(t.vocab_size, dtype=bool)
        f = t.first
        if self.last == "track":
            if self.owed < len(self.levels):
                level = int(self.levels[self.owed])
                ids = t.control_ids[self.owed]
                m[ids if level < 0 else ids[level]] = True
            else:
                m[f[BAR]] = True
            return m
        if self.last == "pos":
            m[f[PITCH]: f[PITCH] + t.config.max_pitch - t.config.min_pitch + 1] = True
            self._no_parallels(m, self.pos)
            return m
        if self.last == "pitch":
            start = self.pos if self.pos is not None else self.cursor
            room = min(t.max_duration, self.seg_len - start)
            m[f[DUR]: f[DUR] + max(room, 1)] = True
            return m
        length = self.lens[self.bar]
        here = self.cursor - self.bar_start
        every = t.config.positions == "every"
        if here < length:
            if not every:  # a note at the cursor needs no Pos (encode writes none)
                m[f[PITCH]: f[PITCH] + t.config.max_pitch - t.config.min_pitch + 1] = True
                self._no_parallels(m, self.cursor)
            lo = max(here if every else here + 1, 0)
            if lo < length:
                m[f[POS] + lo: f[POS] + length] = True
        if self.bar + 1 < len(self.lens):
            m[f[BAR]] = True
        else:
            m[f[TRACK_END]] = True
        return m

    def _no_parallels(self, m: np.ndarray, start: int) -> None:
        """With ``known``: take from ``m`` the pitches a note at ``start`` (in the segment) may
        not have; all of them stay when every pitch would make a parallel."""
        if self.known is None:
            return
        from musicfw.plugins.tokenizers.tracks import PITCH

        c = self.t.config
        lo = self.t.first[PITCH]
        pitches = np.arange(c.min_pitch, c.max_pitch + 1)
        bad = self.known.parallel_pitches(self.voice, self.seg_start + int(start), pitches)
        if not bad.all():
            m[lo: lo + len(pitches)] &= ~bad

    def update(self, tok: int) -> None:
        from musicfw.plugins.tokenizers.tracks import BAR, CONTROL, DUR, PITCH, POS, TRACK_END

        code = int(self.t.type_codes[tok])
        val = int(self.t.token_values[tok])
        if code >= CONTROL:
            self.owed += 1
        elif code == BAR:
            self.bar += 1
            self.bar_start = int(sum(self.lens[: self.bar]))
            self.last = "bar"
        elif code == POS:
            self.pos = self.bar_start + val
            self.last = "pos"
        elif code == PITCH:
            self.last = "pitch"
            self.pitch = val
        elif code == DUR:
            start = self.pos if self.pos is not None else self.cursor
            if self.known is not None:
                self.known.add(self.voice, self.seg_start + start, self.seg_start + start + val, self.pitch)
            self.cursor, self.pos, self.last = start + val, None, "dur"
        elif code == TRACK_END:
            self.done = True


def build_plan(tokenizer: Any, score: Any, mapping: dict[str, list[int]], write: Sequence[str],
               levels: np.ndarray | None = None) -> tuple[list, dict]:
    """The plan every sample follows: ``[("force", ids) | ("write", voice, bar_lengths,
    control levels or None, the segment's start on the grid), ...]``, and the given voices as the model reads them
    (:meth:`Tracks.parts`).  ``levels``: ``[segments, len(write), controls]`` from
    :meth:`Tracks.control_plan` (repeated when the piece has more segments), or None."""
    from musicfw.plugins.tokenizers.tracks import SEGMENT

    parts = tokenizer.parts(score, tracks=mapping)
    last = max(int(p["onset"][-1]) for p in parts.values())
    starts, lens = tokenizer.grid(score, last)
    given = [v for v in tokenizer.voices if v in mapping]
    seq = tokenizer.encode_parts(parts, starts, lens, given, end=False)
    cuts = list(np.flatnonzero(seq == tokenizer.first[SEGMENT])) + [len(seq)]
    sb = tokenizer.config.segment_bars
    plan: list = []
    for s in range(len(cuts) - 1):
        plan.append(("force", seq[cuts[s]: cuts[s + 1]]))
        seg_lens = lens[s * sb: (s + 1) * sb]
        for k, w in enumerate(write):
            plan.append(("force", np.array([tokenizer.track_token(w)])))
            plan.append(("write", w, seg_lens, None if levels is None else levels[s % len(levels), k], int(starts[s * sb])))
    return plan, parts


def harmonize(
    model: Any,
    tokenizer: Any,
    piece: Any,
    *,
    voices: Any = None,
    given: Any = None,
    n: int = 4,
    seed: int = 0,
    sampler: Any = None,
    batch_size: int = 8,
    device: Any = None,
    source: str = "the model",
    controls: Any = None,
    forbid_parallels: bool = False,
    pitch_temperature: float | None = None,
) -> list[Any]:
    """Write the missing voices of ``piece`` (a MIDI path or a ``symusic.Score``) ``n`` times.

    ``voices``: the voices to write (default: every voice the model knows that is not given);
    ``given``: the voices the piece holds (default: those it has tracks named after, else the
    first voice not written: a one-track melody is the soprano).  A file whose tracks carry no
    voice name gives its tracks to the given voices in order when it has exactly as many.  Returns ``n`` Scores, each the input with the written voices added as tracks
    named after them; the given tracks (and every other track of the input) unchanged.
    ``sampler``: a Sampler or chain (default temperature 1); ``seed`` makes the draw
    reproducible.  ``controls``: attribute levels for the written voices (``"density=high"``,
    ``"bass:pitch=low,alto:density=1"``, a mapping, or a list of them segment by segment;
    :mod:`musicfw.plugins.tokenizers.tracks_controls`), forced after each written voice's Track
    token; the attributes not asked for are the model's choice.  ``forbid_parallels``: no
    written note may move in parallel fifths or octaves with a voice already known at its
    onset (given, or written before it; :class:`_Voices`), the textbook rule the benchmark
    counts; off, the model's own choice.  ``pitch_temperature``: a temperature for the choice
    among pitches only (:func:`sharpen_within`): how likely a pitch is against the other tokens
    (where notes start, how long they last) stays the model's, so a value below 1 picks likelier
    pitches without thinning the rhythm as a temperature on every token does; None: as the
    sampler draws.  Errors (a
    :class:`~musicfw.core.errors.UserError`) come before any sampling: a model not trained to
    harmonise, voices it does not know, controls it was not trained with (or a level out of
    range, a voice not written), a file without the given voices or with a track for a voice to
    write, a piece the tokenizer cannot represent."""
    check_harmonizer(tokenizer, source)
    _, early = resolve_voices(tokenizer, voices, given)  # unknown voices fail before the file is read
    if controls is not None and voices is not None:  # so do bad controls, where the written voices are known
        tokenizer.control_plan(controls, early)
    if isinstance(piece, (str, Path)):
        where = str(piece)
        score = read_input(piece)
    else:
        where, score = "the given score", piece
    given_l, write_l = resolve_voices(tokenizer, voices, given, score)
    if not 1 <= int(n) <= 10_000:
        raise ConfigError(f"--n must be in 1..10000, got {n}.")
    if not 1 <= int(batch_size) <= 1024:
        raise ConfigError(f"batch_size must be in 1..1024, got {batch_size}.")
    if pitch_temperature is not None and not (math.isfinite(float(pitch_temperature)) and float(pitch_temperature) > 0):
        raise ConfigError(f"pitch_temperature (--pitch-temperature) must be a number > 0, got {pitch_temperature}.")
    levels = None if controls is None else tokenizer.control_plan(controls, write_l)
    mapping = map_given(tokenizer, score, given_l, write_l, where)
    check_representable(tokenizer, score, mapping, where)
    plan, parts = build_plan(tokenizer, score, mapping, write_l, levels)
    if sampler is None:
        from musicfw.engine.generation import build_sampler_chain

        sampler = build_sampler_chain({"name": "temperature", "temperature": 1.0})
    if getattr(sampler, "needs_history", False):
        raise ConfigError(f"The sampler {sampler!r} needs the tokens so far; harmonize takes temperature, top_k, top_p or greedy.")
    velocity = int(np.median(np.concatenate([score.tracks[i].notes.numpy()["velocity"] for idx in mapping.values() for i in idx])))
    outputs = []
    generator_seed = int(seed)
    done = 0
    while done < n:
        B = min(int(batch_size), n - done)
        seqs = _sample(model, tokenizer, sampler, plan, B, generator_seed + done, device,
                       parts if forbid_parallels else None, pitch_temperature)
        for s in seqs:
            decoded, _, _ = tokenizer.decode_voices(s)
            out = score.copy()
            tpq = int(score.ticks_per_quarter)
            for w in write_l:
                part = decoded.get(w, {"onset": np.zeros(0, np.int64), "duration": np.zeros(0, np.int64), "pitch": np.zeros(0, np.int64)})
                out.tracks.append(tokenizer.voice_track(w, part, tpq, velocity))
            outputs.append(out)
        done += B
    return outputs


def sharpen_within(logits: Any, ids: Any, temperature: float) -> Any:
    """``logits`` (``[B, V]``) with the choice among the tokens ``ids`` taken at ``temperature``
    while their total probability stays what it was: ``l_i / T + logsumexp(l) - logsumexp(l / T)``
    over ``ids``; the other tokens unchanged.  (Per-family sampling as the Compound Word
    Transformer's per-type temperatures, Hsiao et al. 2021.)  Rows where every one of ``ids``
    is masked are left alone."""
    import torch

    sub = logits[:, ids]
    scaled = sub / float(temperature)
    shift = torch.logsumexp(sub, dim=-1, keepdim=True) - torch.logsumexp(scaled, dim=-1, keepdim=True)
    live = torch.isfinite(shift)
    out = logits.clone()
    out[:, ids] = torch.where(live, scaled + shift, sub)  # a masked row's shift is NaN, and not taken
    return out


def _sample(model: Any, tokenizer: Any, sampler: Any, plan: list, B: int, seed: int, device: Any,
            parts: dict | None = None, pitch_temperature: float | None = None) -> list[np.ndarray]:
    """Run ``plan`` for ``B`` sequences at once; each row forces or samples its own next token.
    ``parts``: the given voices' notes (:func:`build_plan`) to forbid parallel fifths and
    octaves against (and between the written voices); None: the model's own choice.
    ``pitch_temperature``: see :func:`harmonize`."""
    import torch

    from musicfw.engine.generation import sampling_mode

    item = [0] * B
    offset = [0] * B
    writers: list[Any] = [None] * B
    known = [_Voices(parts) if parts is not None else None for _ in range(B)]
    out: list[list[int]] = [[] for _ in range(B)]
    finished = [False] * B
    V = tokenizer.vocab_size
    pitch_ids = None
    if pitch_temperature is not None and float(pitch_temperature) != 1.0:
        from musicfw.plugins.tokenizers.tracks import PITCH

        pitch_ids = torch.from_numpy(np.flatnonzero(tokenizer.type_codes == PITCH))
    with sampling_mode(model, device, seed, cpu_threads=1) as (device, gen):
        state = model.init_state(B, device=device)
        logits, state = model.step(None, state)
        while not all(finished):
            forced = np.full(B, -1, dtype=np.int64)
            allowed = np.ones((B, V), dtype=bool)
            for b in range(B):
                if finished[b]:
                    forced[b] = tokenizer.end_id
                    continue
                kind = plan[item[b]]
                if kind[0] == "force":
                    forced[b] = int(kind[1][offset[b]])
                else:
                    if writers[b] is None:
                        writers[b] = _Writer(tokenizer, kind[2], kind[3], kind[1], kind[4], known[b])
                        writers[b].last = "track"
                    allowed[b] = writers[b].mask()
            free = forced < 0
            if free.any():
                masked = logits.masked_fill(~torch.from_numpy(allowed).to(logits.device), float("-inf"))
                if pitch_ids is not None:
                    masked = sharpen_within(masked, pitch_ids.to(masked.device), float(pitch_temperature))
                x = model.draw(masked, sampler, gen, None).detach().cpu().numpy().astype(np.int64)
            else:
                x = np.zeros(B, dtype=np.int64)
            x = np.where(free, x, forced)
            for b in range(B):
                if finished[b]:
                    continue
                tok = int(x[b])
                out[b].append(tok)
                kind = plan[item[b]]
                if kind[0] == "force":
                    offset[b] += 1
                    advance = offset[b] >= len(kind[1])
                else:
                    writers[b].update(tok)
                    advance = writers[b].done
                if advance:
                    item[b] += 1
                    offset[b] = 0
                    writers[b] = None
                    if item[b] >= len(plan):
                        finished[b] = True
            if all(finished):
                break
            logits, state = model.step(torch.from_numpy(x).to(device), state)
    return [np.array(o + [tokenizer.end_id], dtype=np.int64) for o in out]
