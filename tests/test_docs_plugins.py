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


# -- the page is the complete contract --------------------------------------------------------

#: classes in core/ that are the kernel's machinery, not a contract a plugin implements or is
#: handed (a new class in core/ must be either documented in docs/plugins.md or listed here)
MACHINERY = {
    "CommandInfo", "CommandRegistry", "HookCall", "LoadedData", "LoadFailure", "PluginInfo", "Registries", "Registry",
    "Source",  # where a config came from (core/params.py), for error messages
}
HEADING = re.compile(r"^#{2,3} .*\(`(musicfw\.[\w.]+)`\)\s*$")
SHARED = "## What every registry plugin has"


def _core_classes() -> list[type]:
    """Every public class defined in a module of musicfw.core (found by scanning, so a new
    contract is picked up without editing this test)."""
    import importlib
    import inspect
    import pkgutil

    import musicfw.core

    found = []
    for info in pkgutil.iter_modules(musicfw.core.__path__):
        module = importlib.import_module(f"musicfw.core.{info.name}")
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_"):
                found.append(obj)
    assert len(found) >= 10
    return found


def _tables() -> dict[str, dict[str, str]]:
    """Documented members per section: class path (or "shared") -> {member: type cell}."""
    out: dict[str, dict[str, str]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        if line.startswith("#"):
            match = HEADING.match(line)
            current = match.group(1) if match else ("shared" if line.strip() == SHARED else None)
            if current is not None:
                out.setdefault(current, {})
            continue
        if current is None or not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells[0] in ("member", "") or set(cells[0]) <= {"-", " "}:
            continue
        members = re.findall(r"`([A-Za-z_]\w*)", cells[0])
        assert members, f"docs/plugins.md: a table row without a `member`: {line}"
        assert len(cells) >= 4 and cells[1], f"docs/plugins.md: no type for {members} in {current}: {line}"
        for member in members:
            out[current][member] = cells[1]
    return out


def _declared(cls: type) -> set[str]:
    """The public members a class (and its musicfw bases) declares: attributes, methods,
    properties, and annotated names."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("musicfw."):
            continue
        names |= {n for n in vars(klass) if not n.startswith("_")}
        names |= {n for n in vars(klass).get("__annotations__", {}) if not n.startswith("_")}
    return names


def _resolve(path: str) -> type:
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_contract_class_in_core_has_a_section_in_the_plugin_guide():
    tables = _tables()
    documented = {_resolve(path) for path in tables if path != "shared"}
    missing = []
    for cls in _core_classes():
        if cls in documented or cls.__name__ in MACHINERY or issubclass(cls, (BaseException, Warning)):
            continue
        if any(base in documented for base in cls.__mro__[1:]):  # an implementation (FrameClock, SamplerChain)
            continue
        missing.append(f"{cls.__module__}.{cls.__qualname__}")
    assert not missing, (
        f"core classes neither documented in docs/plugins.md (a section headed `(musicfw.core.module.Class)` "
        f"with a member | type | default | what table) nor listed as machinery in this test: {missing}"
    )


def test_the_plugin_guide_lists_exactly_the_members_each_base_class_declares():
    tables = _tables()
    shared = set(tables.pop("shared"))
    assert {"name", "Config", "from_config", "config"} <= shared
    for kind in ("tokenizer.Tokenizer", "model.Model", "sampler.Sampler", "dataset.MusicDataset",
                 "metric.Metric", "command.Command", "constraints.Grammar", "clock.Clock"):
        assert f"musicfw.core.{kind}" in tables, f"docs/plugins.md has no section for {kind}"
    for path, members in tables.items():
        declared = _declared(_resolve(path))
        undocumented = declared - set(members) - shared
        assert not undocumented, f"{path} declares {sorted(undocumented)}, which docs/plugins.md does not list"
        unknown = set(members) - declared
        assert not unknown, f"docs/plugins.md lists {sorted(unknown)} for {path}, which it does not declare"
    # the members the issue found missing are there, with types
    tok = tables["musicfw.core.tokenizer.Tokenizer"]
    for member in ("chord_grammar", "coverage", "count_notes", "token_names"):
        assert "->" in tok[member]
    assert "bool" in tables["musicfw.core.model.Model"]["loss_is_bound"]
    assert "mark" in tables["musicfw.core.clock.Clock"]
    grammar = tables["musicfw.core.constraints.Grammar"]
    assert "np.ndarray" in grammar["mask"] and {"start", "feed"} <= set(grammar)
    assert {"pitch", "time", "duration"} <= set(tables["musicfw.music.notes.PieceNotes"])
    assert "-inf" in DOC.read_text().split("## Sampler")[1].split("```")[0]


def test_base_classes_declare_what_core_reads():
    """The engine reads these on any plugin; the base classes declare them with a default."""
    import numpy as np

    from musicfw.core.clock import Clock
    from musicfw.core.metric import Metric
    from musicfw.core.model import Model
    from musicfw.core.sampler import Sampler

    clock = Clock(3)
    assert clock.bars.shape == clock.seconds.shape == (3,) and np.all(clock.new_bars() == 0)
    assert Model.loss_is_bound is False and Sampler.needs_history is False
    for cls in (Metric, Sampler):
        assert "config" in cls.__annotations__


def test_the_docs_name_the_training_function_the_api_has():
    """README and docs/plugins.md call training the way musicfw.engine.training spells it."""
    import inspect

    from musicfw.engine import training

    params = list(inspect.signature(training.fit).parameters)[:4]
    for doc in (REPO / "README.md", DOC):
        text = " ".join(doc.read_text().split())
        calls = re.findall(r"musicfw\.engine\.training\.(\w+)\(([^)]*)\)", text)
        assert calls, doc
        for name, args in calls:
            assert callable(getattr(training, name, None)), f"{doc.name} names training.{name}, which does not exist"
            if name == "fit":
                assert [a.strip().split("=")[0] for a in args.split(",")][:4] == params, (doc.name, args)
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
