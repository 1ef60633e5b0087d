"""Corpus preparation without repeated work (issue 31): each piece is checked against the
limits once per file however many times the loader, the tokenizer's encode and its coverage
ask, a piece edited since its check is checked again, and the folder listing (os.scandir
strings) finds and orders the same files as pathlib's rglob did."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import symusic

from musicfw.core.build import build
from musicfw.engine.encoding import encode_piece
from musicfw.music import limits as limits_mod
from musicfw.music.limits import Limits, PieceTooLarge, check_piece

from conftest import TEST_MIDI


def _one_midi() -> Path:
    return sorted((Path(TEST_MIDI) / "one_track").glob("*.mid"))[0]


def test_each_piece_is_checked_once_per_file(monkeypatch):
    """The shard worker's path (read_source, encode, coverage) used to run the whole
    check_piece 4 times per file (profiled); now the timing and size checks run once."""
    calls = []
    real = limits_mod.check_timing
    monkeypatch.setattr(limits_mod, "check_timing", lambda score: (calls.append(1), real(score))[1])
    path = _one_midi()
    dataset = build("datasets", "midi_folder", path=str(path.parent))
    tokenizer = build("tokenizer", "remi")
    pieces, skipped = dataset.read_source(str(path), path.name)
    assert pieces and not skipped
    coverage = {"notes": 0, "dropped": 0, "reasons": {}}
    arr, reason = encode_piece(tokenizer, pieces[0], tokenizer.kind, tokenizer.vocab_size, coverage)
    assert reason is None and len(arr) > 0 and coverage["notes"] > 0
    assert len(calls) == 1


def test_a_piece_edited_after_its_check_is_checked_again():
    score = symusic.Score(str(_one_midi()))
    n = int(score.note_num())
    limits = Limits(max_notes=n)
    assert check_piece(score, limits, allow_cut=False) is score
    track = next(t for t in score.tracks if len(t.notes))
    track.notes.append(symusic.Note(0, 10, 60, 64))  # now one note over the limit
    with pytest.raises(PieceTooLarge, match="max_notes"):
        check_piece(score, limits, allow_cut=False)
    # other limits: checked against those, not answered from the memory
    score2 = symusic.Score(str(_one_midi()))
    assert check_piece(score2, Limits(max_notes=n), allow_cut=False) is score2
    with pytest.raises(PieceTooLarge):
        check_piece(score2, Limits(max_notes=n - 1), allow_cut=False)


def _pathlib_listing(root: Path, suffixes, recursive: bool) -> list[tuple[str, str]]:
    pattern = root.rglob("*") if recursive else root.glob("*")
    files = sorted((p for p in pattern if p.suffix.lower() in suffixes and p.is_file()),
                   key=lambda p: p.relative_to(root).as_posix())
    return [(str(p), p.relative_to(root).as_posix()) for p in files]


@pytest.mark.parametrize("recursive", [True, False])
def test_the_folder_listing_matches_pathlib(tmp_path, recursive):
    data = _one_midi().read_bytes()
    for rel in ("b.mid", "A.MID", "a/z.midi", "a/b/c.kar", "a-b/x.mid", "a b/y.mid", ".hidden/h.mid",
                "notes.txt", "a/readme.md", "z/.dot.mid"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    (tmp_path / "folder.mid").mkdir()  # a folder with a MIDI suffix is no file
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "linked.mid").write_bytes(data)
    os.symlink(elsewhere, tmp_path / "link")  # a symlinked folder is not entered (as rglob)
    os.symlink(elsewhere / "linked.mid", tmp_path / "filelink.mid")  # a symlinked file counts
    dataset = build("datasets", "midi_folder", path=str(tmp_path), recursive=recursive)
    expected = _pathlib_listing(tmp_path, dataset.suffixes(), recursive)
    assert dataset.sources() == expected
    assert [str(p) for p in dataset.files()[1]] == [full for full, _ in expected]
    assert ("filelink.mid" in [rel for _, rel in expected]) and not any(r.startswith("link/") for _, r in expected)
    limited = build("datasets", "midi_folder", path=str(tmp_path), recursive=recursive, max_files=2)
    assert limited.sources() == expected[:2]
