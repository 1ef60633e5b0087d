"""``musicfw play``: the scheduler's timing measured on a recording port (every message's due vs
sent time), note-offs for every note-on, all notes off at a stop, underruns said aloud,
call-and-response from an injected input port, and the clear messages for a missing backend or
port.  A real virtual port (rtmidi + ALSA) only where the system offers one."""

import os
import threading
import time
from collections import Counter

import numpy as np
import pytest
import torch

from musicfw.core.errors import UserError
from musicfw.plugins.live.player import (LATE_SECONDS, Scheduler, call_and_response, estimate_tempo,
                                         stream_generation)


class RecordingPort:
    """What a mido output port offers (send, close), recording (monotonic time, message)."""

    def __init__(self, on_send=None):
        self.sent, self.on_send, self.closed = [], on_send, False

    def send(self, msg):
        self.sent.append((time.monotonic(), msg))
        if self.on_send is not None:
            self.on_send(self, msg)

    def close(self):
        self.closed = True


class PlayedInput:
    """An input port (poll()) that plays ``notes`` ((on, off, pitch) seconds from its start) then is silent."""

    def __init__(self, notes):
        import mido

        self.t0 = None
        events = []
        for on, off, p in notes:
            events.append((on, mido.Message("note_on", note=p, velocity=90)))
            events.append((off, mido.Message("note_off", note=p, velocity=0)))
        self.events = sorted(events, key=lambda e: e[0])

    def poll(self):
        if self.t0 is None:
            self.t0 = time.monotonic()
        if self.events and time.monotonic() - self.t0 >= self.events[0][0]:
            return self.events.pop(0)[1]
        return None


@pytest.fixture(scope="module")
def tiny():
    from musicfw.api import build_model, build_sampler, build_tokenizer

    tok = build_tokenizer("remi")
    torch.manual_seed(0)
    model = build_model("lstm", tokenizer=tok, hidden_size=32, num_layers=1, embed_dim=16).eval()
    return model, tok, build_sampler("temperature")


def tolerance():
    """20 ms, the target, where the machine has a CPU to spare; on an overloaded one (this 2-core
    CI box runs several jobs, load ~15) a ready thread can wait ~100 ms for a core, which no
    scheduler can hide: there the bound is looser and the benchmark's 5-minute stream is the
    measurement (docs/live.md)."""
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return LATE_SECONDS if load < 1 else 0.25


def balanced(msgs):
    """Every note-on is followed by its note-off (per channel and pitch), none left sounding."""
    held = Counter()
    for m in msgs:
        if m.type == "note_on" and m.velocity > 0:
            held[(m.channel, m.note)] += 1
        elif m.type in ("note_on", "note_off"):
            if held[(m.channel, m.note)] > 0:
                held[(m.channel, m.note)] -= 1
    return not +held


def test_stream_sends_every_message_on_time(tiny):
    model, tok, sampler = tiny
    port = RecordingPort()
    sched = Scheduler(port)
    said = []
    stats = stream_generation(model, tok, sampler, sched, bars=2, bpm=240, seed=1, say=said.append)
    sched.stop()
    assert stats.notes > 0 and stats.messages >= 2 * stats.notes
    due_sent = [(d, s) for d, s, _ in sched.log]
    late = np.array([s - d for d, s in due_sent])
    assert (late >= 0).all()  # never early
    assert late.max() <= tolerance(), f"a message was {late.max() * 1000:.1f} ms late"
    assert stats.late == int((late > LATE_SECONDS).sum())  # the stream's own count is the truth
    assert stats.max_late_ms == pytest.approx(late.max() * 1000)
    dues = [d for d, _ in due_sent]
    assert dues == sorted(dues)  # sent in time order
    # the port saw the same messages, at the times the log says
    notes_sent = [(t, m) for t, m in port.sent if m.type in ("note_on", "note_off")]
    assert len(notes_sent) == 2 * stats.notes
    assert balanced([m for _, m in port.sent])
    assert port.sent[-1][1].type == "control_change" and port.sent[-1][1].control == 123  # all notes off at stop
    assert stats.first_note_seconds is not None and stats.music_seconds > 0
    assert stats.realtime_factor > 0


