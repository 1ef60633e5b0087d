"""The pretrained models shipped in ``models/`` (the distribution musicfw-models) and named
loading (musicfw/engine/zoo.py): every shipped model loads by name, its files match their sha256,
and its check batch's NLL equals the value its card records; unknown names, damaged files and
an ``init_from`` with another tokenizer are refused.

scripts/test.sh installs ``./models`` (as the README's set-up command does)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from conftest import REPO
from musicfw.core.errors import ConfigError
from musicfw.engine import finetune, zoo

SOURCE = REPO / "models" / "musicfw_models"
MANIFEST = json.loads((SOURCE / zoo.MANIFEST).read_text())
NAMES = sorted(MANIFEST["models"])
#: the issue's budget for all shipped weights together
MAX_BYTES = 30 * 1000 * 1000


def test_the_repository_zoo_is_installed_and_within_its_size_budget():
    installed = zoo.shipped(refresh=True)
    missing = [n for n in NAMES if n not in installed]
    assert not missing, f"pretrained models {missing} are not installed: pip install ./models (scripts/test.sh does)"
    assert {"chorales-lstm", "jsb-nade"} <= set(NAMES)
    total = sum(p.stat().st_size for n in NAMES for p in (SOURCE / n).iterdir())
    assert total <= MAX_BYTES, f"the shipped models take {total:,} bytes, more than {MAX_BYTES:,}"
    for name in NAMES:  # the installed copy is this repository's
        assert installed[name].info["files"] == MANIFEST["models"][name]["files"]


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_model_loads_by_name_and_reproduces_its_card(name):
    entry = zoo.shipped()[name]
    zoo.verify(entry)  # every file against its sha256
    info = entry.info
    value = finetune.check_value(name)
    assert value == pytest.approx(info["check"]["nll_per_token"], rel=1e-6, abs=1e-6)
    card = (entry.path / "README.md").read_text()
    assert repr(info["check"]["nll_per_token"]) in card
    for needle in (info["data"]["sha256"], info["commands"]["train"], f"Seed {info['seed']}", "## Originality", "## Licence"):
        assert needle in card, needle


@pytest.mark.parametrize("name", NAMES)
def test_each_card_has_what_a_model_card_reader_expects(name):
    """Hugging Face model cards and Magenta's checkpoints: intended use, limitations, training
    data with licence and sha256, evaluation naming the split and its leakage, the originality
    audit, the exact command (with its thread count) and the library versions."""
    info = MANIFEST["models"][name]
    card = (SOURCE / name / "README.md").read_text()
    assert card.startswith(f"---\nlicense: {info['license']}\n")  # the Hub's front matter
    for section in ("## Intended use", "## Limitations", "## Licence", "## Reproduce", "## Evaluation",
                    "## Held-out metrics", "## Originality (memorisation audit)", "## Precision", "## Data", "## Training"):
        assert card.count(section + "\n") == 1, (name, section)
    assert info["intended_use"] in card and info["limitations"] in card and info["data_license"] in card
    for file, digest in info["data"]["files"].items():
        assert f"`{file}` {digest}" in card
    ev = info["evaluation"]
    assert ev["split_by"] in {"tune", "piece", "published"} and ev["test_pieces"] > 0
    assert f"{ev['test_pieces']} test piece" in card and f"of which {ev['test_pieces_sharing_run']} share" in card
    if ev["split_by"] == "tune":
        assert "split by tune" in card
    assert info["commands"]["train"].startswith(f"OMP_NUM_THREADS={info['threads']} ")
    for lib in ("python", "musicfw", "torch", "pytorch-lightning", "numpy", "symusic"):
        assert f"{lib} {info['versions'][lib]}" in card, lib
    for key in ("generated", "heldout"):
        assert info["originality"][key]["pieces"] > 0


def test_musicfw_models_shows_size_task_metrics_and_licence(capsys):
    from musicfw.cli import main

    zoo.shipped(refresh=True)
    assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert lines["name"].split() == ["name", "task", "size", "held-out", "metrics", "licence", "from"]
    for name in NAMES:
        info = MANIFEST["models"][name]
        row = lines[name]
        assert info["task"] in row and f" {info['license']} " in row and " MB " in row
        for key in info["metrics"]:
            assert f"{key} " in row


def _fake_zoo(tmp_path: Path, monkeypatch, names=("chorales-lstm",)) -> Path:
    root = tmp_path / "zoo"
    root.mkdir()
    for name in names:
        shutil.copytree(SOURCE / name, root / name)
    doc = dict(MANIFEST, models={n: MANIFEST["models"][n] for n in names})
    (root / zoo.MANIFEST).write_text(json.dumps(doc))

    class EP:
        name, value = "fake", "fake:root"
        dist = type("D", (), {"name": "fake-models", "version": "1.0"})()

        def load(self):
            return lambda: root

    monkeypatch.setattr(zoo, "_entry_points", lambda: [EP()])
    zoo.shipped(refresh=True)
    return root


def test_unknown_names_list_the_installed_ones_and_an_existing_path_wins(tmp_path, monkeypatch):
    import musicfw

    root = _fake_zoo(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="Unknown model 'chorales-lstn'.*Installed pretrained models: chorales-lstm"):
        musicfw.load_pretrained("chorales-lstn")
    assert zoo.resolve("chorales-lstm") == root / "chorales-lstm"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chorales-lstm").mkdir()
    assert zoo.resolve("chorales-lstm") == Path("chorales-lstm")  # a path that exists wins


def test_a_damaged_shipped_file_is_refused_naming_it_and_the_reinstall_command(tmp_path, monkeypatch):
    root = _fake_zoo(tmp_path, monkeypatch)
    weights = root / "chorales-lstm" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"damaged: .*model.safetensors does not match .*pip install --force-reinstall --no-deps fake-models"):
        zoo.resolve("chorales-lstm")
    shutil.copy2(SOURCE / "chorales-lstm" / "model.safetensors", weights)
    zoo.resolve("chorales-lstm")  # intact again
    (root / "chorales-lstm" / "vocab.json").unlink()
    with pytest.raises(ConfigError, match="vocab.json is missing"):
        zoo.resolve("chorales-lstm")


def _experiment(tmp_path: Path, **tokenizer) -> dict:
    return {
        "name": "ft", "seed": 0, "output_dir": str(tmp_path / "runs"), "init_from": "chorales-lstm",
        "data": {"name": "bach_chorales"}, "tokenizer": {"name": "remi", **tokenizer},
        "model": {"name": "lstm", "hidden_size": 256, "num_layers": 1, "embed_dim": 128, "dropout": 0.1},
        "logger": {"name": "none"},
    }


def test_the_commands_refuse_an_unknown_or_damaged_model_without_a_traceback(tmp_path, monkeypatch, capsys):
    from musicfw.cli import main

    root = _fake_zoo(tmp_path, monkeypatch)
    assert main(["generate", "--model", "chorales-lstn", "--n", "1", "--out", str(tmp_path / "a")]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the CLI wraps its messages
    assert "Unknown model 'chorales-lstn'" in err and "Installed pretrained models: chorales-lstm" in err
    assert "Traceback" not in err
    weights = root / "chorales-lstm" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    assert main(["generate", "--model", "chorales-lstm", "--n", "1", "--out", str(tmp_path / "b")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{weights} does not match" in err and "pip install --force-reinstall --no-deps fake-models" in err
    assert "Traceback" not in err and not (tmp_path / "b").exists()


def test_init_from_an_unknown_or_damaged_name_is_refused_before_a_run_folder_exists(tmp_path, monkeypatch):
    import musicfw

    root = _fake_zoo(tmp_path, monkeypatch)
    experiment = dict(_experiment(tmp_path, use_chords=True, chord_quarters=1), init_from="chorales-lstn")
    with pytest.raises(ConfigError, match="chorales-lstn.*Installed pretrained models: chorales-lstm"):
        musicfw.run(experiment)
    assert not (tmp_path / "runs").exists()
    (root / "chorales-lstm" / "tokenizer.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"damaged: .*tokenizer.json does not match.*--force-reinstall"):
        musicfw.run(dict(experiment, init_from="chorales-lstm"))
    assert not (tmp_path / "runs").exists()


def test_init_from_a_name_with_another_tokenizer_is_refused_before_a_run_folder_exists(tmp_path):
    import musicfw

    zoo.shipped(refresh=True)
    with pytest.raises(ConfigError, match=r"pretrained model 'chorales-lstm' was trained with the tokenizer 'remi' with other "
                       r"chord_quarters, use_chords.*tokenizer: \{\"name\": \"remi\", \"chord_quarters\": 1, \"use_chords\": true\}"):
        musicfw.run(_experiment(tmp_path))
    assert not (tmp_path / "runs").exists()


def test_init_from_a_name_starts_from_the_shipped_weights(tmp_path):
    import musicfw
    import torch

    from musicfw.engine.assemble import build_experiment

    zoo.shipped(refresh=True)
    config = musicfw.load_config(_experiment(tmp_path, use_chords=True, chord_quarters=1))
    built = build_experiment(config, musicfw.get_registries())
    shipped, _ = musicfw.load_pretrained("chorales-lstm")
    assert built.init_from == zoo.shipped()["chorales-lstm"].path / "model.safetensors"
    for key, value in shipped.state_dict().items():
        assert torch.equal(built.model.state_dict()[key], value), key


def test_the_commands_take_a_model_name(tmp_path, capsys):
    from musicfw.cli import main

    zoo.shipped(refresh=True)
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    for name in NAMES:
        assert name in listed
    out = tmp_path / "gen"
    assert main(["generate", "--model", "chorales-lstm", "--n", "1", "--max-bars", "2", "--seed", "0",
                 "--out", str(out), "--chords", "C G | C", "--no-audio"]) == 0
    assert len(list(out.glob("*.mid"))) == 1
    if "drums-2bar" in NAMES:
        vae = tmp_path / "vae"
        assert main(["sample", "--model", "drums-2bar", "--n", "1", "--out", str(vae)]) == 0
        assert list(vae.glob("*.mid"))
    assert main(["generate", "--model", "no-such-model", "--n", "1"]) == 2
    assert "Unknown model 'no-such-model'" in capsys.readouterr().err


def test_the_readme_opens_with_a_shipped_model_and_ci_installs_the_models():
    readme = (REPO / "README.md").read_text()
    first = readme.split("\n## ", 2)[1]
    assert first.startswith("Music in seconds")
    assert "pip install . ./models" in first and "musicfw generate --model chorales-lstm" in first
    assert "chorales-lstm" in NAMES
    assert '-e ".[test]" ./models' in (REPO / "scripts" / "test.sh").read_text()
    table = readme.split("<!-- zoo table -->", 1)[1].split("<!-- /zoo table -->", 1)[0]
    for name in NAMES:  # the README lists what is shipped (python scripts/train_zoo.py --readme-table)
        assert f"`{name}`" in table


def _train_zoo():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_zoo", REPO / "scripts" / "train_zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_shipped_card_is_what_train_zoo_writes():
    """The cards come from scripts/train_zoo.py's packaging path (``--recard`` for a shipped
    model), not from hand edits: rendering each from its config.json and zoo.json entry gives
    the shipped README.md byte for byte."""
    train_zoo = _train_zoo()
    for name in NAMES:
        info = {k: v for k, v in MANIFEST["models"][name].items() if k != "files"}
        doc = json.loads((SOURCE / name / "config.json").read_text())
        assert train_zoo.card(name, doc, info) == (SOURCE / name / "README.md").read_text(), name
        assert info["commands"]["train"] == train_zoo.train_command(name)


def test_train_zoo_verify_compares_every_number_and_every_weight_with_the_card(tmp_path):
    """``train_zoo.py NAME --verify`` packages a retrained model into a scratch zoo and compares:
    identical files agree; a number off in its last digit and one weight off by one ulp do not."""
    import torch
    from safetensors.torch import load_file, save_file

    train_zoo = _train_zoo()
    name = "jsb-nade"
    scratch = tmp_path / "scratch"
    shutil.copytree(SOURCE / name, scratch / name)
    manifest = json.loads(json.dumps(MANIFEST))
    (scratch / zoo.MANIFEST).write_text(json.dumps(manifest))
    report = train_zoo.compare(name, scratch)
    assert report["all_same"] and report["weights"]["differing"] == [] and report["weights"]["same_sha256"]
    numbers = {r["number"] for r in report["rows"]}
    assert {"metrics.test_nll", "precision.test_nll_per_token.float32", "check.nll_per_token",
            "originality.generated.longest_run_max", "config.json likelihood.nll.nll_per_token"} <= numbers

    precision = manifest["models"][name]["precision"]["test_nll_per_token"]
    precision["float32"] = math.nextafter(precision["float32"], math.inf)  # the last digit
    (scratch / zoo.MANIFEST).write_text(json.dumps(manifest))
    weights = load_file(str(scratch / name / "model.safetensors"))
    key = sorted(weights)[0]
    assert weights[key].dtype == torch.float16  # shipped in fp16: one ulp is one step of its bits
    weights[key].view(-1).view(torch.int16)[0] += 1
    save_file(weights, str(scratch / name / "model.safetensors"))
    report = train_zoo.compare(name, scratch)
    assert not report["all_same"]
    assert [r["number"] for r in report["rows"] if not r["same"]] == ["precision.test_nll_per_token.float32"]
    assert report["weights"]["differing"] == [key]
