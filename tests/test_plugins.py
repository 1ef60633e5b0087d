"""The plugin core: registries, the plugin manager factory, entry points, import cost."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pluggy
import pytest

import musicfw
from musicfw.core.errors import PluginError
from musicfw.core.plugins import (
    DEFAULT_PLUGINS,
    PluginLoadWarning,
    get_plugin_manager,
    load_registries,
)
from musicfw.core.registry import KINDS, Registry

from conftest import REPO, run_cli
from toy_plugins import DuplicatePlugin, MisspelledPlugin, ToyPlugin


def test_every_kind_has_a_registry_and_builtins_come_through_the_hooks():
    regs = load_registries(get_plugin_manager(autoload=False))
    assert set(regs.by_kind) == set(KINDS)
    assert {"greedy", "temperature", "top_k", "top_p", "bernoulli"} <= set(regs["samplers"].names())
    assert regs["samplers"].info("top_p").provider == "musicfw"
    # the built-ins are ordinary registered pluggy plugins, not a private path
    pm = regs.pm
    assert all(pm.has_plugin(name) for name in DEFAULT_PLUGINS)


def test_list_plugins_api():
    plugins = musicfw.list_plugins()
    assert set(plugins) == set(KINDS)
    assert "top_p" in plugins["samplers"]


def test_build_sampler_validates_its_config():
    sampler = musicfw.build_sampler("top_k", k=5)
    assert sampler.config.k == 5
    with pytest.raises(musicfw.ConfigError, match=r"sampler\.kk.*Allowed keys: .*k"):
        musicfw.build_sampler("top_k", kk=5)
    with pytest.raises(musicfw.ConfigError, match=r"sampler\.k.*Integer"):
        musicfw.build_sampler("top_k", k="many")


def test_build_passes_objects_as_context_never_into_the_config():
    """`musicfw.build('model', 'lstm', tokenizer=t)` (omegaconf cannot hold a tokenizer)."""
    tok = musicfw.build_tokenizer("remi")
    model = musicfw.build("model", "lstm", tokenizer=tok, hidden_size=16, num_layers=1)
    assert model.loss is not None and model.head.out_features == tok.vocab_size
    same = musicfw.build("model", "lstm", context={"tokenizer": tok}, hidden_size=16, num_layers=1)
    assert sum(p.numel() for p in same.parameters()) == sum(p.numel() for p in model.parameters())
    # a parameter that is not a config value is a ConfigError naming the key, not omegaconf's
    with pytest.raises(musicfw.ConfigError, match=r"sampler\.k: a object is not a config value"):
        musicfw.build("sampler", "top_k", k=object())


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(PluginError) as err:
        musicfw.build_sampler("nucleus")
    message = str(err.value)
    assert "Unknown sampler 'nucleus'" in message
    for name in ("greedy", "temperature", "top_k", "top_p"):
        assert name in message


def test_duplicate_name_is_an_error_naming_both_providers():
    """A clash fails only what needs that name (naming both providers); everything else,
    `musicfw plugins` included, keeps working and lists the clash."""
    pm = get_plugin_manager(autoload=False, extra_plugins=[DuplicatePlugin()])
    with pytest.warns(PluginLoadWarning, match="top_p"):
        regs = load_registries(pm)
    with pytest.raises(PluginError) as err:
        musicfw.build("sampler", "top_p", registries=regs)
    message = str(err.value)
    assert "'top_p'" in message
    assert "musicfw" in message and "duplicate-plugin" in message
    assert musicfw.build("sampler", "top_k", registries=regs, k=3).config.k == 3
    assert any("top_p" in f.entry_point and "duplicate-plugin" in f.error for f in regs.failures)
    strict = Registry("samplers")
    strict.add(regs["samplers"].get("top_k"))
    with pytest.raises(PluginError, match="Two samplers are named 'top_k'"):
        strict.add(regs["samplers"].get("top_k"))


def test_misspelled_hook_name_is_rejected():
    with pytest.raises(pluggy.PluginValidationError, match="musicfw_register_tokenisers"):
        get_plugin_manager(autoload=False, extra_plugins=[MisspelledPlugin()])


def test_extra_plugins_register_like_entry_points():
    regs = load_registries(get_plugin_manager(autoload=False, extra_plugins=[ToyPlugin()]))
    assert "toy_model" in regs["models"]
    assert "toy_data" in regs["datasets"]


def test_blocking_a_builtin_plugin_module():
    regs = load_registries(get_plugin_manager(autoload=False, blocked=["musicfw.plugins.samplers"]))
    assert regs["samplers"].names() == []


def _fake_distribution(root: Path, dist: str, module: str, source: str, version: str = "1.0") -> None:
    """Install a minimal distribution (dist-info with entry points) into ``root``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[musicfw]\n{module} = {module}\n")


