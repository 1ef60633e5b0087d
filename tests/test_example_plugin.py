"""The third-party example package under examples/plugin_package, installed for real."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO, run_cli

PACKAGE = REPO / "examples" / "plugin_package"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip-install the example package into a throwaway target dir (not the test env)."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("src")
    # build from a copy so no build/ or egg-info lands in the repository
    subprocess.run(["cp", "-r", str(PACKAGE), str(build / "pkg")], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(build / "pkg")],
        check=True,
    )
    return {"PYTHONPATH": str(target)}


def test_plugins_lists_it_with_its_distribution(installed):
    result = run_cli("plugins", "--json", env=installed)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    tok = {p["name"]: p for p in data["tokenizers"]}["pitch_sequence"]
    sampler = {p["name"]: p for p in data["samplers"]}["min_p"]
    assert tok["provider"] == sampler["provider"] == "musicfw-example-plugin"
    assert {
        "name": "min_p", "type": "float", "default": 0.05, "help": "relative cut-off",
        "choices": None, "bounds": {"gt": 0, "le": 1}, "allowed": "in (0, 1]",
    } in sampler["config"]

    text = run_cli("plugins", env=installed).stdout
    assert "pitch_sequence  [musicfw-example-plugin]" in text


def test_not_visible_without_install():
    names = json.loads(run_cli("plugins", "--json").stdout)
    assert "min_p" not in [p["name"] for p in names["samplers"]]


def _write_melodies(folder, n=8, seed=0):
    """A few small single-track MIDI files (random walks), so the run needs no corpus."""
    import numpy as np
    import symusic

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pitches = 60 + np.cumsum(rng.integers(-2, 3, size=48)).clip(-12, 12)
        score = symusic.Score(480)
        track = symusic.Track("melody")
        track.notes = symusic.Note.from_numpy(
            time=(np.arange(48) * 240).astype(np.int32),
            duration=np.full(48, 240, dtype=np.int32),
            pitch=pitches.astype(np.int8),
            velocity=np.full(48, 80, dtype=np.int8),
        )
        score.tracks.append(track)
        score.dump_midi(str(folder / f"tune_{i}.mid"))


def test_an_experiment_uses_it_by_name(installed, tmp_path):
    """`musicfw run` trains, samples and evaluates with the plugin's tokenizer and sampler."""
    _write_melodies(tmp_path / "midi")
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        textwrap.dedent(
            f"""\
            name: plugin-demo
            output_dir: {tmp_path / 'runs'}
            data: {{name: midi_folder, path: {tmp_path / 'midi'}}}
            tokenizer: {{name: pitch_sequence, note_ticks: 120}}
            model: {{name: markov, order: 2}}
            sampler:
              - {{name: temperature, temperature: 0.9}}
              - {{name: min_p, min_p: 0.1}}
            generate: {{n: 2, max_tokens: 24, render_audio: false}}
            evaluate: {{metrics: [nll]}}
            logger: {{name: none}}
            """
        )
    )
    result = run_cli("run", str(exp), env=installed)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = next((tmp_path / "runs").iterdir())
    saved = (run_dir / "config.yaml").read_text()
    assert "name: pitch_sequence" in saved and "name: min_p" in saved
    assert json.loads((run_dir / "tokenizer.json").read_text())["name"] == "pitch_sequence"
    mids = sorted((run_dir / "samples").glob("*.mid"))
    assert len(mids) == 2
    import symusic

    notes = symusic.Score(str(mids[0])).tracks[0].notes.numpy()
    # the plugin's decoding: evenly spaced notes on a grid of note_ticks
    assert len(notes["pitch"]) > 0 and set(np.diff(notes["time"]) % 120) == {0}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["likelihood"]["nll"]["nll_per_token"] > 0


# --- a model, a history sampler and a command from outside the repository -------------------


def test_plugins_lists_every_kind_and_the_command(installed):
    data = json.loads(run_cli("plugins", "--json", env=installed).stdout)
    provider = "musicfw-example-plugin"
    for kind, name in (
        ("models", "bigram"), ("samplers", "no_repeat_ngram"), ("tokenizers", "pitch_sequence"),
        ("loggers", "jsonl"), ("exporters", "npz"),
    ):
        assert {p["name"]: p["provider"] for p in data[kind]}[name] == provider
    assert {c["name"]: c["provider"] for c in data["commands"]}["pitches"] == provider
    assert "pitches" in run_cli("--help", env=installed).stdout


