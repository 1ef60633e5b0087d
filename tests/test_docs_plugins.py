"""docs/plugins.md's examples run as they are: every python block is executed, and the
plugins it defines are registered and used through core like any other plugin."""

from __future__ import annotations

import re
import types

import numpy as np
import symusic

from conftest import REPO, TEST_MIDI

DOC = REPO / "docs" / "plugins.md"


def _namespace() -> dict:
    ns: dict = {}
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    for block in blocks:
        if "[project.entry-points" in block:
            continue
        exec(compile(block, str(DOC), "exec"), ns)
    return ns


def test_every_example_of_the_plugin_guide_works_through_core(tmp_path, capsys):
    import musicfw
    from musicfw.cli import build_parser
    from musicfw.engine.evaluation import piece_features
    from musicfw.engine.generation import build_sampler_chain, generate
    from musicfw.core.plugins import get_plugin_manager, load_registries

    ns = _namespace()

    class Plugins:
        @musicfw.hookimpl
        def musicfw_register_tokenizers(self, registry):
            registry.add(ns["Pitches"])

        @musicfw.hookimpl
        def musicfw_register_models(self, registry):
            registry.add(ns["Bigram"])

        @musicfw.hookimpl
        def musicfw_register_samplers(self, registry):
            registry.add(ns["NoRepeat"])

        @musicfw.hookimpl
        def musicfw_register_datasets(self, registry):
            registry.add(ns["MyFolder"])

        @musicfw.hookimpl
        def musicfw_register_metrics(self, registry):
            registry.add(ns["Span"])

    commands = types.SimpleNamespace(musicfw_register_commands=ns["musicfw_register_commands"])
    regs = load_registries(get_plugin_manager(autoload=False, extra_plugins=[Plugins(), commands]))

    midi = sorted((TEST_MIDI / "one_track").glob("*.mid"))[0]
    tok = musicfw.build("tokenizer", "pitches", registries=regs)
    ids = tok.encode(symusic.Score(str(midi)))
    assert len(ids) > 10 and tok.decode(ids).tracks[0].notes.numpy()["pitch"].tolist() == ids.tolist()

    model = musicfw.build("model", "bigram", registries=regs, context={"tokenizer": tok})
    chain = build_sampler_chain([{"name": "no_repeat"}, {"name": "temperature"}], registries=regs)
    result = generate(model, tok, chain, n=2, max_tokens=30, seed=0)
    for seq in result.tokens:
        assert not np.any(seq[1:] == seq[:-1])  # the history sampler worked

    data = musicfw.build("dataset", "my_folder", registries=regs, path=str(TEST_MIDI / "one_track"))
    loaded = data.load(seed=0, progress=False)
    assert len(loaded.pieces()) >= 3 and sum(loaded.split_sizes().values()) == len(loaded.pieces())

    span = musicfw.build("metric", "span", registries=regs)
    feats, info = piece_features([span], [("a", symusic.Score(str(midi)))])
    assert feats["a"]["pitch_span"] > 0 and info["pitch_span"]["metric"] == "span"

    parser = build_parser(regs)
    args = parser.parse_args(["hello", "--who", "docs"])
    assert args.func(args) == 0
    assert capsys.readouterr().out == "hello docs\n"


def test_the_feature_examples_of_the_plugin_guide_work_through_core(tmp_path, capsys):
    """The logger, export format, report section and run-finished hook of docs/plugins.md."""
    import json
    import shutil

    import musicfw
    from musicfw.core.plugins import get_plugin_manager, load_registries
    from musicfw.engine.loggers import build_loggers, finish_loggers
    from musicfw.engine.report import render_report

    ns = _namespace()

    class Plugins:
        @musicfw.hookimpl
        def musicfw_register_loggers(self, registry):
            registry.add(ns["Printer"])

        @musicfw.hookimpl
        def musicfw_register_exporters(self, registry):
            registry.add(ns["VocabOnly"])

    sections = types.SimpleNamespace(musicfw_report_sections=ns["musicfw_report_sections"])
    regs = load_registries(get_plugin_manager(autoload=False, extra_plugins=[Plugins(), sections]))
    assert "printer" in regs["loggers"] and "vocab_only" in regs["exporters"]

    loggers = build_loggers({"name": "printer", "prefix": "at", "log_every_n_steps": 1}, tmp_path, registries=regs)
    for logger in loggers:  # what the Trainer does: history.jsonl's logger and the plugin's
        logger.log_metrics({"train/loss": 1.0}, step=3)
    finish_loggers(loggers, tmp_path)
    assert capsys.readouterr().out == "at 3 ['train/loss']\n"
    assert json.loads((tmp_path / "history.jsonl").read_text().splitlines()[0])["train/loss"] == 1.0

    tok = musicfw.build("tokenizer", "remi", registries=regs)
    out = tmp_path / "export"
    out.mkdir()
    regs["exporters"].get("vocab_only")().export(types.SimpleNamespace(tokenizer=tok), out)
    assert json.loads((out / "vocab.json").read_text()) == list(tok.vocab)

    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    shutil.copy(sorted((TEST_MIDI / "one_track").glob("*.mid"))[0], run / "samples" / "sample_000.mid")
    page = render_report(run, regs)
    assert '<h2 id="count">Sample count</h2><p>1 MIDI files</p>' in page and "<li>1 MIDI files were written.</li>" in page

    assert ns["musicfw_run_finished"](run_dir=run, metrics={}) == {"my_plugin": {"n_samples": 1}}
    assert json.loads((run / "my_summary.json").read_text()) == {"samples": 1}
