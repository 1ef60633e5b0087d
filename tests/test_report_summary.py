"""The report's plain-language summary, its links to the sample files, and readable
descriptions of samplers in the progress lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_describe_a_sampler_chain_without_python_reprs():
    import musicfw
    from musicfw.engine.describe import describe
    from musicfw.core.sampler import SamplerChain

    chain = SamplerChain([musicfw.build_sampler("temperature", temperature=0.9), musicfw.build_sampler("top_p", p=0.95)])
    assert describe(chain) == "temperature(temperature=0.9) -> top_p(p=0.95)"
    assert describe(musicfw.build_sampler("greedy")) == "greedy()"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import musicfw

    folder = Path(__file__).parent / "data" / "midi" / "one_track"
    config = musicfw.load_config(
        {
            "name": "summary", "output_dir": str(tmp_path_factory.mktemp("runs")),
            "data": {"name": "midi_folder", "path": str(folder), "train_fraction": 0.4, "valid_fraction": 0.1},
            "tokenizer": {"name": "remi"}, "model": {"name": "markov", "order": 2},
            "sampler": [{"name": "temperature", "temperature": 0.9}, {"name": "top_p", "p": 0.95}],
            "generate": {"n": 3, "max_seconds": 10},
            "evaluate": {"metrics": ["nll", "yang_lerch", "muspy"]}, "logger": {"name": "none"},
        }
    )
    return musicfw.run(config).run_dir


def test_the_summary_says_what_was_trained_the_nll_and_the_biggest_differences(run_dir):
    from musicfw.engine.report import summary_lines
    from musicfw.plugins.report.sections import feature_differences

    metrics = json.loads((run_dir / "metrics.json").read_text())
    lines = summary_lines(run_dir, metrics)
    assert lines[0].startswith("A markov model on remi tokens of the midi_folder data")
    nll = metrics["likelihood"]["nll"]
    assert any(f"{nll['nll_per_token']:.3g} nats per token" in line for line in lines)
    assert any(line.startswith("3 samples were generated (stopped by max_seconds") for line in lines)
    diffs = feature_differences(metrics)
    assert len(diffs) == 3 and diffs[0]["effect"] >= diffs[1]["effect"] >= diffs[2]["effect"]
    # the sentence names the top feature with both means and the direction in words
    sentence = next(line for line in lines if line.startswith("Where the samples differ most"))
    top = diffs[0]
    assert top["name"] in sentence and ("more" in sentence or "less" in sentence or "times as much" in sentence)
    note = next(d for d in feature_differences(metrics, top=50) if d["feature"] == "note_count")
    assert note["ratio"] == pytest.approx(
        metrics["statistics"]["generated"]["note_count"]["mean"] / metrics["statistics"]["reference"]["note_count"]["mean"]
    )


def test_the_page_has_the_summary_and_links_to_every_mid_and_wav(run_dir):
    page = (run_dir / "report.html").read_text()
    assert '<h2 id="summary">In short</h2>' in page and page.index('id="summary"') < page.index('id="config"')
    for mid in sorted((run_dir / "samples").glob("*.mid")):
        assert f'href="samples/{mid.name}"' in page
        wav = mid.with_suffix(".wav")
        if wav.is_file():
            assert f'href="samples/{wav.name}"' in page


def test_none_in_the_comparison_is_explained(tmp_path):
    from musicfw.engine.report import summary_lines

    metrics = {
        "likelihood": {}, "sets": {"generated": {"n_pieces": 4}, "reference": {"n_pieces": 1}},
        "comparison": {"summary": {"mean_oa_generated": None}},
    }
    lines = summary_lines(tmp_path, metrics)
    assert any("needs at least 2 pieces in each set (generated 4, reference 1)" in line for line in lines)
