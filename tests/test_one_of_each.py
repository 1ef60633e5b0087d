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


# --------------------------------------------------------------------------------------------
# the atomic write
# --------------------------------------------------------------------------------------------

#: temporary *folders* published by one rename (not files): the token store of the token cache
#: (a rival process may have published the same folder first) and a listening study
FOLDER_RENAMES = {"musicfw/engine/data.py": 1, "plugins/listen/study.py": 1}


def _renames(path: Path) -> int:
    """Calls that move a file onto another name: os.replace / os.rename, Path.replace /
    Path.rename (one positional argument; str.replace takes two, dataclasses.replace keywords)."""
    n = 0
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in ("replace", "rename"):
            continue
        owner = node.func.value
        if isinstance(owner, ast.Name) and owner.id == "os":
            n += 1
        elif len(node.args) == 1 and not node.keywords and not (isinstance(owner, ast.Name) and owner.id == "dataclasses"):
            n += 1
    return n


def test_files_are_moved_into_place_only_by_the_atomic_write_helper():
    found = {_rel(p): n for p in _sources() if (n := _renames(p))}
    assert found.pop("core/atomic.py") == 1
    assert found == FOLDER_RENAMES, "write files with musicfw.core.atomic (atomic_write / atomic_path)"


def test_atomic_write_text_and_bytes(tmp_path):
    from musicfw.core.atomic import atomic_write

    text = tmp_path / "a.json"
    assert atomic_write(text, '{"a": 1}\n') == text
    assert text.read_text() == '{"a": 1}\n'
    atomic_write(text, "second\n")  # replaces
    assert text.read_text() == "second\n"
    blob = tmp_path / "b.bin"
    atomic_write(blob, b"\x00\x01MThd")
    assert blob.read_bytes() == b"\x00\x01MThd"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]  # no temporary left


def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path):
    from musicfw.core.atomic import atomic_write

    (tmp_path / "plain").write_text("x")
    atomic_write(tmp_path / "atomic", "x")
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777  # noqa: E731
    assert mode("atomic") == mode("plain")


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    from musicfw.core.atomic import atomic_path

    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".last.ckpt.") and tmp != target
            tmp.write_bytes(b"half")
            raise RuntimeError("killed half-way")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_atomic_path_names_are_unique_unless_shared_and_a_helper_does_not_publish(tmp_path):
    from musicfw.core.atomic import atomic_path

    target = tmp_path / "last.ckpt"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b  # two writers of one file never share a temporary
        a.write_bytes(b"a")
        b.write_bytes(b"b")
    assert target.read_bytes() == b"a"  # the last to finish wins, whole
    with atomic_path(target, unique=False, publish=False) as helper:
        helper.write_bytes(b"rank 1")
    assert helper == tmp_path / ".last.ckpt.tmp" and helper.read_bytes() == b"rank 1"
    with atomic_path(target, unique=False) as zero:
        assert zero == helper  # every rank names the same file; rank zero moves it into place
    assert target.read_bytes() == b"rank 1" and not helper.exists()


# --------------------------------------------------------------------------------------------
# no re-export shims
# --------------------------------------------------------------------------------------------


def _module_file(module: str) -> Path | None:
    """The source file of a musicfw module (pyproject's package-dir), None when there is none."""
    parts = module.split(".")
    if parts[0] != "musicfw":
        return None
    if len(parts) > 1 and parts[1] in ("core", "plugins"):
        base, rest = ROOT / parts[1], parts[2:]
    else:
        base, rest = ROOT / "musicfw", parts[1:]
    for candidate in (base.joinpath(*rest).with_suffix(".py") if rest else None, base.joinpath(*rest, "__init__.py")):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _defined(path: Path) -> set[str]:
    """Names a module defines itself (functions, classes, assignments), not names it imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _package_of(path: Path) -> str | None:
    rel = path.relative_to(ROOT).with_suffix("").parts
    if rel[0] not in ROOMS:
        return None
    parts = [*ROOMS[rel[0]].split("."), *rel[1:]]
    return ".".join(parts[:-1])  # a module's package; an __init__'s own package


def test_nothing_is_imported_through_a_module_that_only_re_exports_it():
    """``from musicfw.X import name`` names the module that defines ``name`` (musicfw's public
    API, ``musicfw/__init__``, aside): no shim keeps an old import path alive."""
    found = []
    for path in _sources(USERS):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                package = _package_of(path)
                if package is None:
                    continue
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "musicfw" or not module.startswith("musicfw."):
                continue
            source = _module_file(module)
            if source is None:
                continue
            defined = _defined(source)
            for alias in node.names:
                if alias.name not in defined and _module_file(f"{module}.{alias.name}") is None:
                    found.append(f"{_rel(path)}:{node.lineno}: {module}.{alias.name}")
    assert found == [], "import these from the module that defines them:\n" + "\n".join(found)
