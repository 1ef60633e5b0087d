"""The structure of the REMI and MIDI-like vocabularies: their grammars (which ids may come
next, for constrained decoding) and their clocks (bars and seconds so far, for the generation
limits).  The tokenizers hand them to core through ``Tokenizer.grammar`` / ``Tokenizer.clock``.

numpy only: cheap to import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from musicfw.core.clock import Clock
from musicfw.core.constraints import Grammar


def type_codes(token_types: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Map each id's type name to its index in ``names`` (-1 for other types)."""
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup.get(str(t), -1) for t in token_types], dtype=np.int64)


class REMIGrammar(Grammar):
    """REMI: Bar, [TimeSig], Position, [Tempo, Chord, Program], Pitch Velocity Duration ...

    Rules (each one keeps decode from dropping a token, or follows how encode writes bars):

    * the sequence starts with ``Bar``;
    * a ``TimeSig`` only right after ``Bar`` (the bar's length is then known before its
      positions; a time signature later in a bar would re-time positions already placed);
    * ``Position_k`` only inside a bar, strictly after the bar's last position, and
      ``k`` < the bar's length in positions (a position beyond the bar is dropped);
    * ``Tempo``, ``Chord``, ``Program`` and ``Pitch`` only once the bar has a position;
    * ``Pitch`` is always followed by ``Velocity`` then ``Duration``, and neither of those
      appears anywhere else (a broken triplet is dropped); a Pitch only when three tokens
      are left.
    * ``Bar`` may come whenever no note triplet is open.
    """

    name = "remi"
    TYPES = ("Bar", "Position", "Pitch", "Velocity", "Duration", "Tempo", "TimeSig", "Chord", "Program")
    BAR, POSITION, PITCH, VELOCITY, DURATION, TEMPO, TIMESIG, CHORD, PROGRAM = range(9)

    def __init__(self, tokenizer: Any, batch_size: int):
        super().__init__(tokenizer, batch_size)
        self.codes = type_codes(tokenizer.token_types, self.TYPES)
        self.values = np.asarray(tokenizer.token_values, dtype=np.int64)
        # a 4/4 bar unless a TimeSig token says otherwise (REMI decodes bars without one as 4/4)
        res = int(tokenizer.config.beat_resolution)
        self.default_bar_len = 4 * res
        self.pos_ids = np.flatnonzero(self.codes == self.POSITION)
        self.pos_values = self.values[self.pos_ids]
        # id -> class column used when expanding per-row class flags to [B, V]
        self.col = np.where(self.codes >= 0, self.codes, len(self.TYPES))
        self.reset()

    def reset(self) -> None:
        B = self.batch_size
        self.started = np.zeros(B, dtype=bool)  # a Bar has been seen
        self.after_bar = np.zeros(B, dtype=bool)  # the last token is a Bar
        self.bar_len = np.full(B, self.default_bar_len, dtype=np.int64)
        self.pos = np.full(B, -1, dtype=np.int64)  # last Position in the current bar
        self.open = np.zeros(B, dtype=np.int64)  # 0: no triplet; 1: after Pitch; 2: after Velocity

    def update(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        code = self.codes[ids]
        val = self.values[ids]
        is_bar = code == self.BAR
        self.started |= is_bar
        self.pos[is_bar] = -1
        is_ts = code == self.TIMESIG
        self.bar_len[is_ts] = val[is_ts]
        is_pos = code == self.POSITION
        self.pos[is_pos] = val[is_pos]
        self.after_bar = is_bar
        self.open = np.where(
            code == self.PITCH, 1, np.where((code == self.VELOCITY) & (self.open == 1), 2, 0)
        )

    def mask(self, remaining: int | np.ndarray | None = None) -> np.ndarray:
        rem = self._remaining(remaining)
        B = self.batch_size
        free = self.open == 0
        at_pos = free & self.started & (self.pos >= 0)
        flags = np.zeros((B, len(self.TYPES) + 1), dtype=bool)  # last column: unknown types
        flags[:, self.BAR] = free
        flags[:, self.TIMESIG] = free & self.after_bar
        flags[:, self.POSITION] = free & self.started
        for c in (self.TEMPO, self.CHORD, self.PROGRAM):
            flags[:, c] = at_pos
        flags[:, self.PITCH] = at_pos & (rem >= 3)
        flags[:, self.VELOCITY] = self.open == 1
        flags[:, self.DURATION] = self.open == 2
        allowed = flags[:, self.col]
        if len(self.pos_ids):
            ok = (self.pos_values[None, :] > self.pos[:, None]) & (self.pos_values[None, :] < self.bar_len[:, None])
            allowed[:, self.pos_ids] &= ok
        return allowed


class REMIChordGrammar(REMIGrammar):
    """REMI's grammar plus a chord progression placed by constrained decoding.

    ``bars``: per bar of the progression, the Chord token ids to place in it (the
    progression repeats when the piece is longer).  Bars are counted from the first ``Bar``
    after :meth:`start` (the end of a prompt; the rest of a prompt's last bar is left free).
    Chord ``i`` of the ``n`` of a bar belongs at position ``i * bar_len // n`` (bar_len from
    the bar's TimeSig); a chord equal to the one before it in the same bar goes on and is not
    written again (as encode writes only changes), but every bar opens with its chord.  On
    top of :class:`REMIGrammar`'s rules, while a chord of the
    current bar is still to be placed:

    * no ``Bar`` and no ``Position`` past the chord's position (so the position is reached);
    * at that position, only that Chord token (a ``Tempo`` may come first, right after the
      ``Position``, where encode writes tempo changes);

    and every other Chord token is masked: the chords are the given ones, nothing else.
    The model generates everything else.
    """

    name = "remi+chords"

    def __init__(self, tokenizer: Any, batch_size: int, bars: list[list[int]]):
        if not bars or any(not bar for bar in bars):
            raise ValueError("REMIChordGrammar needs at least one chord per bar")
        width = max(len(bar) for bar in bars)
        # [n_bars, width]: the chord ids to write (-1 pad) and their slot i of the bar's n
        self.plan = np.full((len(bars), width), -1, dtype=np.int64)
        self.slot = np.zeros((len(bars), width), dtype=np.int64)
        self.per_bar = np.zeros(len(bars), dtype=np.int64)  # chords written per bar
        self.slots = np.array([len(bar) for bar in bars], dtype=np.int64)  # n: the bar's division
        for b, bar in enumerate(bars):
            keep = [i for i in range(len(bar)) if i == 0 or bar[i] != bar[i - 1]]
            self.plan[b, : len(keep)] = [bar[i] for i in keep]
            self.slot[b, : len(keep)] = keep
            self.per_bar[b] = len(keep)
        super().__init__(tokenizer, batch_size)
        self.chord_ids = np.flatnonzero(self.codes == self.CHORD)
        self.tempo_ids = np.flatnonzero(self.codes == self.TEMPO)
        self.bar_ids = np.flatnonzero(self.codes == self.BAR)

    def reset(self) -> None:
        super().reset()
        B = self.batch_size
        self.active = False  # set by start(): the prompt is behind us
        self.bar_index = np.full(B, -1, dtype=np.int64)  # bar of the progression (unwrapped)
        self.placed = np.zeros(B, dtype=np.int64)  # chords of the current bar placed so far
        self.after_pos = np.zeros(B, dtype=bool)  # the last token is a Position

    def start(self) -> None:
        self.active = True

    def _target(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pending, target position, target chord id) per row."""
        in_bar = self.bar_index >= 0
        row = np.where(in_bar, self.bar_index, 0) % len(self.plan)
        pending = self.active & in_bar & (self.placed < self.per_bar[row])
        k = np.minimum(self.placed, self.plan.shape[1] - 1)
        target_id = self.plan[row, k]
        target_pos = (self.slot[row, k] * self.bar_len) // self.slots[row]
        return pending, target_pos, target_id

    def update(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        code = self.codes[ids]
        if self.active:
            pending, _, target_id = self._target()
            self.placed = self.placed + (pending & (ids == target_id))
            is_bar = code == self.BAR
            self.bar_index = np.where(is_bar, self.bar_index + 1, self.bar_index)
            self.placed[is_bar] = 0
        self.after_pos = code == self.POSITION
        super().update(ids)

    def mask(self, remaining: int | np.ndarray | None = None) -> np.ndarray:
        allowed = super().mask(remaining)
        if not self.active:
            return allowed
        pending, target_pos, target_id = self._target()
        free = self.open == 0
        allowed[:, self.chord_ids] = False  # only the given chords, placed below
        # before the chord's position: no Bar, no Position past it
        early = pending & free & (self.pos < target_pos)
        if early.any():
            allowed[np.ix_(early, self.bar_ids)] = False
            too_far = self.pos_values[None, :] > target_pos[:, None]
            sub = allowed[:, self.pos_ids]
            sub[early] &= ~too_far[early]
            allowed[:, self.pos_ids] = sub
        # at (or, defensively, past) the position: the chord, or a Tempo right after the Position
        due = pending & free & (self.pos >= target_pos)
        if due.any():
            tempo_ok = allowed[:, self.tempo_ids] & self.after_pos[:, None]
            allowed[due] = False
            allowed[due, target_id[due]] = True
            allowed[np.ix_(due, self.tempo_ids)] = tempo_ok[due]
        return allowed


class MIDILikeGrammar(Grammar):
    """Performance events: NoteOn, NoteOff, TimeShift, Velocity.

    Rules:

    * ``NoteOff_p`` only while pitch p sounds, and not at the step its note started (a
      zero-length note is dropped);
    * ``NoteOn_p`` not twice at one step (the first note would have no length), and only
      when a TimeShift can still follow (two tokens left);
    * when one token is left and a note started at the current step, only a TimeShift;
    * no two ``Velocity`` tokens in a row (the first would be overwritten unused).
    """

    name = "midi_like"
    TYPES = ("NoteOn", "NoteOff", "TimeShift", "Velocity")
    NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY = range(4)

    def __init__(self, tokenizer: Any, batch_size: int):
        super().__init__(tokenizer, batch_size)
        self.codes = type_codes(tokenizer.token_types, self.TYPES)
        self.values = np.asarray(tokenizer.token_values, dtype=np.int64)
        # pitch -> column of the per-row pitch state (only pitches that have note events)
        note = (self.codes == self.NOTE_ON) | (self.codes == self.NOTE_OFF)
        self.pitches = np.unique(self.values[note])
        self.key = np.where(note, np.searchsorted(self.pitches, self.values), 0)
        self.on_ids = np.flatnonzero(self.codes == self.NOTE_ON)
        self.off_ids = np.flatnonzero(self.codes == self.NOTE_OFF)
        self.col = np.where(self.codes >= 0, self.codes, len(self.TYPES))
        self.reset()

    def reset(self) -> None:
        B, P = self.batch_size, len(self.pitches)
        self.sounding = np.zeros((B, P), dtype=bool)
        self.started_now = np.zeros((B, P), dtype=bool)  # NoteOn at the current time step
        self.any_now = np.zeros(B, dtype=bool)
        self.after_velocity = np.zeros(B, dtype=bool)

    def update(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        code = self.codes[ids]
        rows = np.arange(self.batch_size)
        key = self.key[ids]
        on = code == self.NOTE_ON
        off = code == self.NOTE_OFF
        shift = code == self.TIME_SHIFT
        self.sounding[rows[on], key[on]] = True
        self.started_now[rows[on], key[on]] = True
        self.sounding[rows[off], key[off]] = False
        self.started_now[shift] = False
        self.any_now = (self.any_now | on) & ~shift
        self.after_velocity = code == self.VELOCITY

    def mask(self, remaining: int | np.ndarray | None = None) -> np.ndarray:
        rem = self._remaining(remaining)
        B = self.batch_size
        last = rem <= 1
        flags = np.zeros((B, len(self.TYPES) + 1), dtype=bool)
        flags[:, self.TIME_SHIFT] = True
        flags[:, self.NOTE_ON] = ~last
        flags[:, self.NOTE_OFF] = ~(last & self.any_now)
        flags[:, self.VELOCITY] = ~self.after_velocity & ~(last & self.any_now)
        allowed = flags[:, self.col]
        allowed[:, self.on_ids] &= ~self.started_now[:, self.key[self.on_ids]]
        allowed[:, self.off_ids] &= (self.sounding & ~self.started_now)[:, self.key[self.off_ids]]
        return allowed


class REMIClock(Clock):
    """Bars are Bar tokens; seconds follow Position/Bar tokens through the Tempo tokens."""

    bar_tokens = True

    def __init__(self, batch_size: int, tokenizer: Any):
        super().__init__(batch_size)
        self.codes = np.asarray(tokenizer.token_types)
        self.is_bar = self.codes == "Bar"
        self.is_pos = self.codes == "Position"
        self.is_tempo = self.codes == "Tempo"
        self.is_ts = self.codes == "TimeSig"
        self.values = np.asarray(tokenizer.token_values, dtype=np.int64)
        self.res = int(tokenizer.config.beat_resolution)
        self.bar_len = np.full(batch_size, 4 * self.res, dtype=np.int64)
        self.bar_start = np.zeros(batch_size, dtype=np.int64)
        self.t = np.zeros(batch_size, dtype=np.int64)  # absolute position
        self.qpm = np.full(batch_size, 120.0)
        self.bars = np.zeros(batch_size)
        self.seconds = np.zeros(batch_size)
        self.mark()

    def would_open_bar(self, x: np.ndarray) -> np.ndarray:
        return self.is_bar[x]

    def update(self, x: np.ndarray) -> None:
        bar, pos, tempo, ts = self.is_bar[x], self.is_pos[x], self.is_tempo[x], self.is_ts[x]
        val = self.values[x]
        started = self.bars > 0
        new_t = self.t.copy()
        # a Bar closes the current bar (the first Bar opens bar 1 at 0)
        self.bar_start = np.where(bar & started, self.bar_start + self.bar_len, self.bar_start)
        new_t[bar] = self.bar_start[bar]
        self.bars = self.bars + bar
        new_t[pos] = self.bar_start[pos] + val[pos]
        self.seconds = self.seconds + np.maximum(new_t - self.t, 0) * 60.0 / (self.qpm * self.res)
        self.t = new_t
        self.qpm = np.where(tempo, np.maximum(val, 1), self.qpm)
        self.bar_len = np.where(ts, val, self.bar_len)


class ShiftClock(Clock):
    """MIDI-like: seconds are the TimeShift tokens; there are no bars."""

    has_bars = False

    def __init__(self, batch_size: int, tokenizer: Any):
        super().__init__(batch_size)
        sps = float(tokenizer.config.steps_per_second)
        types = np.asarray(tokenizer.token_types)
        self.shift = np.where(types == "TimeShift", np.asarray(tokenizer.token_values), 0) / sps
        self.bars = np.zeros(batch_size)
        self.seconds = np.zeros(batch_size)
        self.mark()

    def update(self, x: np.ndarray) -> None:
        self.seconds = self.seconds + self.shift[x]