def test_its_command_runs_like_a_built_in(installed, tmp_path):
    _write_melodies(tmp_path, n=1)
    result = run_cli("pitches", str(tmp_path / "tune_0.mid"), "--notes-per-bar", "4", env=installed)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) >= 2 and all(line.startswith("Bar Pitch_") for line in lines)
    assert max(len(line.split()) for line in lines) <= 5  # Bar + at most 4 notes per bar
    broken = tmp_path / "broken.mid"
    broken.write_bytes(b"MThd not really")
    bad = run_cli("pitches", str(broken), env=installed)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "cannot read" in bad.stderr


def _experiment(tmp_path, model="{name: bigram}", logger="{name: none}"):
    _write_melodies(tmp_path / "midi", n=10)
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        textwrap.dedent(
            f"""\
            name: plugin-model
            output_dir: {tmp_path / 'runs'}
            data: {{name: midi_folder, path: {tmp_path / 'midi'}}}
            tokenizer: {{name: pitch_sequence, note_ticks: 120, notes_per_bar: 8}}
            model: {model}
            sampler:
              - {{name: no_repeat_ngram, n: 3}}
              - {{name: temperature, temperature: 0.9}}
            train: {{max_steps: 30, batch_size: 4, seq_len: 32, lr: 0.5}}
            generate: {{n: 2, max_tokens: 60, max_bars: 3, render_audio: false}}
            evaluate: {{metrics: [nll]}}
            logger: {logger}
            """
        )
    )
    return exp


