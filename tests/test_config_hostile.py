"""Hostile or careless experiment files and overrides: one paragraph, exit 2, no traceback, no
run folder left behind, in seconds."""

from __future__ import annotations

import pytest

from conftest import run_cli

GOOD = """\
name: t
data: {name: bach_chorales, max_count: 5}
tokenizer: {name: remi}
model: {name: markov, order: 1}
logger: {name: none}
"""

LSTM = GOOD.replace("{name: markov, order: 1}", "{name: lstm, hidden_size: 8, num_layers: 1, embed_dim: 8}")

BILLION_LAUGHS = """\
name: t
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _check(tmp_path, result, *needles):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    flat = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in flat, (needle, flat)
    out = tmp_path / "runs"
    assert not out.exists() or not any(out.iterdir()), "a user mistake left a run folder"


CASES = {
    "billion_laughs": (BILLION_LAUGHS, [], ["expands to more than"]),
    "recursive": ("name: t\na: &a [1, *a]\n" + GOOD.split("\n", 1)[1], [], ["cannot be read", "Malformed"]),
    "deep": ("name: t\nx: " + "[" * 3000 + "]" * 3000 + "\n", [], ["deep"]),
    "lr_nan": (GOOD, ["train.lr=nan"], ["train.lr must be a finite number > 0"]),
    "lr_negative": (GOOD, ["train.lr=-1"], ["train.lr must be a finite number > 0"]),
    "generate_n_zero": (GOOD, ["generate.n=0"], ["generate.n must be an integer >= 1"]),
    "missing_interpolation": (GOOD.replace("name: t\n", "name: ${nope.key}\n"), [], ["interpolation"]),
    "missing_env": (GOOD.replace("name: t\n", "name: ${oc.env:MUSICFW_SURELY_UNSET}\n"), [], ["interpolation"]),
    "markov_order_zero": (GOOD, ["model.order=0"], ["model"]),
    "missing_prompt": (GOOD, ["generate.prompt=/nonexistent/prompt.mid"], ["generate.prompt", "no such file"]),
    "seed_out_of_range": (GOOD, ["seed=-5"], ["seed must be in 0..4294967295"]),
    # hardware settings Lightning refuses: found before the run folder, not after it exists
    "fsdp_on_cpu": (LSTM, ["train.strategy=fsdp", "train.accelerator=cpu"], ["train.strategy=fsdp", "requires a GPU"]),
    "no_gpu_here": (LSTM, ["train.accelerator=gpu"], ["train.accelerator=gpu", "gpu"]),
    "unknown_strategy": (LSTM, ["train.strategy=nope"], ["train.strategy=nope", "invalid strategy"]),
    "lstm_hidden_size_zero": (LSTM, ["model.hidden_size=0"], ["model"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_or_careless_config_is_one_clear_error(tmp_path, case):
    text, overrides, needles = CASES[case]
    exp = tmp_path / "exp.yaml"
    exp.write_text(text)
    result = run_cli("run", str(exp), f"output_dir={tmp_path / 'runs'}", *overrides, timeout=120)
    if case == "recursive":  # PyYAML may refuse it itself, or we do: both are one paragraph
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        return
    _check(tmp_path, result, *needles)


def test_a_non_utf8_file_and_an_output_dir_that_is_a_file(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_bytes(GOOD.encode() + b"# caf\xe9\n")
    _check(tmp_path, run_cli("run", str(exp), f"output_dir={tmp_path / 'runs'}"), "not UTF-8")
    exp.write_text(GOOD)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    result = run_cli("run", str(exp), f"output_dir={blocker}", "data.max_count=3")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "output_dir" in result.stderr


def test_a_limits_section_is_checked_at_load_and_applied_to_the_run(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(GOOD + "limits: {max_notes: nope}\n")
    _check(tmp_path, run_cli("run", str(exp), f"output_dir={tmp_path / 'runs'}"), "limits")
    exp.write_text(GOOD + "limits: {max_notes: 5}\n")  # every chorale has more than 5 notes
    result = run_cli("run", str(exp), f"output_dir={tmp_path / 'runs'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "max_notes" in result.stderr
