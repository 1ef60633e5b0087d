"""Real-time MIDI: a scheduler thread that sends each message at its time, generation streamed
into it bar by bar, and call-and-response on an input port.

Any object with ``send(msg)`` (and optionally ``close()``) is an output port, any object with
``poll()`` (a message or None) an input port: mido's ports, or the tests' recording ports.

The scheduler keeps a heap of (due time on ``time.monotonic``, message) and sends each message
when it is due; every send is logged as (due, sent) so lateness is measured, not guessed.  The
generator (the calling thread) decodes the tokens every few steps and hands the scheduler every
note of the bars that are complete (a note is final once a later bar has begun); playback starts
once ``lookahead_bars`` are ready, so generation runs at least that far ahead.  If generation
falls behind (a note would be due before it is ready), the timeline is pushed back by the
shortfall and ``say`` reports it: the stream pauses audibly, it is never silently late.

Why our own scheduler: mido sends a message when told to and its ``MidiFile.play()`` plays a
finished file by sleeping between messages; neither takes notes while they are being generated,
nor measures how late each message went out, which is the promise here.
"""

from __future__ import annotations

import heapq
from collections import Counter
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

#: a message sent later than this after its due time counts as late
LATE_SECONDS = 0.020
#: new notes are scheduled at least this far in the future: the scheduler thread must get the
#: CPU and the GIL back from the generator in time (10 ms made the first notes ~37 ms late on
#: this loaded 2-core machine; 30 ms is within the 200 ms first-note target)
MARGIN_SECONDS = 0.030
#: Python's thread switch interval while streaming (default 5 ms: the generator could hold the
#: GIL that long while a message is due)
SWITCH_INTERVAL = 0.0005
#: decode the tokens every this many steps while generating
DECODE_EVERY = 4


def _message(kind: str, **kw: Any) -> Any:
    try:
        import mido

        return mido.Message(kind, **kw)
    except ImportError:  # the scheduler itself does not need mido: a plain record will do
        return _Msg(kind, **kw)


@dataclass
class _Msg:
    type: str
    channel: int = 0
    note: int = 0
    velocity: int = 0
    control: int = 0
    value: int = 0

    def __init__(self, type: str, **kw: Any):
        self.type = type
        for k, v in kw.items():
            setattr(self, k, v)


