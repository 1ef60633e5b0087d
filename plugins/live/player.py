"""Real-time MIDI: a scheduler thread that sends each message at its time, generation streamed
into it note by note, and call-and-response on an input port.

Any object with ``send(msg)`` (and optionally ``close()``) is an output port, any object with
``poll()`` (a message or None) an input port: mido's ports, or the tests' recording ports.

The scheduler keeps a heap of (due time on ``time.monotonic``, message) and sends each message
when it is due (sleeping until 1 ms before, then spinning); every send is logged as (due, sent)
so lateness is measured, not guessed.  The generator hands the scheduler each note as soon as it
is final (:class:`NoteFeed`: a REMI note once its Pitch, Velocity and Duration are out; other
tokenizers' notes once their bar is over); playback starts ``buffer`` seconds after the opening
onset's notes are out (and ``lookahead_bars`` are ready), so generation runs ahead of the music
by at least that much, and more while it outpaces it.  If generation falls behind (a note would
be due before it is ready), the timeline is pushed back by the shortfall and ``say`` reports it:
the stream pauses audibly, it is never silently late.

Where the generator runs (``process``): in the sender's process, a generating thread holds the
interpreter lock between torch calls, and the sender waits for it: on this 2-core machine under
load ~27 a one-minute LSTM stream sent 108 of 792 messages more than 20 ms late (max 232 ms;
``gc.freeze`` alone: 119, max 148 ms), while with generation in a forked process (its own
session, niced by 5, one torch thread) it sent none late (max 18.6 ms)
(``python benchmarks/realtime.py --diagnose 1 --stream-models chorales-lstm``).

Why our own scheduler: mido sends a message when told to and its ``MidiFile.play()`` plays a
finished file by sleeping between messages; neither takes notes while they are being generated,
nor measures how late each message went out, which is the promise here.
"""

from __future__ import annotations

import gc
import heapq
import os
import sys
from collections import Counter
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
#: decode the tokens every this many steps while generating (every step until the first note)
DECODE_EVERY = 4
#: the look-ahead buffer: playback starts this long after the first onset is complete (its
#: chord's notes all out, a later onset begun) (``--buffer``); the next onset's notes must be
#: out by then
BUFFER_SECONDS = 0.05
#: the generator process runs this much nicer than the sender (``process=True``)
GENERATOR_NICE = 5
#: move every object alive at the start of a stream out of the collector's sight (``gc.freeze``):
#: a full collection over torch's and the model's objects held the interpreter lock for ms
FREEZE_GC = True


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
                 place_origin: Callable[[int, float], float] | None = None, quantum: float | None = None,
                 buffer: float = MARGIN_SECONDS):
        self.buffer = max(float(buffer), MARGIN_SECONDS)
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
            self.origin = now + self.buffer - first_tick * self.sec_per_tick

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


