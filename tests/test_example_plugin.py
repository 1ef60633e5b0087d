"""The third-party example package under examples/plugin_package, installed for real."""

from __future__ import annotations

import json
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
    assert {"name": "min_p", "type": "float", "default": 0.05, "help": "relative cut-off in (0, 1]"} in sampler["config"]

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
    assert len(notes["pitch"]) > 0 and set(np.diff(notes["time"])) <= {120}  # the plugin's decoding
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["likelihood"]["nll"]["nll_per_token"] > 0
