"""WAV rendering through maintained synthesizers (symusic's, else FluidSynth), the soundfont
lookup, and the messages when audio cannot be made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import symusic

from musicfw.music import render
from musicfw.music.render import AudioRenderer, find_soundfont

SF2 = find_soundfont()
DATA = Path(__file__).parent / "data" / "midi"

needs_soundfont = pytest.mark.skipif(
    SF2 is None, reason="no General MIDI soundfont on this machine (apt-get install timgm6mb-soundfont)"
)


def _a_synthesizer_is_installed() -> bool:
    import shutil

    return render._symusic_failed is None or shutil.which("fluidsynth") is not None


needs_synth = pytest.mark.skipif(
    SF2 is None or not _a_synthesizer_is_installed(),
    reason="no soundfont, or symusic's synthesizer fails and FluidSynth is missing (apt-get install fluidsynth)",
)


def one_note(program: int, key: int, is_drum: bool = False, quarters: int = 2) -> symusic.Score:
    score = symusic.Score(480)
    track = symusic.Track("x", program, is_drum)
    track.notes = symusic.Note.from_numpy(
        np.array([0], np.int32), np.array([480 * quarters], np.int32), np.array([key], np.int8), np.array([100], np.int8)
    )
    score.tracks.append(track)
    return score


def last_note_end_seconds(score: symusic.Score) -> float:
    sec = score.to("second")
    return max(
        float((t.notes.numpy()["time"] + t.notes.numpy()["duration"]).max()) for t in sec.tracks if len(t.notes)
    )


@needs_synth
def test_a_real_file_renders_audible_audio_of_the_right_length_silently(tmp_path, capsys, monkeypatch):
    import soundfile

    monkeypatch.setattr(render, "_said", set())
    score = symusic.Score(str(DATA / "one_track" / "POP909_008.mid"))
    score = score.clip(0, 40 * score.ticks_per_quarter)  # the first 40 quarters: a few seconds
    expected = last_note_end_seconds(score)
    assert expected > 5.0
    renderer = AudioRenderer(SF2)
    path = renderer.render(score, tmp_path / "pop.wav")
    assert path is not None, f"no synthesizer could render: {capsys.readouterr().err}"
    assert renderer.backend in ("symusic", "fluidsynth")
    audio, rate = soundfile.read(str(path), dtype="float32")
    assert rate == 22050 and audio.ndim == 2 and audio.shape[1] == 2
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert rms > 0.005, f"audio is (nearly) silent: RMS {rms}"
    # the music, plus at most the release/reverb tail FluidSynth renders (~3 s)
    assert expected - 0.1 < audio.shape[0] / rate < expected + 5.0
    # and the sound is where the notes are: the first second with notes is not silent
    first = float(score.to("second").tracks[0].notes[0].time)
    window = audio[int(first * rate) : int((first + 1) * rate)]
    assert np.abs(window).max() > 0.01
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""  # no warning lines when rendering works


@needs_synth
@pytest.mark.parametrize("program, key", [(0, 69), (73, 81)])
def test_the_synthesizer_plays_the_right_pitch(tmp_path, program, key):
    import soundfile

    path = AudioRenderer(SF2).render(one_note(program, key), tmp_path / "a.wav")
    assert path is not None
    audio, rate = soundfile.read(str(path), dtype="float32")
    seg = audio[2000 : 2000 + 16384, 0]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    freqs = np.fft.rfftfreq(len(seg), 1 / rate)
    expected = 440.0 * 2 ** ((key - 69) / 12)
    peak = freqs[spectrum.argmax()]
    harmonic = max(round(peak / expected), 1)  # a piano's loudest partial need not be the first
    assert abs(peak - harmonic * expected) < harmonic * expected * 0.01


def test_no_soundfont_message_names_the_packages_and_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(render.SOUNDFONT_ENV, "")
    monkeypatch.setattr(render, "SOUNDFONT_PATHS", (str(tmp_path / "none.sf2"),))
    monkeypatch.setattr(render, "_said", set())
    renderer = AudioRenderer()
    assert not renderer.available and renderer.render(one_note(0, 60), tmp_path / "a.wav") is None
    err = capsys.readouterr().err
    for needle in ("timgm6mb-soundfont", "fluid-soundfont-gm", "generate.soundfont", render.SOUNDFONT_ENV):
        assert needle in err
    assert not (tmp_path / "a.wav").exists()


@needs_soundfont
def test_a_failing_synthesizer_is_reported_whole_once(tmp_path, monkeypatch, capsys):
    def broken(self, score, path):
        raise TypeError("Unable to convert function return value to a Python type! The signature was\n    render(self)")

    monkeypatch.setattr(AudioRenderer, "_render_symusic", broken)
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    monkeypatch.setattr(render, "_said", set())
    monkeypatch.setattr(render, "_symusic_failed", None)
    renderer = AudioRenderer(SF2)
    assert renderer.render(one_note(0, 60), tmp_path / "a.wav") is None
    assert renderer.render(one_note(0, 62), tmp_path / "b.wav") is None
    err = capsys.readouterr().err
    assert err.count("cannot render .wav audio") == 1
    assert "The signature was render(self)" in err  # not cut mid-sentence
    assert "apt-get install fluidsynth" in err
    assert not (tmp_path / "a.wav").exists()


def test_the_home_made_soundfont_player_is_gone():
    import importlib.util

    assert importlib.util.find_spec("musicfw.core.soundfont") is None
