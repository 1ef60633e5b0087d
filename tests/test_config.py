"""Experiment configuration: structured validation and one-paragraph errors."""

from __future__ import annotations

import textwrap

import pytest

from musicfw.engine.config import load_config
from musicfw.core.errors import ConfigError, PluginError
from musicfw.core.plugins import get_plugin_manager, load_registries

from conftest import run_cli
from toy_plugins import ToyPlugin


@pytest.fixture
def regs():
    return load_registries(get_plugin_manager(autoload=False, extra_plugins=[ToyPlugin()]))


def write(tmp_path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """\
name: toy
seed: 3
data: {name: toy_data, size: 2}
tokenizer: {name: toy_tok}
model:
  name: toy_model
  hidden_size: 16
sampler:
  - {name: temperature, temperature: 0.9}
  - {name: top_p, p: 0.8}
train: {max_epochs: 2}
evaluate: {metrics: []}
logger: {name: csv}
"""


def test_a_good_experiment_is_validated_and_typed(tmp_path, regs):
    cfg = load_config(write(tmp_path, GOOD), overrides=["model.hidden_size=32", "train.lr=0.01"], registries=regs)
    assert cfg.model.hidden_size == 32 and cfg.model.cell == "lstm" and cfg.model.name == "toy_model"
    assert cfg.train.max_epochs == 2 and cfg.train.lr == 0.01 and cfg.train.batch_size == 32
    assert [s.name for s in cfg.sampler] == ["temperature", "top_p"]
    assert cfg.sampler[1].p == 0.8
    assert cfg.data.size == 2 and cfg.seed == 3
    assert cfg.logger.name == "csv"


def test_unknown_key_in_a_plugin_section_names_path_line_and_allowed_keys(tmp_path, regs):
    path = write(tmp_path, GOOD.replace("hidden_size: 16", "hiden_size: 16"))
    with pytest.raises(ConfigError) as err:
        load_config(path, registries=regs)
    msg = str(err.value)
    assert "model.hiden_size" in msg
    assert f"{path}, line 7" in msg
    assert "Allowed keys:" in msg and "hidden_size" in msg and "dropout" in msg


def test_unknown_key_in_a_plain_section(tmp_path, regs):
    with pytest.raises(ConfigError, match=r"train\.max_epoch\b.*Allowed keys: .*max_epochs"):
        load_config(write(tmp_path, GOOD.replace("max_epochs", "max_epoch")), registries=regs)


def test_wrong_type_names_key_type_and_value(tmp_path, regs):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD), overrides=["train.max_epochs=lots"], registries=regs)
    msg = str(err.value)
    assert "train.max_epochs" in msg and "'lots'" in msg and "Integer" in msg
    assert "command-line override 'train.max_epochs=lots'" in msg


def test_choices_are_enforced_with_the_allowed_values(tmp_path, regs):
    with pytest.raises(ConfigError, match=r"model\.cell: 'rnn' is not allowed\. Allowed values: lstm, gru"):
        load_config(write(tmp_path, GOOD), overrides=["model.cell=rnn"], registries=regs)
    # the logger is a plugin: an unknown name lists the installed loggers
    with pytest.raises(PluginError, match=r"Unknown logger 'mlflow' \(at logger\.name.*Available loggers: csv, none, tensorboard, wandb"):
        load_config(write(tmp_path, GOOD), overrides=["logger.name=mlflow"], registries=regs)


def test_the_logger_section_is_validated_against_the_chosen_loggers_config(tmp_path, regs):
    cfg = load_config(write(tmp_path, GOOD), overrides=["logger.name=wandb", "logger.project=p", "logger.log_every_n_steps=3"], registries=regs)
    assert dict(cfg.logger) == {"name": "wandb", "project": "p", "offline": True, "log_every_n_steps": 3, "log_samples": True}
    # csv has no `project`: the error names the key and the keys csv allows
    with pytest.raises(ConfigError, match=r"logger\.project.*Allowed keys: name"):
        load_config(write(tmp_path, GOOD), overrides=["logger.name=csv", "logger.project=p"], registries=regs)
    with pytest.raises(ConfigError, match=r"logger\.offline.*not a valid bool"):
        load_config(write(tmp_path, GOOD), overrides=["logger.name=wandb", "logger.offline=maybe"], registries=regs)
    with pytest.raises(ConfigError, match=r"logger\.log_every_n_steps.*Integer"):
        load_config(write(tmp_path, GOOD), overrides=["logger.log_every_n_steps=often"], registries=regs)
    default = load_config(write(tmp_path, GOOD.replace("logger: {name: csv}\n", "")), registries=regs).logger
    assert dict(default) == {"name": "wandb", "project": "musicfw", "offline": True, "log_every_n_steps": 10, "log_samples": True}


