"""A stranger's exported model folder (issue 30, class 1): every hostile variant of
``config.json``, ``tokenizer.json``, ``vocab.json`` and ``model.safetensors`` is one clear error
naming the file (and key), found before anything the folder describes is allocated; file
references in a folder are never followed.  The folders are made here (tests/folder_factory.py),
without training; test_hostile_corpus.py runs the same cases under a 4 GiB address-space cap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import musicfw
from musicfw.cli import main
from musicfw.core.errors import ConfigError
from musicfw.engine import safejson

from folder_factory import CLASS1_CASES, CLASS1_DROPPED, export_tiny

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    return {m: export_tiny(root / m, m) for m in ("lstm", "transformer", "markov")}


def _case(bases, tmp_path, model, edit) -> tuple[Path, Path]:
    folder, outside = tmp_path / "model", tmp_path / "outside"
    shutil.copytree(bases[model], folder)
    outside.mkdir()
    edit(folder, outside)
    return folder, outside


def _generate(folder: Path, out: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        rc = main(["generate", "--model", str(folder), "--seed", "1", "--no-audio", "--out", str(out)])
    except SystemExit as exc:  # argparse
        rc = exc.code
    captured = capsys.readouterr()
    return rc, " ".join((captured.out + captured.err).split())


@pytest.mark.parametrize("name", sorted(CLASS1_CASES))
def test_hostile_folder_is_one_clear_error(name, bases, tmp_path, capsys):
    model, edit, fragments = CLASS1_CASES[name]
    folder, _ = _case(bases, tmp_path, model, edit)
    rc, text = _generate(folder, tmp_path / "out", capsys)
    assert rc == 2, text[-2000:]
    assert "Traceback" not in text
    for fragment in fragments:
        assert fragment in text, (fragment, text[-2000:])
    assert "secret" not in text  # the MidiTok config_file beside the folder was never read
    assert not (tmp_path / "out").exists()


def test_the_untouched_folders_generate_and_load(bases, tmp_path, capsys):
    for model, folder in bases.items():
        rc, text = _generate(folder, tmp_path / model, capsys)
        assert rc == 0, text[-2000:]
        assert "note:" not in text


def test_a_folder_never_reads_a_file_it_names(bases, tmp_path, capsys):
    """config.json's generate.prompt / soundfont name files beside the folder: dropped with a
    note; the sample continues nothing (the same sample as the folder without them)."""
    rc_plain, _ = _generate(bases["lstm"], tmp_path / "plain", capsys)
    for name, (model, edit) in CLASS1_DROPPED.items():
        case = tmp_path / name
        case.mkdir()
        folder, outside = _case(bases, case, model, edit)
        rc, text = _generate(folder, case / "out", capsys)
        assert rc == 0 and "Traceback" not in text, text[-2000:]
        record = json.loads((case / "out" / "generation.json").read_text())
        assert record["settings"]["prompt"] is None
        if name.startswith("prompt"):
            assert "generate.prompt" in text and "ignored" in text
            assert "/etc/hostname" not in text or "ignored" in text
            same = (case / "out" / "sample_000.mid").read_bytes() == (tmp_path / "plain" / "sample_000.mid").read_bytes()
            assert same, "the prompt named by config.json changed the sample"
    assert rc_plain == 0


def test_shapes_are_checked_before_the_model_is_allocated(bases, tmp_path, monkeypatch):
    """The model is first built on the meta device: a config.json that describes a 1 TB LSTM
    with the tiny model's weights is refused without one real parameter being made."""
    folder, _ = _case(bases, tmp_path, "lstm", CLASS1_CASES["lstm_at_every_ceiling"][1])
    from musicfw.plugins.models.lstm import model as lstm_model

    made = []
    real_init = lstm_model.LSTMModel.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(next(self.parameters()).device.type)

    monkeypatch.setattr(lstm_model.LSTMModel, "__init__", spy)
    with pytest.raises(ConfigError, match="do not fit"):
        musicfw.load_pretrained(folder)
    assert made == ["meta"]


