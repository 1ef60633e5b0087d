"""Build once: one validation pass builds the tokenizer, sampler and model of a run; the
checkpoint generation and evaluation use is loaded into that same model; the CLI loads the
plugins once per process and hands them to every verb, core's and a plugin's alike."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import numpy as np
import pytest
import symusic

from conftest import run_cli

COUNTING_PLUGIN = """
import musicfw
from musicfw.plugins.models.markov import Markov

BUILT = []


class CountingMarkov(Markov):
    name = "counting_markov"

    @classmethod
    def from_config(cls, config, tokenizer=None, **context):
        import torch

        model = super().from_config(config, tokenizer=tokenizer, **context)
        if torch.get_default_device().type != "meta":  # load_pretrained's shape probe allocates nothing
            BUILT.append(id(model))
        return model


@musicfw.hookimpl
def musicfw_register_models(registry):
    registry.add(CountingMarkov)
"""


def _distribution(root: Path, dist: str, module: str, source: str) -> None:
    """A minimal installed distribution (dist-info with a ``musicfw`` entry point)."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[musicfw]\n{module} = {module}\n")


def _corpus(folder: Path, n: int = 16) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        score = symusic.Score(480)
        track = symusic.Track(name="melody")
        for beat in range(16):
            track.notes.append(symusic.Note(beat * 480, 480, int(60 + rng.integers(-5, 6)), 80))
        score.tracks.append(track)
        score.dump_midi(str(folder / f"piece_{i:02d}.mid"))
    return folder


