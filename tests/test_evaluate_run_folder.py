"""``musicfw evaluate --run RUN_DIR``: the evaluation stage rerun on a real (tiny) run folder
built with the real data module, tokenizer and a Markov model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import symusic

import musicfw
from musicfw.engine.rundir import RunFolder

from conftest import run_cli


def chorale_like(rng, bars=4, tpq=480):
    score = symusic.Score(tpq)
    for voice, base in enumerate((72, 65, 57, 48)):
        track = symusic.Track(name=f"voice{voice}")
        for beat in range(4 * bars):
            track.notes.append(symusic.Note(beat * tpq, tpq, int(base + rng.integers(-3, 4)), 80))
        score.tracks.append(track)
    return score


@pytest.fixture
def trained_run(tmp_path):
    from musicfw.api import build_from_section
    from musicfw.engine.data import build_datamodule
    from musicfw.engine.training import fit

    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(20):
        chorale_like(rng).dump_midi(str(corpus / f"piece_{i:02d}.mid"))
    config = musicfw.load_config(
        {
            "name": "tiny",
            "output_dir": str(tmp_path / "runs"),
            "data": {"name": "midi_folder", "path": str(corpus), "train_fraction": 0.6, "valid_fraction": 0.2},
            "tokenizer": {"name": "remi"},
            "model": {"name": "markov", "order": 1},
            "logger": {"name": "none"},
            "evaluate": {"max_reference": 10},
        }
    )
    run = RunFolder.create(config.output_dir, config.name)
    run.save_config(config)
    tokenizer = build_from_section("tokenizers", config.tokenizer)
    tokenizer.save(run.tokenizer_path)
    datamodule = build_datamodule(config.data, tokenizer, train=config.train, seed=config.seed, run_dir=run.path, progress=False)
    model = build_from_section("models", config.model, tokenizer=tokenizer)
    fit(model, datamodule, config.train, run.path, logger=config.logger)
    run.samples.mkdir(exist_ok=True)
    for i in range(3):
        chorale_like(rng, bars=2).dump_midi(str(run.samples / f"sample_{i:03d}.mid"))
    (run.path / "metrics.json").write_text(json.dumps({"training": {"fit_seconds": 0.5}}))
    return run.path


def test_evaluate_run_folder_cli(trained_run):
    proc = run_cli("evaluate", "--run", str(trained_run), "evaluate.max_reference=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "perplexity" in proc.stdout and "report.html" in proc.stdout
    metrics = json.loads((trained_run / "metrics.json").read_text())
    nll = metrics["likelihood"]["nll"]
    assert nll["n_targets"] > 0 and nll["n_notes"] > 0 and nll["seconds"] > 0
    assert nll["perplexity"] == pytest.approx(np.exp(nll["nll_per_token"]))
    assert nll["nll_per_note"] > nll["nll_per_token"]  # REMI spends several tokens per note
    assert metrics["training"] == {"fit_seconds": 0.5}  # kept from the previous evaluation
    assert sorted(metrics["features"]["generated"]) == [f"sample_{i:03d}.mid" for i in range(3)]
    assert metrics["sets"]["reference"]["n_pieces"] == 3
    assert metrics["comparison"]["features"]["pitch_class_histogram"]["oa_generated"] is not None
    page = (trained_run / "report.html").read_text()
    assert "nll_per_note" in page and "sample_002.mid" in page


def test_evaluate_needs_folders_or_a_run(tmp_path):
    proc = run_cli("evaluate", "--generated", str(tmp_path))
    assert proc.returncode == 2 and "--reference" in proc.stderr
    proc = run_cli("evaluate", "--run", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_evaluate_run_scores_the_runs_samples_or_the_ones_it_is_told(trained_run, capsys):
    """Default: samples/*.mid, as docs/metrics.md says, not the samples/generate-NNN/ folders of
    later `musicfw generate` calls; --samples DIR|GLOB (relative to the run folder) picks."""
    from musicfw.cli import main

    later = trained_run / "samples" / "generate-001"
    later.mkdir()
    rng = np.random.default_rng(5)
    for i in range(2):
        chorale_like(rng, bars=2).dump_midi(str(later / f"sample_{i:03d}.mid"))

    def scored(*extra: str) -> list[str]:
        code = main(["evaluate", "--run", str(trained_run), "--json", *extra, "evaluate.max_reference=3"])
        out = capsys.readouterr()
        assert code == 0, out.err[-3000:]
        return sorted(json.loads((trained_run / "metrics.json").read_text())["features"]["generated"])

    assert scored() == [f"sample_{i:03d}.mid" for i in range(3)]
    assert scored("--samples", "samples/generate-001") == [f"samples/generate-001/sample_{i:03d}.mid" for i in range(2)]
    assert scored("--samples", str(later)) == [f"samples/generate-001/sample_{i:03d}.mid" for i in range(2)]
    assert len(scored("--samples", "samples/**/*.mid")) == 5
    for bad, why in (("samples/nothing-here", "neither a folder nor a glob"), ("samples/*.midi", "no .mid or .midi file matches")):
        assert main(["evaluate", "--run", str(trained_run), "--samples", bad]) == 2
        assert why in " ".join(capsys.readouterr().err.split())
