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
    real = scorefiles._convert_all

    def counting(cache_, todo, workers, progress):  # conversions run in worker processes: count here
        calls.extend(Path(job[1]).name for job in todo)
        return real(cache_, todo, workers, progress)

    monkeypatch.setattr(scorefiles, "_convert_all", counting)
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


# --------------------------------------------------------------------------------------------
# hostile score files (issue 30, class 3): bounded unpacking, time and memory per conversion
# --------------------------------------------------------------------------------------------


def _skips(data) -> dict[str, str]:
    return {Path(path).name: reason for path, reason in data.skipped}


def test_an_mxl_that_unpacks_past_the_limit_is_refused_before_unpacking(tmp_path):
    import zipfile

    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "tune.abc").write_text(HALF_BROKEN_ABC.split("\n\nX:2")[0] + "\n")
    with zipfile.ZipFile(folder / "bomb.mxl", "w", zipfile.ZIP_DEFLATED) as zf:  # ~80 KB on disk
        zf.writestr("score.xml", b"\0" * (scorefiles.MAX_FILE_BYTES + 2**20))
    assert (folder / "bomb.mxl").stat().st_size < 2**20
    data = _load(folder, tmp_path / "c")
    reason = _skips(data)["bomb.mxl"]
    assert "unpacks to" in reason and f"{scorefiles.MAX_FILE_BYTES:,}" in reason
    assert [p.id for p in data.pieces()] == ["tune.abc"]


@pytest.mark.parametrize("length", ["2147483647", "4097", "99999999999999999999"])
def test_an_abc_note_too_long_for_abc2midi_is_refused_not_cut(tmp_path, length):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "long.abc").write_text(f"X:1\nT:Long\nL:1/8\nK:C\nC{length} D|\n\nX:2\nT:Fine\nL:1/8\nK:C\nCDEF|\n")
    data = _load(folder, tmp_path / "c")
    reason = _skips(data)["long.abc#1"]
    assert f"{length[:12]}" in reason and "unit lengths" in reason
    assert [p.id for p in data.pieces()] == ["long.abc#2"]


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 10**12), note=st.sampled_from(["C", "^f'", "_B,,", "z", "x", "Z", "=c"]),
       decoration=st.sampled_from(["", '"C"', "!trill!", "[K:G]", "%C99999 comment"]))
def test_the_abc_length_check_refuses_exactly_the_notes_past_the_bound(n, note, decoration):
    line = f"{decoration}{note}{n} D2|" if not decoration.startswith("%") else f"{note}{n} D2| {decoration}"
    problem = scorefiles.abc_length_problem(f"X:1\nL:1/8\nK:C\n{line}\n")
    assert (problem is not None) == (n > scorefiles.MAX_ABC_LENGTH), (line, problem)


def _misbehave(path: str):
    """Stands in for music21 in the worker (inherited through fork): one file hangs, one
    allocates without end, one kills its process."""
    import os
    import time

    name = Path(path).name
    if name == "slow.krn":
        time.sleep(600)
    if name == "hog.krn":
        blocks = []
        while True:
            blocks.append(bytearray(2**28))
    if name == "dies.krn":
        os._exit(9)
    return REAL_CONVERT(path)


REAL_CONVERT = scorefiles._convert_music21


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the stand-in reaches workers through fork")
def test_a_slow_a_greedy_and_a_crashing_conversion_are_skipped_and_do_not_stall_the_rest(tmp_path, monkeypatch):
    import time

    folder = tmp_path / "s"
    folder.mkdir()
    for name in ("slow.krn", "hog.krn", "dies.krn", "fine.krn"):
        (folder / name).write_text(f"!! {name}\n**kern\n*M4/4\n4c\n4d\n4e\n4f\n=\n*-\n")
    monkeypatch.setattr(scorefiles, "_convert_music21", _misbehave)
    monkeypatch.setattr(scorefiles, "CONVERSION_SECONDS", 5.0)
    monkeypatch.setattr(scorefiles, "CONVERSION_BYTES", 2**30)
    t0 = time.monotonic()
    data = _load(folder, tmp_path / "c")
    assert time.monotonic() - t0 < 60
    reasons = _skips(data)
    assert "took longer than 5 s" in reasons["slow.krn"]
    assert "1 GiB of memory" in reasons["hog.krn"]
    assert "died" in reasons["dies.krn"]
    assert [p.id for p in data.pieces()] == ["fine.krn"]
    calls = []
    real = scorefiles._convert_all

    def counting(cache_, todo, workers, progress):
        calls.extend(sorted(Path(job[1]).name for job in todo))
        return real(cache_, todo, workers, progress)

    monkeypatch.setattr(scorefiles, "_convert_all", counting)
    monkeypatch.setattr(scorefiles, "_convert_music21", REAL_CONVERT)
    again = _load(folder, tmp_path / "c")  # what hit a bound was not cached: tried again
    assert calls == ["dies.krn", "hog.krn", "slow.krn"]
    assert sorted(p.id for p in again.pieces()) == ["dies.krn", "fine.krn", "hog.krn", "slow.krn"]


def test_a_converted_score_cache_entry_that_fails_its_checks_is_converted_again(score_dir, tmp_path, monkeypatch):
    """Issue 30, class 9: the cached MIDI of a converted score carries its sha256, and its name
    must be the one it was written as (no path read from the cache is followed)."""
    import json

    cache = tmp_path / "cache"
    first = _load(score_dir, cache)
    folder = scorefiles.ScoreCache(cache).dir
    metas = sorted(folder.glob("*/*.json"))
    (mid,) = [m for m in folder.glob("*/*.mid") if m.name.startswith(_key(score_dir / "tiny.krn"))]
    mid.write_bytes(mid.read_bytes()[:-3] + b"\x00\x00\x00")  # altered on disk
    meta = next(m for m in metas if m.name.startswith(_key(score_dir / "tune.musicxml")))
    entry = json.loads(meta.read_text())
    outside = tmp_path / "outside.mid"
    shutil.copy(TEST_MIDI / "one_track" / "POP909_008.mid", outside)
    entry["pieces"][0]["midi"] = str(outside)
    meta.write_text(json.dumps(entry))
    calls = []
    real = scorefiles._convert_all

    def counting(cache_, todo, workers, progress):
        calls.extend(sorted(Path(job[1]).name for job in todo))
        return real(cache_, todo, workers, progress)

    monkeypatch.setattr(scorefiles, "_convert_all", counting)
    again = _load(score_dir, cache)
    assert calls == ["tiny.krn", "tune.musicxml"]
    assert [(p.id, _notes(p.score)) for p in again.pieces()] == [(p.id, _notes(p.score)) for p in first.pieces()]


def _key(path: Path) -> str:
    return scorefiles.ScoreCache.key(path, path.read_bytes())
