"""One of each thing (docs: DESIGN's seam rules): one lookup of musicfw's version, one atomic
write, no re-export shims.  Checked statically over every source file, so a second copy added
later fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package it installs as (pyproject's package-dir)
ROOMS = {"core": "musicfw.core", "musicfw": "musicfw", "plugins": "musicfw.plugins"}
#: folders whose files import musicfw as users do
USERS = ("core", "musicfw", "plugins", "tests", "benchmarks", "scripts", "examples")


def _sources(folders=tuple(ROOMS)) -> list[Path]:
    return [p for f in folders for p in sorted((ROOT / f).rglob("*.py")) if ".venv" not in p.parts]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --------------------------------------------------------------------------------------------
# musicfw's version
# --------------------------------------------------------------------------------------------

_VERSION_LOOKUP = re.compile(r"""version\(\s*["']musicfw["']\s*\)""")


def test_musicfw_version_is_looked_up_in_one_place():
    here = Path(__file__).resolve()  # this test compares with importlib.metadata itself
    found = sorted(_rel(p) for p in _sources(USERS) if p != here and _VERSION_LOOKUP.search(p.read_text()))
    assert found == ["core/version.py"], f"look musicfw's version up with musicfw.core.version.musicfw_version(): {found}"


def test_every_place_that_shows_the_version_shows_the_same_one(capsys):
    from importlib import metadata

    import musicfw
    from musicfw.cli import build_parser
    from musicfw.core.version import musicfw_version

    assert musicfw_version() == metadata.version("musicfw") == musicfw.__version__ != "0+unknown"
    with pytest.raises(SystemExit):
        build_parser(registries=musicfw.get_registries()).parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"musicfw {musicfw_version()}"


def test_the_version_of_a_source_tree_without_install_is_unknown(monkeypatch):
    from importlib import metadata

    from musicfw.core import version

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    version.musicfw_version.cache_clear()
    try:
        with monkeypatch.context() as m:
            m.setattr(version.metadata, "version", missing)
            assert version.musicfw_version() == "0+unknown"
    finally:
        version.musicfw_version.cache_clear()
    assert version.musicfw_version() == metadata.version("musicfw")