class Scheduler:
    """Sends messages at their due times from its own thread; ``log`` holds (due, sent, msg)."""

    def __init__(self, port: Any, clock: Callable[[], float] = time.monotonic):
        self.port, self.clock = port, clock
        self.log: list[tuple[float, float, Any]] = []
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._cv = threading.Condition()
        self._stop = False
        self._held: Counter = Counter()  # (channel, pitch) -> note-ons not yet ended
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch, SWITCH_INTERVAL))
        self._thread = threading.Thread(target=self._loop, name="musicfw-midi-scheduler", daemon=True)
        self._thread.start()

    def schedule(self, due: float, msg: Any) -> None:
        # at equal times a note-off goes before a note-on (a repeated pitch is re-struck)
        order = 0 if msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0) else 1
        with self._cv:
            heapq.heappush(self._heap, (due, order, self._seq, msg))
            self._seq += 1
            self._cv.notify()

    def pending(self) -> int:
        with self._cv:
            return len(self._heap)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every scheduled message is sent; False on timeout."""
        end = None if timeout is None else self.clock() + timeout
        while self.pending():
            if end is not None and self.clock() > end:
                return False
            time.sleep(0.005)
        return True

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not self._heap:
                    self._cv.wait()
                if self._stop:
                    return
                due = self._heap[0][0]
                wait = due - self.clock()
                if wait > 0.002:  # sleep most of the way (new earlier messages wake us)
                    self._cv.wait(wait - 0.001)
                    continue
            while self.clock() < due:  # the last millisecond: spin for precision
                pass
            with self._cv:
                if self._stop or not self._heap or self._heap[0][0] != due:
                    continue
                _, _, _, msg = heapq.heappop(self._heap)
            self._send(msg, due)

    def _send(self, msg: Any, due: float) -> None:
        self.port.send(msg)
        self.log.append((due, self.clock(), msg))
        key = (getattr(msg, "channel", 0), getattr(msg, "note", 0))
        if msg.type == "note_on" and msg.velocity > 0:
            self._held[key] += 1
        elif msg.type in ("note_on", "note_off") and self._held[key] > 0:
            self._held[key] -= 1

    def stop(self) -> None:
        """Stop at once: drop what is queued, end every sounding note (note-off for each, then
        All Notes Off on each channel used) so nothing hangs on the synthesiser."""
        with self._cv:
            self._stop = True
            self._heap.clear()
            self._cv.notify()
        self._thread.join(timeout=2)
        sys.setswitchinterval(self._switch)
        now = self.clock()
        channels = {c for c, _ in self._held} | {getattr(m, "channel", 0) for _, _, m in self.log if hasattr(m, "channel")}
        for (c, n), count in sorted(self._held.items()):
            for _ in range(count):  # as many note-offs as note-ons: a synth that stacks voices stops them all
                msg = _message("note_off", channel=c, note=n, velocity=0)
                self.port.send(msg)
                self.log.append((now, self.clock(), msg))
        self._held.clear()
        for c in sorted(channels):
            self.port.send(_message("control_change", channel=c, control=123, value=0))

    def lateness(self) -> np.ndarray:
        """Seconds each logged message was sent after its due time."""
        return np.array([s - d for d, s, _ in self.log], dtype=float)


@dataclass
class StreamStats:
    tokens: int = 0
    notes: int = 0
    music_seconds: float = 0.0
    wall_seconds: float = 0.0
    generate_seconds: float = 0.0
    first_note_seconds: float | None = None
    underruns: int = 0
    underrun_seconds: float = 0.0
    messages: int = 0
    late: int = 0
    max_late_ms: float = 0.0
    lateness_ms_p99: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def realtime_factor(self) -> float:
        return self.music_seconds / self.generate_seconds if self.generate_seconds > 0 else float("inf")


def _bar_ticks(score: Any) -> int:
    tpq = int(score.ticks_per_quarter)
    if len(score.time_signatures):
        ts = score.time_signatures[0]
        return max(1, int(tpq * 4 * ts.numerator // ts.denominator))
    return 4 * tpq


def _note_rows(score: Any) -> list[tuple[int, int, int, int, int]]:
    """(start, duration, pitch, velocity, channel) of every note, in time order."""
    rows = []
    for track in score.tracks:
        ch = 9 if track.is_drum else 0
        arr = track.notes.numpy()
        for s, d, p, v in zip(arr["time"], arr["duration"], arr["pitch"], arr["velocity"]):
            rows.append((int(s), max(int(d), 1), int(p), int(v), ch))
    rows.sort()
    return rows


def score_tempo(score: Any, default: float = 120.0) -> float:
    if len(score.tempos):
        return float(score.tempos[0].qpm)
    return float(default)


class Streamer:
    """Turns decoded notes into scheduled MIDI messages on a timeline ``origin + ticks``.

    ``place_origin(first_tick)`` decides the timeline when the first notes are ready (default:
    start now); underruns push it back."""

    def __init__(self, scheduler: Scheduler, tpq: int, bpm: float, say: Callable[[str], None],
                 place_origin: Callable[[int, float], float] | None = None, quantum: float | None = None):
        self.sched, self.tpq, self.bpm, self.say = scheduler, int(tpq), float(bpm), say
        self.quantum = quantum  # a pause is rounded up to whole quanta (an answer keeps its beat)
        self.sec_per_tick = 60.0 / (self.bpm * self.tpq)
        self.origin: float | None = None
        self.place_origin = place_origin
        self.underruns, self.underrun_seconds = 0, 0.0
        self.first_due: float | None = None
        self.last_end = 0.0
        self.count = 0

    def start(self, first_tick: int) -> None:
        now = self.sched.clock()
        if self.place_origin is not None:
            self.origin = self.place_origin(first_tick, now)
        else:
            self.origin = now + MARGIN_SECONDS - first_tick * self.sec_per_tick

    def add(self, rows: list[tuple[int, int, int, int, int]]) -> None:
        if not rows:
            return
        fresh = self.origin is None
        if fresh:
            self.start(rows[0][0])
        now = self.sched.clock()
        due0 = self.origin + rows[0][0] * self.sec_per_tick
        if not fresh and due0 < now + MARGIN_SECONDS:  # generation fell behind: pause the timeline, say so
            behind = now + MARGIN_SECONDS - due0
            if self.quantum:
                behind = float(np.ceil(behind / self.quantum) * self.quantum)
            self.origin += behind
            self.underruns += 1
            self.underrun_seconds += behind
            self.say(f"warning: generation fell behind; the stream paused {behind * 1000:.0f} ms "
                     f"(underrun {self.underruns})")
        for s, d, p, v, ch in rows:
            on = self.origin + s * self.sec_per_tick
            off = self.origin + (s + d) * self.sec_per_tick
            if self.first_due is None:
                self.first_due = on
            self.sched.schedule(on, _message("note_on", channel=ch, note=p, velocity=max(1, min(v, 127))))
            self.sched.schedule(off, _message("note_off", channel=ch, note=p, velocity=0))
            self.last_end = max(self.last_end, off)
            self.count += 1


def stream_generation(model: Any, tokenizer: Any, sampler: Any, scheduler: Scheduler, *, bars: int,
                      bpm: float | None = None, seed: int = 0, prompt: Any = None, lookahead_bars: float = 1.0,
                      max_tokens: int | None = None, cancel: Any = None, say: Callable[[str], None] = print,
                      place_origin: Callable[[int, float], float] | None = None,
                      quantum: float | None = None, wait: bool = True) -> StreamStats:
    """Generate ``bars`` bars (continuing ``prompt``, a Score, if given) and play them on
    ``scheduler``'s port as they come.  Returns the stream's statistics (after the last message
    was sent when ``wait``)."""
    from musicfw.engine.generation import clock_for, generate

    t_start = scheduler.clock()
    has_bars = clock_for(tokenizer, 1).has_bars
    prompt_tokens = np.asarray(tokenizer.encode(prompt)) if prompt is not None else np.zeros(0, dtype=np.int64)
    skip = len(_note_rows(tokenizer.decode(prompt_tokens))) if len(prompt_tokens) else 0
    new: list[Any] = []
    st = {"done_tick": None, "committed": skip, "streamer": None, "steps": 0}

    def commit(score: Any, final: bool) -> None:
        rows = _note_rows(score)
        if st["streamer"] is None:
            tempo = bpm if bpm is not None else score_tempo(score)
            st["streamer"] = Streamer(scheduler, int(score.ticks_per_quarter), tempo, say, place_origin, quantum)
            st["bar"] = _bar_ticks(score)
            st["first_tick"] = rows[skip][0] if len(rows) > skip else 0
        bar = st["bar"]
        fresh = rows[st["committed"]:]
        if not fresh:
            return
        if final:
            ready = fresh
        else:  # the notes of bars before the one the newest note is in are final
            cut = (rows[-1][0] // bar) * bar
            ready = [r for r in fresh if r[0] < cut]
            if st["streamer"].origin is None:  # wait for the look-ahead before starting the clock
                if not ready or cut - st["first_tick"] < lookahead_bars * bar:
                    return
        if ready:
            st["streamer"].add(ready)
            st["committed"] += len(ready)

    bar_clock = clock_for(tokenizer, 1) if has_bars else None

    def on_tokens(tokens: np.ndarray, kept: np.ndarray) -> None:
        new.append(tokens[0])
        st["steps"] += 1
        if bar_clock is not None:
            # decode when a bar opens (bar by bar): a decode per bar, not per few tokens, keeps a
            # long stream's decoding linear in its bars (every 4 tokens, a 126-bar stream spent
            # most of its time decoding and fell behind 10 times)
            row = np.asarray(tokens[:1])
            opens = bool(bar_clock.would_open_bar(row).any())
            bar_clock.update(row)
            # before playback starts, every few tokens (the first note is not kept waiting for a bar line)
            due = opens or (st["streamer"] is None or st["streamer"].origin is None) and st["steps"] % DECODE_EVERY == 0
        else:
            due = st["steps"] % DECODE_EVERY == 0
        if due:
            commit(tokenizer.decode(np.concatenate([prompt_tokens, np.asarray(new, dtype=prompt_tokens.dtype)])
                                    if len(prompt_tokens) else np.asarray(new)), False)

    limit: dict[str, Any] = {}
    if has_bars:
        limit["max_bars"] = int(bars)
    else:
        limit["max_seconds"] = float(bars) * 4 * 60.0 / float(bpm or 120.0)
    if max_tokens is None:
        max_tokens = min(int(model.max_context or 4096) - len(prompt_tokens) - 1, 160 * int(bars)) \
            if model.max_context else 160 * int(bars)
    t_gen = scheduler.clock()
    result = generate(model, tokenizer, sampler, n=1, batch_size=1, max_tokens=max(int(max_tokens), 1),
                      prompt=prompt, seed=seed, on_tokens=on_tokens, cancel=cancel, prefill=True, **limit)
    gen_seconds = scheduler.clock() - t_gen
    commit(tokenizer.decode(result.tokens[0]), True)
    streamer = st["streamer"]
    stats = StreamStats(tokens=int(result.stats["tokens_generated"]), generate_seconds=gen_seconds)
    if streamer is not None and streamer.count:
        stats.notes = streamer.count
        stats.first_note_seconds = streamer.first_due - t_start
        stats.music_seconds = streamer.last_end - streamer.first_due
        stats.underruns, stats.underrun_seconds = streamer.underruns, streamer.underrun_seconds
        if wait:
            scheduler.drain(timeout=stats.music_seconds + 60)
    stats.wall_seconds = scheduler.clock() - t_start
    late = scheduler.lateness()
    stats.messages = int(len(late))
    if len(late):
        stats.late = int((late > LATE_SECONDS).sum())
        stats.max_late_ms = float(late.max() * 1000)
        stats.lateness_ms_p99 = float(np.percentile(late, 99) * 1000)
    return stats


# --------------------------------------------------------------------------------------
# call and response
# --------------------------------------------------------------------------------------


def estimate_tempo(onsets: list[float], low: float = 80.0, high: float = 160.0) -> float:
    """Beats per minute from played onset times (seconds): the median gap between distinct
    onsets, doubled or halved into [low, high] BPM (the beat is assumed to be that gap or a
    power-of-two multiple of it).  120 with fewer than two onsets."""
    t = np.unique(np.round(np.asarray(onsets, dtype=float), 3))
    gaps = np.diff(t)
    gaps = gaps[gaps > 0.06]  # chords and grace notes are no beat
    if not len(gaps):
        return 120.0
    beat = float(np.median(gaps))
    while 60.0 / beat > high:
        beat *= 2
    while 60.0 / beat < low:
        beat /= 2
    return 60.0 / beat


def phrase_score(notes: list[tuple[float, float, int, int]], bpm: float, tpq: int = 480) -> Any:
    """A Score of played notes ((on, off, pitch, velocity) in seconds) at ``bpm``, its first
    onset at tick 0."""
    import symusic

    t0 = min(n[0] for n in notes)
    tick = bpm * tpq / 60.0
    score = symusic.Score(tpq)
    score.tempos.append(symusic.Tempo(0, float(bpm)))
    track = symusic.Track("played")
    for on, off, pitch, vel in sorted(notes):
        s = int(round((on - t0) * tick))
        track.notes.append(symusic.Note(s, max(1, int(round((off - on) * tick))), int(pitch), int(vel)))
    score.tracks.append(track)
    return score


class Listener:
    """Collects what is played on an input port; ``phrase()`` returns the notes once the player
    has paused (nothing held, nothing new for ``silence`` seconds)."""

    def __init__(self, port: Any, silence: float, clock: Callable[[], float] = time.monotonic):
        self.port, self.silence, self.clock = port, float(silence), clock
        self.reset()

    def reset(self) -> None:
        self.notes: list[tuple[float, float, int, int]] = []
        self.held: dict[int, tuple[float, int]] = {}
        self.last = None

    def poll(self) -> None:
        while True:
            msg = self.port.poll()
            if msg is None:
                return
            now = self.clock()
            if msg.type == "note_on" and msg.velocity > 0:
                self.held[msg.note] = (now, msg.velocity)
                self.last = now
            elif msg.type in ("note_off", "note_on") and msg.note in self.held:
                on, vel = self.held.pop(msg.note)
                self.notes.append((on, now, msg.note, vel))
                self.last = now
            if len(self.notes) > 4096:  # a stuck keyboard or a flood: keep the latest
                self.notes = self.notes[-4096:]

    def phrase(self) -> list[tuple[float, float, int, int]] | None:
        self.poll()
        if self.notes and not self.held and self.last is not None and self.clock() - self.last >= self.silence:
            out = self.notes
            self.reset()
            return out
        return None


def call_and_response(model: Any, tokenizer: Any, sampler: Any, scheduler: Scheduler, inport: Any, *,
                      bars: int, silence: float = 1.5, bpm: float | None = None, seed: int = 0,
                      rounds: int | None = None, stop: Any = None, say: Callable[[str], None] = print,
                      poll_seconds: float = 0.005) -> list[StreamStats]:
    """Listen on ``inport``; after each pause answer with ``bars`` bars continuing what was
    played, in its tempo (``bpm``, else estimated from the onsets) and, the model being given the
    phrase, its key; the answer starts on the phrase's bar grid.  ``rounds`` answers at most
    (None: until ``stop`` is set)."""
    listener = Listener(inport, silence, scheduler.clock)
    out = []
    while (rounds is None or len(out) < rounds) and not (stop is not None and stop.is_set()):
        notes = listener.phrase()
        if notes is None:
            time.sleep(poll_seconds)
            continue
        tempo = float(bpm) if bpm is not None else estimate_tempo([n[0] for n in notes])
        score = phrase_score(notes, tempo)
        first = min(n[0] for n in notes)
        bar_s = 4 * 60.0 / tempo
        say(f"heard {len(notes)} notes at {tempo:.0f} BPM; answering with {bars} bars")

        def on_grid(first_tick: int, now: float, first=first, tempo=tempo, bar_s=bar_s) -> float:
            # the phrase's timeline shifted by whole bars so the answer's first note is ahead of now
            origin = first
            sec = first_tick * 60.0 / (tempo * int(score.ticks_per_quarter))
            while origin + sec < now + MARGIN_SECONDS:
                origin += bar_s
            return origin

        stats = stream_generation(model, tokenizer, sampler, scheduler, bars=bars, bpm=tempo, seed=seed + len(out),
                                  prompt=score, lookahead_bars=0, cancel=stop, say=say, place_origin=on_grid,
                                  quantum=60.0 / tempo)
        stats.extra = {"bpm": tempo, "heard_notes": len(notes), "phrase_start": first}
        out.append(stats)
        listener.reset()  # what was played during the answer is the answer's echo, not a call
    return out
