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