class NoteFeed:
    """The notes of a growing token sequence, each handed out once it is final.

    ``push(token)`` after every generated token returns the notes that became final (rows of
    :func:`_note_rows` on the whole sequence's timeline, prompt included); ``finish()`` the rest.

    With a tokenizer whose ``streams_notes`` is True and whose clock opens bars with tokens
    (REMI), a note is final as soon as it is decoded: the current bar's tokens are decoded alone
    (cheap: a bar, not the whole piece) every token in the first bar, then every
    ``DECODE_EVERY`` tokens, and placed at the bar's start; when a bar closes the whole sequence
    is decoded once (the truth: bar starts through every time signature, and any note the bar
    alone could not place).  Otherwise a note is final once a later bar has begun: the whole
    sequence is decoded when a bar opens or fills (and every few tokens before the first note)."""

    def __init__(self, tokenizer: Any, prompt_tokens: np.ndarray):
        from musicfw.engine.generation import clock_for

        self.tok = tokenizer
        self.clock = clock_for(tokenizer, 1)
        self.window = bool(tokenizer.streams_notes) and bool(self.clock.bar_tokens)
        self.tokens: list[Any] = []
        self.sent: Counter = Counter()  # rows handed out (a multiset: decode sorts, a chord can repeat)
        self.meta: tuple[int, int, float] | None = None  # (ticks per quarter, ticks per bar, tempo)
        self.win_start, self.win_bar = 0, 0  # the current bar's first token and its index
        self.bar_tick = 0  # where the current bar starts
        self._ts: tuple[int, int, int] = (0, 0, 0)  # bar-start walk: (bar index, tick, time signatures used)
        self._len: int | None = None  # the walk's current bar length in ticks
        self.steps, self.any_out, self.bars_seen = 0, False, 0
        #: the music has moved past the first note handed out (its onset's notes are all out)
        self.onset_done = False
        self._first_at: float | None = None
        for t in np.asarray(prompt_tokens):
            self._advance(t)
        self._start_bar = self.win_bar + 1 if len(prompt_tokens) else 0  # the first bar the generation writes
        if len(prompt_tokens):
            self.sent.update(_note_rows(self._decode(self.tokens)))  # the prompt is not played
            if self.window:
                self.bar_tick = self._bar_start(self._decode(self.tokens), self.win_bar)

    def _decode(self, tokens: list[Any]) -> Any:
        return self.tok.decode(np.asarray(tokens))

    def _advance(self, token: Any) -> bool:
        row = np.asarray([token])
        opens = bool(self.clock.would_open_bar(row)[0])
        if opens and self.tokens:
            self.win_bar += 1
        if opens:
            self.win_start = len(self.tokens)
        self.tokens.append(token)
        self.clock.update(row)
        return opens

    def _bar_start(self, score: Any, k: int) -> int:
        """The tick bar ``k`` starts at, walking the score's time signatures (4/4 before the
        first); incremental (bars only grow, earlier signatures never change)."""
        tpq = int(score.ticks_per_quarter)
        sigs = sorted((int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures)
        bar, tick, used = self._ts
        length = self._len if self._len is not None else 4 * tpq
        while bar < k:
            while used < len(sigs) and sigs[used][0] <= tick:
                length = max(1, tpq * 4 * sigs[used][1] // sigs[used][2])
                used += 1
            tick += length
            bar += 1
        self._ts, self._len = (bar, tick, used), length
        return tick

    def _fresh(self, rows: list[tuple[int, int, int, int, int]]) -> list[tuple[int, int, int, int, int]]:
        out = []
        have = Counter(rows)
        for r in sorted(have):
            extra = have[r] - self.sent[r]
            if extra > 0:
                out.extend([r] * extra)
                self.sent[r] += extra
        return out

    def _set_meta(self, score: Any) -> None:
        if self.meta is None:
            self.meta = (int(score.ticks_per_quarter), _bar_ticks(score), score_tempo(score))

    def push(self, token: Any) -> list[tuple[int, int, int, int, int]]:
        out = self._push(token)
        now = float(self.clock.seconds[0])
        if self._first_at is not None and now > self._first_at + 1e-9:
            self.onset_done = True  # a later position (or bar) has begun: the first onset is complete
        if out and self._first_at is None:
            self._first_at = now
        return out

    def _push(self, token: Any) -> list[tuple[int, int, int, int, int]]:
        if self.window:
            return self._push_window(token)
        opens = self._advance(token)
        self.steps += 1
        bars = int(np.floor(self.clock.bars[0] + 1e-9)) if not self.clock.bar_tokens else None
        filled = bars is not None and bars > self.bars_seen
        if filled:
            self.bars_seen = bars
        if not (opens or filled or (not self.any_out and self.steps % DECODE_EVERY == 0)):
            return []
        score = self._decode(self.tokens[:-1] if opens else self.tokens)
        self._set_meta(score)
        rows = _note_rows(score)
        if not rows:
            return []
        if opens or filled:  # every note before the new bar is final
            ready = rows if opens else [r for r in rows if r[0] < (rows[-1][0] // self.meta[1]) * self.meta[1]]
        else:  # the notes of bars before the one the newest note is in
            cut = (rows[-1][0] // self.meta[1]) * self.meta[1]
            ready = [r for r in rows if r[0] < cut]
        out = self._fresh(ready)
        self.any_out = self.any_out or bool(out)
        return out

    def _push_window(self, token: Any) -> list[tuple[int, int, int, int, int]]:
        out: list[tuple[int, int, int, int, int]] = []
        bar_before = self.win_bar
        opens = self._advance(token)
        if opens and self.win_bar != bar_before:  # a bar closed: the whole sequence once, the new bar's start
            score = self._decode(self.tokens[:-1])
            self._set_meta(score)
            out = self._fresh(_note_rows(score))
            self.bar_tick = self._bar_start(score, self.win_bar)
            self.steps = 0
            return out
        self.steps += 1
        if self.any_out and self.win_bar > self._start_bar and self.steps % DECODE_EVERY:
            return out  # every token in the first bar (the look-ahead is short there), then every few
        score = self._decode(self.tokens[self.win_start:])
        self._set_meta(score)
        rows = [(s + self.bar_tick, d, p, v, c) for s, d, p, v, c in _note_rows(score)]
        out = self._fresh(rows)
        self.any_out = self.any_out or bool(out)
        return out

    def finish(self) -> list[tuple[int, int, int, int, int]]:
        score = self._decode(self.tokens)
        self._set_meta(score)
        return self._fresh(_note_rows(score))


class _Playback:
    """The receiving side of a stream: holds notes back until the look-ahead is generated, then
    hands them to a :class:`Streamer`."""

    def __init__(self, scheduler: Scheduler, *, bpm: float | None, say: Callable[[str], None],
                 place_origin: Any, quantum: float | None, lookahead_bars: float, buffer: float):
        self.sched, self.bpm, self.say = scheduler, bpm, say
        self.place_origin, self.quantum = place_origin, quantum
        self.lookahead_bars, self.buffer = float(lookahead_bars), float(buffer)
        self.streamer: Streamer | None = None
        self.pending: list[tuple[int, int, int, int, int]] = []
        self.headroom: list[float] = []  # due - handed over, seconds, per note
        self.onset_done = False

    def rows(self, meta: tuple[int, int, float] | None, rows: list, final: bool = False,
             onset_done: bool = False) -> None:
        self.onset_done = self.onset_done or onset_done
        if not rows and not ((final or onset_done) and self.pending):
            return
        if self.streamer is None:
            tpq, _, tempo = meta
            self.streamer = Streamer(self.sched, tpq, self.bpm if self.bpm is not None else tempo, self.say,
                                     self.place_origin, self.quantum, buffer=self.buffer)
        self.pending.extend(rows)
        if self.streamer.origin is None and not final:
            first = min(r[0] for r in self.pending)
            span = max(r[0] for r in self.pending) - first
            if not (self.onset_done or span > 0) or span < self.lookahead_bars * meta[1]:
                return  # wait for the first onset to be complete (a later one has begun) and the look-ahead
        batch = sorted(self.pending)
        self.pending = []
        now = self.sched.clock()
        self.streamer.add(batch)
        sec = self.streamer.sec_per_tick
        self.headroom.extend(self.streamer.origin + r[0] * sec - now for r in batch)


def _generate_notes(model: Any, tokenizer: Any, sampler: Any, prompt: Any, prompt_tokens: np.ndarray, seed: int,
                    max_tokens: int, limit: dict, cancel: Any, send: Callable[[tuple], None]) -> None:
    """Generation feeding ``send`` with ("rows", meta, rows) as notes become final, then
    ("done", tokens generated, generation seconds)."""
    from musicfw.engine.generation import generate

    feed = NoteFeed(tokenizer, prompt_tokens)

    told = [False]

    def on_tokens(tokens: np.ndarray, kept: np.ndarray) -> None:
        rows = feed.push(tokens[0])
        if rows or (feed.onset_done and not told[0]):
            told[0] = feed.onset_done
            send(("rows", feed.meta, rows, feed.onset_done))

    t0 = time.monotonic()
    result = generate(model, tokenizer, sampler, n=1, batch_size=1, max_tokens=max(int(max_tokens), 1),
                      prompt=prompt, seed=seed, on_tokens=on_tokens, cancel=cancel, prefill=True, **limit)
    seconds = time.monotonic() - t0
    send(("rows", feed.meta, feed.finish(), True))
    send(("done", int(result.stats["tokens_generated"]), seconds))


def _worker_loop(conn: Any, model: Any, tokenizer: Any, sampler: Any) -> None:  # pragma: no cover - forked
    """The generator process: one stream per job received, until the pipe closes."""
    import traceback

    try:
        # a session of its own: with the kernel's autogroup scheduling (Linux, on by default on
        # desktops) its CPU time no longer counts against the sender's group, which then wins a
        # contended core as soon as it wakes; and nicer than the sender within any group
        os.setsid()
        os.nice(GENERATOR_NICE)
    except OSError:
        pass
    parent = os.getppid()

    class Orphaned:  # the parent is gone (killed): stop at the next token
        def is_set(self) -> bool:
            return os.getppid() != parent

    import torch

    torch.set_num_threads(1)
    if FREEZE_GC:
        gc.freeze()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            _generate_notes(model, tokenizer, sampler, *job, cancel=Orphaned(), send=conn.send)
        except BaseException:  # noqa: BLE001 - the parent raises it with this traceback
            try:
                conn.send(("error", traceback.format_exc()))
            except Exception:
                return


class GeneratorProcessError(RuntimeError):
    """The generator process failed (its traceback is the message)."""


class GeneratorProcess:
    """Generation in a forked process, started ahead of the stream (after the model is loaded
    and warmed up: ``musicfw play`` starts it before the clock), so that a stream's first note
    does not wait for a fork; one stream per :meth:`run`, until :meth:`close` (a cancel or an
    error kills it at once, freeing its work)."""

    def __init__(self, model: Any, tokenizer: Any, sampler: Any):
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_loop, args=(child, model, tokenizer, sampler),
                                name="musicfw-generator", daemon=True)
        self.proc.start()
        child.close()

    def run(self, job: tuple, playback: "_Playback", cancel: Any) -> tuple[int, float]:
        from musicfw.engine.generation import GenerationCancelled

        if not self.proc.is_alive():
            raise GeneratorProcessError(f"the generator process has ended (exit code {self.proc.exitcode})")
        ok = False
        try:
            self.conn.send(job)
            while True:
                if cancel is not None and cancel.is_set():
                    raise GenerationCancelled("cancelled while generating")
                if not self.conn.poll(0.02):
                    if not self.proc.is_alive() and not self.conn.poll(0):
                        raise GeneratorProcessError(f"the generator process ended (exit code "
                                                    f"{self.proc.exitcode}) without a result")
                    continue
                try:
                    msg = self.conn.recv()
                except EOFError:
                    raise GeneratorProcessError(f"the generator process ended (exit code {self.proc.exitcode}) "
                                                "without a result") from None
                if msg[0] == "rows":
                    playback.rows(msg[1], msg[2], onset_done=msg[3])
                elif msg[0] == "done":
                    ok = True
                    return int(msg[1]), float(msg[2])
                else:
                    raise GeneratorProcessError(f"generation failed in the generator process:\n{msg[1]}")
        finally:
            if not ok:
                self.close()  # a cancel or an error: its work stops at once

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()

    def __enter__(self) -> "GeneratorProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def warm_up(model: Any, tokenizer: Any, sampler: Any) -> None:
    """Generate two tokens and throw them away: the first forward pass of a freshly loaded model
    (lazy initialisation in torch, first allocations) is slower than the rest, and it belongs to
    loading the model, not to the first note."""
    from musicfw.engine.generation import generate

    generate(model, tokenizer, sampler, n=1, batch_size=1, max_tokens=2, seed=0)


def lateness_summary(log: list[tuple[float, float, Any]], late_seconds: float = LATE_SECONDS) -> dict[str, float]:
    """Messages, how many were sent more than ``late_seconds`` after their due time, and the
    lateness median / 99th / 99.9th percentile / maximum in ms, from a scheduler's (due, sent, msg) log."""
    late = np.array([s - d for d, s, _ in log], dtype=float)
    if not len(late):
        return {"messages": 0, "late": 0, "median_ms": 0.0, "p99_ms": 0.0, "p999_ms": 0.0, "max_ms": 0.0}
    ms = late * 1000
    return {"messages": int(len(late)), "late": int((late > late_seconds).sum()), "median_ms": float(np.median(ms)),
            "p99_ms": float(np.percentile(ms, 99)), "p999_ms": float(np.percentile(ms, 99.9)), "max_ms": float(ms.max())}


def stream_generation(model: Any, tokenizer: Any, sampler: Any, scheduler: Scheduler, *, bars: int,
                      bpm: float | None = None, seed: int = 0, prompt: Any = None, lookahead_bars: float = 0.0,
                      buffer: float = BUFFER_SECONDS, max_tokens: int | None = None, cancel: Any = None,
                      say: Callable[[str], None] = print,
                      place_origin: Callable[[int, float], float] | None = None,
                      quantum: float | None = None, wait: bool = True, process: Any = False) -> StreamStats:
    """Generate ``bars`` bars (continuing ``prompt``, a Score, if given) and play them on
    ``scheduler``'s port as they come: each note once it is final (:class:`NoteFeed`).

    The look-ahead buffer: playback starts ``buffer`` seconds (at least ``MARGIN_SECONDS``)
    after the first onset's notes are all out (a later onset has begun: an opening chord is never
    split) and notes spanning ``lookahead_bars`` bars are ready, so the music is that far behind
    generation at the start; generating faster than real time, the lead then grows by
    (1 - 1/RTF) seconds per second of music (``stats.extra["headroom_*"]``: due minus handed-over
    time of every note).  ``process``: generate in a
    forked process (:class:`GeneratorProcess`: niced by ``GENERATOR_NICE``, one torch thread) so
    that the sender shares no GIL with it: True forks one for this stream, or give one started
    ahead (no fork before the first note).  Returns the stream's statistics (after the last message was sent when ``wait``)."""
    from musicfw.engine.generation import clock_for

    t_start = scheduler.clock()
    has_bars = clock_for(tokenizer, 1).has_bars
    prompt_tokens = np.asarray(tokenizer.encode(prompt)) if prompt is not None else np.zeros(0, dtype=np.int64)
    limit: dict[str, Any] = {}
    if has_bars:
        limit["max_bars"] = int(bars)
    else:
        limit["max_seconds"] = float(bars) * 4 * 60.0 / float(bpm or 120.0)
    if max_tokens is None:
        max_tokens = min(int(model.max_context or 4096) - len(prompt_tokens) - 1, 160 * int(bars)) \
            if model.max_context else 160 * int(bars)
    playback = _Playback(scheduler, bpm=bpm, say=say, place_origin=place_origin, quantum=quantum,
                         lookahead_bars=lookahead_bars, buffer=buffer)
    job = (prompt, prompt_tokens, seed, max_tokens, limit)
    if FREEZE_GC:
        gc.freeze()  # collections skip the objects that exist now (torch, the model): short pauses
    try:
        if isinstance(process, GeneratorProcess):
            tokens, gen_seconds = process.run(job, playback, cancel)
        elif process:
            with GeneratorProcess(model, tokenizer, sampler) as worker:
                tokens, gen_seconds = worker.run(job, playback, cancel)
        else:
            box: dict[str, Any] = {}

            def sink(msg: tuple) -> None:
                if msg[0] == "rows":
                    playback.rows(msg[1], msg[2], onset_done=msg[3])
                else:
                    box["done"] = msg[1:]

            _generate_notes(model, tokenizer, sampler, *job, cancel=cancel, send=sink)
            tokens, gen_seconds = box["done"]
        playback.rows(None, [], final=True)
        generated_at = scheduler.clock()
        streamer = playback.streamer
        stats = StreamStats(tokens=int(tokens), generate_seconds=float(gen_seconds))
        stats.extra["generated_at"] = generated_at  # every note handed over (scheduler clock)
        if streamer is not None and streamer.count:
            stats.notes = streamer.count
            stats.first_note_seconds = streamer.first_due - t_start
            stats.music_seconds = streamer.last_end - streamer.first_due
            stats.underruns, stats.underrun_seconds = streamer.underruns, streamer.underrun_seconds
            if playback.headroom:
                stats.extra["headroom_min_s"] = float(min(playback.headroom))
                stats.extra["headroom_median_s"] = float(np.median(playback.headroom))
            if wait:
                scheduler.drain(timeout=stats.music_seconds + 60)
    finally:
        if FREEZE_GC:
            gc.unfreeze()
    stats.wall_seconds = scheduler.clock() - t_start
    summary = lateness_summary(scheduler.log)
    stats.messages, stats.late = summary["messages"], summary["late"]
    stats.max_late_ms, stats.lateness_ms_p99 = summary["max_ms"], summary["p99_ms"]
    stats.extra["lateness"] = summary
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
                      poll_seconds: float = 0.005, process: Any = False) -> list[StreamStats]:
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
                                  quantum=60.0 / tempo, process=process)
        stats.extra = {"bpm": tempo, "heard_notes": len(notes), "phrase_start": first}
        out.append(stats)
        listener.reset()  # what was played during the answer is the answer's echo, not a call
    return out
