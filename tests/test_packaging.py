"""The wheel holds every package of the source tree (an editable install would hide a gap)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

from conftest import REPO

SKIP = shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "wandb")


def _source_packages() -> set[str]:
    """Every folder with an __init__.py under musicfw/, core/ and plugins/, as a dotted name."""
    mapping = {"musicfw": "musicfw", "core": "musicfw.core", "plugins": "musicfw.plugins"}
    names = set()
    for top, dotted in mapping.items():
        for init in (REPO / top).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / top).parts
            names.add(".".join((dotted, *rel)))
    return names


def test_wheel_contains_every_package_and_the_data(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=SKIP)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(src)],
        check=True,
    )
    wheel = next((tmp_path / "dist").glob("musicfw-*.whl"))
    files = set(zipfile.ZipFile(wheel).namelist())
    in_wheel = {name.rsplit("/", 1)[0].replace("/", ".") for name in files if name.endswith("/__init__.py")}
    missing = _source_packages() - in_wheel
    assert not missing, f"packages missing from pyproject's `packages` list: {sorted(missing)}"
    entry_points = next(n for n in files if n.endswith("entry_points.txt"))
    assert "musicfw = musicfw.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    data = [n for n in files if n.startswith("musicfw/plugins/datasets/data/")]
    folder = REPO / "plugins" / "datasets" / "data"
    shipped = sorted(p.name for p in [*folder.glob("*.json.gz"), *folder.glob("*.zip")])
    assert any(name.startswith("music21_") for name in shipped)  # the converted corpora
    assert sorted(n.rsplit("/", 1)[1] for n in data) == shipped
    assert "musicfw/plugins/listen/static/index.html" in files  # the listening-test page (package data)
    assert "musicfw/plugins/studio/static/index.html" in files  # the studio page (package data)


def test_the_minimum_lightning_accepts_weights_only_on_resume():
    """Resume passes `weights_only=True` to `Trainer.fit` (no code runs from a checkpoint on any
    supported torch); Lightning has that argument from 2.6 on, so the requirement must say so."""
    import inspect
    import re
    import pytorch_lightning as pl

    (spec,) = re.findall(r'"(pytorch-lightning[^"]*)"', (REPO / "pyproject.toml").read_text())
    minimum = tuple(int(x) for x in re.search(r">=\s*([\d.]+)", spec).group(1).split(".")[:2])
    assert minimum >= (2, 6), spec
    assert "weights_only" in inspect.signature(pl.Trainer.fit).parameters
