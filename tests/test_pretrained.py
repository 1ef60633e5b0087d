"""``musicfw export`` / ``musicfw.load_pretrained`` / ``musicfw generate --model``: a trained
model as a self-describing folder (safetensors + JSON), loadable without its run folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import musicfw
from musicfw.core.errors import ConfigError
from musicfw.engine.pretrained import EXTRA_KEY, push_folder, read_weights, save_weights

from conftest import REPO, TEST_MIDI, run_cli

torch.set_num_threads(1)

TINY_RUN = [
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
    "generate.max_tokens=40",
    "generate.render_audio=false",
    "evaluate.max_reference=4",
    "logger.name=none",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LSTM trained through `musicfw run`, and its export (made by the CLI)."""
    root = tmp_path_factory.mktemp("pretrained")
    result = run_cli("run", "examples/quickstart.yaml", f"output_dir={root / 'runs'}", *TINY_RUN, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (root / "runs").iterdir()
    out = root / "exported"
    exported = run_cli("export", "--run", str(run_dir), str(out), "--license", "mit")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "exported" in exported.stdout
    return run_dir, out


def _err(result) -> str:
    """stderr with the CLI's line wrapping undone."""
    return " ".join(result.stderr.split())


def _copy(folder: Path, tmp_path: Path) -> Path:
    dst = tmp_path / folder.name
    shutil.copytree(folder, dst)
    return dst


def test_export_folder_layout_and_model_card(trained):
    run_dir, out = trained
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "tokenizer.json", "vocab.json",
    ]
    doc = json.loads((out / "config.json").read_text())
    assert doc["format"] == "musicfw.pretrained" and doc["format_version"] == 1
    assert doc["model"]["name"] == "lstm" and doc["model"]["hidden_size"] == 16
    assert doc["tokenizer"]["name"] == "remi" and doc["tokenizer"]["config"]["beat_resolution"] == 4
    assert len(doc["weights"]["sha256"]) == 64 and doc["weights"]["checkpoint"] == "best"
    vocab = json.loads((out / "vocab.json").read_text())
    assert len(vocab) == doc["tokenizer"]["vocab_size"] and vocab[0] == "Bar"
    # the tokenizer's own save format, loadable by load_tokenizer
    assert json.loads((out / "tokenizer.json").read_text())["name"] == "remi"
    card = (out / "README.md").read_text()
    front = card.split("---")[1]
    assert "license: mit" in front and "library_name: musicfw" in front and "- musicfw" in front
    metrics = json.loads((run_dir / "metrics.json").read_text())["training"]
    assert f"| test_nll | {metrics['test_nll']:.4g} |" in card
    assert "midi_folder" in card and "musicfw.load_pretrained" in card


def test_exported_folder_alone_generates_the_runs_samples(trained, tmp_path):
    run_dir, out = trained
    run_copy = _copy(run_dir, tmp_path)
    model_copy = _copy(out, tmp_path / "m")
    from_run = run_cli("generate", "--run", str(run_copy), "--seed", "7", "--out", str(tmp_path / "a"), "--no-audio")
    assert from_run.returncode == 0, from_run.stderr[-3000:]
    shutil.rmtree(run_copy)  # the run folder is gone: only the export remains
    from_model = run_cli(
        "generate", "--model", str(model_copy), "--seed", "7", "--out", str(tmp_path / "b"), "--no-audio",
        cwd=tmp_path,
    )
    assert from_model.returncode == 0, from_model.stderr[-3000:]
    a = sorted((tmp_path / "a").glob("*.mid"))
    b = sorted((tmp_path / "b").glob("*.mid"))
    assert [p.name for p in a] == [p.name for p in b] == ["sample_000.mid", "sample_001.mid"]
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes()
    ra = json.loads((tmp_path / "a" / "generation.json").read_text())
    rb = json.loads((tmp_path / "b" / "generation.json").read_text())
    assert ra["settings"] == rb["settings"] and ra["sampler"] == rb["sampler"]
    assert ra["stats"]["tokens_generated"] == rb["stats"]["tokens_generated"] > 0
    # without --out the samples go to ./samples/generate-NNN, never into the model folder
    again = run_cli("generate", "--model", str(model_copy), "--n", "1", "--no-audio", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "samples" / "generate-001" / "sample_000.mid").is_file()
    assert not (model_copy / "samples").exists()


