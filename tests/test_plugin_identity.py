"""Plugin identity: the distribution and version of the package that provides each plugin
go into the token cache key (a re-versioned tokenizer re-tokenizes) and into an export."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from conftest import TEST_MIDI

TOKENIZER = """
    import os
    from dataclasses import dataclass

    import numpy as np

    from musicfw import hookimpl
    from musicfw.core.tokenizer import Tokenizer


    class LoggedPitches(Tokenizer):
        \"\"\"One token per note (its pitch); every encode call is logged to $PITCHLOG.\"\"\"

        name = "logged_pitches"

        @dataclass
        class Config:
            ticks: int = 240

        @property
        def vocab(self):
            return [f"Pitch_{p}" for p in range(128)]

        def encode(self, score):
            with open(os.environ["PITCHLOG"], "a") as log:
                log.write("encode\\n")
            notes = [t.notes.numpy() for t in score.tracks]
            pitch = np.concatenate([n["pitch"] for n in notes]).astype(np.int64)
            onset = np.concatenate([n["time"] for n in notes])
            return pitch[np.argsort(onset, kind="stable")]

        def decode(self, tokens):
            import symusic

            score, track = symusic.Score(480), symusic.Track("pitches")
            n = len(tokens)
            track.notes = symusic.Note.from_numpy(
                time=np.arange(n, dtype=np.int32) * self.config.ticks,
                duration=np.full(n, self.config.ticks, dtype=np.int32),
                pitch=np.asarray(tokens, dtype=np.int8), velocity=np.full(n, 80, dtype=np.int8))
            score.tracks.append(track)
            return score


    @hookimpl
    def musicfw_register_tokenizers(registry):
        registry.add(LoggedPitches)
"""


def _install(site: Path, version: str) -> None:
    """The distribution `logged-pitches` at ``version`` (a dist-info with an entry point)."""
    for old in site.glob("logged_pitches-*.dist-info"):
        shutil.rmtree(old)
    (site / "logged_pitches.py").write_text(textwrap.dedent(TOKENIZER))
    info = site / f"logged_pitches-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: logged-pitches\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[musicfw]\nlogged_pitches = logged_pitches\n")


@pytest.mark.parametrize("fmt", ["cache", "shards"])
def test_a_re_versioned_tokenizer_plugin_re_tokenizes(tmp_path, monkeypatch, capsys, fmt):
    """`musicfw data prepare` (in this process: each call loads the plugins afresh, reading
    the installed distribution's version again)."""
    from musicfw.cli import main

    site, log = tmp_path / "site", tmp_path / "encode.log"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    for key, value in {"PYTHONPATH": str(site), "PITCHLOG": str(log), "MUSICFW_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(key, value)
    folder = TEST_MIDI / "one_track"
    n_files = len(list(folder.glob("*.mid")))

    def prepare() -> int:
        """`musicfw data prepare` with the plugin's tokenizer; returns the number of encodes."""
        before = len(log.read_text().splitlines()) if log.exists() else 0
        code = main(["data", "prepare", "midi_folder", f"path={folder}", f"format={fmt}",
                     "--tokenizer", "logged_pitches", "--json", "--quiet", "--workers", "1"])
        out = capsys.readouterr()
        assert code == 0, out.err[-3000:]
        assert json.loads(out.out)["pieces"] > 0
        return len(log.read_text().splitlines()) - before

    _install(site, "1.0")
    assert prepare() >= n_files - 1  # tokenized (a file may be refused by the loader)
    assert prepare() == 0  # the same plugin version: the cached tokens are reused
    _install(site, "1.1")
    assert prepare() >= n_files - 1  # a new version of the tokenizer's package: tokenized again
    assert prepare() == 0


def test_plugin_identity_of_built_ins_and_unregistered_classes():
    import musicfw
    from musicfw.core.registry import plugin_identity
    from musicfw.engine.encoding import tokenizer_fingerprint

    tok = musicfw.build_tokenizer("remi")
    assert plugin_identity(tok) == {"distribution": "musicfw", "version": musicfw.__version__}
    assert tokenizer_fingerprint(tok)["plugin"] == plugin_identity(tok)

    class Unregistered:
        pass

    assert plugin_identity(Unregistered()) == {"distribution": None, "version": None}
