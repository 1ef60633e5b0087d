"""Parameter bounds are declared on the ``Config`` fields (next to ``choices``) and checked in one
place, core/params.py: the same ConfigError -- key path and allowed range, plus file and line
for YAML -- from an experiment file, a command-line override and the Python API; ``musicfw
plugins`` shows them; every registered plugin's declared bounds are enforced."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import typing
from pathlib import Path

import pytest

import musicfw
from conftest import run_cli
from musicfw.core.errors import ConfigError, UserError
from musicfw.core.params import allowed_range, bounded, check_params, field_bounds
from musicfw.core.plugins import load_registries
from musicfw.engine.config import load_config

ROOT = Path(__file__).resolve().parents[1]

EXPERIMENT = """\
name: t
data: {name: bach_chorales, max_count: 5}
tokenizer: {name: remi}
model:
  name: lstm
  hidden_size: 0
logger: {name: none}
"""


@pytest.fixture(scope="module")
def registries():
    return load_registries()


def test_a_bound_in_yaml_names_file_line_key_and_range(tmp_path, registries):
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT)
    with pytest.raises(ConfigError) as info:
        load_config(exp, registries=registries)
    message = str(info.value)
    assert f"in {exp}, line 6" in message  # hidden_size's line
    assert message.endswith("model.hidden_size must be in 1..16384, got 0.")


def test_the_experiments_own_sections_are_checked_the_same_way(tmp_path, registries):
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT.replace("hidden_size: 0", "hidden_size: 8") + "train:\n  max_epochs: 1\n  lr: -0.5\n")
    with pytest.raises(ConfigError, match=rf"in {exp}, line 10: train\.lr must be a finite number > 0, got -0\.5\."):
        load_config(exp, registries=registries)
    exp.write_text(EXPERIMENT.replace("hidden_size: 0", "hidden_size: 8") + "augment:\n  time_stretch: [1.0, 0.0]\n")
    with pytest.raises(ConfigError, match=r"augment\.time_stretch\[1\] must be a finite number > 0, got 0\.0"):
        load_config(exp, registries=registries)
    with pytest.raises(ConfigError, match=r"command-line override 'generate.max_seconds=nan'.*generate\.max_seconds must be a finite number > 0"):
        load_config(None, overrides=["generate.max_seconds=nan", "data.name=bach_chorales", "tokenizer.name=remi", "model.name=markov"], registries=registries)


def test_an_override_names_itself_and_the_range(tmp_path, registries):
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT.replace("hidden_size: 0", "hidden_size: 8"))
    with pytest.raises(ConfigError) as info:
        load_config(exp, overrides=["model.dropout=1.5"], registries=registries)
    assert "in the command-line override 'model.dropout=1.5'" in str(info.value)
    assert str(info.value).endswith("model.dropout must be in [0, 1), got 1.5.")


def test_the_python_api_raises_the_same_error(tmp_path, registries):
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT)
    with pytest.raises(ConfigError) as from_yaml:
        load_config(exp, registries=registries)
    same = "model.hidden_size must be in 1..16384, got 0."
    for call in (
        lambda: musicfw.build("model", "lstm", hidden_size=0),
        lambda: musicfw.make_config("model", "lstm", hidden_size=0),
        lambda: musicfw.build_model("lstm", tokenizer=musicfw.build_tokenizer("remi"), hidden_size=0),
    ):
        with pytest.raises(ConfigError) as from_api:
            call()
        assert str(from_api.value) == f"Invalid model 'lstm' parameters: {same}"
        assert str(from_yaml.value).endswith(same)
    # a Config built by hand is checked by the base classes' constructors (same words)
    from musicfw.plugins.samplers.basic import TopP

    with pytest.raises(ConfigError, match=r"top_p\.p must be in \(0, 1\], got 2"):
        TopP(TopP.Config(p=2))


def test_plugins_json_and_text_list_choices_and_bounds():
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    lstm = {f["name"]: f for f in {p["name"]: p for p in data["models"]}["lstm"]["config"]}
    assert lstm["hidden_size"]["bounds"] == {"ge": 1, "le": 16384} and lstm["hidden_size"]["allowed"] == "in 1..16384"
    assert lstm["dropout"]["bounds"] == {"ge": 0, "lt": 1} and lstm["dropout"]["allowed"] == "in [0, 1)"
    assert lstm["head"]["choices"] == ["bernoulli", "nade", "autoregressive"] and lstm["head"]["bounds"] is None
    vae = {f["name"]: f for f in {p["name"]: p for p in data["models"]}["musicvae"]["config"]}
    assert vae["dec_rnn_size"]["bounds"] == {"ge": 1, "le": 16384, "min_items": 1}
    text = run_cli("plugins").stdout
    assert "p: float = 0.95, in (0, 1]" in text
    assert "head: str = 'bernoulli', one of bernoulli, nade, autoregressive" in text


# -- every registered plugin -----------------------------------------------------------------


def _outside(bounds: dict, integer: bool) -> list:
    """Values just outside each declared bound."""
    step = 1 if integer else 1e-6
    out = []
    if "ge" in bounds:
        out.append(bounds["ge"] - step)
    if "gt" in bounds:
        out.append(bounds["gt"])
    if "le" in bounds:
        out.append(bounds["le"] + step)
    if "lt" in bounds:
        out.append(bounds["lt"])
    if not integer:
        out += [math.nan, math.inf if "le" not in bounds and "lt" not in bounds else -math.inf]
    return out


def _inside(bounds: dict, integer: bool) -> list:
    """Values on or just inside each declared bound."""
    step = 1 if integer else 1e-6
    out = []
    for key, shift in (("ge", 0), ("gt", step), ("le", 0), ("lt", -step)):
        if key in bounds:
            out.append(bounds[key] + shift)
    return out


def _is_int(tp) -> bool:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return tp is int or (bool(args) and all(a is int for a in args))


def _bounded_fields(registries):
    for kind, registry in registries.by_kind.items():
        for info in registry:
            hints = typing.get_type_hints(info.cls.Config)
            for f in dataclasses.fields(info.cls.Config):
                bounds = {k: v for k, v in field_bounds(f).items() if k != "min_items"}
                if bounds:
                    tp = hints.get(f.name, f.type)
                    is_list = typing.get_origin(tp) in (list, typing.List) or tp is list
                    yield kind, info, f, bounds, _is_int(tp), is_list


def test_every_declared_bound_is_enforced_by_core(registries):
    checked = set()
    for kind, info, f, bounds, integer, is_list in _bounded_fields(registries):
        allowed = allowed_range(bounds, integer)
        for bad in _outside(bounds, integer):
            value = [bad] if is_list else bad
            with pytest.raises(ConfigError) as err:
                musicfw.make_config(kind, info.name, **{f.name: value})
            key = f"{kind.rstrip('s')}.{f.name}" + ("[0]" if is_list else "")
            assert f"{key} must be {allowed}, got" in str(err.value), (info.name, f.name, str(err.value))
        for good in _inside(bounds, integer):
            musicfw.make_config(kind, info.name, **{f.name: [good] if is_list else good})
        checked.add((kind, info.name))
    # the built-ins declare bounds in every kind
    assert {k for k, _ in checked} >= {"tokenizers", "models", "samplers", "datasets", "metrics"}
    assert {("models", "lstm"), ("models", "transformer"), ("models", "markov"), ("models", "musicvae"),
            ("samplers", "top_p"), ("tokenizers", "remi"), ("metrics", "yang_lerch")} <= checked


def test_no_plugin_refuses_a_value_inside_its_declared_bounds_with_a_stray_error(registries):
    """A plugin may refuse an in-bounds value only where fields must fit together, and then with
    a user error (ConfigError/PluginError), never a ValueError of its own."""
    melody = musicfw.build_tokenizer("melody")
    for kind, info, f, bounds, integer, is_list in _bounded_fields(registries):
        context = {"tokenizer": melody} if kind == "models" else {}
        for good in _inside(bounds, integer):
            params = {f.name: [good] if is_list else good}
            if kind == "models":  # keep the models small; the field under test wins
                small = {"lstm": {"hidden_size": 4, "embed_dim": 4, "num_layers": 1},
                         "transformer": {"d_model": 8, "num_heads": 2, "num_layers": 1, "d_ff": 8, "max_context": 16},
                         "musicvae": {"z_size": 4, "enc_rnn_size": [4], "dec_rnn_size": [4]}}.get(info.name, {})
                params = {**small, **params}
            config = musicfw.make_config(kind, info.name, **params)
            try:  # from_config itself: build() would turn a stray ValueError into a ConfigError
                info.cls.from_config(config, **context)
            except UserError:
                pass  # a check across fields (min_pitch > max_pitch, num_heads not dividing d_model, ...)


def test_the_bounded_helper_and_messages():
    @dataclasses.dataclass
    class Config:
        a: int = bounded(3, gt=0, lt=10)
        b: float = bounded(0.5, ge=0, le=1)
        c: typing.List[int] = bounded([1], ge=1, min_items=2)
        d: typing.Optional[int] = bounded(None, ge=1)

    check_params(Config(c=[1, 2]), "x")  # defaults (but c's length) are inside
    with pytest.raises(ConfigError, match=r"x\.a must be in 1\.\.9, got 10"):
        check_params(Config(a=10, c=[1, 2]), "x")
    with pytest.raises(ConfigError, match=r"x\.b must be in \[0, 1\], got inf"):
        check_params(Config(b=math.inf, c=[1, 2]), "x")
    with pytest.raises(ConfigError, match=r"x\.c must be a list of at least 2 items, each an integer >= 1, got \[1\]"):
        check_params(Config(), "x")
    with pytest.raises(ConfigError, match=r"x\.d must be an integer >= 1, got 0"):
        check_params(Config(c=[1, 2], d=0), "x")
    assert Config().c is not Config().c  # a list default is copied per instance


def test_no_private_name_of_core_params_is_imported_elsewhere():
    for path in [*ROOT.joinpath("musicfw").rglob("*.py"), *ROOT.joinpath("core").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "musicfw.core.params":
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path}: imports {private} from musicfw.core.params"
    source = ROOT.joinpath("musicfw/engine/config.py").read_text(encoding="utf-8")
    assert "_BOUNDS" not in source and "_check_bounds" not in source