def test_stop_midway_ends_every_sounding_note(tiny):
    model, tok, sampler = tiny
    cancel = threading.Event()
    ons = []

    def after(port, msg):
        if msg.type == "note_on" and msg.velocity > 0:
            ons.append(msg)
            if len(ons) == 3:
                cancel.set()  # as Ctrl-C does in `musicfw play`

    port = RecordingPort(after)
    sched = Scheduler(port)
    from musicfw.engine.generation import GenerationCancelled

    try:
        stream_generation(model, tok, sampler, sched, bars=64, bpm=100, seed=2, cancel=cancel,
                          lookahead_bars=0, say=lambda s: None, wait=False)
        sched.drain(timeout=30)
    except GenerationCancelled:
        pass
    deadline = time.monotonic() + 30
    while len(ons) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    sched.stop()
    assert len(ons) >= 3
    msgs = [m for _, m in port.sent]
    assert balanced(msgs), "a note was left sounding after the stop"
    assert any(m.type == "control_change" and m.control == 123 for m in msgs)
    assert not sched.pending()


def test_a_generator_that_falls_behind_pauses_the_stream_and_says_so():
    """Notes handed over after their time (generation slower than the music): the timeline is
    pushed back by the shortfall, the stream says so, and no message goes out late."""
    from musicfw.plugins.live.player import Streamer

    said = []
    port = RecordingPort()
    sched = Scheduler(port)
    st = Streamer(sched, tpq=480, bpm=240, say=said.append)  # a quarter = 0.25 s
    st.add([(0, 240, 60, 80, 0), (480, 240, 62, 80, 0)])  # beats 1 and 2 (0 and 0.25 s)
    time.sleep(0.6)  # the generator is late: beat 3 (0.5 s) should already have sounded
    st.add([(960, 240, 64, 80, 0), (1440, 240, 65, 80, 0)])
    assert sched.drain(timeout=10)
    sched.stop()
    assert st.underruns == 1 and any("fell behind" in s for s in said)
    assert st.underrun_seconds > 0.05
    late = sched.lateness()
    assert late.max() <= tolerance()  # paused, not late
    ons = [t for t, m in port.sent if m.type == "note_on"]
    assert len(ons) == 4 and ons[2] - ons[1] >= 0.25 + st.underrun_seconds - tolerance()
    assert balanced([m for _, m in port.sent])


def test_tempo_estimate_from_onsets():
    assert estimate_tempo([0, 0.5, 1.0, 1.5]) == pytest.approx(120)
    assert estimate_tempo([0, 0.25, 0.5, 0.75, 1.0]) == pytest.approx(120)  # eighths at 120
    assert estimate_tempo([0, 0.4, 0.8, 0.8, 1.2]) == pytest.approx(150)  # a chord is no beat
    assert estimate_tempo([0.0]) == 120


def test_call_and_response_answers_after_a_pause_on_the_phrase_grid(tiny):
    model, tok, sampler = tiny
    phrase = [(0.4 * i, 0.4 * i + 0.3, p) for i, p in enumerate([60, 62, 64, 65])]  # quarters at 150 BPM
    inport = PlayedInput(phrase)
    port = RecordingPort()
    sched = Scheduler(port)
    said = []
    t_start = time.monotonic()
    answers = call_and_response(model, tok, sampler, sched, inport, bars=1, silence=0.3, rounds=1, say=said.append)
    sched.stop()
    assert len(answers) == 1 and answers[0].extra["bpm"] == pytest.approx(150, rel=0.03)  # played with the polling delays
    assert answers[0].extra["heard_notes"] == 4
    ons = [(t, m) for t, m in port.sent if m.type == "note_on" and m.velocity > 0]
    assert ons, "no answer was played"
    first_played = inport.t0  # the phrase's first onset
    last_off = first_played + 1.5
    assert all(t >= last_off + 0.3 - 0.05 for t, _ in ons)  # after the pause, not over the phrase
    sixteenth = 60 / answers[0].extra["bpm"] / 4  # the grid of the tempo it heard (150 BPM +- the polling delays)
    due = np.array([d for d, _, m in sched.log if m.type == "note_on" and m.velocity > 0])
    steps = (due - answers[0].extra["phrase_start"]) / sixteenth  # the phrase's first onset as heard
    assert np.abs(steps - np.round(steps)).max() < 0.1, "the answer is off the phrase's grid"
    assert balanced([m for _, m in port.sent])
    assert time.monotonic() - t_start < 20