def test_the_shape_check_consumes_no_random_numbers(bases):
    """Loading draws exactly the random numbers one CPU build of the model draws (as before
    the meta-device check), so seeded code after load_pretrained is unchanged."""
    doc = json.loads((bases["transformer"] / "config.json").read_text())
    params = {k: v for k, v in doc["model"].items() if k != "name"}
    torch.manual_seed(7)
    musicfw.build("model", "transformer", tokenizer=musicfw.build_tokenizer("remi"), **params)
    expected = torch.rand(3)
    torch.manual_seed(7)
    model, _ = musicfw.load_pretrained(bases["transformer"])
    assert torch.equal(torch.rand(3), expected)
    assert next(model.parameters()).device.type == "cpu"


def test_bounded_json_counts_brackets_outside_strings_only(tmp_path):
    assert safejson.structure(b'{"a": "[[[[{{{{", "b": [1, [2, {"c": "\\"]]]"}]]}') == (4, 4)
    assert safejson.loads('{"a": [1, 2]}', "x") == {"a": [1, 2]}
    with pytest.raises(ConfigError, match="x nests 65 levels deep"):
        safejson.loads("[" * 65 + "]" * 65, "x")
    with pytest.raises(ConfigError, match="holds 11 JSON objects/arrays"):
        safejson.loads("[" + ",".join(["[]"] * 10) + "]", "x", max_containers=10)
    with pytest.raises(ConfigError, match="is not valid JSON"):
        safejson.loads("{", "x")
    path = tmp_path / "big.json"
    path.write_text("[" + " " * 100 + "]")
    with pytest.raises(ConfigError, match="allowed for the thing"):
        safejson.read(path, "the thing", 50)


def test_token_rates_from_a_folder_keep_only_positive_finite_numbers(tmp_path):
    from musicfw.engine.budget import RATES_FILE, load_rates, token_budget

    (tmp_path / RATES_FILE).write_text('{"tokens_per_second": NaN, "tokens_per_bar": -3, "tokens_per_second_p90": 1e400}')
    rates = load_rates(tmp_path)
    assert rates == {}
    assert token_budget(None, 4, 10.0, rates)[0] >= 1  # the default, not a traceback
    (tmp_path / RATES_FILE).write_text("[" * 100_000 + "]" * 100_000)
    assert load_rates(tmp_path) is None


def test_markov_tables_are_checked_when_loaded():
    from musicfw.plugins.models.markov.model import MarkovModel

    rng = np.random.default_rng(0)
    model = MarkovModel(7, "categorical", order=2).fit_sequences([rng.integers(0, 7, size=30) for _ in range(5)])
    state = model.state_dict()
    extra = state["_extra_state"]
    clone = MarkovModel(7, "categorical", order=2)
    clone.load_state_dict(state)  # the real tables load
    for change, message in (
        (lambda a: a.pop("o2_ptr"), "o2_ptr is missing"),
        (lambda a: a.__setitem__("o1_keys", a["o1_keys"][::-1].copy()), "o1_keys is not sorted"),
        (lambda a: a.__setitem__("o1_pairs", a["o1_pairs"] + 10**9), "o1_pairs points outside"),
        (lambda a: a.__setitem__("bogus", a["unigram"]), "unknown table bogus"),
    ):
        arrays = {k: v.numpy().copy() for k, v in extra["arrays"].items()}
        change(arrays)
        with pytest.raises(ValueError, match=message):
            MarkovModel(7, "categorical", order=2).load_state_dict({"_extra_state": {**extra, "arrays": arrays}})


def test_a_model_that_cannot_be_built_on_meta_is_checked_after_its_cpu_build(bases, tmp_path, monkeypatch):
    """A third-party model whose __init__ fails on the meta device still loads (its Config bounds
    held), and a folder whose weights do not fit it is still refused before loading."""
    from musicfw.plugins.models.lstm import model as lstm_model

    real_init = lstm_model.LSTMModel.__init__

    def picky(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        if next(self.parameters()).device.type == "meta":
            raise NotImplementedError("this model reads its weights while it is built")

    monkeypatch.setattr(lstm_model.LSTMModel, "__init__", picky)
    model, _ = musicfw.load_pretrained(bases["lstm"])
    assert next(model.parameters()).device.type == "cpu"
    folder, _ = _case(bases, tmp_path, "lstm", CLASS1_CASES["hidden_size_fits_bounds_not_weights"][1])
    with pytest.raises(ConfigError, match="head.weight has shape"):
        musicfw.load_pretrained(folder)
