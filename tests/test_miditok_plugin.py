"""The ``miditok`` tokenizer plugin: MidiTok's tokenizers (and trained BPE vocabularies) as
musicfw tokenizers, end to end through ``musicfw run``."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import symusic

import musicfw
from musicfw.core.errors import ConfigError
from musicfw.core.tokenizer import load_tokenizer

from conftest import REPO, TEST_MIDI, run_cli

miditok = pytest.importorskip("miditok", reason="the miditok plugin's tests need MidiTok (in the [test] extra)")

ONE_TRACK = sorted((TEST_MIDI / "one_track").glob("*.mid"))
MULTITRACK = TEST_MIDI / "multitrack" / "Funkytown.mid"


def _merged(score):
    """The score's pitched tracks as one track (what the plugin feeds a per-track MidiTok)."""
    out = score.copy()
    track = symusic.Track("merged", 0, False)
    for t in score.tracks:
        if not t.is_drum:
            track.notes.extend(t.notes)
    track.notes.sort()
    out.tracks = [track]
    return out


@pytest.mark.parametrize("cls", ["REMI", "TSD", "MIDILike", "Structured"])
def test_ids_and_vocab_are_miditoks_own(cls):
    tok = musicfw.build_tokenizer("miditok", tokenizer=cls)
    ref = getattr(miditok, cls)()
    assert tok.kind == "categorical" and tok.vocab_size == len(ref)
    assert tok.vocab == [t for t, _ in sorted(ref.vocab.items(), key=lambda kv: kv[1])]
    score = symusic.Score(MULTITRACK)
    ids = tok.encode(score)
    assert ids.dtype == np.int64 and ids.ndim == 1 and len(ids) > 1000
    (expected,) = ref.encode(_merged(score))  # one sequence per track: here one track
    assert ids.tolist() == expected.ids
    decoded = tok.decode(ids)
    assert decoded.note_num() == ref.decode([expected.ids]).note_num() > 0


def test_programs_give_one_stream_of_every_track():
    tok = musicfw.build_tokenizer("miditok", tokenizer="REMI", params={"use_programs": True})
    ref = miditok.REMI(miditok.TokenizerConfig(use_programs=True))
    score = symusic.Score(MULTITRACK)
    ids = tok.encode(score)
    assert ids.tolist() == ref.encode(score).ids
    assert any(name.startswith("Program_") for name in tok.token_names(ids[:50]))
    assert len(tok.decode(ids).tracks) > 1


def test_json_spellings_of_params():
    tok = musicfw.build_tokenizer(
        "miditok", tokenizer="TSD", params={"beat_res": {"0_4": 4, "4_8": 2}, "pitch_range": [36, 84], "num_velocities": 8}
    )
    assert tok.miditok.config.beat_res == {(0, 4): 4, (4, 8): 2}
    assert sum(name.startswith("Velocity_") for name in tok.vocab) == 8
    assert tok.pitch_range == (36, 84)  # inclusive, as MidiTok's Pitch tokens are
    assert {int(n.split("_")[1]) for n in tok.vocab if n.startswith("Pitch_")} == set(range(36, 85))
    direct = miditok.TSD(miditok.TokenizerConfig(beat_res={(0, 4): 4, (4, 8): 2}, pitch_range=(36, 84), num_velocities=8))
    assert tok.vocab == [t for t, _ in sorted(direct.vocab.items(), key=lambda kv: kv[1])]


def test_any_sequence_decodes_and_out_of_range_is_a_value_error():
    tok = musicfw.build_tokenizer("miditok", tokenizer="REMI")
    rng = np.random.default_rng(0)
    for _ in range(5):
        tok.decode(rng.integers(0, tok.vocab_size, 200))  # never raises
    assert tok.decode(np.zeros(0, dtype=np.int64)).note_num() == 0
    assert len(tok.encode(symusic.Score(480))) == 0
    with pytest.raises(ValueError, match="out of range"):
        tok.decode(np.array([tok.vocab_size]))


