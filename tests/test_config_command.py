"""``musicfw config``: every non-plugin key documented from the validating dataclasses, and
docs/config.md is its current --markdown output."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from conftest import run_cli

from musicfw.engine import config as cfg
from musicfw.cli.commands.config import describe_sections, to_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs" / "config.md"
SECTIONS = (cfg.TrainSection, cfg.GenerateSection, cfg.EvaluateSection, cfg.LoggerSection, cfg.AugmentSection)


def test_every_section_key_is_documented_with_help():
    described = {s["section"]: {f["key"]: f for f in s["fields"]} for s in describe_sections()}
    hints = typing.get_type_hints(cfg.Experiment)
    for f in dataclasses.fields(cfg.Experiment):
        if dataclasses.is_dataclass(hints[f.name]):
            keys = {g.name for g in dataclasses.fields(hints[f.name])}
            assert set(described[f.name]) == keys
            for key in keys:
                assert described[f.name][key]["help"], f"{f.name}.{key} has no help"
        else:
            assert described["(top level)"][f.name]["help"], f"{f.name} has no help"
    gen = described["generate"]
    assert gen["max_seconds"]["type"] == "float | null" and gen["n"]["default"] == 8
    assert described["train"]["lr_schedule"]["choices"] == ["constant", "cosine", "plateau"]
    assert described["augment"]["transpose"]["default"] == [0, 0]


def test_docs_config_md_is_the_generated_output():
    assert DOCS.read_text() == to_markdown(describe_sections()), (
        "docs/config.md is stale: run `musicfw config --markdown > docs/config.md`"
    )


def test_the_cli_prints_a_section_and_refuses_an_unknown_one():
    proc = run_cli("config", "generate")
    assert proc.returncode == 0, proc.stderr
    assert "max_seconds: float | null = null" in proc.stdout and "train:" not in proc.stdout
    bad = run_cli("config", "generat")
    assert bad.returncode == 2 and "no section 'generat'" in bad.stderr and "Traceback" not in bad.stderr


def test_every_markdown_table_row_has_five_cells():
    import re

    rows = [line for line in to_markdown(describe_sections()).splitlines() if line.startswith("| `")]
    assert len(rows) > 40
    for row in rows:
        assert len(re.findall(r"(?<!\\)\|", row)) == 6, row  # an unescaped | would add a cell