def test_its_model_trains_generates_and_evaluates_through_run(installed, tmp_path):
    """...and the run uses the package's logger, report section, lifecycle hooks and export format."""
    logger = "{name: jsonl, file: curves.jsonl, log_every_n_steps: 5}"
    result = run_cli("run", str(_experiment(tmp_path, logger=logger)), env=installed)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["global_step"] == 30  # trained by gradient descent through Lightning
    assert metrics["training"]["model"] == "BigramModel"
    # better than uniform over its 129 ids after 30 SGD steps (the model's own optimizer)
    assert metrics["likelihood"]["nll"]["nll_per_token"] < math.log(129)
    import symusic

    for mid in sorted((run_dir / "samples").glob("*.mid")):
        assert symusic.Score(str(mid)).end() <= 3 * 8 * 120  # max_bars through the plugin's clock
    again = run_cli("generate", "--run", str(run_dir), "--n", "2", "--seed", "3", env=installed)
    assert again.returncode == 0, again.stderr[-2000:]

    # the logger chosen by `logger: {name: jsonl}` received every logged row, as history.jsonl did
    from musicfw.engine.loggers import read_history

    rows = [json.loads(line) for line in (run_dir / "curves.jsonl").read_text().splitlines()]
    assert rows[-1] == {"finished": "success"}
    theirs = [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]
    ours = [(r["step"], r["train/loss"]) for r in read_history(run_dir) if "train/loss" in r]
    assert len(theirs) >= 5 and theirs == [(s, pytest.approx(v)) for s, v in ours]
    assert any("val/nll" in r for r in rows) and any("final/test_nll" in r for r in rows)

    # its report section is in report.html like a built-in one: heading, navigation, "In short"
    page = (run_dir / "report.html").read_text()
    assert '<h2 id="pitch-range">Pitch range (example plugin)</h2>' in page
    assert '<a href="#pitch-range">pitch range</a>' in page
    assert "<li>The samples span MIDI pitches" in page
    assert page.index('id="distributions"') < page.index('id="pitch-range"') < page.index('id="samples"')

    # its lifecycle hooks saw every stage and its run-finished hook left an artifact and a number
    lifecycle = (run_dir / "example-lifecycle.txt").read_text().splitlines()
    assert lifecycle == ["run_started plugin-model"] + [
        f"stage_finished {s}" for s in ("data", "train", "generate", "evaluate", "report")
    ] + ["run_finished"]
    summary = json.loads((run_dir / "example-summary.json").read_text())
    assert summary["samples"] == 2 and "likelihood" in summary["metrics_keys"]
    assert json.loads((run_dir / "metrics.json").read_text())["example"] == {"n_samples": 2}

    # and its export format, picked by --format like the built-in safetensors one
    out = tmp_path / "exported"
    exported = run_cli("export", "--run", str(run_dir), "--format", "npz", "--param", "compressed=false", str(out), env=installed)
    assert exported.returncode == 0, exported.stderr[-2000:]
    with np.load(out / "weights.npz", allow_pickle=False) as weights:
        assert len(weights.files) > 0
    assert json.loads((out / "export.json").read_text())["model"] == "bigram"
    bad = run_cli("export", "--run", str(run_dir), "--format", "onnx", str(tmp_path / "x"), env=installed)
    assert bad.returncode == 2 and "Unknown exporter 'onnx'" in bad.stderr and "npz, safetensors" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_built_in_models_blocked_and_the_third_party_one_used(installed, tmp_path):
    env = dict(installed, MUSICFW_BLOCK_PLUGINS="musicfw.plugins.models")
    data = json.loads(run_cli("plugins", "--json", env=env).stdout)
    assert [p["name"] for p in data["models"]] == ["bigram"]
    assert "sample" not in [c["name"] for c in data["commands"]]  # MusicVAE's verbs went with it
    result = run_cli("run", str(_experiment(tmp_path)), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lstm = run_cli("run", str(_experiment(tmp_path / "b", model="{name: lstm}")), env=env)
    assert lstm.returncode == 2 and "Unknown model 'lstm'" in lstm.stderr and "bigram" in lstm.stderr


def test_its_grammar_leaves_no_dropped_token_and_its_sampler_sees_the_history():
    sys.path.insert(0, str(PACKAGE))
    try:
        import musicfw_example_plugin as plugin
    finally:
        sys.path.remove(str(PACKAGE))
    import musicfw
    from musicfw.engine.generation import build_sampler_chain, generate
    from musicfw.core.plugins import get_plugin_manager, load_registries

    regs = load_registries(get_plugin_manager(autoload=False, extra_plugins=[plugin]))
    tok = musicfw.build("tokenizer", "pitch_sequence", registries=regs, notes_per_bar=4)
    model = musicfw.build("model", "bigram", registries=regs, context={"tokenizer": tok})
    chain = build_sampler_chain([{"name": "no_repeat_ngram", "n": 2}, {"name": "temperature"}], registries=regs)
    free = generate(model, tok, chain, n=4, max_tokens=100, constraints=False, seed=0)
    constrained = generate(model, tok, chain, n=4, max_tokens=100, constraints=True, seed=0)
    assert free.stats["invalid_rate"] > 0.5  # an untrained model puts pitches where decode drops them
    assert constrained.stats["invalid_rate"] == 0.0 and constrained.stats["constrained"]
    for seq in constrained.tokens:
        # no bigram twice (the sampler read the history), except a Bar the grammar forced
        # after a full bar: the sampler never forbids the last token left
        pairs = [p for p in zip(seq[:-1].tolist(), seq[1:].tolist()) if p[1] != 128]
        assert len(pairs) > 50 and len(pairs) == len(set(pairs))


def test_an_exported_model_records_its_plugins_and_names_the_package_to_install(installed, tmp_path):
    result = run_cli("run", str(_experiment(tmp_path)), env=installed)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = next((tmp_path / "runs").iterdir())
    out = tmp_path / "exported"
    exported = run_cli("export", "--run", str(run_dir), str(out), env=installed)
    assert exported.returncode == 0, exported.stderr[-3000:]
    plugins = json.loads((out / "config.json").read_text())["plugins"]
    ours = {"distribution": "musicfw-example-plugin", "version": "0.1.0"}
    assert plugins["tokenizer"] == [{"name": "pitch_sequence", **ours}]
    assert plugins["model"] == [{"name": "bigram", **ours}]
    assert plugins["sampler"] == [{"name": "no_repeat_ngram", **ours},
                                  {"name": "temperature", "distribution": "musicfw", "version": plugins["dataset"][0]["version"]}]
    assert plugins["dataset"][0]["name"] == "midi_folder" and plugins["dataset"][0]["distribution"] == "musicfw"
    assert [m["name"] for m in plugins["metrics"]] == ["nll"]
    assert "pip install musicfw 'musicfw-example-plugin==0.1.0'" in (out / "README.md").read_text()

    ok = run_cli("generate", "--model", str(out), "--n", "1", "--no-audio", "--out", str(tmp_path / "s"), env=installed)
    assert ok.returncode == 0, ok.stderr[-2000:]
    # without the package: one paragraph naming the distribution and version to install
    missing = run_cli("generate", "--model", str(out), "--n", "1", "--no-audio", "--out", str(tmp_path / "t"))
    message = " ".join(missing.stderr.split())
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr[-2000:]
    assert "pip install 'musicfw-example-plugin==0.1.0'" in message
    assert "'pitch_sequence'" in message and "'bigram'" in message and "'no_repeat_ngram'" in message
