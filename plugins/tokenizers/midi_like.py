"""``midi_like``: Performance RNN's event vocabulary (Oore et al. 2018; Magenta's
``PerformanceOneHotEncoding``).

Ids, in this order (default sizes: 128 + 128 + 100 + 32 = 388)::

    NoteOn_<pitch>     min_pitch..max_pitch       start a note at the current time
    NoteOff_<pitch>    min_pitch..max_pitch       end the sounding note of that pitch
    TimeShift_<k>      k = 1..max_shift_steps     advance time by k steps (1 step = 1/steps_per_second s)
    Velocity_<v>       one per velocity bin       velocity of the following NoteOns

Time is absolute (seconds, through the score's tempo map), quantized to the step grid.
See docs/tokenizers.md for the exact quantization and decoding rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicfw.core.params import bounded
from musicfw.core.tokenizer import Tokenizer
from musicfw.music.limits import check_piece, check_tokens
from musicfw.music.notes import piece_notes

from ._common import (
    Coverage,
    build_score,
    check_ids,
    check_pitch_range,
    ffill,
    merged_tracks,
    next_in_group,
    velocity_bins,
)

# type codes (index into TYPE_NAMES)
NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY = 0, 1, 2, 3
TYPE_NAMES = ("NoteOn", "NoteOff", "TimeShift", "Velocity")


@dataclass
class MIDILikeConfig:
    min_pitch: int = bounded(0, ge=0, le=127, help="lowest pitch with NoteOn/NoteOff tokens")
    max_pitch: int = bounded(127, ge=0, le=127, help="highest pitch (inclusive)")
    steps_per_second: int = bounded(100, ge=1, le=10_000, help="time grid: 100 = 10 ms steps")
    max_shift_steps: int = bounded(100, ge=1, le=100_000, help="number of TimeShift tokens (longest shift)")
    velocity_bins: int = bounded(32, ge=1, le=127, help="number of Velocity tokens")
    sustain_pedal: bool = field(
        default=False, metadata={"help": "extend notes held by the sustain pedal (as Magenta does)"}
    )
    include_drums: bool = field(default=False, metadata={"help": "also tokenize drum tracks"})
    default_velocity: int = bounded(64, ge=1, le=127, help="velocity of NoteOns before any Velocity token")


class MIDILike(Tokenizer):
    """Performance RNN events: NoteOn, NoteOff, TimeShift (10 ms), Velocity (388 ids by default)."""

    name = "midi_like"
    Config = MIDILikeConfig

    def __init__(self, config: Any = None):
        super().__init__(config)
        c = self.config
        check_pitch_range("midi_like", c.min_pitch, c.max_pitch)
        self._bin_of, self._bin_value = velocity_bins(c.velocity_bins)
        n_pitch = c.max_pitch - c.min_pitch + 1
        sizes = (n_pitch, n_pitch, c.max_shift_steps, c.velocity_bins)
        self._offsets = np.concatenate([[0], np.cumsum(sizes)])
        #: type code per id (see TYPE_NAMES)
        self.type_codes = np.repeat(np.arange(4), sizes)
        pitches = np.arange(c.min_pitch, c.max_pitch + 1)
        #: value per id: the pitch, the shift in steps, or the velocity a Velocity token decodes to
        self.token_values = np.concatenate([pitches, pitches, np.arange(1, c.max_shift_steps + 1), self._bin_value])
        #: type name per id: "NoteOn", "NoteOff", "TimeShift", "Velocity"
        self.token_types = np.array(TYPE_NAMES)[self.type_codes]
        self._vocab = [f"{t}_{v}" for t, v in zip(self.token_types, self.token_values)]

    # -- vocabulary -------------------------------------------------------------------------
    @property
    def vocab(self) -> list[str]:
        return self._vocab

    @property
    def pitch_range(self) -> tuple[int, int]:
        return (self.config.min_pitch, self.config.max_pitch)

    def token_id(self, kind: str, value: int) -> int:
        """The id of e.g. ``("NoteOn", 60)``, ``("TimeShift", 10)``; Velocity takes a MIDI velocity."""
        c = self.config
        code = TYPE_NAMES.index(kind)
        if code in (NOTE_ON, NOTE_OFF):
            if not c.min_pitch <= value <= c.max_pitch:
                raise ValueError(f"pitch {value} outside {c.min_pitch}..{c.max_pitch}")
            return int(self._offsets[code] + value - c.min_pitch)
        if code == TIME_SHIFT:
            if not 1 <= value <= c.max_shift_steps:
                raise ValueError(f"time shift {value} outside 1..{c.max_shift_steps}")
            return int(self._offsets[code] + value - 1)
        return int(self._offsets[VELOCITY] + self._bin_of[int(value)])

    # -- quantization -------------------------------------------------------------------------
    def quantize(self, score: "Any") -> dict[str, np.ndarray]:
        """The notes exactly as encode sees them: integer steps ``start``, ``end`` (> start),
        ``pitch`` and velocity ``bin``; sorted by (start, pitch).

        Times are seconds on the step grid (rounded); pedal-held notes are extended when
        ``sustain_pedal``; a note re-struck while it still sounds ends at the new onset;
        pitches outside the range are dropped; every note lasts at least one step.
        """
        c = self.config
        score = check_piece(score)
        drums = "include" if c.include_drums else "exclude"
        notes = piece_notes(score, drums=drums, sort=False, seconds=True, check=False)
        sps = c.steps_per_second
        start = np.round(notes.start_s * sps).astype(np.int64)
        end_s = notes.end_s
        if c.sustain_pedal:
            end_s = self._apply_pedal(score.to("second"), c.include_drums, end_s)
        end = np.round(end_s * sps).astype(np.int64)
        keep = (notes.pitch >= c.min_pitch) & (notes.pitch <= c.max_pitch)
        start, end, pitch, vel = start[keep], end[keep], notes.pitch[keep], notes.velocity[keep]
        start = np.maximum(start, 0)
        end = np.maximum(end, start + 1)
        # same-pitch overlaps: a note ends no later than the next onset of its pitch
        order = np.lexsort((-end, start, pitch))
        start, end, pitch, vel = start[order], end[order], pitch[order], vel[order]
        nxt = next_in_group(pitch)
        has_next = nxt >= 0
        next_start = np.where(has_next, start[np.maximum(nxt, 0)], np.iinfo(np.int64).max)
        end = np.minimum(end, next_start)
        # several notes of one pitch at the same step: only the last (longest) survives
        keep = end > start
        start, end, pitch, vel = start[keep], end[keep], pitch[keep], vel[keep]
        order = np.lexsort((pitch, start))
        return {
            "start": start[order],
            "end": end[order],
            "pitch": pitch[order],
            "bin": self._bin_of[vel[order]],
        }

    @staticmethod
    def _apply_pedal(sec: "Any", include_drums: bool, end_s: np.ndarray) -> np.ndarray:
        """Extend note ends that fall while the sustain pedal is down to the pedal release.

        Pedals are taken per track; a note of a track is extended by that track's pedals only.
        """
        end_s = end_s.copy()
        offset = 0
        for track in sec.tracks:
            if track.is_drum and not include_drums:
                continue
            n = len(track.notes)
            if n == 0:
                continue
            ped = track.pedals.numpy()
            if len(ped["time"]):
                p_start = ped["time"].astype(np.float64)
                p_end = p_start + ped["duration"].astype(np.float64)
                order = np.argsort(p_start, kind="stable")
                p_start, p_end = p_start[order], np.maximum.accumulate(p_end[order])
                e = end_s[offset : offset + n]
                k = np.searchsorted(p_start, e, side="right") - 1
                held = (k >= 0) & (e < p_end[np.maximum(k, 0)])
                e[held] = p_end[k[held]]
            offset += n
        return end_s

    # -- encode -------------------------------------------------------------------------------
    def grammar(self, batch_size: int) -> Any:
        """The performance-event grammar: no zero-length or unmatched notes."""
        from .structure import MIDILikeGrammar

        return MIDILikeGrammar(self, batch_size)

    def clock(self, batch_size: int) -> Any:
        """Seconds are the TimeShift tokens; there are no bars."""
        from .structure import ShiftClock

        return ShiftClock(batch_size, self)

    def encode(self, score: "Any") -> np.ndarray:
        c = self.config
        q = self.quantize(score)
        n = len(q["start"])
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        # events: offs before ons at the same step (a re-struck pitch is closed, then opened)
        ev_time = np.concatenate([q["end"], q["start"]])
        ev_type = np.concatenate([np.full(n, NOTE_OFF), np.full(n, NOTE_ON)])
        ev_pitch = np.concatenate([q["pitch"], q["pitch"]])
        ev_bin = np.concatenate([np.full(n, -1), q["bin"]])
        order = np.lexsort((ev_pitch, ev_type == NOTE_ON, ev_time))
        ev_time, ev_type, ev_pitch, ev_bin = ev_time[order], ev_type[order], ev_pitch[order], ev_bin[order]
        m = len(ev_time)
        # time shifts before each event
        gap = np.diff(ev_time, prepend=0)
        n_shift = -(-gap // c.max_shift_steps)  # ceil
        # a velocity token before a NoteOn whose bin differs from the current one
        is_on = ev_type == NOTE_ON
        on_bins = ev_bin[is_on]
        prev_bin = np.concatenate([[-1], on_bins[:-1]])  # the first NoteOn always states its velocity
        vel_change = np.zeros(m, dtype=bool)
        vel_change[is_on] = on_bins != prev_bin
        per_event = n_shift + vel_change + 1
        total = int(per_event.sum())
        check_tokens(total, "tokens", self.name)
        out = np.empty(total, dtype=np.int64)
        ends = np.cumsum(per_event)
        starts = ends - per_event
        # event tokens (last slot of each group)
        pitch_off = ev_pitch - c.min_pitch
        out[ends - 1] = np.where(is_on, self._offsets[NOTE_ON], self._offsets[NOTE_OFF]) + pitch_off
        # velocity tokens (second-to-last slot)
        vpos = ends[vel_change] - 2
        out[vpos] = self._offsets[VELOCITY] + ev_bin[vel_change]
        # time-shift tokens: n-1 full shifts then the remainder, starting at each group's start
        has_shift = n_shift > 0
        ns = n_shift[has_shift]
        if ns.size:
            g = gap[has_shift]
            base = np.repeat(starts[has_shift], ns)
            within = np.arange(int(ns.sum())) - np.repeat(np.cumsum(ns) - ns, ns)
            last = within == np.repeat(ns - 1, ns)
            steps = np.where(last, np.repeat(g - (ns - 1) * c.max_shift_steps, ns), c.max_shift_steps)
            out[base + within] = self._offsets[TIME_SHIFT] + steps - 1
        return out

    def coverage(self, score: "Any", tokens: np.ndarray | None = None) -> dict[str, Any]:
        """Notes the events cannot represent (drums without ``include_drums``, pitches outside
        the range, a pitch struck again within one time step) and notes they change (every
        track is merged into one, programs are lost); see
        :meth:`musicfw.core.tokenizer.Tokenizer.coverage`."""
        c = self.config
        cov = Coverage(score)
        drums = None if c.include_drums else "drum track (include_drums=false)"
        notes = cov.notes_in_range(c.min_pitch, c.max_pitch, drums=drums)
        kept = len(self.quantize(cov.score)["start"])
        cov.lose(len(notes) - kept, f"same pitch struck again within one time step (1/{c.steps_per_second} s)")
        cov.alter(merged_tracks(cov.score, notes, c.include_drums), "tracks merged into one, programs lost (midi_like has one track)")
        return cov.report()

    # -- decode -------------------------------------------------------------------------------
    def _decode_arrays(self, tokens: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
        """(notes in steps, number of ignored tokens)."""
        c = self.config
        ids = check_ids(tokens, self.vocab_size, self.name)
        codes = self.type_codes[ids]
        vals = self.token_values[ids]
        shift = np.where(codes == TIME_SHIFT, vals, 0)
        t_at = np.cumsum(shift)  # time after each token (a shift applies to what follows)
        total_time = int(t_at[-1]) if len(t_at) else 0
        is_vel = codes == VELOCITY
        cur_vel = ffill(vals, is_vel, c.default_velocity)
        is_note = (codes == NOTE_ON) | (codes == NOTE_OFF)
        idx = np.flatnonzero(is_note)
        e_pitch = vals[idx]
        e_on = codes[idx] == NOTE_ON
        e_time = t_at[idx]
        order = np.lexsort((idx, e_pitch))  # by pitch, then in sequence order
        e_pitch, e_on, e_time, e_idx = e_pitch[order], e_on[order], e_time[order], idx[order]
        nxt = next_in_group(e_pitch)
        has_next = nxt >= 0
        # a NoteOn lasts until the next event of its pitch (NoteOn or NoteOff) or the end
        on_end = np.where(has_next, e_time[np.maximum(nxt, 0)], total_time)
        prev_is_on = np.zeros(len(e_on), dtype=bool)
        prev_is_on[1:] = e_on[:-1] & (e_pitch[1:] == e_pitch[:-1])
        # a NoteOff is used only when it closes a sounding note (the previous event of its pitch is a NoteOn)
        off_orphan = ~e_on & ~prev_is_on
        on_sel = e_on
        start = e_time[on_sel]
        end = on_end[on_sel]
        pitch = e_pitch[on_sel]
        vel = cur_vel[e_idx[on_sel]]
        closed_by_off = has_next & ~e_on[np.maximum(nxt, 0)]
        zero = end <= start
        # zero-length notes are dropped: their NoteOn, and the NoteOff that closed them
        n_invalid = int(off_orphan.sum()) + int(zero.sum()) + int((zero & closed_by_off[on_sel]).sum())
        keep = ~zero
        return {"start": start[keep], "end": end[keep], "pitch": pitch[keep], "velocity": vel[keep]}, n_invalid

    def decode(self, tokens: np.ndarray) -> "Any":
        """Tokens -> a one-track Score at 60 qpm with one tick per time step."""
        notes, _ = self._decode_arrays(tokens)
        sps = self.config.steps_per_second
        return build_score(
            sps,
            notes["start"],
            notes["end"] - notes["start"],
            notes["pitch"],
            notes["velocity"],
            tempo_qpm=(60.0,),
        )

    def count_invalid(self, tokens: np.ndarray) -> int:
        """Tokens decode ignores: NoteOffs of a pitch that is not sounding, and the tokens of
        zero-length notes (a NoteOn closed at the same step)."""
        return self._decode_arrays(tokens)[1]

    def count_notes(self, tokens: np.ndarray) -> int:
        return int(len(self._decode_arrays(tokens)[0]["start"]))
