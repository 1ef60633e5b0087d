"""WAV rendering: the soundfont lookup and the numpy SoundFont player (the fallback when
symusic's synthesizer cannot run)."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from musicfw.core.render import AudioRenderer, find_soundfont

SF2 = find_soundfont()


def one_note(program: int, key: int, is_drum: bool = False, quarters: int = 2) -> symusic.Score:
    score = symusic.Score(480)
    track = symusic.Track("x", program, is_drum)
    track.notes = symusic.Note.from_numpy(
        np.array([0], np.int32), np.array([480 * quarters], np.int32), np.array([key], np.int8), np.array([100], np.int8)
    )
    score.tracks.append(track)
    return score


needs_sf2 = pytest.mark.skipif(
    SF2 is None or SF2.suffix.lower() != ".sf2", reason="no General MIDI .sf2 soundfont on this machine"
)


@needs_sf2
@pytest.mark.parametrize("program, key", [(0, 69), (40, 76), (73, 81)])
def test_sf2_player_plays_the_right_pitch(program, key):
    from musicfw.core.soundfont import SF2Synth

    synth = SF2Synth(SF2, sample_rate=22050)
    audio = synth.render(one_note(program, key))
    assert audio.shape[0] == 2 and audio.dtype == np.float32
    assert 1.0 * 22050 < audio.shape[1] < 3.0 * 22050  # one second held (120 qpm) + release
    seg = audio[0, 2000 : 2000 + 16384]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    freqs = np.fft.rfftfreq(len(seg), 1 / 22050)
    expected = 440.0 * 2 ** ((key - 69) / 12)
    assert abs(freqs[spectrum.argmax()] - expected) < expected * 0.01


@needs_sf2
def test_sf2_player_drums_and_silence():
    from musicfw.core.soundfont import SF2Synth

    synth = SF2Synth(SF2)
    drum = synth.render(one_note(0, 38, is_drum=True))
    assert np.abs(drum).max() > 0.5  # normalized
    silent = synth.render(symusic.Score(480))
    assert not np.any(silent)


def test_not_a_soundfont_is_refused(tmp_path):
    from musicfw.core.soundfont import SoundFont, SoundFontError

    bad = tmp_path / "x.sf2"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    with pytest.raises(SoundFontError):
        SoundFont(bad)


@needs_sf2
def test_renderer_writes_a_readable_wav(tmp_path):
    import soundfile

    path = AudioRenderer(SF2).render(one_note(0, 60), tmp_path / "a.wav")
    assert path is not None
    info = soundfile.info(str(path))
    assert info.channels == 2 and info.samplerate == 22050 and info.duration > 1.0