@pytest.fixture(scope="module")
def bpe_file(tmp_path_factory):
    tok = miditok.REMI()
    tok.train(vocab_size=420, model="BPE", files_paths=ONE_TRACK)
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tok.save(path)
    return path


def test_trained_bpe_vocabulary_from_its_tokenizer_json(bpe_file, tmp_path):
    tok = musicfw.build_tokenizer("miditok", tokenizer="REMI", config_file=str(bpe_file))
    base = musicfw.build_tokenizer("miditok", tokenizer="REMI")
    assert tok.vocab_size == 420 > base.vocab_size
    score = symusic.Score(ONE_TRACK[0])
    ids, base_ids = tok.encode(score), base.encode(score)
    assert len(ids) < len(base_ids) and ids.max() >= base.vocab_size  # learned ids are used
    learned = tok.vocab[int(ids.max())]
    assert "+" in learned  # named by the base tokens it stands for
    assert tok.decode(ids).note_num() == base.decode(base_ids).note_num() == score.note_num()
    # saved with the trained vocabulary embedded: loads without the original file
    saved = tmp_path / "tok.json"
    tok.save(saved)
    copy = tmp_path / "bpe.json"
    shutil.copy(bpe_file, copy)
    tok2 = musicfw.build_tokenizer("miditok", tokenizer="REMI", config_file=str(copy))
    copy.unlink()
    tok2.save(tmp_path / "tok2.json")
    again = load_tokenizer(tmp_path / "tok2.json")
    assert json.loads(saved.read_text())["config"]["config_file"] is None
    assert again.vocab == tok.vocab and again.encode(score).tolist() == ids.tolist()


def test_mistakes_are_config_errors(bpe_file, monkeypatch):
    with pytest.raises(ConfigError, match="no tokenizer 'Remi'.*REMI"):
        musicfw.build_tokenizer("miditok", tokenizer="Remi")
    with pytest.raises(ConfigError, match="several ids per step"):
        musicfw.build_tokenizer("miditok", tokenizer="Octuple")
    with pytest.raises(ConfigError, match="unknown MidiTok setting.*use_chord.*use_chords"):
        musicfw.build_tokenizer("miditok", tokenizer="REMI", params={"use_chord": True})
    mmm = musicfw.build_tokenizer("miditok", tokenizer="MMM", params={"additional_params": {"base_tokenizer": "TSD"}})
    assert mmm.vocab_size > 0 and len(mmm.encode(symusic.Score(MULTITRACK))) > 0
    with pytest.raises(ConfigError, match="quoted strings"):  # YAML's unquoted 0_4 is the number 4
        musicfw.build_tokenizer("miditok", tokenizer="REMI", params={"beat_res": {4: 4}})
    with pytest.raises(ConfigError, match="no such file"):
        musicfw.build_tokenizer("miditok", tokenizer="REMI", config_file="/nonexistent/tokenizer.json")
    with pytest.raises(ConfigError, match="saved by a MidiTok REMI tokenizer"):
        musicfw.build_tokenizer("miditok", tokenizer="TSD", config_file=str(bpe_file))
    with pytest.raises(ConfigError, match="either params or config_file"):
        musicfw.build_tokenizer("miditok", tokenizer="REMI", config_file=str(bpe_file), params={"use_programs": True})
    monkeypatch.setitem(sys.modules, "miditok", None)  # MidiTok not installed
    with pytest.raises(ConfigError, match="pip install miditok"):
        musicfw.build_tokenizer("miditok", tokenizer="REMI")


