"""Limits on what one piece of music may cost, and the errors for pieces beyond them.

A MIDI file of 67 bytes can describe four notes 2^28 ticks apart, one of 400 KB 50,000 notes
struck at once; everything that sizes an array from a file (a piano roll's frames, a token
sequence, a tick grid of beats or bars, the pairs of notes that follow each other) would then
allocate gigabytes.  Every built-in tokenizer and metric
therefore checks a piece against the active :class:`Limits` *before* it allocates anything
sized from the file, and refuses a piece beyond them with :class:`PieceTooLarge`; a piece
whose header or time signatures make no sense (0 ticks per quarter, a time-signature
denominator of 0) is refused with :class:`MalformedPiece`.  Both are :class:`PieceRejected`,
a :class:`~musicfw.core.errors.DataError`: callers that read many pieces skip the piece and
record ``str(exc)`` as the reason; a command that reads one piece exits 2 with that reason.

The limits are generous defaults that a user raises when a real corpus needs it:

* for any command, the environment variable ``MUSICFW_LIMITS`` (comma-separated
  ``key=value``: ``MUSICFW_LIMITS=max_notes=500000,max_quarters=50000``);
* on ``musicfw tokenize`` and ``musicfw evaluate``, the options ``--max-notes``,
  ``--max-quarters``, ``--max-seconds``, ``--max-tokens``, ... and ``--cut``;
* from Python, :func:`configure` / :func:`using`;
* an experiment's ``limits:`` section: for the run, and again for every later command acting on
  its folder (:func:`configure_run`, called when the folder's config is loaded), so that e.g.
  ``generate --run RUN --prompt`` honours the run's ``max_prompt_tokens``.

Every limit has a hard ceiling (:data:`CEILINGS`); ``inf`` means the ceiling everywhere.

With ``on_exceed: cut`` a piece that is too long or has too many notes is cut to its
longest beginning that fits (:func:`cut_to_limits`) instead of being skipped.

The values that apply are process-wide (:func:`current`, :func:`configure`, :func:`using`):
the tokenizers are called from many places (data preparation, augmentation workers, the
API) and all of them must get the same bound without passing it along.

This module imports numpy and the standard library only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from musicfw.core.errors import ConfigError, DataError

log = logging.getLogger("musicfw.limits")

ENV = "MUSICFW_LIMITS"
ON_EXCEED = ("skip", "cut")

#: The hard ceiling of each limit: no environment variable, ``limits:`` section, option or
#: call raises a limit above it (an allocation sized by the limit stays within a few GiB: at
#: 10M tokens a 128-pitch piano roll is 1.3 GB).  ``inf`` (in any of those places) means the
#: ceiling.  docs/reliability.md lists what each one bounds.
CEILINGS: dict[str, float] = {
    "max_file_bytes": 2**31,
    "max_notes": 20_000_000,
    "max_tracks": 65_536,
    "max_time_signatures": 100_000,
    "max_quarters": 2_000_000.0,
    "max_seconds": 10_000_000.0,
    "max_tokens": 10_000_000,
    "max_prompt_tokens": 1_000_000,
}
_INF_WORDS = ("inf", "+inf", "infinity", "+infinity")


class PieceRejected(DataError):
    """A piece that a tokenizer, metric or loader refuses; ``str(exc)`` is the reason."""


class PieceTooLarge(PieceRejected):
    """A piece beyond one of the :class:`Limits` (the message names the limit to raise)."""


class MalformedPiece(PieceRejected):
    """A piece whose timing cannot be interpreted (0 ticks per quarter, a time signature
    with a zero numerator or denominator, a bar shorter than one tick)."""


@dataclass(frozen=True)
class Limits:
    """What one piece may cost.  See docs/reliability.md for the memory each one bounds."""

    max_file_bytes: int = field(
        default=64 * 2**20, metadata={"help": "size of a MIDI file read from disk (64 MiB)"}
    )
    max_notes: int = field(default=200_000, metadata={"help": "notes in one piece (all tracks)"})
    max_tracks: int = field(default=1_024, metadata={"help": "tracks in one piece"})
    max_time_signatures: int = field(
        default=10_000,
        metadata={"help": "time-signature changes in one piece (symusic's bar grid is quadratic in them)"},
    )
    max_quarters: float = field(
        default=20_000.0,
        metadata={"help": "length of a piece in quarter notes (5,000 bars of 4/4), up to its last event"},
    )
    max_seconds: float = field(
        default=4 * 3600.0, metadata={"help": "length of a piece in seconds (through its tempo map)"}
    )
    max_tokens: int = field(
        default=1_000_000,
        metadata={"help": "length of one encoded piece: ids (categorical) or frames (multihot)"},
    )
    max_prompt_tokens: int = field(
        default=16_384, metadata={"help": "length of an encoded prompt (generate --prompt)"}
    )
    on_exceed: str = field(
        default="skip",
        metadata={"help": "a piece beyond max_notes/max_quarters/max_seconds: skip it, or cut it to fit"},
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "on_exceed":
                if value not in ON_EXCEED:
                    raise ConfigError(
                        f"limits.on_exceed must be one of {', '.join(ON_EXCEED)}, got {value!r}."
                    )
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"limits.{f.name} must be a number, got {value!r}.")
            if not (value > 0) or (isinstance(value, float) and math.isnan(value)):
                raise ConfigError(f"limits.{f.name} must be > 0, got {value!r}.")
            ceiling = CEILINGS[f.name]
            if value == math.inf:  # "as much as allowed", the same in every path
                object.__setattr__(self, f.name, type(f.default)(ceiling))
            elif value > ceiling:
                raise ConfigError(
                    f"limits.{f.name}={value:,} is above its hard ceiling {ceiling:,.0f} (what musicfw can "
                    f"bound in memory; 'inf' means the ceiling); see docs/reliability.md."
                )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, base: "Limits | None" = None, where: str = "limits") -> "Limits":
        """``base`` (default: the built-in defaults) with the keys of ``values`` replaced;
        an unknown key or a bad value is a :class:`ConfigError` naming ``where``."""
        base = base if base is not None else cls()
        if not values:
            return base
        known = {f.name: f for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in dict(values).items():
            if key not in known:
                raise ConfigError(
                    f"Unknown key {key!r} in {where}; the limits are: {', '.join(known)}."
                )
            if key != "on_exceed" and isinstance(value, str) and value.strip().lower() in _INF_WORDS:
                value = math.inf
            elif key != "on_exceed" and isinstance(value, str):
                try:
                    value = float(value) if any(c in value for c in ".eE") else int(value.replace("_", ""))
                except ValueError:
                    raise ConfigError(f"{where}.{key} must be a number, got {value!r}.") from None
            if key in ("max_file_bytes", "max_notes", "max_tracks", "max_time_signatures", "max_tokens", "max_prompt_tokens") and isinstance(value, float) and value != math.inf:
                if not value.is_integer():
                    raise ConfigError(f"{where}.{key} must be a whole number, got {value!r}.")
                value = int(value)
            changes[key] = value
        try:
            return dataclasses.replace(base, **changes)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("limits.", f"{where}.", 1)) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Limits":
        """The defaults with ``MUSICFW_LIMITS`` (``key=value,key=value``) applied."""
        text = (environ if environ is not None else os.environ).get(ENV, "").strip()
        if not text:
            return cls()
        values: dict[str, str] = {}
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            if "=" not in item:
                raise ConfigError(
                    f"{ENV}={text!r}: {item!r} is not key=value (e.g. {ENV}=max_notes=500000,max_quarters=50000)."
                )
            key, value = item.split("=", 1)
            values[key.strip()] = value.strip()
        return cls.from_mapping(values, where=f"the environment variable {ENV}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_env(self) -> str:
        """The value of ``MUSICFW_LIMITS`` that gives these limits to a child process
        (``Limits.from_env({ENV: limits.to_env()}) == limits``), e.g. spawned data workers."""
        return ",".join(f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}" for k, v in self.to_dict().items())


_active: Limits | None = None
#: the ``limits:`` of the run folder a command acts on (:func:`configure_run`), applied on top of
#: ``MUSICFW_LIMITS`` and under the command's own options
_run: tuple[dict[str, Any], str] = ({}, "limits")
#: the last mapping given to :func:`configure` (a command's options)
_command: tuple[dict[str, Any], str] = ({}, "limits")


def _base() -> Limits:
    values, where = _run
    return Limits.from_mapping(values, base=Limits.from_env(), where=where)


def current() -> Limits:
    """The limits in force: the last :func:`configure`/:func:`using`, else the defaults with
    ``MUSICFW_LIMITS`` applied (and the run's, :func:`configure_run`)."""
    global _active
    if _active is None:
        _active = _base()
    return _active


def configure(values: Limits | Mapping[str, Any] | None = None, where: str = "limits", **overrides: Any) -> Limits:
    """Set the process-wide limits: a :class:`Limits`, or keys applied on top of the
    environment's and the run's (``configure({"max_notes": 10**6})``, ``configure(max_notes=10**6)``)."""
    global _active, _command
    if isinstance(values, Limits):
        new = dataclasses.replace(values, **overrides) if overrides else values
    else:
        merged = dict(values or {})
        merged.update(overrides)
        new = Limits.from_mapping(merged, base=_base(), where=where)
        _command = (merged, where)
    _active = new
    return new


def configure_run(values: Mapping[str, Any] | None, where: str = "limits") -> Limits:
    """Make a run's own ``limits:`` section (saved in its config.yaml) hold for a command acting
    on that run (``generate --run``, ``evaluate --run``, ``export``, resuming): on top of
    ``MUSICFW_LIMITS``, under the command's options (:func:`configure` with a mapping)."""
    global _active, _run
    run = (dict(values or {}), where)
    Limits.from_mapping(run[0], base=Limits.from_env(), where=where)  # a bad value: a ConfigError now
    _run = run
    values_, where_ = _command
    _active = Limits.from_mapping(values_, base=_base(), where=where_)
    return _active


@contextlib.contextmanager
def using(values: Limits | Mapping[str, Any] | None = None, **overrides: Any) -> Iterator[Limits]:
    """``with using(max_notes=10): ...``: the limits for a block, restored afterwards."""
    global _active, _run, _command
    previous = _active, _run, _command
    try:
        yield configure(values, **overrides)
    finally:
        _active, _run, _command = previous


# --------------------------------------------------------------------------------------
# Measuring a piece (a few numpy calls per track, nothing sized by the file's times)
# --------------------------------------------------------------------------------------


@dataclass
class PieceSize:
    """What :func:`measure` found: notes, ticks per quarter and the end of the last event."""

    notes: int
    tpq: int
    end_tick: int

    @property
    def quarters(self) -> float:
        return self.end_tick / self.tpq if self.tpq > 0 else math.inf


def _ticks(score: Any) -> Any:
    ttype = str(getattr(score, "ttype", "Tick"))
    return score if ttype.endswith("Tick") else score.to("tick")


def end_tick(score: Any) -> int:
    """The tick of the piece's last event of any kind (note and pedal ends, controls,
    markers, tempo and time-signature changes): symusic's ``Score.end()``, which also sizes
    its bar grid (``get_downbeats``)."""
    return int(score.end())


def seconds_at(score: Any, tick: int) -> float:
    """Seconds from 0 to ``tick`` through the score's tempo map (120 qpm before the first
    tempo), without converting the score."""
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        return math.inf
    t = score.tempos.numpy()
    times = np.asarray(t["time"], dtype=np.float64)
    mspq = np.asarray(t["mspq"], dtype=np.float64)
    order = np.argsort(times, kind="stable")
    times, mspq = times[order], mspq[order]
    keep = times < tick
    times, mspq = times[keep], mspq[keep]
    if len(times) == 0 or times[0] > 0:
        times = np.concatenate([[0.0], times])
        mspq = np.concatenate([[500_000.0], mspq])
    bounds = np.concatenate([times, [float(tick)]])
    return float(np.sum(np.diff(bounds) * np.maximum(mspq, 0.0)) / tpq / 1e6)


def check_timing(score: Any) -> None:
    """Raise :class:`MalformedPiece` for a timing no tokenizer or metric can use."""
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise MalformedPiece(f"unusable timing: {tpq} ticks per quarter note")
    ts = score.time_signatures.numpy()
    if len(ts["time"]):
        num = np.asarray(ts["numerator"], dtype=np.int64)
        den = np.asarray(ts["denominator"], dtype=np.int64)
        bad = np.flatnonzero((num <= 0) | (den <= 0))
        if bad.size:
            i = int(bad[0])
            raise MalformedPiece(
                f"unusable time signature {int(num[i])}/{int(den[i])} at tick {int(ts['time'][i])} "
                "(a MIDI denominator is a power of two; this one overflowed or is zero)"
            )
        bar_ticks = num * 4 * tpq / den
        short = np.flatnonzero(bar_ticks < 1)
        if short.size:
            i = int(short[0])
            raise MalformedPiece(
                f"unusable time signature {int(num[i])}/{int(den[i])}: its bar is shorter than one "
                f"tick at {tpq} ticks per quarter note"
            )


def measure(score: Any) -> PieceSize:
    score = _ticks(score)
    return PieceSize(int(score.note_num()), int(score.ticks_per_quarter), end_tick(score))


def _too_large(what: str, value: float, key: str, limit: float, unit: str = "") -> PieceTooLarge:
    def fmt(x: float) -> str:
        return f"{x:,.0f}" if float(x).is_integer() or x >= 100 else f"{x:.6g}"

    return PieceTooLarge(
        f"too large: {what} {fmt(value)}{unit} > limits.{key}={fmt(limit)} "
        f"(raise it with limits.{key} or {ENV}={key}=N)"
    )


def check_piece(score: Any, limits: Limits | None = None, allow_cut: bool = True) -> Any:
    """The piece if it is within ``limits`` (default: :func:`current`), cut to fit when
    ``limits.on_exceed == "cut"`` (and ``allow_cut``; too many tracks cannot be cut), else
    :class:`PieceTooLarge`;
    :class:`MalformedPiece` for unusable timing.  Costs O(tracks + tempo changes); the piece
    it passed last is remembered (:func:`_passed`), so checking it again (the loader, then the
    tokenizer's encode and coverage) costs a few counts."""
    limits = limits or current()
    score = _ticks(score)
    if _passed(score, limits):
        return score
    check_timing(score)
    size = measure(score)
    problem = _first_problem(score, size, limits)
    if problem is None:
        _remember(score, limits)
        return score
    if allow_cut and limits.on_exceed == "cut":
        cut = cut_to_limits(score, limits)
        if _first_problem(cut, measure(cut), limits) is None:
            log.warning(
                "a piece was cut to fit the limits (%s): %d of its %d notes kept",
                str(problem).removeprefix("too large: ").split(" (raise", 1)[0], cut.note_num(), size.notes,
            )
            _remember(cut, limits)
            return cut
    raise problem


# the last piece check_piece passed, with the limits and the counts it passed with (the object
# itself is held, so its id cannot be reused; a count that changed means it was edited since)
_LAST_PASSED: tuple[Any, Limits, tuple] | None = None


def _counts(score: Any) -> tuple:
    return (int(score.note_num()), int(score.ticks_per_quarter), len(score.tracks), len(score.tempos),
            len(score.time_signatures), int(score.end()))


def _remember(score: Any, limits: Limits) -> None:
    global _LAST_PASSED
    _LAST_PASSED = (score, limits, _counts(score))


def _passed(score: Any, limits: Limits) -> bool:
    last = _LAST_PASSED
    return last is not None and last[0] is score and last[1] == limits and last[2] == _counts(score)


def _first_problem(score: Any, size: PieceSize, limits: Limits) -> PieceTooLarge | None:
    if len(score.tracks) > limits.max_tracks:  # per-track work is a Python loop
        return _too_large("tracks", len(score.tracks), "max_tracks", limits.max_tracks)
    if size.notes > limits.max_notes:
        return _too_large("notes", size.notes, "max_notes", limits.max_notes)
    n_ts = len(score.time_signatures)
    if n_ts > limits.max_time_signatures:
        return _too_large("time-signature changes", n_ts, "max_time_signatures", limits.max_time_signatures)
    if size.quarters > limits.max_quarters:
        return _too_large("length", size.quarters, "max_quarters", limits.max_quarters, " quarter notes")
    if limits.max_seconds < math.inf:
        seconds = seconds_at(score, size.end_tick)
        if seconds > limits.max_seconds:
            return _too_large("length", seconds, "max_seconds", limits.max_seconds, " s")
    return None


def _tick_of_seconds(score: Any, seconds: float) -> int:
    """The last tick at or before ``seconds`` (inverse of :func:`seconds_at`)."""
    tpq = int(score.ticks_per_quarter)
    t = score.tempos.numpy()
    times = np.asarray(t["time"], dtype=np.float64)
    mspq = np.asarray(t["mspq"], dtype=np.float64)
    order = np.argsort(times, kind="stable")
    times, mspq = times[order], np.maximum(mspq[order], 1.0)
    if len(times) == 0 or times[0] > 0:
        times = np.concatenate([[0.0], times])
        mspq = np.concatenate([[500_000.0], mspq])
    sec_per_tick = mspq / tpq / 1e6
    seg_sec = np.diff(times) * sec_per_tick[:-1]
    start_sec = np.concatenate([[0.0], np.cumsum(seg_sec)])
    k = int(np.searchsorted(start_sec, seconds, side="right") - 1)
    return int(times[k] + (seconds - start_sec[k]) / sec_per_tick[k])


def cut_to_limits(score: Any, limits: Limits | None = None) -> Any:
    """The longest beginning of ``score`` within ``max_quarters``, ``max_seconds``,
    ``max_notes`` and ``max_time_signatures``: events from the cut time on are dropped, notes still sounding there are
    shortened to end at it."""
    limits = limits or current()
    score = _ticks(score)
    tpq = int(score.ticks_per_quarter)
    if tpq <= 0:
        raise MalformedPiece(f"unusable timing: {tpq} ticks per quarter note")
    cut = int(min(limits.max_quarters * tpq, 2**31 - 1))
    cut = min(cut, _tick_of_seconds(score, limits.max_seconds))
    if score.note_num() > limits.max_notes:
        onsets = np.sort(
            np.concatenate([np.asarray(t.notes.numpy()["time"], dtype=np.int64) for t in score.tracks if len(t.notes)])
        )
        cut = min(cut, int(onsets[limits.max_notes]))  # the first note that does not fit
    if len(score.time_signatures) > limits.max_time_signatures:
        ts_times = np.sort(np.asarray(score.time_signatures.numpy()["time"], dtype=np.int64))
        cut = min(cut, int(ts_times[limits.max_time_signatures]))
    out = score.clip(0, cut, False)  # events from the cut on are dropped
    from symusic import Note, Pedal

    for track in out.tracks:  # notes and pedals still sounding at the cut end there
        if len(track.notes):
            arr = track.notes.numpy()
            t = arr["time"].astype(np.int64)
            dur = np.minimum(arr["duration"].astype(np.int64), cut - t)
            if (dur != arr["duration"]).any():
                track.notes = Note.from_numpy(t.astype(np.int32), dur.astype(np.int32), arr["pitch"], arr["velocity"])
        if len(track.pedals):
            arr = track.pedals.numpy()
            t = arr["time"].astype(np.int64)
            dur = np.minimum(arr["duration"].astype(np.int64), cut - t)
            if (dur != arr["duration"]).any():
                track.pedals = Pedal.from_numpy(t.astype(np.int32), dur.astype(np.int32))
    return out


def check_tokens(n: int, what: str, tokenizer: str, limits: Limits | None = None) -> None:
    """Refuse an encoding of ``n`` tokens/frames beyond ``limits.max_tokens``, before it is
    allocated."""
    limits = limits or current()
    if n > limits.max_tokens:
        raise PieceTooLarge(
            f"too large: {tokenizer} would produce {n:,} {what} > limits.max_tokens="
            f"{limits.max_tokens:,} (raise it with limits.max_tokens or {ENV}=max_tokens=N)"
        )


def check_prompt_tokens(n: int, limits: Limits | None = None) -> None:
    """Refuse a prompt of ``n`` tokens beyond ``limits.max_prompt_tokens``."""
    limits = limits or current()
    if n > limits.max_prompt_tokens:
        raise PieceTooLarge(
            f"prompt too long: {n:,} tokens > limits.max_prompt_tokens={limits.max_prompt_tokens:,} "
            f"(cut the prompt file, or raise limits.max_prompt_tokens / {ENV}=max_prompt_tokens=N)"
        )