def _experiment(tmp_path: Path, model: str) -> Path:
    corpus = _corpus(tmp_path / "corpus")
    path = tmp_path / "exp.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            name: once
            output_dir: {tmp_path / 'runs'}
            data: {{name: midi_folder, path: {corpus}, train_fraction: 0.6, valid_fraction: 0.2}}
            tokenizer: {{name: remi}}
            model: {model}
            sampler: {{name: top_k, k: 5}}
            generate: {{n: 2, max_tokens: 48, render_audio: false}}
            evaluate: {{max_reference: 3}}
            logger: {{name: none}}
            """
        )
    )
    return path


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    _distribution(root, "counting-plugin", "counting_plugin", COUNTING_PLUGIN)
    _distribution(root, "broken-plugin", "broken_plugin", "raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("MUSICFW_CACHE_DIR", str(tmp_path / "cache"))
    return root


def test_a_cli_process_loads_the_plugins_once_and_a_run_builds_its_model_once(tmp_path, plugin_dir, monkeypatch, capsys):
    import musicfw.core.plugins as core_plugins
    import musicfw.engine.generation as generation
    import musicfw.engine.training as training
    from musicfw.cli import main

    managers = []
    real_manager = core_plugins.get_plugin_manager

    def counting_manager(*args, **kwargs):
        managers.append(1)
        return real_manager(*args, **kwargs)

    monkeypatch.setattr(core_plugins, "get_plugin_manager", counting_manager)
    seen = {"fit": [], "generate": []}
    real_fit, real_generate = training.fit, generation.generate

    def fit(model, *args, **kwargs):
        seen["fit"].append(id(model))
        return real_fit(model, *args, **kwargs)

    def generate(model, *args, **kwargs):
        seen["generate"].append(id(model))
        return real_generate(model, *args, **kwargs)

    monkeypatch.setattr(training, "fit", fit)
    monkeypatch.setattr(generation, "generate", generate)

    exp = _experiment(tmp_path, "{name: counting_markov, order: 1}")
    with pytest.warns(core_plugins.PluginLoadWarning, match="boom at import"):
        assert main(["run", str(exp)]) == 0, capsys.readouterr().err
    import counting_plugin

    assert len(counting_plugin.BUILT) == 1  # validation, training, generation, evaluation: one model
    assert seen["fit"] == seen["generate"] == counting_plugin.BUILT  # trained, then loaded into, in place
    assert len(managers) == 1
    run_dir = next((tmp_path / "runs").iterdir())

    verbs = [
        ["generate", "--run", str(run_dir), "--n", "1", "--max-tokens", "16", "--seed", "1", "--no-audio"],
        ["evaluate", "--run", str(run_dir), "evaluate.max_reference=2"],
        ["export", "--run", str(run_dir), str(tmp_path / "exported")],
        ["generate", "--model", str(tmp_path / "exported"), "--n", "1", "--max-tokens", "16", "--seed", "1",
         "--no-audio", "--out", str(tmp_path / "from-export")],
        ["plugins"],
        ["data", "list"],
        ["data", "prepare", "midi_folder", f"path={tmp_path / 'corpus'}", "--tokenizer", "remi", "--quiet"],
        ["tokenize", "-t", "remi", str(tmp_path / "corpus" / "piece_00.mid"), "--limit", "4"],
        ["evaluate", "--generated", str(run_dir / "samples"), "--reference", str(tmp_path / "corpus")],
        ["config", "generate"],
    ]
    for argv in verbs:
        managers.clear()
        counting_plugin.BUILT.clear()
        with pytest.warns(core_plugins.PluginLoadWarning, match="boom at import"):
            assert main(argv) == 0, (argv, capsys.readouterr().err)
        assert len(managers) == 1, argv  # the plugins of one invocation are loaded once
        builds = {"generate": 1, "evaluate": 1 if "--run" in argv else 0, "export": 1}.get(argv[0], 0)
        assert len(counting_plugin.BUILT) == builds, argv


def test_a_broken_plugin_is_reported_once_per_command(tmp_path, plugin_dir):
    env = {"PYTHONPATH": str(plugin_dir), "MUSICFW_CACHE_DIR": str(tmp_path / "cache")}
    listing = run_cli("plugins", env=env)
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert listing.stderr.count("boom at import") == 1, listing.stderr
    assert "failed to load: broken_plugin" in listing.stdout
    exp = _experiment(tmp_path, "{name: markov, order: 1}")
    run = run_cli("run", str(exp), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("boom at import") == 1, run.stderr


def test_the_run_starts_from_the_weights_the_seed_gave_before(tmp_path, monkeypatch):
    """The model is built in the validation pass, right after seeding, where it used to be built
    after the data stage: the same weights, because the data stage draws nothing from the
    global generators (which this test also checks)."""
    import torch

    from musicfw.core.build import build_from_section
    from musicfw.engine.assemble import seed_everything
    from musicfw.engine.config import load_config
    from musicfw.engine.data import build_datamodule
    from musicfw.engine.runner import run_experiment
    from musicfw.engine.training import load_checkpoint

    monkeypatch.setenv("MUSICFW_CACHE_DIR", str(tmp_path / "cache"))
    exp = _experiment(tmp_path, "{name: lstm, hidden_size: 16, num_layers: 1, embed_dim: 8}")
    config = load_config(exp, overrides=["train.max_steps=0", "seed=7", "evaluate.enabled=false"])
    result = run_experiment(config)  # max_steps 0: the checkpoints hold the starting weights

    seed_everything(7)  # the order before build-once: seed, data stage, then the model
    tokenizer = build_from_section("tokenizers", config.tokenizer, key="tokenizer")
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    build_datamodule(config.data, tokenizer, train=config.train, seed=7, progress=False)
    assert torch.equal(states[0], torch.get_rng_state())
    assert np.array_equal(states[1], np.random.get_state()[1]) and states[2] == random.getstate()
    before = build_from_section("models", config.model, key="model", tokenizer=tokenizer)

    saved = build_from_section("models", config.model, key="model", tokenizer=tokenizer)
    load_checkpoint(saved, result.run_dir / "checkpoints" / "best.ckpt")
    for (name, a), (_, b) in zip(before.state_dict().items(), saved.state_dict().items()):
        assert torch.equal(a, b), name


def test_the_quickstart_data_stage_draws_nothing_from_the_global_generators(tmp_path, monkeypatch):
    """What build-once relies on for the README's numbers: seeding, then building the model,
    then the data stage gives the weights and draws of seeding, the data stage, the model."""
    import torch

    from musicfw.core.build import build_from_section
    from musicfw.engine.config import load_config
    from musicfw.engine.data import build_datamodule

    monkeypatch.setenv("MUSICFW_CACHE_DIR", str(tmp_path / "cache"))
    config = load_config(Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml")
    tokenizer = build_from_section("tokenizers", config.tokenizer, key="tokenizer")
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    dm = build_datamodule(config.data, tokenizer, train=config.train, augment=config.get("augment"),
                          seed=int(config.seed), progress=False)
    dm.summary()
    assert torch.equal(states[0], torch.get_rng_state())
    assert np.array_equal(states[1], np.random.get_state()[1]) and states[2] == random.getstate()
