"""``tracks``: a multi-track layout in which given voices condition the others (MMM-style).

MMM (Ens & Pasquier 2020, "MMM: Exploring Conditional Multi-Track Music Generation with the
Transformer") writes a piece as its tracks one after the other, each track as its bars, each
opened by a track token and closed by an end token; trained with the tracks in random order, a
language model then writes any track given any others.  Long pieces are cut into segments of
``segment_bars`` bars so the voices of one segment stay within the model's context: the piece
is its segments in time order, and inside every segment all of its voices::

    Segment BarLen_16 BarLen_16                         one segment: its bar lengths
      Track_soprano Bar Pitch_72 Dur_4 Pitch_71 Dur_4 ... Bar ... TrackEnd
      Track_bass    Bar Pitch_48 Dur_8 Pos_8 Pitch_43 Dur_8 ... Bar ... TrackEnd
      ...
    Segment ...
    End

A voice is a track named after it (``soprano``, ``Soprano 1``; case-insensitive prefix; the
bundled chorales name their four parts Soprano, Alto, Tenor, Bass) or, in a score whose tracks
carry none of the names, the k-th non-drum track when there are exactly as many as voices.

Time is a grid of ``beat_resolution`` positions per quarter note.  A note is ``Pitch Dur``, at
the end of the voice's previous note in the segment (the segment's start for its first note):
voices sing legato most of the time, so most notes need no time token; ``Pos_k`` (the position
inside the current bar) comes before a note that starts elsewhere (after a rest, or a chord
inside a voice).  ``Bar`` opens each of the segment's bars in every track, empty ones included.

``order``: ``shuffled`` (default) writes the voices of each segment in an order drawn from a
hash of the piece's notes (so encode is a pure function, the token cache holds one order, and
every augmented copy of a piece -- ``augment: {transpose: ...}`` -- draws another); and with
probability ``drop_voices`` per piece keeps only a random non-empty subset of its voices, so
the model also learns to write voices when others are absent (harmonising with
``--voices bass`` only, or scoring the alto/tenor/bass without a soprano).  ``fixed`` writes the
voices in ``voices`` order always (such a model writes only later voices given earlier ones).
:meth:`Tracks.encode_parts` writes an explicit order (what harmonisation and the benchmark use).

Attribute controls (``controls: [density, pitch_range, duration]``, off by default; the keys and
their meaning are REMI's, docs/tokenizers.md): each voice's attributes in each segment
(:func:`musicfw.music.controls.bar_attributes` over that voice's notes, the segment taken as one
bar: with ``segment_bars: 1`` per bar and voice), one token per attribute in the order given,
right after the voice's ``Track`` token::

    Track_bass Density_2 PitchRange_1 MeanDuration_3 Bar Pitch_48 Dur_8 ... TrackEnd

so harmonisation can ask for a denser or a lower bass (:meth:`Tracks.control_plan`,
``musicfw harmonize --controls``).  Their ids come after every other id, so a vocabulary without
controls is unchanged.  ``polyphony`` is offered too, but a chorale voice sings one note at a
time: it is about 1 in every segment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
import logging
from typing import Any, Dict, List, Sequence

import numpy as np

from musicfw.core.params import bounded, choice
from musicfw.core.tokenizer import Tokenizer
from musicfw.music.controls import ATTRIBUTES as CONTROL_ATTRIBUTES
from musicfw.music.controls import TOKEN_TYPES as CONTROL_TYPES
from musicfw.music.controls import bar_attributes, quantise
from musicfw.music.grid import bar_grid, bar_lengths, time_signature_table, to_steps
from musicfw.music.limits import check_piece, check_tokens

SEGMENT, BARLEN, TRACK, BAR, POS, PITCH, DUR, TRACK_END, END = range(9)
#: the control token types come after these, one code per attribute (CONTROL + index in ATTRIBUTES)
CONTROL = 9


@dataclass
class TracksConfig:
    voices: str = field(
        default="soprano,alto,tenor,bass",
        metadata={"help": "the voices (track names, comma-separated, lower case), in their fixed order"},
    )
    beat_resolution: int = bounded(4, ge=1, le=24, help="positions per quarter note")
    min_pitch: int = bounded(21, ge=0, le=127, help="lowest pitch represented")
    max_pitch: int = bounded(108, ge=0, le=127, help="highest pitch represented (inclusive)")
    max_duration_quarters: int = bounded(8, ge=1, le=64, help="longest Dur token (longer notes are clipped)")
    max_bar_quarters: int = bounded(8, ge=4, le=32, help="longest bar; a 4/4 bar must fit")
    segment_bars: int = bounded(2, ge=1, le=64, help="bars per segment (all voices of a segment are written together)")
    order: str = choice(
        "shuffled", ("shuffled", "fixed"),
        "voice order inside a segment: shuffled (drawn from a hash of the piece, so any voices can be "
        "written given the others) or fixed (the voices order: only later voices given earlier ones)",
    )
    positions: str = choice(
        "needed", ("needed", "every"),
        "Pos tokens: needed (only before a note that does not start where the voice's previous note "
        "ended) or every (before every note: each note says where it is in its bar, which lines the "
        "voices up for the model at about one more token per note)",
    )
    drop_voices: float = bounded(0.3, ge=0.0, le=1.0, help="shuffled: share of pieces encoded with a random subset of their voices")
    velocity: int = bounded(80, ge=1, le=127, help="velocity of decoded notes")
    controls: List[str] = field(
        default_factory=list,
        metadata={"choices": CONTROL_ATTRIBUTES, "help": "attribute controls written after each voice's Track token "
                  "in every segment (that voice's notes there), in this order: density, polyphony, pitch_range, "
                  "duration (docs/tokenizers.md, docs/harmonize.md); empty: none"},
    )
    control_levels: int = bounded(8, ge=2, le=32, help="levels per control (tokens <Type>_0 .. _<levels-1>)")
    control_bins: Dict[str, List[float]] = field(
        default_factory=dict,
        metadata={"help": "per control, control_levels-1 increasing boundaries (e.g. quantiles of the training "
                  "voice-segments: musicfw.music.controls.fit_bins); a control not given uses control_binning"},
    )
    control_binning: str = choice(
        "fixed",
        ("fixed", "fit"),
        "boundaries of the controls not in control_bins: fixed (the documented default bins) or fit (quantiles "
        "of the training split's voice-segments, so every level is about equally common: fitted when musicfw run "
        "loads the data, then stored in control_bins and tokenizer.json); docs/tokenizers.md",
    )


class Tracks(Tokenizer):
    """Voices as tracks of bars, segment by segment; any voices condition the others."""

    name = "tracks"
    Config = TracksConfig

    def __init__(self, config: Any = None):
        super().__init__(config)
        from musicfw.core.errors import ConfigError

        from ._common import check_pitch_range

        c = self.config
        check_pitch_range("tracks", c.min_pitch, c.max_pitch)
        voices = [v.strip().lower() for v in str(c.voices).split(",") if v.strip()]
        if not voices or len(set(voices)) != len(voices) or len(voices) > 16:
            raise ConfigError(
                f"tokenizer.voices: {c.voices!r} must name 1 to 16 different voices, comma-separated "
                "(e.g. soprano,alto,tenor,bass)."
            )
        self.voices: list[str] = voices
        res = c.beat_resolution
        self.n_positions = c.max_bar_quarters * res
        self.max_duration = c.max_duration_quarters * res
        self.table = time_signature_table(res, c.max_bar_quarters)
        self._table_len = bar_lengths(self.table, res)
        names, types, values = ["Segment"], [SEGMENT], [0]
        for k in range(1, self.n_positions + 1):
            names.append(f"BarLen_{k}"); types.append(BARLEN); values.append(k)  # noqa: E702
        for i, v in enumerate(voices):
            names.append(f"Track_{v}"); types.append(TRACK); values.append(i)  # noqa: E702
        names.append("Bar"); types.append(BAR); values.append(0)  # noqa: E702
        for k in range(self.n_positions):
            names.append(f"Pos_{k}"); types.append(POS); values.append(k)  # noqa: E702
        for p in range(c.min_pitch, c.max_pitch + 1):
            names.append(f"Pitch_{p}"); types.append(PITCH); values.append(p)  # noqa: E702
        for d in range(1, self.max_duration + 1):
            names.append(f"Dur_{d}"); types.append(DUR); values.append(d)  # noqa: E702
        names.append("TrackEnd"); types.append(TRACK_END); values.append(0)  # noqa: E702
        names.append("End"); types.append(END); values.append(0)  # noqa: E702
        from ._controls import ControlSetup

        self._control_setup = setup = ControlSetup("tracks", c)
        #: the attributes with control tokens, in stream order (after each Track token)
        self.controls: tuple[str, ...] = setup.controls
        #: per attribute, its control_levels - 1 boundaries (fit updates them)
        self.control_bins: dict[str, list[float]] = setup.bins
        self._warned_unfitted = False
        #: per attribute (stream order), the ids of its levels 0..L-1 (after every other id)
        self.control_ids = np.zeros((len(self.controls), setup.levels), dtype=np.int64)
        for i, a in enumerate(self.controls):
            for lv in range(setup.levels):
                self.control_ids[i, lv] = len(names)
                names.append(f"{CONTROL_TYPES[a]}_{lv}"); types.append(CONTROL + CONTROL_ATTRIBUTES.index(a))  # noqa: E702
                values.append(lv)
        self._vocab = names
        self.type_codes = np.array(types, dtype=np.int64)
        self.token_values = np.array(values, dtype=np.int64)
        self.first = {code: int(np.flatnonzero(self.type_codes == code)[0]) for code in set(types)}
        self.end_id = self.first[END]
        self.tpq = 480 if 480 % res == 0 else res * 120

    # -- vocabulary -----------------------------------------------------------------------
    @property
    def vocab(self) -> list[str]:
        return self._vocab

    @property
    def pitch_range(self) -> tuple[int, int]:
        return (self.config.min_pitch, self.config.max_pitch)

    def track_token(self, voice: str) -> int:
        return self.first[TRACK] + self.voices.index(voice)

    # -- voices of a score ----------------------------------------------------------------
    def voice_of_name(self, name: str) -> str | None:
        """The voice a track name stands for (case-insensitive prefix), or None."""
        n = str(name).strip().lower()
        for v in self.voices:
            if n.startswith(v):
                return v
        return None

    def track_voices(self, score: Any) -> list[str | None]:
        """The voice of each track of ``score`` (None: not a voice; drum tracks never are)."""
        named = [None if t.is_drum else self.voice_of_name(t.name) for t in score.tracks]
        if any(v is not None for v in named):
            return named
        pitched = [i for i, t in enumerate(score.tracks) if not t.is_drum and len(t.notes)]
        if len(pitched) == len(self.voices):
            out: list[str | None] = [None] * len(score.tracks)
            for i, v in zip(pitched, self.voices):
                out[i] = v
            return out
        return named

    def grid(self, score: Any, last_pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(bar starts, bar lengths) in positions covering ``0..last_pos``."""
        starts, slots = bar_grid(score, self.config.beat_resolution, self.table, last_pos)
        return starts, self._table_len[slots]

    def parts(self, score: Any, tracks: dict[str, Sequence[int]] | None = None) -> dict[str, dict[str, np.ndarray]]:
        """Each voice's notes on the grid: ``{voice: {"onset", "duration", "pitch"}}`` (positions;
        sorted by onset then pitch; pitches outside the range dropped, durations clipped).
        ``tracks``: which track indices make each voice (default :meth:`track_voices`)."""
        c = self.config
        tpq = int(score.ticks_per_quarter)
        if tracks is None:
            tracks = {}
            for i, v in enumerate(self.track_voices(score)):
                if v is not None:
                    tracks.setdefault(v, []).append(i)
        out = {}
        for v in self.voices:
            idx = tracks.get(v, [])
            if not idx:
                continue
            arrs = [score.tracks[i].notes.numpy() for i in idx]
            time = np.concatenate([a["time"] for a in arrs]).astype(np.int64)
            dur = np.concatenate([a["duration"] for a in arrs]).astype(np.int64)
            pitch = np.concatenate([a["pitch"] for a in arrs]).astype(np.int64)
            keep = (pitch >= c.min_pitch) & (pitch <= c.max_pitch)
            onset = np.maximum(to_steps(time[keep], tpq, c.beat_resolution), 0)
            d = np.clip(to_steps(dur[keep], tpq, c.beat_resolution), 1, self.max_duration)
            pitch = pitch[keep]
            order = np.lexsort((pitch, onset))
            if len(order):
                out[v] = {"onset": onset[order], "duration": d[order], "pitch": pitch[order]}
        return out

    # -- encode ---------------------------------------------------------------------------
    def _draw(self, parts: dict[str, dict[str, np.ndarray]], n_segments: int) -> tuple[list[str], list[list[str]]]:
        """(voices kept, order per segment) drawn from a hash of the notes (``order: shuffled``)."""
        h = hashlib.blake2b(digest_size=8)
        for v in self.voices:
            if v in parts:
                h.update(v.encode())
                h.update(parts[v]["onset"].tobytes())
                h.update(parts[v]["pitch"].tobytes())
        rng = np.random.default_rng(int.from_bytes(h.digest(), "little"))
        present = [v for v in self.voices if v in parts]
        kept = present
        if len(present) >= 2 and rng.random() < self.config.drop_voices:
            k = int(rng.integers(1, len(present)))
            pick = set(rng.choice(len(present), size=k, replace=False).tolist())
            kept = [v for i, v in enumerate(present) if i in pick]
        orders = [[kept[i] for i in rng.permutation(len(kept))] for _ in range(n_segments)]
        return kept, orders

    def encode(self, score: Any) -> np.ndarray:
        """Score -> ids; the voice order inside each segment follows ``order`` (module docstring)."""
        score = check_piece(score)
        parts = self.parts(score)
        if not parts:
            return np.zeros(0, dtype=np.int64)
        last = max(int(p["onset"][-1]) for p in parts.values())
        bar_starts, bar_len = self.grid(score, last)
        n_seg = -(-len(bar_starts) // self.config.segment_bars)
        if self.config.order == "fixed":
            orders = [[v for v in self.voices if v in parts]] * n_seg
        else:
            kept, orders = self._draw(parts, n_seg)
            parts = {v: parts[v] for v in kept}
        return self.encode_parts(parts, bar_starts, bar_len, orders)

    def encode_parts(
        self,
        parts: dict[str, dict[str, np.ndarray]],
        bar_starts: np.ndarray,
        bar_len: np.ndarray,
        order: Sequence[str] | Sequence[Sequence[str]],
        end: bool = True,
    ) -> np.ndarray:
        """The token sequence of ``parts`` (:meth:`parts`) over the bars ``bar_starts`` /
        ``bar_len``, with the voices of every segment in ``order`` (one list for all segments,
        or one list per segment); a voice of ``order`` without notes is written with empty bars.
        ``end``: close with the End token.  Vectorized: one sort over every token."""
        nb = len(bar_starts)
        sb = self.config.segment_bars
        n_seg = -(-nb // sb)
        if len(order) and isinstance(order[0], str):
            orders = [list(order)] * n_seg  # type: ignore[list-item]
        else:
            orders = [list(o) for o in order]  # type: ignore[arg-type]
        if len(orders) != n_seg:
            raise ValueError(f"tracks: {len(orders)} segment orders for {n_seg} segments")
        bar_len = np.asarray(bar_len, dtype=np.int64)
        bar_starts = np.asarray(bar_starts, dtype=np.int64)
        seg_of_bar = np.arange(nb) // sb
        seg_start = bar_starts[::sb]
        BIG = np.int64(1) << 40
        # key columns: segment, rank of the voice in its segment (-1: header), time key, index, sub
        cols: list[tuple[np.ndarray, ...]] = []

        def add(seg, rank, tkey, idx, sub, tok):
            sized = [np.size(a) for a in (seg, rank, tkey, idx, sub, tok) if np.ndim(a)]
            n = max(sized) if sized else 1
            cols.append(tuple(np.broadcast_to(np.asarray(a, dtype=np.int64), (n,)) for a in (seg, rank, tkey, idx, sub, tok)))

        # headers: Segment, then BarLen per bar
        add(np.arange(n_seg), -1, -1, 0, 0, self.first[SEGMENT])
        add(seg_of_bar, -1, 0, np.arange(nb), 1, self.first[BARLEN] + bar_len - 1)
        check_tokens(n_seg + nb + sum(len(o) for o in orders) * (2 + len(self.controls)) + nb * max(len(o) for o in orders)
                     + 3 * sum(len(p["onset"]) for p in parts.values()), "tokens", self.name)
        seg_len = np.add.reduceat(bar_len, np.arange(0, nb, sb)) if nb else np.zeros(0, dtype=np.int64)
        for v in self.voices:
            segs = np.array([s for s in range(n_seg) if v in orders[s]], dtype=np.int64)
            if not len(segs):
                continue
            rank_of_seg = np.full(n_seg, -2, dtype=np.int64)
            rank_of_seg[segs] = [orders[s].index(v) for s in segs.tolist()]
            tok = self.track_token(v)
            add(segs, rank_of_seg[segs], -2, 0, 0, tok)
            add(segs, rank_of_seg[segs], BIG, 0, 0, self.first[TRACK_END])
            if self.controls:  # right after the Track token: this voice's levels in each segment
                levels = self.segment_levels(parts.get(v), seg_start, seg_len)
                for i in range(len(self.controls)):
                    add(segs, rank_of_seg[segs], -2, 0, 1 + i, self.control_ids[i, levels[segs, i]])
            bars = np.flatnonzero(rank_of_seg[seg_of_bar] >= 0)
            add(seg_of_bar[bars], rank_of_seg[seg_of_bar[bars]], bar_starts[bars] * 4, 0, 0, self.first[BAR])
            p = parts.get(v)
            if p is None or not len(p["onset"]):
                continue
            on, du, pi = p["onset"], p["duration"], p["pitch"]
            bar = np.clip(np.searchsorted(bar_starts, on, side="right") - 1, 0, nb - 1)
            seg = seg_of_bar[bar]
            keep = rank_of_seg[seg] >= 0
            on, du, pi, bar, seg = on[keep], du[keep], pi[keep], bar[keep], seg[keep]
            if not len(on):
                continue
            rank = rank_of_seg[seg]
            idx = np.arange(len(on))
            prev_end = np.concatenate([[0], (on + du)[:-1]])
            first_in_seg = np.ones(len(on), dtype=bool)
            first_in_seg[1:] = seg[1:] != seg[:-1]
            cursor = np.where(first_in_seg, seg_start[seg], prev_end)
            in_bar = on - bar_starts[bar]
            # a note whose position the bar cannot name (beyond a bar longer than max_bar_quarters:
            # bar_grid never makes one) would be unrepresentable; positions are always < bar_len
            need = (on != cursor) | (in_bar >= self.n_positions) | (self.config.positions == "every")
            tkey = on * 4 + 1
            add(seg[need], rank[need], tkey[need], idx[need], 0, self.first[POS] + np.minimum(in_bar[need], self.n_positions - 1))
            add(seg, rank, tkey, idx, 1, self.first[PITCH] + pi - self.config.min_pitch)
            add(seg, rank, tkey, idx, 2, self.first[DUR] + du - 1)
        seg_c, rank_c, t_c, i_c, sub_c, tok_c = (np.concatenate([c[k] for c in cols]) for k in range(6))
        order_ix = np.lexsort((sub_c, i_c, t_c, rank_c, seg_c))
        out = tok_c[order_ix]
        if end:
            out = np.concatenate([out, [self.end_id]])
        return out.astype(np.int64)

    def track_mask(self, tokens: np.ndarray, voices: Sequence[str]) -> np.ndarray:
        """True on the tokens inside the tracks of ``voices`` (after each Track token, up to and
        including its TrackEnd): what a model writes for those voices."""
        ids = np.asarray(tokens, dtype=np.int64)
        n = len(ids)
        codes = self.type_codes[ids]
        boundary = np.isin(codes, (TRACK, TRACK_END, SEGMENT, END))
        # the last boundary token strictly before each position
        last = np.where(boundary, np.arange(n), -1)
        np.maximum.accumulate(last, out=last)
        before = np.concatenate([[-1], last[:-1]])
        wanted = np.zeros(len(self.voices), dtype=bool)
        wanted[[self.voices.index(v) for v in voices]] = True
        j = np.maximum(before, 0)
        opened_by = (before >= 0) & (codes[j] == TRACK)
        voice = np.where(opened_by, self.token_values[ids][j], 0)
        return opened_by & wanted[voice] & ~np.isin(codes, (TRACK, SEGMENT, END))

    # -- attribute controls -------------------------------------------------------------
    #: voice-segments read at most when fitting the control boundaries (the first pieces')
    MAX_FIT_SEGMENTS = 1 << 20

    @property
    def unfitted(self) -> tuple[str, ...]:
        """Attributes whose boundaries ``control_binning: fit`` has still to find (the fixed
        bins stand in until then)."""
        return self._control_setup.unfitted

    def segment_levels(self, part: dict[str, np.ndarray] | None, seg_start: np.ndarray, seg_len: np.ndarray) -> np.ndarray:
        """Level of each control (columns in ``controls`` order) of one voice's ``part`` in each
        segment (rows; segments start at ``seg_start`` and last ``seg_len`` positions); a voice
        without notes has the levels of empty segments."""
        if self.unfitted and not self._warned_unfitted:
            self._warned_unfitted = True
            logging.getLogger("musicfw.tokenizers").warning(
                "tracks: control_binning: fit, but the boundaries of %s were not fitted yet (tokenizer.fit(training "
                "scores); musicfw run does it): the fixed default bins are used until then", ", ".join(self.unfitted))
        att = _voice_attributes(part, seg_start, seg_len)
        out = np.zeros((len(seg_start), len(self.controls)), dtype=np.int64)
        for i, a in enumerate(self.controls):
            out[:, i] = quantise(att[a], self.control_bins[a])
        return out

    def segments(self, score: Any, parts: dict[str, dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Where each segment of ``score`` starts and how long it is (grid positions), over
        the bars its voices ``parts`` (:meth:`parts`, not empty) reach."""
        last = max(int(p["onset"][-1]) for p in parts.values())
        starts, lens = self.grid(score, last)
        sb = self.config.segment_bars
        return starts[::sb], np.add.reduceat(lens, np.arange(0, len(starts), sb))

    def segment_attributes(self, score: Any) -> dict[str, np.ndarray]:
        """Each attribute of each voice in each segment of ``score``, as encode measures them:
        float arrays over (voice, segment) pairs, the voices the score has, in ``voices`` order
        (what ``control_binning: fit`` fits to)."""
        score = check_piece(score)
        parts = self.parts(score)
        if not parts:
            return {a: np.zeros(0) for a in CONTROL_ATTRIBUTES}
        seg_start, seg_len = self.segments(score, parts)
        per_voice = [_voice_attributes(parts[v], seg_start, seg_len) for v in self.voices if v in parts]
        return {a: np.concatenate([att[a] for att in per_voice]) for a in CONTROL_ATTRIBUTES}

    def fit(self, scores: Any) -> bool:
        """``control_binning: fit``: each unfitted control's boundaries become the quantiles of
        its values over the voice-segments of ``scores`` (the training split's pieces, every
        voice they have), so every level holds about as many; stored in
        ``config.control_bins`` (and so in tokenizer.json).  False when there is nothing to fit."""
        return self._control_setup.fit(self.config, self.segment_attributes, scores, self.MAX_FIT_SEGMENTS,
                                       "voice-segment")

    def control_plan(self, controls: Any, voices: Sequence[str], where: str = "--controls") -> np.ndarray:
        """Requested levels ``[segments, len(voices), len(controls)]`` (-1: the model's choice)
        for the written ``voices``: see :func:`.tracks_controls.control_plan`."""
        from .tracks_controls import control_plan

        return control_plan(self, controls, voices, where)

    # -- decode ---------------------------------------------------------------------------
    def decode_voices(self, tokens: np.ndarray) -> tuple[dict[str, dict[str, np.ndarray]], list[int], int]:
        """``({voice: {"onset", "duration", "pitch"}}, bar lengths, invalid tokens)``.

        Any sequence decodes: a token that does not fit where it stands (a note outside a
        track or before its first Bar, a Pos beyond its bar, a Dur without its Pitch, a second
        BarLen list) is counted as invalid and ignored.  One Python step per token (generated
        sequences are a few thousand tokens; training never decodes)."""
        from ._common import check_ids

        ids = check_ids(tokens, self.vocab_size, self.name)
        codes = self.type_codes[ids].tolist()
        vals = self.token_values[ids].tolist()
        default_len = 4 * self.config.beat_resolution
        notes: dict[str, list[tuple[int, int, int]]] = {}
        all_lens: list[int] = []
        seg_start, lens, header = 0, [], False
        seg_bars = 0
        voice: str | None = None
        bar, bar_start, cursor = -1, 0, 0
        pending_pos, pending_pitch = None, None
        invalid = 0

        def seg_length() -> int:
            n = max(len(lens), seg_bars)
            return sum(lens[k] if k < len(lens) else (lens[-1] if lens else default_len) for k in range(n))

        for code, val in zip(codes, vals):
            if pending_pitch is not None and code != DUR:
                invalid += 1
                pending_pitch = None
            if code == END:
                break
            if code == SEGMENT:
                all_lens += [lens[k] if k < len(lens) else (lens[-1] if lens else default_len)
                             for k in range(max(len(lens), seg_bars))]
                seg_start += seg_length()
                lens, header, seg_bars, voice = [], True, 0, None
                continue
            if code == BARLEN:
                if header:
                    lens.append(val)
                else:
                    invalid += 1
                continue
            header = False
            if code == TRACK:
                voice, bar, cursor, pending_pos = self.voices[val], -1, seg_start, None
                continue
            if code == TRACK_END:
                if voice is None:
                    invalid += 1
                voice = None
                continue
            if code >= CONTROL:  # a voice's controls stand between its Track token and its first Bar
                if voice is None or bar >= 0:
                    invalid += 1
                continue
            if voice is None:
                invalid += 1
                continue
            if code == BAR:
                bar += 1
                seg_bars = max(seg_bars, bar + 1)
                bar_start = seg_start + sum(lens[k] if k < len(lens) else (lens[-1] if lens else default_len) for k in range(bar))
                pending_pos = None
                continue
            length = lens[bar] if 0 <= bar < len(lens) else (lens[-1] if lens else default_len)
            if bar < 0 or (code == POS and val >= length):
                invalid += 1
                continue
            if code == POS:
                pending_pos = bar_start + val
            elif code == PITCH:
                pending_pitch = val
            elif code == DUR:
                if pending_pitch is None:
                    invalid += 1
                    continue
                t = pending_pos if pending_pos is not None else cursor
                notes.setdefault(voice, []).append((t, val, pending_pitch))
                cursor, pending_pos, pending_pitch = t + val, None, None
        if pending_pitch is not None:
            invalid += 1
        all_lens += [lens[k] if k < len(lens) else (lens[-1] if lens else default_len) for k in range(max(len(lens), seg_bars))]
        out = {}
        for v, ns in notes.items():
            a = np.array(ns, dtype=np.int64).reshape(-1, 3)
            order = np.lexsort((a[:, 2], a[:, 0]))
            out[v] = {"onset": a[order, 0], "duration": a[order, 1], "pitch": a[order, 2]}
        return out, all_lens, invalid

    def voice_track(self, voice: str, part: dict[str, np.ndarray], tpq: int, velocity: int | None = None) -> Any:
        """A symusic track named after ``voice`` holding ``part`` (positions) at ``tpq``."""
        from symusic import Note, Track

        res = self.config.beat_resolution
        track = Track(voice.capitalize(), 0, False)
        vel = self.config.velocity if velocity is None else int(velocity)
        track.notes = Note.from_numpy(
            (part["onset"] * tpq // res).astype(np.int32),
            np.maximum(part["duration"] * tpq // res, 1).astype(np.int32),
            part["pitch"].astype(np.int8),
            np.full(len(part["pitch"]), vel, dtype=np.int8),
        )
        return track

    def decode(self, tokens: np.ndarray) -> Any:
        """Tokens -> Score: one track per voice (named after it), 120 qpm, the bars' time
        signatures (a bar of q quarters as q/4, of an odd number of eighths as n/8)."""
        from symusic import Score, Tempo, TimeSignature

        parts, lens, _ = self.decode_voices(tokens)
        score = Score(self.tpq)
        for v in self.voices:
            if v in parts:
                score.tracks.append(self.voice_track(v, parts[v], self.tpq))
        score.tempos.append(Tempo(0, 120.0))
        unit = self.tpq // self.config.beat_resolution
        res = self.config.beat_resolution
        t, last = 0, None
        for n in lens or [4 * res]:
            ts = (n // res, 4) if n % res == 0 else ((2 * n) // res, 8) if (2 * n) % res == 0 else (4, 4)
            if ts != last:
                score.time_signatures.append(TimeSignature(t * unit, ts[0], ts[1]))
                last = ts
            t += n
        return score

    def count_invalid(self, tokens: np.ndarray) -> int:
        return int(self.decode_voices(tokens)[2])

    def count_notes(self, tokens: np.ndarray) -> int:
        return int(sum(len(p["onset"]) for p in self.decode_voices(tokens)[0].values()))

    def coverage(self, score: Any, tokens: np.ndarray | None = None) -> dict[str, Any]:
        """Notes the layout cannot represent: drum tracks, tracks that are no voice, pitches out
        of range, voices ``drop_voices`` leaves out of this piece; altered: durations clipped to
        ``max_duration_quarters``."""
        from ._common import Coverage

        c = self.config
        cov = Coverage(score)
        s = cov.score
        tpq = int(s.ticks_per_quarter)
        kept = set(self.voices)
        if c.order == "shuffled":
            parts = self.parts(s)
            kept = set(self._draw(parts, 0)[0]) if parts else kept
        for t, v in zip(s.tracks, self.track_voices(s)):
            n = len(t.notes)
            if not n:
                continue
            if t.is_drum:
                cov.lose(n, "drum track (the tracks tokenizer has voices, no drums)")
                continue
            if v is None:
                cov.lose(n, f"track not a voice (tracks named {', '.join(self.voices)}; tokenizer.voices)")
                continue
            if v not in kept:
                cov.lose(n, "voice left out of this piece's encoding (drop_voices, a training augmentation)")
                continue
            a = t.notes.numpy()
            out = (a["pitch"] < c.min_pitch) | (a["pitch"] > c.max_pitch)
            cov.lose(int(out.sum()), f"pitch outside {c.min_pitch}..{c.max_pitch} (min_pitch, max_pitch)")
            long = to_steps(a["duration"][~out], tpq, c.beat_resolution) > self.max_duration
            cov.alter(int(long.sum()), f"duration clipped to {c.max_duration_quarters} quarters (max_duration_quarters)")
        return cov.report()


def _voice_attributes(part: dict[str, np.ndarray] | None, seg_start: np.ndarray, seg_len: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`musicfw.music.controls.bar_attributes` of one voice over the segments (each one
    "bar"); zeros for a voice without notes."""
    if part is None or not len(part["onset"]):
        return {a: np.zeros(len(seg_start)) for a in CONTROL_ATTRIBUTES}
    return bar_attributes(part["onset"], part["duration"], part["pitch"], seg_start, seg_len)