def test_missing_miditok_on_the_command_line(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['miditok'] = None\n")
    result = run_cli(
        "run", "examples/quickstart.yaml", f"output_dir={tmp_path / 'runs'}", "tokenizer.name=miditok",
        cwd=REPO, env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "pip install miditok" in " ".join(result.stderr.split())
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


TINY = [
    "data.name=midi_folder",
    f"data.path={TEST_MIDI / 'one_track'}",
    "train.batch_size=4",
    "train.seq_len=64",
    "model.hidden_size=16",
    "model.num_layers=1",
    "model.embed_dim=8",
    "train.max_steps=3",
    "train.max_epochs=1",
    "generate.n=2",
    "generate.max_tokens=64",
    "generate.max_bars=null",
    "generate.render_audio=false",
    "evaluate.max_reference=4",
    "logger.name=none",
]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["REMI", "TSD", "REMI-BPE"])
def test_trains_generates_and_decodes_through_musicfw_run(variant, bpe_file, tmp_path):
    cls = variant.split("-")[0]
    extra = [f"tokenizer.tokenizer={cls}"]
    if variant.endswith("BPE"):
        local = tmp_path / "bpe.json"
        shutil.copy(bpe_file, local)
        extra.append(f"tokenizer.config_file={local}")
    result = run_cli(
        "run", "examples/quickstart.yaml", f"output_dir={tmp_path / 'runs'}", "tokenizer.name=miditok",
        *extra, *TINY, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = json.loads((run_dir / "tokenizer.json").read_text())
    assert saved["name"] == "miditok" and saved["config"]["tokenizer"] == cls
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["test_n_targets"] > 0 and metrics["training"]["global_step"] == 3
    assert metrics["likelihood"]["nll"]["nll_per_note"] > 0  # decoded held-out notes
    samples = sorted((run_dir / "samples").glob("*.mid"))
    assert len(samples) == 2
    tok = load_tokenizer(run_dir / "tokenizer.json")
    assert tok.vocab_size == (420 if variant.endswith("BPE") else len(getattr(miditok, cls)()))
    if variant.endswith("BPE"):
        # the trained vocabulary travels with the run and its export, not with the file
        local.unlink()
        out = tmp_path / "exported"
        exported = run_cli("export", "--run", str(run_dir), str(out))
        assert exported.returncode == 0, exported.stderr[-3000:]
        shutil.rmtree(run_dir)
        gen = run_cli("generate", "--model", str(out), "--n", "1", "--out", str(tmp_path / "g"), "--no-audio")
        assert gen.returncode == 0, gen.stderr[-3000:]
        assert (tmp_path / "g" / "sample_000.mid").is_file()


# --------------------------------------------------------------------------------------------
# hostile pieces and tokenizer files (issue 30, class 4): musicfw's limits hold in MidiTok too
# --------------------------------------------------------------------------------------------


def _score(notes, tpq=96, tracks=1):
    score = symusic.Score(tpq)
    for k in range(tracks):
        track = symusic.Track(f"t{k}", 0, False)
        for time, pitch in notes:
            track.notes.append(symusic.Note(time, 24, pitch, 80))
        score.tracks.append(track)
    return score


def test_miditok_encoding_is_bounded_by_musicfws_limits():
    import time

    from musicfw.music import limits

    tok = musicfw.build_tokenizer("miditok", tokenizer="REMI")
    t0 = time.monotonic()
    with pytest.raises(limits.PieceTooLarge, match="max_quarters"):  # two notes 2^28 ticks apart
        tok.encode(_score([(0, 60), (2**28, 62)]))
    many = symusic.Score(96)  # 250,000 notes > max_notes, built through numpy
    track = symusic.Track("many", 0, False)
    t = np.arange(250_000, dtype=np.int32) % 4000
    track.notes = symusic.Note.from_numpy(t, np.full_like(t, 24), np.full(len(t), 60, np.int8), np.full(len(t), 80, np.int8))
    many.tracks.append(track)
    with pytest.raises(limits.PieceTooLarge, match="max_notes"):
        tok.encode(many)
    assert time.monotonic() - t0 < 10
    piece = symusic.Score(ONE_TRACK[0])
    with limits.using(max_tokens=50), pytest.raises(limits.PieceTooLarge, match="max_tokens=50"):
        tok.encode(piece)
    with limits.using(max_tracks=2), pytest.raises(limits.PieceTooLarge, match="max_tracks"):
        tok.encode(symusic.Score(MULTITRACK))
    with limits.using(max_quarters=8, on_exceed="cut"):  # cut like musicfw's own tokenizers
        cut = tok.encode(_score([(k * 96, 60 + k % 12) for k in range(64)]))
    assert 0 < tok.decode(cut).note_num() <= 8


HOSTILE_PARAMS = [
    ({"special_tokens": [f"S{i}_None" for i in range(5_000)]}, "5,000 special tokens"),
    ({"beat_res": {"0_4": -8}}, "steps per beat"),
    ({"beat_res": {"0_4": 10**7}}, "larger than 1,000,000"),
    ({"beat_res": {"0_1000": 1_000}}, "time steps in all"),
    ({"beat_res": {"-4_4": 8}}, "0 <= START < END"),
    ({"beat_res": {"0_100000": 1}}, "0 <= START < END"),
    ({"num_velocities": 10**6}, "num_velocities"),
    ({"pitch_range": [0, 100000]}, "pitch_range"),
]


def _saved_with(tmp_path, params):
    plain = tmp_path / "plain.json"
    miditok.REMI().save(plain)
    saved = json.loads(plain.read_text())
    saved["config"].update(params)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(saved))
    return path


@pytest.mark.parametrize("params, message", HOSTILE_PARAMS)
def test_tokenizer_parameters_are_bounded_before_miditok_allocates(tmp_path, params, message):
    import re
    import time

    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=re.escape(message)):
        musicfw.build_tokenizer("miditok", tokenizer="REMI", params=params)
    with pytest.raises(ConfigError, match=re.escape(message)):  # the same bound in a tokenizer file
        musicfw.build_tokenizer("miditok", tokenizer="REMI", config_file=str(_saved_with(tmp_path, params)))
    assert time.monotonic() - t0 < 20


