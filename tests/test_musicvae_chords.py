"""Chord-conditioned MusicVAE: the melody_chords tokenizer (Magenta's triad chord classes),
the chord one-hot as a decoder input, and ``--chords`` for ``musicfw sample`` / ``interpolate``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
symusic = pytest.importorskip("symusic")

from conftest import run_cli  # noqa: E402

from musicfw.music.chords import (  # noqa: E402
    N_TRIAD_CLASSES,
    chord_tone_ratio,
    parse_triad,
    parse_triads,
    progression_steps,
    triad_name,
)
from musicfw.plugins.tokenizers.melody_chords import MelodyChords, MelodyChordsConfig  # noqa: E402

TINY = {"z_size": 4, "enc_rnn_size": [8], "dec_rnn_size": [8], "max_seq_len": 32}


def test_chord_classes_follow_magentas_triad_encoding():
    # the values of note_seq's TriadChordOneHotEncoding tests
    assert N_TRIAD_CLASSES == 49
    assert parse_triad("N.C.") == 0
    assert parse_triad("C13") == 1
    assert parse_triad("Cm(maj7)") == 13
    assert parse_triad("Faug7") == 30
    assert parse_triad("Abm7b5") == 45
    assert parse_triad("F7") == 6
    assert parse_triad("Abm9") == 21
    assert [triad_name(parse_triad(n)) for n in ("C", "Am", "G7", "F#dim", "D/F#", "Bbmaj7")] == [
        "C", "Am", "G", "F#dim", "D", "Bb",
    ]
    for bad in ("Gsus4", "Bb5", "H", "Cxyz", ""):
        with pytest.raises(ValueError):
            parse_triad(bad)


def test_progression_one_hot_for_a_hand_made_progression():
    steps = progression_steps(parse_triads("C G Am F"), steps_per_bar=4, length=20)
    c, g, am, f = 1, 8, 22, 6
    assert steps.tolist() == [c] * 4 + [g] * 4 + [am] * 4 + [f] * 4 + [c] * 4
    import musicfw

    tok = MelodyChords(MelodyChordsConfig(min_pitch=48, max_pitch=84))
    model = musicfw.build_model("musicvae", tokenizer=tok, chord_conditioning=True, steps_per_bar=4, **TINY)
    onehot = model._chord_input(torch.as_tensor(steps).unsqueeze(0))
    assert onehot.shape == (1, 20, 49)
    assert onehot.sum(-1).eq(1).all()
    assert onehot[0].argmax(-1).tolist() == steps.tolist()
    # sample() without a progression decodes under model.sample_chords, one chord per bar
    track = model.chord_track(None, 2, 16)
    assert track[0].tolist() == steps[:16].tolist() and track.shape == (2, 16)


@pytest.mark.parametrize("decoder", ["flat", "hierarchical"])
def test_decoder_input_width_includes_the_chord_one_hot(decoder):
    import musicfw

    tok = MelodyChords(MelodyChordsConfig(min_pitch=48, max_pitch=84))
    assert tok.vocab_size == 49 * tok.n_melody
    with_chords = musicfw.build_model("musicvae", tokenizer=tok, decoder=decoder, chord_conditioning=True, **TINY)
    without = musicfw.build_model("musicvae", tokenizer=tok, decoder=decoder, chord_conditioning=False, **TINY)
    cond = 4 if decoder == "flat" else 8  # z, or the conductor's output
    assert with_chords.decoder.rnn.layers[0].input_size == tok.n_melody + 49 + cond
    assert without.decoder.rnn.layers[0].input_size == tok.n_melody + cond
    # the encoder reads the melody only, in both
    assert with_chords.encoder.layers[0].input_size == tok.n_melody == without.encoder.layers[0].input_size

    # the chords steer the conditioned decoder and only it
    melody = torch.randint(0, tok.n_melody, (2, 32))
    z = torch.randn(2, 4)
    a, b = torch.full((2, 32), parse_triad("C")), torch.full((2, 32), parse_triad("F#m"))
    for model, differs in ((with_chords, True), (without, False)):
        model.eval()
        with torch.no_grad():
            la = model.decode_logits(melody, z, chords=a)
            lb = model.decode_logits(melody, z, chords=b)
        assert la.shape == (2, 32, tok.n_melody)
        assert bool((la - lb).abs().max() > 0) == differs


def test_tokenizer_recognises_the_chords_of_the_lower_tracks():
    tok = MelodyChords(MelodyChordsConfig(min_pitch=21, max_pitch=108))
    score = symusic.Score(480)
    melody, chords = symusic.Track("Soprano"), symusic.Track("Lower")
    for i, p in enumerate([72, 74, 76, 77, 79, 77, 76, 74]):  # eighth notes, two bars of 4/4 half-filled
        melody.notes.append(symusic.Note(i * 240, 240, p, 80))
    for p in (48, 52, 55):  # C major for the first two beats
        chords.notes.append(symusic.Note(0, 960, p, 80))
    for p in (43, 50, 59, 53):  # G7 (G B D F) for the next two
        chords.notes.append(symusic.Note(960, 960, p, 80))
    score.tracks.extend([melody, chords])
    ids = tok.encode(score)
    mel, ch = tok.split(ids)
    assert len(ids) == 16
    assert ch.tolist() == [parse_triad("C")] * 8 + [parse_triad("G")] * 8
    assert mel[0] == tok.note_on_id(72) and mel[2] == tok.note_on_id(74)
    # the soprano's notes: 72 74 | 76 77 over C (C E G): 72 and 76 are chord tones; 79 77 76 74
    # over G (G B D): 79 and 74
    ratio = chord_tone_ratio(*tok.notes_and_chords(mel, ch))
    assert (ratio["hits"], ratio["counted"]) == (4, 8)
    # transposed as a whole, the chords follow
    up = score.shift_pitch(2)
    assert tok.split(tok.encode(up))[1].tolist() == [parse_triad("D")] * 8 + [parse_triad("A")] * 8
    # decode writes the melody and the chords as block triads
    out = tok.decode(ids)
    assert [t.name for t in out.tracks] == ["melody", "chords"]
    assert len(out.tracks[0].notes) == 8 and len(out.tracks[1].notes) == 6
    assert tok.count_notes(ids) == 8


def test_chord_conditioning_needs_a_tokenizer_with_chords():
    import musicfw
    from musicfw.core.errors import ConfigError

    melody = musicfw.build_tokenizer("melody", min_pitch=48, max_pitch=84)
    with pytest.raises(ConfigError, match="melody_chords"):
        musicfw.build_model("musicvae", tokenizer=melody, chord_conditioning=True, **TINY)
    tok = MelodyChords(MelodyChordsConfig(min_pitch=48, max_pitch=84))
    with pytest.raises(ConfigError, match="sample_chords"):
        musicfw.build_model("musicvae", tokenizer=tok, chord_conditioning=True, sample_chords="C Hm", **TINY)


def _make_run(tmp_path: Path, name: str, conditioned: bool) -> Path:
    import musicfw
    from musicfw.engine.rundir import RunFolder

    tok_cfg = {"name": "melody_chords", "min_pitch": 21, "max_pitch": 108}
    model_cfg = {"name": "musicvae", "chord_conditioning": conditioned, "decoder": "hierarchical", **TINY}
    config = musicfw.load_config(
        {"name": name, "output_dir": str(tmp_path), "data": {"name": "midi_folder", "path": str(tmp_path)},
         "tokenizer": tok_cfg, "model": model_cfg}
    )
    run = RunFolder.create(tmp_path, name)
    run.save_config(config)
    tok = musicfw.build_tokenizer("melody_chords", min_pitch=21, max_pitch=108)
    tok.save(run.tokenizer_path)
    torch.manual_seed(0)
    model = musicfw.build_model("musicvae", tokenizer=tok, chord_conditioning=conditioned, decoder="hierarchical", **TINY)
    run.checkpoints.mkdir()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, run.checkpoints / "last.ckpt")
    return run.path


def test_sample_with_chords_writes_midi_that_follows_the_progression(tmp_path: Path):
    run = _make_run(tmp_path, "cvae", True)
    out = tmp_path / "s"
    res = run_cli("sample", "--run", str(run), "--n", "2", "--chords", "Am F C G7", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.glob("*.mid")) == ["sample_000.mid", "sample_001.mid"]
    score = symusic.Score(str(out / "sample_000.mid"))
    chords = [t for t in score.tracks if t.name == "chords"][0]
    # four bars (the length grew from the model's 2 bars to hold the progression), one triad each
    bars = sorted({int(n.time) // (4 * score.ticks_per_quarter) for n in chords.notes})
    assert bars == [0, 1, 2, 3]
    first = sorted(int(n.pitch) % 12 for n in chords.notes if n.time == 0)
    assert first == [0, 4, 9]  # A minor
    assert "chords, one per bar: Am F C G7" in res.stdout


def test_interpolate_with_chords(tmp_path: Path):
    run = _make_run(tmp_path, "cvae", True)
    paths = []
    for name, pitches in (("a", [60, 62, 64, 65]), ("b", [72, 71, 69, 67])):
        s = symusic.Score(480)
        t = symusic.Track("melody")
        for i, p in enumerate(pitches * 4):
            t.notes.append(symusic.Note(i * 480, 480, p, 80))
        s.tracks.append(t)
        s.dump_midi(str(tmp_path / f"{name}.mid"))
        paths.append(str(tmp_path / f"{name}.mid"))
    res = run_cli("interpolate", "--run", str(run), *paths, "--steps", "3", "--chords", "Dm G", "--out", str(tmp_path / "i"))
    assert res.returncode == 0, res.stderr
    step = symusic.Score(str(tmp_path / "i" / "step_01.mid"))
    chords = [t for t in step.tracks if t.name == "chords"][0]
    assert sorted(int(n.pitch) % 12 for n in chords.notes if n.time == 0) == [2, 5, 9]  # D minor


def test_chords_errors(tmp_path: Path):
    conditioned = _make_run(tmp_path / "c", "cvae", True)
    res = run_cli("sample", "--run", str(conditioned), "--chords", "C Hm F")
    assert res.returncode == 2
    assert "unknown chord 'Hm'" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("sample", "--run", str(conditioned), "--chords", "C Gsus4")
    assert res.returncode == 2 and "no third" in res.stderr
    res = run_cli("sample", "--run", str(conditioned), "--chords", " ".join(["C"] * 1025))
    assert res.returncode == 2 and "at most 1024" in res.stderr
    plain = _make_run(tmp_path / "u", "vae", False)
    res = run_cli("sample", "--run", str(plain), "--chords", "C G Am F")
    assert res.returncode == 2
    assert "without chord conditioning" in res.stderr and "Traceback" not in res.stderr
