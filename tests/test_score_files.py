"""``midi_folder`` reads MusicXML, ABC and Humdrum files: converted once (symusic for ABC,
music21 for the rest), cached by content hash, broken files skipped with a reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import musicfw
from musicfw.plugins.datasets import scorefiles

from conftest import TEST_MIDI, run_cli

XML_PITCHES = [60, 64, 67, 72, 71, 67]

FOLK_ABC = """%abc-2.1
A:Nowhere

X:1
T:First tune
M:4/4
L:1/8
K:G
GABc dedB|dedB dedB|

X:2
T:Second tune
M:3/4
L:1/4
K:D
D E F|A B c|d3|
"""

HALF_BROKEN_ABC = """X:1
T:Fine
M:2/4
L:1/4
K:C
C D|E F|

X:2
T:No key field
M:2/4
CDEF|
"""


def _write_xml(folder: Path) -> None:
    from music21 import metadata, meter, note, stream

    score = stream.Score()
    part = stream.Part()
    part.partName = "Flute"
    part.append(meter.TimeSignature("3/4"))
    for name in ("C4", "E4", "G4", "C5", "B4", "G4"):
        part.append(note.Note(name, quarterLength=1))
    score.insert(0, part)
    score.metadata = metadata.Metadata(title="Tiny XML")
    # mxl first: music21 writes a .musicxml next to it on the way and removes it
    score.write("mxl", fp=str(folder / "compressed.mxl"))
    score.write("musicxml", fp=str(folder / "tune.musicxml"))


@pytest.fixture
def score_dir(tmp_path):
    folder = tmp_path / "scores"
    (folder / "sub").mkdir(parents=True)
    _write_xml(folder)
    (folder / "sub" / "folk.abc").write_text(FOLK_ABC)
    (folder / "half.abc").write_text(HALF_BROKEN_ABC)
    (folder / "tiny.krn").write_text("**kern\n*M4/4\n4c\n4d\n4e\n4f\n=\n*-\n")
    shutil.copy(TEST_MIDI / "one_track" / "POP909_008.mid", folder / "song.mid")
    # broken ones
    (folder / "broken.musicxml").write_text("<score-partwise><oops")
    (folder / "garbage.abc").write_bytes(b"garbage \x00 not abc at all")
    (folder / "empty.xml").write_bytes(b"")
    return folder


def _load(folder: Path, cache: Path, **params):
    ds = musicfw.build_dataset("midi_folder", path=str(folder), cache_dir=str(cache), num_workers=1, **params)
    return ds.load(seed=0, progress=False)


def _notes(score):
    return [(n.time, n.pitch) for t in score.tracks for n in t.notes]


def test_musicxml_abc_and_kern_become_pieces_and_broken_files_are_skipped_with_reasons(score_dir, tmp_path):
    data = _load(score_dir, tmp_path / "cache")
    by_id = {p.id: p for p in data.pieces()}
    assert set(by_id) == {
        "compressed.mxl", "tune.musicxml", "sub/folk.abc#1", "sub/folk.abc#2", "half.abc#1", "tiny.krn", "song.mid",
    }
    tpq = by_id["tune.musicxml"].score.ticks_per_quarter
    assert _notes(by_id["tune.musicxml"].score) == [(i * tpq, p) for i, p in enumerate(XML_PITCHES)]
    assert _notes(by_id["compressed.mxl"].score) == _notes(by_id["tune.musicxml"].score)
    assert by_id["tune.musicxml"].title == "Tiny XML"
    ts = by_id["tune.musicxml"].score.time_signatures[0]
    assert (ts.numerator, ts.denominator) == (3, 4)
    # ABC through symusic, one piece per tune, the tune's own title and metre
    second = by_id["sub/folk.abc#2"]
    assert [p for _, p in _notes(second.score)] == [62, 64, 66, 69, 71, 73, 74]  # K:D
    assert second.title == "Second tune" and second.score.time_signatures[0].numerator == 3
    assert by_id["sub/folk.abc#1"].score.note_num() == 16
    assert by_id["sub/folk.abc#1"].split == second.split  # tunes of one file share a split
    assert [p for _, p in _notes(by_id["tiny.krn"].score)] == [60, 62, 64, 65]
    reasons = {Path(path).name: reason for path, reason in data.skipped}
    assert set(reasons) == {"broken.musicxml", "garbage.abc", "empty.xml", "half.abc#2"}
    assert reasons["broken.musicxml"].startswith("music21 could not convert it: ")
    assert "K:" in reasons["garbage.abc"] and "K:" in reasons["half.abc#2"]
    assert reasons["empty.xml"] == "empty file"


def test_conversion_happens_once_per_file_content(score_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = _load(score_dir, cache)
    calls = []
    real = scorefiles.convert_file

    def counting(job):
        calls.append(Path(job[1]).name)
        return real(job)

    monkeypatch.setattr(scorefiles, "convert_file", counting)
    again = _load(score_dir, cache)
    assert calls == []  # every file, the broken ones too, came from the cache
    assert [(p.id, _notes(p.score)) for p in again.pieces()] == [(p.id, _notes(p.score)) for p in first.pieces()]
    assert again.skipped == first.skipped
    # a moved file is not converted again; an edited one is
    (score_dir / "tiny.krn").rename(score_dir / "sub" / "moved.krn")
    (score_dir / "sub" / "folk.abc").write_text(FOLK_ABC.replace("d3|", "d2 e|"))
    moved = _load(score_dir, cache)
    assert calls == ["folk.abc"]
    assert "sub/moved.krn" in {p.id for p in moved.pieces()}
    assert {p.id: p for p in moved.pieces()}["sub/folk.abc#2"].score.note_num() == 8


def test_parallel_conversion_gives_the_same_pieces(score_dir, tmp_path):
    one = _load(score_dir, tmp_path / "c1")
    ds = musicfw.build_dataset("midi_folder", path=str(score_dir), cache_dir=str(tmp_path / "c2"), num_workers=2)
    two = ds.load(seed=0, progress=False)
    assert [(p.id, _notes(p.score)) for p in two.pieces()] == [(p.id, _notes(p.score)) for p in one.pieces()]
    assert sorted(two.skipped) == sorted(one.skipped)


def test_scores_can_be_switched_off(score_dir, tmp_path):
    data = _load(score_dir, tmp_path / "cache", scores=False)
    assert [p.id for p in data.pieces()] == ["song.mid"] and data.skipped == []
    assert not (tmp_path / "cache").exists()


def test_abc_splitting_keeps_the_header_fields():
    tunes = scorefiles.split_abc(FOLK_ABC)
    assert [n for n, _ in tunes] == ["1", "2"]
    assert tunes[1][1].startswith("A:Nowhere\nX:2\n") and "%abc" not in tunes[1][1]
    assert scorefiles.split_abc("K:C\nCDEF|\n") == [("1", "X:1\nK:C\nCDEF|\n")]


def test_data_prepare_lists_a_reason_for_every_skip(score_dir, tmp_path):
    result = run_cli("data", "prepare", "midi_folder", f"path={score_dir}", f"cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "7 pieces" in out and "skipped: 4 files" in out
    for name, reason in (
        ("broken.musicxml", "music21 could not convert it"),
        ("garbage.abc", "symusic/abc2midi could not read it"),
        ("half.abc#2", "symusic/abc2midi could not read it"),
        ("empty.xml", "empty file"),
    ):
        assert f"{score_dir / name}: {reason}" in out
