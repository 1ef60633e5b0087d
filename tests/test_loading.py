"""The one model loader (musicfw/engine/loading.py): a run folder, an exported folder or a shipped
model's name, its errors, what it says a model supports, and the commands that take a model
through it (harmonize --model and infill --model now take shipped names too)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import symusic

from conftest import untrained_infill_run
from musicfw.core.errors import ConfigError, RunFolderError, UserError
from musicfw.engine import zoo
from musicfw.engine.loading import load, open_model
from test_studio import make_run, tune


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("loading")
    return {
        "infill": untrained_infill_run(root, "infill", {"name": "remi"}, infill=True),
        "plain": untrained_infill_run(root, "plain", {"name": "remi"}, infill=False),
        "tracks": make_run(root / "tracks", tokenizer={"name": "tracks"}),
    }


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch, runs):
    """An installed zoo (entry point group musicfw.pretrained, as tests/test_zoo.py fakes it) holding
    the tiny runs, exported."""
    from musicfw.engine.integrity import sha256_file
    from musicfw.engine.pretrained import export_run
    from test_zoo import _fake_zoo

    root = _fake_zoo(tmp_path, monkeypatch, names=())
    models = {}
    for name, run in (("tiny-infill", runs["infill"]), ("tiny-harmonizer", runs["tracks"])):
        folder = export_run(run, root / name)
        models[name] = {"task": "test", "license": "other",
                        "files": {p.name: sha256_file(p) for p in sorted(folder.iterdir())}}
    (root / zoo.MANIFEST).write_text(json.dumps({"format": zoo.FORMAT, "format_version": 1, "models": models}))
    zoo.shipped(refresh=True)
    yield root
    zoo._CACHE = None  # the real entry points again at the next look


def test_a_run_an_exported_folder_and_a_shipped_name_load_alike(runs, fake_zoo):
    from_run = load(run=runs["infill"])
    from_folder = load(model=fake_zoo / "tiny-infill")
    from_name = open_model(model="tiny-infill")
    assert (from_run.source.kind, from_folder.source.kind, from_name.kind) == ("run", "folder", "shipped")
    assert from_name.path == fake_zoo / "tiny-infill" and from_name.samples == Path("samples")
    assert from_run.source.samples == runs["infill"] / "samples"
    named = from_name.load()
    assert named.tokenizer.vocab == from_run.tokenizer.vocab
    for key, value in from_run.model.state_dict().items():
        assert (named.model.state_dict()[key] == value).all(), key
    assert from_run.sampler is not None and named.generate is not None


def test_what_a_model_supports(runs):
    assert load(run=runs["infill"]).supports == {"generate": True, "infill": True, "harmonize": False,
                                                 "controls": False, "chords": False, "latent": False}
    assert not load(run=runs["plain"]).supports["infill"]
    tracks = load(run=runs["tracks"]).supports
    assert tracks["harmonize"] and not tracks["infill"]


def test_the_loader_errors(runs, tmp_path):
    zoo.shipped(refresh=True)
    with pytest.raises(ConfigError, match=r"Unknown model 'no-such-model'.*no installed pretrained model has that name"):
        open_model(model="no-such-model")
    with pytest.raises(ConfigError, match=r"--model .*nothing: no such folder"):
        open_model(model=str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="--checkpoint applies to --run"):
        open_model(model=str(runs["infill"]), checkpoint="best")
    with pytest.raises(ConfigError, match="give a run folder"):
        open_model()
    # a run folder without a checkpoint: named, with what to do
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(runs["plain"], bare)
    (bare / "checkpoints" / "best.ckpt").unlink()
    with pytest.raises(RunFolderError, match=r"No checkpoint .*best.ckpt.*train the model first"):
        open_model(run=bare).load()
    # a model not trained for what a verb needs: the source named, and how to train one
    with pytest.raises(UserError, match=rf"{runs['plain']} was not trained to infill.*train.infill.enabled: true"):
        load(run=runs["plain"], require="infill")
    with pytest.raises(UserError, match="was not trained to harmonise: its tokenizer is 'remi'"):
        load(run=runs["infill"], require="harmonize")
    with pytest.raises(UserError, match="not a MusicVAE"):
        load(run=runs["infill"], require="latent")


def test_a_damaged_shipped_file_is_named_with_the_reinstall_command(fake_zoo):
    weights = fake_zoo / "tiny-harmonizer" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"damaged: .*model.safetensors does not match .*pip install --force-reinstall --no-deps fake-models"):
        open_model(model="tiny-harmonizer")


def soprano() -> bytes:
    """A one-track melody named Soprano (8 quarter notes in 4/4), as MIDI bytes."""
    score = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("Soprano", 0, False)
    for i, pitch in enumerate((72, 71, 69, 67, 69, 71, 72, 72)):
        track.notes.append(symusic.Note(i * 480, 480, pitch, 80))
    score.tracks.append(track)
    return bytes(score.dumps_midi())


def _soprano(tmp_path) -> Path:
    path = tmp_path / "melody.mid"
    path.write_bytes(soprano())
    return path


def test_harmonize_and_infill_take_a_shipped_name(fake_zoo, tmp_path, capsys):
    from musicfw.cli import main

    out = tmp_path / "harm"
    assert main(["harmonize", "--model", "tiny-harmonizer", str(_soprano(tmp_path)), "--n", "1", "--seed", "0",
                 "--out", str(out)]) == 0
    written = symusic.Score(str(out / "melody_harmonized_000.mid"))
    assert [t.name for t in written.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert json.loads((out / "harmonize.json").read_text())["source"] == "tiny-harmonizer"
    song = tmp_path / "song.mid"
    song.write_bytes(tune(bars=4))
    filled = tmp_path / "filled"
    assert main(["infill", "--model", "tiny-infill", str(song), "--bars", "2-3", "--seed", "0", "--out", str(filled)]) == 0
    assert len(list(filled.glob("*.mid"))) == 1
    # a shipped model not trained to harmonise / to infill: one clear error, nothing written
    capsys.readouterr()
    assert main(["harmonize", "--model", "tiny-infill", str(_soprano(tmp_path)), "--out", str(tmp_path / "no")]) == 2
    assert "tiny-infill was not trained to harmonise" in " ".join(capsys.readouterr().err.split())
    assert main(["infill", "--model", "tiny-harmonizer", str(song), "--bars", "2", "--out", str(tmp_path / "no")]) == 2
    assert "tiny-harmonizer was not trained to infill" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "no").exists()


def test_the_api_takes_a_shipped_name(fake_zoo):
    import musicfw

    result = musicfw.infill("tiny-infill", symusic.Score.from_midi(tune(bars=4)), "2", seed=0)
    assert result.bars == (2, 2) and len(result.scores) == 1
    with pytest.raises(UserError, match="tiny-harmonizer was not trained to infill"):
        musicfw.infill("tiny-harmonizer", symusic.Score.from_midi(tune(bars=4)), "2")
