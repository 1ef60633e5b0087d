"""``musicfw sample`` / ``musicfw interpolate`` machinery (tools.py) with a tiny stand-in
melody tokenizer, so these tests do not depend on the tokenizer plugins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
symusic = pytest.importorskip("symusic")

from musicfw.core.errors import DataError, RunFolderError  # noqa: E402
from musicfw.plugins.models.musicvae import MusicVAE, MusicVAEConfig  # noqa: E402
from musicfw.plugins.models.musicvae.tools import (  # noqa: E402
    interpolate_files,
    render_strip,
    sample_to_midi,
)

torch.set_num_threads(1)
TPQ = 480
SPQ = 4  # steps per quarter


class StepMelody:
    """0 = no event, 1 = note-off, 2 + p = note-on of pitch p (MusicVAE's melody one-hot)."""

    name = "step_melody"
    kind = "categorical"
    vocab_size = 130

    class config:  # noqa: N801 - mimics a Config instance
        steps_per_quarter = SPQ

    def encode(self, score):
        ticks = TPQ // SPQ
        notes = score.tracks[0].notes.numpy()
        end = int((notes["time"] + notes["duration"]).max()) // ticks
        out = np.zeros(end, dtype=np.int64)
        start = notes["time"] // ticks
        stop = (notes["time"] + notes["duration"]) // ticks
        out[stop[stop < end]] = 1
        out[start] = notes["pitch"] + 2
        return out

    def decode(self, tokens):
        ticks = TPQ // SPQ
        score = symusic.Score(TPQ)
        track = symusic.Track()
        tokens = np.asarray(tokens)
        events = np.flatnonzero(tokens != 0)
        for i, pos in enumerate(events):
            if tokens[pos] >= 2:
                end = events[i + 1] if i + 1 < len(events) else len(tokens)
                track.notes.append(symusic.Note(int(pos * ticks), int((end - pos) * ticks), int(tokens[pos] - 2), 80))
        score.tracks.append(track)
        return score


def write_midi(path: Path, pitches: list[int]) -> Path:
    tok = StepMelody()
    seq = np.zeros(32, dtype=np.int64)
    seq[::4] = np.array(pitches[:8]) + 2
    tok.decode(seq).dump_midi(str(path))
    return path


def model():
    cfg = MusicVAEConfig(z_size=8, enc_rnn_size=[16], dec_rnn_size=[16], max_seq_len=32)
    torch.manual_seed(0)
    return MusicVAE.from_config(cfg, tokenizer=StepMelody())


def test_stand_in_tokenizer_round_trips(tmp_path):
    tok = StepMelody()
    path = write_midi(tmp_path / "a.mid", [60, 62, 64, 65, 67, 69, 71, 72])
    tokens = tok.encode(symusic.Score(str(path)))
    assert len(tokens) == 32 and tokens[0] == 62 and tokens[1] == 0


def test_sample_to_midi_writes_files_and_is_seeded(tmp_path):
    m = model()
    w = sample_to_midi(m, StepMelody(), tmp_path / "s", n=3, temperature=1.0, seed=4)
    assert [p.name for p in w.midi] == ["sample_000.mid", "sample_001.mid", "sample_002.mid"]
    assert all(p.stat().st_size > 0 for p in w.midi)
    assert w.image is not None and w.image.stat().st_size > 1000
    again = sample_to_midi(m, StepMelody(), tmp_path / "t", n=3, temperature=1.0, seed=4, image=False)
    assert all(np.array_equal(a, b) for a, b in zip(w.tokens, again.tokens))


def test_interpolate_files_writes_every_step_the_row_and_the_strip(tmp_path):
    a = write_midi(tmp_path / "a.mid", [60, 62, 64, 65, 67, 69, 71, 72])
    b = write_midi(tmp_path / "b.mid", [72, 71, 69, 67, 65, 64, 62, 60])
    w = interpolate_files(model(), StepMelody(), a, b, tmp_path / "out", steps=4)
    names = [p.name for p in w.midi]
    assert names == ["step_00.mid", "step_01.mid", "step_02.mid", "step_03.mid", "interpolation.mid"]
    row = symusic.Score(str(w.midi[-1]))
    # all steps in a row: 4 x 32 steps of 16th notes = 32 quarters at most
    assert row.end() <= 4 * 32 * (row.ticks_per_quarter // SPQ)
    assert w.image is not None and w.image.name == "interpolation.png"
    assert set(w.extra) == {
        "reconstruction_accuracy_a", "reconstruction_accuracy_b", "onset_accuracy_a", "onset_accuracy_b",
        "length", "notes", "temperature",
    }
    assert w.extra["length"] == 32 and len(w.extra["notes"]) == 4 and w.extra["temperature"] == 0.5


def test_user_mistakes(tmp_path):
    a = write_midi(tmp_path / "a.mid", [60] * 8)
    with pytest.raises(DataError, match="not found"):
        interpolate_files(model(), StepMelody(), a, tmp_path / "missing.mid", tmp_path / "o")
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file")
    with pytest.raises(DataError):
        interpolate_files(model(), StepMelody(), a, bad, tmp_path / "o")

    class NotVAE:
        pass

    with pytest.raises(RunFolderError, match="MusicVAE"):
        sample_to_midi(NotVAE(), StepMelody(), tmp_path / "o")


def test_render_strip_handles_empty_scores(tmp_path):
    empty = symusic.Score(TPQ)
    out = render_strip([empty, StepMelody().decode(np.array([62, 0, 1, 64]))], tmp_path / "x.png", labels=["a", "b"])
    assert out.stat().st_size > 500


def test_heldout_windows_are_bar_aligned_deduplicated_and_not_silent():
    from musicfw.plugins.models.musicvae.tools import heldout_windows, window_batches

    seq = np.zeros(80, dtype=np.int64)
    seq[0:16] = 5  # bar 0 busy
    seq[32:48] = 5  # bar 2 busy, bars 1, 3, 4 silent
    w = heldout_windows([seq, seq, np.zeros(10, dtype=np.int64)], length=32, hop=16)
    # windows start at 0, 16, 32, 48: the one at 48 (bars 3-4) is silent; 0 and 32 are equal
    assert w.shape == (2, 32)
    assert (w >= 2).any(axis=1).all()
    b = window_batches(w, batch_size=1)
    assert len(b) == 2 and b[0]["tokens"].shape == (1, 32) and bool(b[0]["mask"].all())


def test_near_empty_warning_threshold():
    from musicfw.plugins.models.musicvae.tools import near_empty_warning

    assert near_empty_warning([0, 0, 5], "sample", 0.0, 32) is not None  # 2 of 3 empty
    assert near_empty_warning([0, 4, 5], "sample", 0.0, 32) is None  # most hold notes
    # fewer notes than bars is near-empty: 16 bars need 16 notes
    assert "fewer than 16 notes in 16 bars" in near_empty_warning([15, 15], "interpolate", 0.5, 256)
    assert near_empty_warning([16, 30], "interpolate", 0.5, 256) is None
    # what a 300-step folk MusicVAE gave at temperature 0.5 (2 bars): warned
    assert near_empty_warning([7, 2, 1, 4, 1, 1, 1, 3], "sample", 0.5, 32) is not None
