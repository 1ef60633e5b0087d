"""``remi``: REMI (Huang & Yang 2020, "Pop Music Transformer"), vectorized.

Vocabulary, in id order (sizes with the default config in brackets)::

    Bar                                   start of the next bar                        [1]
    Position_<k>     k = 0..P-1           onset inside the bar, in 1/beat_resolution quarters
                                          (P = max_bar_quarters * beat_resolution)     [32]
    Pitch_<p>        min_pitch..max_pitch                                              [88]
    Velocity_<v>     one per velocity bin (v = the velocity it decodes to)             [32]
    Duration_<d>     d = 1..max_duration_quarters * beat_resolution positions          [32]
    Tempo_<q>        tempo bins, quarter notes per minute (use_tempos)                 [32]
    TimeSig_<n>/<d>  supported time signatures (use_time_signatures)                   [60]
    Chord_<root>:<quality>, Chord_N.C.    rule-based chord per segment (use_chords)   [61]
    Program_<p>      0..127, Program_Drums (use_programs)                              [129]
    Density_<l>, Polyphony_<l>, PitchRange_<l>, MeanDuration_<l>
                     l = 0..control_levels-1: attribute controls after each Bar (controls)  [0]

A note is the triplet Pitch, Velocity, Duration at the current Bar + Position.  The
exact quantization and the decoding rules are in docs/tokenizers.md, and so are the chord
recogniser (:meth:`REMI.recognise_chords`, how well it agrees with music21) and
chord-conditioned generation (:meth:`REMI.chord_grammar`: a given progression's Chord tokens
placed by constrained decoding).  Decode writes each Chord token as a ``Chord_<name>`` marker.
The chord vocabulary and the recogniser are the music library's (:mod:`musicfw.music.chords`);
so are the bar grid and the rounding to positions (:mod:`musicfw.music.grid`).

Attribute controls (``controls: [density, polyphony, pitch_range, duration]``, off by default):
each bar's measured attributes (:mod:`musicfw.music.controls`), one token per attribute in the
order given, right after the bar's ``Bar`` token (before its TimeSig), so a bar's controls
travel with it.  At generation they are forced (:meth:`REMI.controls_grammar`) or left to the
model.  Their ids come after every other id, so a vocabulary without controls is unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np

from musicfw.core.params import bounded, choice
from musicfw.core.tokenizer import Tokenizer
from musicfw.music.controls import ATTRIBUTES as CONTROL_ATTRIBUTES
from musicfw.music.controls import TOKEN_TYPES as CONTROL_TYPES
from musicfw.music.controls import bar_attributes, default_bins, quantise
from musicfw.music.chords import (
    CHORD_MARKER_PREFIX,
    CHORD_QUALITIES,
    NO_CHORD,
    chord_name,
    chords_in_bars,
    parse_chord,
    parse_progression,
)
from musicfw.music.grid import bar_grid, bar_lengths, time_signature_table, to_steps
from musicfw.music.limits import check_piece, check_tokens
from musicfw.music.notes import DRUM_PROGRAM, PITCH_CLASS_NAMES, piece_notes

from ._common import (
    Coverage,
    check_pitch_range,
    merged_tracks,
    build_score,
    check_ids,
    ffill,
    nearest_bin,
    tempo_bins,
    velocity_bins,
)

BAR, POSITION, PITCH, VELOCITY, DURATION, TEMPO, TIMESIG, CHORD, PROGRAM = range(9)
#: the control token types come after these, one code per attribute (CONTROL + index in ATTRIBUTES)
CONTROL = 9
TYPE_NAMES = ("Bar", "Position", "Pitch", "Velocity", "Duration", "Tempo", "TimeSig", "Chord", "Program") + tuple(
    CONTROL_TYPES[a] for a in CONTROL_ATTRIBUTES
)


def _spread(value, shape: tuple) -> np.ndarray:
    """``value`` as int64 of ``shape`` (a scalar repeated): ``np.broadcast_to`` did the same
    but its Python overhead was a tenth of encode's time on short files (cProfile,
    benchmarks/data.py --profile)."""
    arr = np.asarray(value, dtype=np.int64)
    return arr if arr.shape == shape else np.full(shape, arr, dtype=np.int64)


@dataclass
class REMIConfig:
    beat_resolution: int = bounded(4, ge=1, le=480, help="positions per quarter note (4 -> 16 per 4/4 bar)")
    min_pitch: int = bounded(21, ge=0, le=127, help="lowest pitch kept (notes outside are dropped)")
    max_pitch: int = bounded(108, ge=0, le=127, help="highest pitch kept (inclusive)")
    velocity_bins: int = bounded(32, ge=1, le=127, help="number of Velocity tokens")
    max_duration_quarters: int = bounded(8, ge=1, le=256, help="longest Duration (longer notes are clipped)")
    max_bar_quarters: int = bounded(8, ge=4, le=256, help="longest bar (sets the number of Position tokens); a 4/4 bar must fit")
    use_tempos: bool = field(default=True, metadata={"help": "Tempo tokens"})
    tempo_bins: int = bounded(32, ge=1, le=10_000, help="number of Tempo tokens (geometric spacing)")
    min_tempo: float = bounded(40.0, gt=0, le=10_000, help="slowest Tempo token, quarter notes per minute")
    max_tempo: float = bounded(250.0, gt=0, le=10_000, help="fastest Tempo token")
    use_time_signatures: bool = field(default=True, metadata={"help": "TimeSig tokens after Bar; otherwise every bar is 4/4"})
    use_chords: bool = field(default=False, metadata={"help": "Chord tokens from a rule-based recognizer"})
    chord_quarters: int = bounded(2, ge=1, le=256, help="chord segment length in quarters (from each bar start)")
    chord_method: str = choice(
        "cosine",
        ("cosine", "count"),
        "chord recogniser: cosine (normalised templates, bass breaks ties) or count (the first one: "
        "+1 per chord tone, -1 per other); docs/tokenizers.md",
    )
    use_programs: bool = field(
        default=False,
        metadata={"help": "Program tokens (multitrack, drums included); otherwise pitched tracks are merged and drums dropped"},
    )
    controls: List[str] = field(
        default_factory=list,
        metadata={"choices": CONTROL_ATTRIBUTES, "help": "attribute controls written after each Bar, in this order: "
                  "density, polyphony, pitch_range, duration (docs/tokenizers.md); empty: none"},
    )
    control_levels: int = bounded(8, ge=2, le=32, help="levels per control (tokens <Type>_0 .. _<levels-1>)")
    control_bins: Dict[str, List[float]] = field(
        default_factory=dict,
        metadata={"help": "per control, control_levels-1 increasing boundaries (e.g. quantiles of the training "
                  "bars: musicfw.music.controls.fit_bins); a control not given uses control_binning"},
    )
    control_binning: str = choice(
        "fixed",
        ("fixed", "fit"),
        "boundaries of the controls not in control_bins: fixed (the documented default bins) or fit (quantiles "
        "of the training split's bars, so every level is about equally common: fitted when musicfw run loads "
        "the data, then stored in control_bins and tokenizer.json); docs/tokenizers.md",
    )


class REMI(Tokenizer):
    """REMI: Bar, Position, Pitch, Velocity, Duration, Tempo (+ TimeSig, Chord, Program)."""

    name = "remi"
    Config = REMIConfig

    @property
    def streams_notes(self) -> bool:
        """A note is final once its Pitch, Velocity and Duration are out, and a bar's tokens
        decode alone (its Position tokens place its notes); not with ``use_programs``, whose
        Program token carries over from earlier bars."""
        return not self.config.use_programs

    def __init__(self, config: Any = None):
        super().__init__(config)
        c = self.config
        check_pitch_range("remi", c.min_pitch, c.max_pitch)
        if c.use_tempos and c.min_tempo > c.max_tempo:
            from musicfw.core.errors import ConfigError

            raise ConfigError(f"remi: min_tempo ({c.min_tempo}) must be <= max_tempo ({c.max_tempo}).")
        res = c.beat_resolution
        self._bin_of, self._bin_value = velocity_bins(c.velocity_bins)
        self.n_positions = c.max_bar_quarters * res
        self.max_duration = c.max_duration_quarters * res
        # supported time signatures: n/d with d in 2,4,8,16, a bar of whole positions, <= max_bar_quarters
        ts = time_signature_table(res, c.max_bar_quarters)
        self.time_signatures: list[tuple[int, int]] = ts if c.use_time_signatures else []
        self._ts_len = bar_lengths(self.time_signatures, res)
        self._ts_index = {t: i for i, t in enumerate(self.time_signatures)}
        self._default_ts = self._ts_index.get((4, 4), len(self.time_signatures))  # last slot: implicit 4/4
        self.tempos = tempo_bins(c.tempo_bins, c.min_tempo, c.max_tempo) if c.use_tempos else np.zeros(0)

        names, types, values = ["Bar"], [BAR], [0]
        for k in range(self.n_positions):
            names.append(f"Position_{k}"); types.append(POSITION); values.append(k)  # noqa: E702
        for p in range(c.min_pitch, c.max_pitch + 1):
            names.append(f"Pitch_{p}"); types.append(PITCH); values.append(p)  # noqa: E702
        for v in self._bin_value:
            names.append(f"Velocity_{v}"); types.append(VELOCITY); values.append(int(v))  # noqa: E702
        for d in range(1, self.max_duration + 1):
            names.append(f"Duration_{d}"); types.append(DURATION); values.append(d)  # noqa: E702
        for q in self.tempos:
            names.append(f"Tempo_{q:g}"); types.append(TEMPO); values.append(int(round(q)))  # noqa: E702
        for i, (n, d) in enumerate(self.time_signatures):
            names.append(f"TimeSig_{n}/{d}"); types.append(TIMESIG); values.append(int(self._ts_len[i]))  # noqa: E702
        if c.use_chords:
            for qi, q in enumerate(CHORD_QUALITIES):
                for root in range(12):
                    names.append(f"Chord_{PITCH_CLASS_NAMES[root]}:{q}"); types.append(CHORD)  # noqa: E702
                    values.append(qi * 12 + root)
            names.append("Chord_N.C."); types.append(CHORD); values.append(NO_CHORD)  # noqa: E702
        if c.use_programs:
            for p in range(128):
                names.append(f"Program_{p}"); types.append(PROGRAM); values.append(p)  # noqa: E702
            names.append("Program_Drums"); types.append(PROGRAM); values.append(DRUM_PROGRAM)  # noqa: E702
        self._vocab = names
        #: type code per id (index into TYPE_NAMES)
        self.type_codes = np.array(types, dtype=np.int64)
        #: type name per id: "Bar", "Position", "Pitch", "Velocity", "Duration", "Tempo", "TimeSig", "Chord", "Program"
        self.token_types = np.array(TYPE_NAMES)[self.type_codes]
        #: value per id: Position k, Pitch p, Velocity (decoded velocity), Duration (positions),
        #: Tempo (rounded qpm), TimeSig (bar length in positions), Chord (quality*12 + root, 60 = N.C.),
        #: Program (0..127, 128 = drums); Bar 0
        self.token_values = np.array(values, dtype=np.int64)
        self._first = {code: int(np.flatnonzero(self.type_codes == code)[0]) for code in set(types)}
        # local index of each id inside its type (for tempo/time-signature lookup)
        self._local = np.arange(len(types)) - np.array([self._first[t] for t in types])
        self.tpq = 480 if 480 % res == 0 else res * 120
        self._init_controls(names, types, values)

    def _init_controls(self, names: list, types: list, values: list) -> None:
        """Control tokens (``controls``): appended after every other id."""
        from ._controls import ControlSetup

        self._control_setup = setup = ControlSetup("remi", self.config)
        levels = setup.levels
        ctrl = list(setup.controls)
        #: the attributes with control tokens, in stream order
        self.controls: tuple[str, ...] = setup.controls
        #: per attribute, its levels-1 boundaries (the setup's own dict: fit updates both)
        self.control_bins: dict[str, list[float]] = setup.bins
        self._warned_unfitted = False
        #: per attribute (stream order), the ids of its levels 0..L-1
        self.control_ids = np.zeros((len(ctrl), levels), dtype=np.int64)
        start = len(names)
        for i, a in enumerate(ctrl):
            for lv in range(levels):
                self.control_ids[i, lv] = len(names)
                names.append(f"{CONTROL_TYPES[a]}_{lv}"); types.append(CONTROL + CONTROL_ATTRIBUTES.index(a))  # noqa: E702
                values.append(lv)
        if len(names) > start:
            self.type_codes = np.array(types, dtype=np.int64)
            self.token_types = np.array(TYPE_NAMES)[self.type_codes]
            self.token_values = np.array(values, dtype=np.int64)
            self._first = {code: int(np.flatnonzero(self.type_codes == code)[0]) for code in set(types)}
            self._local = np.arange(len(types)) - np.array([self._first[t] for t in types])

    # -- vocabulary -------------------------------------------------------------------------
    @property
    def vocab(self) -> list[str]:
        return self._vocab

    @property
    def pitch_range(self) -> tuple[int, int]:
        return (self.config.min_pitch, self.config.max_pitch)

    def token_id(self, name: str) -> int:
        """The id of a token name such as ``"Pitch_60"``."""
        try:
            return self._vocab.index(name)
        except ValueError:
            raise ValueError(f"remi: no token named {name!r}") from None

    def bar_lengths(self) -> np.ndarray:
        """Bar length in positions for each TimeSig token (in TimeSig id order)."""
        return self._ts_len[: len(self.time_signatures)].copy()

    # -- chords ------------------------------------------------------------------------------
    def _require_chords(self, what: str) -> None:
        from musicfw.core.errors import ConfigError

        if not self.config.use_chords:
            raise ConfigError(
                f"{what}: this REMI tokenizer has no Chord tokens (tokenizer.use_chords: false), so a "
                "model trained with it cannot be given chords; train with tokenizer.use_chords: true."
            )

    def chord_token(self, name: str) -> int:
        """The id of the Chord token for a chord name (``"Am"``, ``"F#:min"``, ``"N.C."``;
        the names are in :mod:`musicfw.music.chords`).  ConfigError for an
        unknown name, or when the vocabulary has no Chord tokens (``use_chords: false``)."""
        self._require_chords("chord_token")
        return self._first[CHORD] + parse_chord(name)

    def chord_grammar(self, progression: Any, batch_size: int) -> Any:
        """REMI's grammar that also places the Chord tokens of ``progression`` (a string such
        as ``"C G Am F"`` or a list of bars; see :mod:`musicfw.music.chords`)
        at the start of each bar, and where a bar holds several chords; the progression
        repeats when the piece is longer.  ConfigError for an unknown chord name or a
        vocabulary without Chord tokens."""
        from .structure import REMIChordGrammar

        self._require_chords("chord-conditioned generation (generate.chords / --chords)")
        bars = parse_progression(progression, "the chord progression (generate.chords / --chords)")
        grammar = REMIChordGrammar(self, batch_size, [[self._first[CHORD] + c for c in bar] for bar in bars])
        if self.controls:
            from .remi_controls import ControlGrammar

            grammar = ControlGrammar(grammar, self)
        return grammar

    def recognise_chords(self, score: Any, every_segment: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The rule-based chord recogniser that writes REMI's Chord tokens, on its own:
        ``(ticks, chord)`` -- where each recognised chord starts, in the score's ticks, and
        its index (``quality * 12 + root``, 60 = N.C.; names from
        :func:`musicfw.music.chords.chord_name`).  By default only the changes
        (what encode writes); ``every_segment``: one entry per ``chord_quarters`` segment.
        Works whatever ``use_chords`` is.  How it decides: docs/tokenizers.md and
        :func:`musicfw.music.chords.recognise` (:func:`musicfw.music.chords.recognise_score`
        gives the same chords for a default REMI without building one)."""
        score = check_piece(score)
        q = self.quantize(score)
        if len(q["onset"]) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        last_pos = int(q["onset"][-1])
        bar_starts, bar_slot = self._bar_grid(score, last_pos)
        pos, chord = self._chords(q, bar_starts, self._ts_len[bar_slot], last_pos, changes_only=not every_segment)
        tpq = int(score.ticks_per_quarter)
        ticks = (pos * tpq) // self.config.beat_resolution
        return ticks.astype(np.int64), chord.astype(np.int64)

    # -- attribute controls ---------------------------------------------------------------------
    #: bars read at most when fitting the control boundaries (the first ones, pieces in id order)
    MAX_FIT_BARS = 1 << 20

    def fit(self, scores: Any) -> bool:
        """``control_binning: fit``: each unfitted control's boundaries become the quantiles
        of its values over the bars of ``scores`` (the training split's pieces;
        :func:`musicfw.music.controls.fit_bins`, at most :attr:`MAX_FIT_BARS` bars), so every
        level holds about as many bars; they go into ``config.control_bins``, so ``save``
        stores them and a reloaded tokenizer encodes with the same ones.  A piece that cannot
        be encoded is skipped (as the token cache skips it).  False (``scores`` not read) when
        there is nothing to fit.  DataError when the pieces hold no bar."""
        return self._control_setup.fit(self.config, self.score_attributes, scores, self.MAX_FIT_BARS, "bar")

    @property
    def unfitted(self) -> tuple[str, ...]:
        """Attributes whose boundaries ``control_binning: fit`` has still to find (the fixed
        bins stand in until then)."""
        return self._control_setup.unfitted

    def score_attributes(self, score: Any) -> dict[str, np.ndarray]:
        """Each attribute (:mod:`musicfw.music.controls`) of each bar of ``score`` as encode
        measures it (float ``[n_bars]``; the bars encode writes, drums left out)."""
        score = check_piece(score)
        q = self.quantize(score)
        if len(q["onset"]) == 0:
            return {a: np.zeros(0) for a in CONTROL_ATTRIBUTES}
        bar_starts, bar_slot = self._bar_grid(score, int(q["onset"][-1]))
        pitched = q["program"] != DRUM_PROGRAM
        return bar_attributes(q["onset"][pitched], q["duration"][pitched], q["pitch"][pitched], bar_starts,
                              self._ts_len[bar_slot])

    def bar_levels(self, onset: np.ndarray, duration: np.ndarray, pitch: np.ndarray, bar_starts: np.ndarray,
                   bar_len: np.ndarray) -> np.ndarray:
        """Level of each control (columns in ``controls`` order) of each bar (rows), from
        notes in positions (:func:`musicfw.music.controls.bar_attributes`, drums left out)."""
        if self.unfitted and not self._warned_unfitted:
            self._warned_unfitted = True
            logging.getLogger("musicfw.tokenizers").warning(
                "remi: control_binning: fit, but the boundaries of %s were not fitted yet (tokenizer.fit(training "
                "scores); musicfw run does it): the fixed default bins are used until then", ", ".join(self.unfitted))
        att = bar_attributes(onset, duration, pitch, bar_starts, bar_len)
        out = np.zeros((len(bar_starts), len(self.controls)), dtype=np.int64)
        for i, a in enumerate(self.controls):
            out[:, i] = quantise(att[a], self.control_bins[a])
        return out

    def measure_controls(self, tokens: np.ndarray) -> dict[str, Any]:
        """What a token sequence's bars are like: ``{"values": {attribute: [n_bars]},
        "levels": {attribute: [n_bars]}, "tokens": {attribute: [n_bars]}}`` -- each attribute's
        value measured from the decoded notes, its level under this tokenizer's boundaries
        (every attribute, whether or not it has control tokens; default bins for those without),
        and the level its control token states (-1 where the bar has none)."""
        d = self._decode_arrays(tokens)
        starts = d["bar_starts"]
        lengths = self._ts_len[d["bar_slot"]]
        pitched = d["program"] != DRUM_PROGRAM
        att = bar_attributes(d["onset"][pitched], d["duration"][pitched], d["pitch"][pitched], starts, lengths)
        levels = int(self.config.control_levels)
        ids = np.asarray(tokens, dtype=np.int64).reshape(-1)
        codes = self.type_codes[ids]
        bar_id = np.maximum(np.cumsum(codes == BAR) - 1, 0)
        stated = {}
        for a in CONTROL_ATTRIBUTES:
            col = np.full(len(starts), -1, dtype=np.int64)
            hit = codes == CONTROL + CONTROL_ATTRIBUTES.index(a)
            col[bar_id[hit]] = self.token_values[ids[hit]]
            stated[a] = col
        return {
            "values": att,
            "levels": {a: quantise(att[a], self.control_bins.get(a) or default_bins(a, levels)) for a in CONTROL_ATTRIBUTES},
            "tokens": stated,
        }

    def control_plan(self, controls: Any, where: str = "generate.controls") -> np.ndarray:
        """A controls setting (see :func:`musicfw.music.controls.parse_controls`: one mapping
        ``{attribute: level}`` for every bar, or a list of them, bar by bar) as levels
        ``[bars, len(controls)]`` (-1: left to the model).  ConfigError naming the allowed
        attributes and levels for anything this tokenizer cannot force."""
        from musicfw.core.errors import ConfigError
        from musicfw.music.controls import parse_controls, resolve_attribute, resolve_level

        try:
            parsed = parse_controls(controls)
            if not self.controls:
                raise ValueError(
                    f"{where}: this model's tokenizer has no control tokens (tokenizer.controls is empty), so "
                    "it cannot be given controls; train with e.g. tokenizer.controls: [density, pitch_range]"
                )
            bars = parsed if isinstance(parsed, list) else [parsed]
            plan = np.full((len(bars), len(self.controls)), -1, dtype=np.int64)
            for b, bar in enumerate(bars):
                for k, v in bar.items():
                    a = resolve_attribute(k, self.controls, where)
                    plan[b, self.controls.index(a)] = resolve_level(v, int(self.config.control_levels), f"{where}: {a}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return plan

    def controls_grammar(self, controls: Any, grammar: Any) -> Any:
        """``grammar`` (this tokenizer's grammar or chord grammar, over B sequences) with the
        requested controls forced: after every Bar of the continuation, the requested level's
        token of each attribute given; attributes not given are sampled by the model.  A
        per-bar list repeats when the piece is longer.  ConfigError (see :meth:`control_plan`)
        for a tokenizer without controls, an unknown attribute or a level out of range."""
        from .remi_controls import ControlGrammar

        plan = self.control_plan(controls)
        if not isinstance(grammar, ControlGrammar):
            grammar = ControlGrammar(grammar, self)
        grammar.force(plan)
        return grammar

    # -- quantization -------------------------------------------------------------------------
    def _positions(self, ticks: np.ndarray, tpq: int) -> np.ndarray:
        return to_steps(ticks, tpq, self.config.beat_resolution)  # round half up

    def quantize(self, score: Any) -> dict[str, np.ndarray]:
        """The notes exactly as encode sees them, sorted like the token stream:
        ``onset`` and ``duration`` in positions (absolute), ``pitch``, velocity ``bin``, ``program``.

        A piece beyond :mod:`musicfw.music.limits` raises ``PieceTooLarge``, unusable timing
        ``MalformedPiece`` (both ``DataError``s), before anything is sized from it."""
        c = self.config
        score = check_piece(score)
        notes = piece_notes(score, drums="include" if c.use_programs else "exclude", sort=False, seconds=False, check=False)
        tpq = int(score.ticks_per_quarter)
        keep = (notes.pitch >= c.min_pitch) & (notes.pitch <= c.max_pitch)
        notes = notes.select(keep)
        onset = np.maximum(self._positions(notes.time, tpq), 0)
        dur = np.clip(self._positions(notes.duration, tpq), 1, self.max_duration)
        program = notes.program if c.use_programs else np.zeros(len(notes), dtype=np.int64)
        vbin = self._bin_of[notes.velocity]
        order = np.lexsort((vbin, dur, notes.pitch, program, onset))
        return {
            "onset": onset[order],
            "duration": dur[order],
            "pitch": notes.pitch[order],
            "bin": vbin[order],
            "program": program[order],
        }

    def _bar_grid(self, score: Any, last_pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(bar starts in positions, time-signature slot per bar) covering 0..last_pos
        (:func:`musicfw.music.grid.bar_grid`: a change takes effect at the next bar line,
        unsupported signatures count as 4/4)."""
        return bar_grid(score, self.config.beat_resolution, self.time_signatures, last_pos)

    def _tempo_events(self, score: Any, last_pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions, tempo bin) of the tempo changes the stream states (first one at 0)."""
        t = score.tempos.numpy()
        pos = self._positions(t["time"], int(score.ticks_per_quarter))
        qpm = 6e7 / np.maximum(t["mspq"].astype(np.float64), 1)
        if len(pos) == 0 or pos[0] > 0:
            pos = np.concatenate([[0], pos])
            qpm = np.concatenate([[120.0], qpm])
        b = nearest_bin(qpm, self.tempos)
        keep = pos <= last_pos
        pos, b = pos[keep], b[keep]
        # several changes at one position: the last wins; then drop repeats of the same bin
        last_at = np.ones(len(pos), dtype=bool)
        last_at[:-1] = pos[1:] != pos[:-1]
        pos, b = pos[last_at], b[last_at]
        change = np.ones(len(b), dtype=bool)
        change[1:] = b[1:] != b[:-1]
        return pos[change], b[change]

    def _chords(self, q: dict[str, np.ndarray], bar_starts: np.ndarray, bar_len: np.ndarray, last_pos: int,
                changes_only: bool = True):
        """(positions, chord index) where the recognized chord changes (every segment's
        start when not ``changes_only``): :func:`musicfw.music.chords.chords_in_bars` over the
        pitched notes, segments of ``chord_quarters`` from each bar line."""
        pitched = q["program"] != DRUM_PROGRAM
        on = q["onset"][pitched]
        return chords_in_bars(
            on, on + q["duration"][pitched], q["pitch"][pitched], bar_starts, bar_len,
            self.config.chord_quarters * self.config.beat_resolution, last_pos,
            self.config.chord_method, changes_only=changes_only,
        )

    # -- encode -------------------------------------------------------------------------------
    def grammar(self, batch_size: int) -> Any:
        """REMI's grammar: every constrained sequence decodes with no dropped token."""
        from .structure import REMIGrammar

        grammar = REMIGrammar(self, batch_size)
        if self.controls:
            from .remi_controls import ControlGrammar

            grammar = ControlGrammar(grammar, self)
        return grammar

    def clock(self, batch_size: int) -> Any:
        """Bars are Bar tokens; seconds follow the positions through the Tempo tokens."""
        from .structure import REMIClock

        return REMIClock(batch_size, self)

    def encode(self, score: Any) -> np.ndarray:
        """Score -> ids; ``PieceTooLarge``/``MalformedPiece`` (:mod:`musicfw.music.limits`)
        for a piece the limits refuse, checked before any array is sized from the file."""
        c = self.config
        score = check_piece(score)
        q = self.quantize(score)
        n = len(q["onset"])
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        last_pos = int(q["onset"][-1])
        bar_starts, bar_slot = self._bar_grid(score, last_pos)
        bar_len = self._ts_len[bar_slot]
        nb = len(bar_starts)
        # per-position events: (time, class, rank, sub, token)
        parts_time, parts_key2, parts_tok = [], [], []

        def add(time, cls, rank, sub, tok):
            time = np.asarray(time, dtype=np.int64)
            parts_time.append(time)
            parts_key2.append(_spread((cls * (1 << 22) + np.asarray(rank, dtype=np.int64)) * 4 + sub, time.shape))
            parts_tok.append(_spread(tok, time.shape))

        add(bar_starts, 0, 0, 0, np.zeros(nb, dtype=np.int64))
        if self.controls:  # right after each Bar, before its TimeSig
            pitched = q["program"] != DRUM_PROGRAM
            levels = self.bar_levels(q["onset"][pitched], q["duration"][pitched], q["pitch"][pitched],
                                     bar_starts, bar_len)
            for i in range(len(self.controls)):
                add(bar_starts, 0, 1 + i, 0, self.control_ids[i, levels[:, i]])
        if c.use_time_signatures:
            ts_change = np.ones(nb, dtype=bool)
            ts_change[1:] = bar_slot[1:] != bar_slot[:-1]
            # the implicit 4/4 slot exists only when 4/4 is not a TimeSig token (never by default)
            ts_change &= bar_slot < len(self.time_signatures)
            add(bar_starts[ts_change], 0, 1 + len(self.controls) if self.controls else 0, 1,
                self._first[TIMESIG] + bar_slot[ts_change])
        event_pos = [q["onset"]]
        if c.use_tempos:
            tpos, tbin = self._tempo_events(score, last_pos)
            add(tpos, 2, 0, 0, self._first[TEMPO] + tbin)
            event_pos.append(tpos)
        if c.use_chords:
            cpos, chord = self._chords(q, bar_starts, bar_len, last_pos)
            add(cpos, 3, 0, 0, self._first[CHORD] + chord)
            event_pos.append(cpos)
        upos = np.unique(np.concatenate(event_pos))
        ubar = np.searchsorted(bar_starts, upos, side="right") - 1
        add(upos, 1, 0, 0, self._first[POSITION] + upos - bar_starts[ubar])
        rank = np.arange(n)
        if c.use_programs:
            prog_change = np.ones(n, dtype=bool)
            prog_change[1:] = q["program"][1:] != q["program"][:-1]
            add(q["onset"][prog_change], 4, rank[prog_change], 0, self._first[PROGRAM] + q["program"][prog_change])
        add(q["onset"], 4, rank, 1, self._first[PITCH] + q["pitch"] - c.min_pitch)
        add(q["onset"], 4, rank, 2, self._first[VELOCITY] + q["bin"])
        add(q["onset"], 4, rank, 3, self._first[DURATION] + q["duration"] - 1)
        check_tokens(sum(len(t) for t in parts_time), "tokens", self.name)
        time = np.concatenate(parts_time)
        key = time * (8 << 24) + np.concatenate(parts_key2)
        return np.concatenate(parts_tok)[np.argsort(key, kind="stable")]

    def coverage(self, score: Any, tokens: np.ndarray | None = None) -> dict[str, Any]:
        """Notes REMI cannot represent (drums without ``use_programs``, pitches outside the
        range) and notes it changes (clipped durations, merged tracks); see
        :meth:`musicfw.core.tokenizer.Tokenizer.coverage`.  Every other note is one
        Pitch-Velocity-Duration triplet."""
        c = self.config
        cov = Coverage(score)
        drums = None if c.use_programs else "drum track (remi keeps drums with use_programs=true)"
        notes = cov.notes_in_range(c.min_pitch, c.max_pitch, drums=drums)
        long = self._positions(notes.duration, int(cov.score.ticks_per_quarter)) > self.max_duration
        cov.alter(int(long.sum()), f"duration clipped to {c.max_duration_quarters} quarters (max_duration_quarters)")
        if not c.use_programs:
            cov.alter(merged_tracks(cov.score, notes, False), "tracks merged into one, programs lost (use_programs=true keeps them)")
        return cov.report()

    # -- decode -------------------------------------------------------------------------------
    def _decode_arrays(self, tokens: np.ndarray) -> dict[str, Any]:
        c = self.config
        ids = check_ids(tokens, self.vocab_size, self.name)
        codes = self.type_codes[ids]
        vals = self.token_values[ids]
        local = self._local[ids]
        n = len(ids)
        empty = np.zeros(0, dtype=np.int64)
        if n == 0:
            return {"onset": empty, "duration": empty, "pitch": empty, "velocity": empty, "program": empty,
                    "tempo_pos": empty, "tempo_qpm": np.zeros(0), "bar_starts": np.zeros(1, dtype=np.int64),
                    "bar_slot": np.full(1, self._default_ts), "chord_pos": empty, "chord": empty, "invalid": 0}
        is_bar = codes == BAR
        bar_id = np.maximum(np.cumsum(is_bar) - 1, 0)
        n_bars = int(bar_id[-1]) + 1
        is_ts = codes == TIMESIG
        ts_ff = ffill(local, is_ts, self._default_ts)
        last_tok = np.searchsorted(bar_id, np.arange(n_bars), side="right") - 1
        bar_slot = ts_ff[last_tok]
        bar_len = self._ts_len[bar_slot]
        bar_starts = np.concatenate([[0], np.cumsum(bar_len)[:-1]])
        is_pos = codes == POSITION
        valid_pos = is_pos & (vals < bar_len[bar_id])
        pos_ff = ffill(np.where(is_bar, 0, vals), valid_pos | is_bar, 0)
        t = bar_starts[bar_id] + pos_ff
        # notes: Pitch immediately followed by Velocity and Duration
        trip = np.zeros(n, dtype=bool)
        if n >= 3:
            trip[: n - 2] = (codes[: n - 2] == PITCH) & (codes[1 : n - 1] == VELOCITY) & (codes[2:] == DURATION)
        i = np.flatnonzero(trip)
        program = ffill(vals, codes == PROGRAM, 0)[i] if c.use_programs else np.zeros(len(i), dtype=np.int64)
        n_note_tokens = int(np.isin(codes, (PITCH, VELOCITY, DURATION)).sum())
        invalid = (n_note_tokens - 3 * len(i)) + int((is_pos & ~valid_pos).sum())
        is_chord = codes == CHORD
        chord_pos, chord_val = t[is_chord], vals[is_chord]
        tempo_pos = t[codes == TEMPO]
        tempo_qpm = self.tempos[local[codes == TEMPO]] if c.use_tempos else np.zeros(0)
        return {
            "onset": t[i],
            "duration": vals[i + 2],
            "pitch": vals[i],
            "velocity": vals[i + 1],
            "program": program,
            "tempo_pos": tempo_pos,
            "tempo_qpm": tempo_qpm,
            "bar_starts": bar_starts,
            "bar_slot": bar_slot,
            "chord_pos": chord_pos,
            "chord": chord_val,
            "invalid": invalid,
        }

    def decode(self, tokens: np.ndarray) -> Any:
        """Tokens -> Score (tpq 480 by default); one track per program when use_programs."""
        d = self._decode_arrays(tokens)
        unit = self.tpq // self.config.beat_resolution
        # tempo map: 120 qpm until the first Tempo token; the last token at a position wins
        tpos, tq = d["tempo_pos"], d["tempo_qpm"]
        if len(tpos):
            last_at = np.ones(len(tpos), dtype=bool)
            last_at[:-1] = tpos[1:] != tpos[:-1]
            order = np.argsort(tpos[last_at], kind="stable")
            tpos, tq = tpos[last_at][order], tq[last_at][order]
        if len(tpos) == 0 or tpos[0] > 0:
            tpos, tq = np.concatenate([[0], tpos]), np.concatenate([[120.0], tq])
        slots = d["bar_slot"]
        change = np.ones(len(slots), dtype=bool)
        change[1:] = slots[1:] != slots[:-1]
        ts = [(self.time_signatures[s] if s < len(self.time_signatures) else (4, 4)) for s in slots[change].tolist()]
        ts_arrays = (
            d["bar_starts"][change] * unit,
            np.array([a for a, _ in ts], dtype=np.int64),
            np.array([b for _, b in ts], dtype=np.int64),
        )
        score = build_score(
            self.tpq,
            d["onset"] * unit,
            d["duration"] * unit,
            d["pitch"],
            d["velocity"],
            d["program"],
            tempo_times=tpos * unit,
            tempo_qpm=tq,
            time_signatures=ts_arrays,
        )
        if len(d["chord"]):
            # each Chord token as a marker "Chord_<name>" (what the chord_tone_ratio metric reads)
            from symusic import TextMeta

            for pos, chord in zip((d["chord_pos"] * unit).tolist(), d["chord"].tolist()):
                score.markers.append(TextMeta(int(pos), CHORD_MARKER_PREFIX + chord_name(chord)))
        return score

    def count_invalid(self, tokens: np.ndarray) -> int:
        """Tokens decode ignores: Pitch/Velocity/Duration tokens that are not part of a
        Pitch-Velocity-Duration triplet, and Position tokens beyond the current bar's length."""
        return int(self._decode_arrays(tokens)["invalid"])

    def count_notes(self, tokens: np.ndarray) -> int:
        return int(len(self._decode_arrays(tokens)["onset"]))