def test_a_broken_entry_point_warns_and_the_rest_still_loads(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "broken-plugin", "broken_plugin", "raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginLoadWarning, match=r"'broken_plugin'.*broken-plugin.*RuntimeError: boom at import"):
        regs = load_registries(get_plugin_manager(autoload=True))
    assert "top_p" in regs["samplers"]
    assert regs.failures and regs.failures[0].distribution == "broken-plugin"

    # and the CLI still works, reporting the failure
    result = run_cli("plugins", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "top_p" in result.stdout
    assert "failed to load: broken_plugin" in result.stdout
    assert "RuntimeError: boom at import" in result.stdout


_GOOD_SAMPLER = """
    from dataclasses import dataclass
    from musicfw import hookimpl
    from musicfw.core.sampler import Sampler

    class Good(Sampler):
        name = "good_sampler"

        @dataclass
        class Config:
            pass

    @hookimpl
    def musicfw_register_samplers(registry):
        registry.add(Good)
"""


@pytest.mark.parametrize(
    "module, source, detail",
    [
        # a misspelled hook name: pluggy's check_pending rejects it
        (
            "typo_plugin",
            "from musicfw import hookimpl\n@hookimpl\ndef musicfw_register_sampler(registry):\n    pass\n",
            "unknown hook 'musicfw_register_sampler' (did you mean 'musicfw_register_samplers'?)",
        ),
        # a hook with an argument the spec does not have: rejected at register
        (
            "bad_args_plugin",
            "from musicfw import hookimpl\n@hookimpl\ndef musicfw_register_samplers(registry, extra):\n    pass\n",
            "extra",
        ),
    ],
)
def test_a_plugin_with_an_invalid_hook_is_isolated_like_a_broken_import(tmp_path, monkeypatch, module, source, detail):
    _fake_distribution(tmp_path, "typo-plugin", module, source)
    _fake_distribution(tmp_path, "good-plugin", "good_plugin", _GOOD_SAMPLER, version="2.5")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginLoadWarning, match=rf"'{module}'.*typo-plugin.*invalid hook"):
        regs = load_registries(get_plugin_manager(autoload=True))
    assert "top_p" in regs["samplers"] and "good_sampler" in regs["samplers"]
    assert regs["samplers"].info("good_sampler").identity() == {"distribution": "good-plugin", "version": "2.5"}
    (failure,) = [f for f in regs.failures if f.distribution == "typo-plugin"]
    assert "PluginValidationError" in failure.error and detail in failure.error
    assert not regs.pm.has_plugin(module)

    env = {"PYTHONPATH": str(tmp_path)}
    version = run_cli("--version", env=env)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"musicfw {musicfw.__version__}"
    listing = run_cli("plugins", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "good_sampler  [good-plugin]" in listing.stdout
    assert f"failed to load: {module}" in listing.stdout and detail in listing.stdout
    data = json.loads(run_cli("plugins", "--json", env=env).stdout)
    assert next(p for p in data["samplers"] if p["name"] == "good_sampler")["version"] == "2.5"
    assert next(p for p in data["samplers"] if p["name"] == "top_p")["version"] == musicfw.__version__


def test_autoload_can_be_switched_off_by_environment(tmp_path):
    _fake_distribution(tmp_path, "broken-plugin", "broken_plugin", "raise RuntimeError('boom')\n")
    result = run_cli(
        "plugins", "--json", env={"PYTHONPATH": str(tmp_path), "MUSICFW_DISABLE_PLUGIN_AUTOLOAD": "1"}
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["failed"] == []


def test_plugins_json_lists_config_fields_with_types_and_defaults():
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    top_k = next(p for p in data["samplers"] if p["name"] == "top_k")
    assert top_k["provider"] == "musicfw"
    assert top_k["config"] == [
        {"name": "k", "type": "int", "default": 40, "help": "number of candidates kept",
         "choices": None, "bounds": {"ge": 1}, "allowed": "an integer >= 1"}
    ]


def test_cli_and_registration_do_not_import_heavy_libraries():
    """`musicfw --help` / `musicfw plugins` stay fast because nothing heavy is imported."""
    code = textwrap.dedent(
        """
        import sys
        import musicfw
        from musicfw.cli import build_parser
        from musicfw.cli.commands.plugins import describe
        build_parser()
        describe(musicfw.get_registries())
        heavy = [m for m in ("torch", "pytorch_lightning", "lightning", "music21", "matplotlib", "wandb")
                 if m in sys.modules]
        print(",".join(heavy))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at startup: {out.stdout.strip()}"


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"musicfw {musicfw.__version__}"
    assert musicfw.__version__ != "0+unknown"


def test_values_a_plugin_rejects_are_config_errors():
    with pytest.raises(musicfw.ConfigError, match=r"tokenizer 'melody'.*min_pitch"):
        musicfw.build_tokenizer("melody", min_pitch=200)