def test_a_tokenizer_file_with_millions_of_special_tokens_is_refused_at_once(tmp_path):
    import time

    t0 = time.monotonic()
    path = _saved_with(tmp_path, {"special_tokens": [f"S{i}_None" for i in range(2_000_000)]})
    with pytest.raises(ConfigError, match="larger than 16,777,216 bytes"):  # ~30 MB: refused unread
        musicfw.build_tokenizer("miditok", tokenizer="REMI", config_file=str(path))
    path = _saved_with(tmp_path, {"special_tokens": [f"S{i}_None" for i in range(200_000)]})
    with pytest.raises(ConfigError, match=r"special_tokens: 200,000 items \(at most 10,000\)"):
        musicfw.build_tokenizer("miditok", tokenizer="REMI", config_file=str(path))
    assert time.monotonic() - t0 < 30


def test_a_tokenizer_file_nested_deeply_or_too_large_is_a_config_error(tmp_path):
    from musicfw.plugins.tokenizers import miditok_wrap

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ConfigError, match="nested too deeply|no `config`"):
        musicfw.build_tokenizer("miditok", tokenizer="REMI", config_file=str(deep))
    big = tmp_path / "big.json"
    big.write_text("{" + " " * (miditok_wrap.MAX_CONFIG_BYTES + 1) + "}")
    with pytest.raises(ConfigError, match="larger than"):
        musicfw.build_tokenizer("miditok", tokenizer="REMI", config_file=str(big))
    state = miditok_wrap._pack("{" + " " * (miditok_wrap.MAX_CONFIG_BYTES + 1) + "}")  # gzip: ~17 KB
    with pytest.raises(ConfigError, match="larger than"):
        musicfw.build_tokenizer("miditok", tokenizer="REMI", state=state)


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(start=st.integers(-5, 2000), width=st.integers(-2, 2000), res=st.integers(-3, 5000),
       velocities=st.integers(-3, 300))
def test_any_beat_resolution_builds_a_bounded_vocabulary_or_is_a_config_error(start, width, res, velocities):
    params = {"beat_res": {f"{start}_{start + width}": res}, "num_velocities": velocities}
    try:
        tok = musicfw.build_tokenizer("miditok", tokenizer="TSD", params=params)
    except ConfigError:
        return
    assert tok.vocab_size < 200_000