def test_missing_backend_is_one_clear_message(monkeypatch):
    import sys

    from musicfw.plugins.live import ports

    monkeypatch.setitem(sys.modules, "rtmidi", None)
    with pytest.raises(UserError, match=r'pip install "musicfw\[live\]"'):
        ports.open_port("anything", output=True)


def test_unknown_port_lists_the_available_ones(monkeypatch):
    import mido

    from musicfw.plugins.live import ports

    monkeypatch.setattr(mido, "get_output_names", lambda: ["Synth A", "DAW in"])
    with pytest.raises(UserError) as err:
        ports.open_port("Synth B", output=True)
    assert "'Synth A'" in str(err.value) and "'DAW in'" in str(err.value) and "virtual:" in str(err.value)

    def boom():
        raise SystemError("MidiOutAlsa::initialize: error creating ALSA sequencer client object.")

    monkeypatch.setattr(mido, "get_output_names", boom)
    with pytest.raises(UserError, match="No MIDI system"):
        ports.open_port("Synth B", output=True)


def test_the_cli_says_it_without_a_traceback(monkeypatch, capsys, tmp_path):
    import mido

    from musicfw.cli import main

    monkeypatch.setattr(mido, "get_output_names", lambda: ["Synth A"])
    rc = main(["play", "--model", str(tmp_path), "--out", "nope"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "'Synth A'" in err


def _alsa_virtual_ports():
    if not os.path.exists("/dev/snd/seq"):
        return "no ALSA sequencer (/dev/snd/seq) on this system"
    try:
        import mido

        port = mido.open_output("musicfw-test", virtual=True)
        port.close()
    except Exception as exc:  # noqa: BLE001
        return f"rtmidi cannot open a virtual port here: {exc}"
    return None


@pytest.mark.skipif(_alsa_virtual_ports() is not None, reason=str(_alsa_virtual_ports()))
def test_real_virtual_port_carries_the_stream(tiny):
    import mido

    from musicfw.plugins.live.ports import open_port

    model, tok, sampler = tiny
    out = open_port("virtual:musicfw-play-test", output=True)
    inp = mido.open_input("musicfw-play-test")
    got = []
    inp.callback = lambda m: got.append((time.monotonic(), m))
    sched = Scheduler(out)
    stats = stream_generation(model, tok, sampler, sched, bars=1, bpm=480, seed=1, say=lambda s: None)
    time.sleep(0.1)
    sched.stop()
    out.close()
    inp.close()
    assert len([m for _, m in got if m.type == "note_on"]) >= stats.notes


def test_play_command_streams_a_run_to_the_port(monkeypatch, tmp_path, capsys):
    """`musicfw play --run RUN --out PORT` end to end: the run's model and sampler section, the
    notes on the port, the summary line, the port closed."""
    import musicfw
    from musicfw.api import build_from_section
    from musicfw.cli import main
    from musicfw.engine.rundir import RunFolder
    from musicfw.plugins.live import ports

    config = musicfw.load_config({"name": "tiny", "seed": 0, "data": {"name": "midi_folder", "path": str(tmp_path)},
                                  "tokenizer": {"name": "remi"},
                                  "model": {"name": "lstm", "hidden_size": 16, "num_layers": 1, "embed_dim": 8},
                                  "sampler": [{"name": "temperature", "temperature": 1.0}, {"name": "top_p", "p": 0.95}]})
    run = RunFolder.create(tmp_path, config.name)
    run.save_config(config)
    tokenizer = build_from_section("tokenizers", config.tokenizer)
    tokenizer.save(run.tokenizer_path)
    torch.manual_seed(0)
    net = build_from_section("models", config.model, tokenizer=tokenizer)
    run.checkpoints.mkdir()
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, run.checkpoints / "best.ckpt")

    port = RecordingPort()
    monkeypatch.setattr(ports, "open_port", lambda name, output: port)
    rc = main(["play", "--run", str(run.path), "--out", "whatever", "--bars", "1", "--tempo", "400"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "played" in err and "real time" in err
    assert any(m.type == "note_on" for _, m in port.sent) and balanced([m for _, m in port.sent])
    assert port.closed