def test_a_run_folder_from_before_loggers_were_plugins_still_loads(tmp_path, regs):
    """Its config.yaml saved wandb's keys whatever the logger; they are dropped, not refused."""
    from musicfw.engine.rundir import load_run_config

    legacy = "logger: {name: csv, project: musicfw, log_every_n_steps: 10, log_samples: true, offline: true}\n"
    (tmp_path / "config.yaml").write_text(GOOD.replace("logger: {name: csv}\n", legacy))
    assert dict(load_run_config(tmp_path, registries=regs).logger) == {"name": "csv", "log_every_n_steps": 10, "log_samples": True}
    with pytest.raises(ConfigError, match=r"logger\.project"):  # a new experiment file is validated strictly
        load_config(tmp_path / "config.yaml", registries=regs)


def test_unknown_plugin_lists_the_available_names(tmp_path, regs):
    with pytest.raises(PluginError) as err:
        load_config(write(tmp_path, GOOD.replace("name: toy_model", "name: toy_modle")), registries=regs)
    msg = str(err.value)
    assert "Unknown model 'toy_modle'" in msg and "Did you mean 'toy_model'" in msg
    assert "Available models:" in msg and "toy_model" in msg and "model.name" in msg


def test_sampler_chain_entries_are_validated_one_by_one(tmp_path, regs):
    with pytest.raises(ConfigError, match=r"sampler\[1\]\.q"):
        load_config(write(tmp_path, GOOD.replace("p: 0.8", "q: 0.8")), registries=regs)


def test_missing_section(tmp_path, regs):
    with pytest.raises(ConfigError, match=r"the `model` section is missing.*toy_model"):
        load_config(write(tmp_path, GOOD.replace("model:\n  name: toy_model\n  hidden_size: 16\n", "")), registries=regs)


def test_malformed_override(regs):
    with pytest.raises(ConfigError, match="key=value"):
        load_config({"data": {"name": "toy_data"}}, overrides=["train.max_epochs"], registries=regs)


# --- the same mistakes through the CLI: one paragraph, no traceback, exit 2 -------------------


def assert_user_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "musicfw run: error: " in result.stderr
    flat = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in flat, (needle, result.stderr)


def test_cli_missing_experiment_file(tmp_path):
    assert_user_error(run_cli("run", str(tmp_path / "nope.yaml")), "Experiment file not found", "nope.yaml")


def test_cli_malformed_yaml_reports_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntrain:\n  max_epochs: [1, 2\nseed: 3\n")
    assert_user_error(run_cli("run", str(path)), "Malformed YAML", "bad.yaml, line")


def test_cli_unknown_plugin_name(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("data: {name: no_such_corpus}\ntokenizer: {name: x}\nmodel: {name: y}\n")
    assert_user_error(run_cli("run", str(path)), "Unknown dataset 'no_such_corpus'", "Available datasets:")


def test_cli_unknown_key_and_wrong_type(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  max_epoch: 3\n")
    assert_user_error(run_cli("run", str(path)), "train.max_epoch", "line 2", "Allowed keys:", "max_epochs")
    path.write_text("train:\n  max_epochs: 3\n")
    assert_user_error(
        run_cli("run", str(path), "train.batch_size=big"), "train.batch_size", "'big'", "Integer"
    )


def test_cli_override_inside_a_sampler_chain_explains_itself(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        "data: {name: midi_folder, path: x}\ntokenizer: {name: remi}\nmodel: {name: markov}\n"
        "sampler:\n  - {name: temperature}\n  - {name: top_p}\n"
        f"output_dir: {tmp_path / 'runs'}\n"
    )
    assert_user_error(run_cli("run", str(path), "sampler.name=greedy"), "it is a list (a chain)", "sampler=[{name:")
    # a sampler that cannot draw the tokenizer's tokens fails before any run folder is made
    assert_user_error(run_cli("run", str(path), "sampler=[{name: bernoulli}]"), "cannot draw categorical tokens")
    assert not (tmp_path / "runs").exists()


def test_a_bad_data_path_leaves_no_run_folder(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"data: {{name: midi_folder, path: {tmp_path / 'nowhere'}}}\ntokenizer: {{name: remi}}\n"
        f"model: {{name: markov}}\noutput_dir: {tmp_path / 'runs'}\n"
    )
    assert_user_error(run_cli("run", str(path)), "MIDI folder not found", "nowhere")
    assert list((tmp_path / "runs").iterdir()) == []


def test_switching_the_logger_on_the_command_line_drops_the_files_other_logger_keys(tmp_path, regs):
    path = write(tmp_path, GOOD.replace("logger: {name: csv}", "logger: {name: wandb, project: mine, offline: true}"))
    assert load_config(path, registries=regs).logger.project == "mine"
    off = load_config(path, overrides=["logger.name=none"], registries=regs).logger
    assert dict(off) == {"name": "none", "log_every_n_steps": 10, "log_samples": True}
    # a key given on the command line for a logger that does not have it is still an error
    with pytest.raises(ConfigError, match=r"logger\.project.*Allowed keys: name"):
        load_config(path, overrides=["logger.name=none", "logger.project=x"], registries=regs)