def test_python_api_loads_the_same_weights(trained):
    run_dir, out = trained
    from musicfw.engine.training import load_model

    model, tokenizer = musicfw.load_pretrained(out)
    ref, ref_tok = load_model(run_dir)
    assert tokenizer.vocab == ref_tok.vocab and not model.training
    for (k, v), (k2, v2) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_loading_runs_no_pickle(trained, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used on the load path")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    model, _ = musicfw.load_pretrained(trained[1])
    assert sum(p.numel() for p in model.parameters()) > 0


def test_tampered_weights_are_a_clear_error(trained, tmp_path):
    folder = _copy(trained[1], tmp_path)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    result = run_cli("generate", "--model", str(folder), "--n", "1", "--no-audio", cwd=tmp_path)
    assert result.returncode == 2
    assert "does not match the sha256" in _err(result) and "Traceback" not in result.stderr
    with pytest.raises(ConfigError, match="modified or is corrupt"):
        musicfw.load_pretrained(folder)


def test_unknown_format_version_is_a_clear_error(trained, tmp_path):
    folder = _copy(trained[1], tmp_path)
    doc = json.loads((folder / "config.json").read_text())
    doc["format_version"] = 99
    (folder / "config.json").write_text(json.dumps(doc))
    result = run_cli("generate", "--model", str(folder), "--n", "1", "--no-audio", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "format_version 99" in _err(result) and "newer musicfw" in _err(result)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format="something-else"), "not a musicfw model config"),
        (lambda d: d["model"].update(hidden_size=32), "do not fit the model"),
        (lambda d: d["weights"].update(file="../outside.safetensors"), "file name inside the folder"),
        (lambda d: d.pop("tokenizer"), "`tokenizer` section is missing"),
    ],
)
def test_broken_configs_are_clear_errors(trained, tmp_path, edit, message):
    folder = _copy(trained[1], tmp_path)
    doc = json.loads((folder / "config.json").read_text())
    edit(doc)
    (folder / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=message):
        musicfw.load_pretrained(folder)


