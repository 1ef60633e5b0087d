"""Feature hooks: report sections and the run's lifecycle, built-ins and third parties through
the same hooks, and what happens when a third party's hook raises (a warning naming it; the
run's own results kept; never a silent loss)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from musicfw import hookimpl
from musicfw.core.plugins import PluginHookWarning, get_plugin_manager, load_registries
from musicfw.core.report import ReportSection
from musicfw.engine.report import render_report, summary_lines

ONE_TRACK = Path(__file__).parent / "data" / "midi" / "one_track"


def registries_with(*plugins):
    return load_registries(get_plugin_manager(autoload=False, extra_plugins=plugins))


class GoodSection:
    __name__ = "good_section"

    @hookimpl
    def musicfw_report_sections(self, report):
        return ReportSection("good", "A third-party section", "<p>hello from outside</p>", summary=["Good line."], order=35, nav="good")


class BrokenSection:
    __name__ = "broken_section"

    @hookimpl
    def musicfw_report_sections(self, report):
        raise RuntimeError("boom")


class WrongType:
    __name__ = "wrong_type"

    @hookimpl
    def musicfw_report_sections(self, report):
        return "<p>not a section</p>"


def test_a_third_party_section_sits_in_the_page_like_a_built_in(tmp_path):
    (tmp_path / "config.yaml").write_text("name: x\n")
    page = render_report(tmp_path, registries_with(GoodSection()))
    # between config (30) and curves (40), in the navigation bar and the "In short" list
    assert page.index('id="config"') < page.index('id="good"') < page.index('id="curves"')
    assert '<a href="#good">good</a>' in page and "<li>Good line.</li>" in page
    assert "hello from outside" in page
    lines = summary_lines(tmp_path, registries=registries_with(GoodSection()))
    assert lines[0].startswith("A ? model") and "Good line." in lines


def test_a_failing_third_party_section_is_named_on_the_page_and_warned_about(tmp_path):
    regs = registries_with(BrokenSection(), WrongType())
    with pytest.warns(PluginHookWarning) as caught:
        page = render_report(tmp_path, regs)
    messages = " | ".join(str(w.message) for w in caught)
    assert "broken_section" in messages and "RuntimeError: boom" in messages
    assert "wrong_type" in messages and "ReportSection" in messages
    assert "The plugin broken_section (from broken_section) failed to give its report section: RuntimeError: boom" in page
    assert "The plugin wrong_type" in page
    # the rest of the page is there
    for key in ("summary", "config", "curves", "metrics", "distributions", "samples"):
        assert f'id="{key}"' in page


def test_a_built_in_section_that_fails_is_our_bug_and_keeps_its_traceback(tmp_path, monkeypatch):
    import musicfw.plugins.report.sections as sections

    def broken(*args):
        raise ZeroDivisionError("ours")

    monkeypatch.setattr(sections, "set_lines", broken)
    with pytest.raises(ZeroDivisionError, match="ours"):
        render_report(tmp_path, registries_with())


def test_the_likelihood_lines_come_from_the_plugins_that_measure_them(tmp_path):
    metrics = {
        "likelihood": {
            "musicvae_reconstruction": {"split": "test", "n_sequences": 5, "teacher_forced_accuracy": 0.9, "sampled_accuracy": 0.8},
            "nll": {"split": "test", "n_sequences": 4, "nll_per_token": 1.5, "perplexity": 4.48},
        }
    }
    lines = summary_lines(tmp_path, metrics, registries_with())
    assert lines[1].startswith("Reconstruction of 5 test-split windows (musicvae_reconstruction)")
    assert lines[2].startswith("Held-out NLL on 4 test-split pieces: 1.5 nats per token (perplexity 4.48)")
    # with the plugins that measure them blocked, their lines go with them
    regs = load_registries(get_plugin_manager(autoload=False, blocked=["musicfw.plugins.metrics", "musicfw.plugins.models"]))
    assert len(summary_lines(tmp_path, metrics, regs)) == 1


class Recorder:
    """Notes every lifecycle call and adds numbers at two moments."""

    __name__ = "recorder"

    def __init__(self):
        self.calls = []

    @hookimpl
    def musicfw_run_started(self, run_dir, config):
        self.calls.append(("run_started", config["name"], (run_dir / "config.yaml").is_file()))

    @hookimpl
    def musicfw_stage_finished(self, run_dir, stage, metrics):
        self.calls.append(("stage_finished", stage, sorted(metrics)))
        (run_dir / "recorder.txt").open("a").write(stage + "\n")
        if stage == "evaluate":
            return {"recorder_eval": {"n_likelihoods": len(metrics["likelihood"])}}
        return None

    @hookimpl
    def musicfw_run_finished(self, run_dir, metrics):
        self.calls.append(("run_finished", None, sorted(metrics)))
        return {"recorder_end": 7, "likelihood": "must not replace the run's own"}


class Raiser:
    __name__ = "raiser"

    @hookimpl
    def musicfw_run_started(self):
        raise RuntimeError("started badly")

    @hookimpl
    def musicfw_stage_finished(self, stage):
        raise ValueError(f"bad {stage}")

    @hookimpl
    def musicfw_run_finished(self):
        return ["not", "a", "mapping"]


class EndSection:
    __name__ = "end_section"

    @hookimpl
    def musicfw_report_sections(self, report):
        value = (report.metrics or {}).get("recorder_end")
        return ReportSection("end", summary=[f"recorder_end is {value}."], order=99)


def test_lifecycle_hooks_see_every_stage_add_files_and_numbers_and_a_failing_one_is_contained(tmp_path):
    from musicfw.engine.config import load_config
    from musicfw.engine.runner import run_experiment

    recorder = Recorder()
    regs = registries_with(recorder, Raiser(), EndSection())
    config = load_config(
        {
            "name": "hooks", "output_dir": str(tmp_path),
            "data": {"name": "midi_folder", "path": str(ONE_TRACK), "train_fraction": 0.4, "valid_fraction": 0.1},
            "tokenizer": {"name": "remi"}, "model": {"name": "markov", "order": 1},
            "generate": {"n": 2, "max_tokens": 32, "render_audio": False},
            "evaluate": {"metrics": ["nll"]}, "logger": {"name": "none"},
        },
        registries=regs,
    )
    with pytest.warns(PluginHookWarning) as caught:
        result = run_experiment(config, registries=regs)
    messages = [str(w.message) for w in caught]
    assert any("'raiser'" in m and "musicfw_run_started" in m and "RuntimeError: started badly" in m for m in messages)
    for stage in ("data", "train", "generate", "evaluate", "report"):
        assert any(f"ValueError: bad {stage}" in m for m in messages)
    assert any("'raiser'" in m and "list" in m and "musicfw_run_finished" in m for m in messages)
    assert any("'recorder'" in m and "'likelihood'" in m and "own value was kept" in m for m in messages)

    run = result.run_dir
    assert [c[:2] for c in recorder.calls] == [
        ("run_started", "hooks"), ("stage_finished", "data"), ("stage_finished", "train"),
        ("stage_finished", "generate"), ("stage_finished", "evaluate"), ("stage_finished", "report"),
        ("run_finished", None),
    ]
    assert recorder.calls[0][2] is True  # config.yaml is saved before run_started
    assert recorder.calls[2][2] == ["training"]
    assert (run / "recorder.txt").read_text().split() == ["data", "train", "generate", "evaluate", "report"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["recorder_eval"] == {"n_likelihoods": 1} and metrics["recorder_end"] == 7
    assert metrics["likelihood"]["nll"]["nll_per_token"] > 0  # the run's own results, kept
    assert "recorder_eval" in recorder.calls[-1][2]  # run_finished sees what evaluate's hook added
    page = (run / "report.html").read_text()
    assert "<li>recorder_end is 7.</li>" in page  # numbers added at the end: the page is rewritten