def test_missing_or_invalid_config_json(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        musicfw.load_pretrained(tmp_path / "nope")
    with pytest.raises(ConfigError, match="has no config.json"):
        musicfw.load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        musicfw.load_pretrained(tmp_path)


def test_export_refuses_a_non_empty_folder(trained):
    run_dir, out = trained
    result = run_cli("export", "--run", str(run_dir), str(out))
    assert result.returncode == 2 and "not empty" in _err(result)


def test_markov_counts_survive_safetensors(tmp_path):
    """Non-tensor state (the Markov model's counts, via get_extra_state) travels as tensors
    plus a JSON skeleton in the safetensors metadata."""
    from musicfw.plugins.models.markov.model import MarkovModel

    rng = np.random.default_rng(0)
    for kind, data, size in (
        ("categorical", [rng.integers(0, 11, size=30) for _ in range(20)], 11),
        ("multihot", [(rng.random((20, 6)) < 0.4).astype(np.float32) for _ in range(20)], 6),
    ):
        model = MarkovModel(size, kind, order=3).fit_sequences(data)
        path = tmp_path / f"{kind}.safetensors"
        save_weights(model, path)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            assert EXTRA_KEY in f.metadata()
        clone = MarkovModel(size, kind, order=3)
        clone.load_state_dict(read_weights(path))
        batch = torch.tensor(np.stack([d[:8] for d in data[:4]]))
        mask = torch.ones(batch.shape[:2], dtype=torch.bool)
        assert np.allclose(model.token_nll(batch, mask), clone.token_nll(batch, mask))


class FakeHub:
    """An HfApi stand-in that 'uploads' into a local folder (no network)."""

    def __init__(self, root: Path):
        self.root, self.calls = root, []

    def create_repo(self, repo_id, repo_type, exist_ok, private):
        self.calls.append(("create_repo", repo_id, repo_type, exist_ok, private))
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
        self.calls.append(("upload_folder", repo_id, repo_type))
        shutil.copytree(folder_path, self.root / repo_id, dirs_exist_ok=True)


def test_push_uploads_a_folder_that_loads(trained, tmp_path):
    hub = FakeHub(tmp_path / "hub")
    url = push_folder(trained[1], "someone/tiny-lstm", api=hub)
    assert url == "https://huggingface.co/someone/tiny-lstm"
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder"]
    model, tokenizer = musicfw.load_pretrained(tmp_path / "hub" / "someone" / "tiny-lstm")
    assert tokenizer.name == "remi"


def test_export_push_through_the_cli(trained, tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from musicfw.cli import main

    hub = FakeHub(tmp_path / "hub")
    made = {}

    def fake_api(token=None):
        made["token"] = token
        return hub

    monkeypatch.setattr(huggingface_hub, "HfApi", fake_api)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test_token")
    code = main(["export", "--run", str(trained[0]), str(tmp_path / "out"), "--push", "me/m", "--private"])
    assert code == 0 and made["token"] == "hf_test_token"
    assert hub.calls[0] == ("create_repo", "me/m", "model", True, True)
    assert (tmp_path / "hub" / "me" / "m" / "model.safetensors").is_file()


def test_push_without_a_token_is_a_clear_error(trained, monkeypatch, capsys, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)

    def no_api(*a, **k):
        raise AssertionError("no token: no API object")

    monkeypatch.setattr(huggingface_hub, "HfApi", no_api)
    from musicfw.cli import main

    code = main(["export", "--run", str(trained[0]), str(tmp_path / "out"), "--push", "me/m"])
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no Hugging Face token" in err and "HF_TOKEN" in err
    assert (tmp_path / "out" / "model.safetensors").is_file()  # the export itself is kept


def test_push_without_huggingface_hub_is_a_clear_error(trained, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    with pytest.raises(ConfigError, match="pip install huggingface_hub"):
        push_folder(trained[1], "me/m")


def test_hub_paths_download_then_load(trained, tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = []

    def fake_download(repo_id, revision, repo_type, allow_patterns):
        calls.append((repo_id, revision, repo_type))
        assert "model.safetensors" in allow_patterns and "config.json" in allow_patterns
        return str(trained[1])  # the 'cache folder' the Hub client would return

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    model, tokenizer = musicfw.load_pretrained("hf:someone/tiny-lstm@v1")
    assert calls == [("someone/tiny-lstm", "v1", "model")] and tokenizer.name == "remi"
    with pytest.raises(ConfigError, match="hf:OWNER/NAME"):
        musicfw.load_pretrained("hf:no-slash")

    def offline(**kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ConfigError, match="could not download it.*no network"):
        musicfw.load_pretrained("hf:someone/tiny-lstm")


@pytest.mark.slow
def test_counting_markov_model_exports_and_generates_the_same(tmp_path):
    overrides = [f"output_dir={tmp_path / 'runs'}", f"data.path={TEST_MIDI / 'one_track'}", "data.name=midi_folder",
                 "generate.n=2", "generate.max_tokens=40", "generate.render_audio=false",
                 "evaluate.enabled=false", "logger.name=none"]
    result = run_cli("run", "examples/markov_baseline.yaml", *overrides, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_cli("export", "--run", str(run_dir), str(tmp_path / "m")).returncode == 0
    a = run_cli("generate", "--run", str(run_dir), "--seed", "3", "--out", str(tmp_path / "a"), "--no-audio")
    shutil.rmtree(run_dir)
    b = run_cli("generate", "--model", str(tmp_path / "m"), "--seed", "3", "--out", str(tmp_path / "b"), "--no-audio")
    assert a.returncode == 0 and b.returncode == 0, (a.stderr + b.stderr)[-3000:]
    for name in ("sample_000.mid", "sample_001.mid"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
