"""Hostile and careless input: tiny files that describe huge pieces, broken timing, broken
files, closed pipes.  Every hostile file is written by hand here (raw MIDI bytes), none is
shipped.  The command-line tests run ``musicfw`` in a subprocess whose address space is capped
at 4 GiB (RLIMIT_AS), so an unbounded allocation fails the test instead of the machine.

See docs/reliability.md for the limits and guarantees these tests check.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import musicfw
from musicfw.music import limits as L
from musicfw.core.errors import ConfigError, DataError
from musicfw.music.limits import Limits, MalformedPiece, PieceRejected, PieceTooLarge
from musicfw.music.midiload import load_score, parse_score

REPO = Path(__file__).resolve().parents[1]
TOKENIZERS = ("remi", "midi_like", "pianoroll", "melody", "drums")
GIB = 2**30
MEMORY_CAP = 4 * GIB
#: generous for a loaded 2-core machine; the commands take 1-3 s here
SECONDS = 60


# --------------------------------------------------------------------------------------
# Raw MIDI bytes
# --------------------------------------------------------------------------------------


def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def track(events: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(vlq(d) + e for d, e in events) + b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def midi(tracks: list[bytes], division: int = 96) -> bytes:
    fmt = 0 if len(tracks) == 1 else 1
    return b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), division) + b"".join(tracks)


def on(p: int, v: int = 64, ch: int = 0) -> bytes:
    return bytes([0x90 | ch, p, v])


def off(p: int, ch: int = 0) -> bytes:
    return bytes([0x80 | ch, p, 0])


MAX_DELTA = (1 << 28) - 1  # the largest delta time a MIDI file can state


def huge_gaps() -> bytes:
    """Four notes 2^28 ticks apart (67 bytes): 8.4M quarter notes at 96 ticks per quarter."""
    events: list[tuple[int, bytes]] = []
    for i in range(4):
        events += [(MAX_DELTA if i else 0, on(60 + i)), (1, off(60 + i))]
    return midi([track(events)])


def long_note() -> bytes:
    """One note held for 4 x 2^28 ticks at 1 tick per quarter (a billion quarter notes)."""
    events = [(0, on(60)), (MAX_DELTA, b"\xff\x01\x01x"), (MAX_DELTA, b"\xff\x01\x01x"), (MAX_DELTA, b"\xff\x01\x01x"), (MAX_DELTA, off(60))]
    return midi([track(events)], division=1)


def simultaneous(n: int) -> bytes:
    """``n`` notes struck at once (spread over 16 channels x 128 pitches), one tick long."""
    events = [(0, on(i % 128, 64, (i // 128) % 16)) for i in range(n)]
    events += [(1 if i == 0 else 0, off(i % 128, (i // 128) % 16)) for i in range(n)]
    return midi([track(events)])


def tpq0() -> bytes:
    return midi([track([(0, on(60)), (10, off(60))])], division=0)


def time_signature(dd: int) -> bytes:
    """4/2^dd: MIDI stores the exponent; 2^31 overflows symusic's 8-bit denominator to 0."""
    ts = b"\xff\x58\x04\x04" + bytes([dd]) + b"\x18\x08"
    return midi([track([(0, ts), (0, on(60)), (96, off(60)), (0, on(62)), (96, off(62))])])


def melody_bytes(n_notes: int = 64, division: int = 96) -> bytes:
    events: list[tuple[int, bytes]] = []
    for i in range(n_notes):
        p = 60 + (i * 7) % 24
        events += [(0, on(p)), (division // 2, off(p))]
    return midi([track(events)], division)


def many_tracks(n: int = 65_535) -> bytes:
    """The most tracks a MIDI header can declare, one note each (1.3 MB)."""
    return midi([track([(0, on(60 + i % 12, 64, i % 16)), (96, off(60 + i % 12, i % 16))]) for i in range(n)])


def many_time_signatures(n: int = 100_000) -> bytes:
    """One note under ``n`` time-signature changes, one per tick (800 KB)."""
    events = [(0, on(60))]
    events += [(1, b"\xff\x58\x04" + bytes([3 if i % 2 else 4, 2, 24, 8])) for i in range(n)]
    return midi([track(events + [(1, off(60))])])


def truncated() -> bytes:
    return melody_bytes()[:40]


HOSTILE = {
    "huge_gaps": huge_gaps,
    "long_note": long_note,
    "tpq0": tpq0,
    "denominator_2_31": lambda: time_signature(31),
    "empty": lambda: b"",
    "truncated": truncated,
    "no_notes": lambda: midi([track([(0, b"\xff\x51\x03\x07\xa1\x20")])]),
    "smpte": lambda: midi([track([(0, on(60)), (10, off(60))])], division=0xE728),
    "many_tracks": many_tracks,
    "many_time_signatures": many_time_signatures,
}


# --------------------------------------------------------------------------------------
# Running the CLI under a memory cap
# --------------------------------------------------------------------------------------


def _cap_memory() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def musicfw_cli(*args: str, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, OMP_NUM_THREADS="1")
    full_env.pop(L.ENV, None)
    full_env.update(env or {})
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "musicfw.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=SECONDS * 3,
        preexec_fn=_cap_memory,
        **popen,
    )
    proc.seconds = time.monotonic() - start  # type: ignore[attr-defined]
    return proc


def assert_clean(proc: subprocess.CompletedProcess, command: str, codes=(0, 2)) -> None:
    """Exit 0 or 2, no traceback, no MemoryError, in seconds; exit 2 is one error paragraph."""
    where = f"rc={proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}"
    assert proc.returncode in codes, where
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, where
    assert "Warning" not in proc.stderr, where  # e.g. numpy's divide-by-zero RuntimeWarning
    assert proc.seconds < SECONDS, f"took {proc.seconds:.1f} s\n{where}"
    if proc.returncode == 2:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        assert lines and lines[0].startswith(f"musicfw {command}: error: "), where
        assert "\n\n" not in proc.stderr.strip(), where


def write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------
# musicfw tokenize: hostile files give exit 2 with the reason, within 4 GiB, in seconds
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_tokenize_huge_tick_gaps_is_refused_within_memory(tmp_path, tokenizer):
    # before the limits: pianoroll allocated 11.7 GiB, melody 17.1 GiB for this 67-byte file
    path = write(tmp_path, "gaps.mid", huge_gaps())
    proc = musicfw_cli("tokenize", "--tokenizer", tokenizer, str(path))
    assert_clean(proc, "tokenize", codes=(2,))
    assert "gaps.mid" in proc.stderr and "max_quarters" in proc.stderr


@pytest.mark.parametrize(
    "name, reason",
    [
        ("long_note", "max_quarters"),
        ("tpq0", "0 ticks per quarter"),
        ("denominator_2_31", "time signature 4/0"),
        ("empty", "empty file"),
        ("truncated", "truncated"),
        ("smpte", "SMPTE"),
        ("many_tracks", "max_tracks"),
        ("many_time_signatures", "max_time_signatures"),
    ],
)
@pytest.mark.parametrize("tokenizer", ("remi", "pianoroll"))
def test_tokenize_hostile_file_is_one_clear_error(tmp_path, name, reason, tokenizer):
    path = write(tmp_path, f"{name}.mid", HOSTILE[name]())
    proc = musicfw_cli("tokenize", "--tokenizer", tokenizer, str(path))
    assert_clean(proc, "tokenize", codes=(2,))
    assert reason in proc.stderr.replace("\n", " "), proc.stderr


def test_tokenize_cut_keeps_the_beginning_of_a_piece_too_long(tmp_path):
    path = write(tmp_path, "gaps.mid", huge_gaps())
    proc = musicfw_cli("tokenize", "--tokenizer", "remi", "--cut", "--json", str(path))
    assert_clean(proc, "tokenize", codes=(0,))
    out = json.loads(proc.stdout)
    # only the first of the four notes starts before the cut (20,000 quarters)
    assert sum(n.startswith("Pitch_") for n in out["names"]) == 1
    assert out["coverage"]["reasons"] == {"cut off to fit the limits (limits.on_exceed=cut)": 3}


def test_limits_can_be_raised_from_the_command_line_and_the_environment(tmp_path):
    # a piece of 30,002 quarter notes (two notes 2.88M ticks apart): over the default limit
    tempo_240 = b"\xff\x51\x03\x03\xd0\x90"  # 250,000 us per quarter: 7,500 s, under max_seconds
    events = [(0, tempo_240), (0, on(60)), (96, off(60)), (30_000 * 96, on(62)), (96, off(62))]
    path = write(tmp_path, "long.mid", midi([track(events)]))
    refused = musicfw_cli("tokenize", "-t", "remi", str(path))
    assert_clean(refused, "tokenize", codes=(2,))
    assert "30,002 quarter notes > limits.max_quarters=20,000" in refused.stderr.replace("\n", " ")
    raised = musicfw_cli("tokenize", "-t", "remi", "--max-quarters", "40000", "--limit", "3", str(path))
    assert_clean(raised, "tokenize", codes=(0,))
    assert "2 notes" in raised.stdout
    env = musicfw_cli("tokenize", "-t", "remi", "--limit", "3", str(path), env={L.ENV: "max_quarters=40000"})
    assert_clean(env, "tokenize", codes=(0,))
    bad = musicfw_cli("tokenize", "-t", "remi", str(path), env={L.ENV: "max_quaters=40000"})
    assert_clean(bad, "tokenize", codes=(2,))
    assert "max_quarters" in bad.stderr  # the error lists the real keys


def test_tokenize_into_a_closed_pipe_exits_quietly(tmp_path):
    # ~100k REMI tokens: far more than a pipe buffer, so the writer meets the closed pipe
    path = write(tmp_path, "long.mid", melody_bytes(20_000))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop(L.ENV, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "musicfw.cli", "tokenize", "-t", "remi", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.read(100)  # `| head -c 100`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=SECONDS)
    assert first.startswith(b"# long.mid: remi")
    assert rc == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


# --------------------------------------------------------------------------------------
# musicfw evaluate: one hostile file never sinks the folder
# --------------------------------------------------------------------------------------


def test_evaluate_skips_every_hostile_file_with_a_reason(tmp_path):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    for name, make in HOSTILE.items():
        write(gen, f"{name}.mid", make())
    write(gen, "ok1.mid", melody_bytes(32))
    write(gen, "ok2.mid", melody_bytes(48))
    write(ref, "r1.mid", melody_bytes(40))
    write(ref, "r2.mid", melody_bytes(56))
    out = tmp_path / "metrics.json"
    proc = musicfw_cli("evaluate", "--generated", str(gen), "--reference", str(ref), "--out", str(out))
    assert_clean(proc, "evaluate", codes=(0,))
    result = json.loads(out.read_text())
    assert result["sets"]["generated"]["n_pieces"] == 2
    reasons = {s["file"]: s["reason"] for s in result["sets"]["generated"]["skipped"]}
    assert set(reasons) == {f"{name}.mid" for name in HOSTILE}
    assert reasons["empty.mid"] == "empty file (0 bytes)"
    assert reasons["no_notes.mid"] == "no notes"  # an empty MIDI is not a piece
    assert "max_quarters" in reasons["huge_gaps.mid"]
    assert "time signature 4/0" in reasons["denominator_2_31.mid"]
    assert not any("Error:" in r for r in reasons.values())  # no raw library exception names
    for name in HOSTILE:
        assert f"skipped {name}.mid: " in proc.stdout


def test_evaluate_many_simultaneous_notes_within_memory(tmp_path):
    # before: the pitch-class transition matrix listed every pair, 18.6 GiB for 50k notes
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    write(gen, "chord50k.mid", simultaneous(50_000))
    write(gen, "ok.mid", melody_bytes(32))
    write(gen, "chord250k.mid", simultaneous(250_000))  # over max_notes: skipped
    write(ref, "r1.mid", melody_bytes(40))
    write(ref, "r2.mid", melody_bytes(56))
    out = tmp_path / "metrics.json"
    proc = musicfw_cli("evaluate", "--generated", str(gen), "--reference", str(ref), "--out", str(out))
    assert_clean(proc, "evaluate", codes=(0,))
    result = json.loads(out.read_text())
    assert result["sets"]["generated"]["n_pieces"] == 2
    (skip,) = result["sets"]["generated"]["skipped"]
    assert skip["file"] == "chord250k.mid" and "max_notes" in skip["reason"]
    # every one of the 50,000 notes starts within 0.05 s of every other's end: n (n - 1) pairs
    pctm = result["features"]["generated"]["chord50k.mid"]["pitch_class_transition_matrix"]
    assert pctm is not None


def test_evaluate_folder_of_only_hostile_files_is_one_clear_error(tmp_path):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    for name, make in HOSTILE.items():
        write(gen, f"{name}.mid", make())
    write(ref, "r1.mid", melody_bytes(40))
    proc = musicfw_cli("evaluate", "--generated", str(gen), "--reference", str(ref))
    assert_clean(proc, "evaluate", codes=(2,))
    assert "No loadable MIDI file" in proc.stderr


def test_data_prepare_skips_hostile_files(tmp_path):
    folder = tmp_path / "midi"
    for name, make in HOSTILE.items():
        write(folder, f"{name}.mid", make())
    write(folder, "ok1.mid", melody_bytes(32))
    write(folder, "ok2.mid", melody_bytes(48))
    proc = musicfw_cli(
        "data", "prepare", "midi_folder", f"path={folder}",
        env={"MUSICFW_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert_clean(proc, "data", codes=(0,))
    for name in HOSTILE:
        assert f"{name}.mid: " in proc.stdout, proc.stdout


# --------------------------------------------------------------------------------------
# In-process: every tokenizer and metric refuses with the documented error
# --------------------------------------------------------------------------------------


def _score(data: bytes):
    import symusic

    return symusic.Score.from_midi(data)


def _huge_score():
    """A Score built in Python (no file): a note at tick 2^30 at 1 tick per quarter."""
    from symusic import Note, Score, Track

    score = Score(1)
    t = Track()
    t.notes.append(Note(0, 1, 60, 64))
    t.notes.append(Note(2**30, 1, 62, 64))
    score.tracks.append(t)
    return score


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_every_tokenizer_refuses_hostile_scores_with_a_data_error(tokenizer):
    tok = musicfw.build_tokenizer(tokenizer)
    cases = {
        "gaps": (_score(huge_gaps()), PieceTooLarge),
        "built": (_huge_score(), PieceTooLarge),
        "tpq0": (_score(tpq0()), MalformedPiece),
        "denominator": (_score(time_signature(31)), MalformedPiece),
    }
    for name, (score, error) in cases.items():
        with pytest.raises(error) as info:
            tok.encode(score)
        assert isinstance(info.value, DataError), name
        with pytest.raises(error):
            tok.coverage(score)


def test_max_tokens_is_checked_before_the_frames_are_allocated():
    # 1,000 quarters at 480 steps per quarter: 480,000 frames, over max_tokens=100,000
    from symusic import Note, Score, Track

    score = Score(480)
    t = Track()
    t.notes.append(Note(0, 480 * 1000, 60, 64))
    score.tracks.append(t)
    tok = musicfw.build_tokenizer("pianoroll", steps_per_quarter=480)
    with L.using(max_tokens=100_000):
        with pytest.raises(PieceTooLarge, match="480,000 frames > limits.max_tokens=100,000"):
            tok.encode(score)
    assert tok.encode(score).shape == (480_000, 88)  # within the default limit


@pytest.mark.parametrize("metric", ("yang_lerch", "muspy"))
def test_metrics_refuse_hostile_scores_with_a_data_error(metric):
    m = musicfw.build_metric(metric)
    for score, error in ((_huge_score(), PieceTooLarge), (_score(tpq0()), MalformedPiece), (_score(time_signature(31)), MalformedPiece)):
        with pytest.raises(error):
            m.features(score)


def _pctm_by_pairs(notes, threshold_s):
    """The earlier implementation: list every (i, j) pair, then count (memory ~ pairs)."""
    n = len(notes)
    if n < 2:
        return np.zeros((12, 12))
    order = np.argsort(notes.start_s, kind="stable")
    starts = notes.start_s[order]
    lo = np.searchsorted(starts, notes.end_s - threshold_s, side="right")
    hi = np.searchsorted(starts, notes.end_s + threshold_s, side="left")
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    if total == 0:
        return np.zeros((12, 12))
    src = np.repeat(np.arange(n), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    dst = order[np.repeat(lo, counts) + offsets]
    keep = src != dst
    pc = notes.pitch % 12
    codes = pc[src[keep]] * 12 + pc[dst[keep]]
    return np.bincount(codes, minlength=144).reshape(12, 12).astype(np.float64)


def test_pitch_class_transitions_equal_the_pair_listing_definition():
    from musicfw.music.notes import PieceNotes
    from musicfw.plugins.metrics.yang_lerch import pitch_class_transitions

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(0, 60))
        grid = float(rng.choice([0.01, 0.025, 0.05, 0.1]))  # ties with the window edges
        start = rng.integers(0, 40, n) * grid
        end = start + rng.integers(0, 10, n) * grid
        z = np.zeros(n, dtype=np.int64)
        notes = PieceNotes(96, z, z, rng.integers(0, 128, n), z, z, np.zeros(n, bool), start, end, np.zeros(1, np.int64), 384.0, z)
        for threshold in (0.05, 0.025, 0.1):
            np.testing.assert_array_equal(pitch_class_transitions(notes, threshold), _pctm_by_pairs(notes, threshold))


def test_pitch_class_transitions_of_50k_simultaneous_notes():
    from musicfw.music.notes import piece_notes
    from musicfw.plugins.metrics.yang_lerch import pitch_class_transitions

    notes = piece_notes(_score(simultaneous(50_000)))
    m = pitch_class_transitions(notes, 0.05)
    assert m.sum() == 50_000 * 49_999  # every ordered pair of distinct notes


# --------------------------------------------------------------------------------------
# Limits: parsing, raising, cutting
# --------------------------------------------------------------------------------------


def test_limits_from_mapping_and_environment():
    assert Limits.from_mapping({"max_notes": "1_000", "max_seconds": "60.5"}) == Limits(max_notes=1000, max_seconds=60.5)
    with pytest.raises(ConfigError, match="Unknown key 'max_note' in limits; the limits are: max_file_bytes"):
        Limits.from_mapping({"max_note": 3})
    for bad in ({"max_notes": 0}, {"max_notes": -5}, {"max_seconds": "nan"}, {"on_exceed": "crop"}, {"max_notes": 2.5}, {"max_tokens": "many"}):
        with pytest.raises(ConfigError):
            Limits.from_mapping(bad)
    env = Limits.from_env({L.ENV: "max_notes=10, on_exceed=cut"})
    assert env.max_notes == 10 and env.on_exceed == "cut"
    with pytest.raises(ConfigError, match="MUSICFW_LIMITS"):
        Limits.from_env({L.ENV: "max_notes"})
    odd = Limits(max_notes=7, max_quarters=12.5, max_seconds=1e7, on_exceed="cut")
    assert Limits.from_env({L.ENV: odd.to_env()}) == odd


def test_using_sets_and_restores_the_process_limits():
    before = L.current()
    with L.using(max_notes=3) as inner:
        assert L.current() is inner and inner.max_notes == 3
        score, reason = parse_score(melody_bytes(4))
        assert score is None and reason.startswith("too large: notes 4 > limits.max_notes=3")
    assert L.current() == before


def test_cut_to_limits_keeps_the_longest_beginning_that_fits():
    score = _score(melody_bytes(100))  # one note per half quarter, 50 quarters
    with L.using(max_notes=10, on_exceed="cut"):
        cut, reason = parse_score(melody_bytes(100))
    assert reason is None and cut.note_num() == 10
    with L.using(max_quarters=5.25, on_exceed="cut"):
        tok = musicfw.build_tokenizer("pianoroll")
        frames = tok.encode(score)
        cov = tok.coverage(score, frames)
    # notes at 0, 0.5, ..., 5.0 quarters start before the cut; the one at 5.0 is shortened
    assert len(frames) == 21  # 5.25 quarters at 4 frames per quarter
    assert cov["reasons"]["cut off to fit the limits (limits.on_exceed=cut)"] == 100 - 11
    with L.using(max_seconds=1.0, on_exceed="cut"):  # 120 qpm: 2 quarters
        assert musicfw.build_tokenizer("melody").encode(score).shape == (8,)
    with L.using(max_time_signatures=10, on_exceed="cut"):
        cut, reason = parse_score(many_time_signatures(100))
    assert reason is None and len(cut.time_signatures) == 10 and cut.end() == 11  # cut at the 11th


def test_prompt_limit():
    L.check_prompt_tokens(16_384)
    with pytest.raises(PieceTooLarge, match="max_prompt_tokens"):
        L.check_prompt_tokens(16_385)


# --------------------------------------------------------------------------------------
# Coverage: what each tokenizer could not represent, and why
# --------------------------------------------------------------------------------------


def _band_score():
    """Piano (program 0) + bass (program 33) + drums: 24 + 8 + 16 notes, one out of range."""
    from symusic import Note, Score, Track

    score = Score(480)
    piano = Track("piano", program=0)
    for i in range(24):
        piano.notes.append(Note(i * 240, 240, 60 + i % 12, 80))
    bass = Track("bass", program=33)
    for i in range(7):
        bass.notes.append(Note(i * 960, 960, 40, 90))
    bass.notes.append(Note(0, 480, 15, 90))  # below remi's and pianoroll's range
    drums = Track("drums", program=0, is_drum=True)
    for i in range(16):
        drums.notes.append(Note(i * 240, 60, 36 if i % 2 == 0 else 42, 100))
    score.tracks.extend([piano, bass, drums])
    return score


def test_remi_reports_the_drum_notes_it_drops():
    score = _band_score()
    cov = musicfw.build_tokenizer("remi").coverage(score)
    assert cov["notes"] == 48 and cov["dropped"] == 17
    assert cov["reasons"] == {
        "drum track (remi keeps drums with use_programs=true)": 16,
        "pitch outside 21..108 (min_pitch, max_pitch)": 1,
    }
    assert cov["altered"]["tracks merged into one, programs lost (use_programs=true keeps them)"] == 31
    with_programs = musicfw.build_tokenizer("remi", use_programs=True).coverage(score)
    assert with_programs["reasons"] == {"pitch outside 21..108 (min_pitch, max_pitch)": 1}


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_coverage_adds_up_to_what_decoding_gives_back(tokenizer, shared_midi):
    tok = musicfw.build_tokenizer(tokenizer)
    files = sorted((shared_midi / "multitrack").glob("*.mid"))[:2] + sorted((shared_midi / "one_track").glob("*.mid"))[:1]
    assert files
    for path in files:
        score, reason = load_score(path)
        assert reason is None, reason
        tokens = tok.encode(score)
        cov = tok.coverage(score, tokens)
        assert cov["notes"] == score.note_num()
        assert cov["dropped"] == sum(cov["reasons"].values())
        assert cov["notes"] == cov["represented"] + cov["dropped"]
        decoded = tok.count_notes(tokens)
        if tokenizer == "melody":  # a note resumed after a higher one is a second note-on
            assert decoded == cov["represented"] + sum(cov["altered"].values())
        else:
            assert decoded == cov["represented"], (path.name, cov)


def test_default_coverage_of_a_third_party_tokenizer():
    """A tokenizer that does not override coverage() still reports what it loses."""
    from dataclasses import dataclass

    from symusic import Note, Score, Track

    from musicfw.core.tokenizer import Tokenizer

    class FirstTrackPitches(Tokenizer):
        name = "first_track_pitches"

        @dataclass
        class Config:
            pass

        vocab = [f"Pitch_{p}" for p in range(128)]

        def encode(self, score):
            return np.asarray(score.tracks[0].notes.numpy()["pitch"], dtype=np.int64)

        def decode(self, tokens):
            out = Score(480)
            t = Track()
            for i, p in enumerate(tokens):
                t.notes.append(Note(480 * i, 480, int(p), 80))
            out.tracks.append(t)
            return out

    cov = FirstTrackPitches().coverage(_band_score())
    assert cov == {
        "notes": 48,
        "represented": 24,
        "dropped": 24,
        "reasons": {"not represented by the tokenizer": 24},
        "altered": {},
    }


def test_tokenize_prints_the_coverage(tmp_path):
    path = tmp_path / "band.mid"
    _band_score().dump_midi(str(path))
    proc = musicfw_cli("tokenize", "-t", "remi", "--limit", "4", str(path))
    assert_clean(proc, "tokenize", codes=(0,))
    assert "# coverage: 17 of 48 notes not represented: 16 drum track" in proc.stdout


# --------------------------------------------------------------------------------------
# Property tests: arbitrary bytes never raise anything but the documented errors
# --------------------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def midi_like_bytes(draw):
    """Structured hostile MIDI: mostly a usable division (sometimes 0, 1, 0x7FFF or SMPTE),
    notes with deltas up to 2^28 on any channel (9 is drums), time signatures with any
    numerator and exponent, tempos (0 included), markers; sometimes cut short or with a byte
    changed."""
    division = draw(st.sampled_from([96, 96, 96, 480, 480, 1, 0x7FFF, 0, 0xE728, 7]))
    extreme = draw(st.integers(0, 2)) == 0  # a third of the files get 2^28 deltas and bad signatures
    big = [MAX_DELTA, 5000] if extreme else [5000]
    tracks = []
    for _ in range(draw(st.integers(1, 3))):
        events = []
        for _ in range(draw(st.integers(0, 10))):
            delta = draw(st.sampled_from([0, 0, 1, 48, 96, 96, 384, 1000, *big]))
            kind = draw(st.sampled_from(["note", "note", "note", "ts", "tempo", "marker"]))
            if kind == "note":
                pitch, ch = draw(st.integers(0, 127)), draw(st.sampled_from([0, 1, 9, 15]))
                length = draw(st.sampled_from([0, 1, 24, 96, 96, 192, *big]))
                events += [(delta, on(pitch, draw(st.integers(1, 127)), ch)), (length, off(pitch, ch))]
            elif kind == "ts":
                exponent = draw(st.integers(0, 255) if extreme else st.integers(0, 7))
                ts = bytes([draw(st.sampled_from([1, 3, 4, 7, 255, 0] if extreme else [1, 3, 4, 7, 255])), exponent, 24, 8])
                events.append((delta, b"\xff\x58\x04" + ts))
            elif kind == "tempo":
                events.append((delta, b"\xff\x51\x03" + draw(st.binary(min_size=3, max_size=3))))
            else:
                events.append((delta, b"\xff\x06\x03end"))
        tracks.append(track(events))
    data = midi(tracks, division=division)
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.integers(0, 4)) == 0 and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    return data


ANY_BYTES = st.one_of(midi_like_bytes(), st.binary(max_size=64))


@pytest.fixture
def bounded_memory():
    """Cap this process's address space at its current size + 4 GiB for the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + MEMORY_CAP, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=ANY_BYTES)
def test_property_tokenize_never_raises_anything_but_data_errors(data, bounded_memory):
    # the limits are left to the tokenizers, which must refuse what is too large themselves
    score, reason = parse_score(data, min_notes=0, check_limits=False)
    assert (score is None) != (reason is None)
    if score is None:
        assert isinstance(reason, str) and reason
        return
    for name in TOKENIZERS:
        tok = musicfw.build_tokenizer(name)
        try:
            tokens = tok.encode(score)
            tok.coverage(score, tokens)
        except PieceRejected:
            continue
        tok.decode(tokens)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=ANY_BYTES)
def test_property_evaluate_never_raises_anything_but_data_errors(data, bounded_memory, tmp_path_factory):
    from musicfw.engine.evaluation import compare_folders

    root = tmp_path_factory.mktemp("prop")
    write(root / "gen", "x.mid", data)
    write(root / "gen", "ok.mid", melody_bytes(16))
    write(root / "ref", "r.mid", melody_bytes(24))
    result = compare_folders(root / "gen", root / "ref")
    n = result["sets"]["generated"]["n_pieces"]
    skipped = result["sets"]["generated"]["skipped"]
    assert n + len(skipped) == 2
    assert all(isinstance(s["reason"], str) and s["reason"] for s in skipped)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=ANY_BYTES)
def test_property_midi_folder_dataset_never_raises_on_a_bad_file(data, bounded_memory, tmp_path_factory):
    """What `musicfw data prepare midi_folder` reads: a bad file is skipped, never raised."""
    root = tmp_path_factory.mktemp("ds")
    write(root, "x.mid", data)
    write(root, "ok.mid", melody_bytes(16))
    loaded = musicfw.build_dataset("midi_folder", path=str(root)).load()
    names = [p.id for p in loaded.pieces()] + [Path(f).name for f, _ in loaded.skipped]
    assert sorted(names) == ["ok.mid", "x.mid"]
    assert all(reason for _, reason in loaded.skipped)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=ANY_BYTES, tokenizer=st.sampled_from(TOKENIZERS))
def test_property_data_prepare_with_a_token_cache_never_raises(data, tokenizer, bounded_memory, tmp_path_factory, capsys):
    """The whole of `musicfw data prepare midi_folder --tokenizer T` (load, split, tokenize,
    write the token cache), in process: exit 0 with the bad file skipped, or exit 2 with one
    paragraph (a tokenizer that can represent neither piece); never an exception."""
    import json as _json

    from musicfw.cli import main

    root = tmp_path_factory.mktemp("prep")
    write(root / "midi", "x.mid", data)
    write(root / "midi", "ok.mid", melody_bytes(16))
    capsys.readouterr()
    rc = main(["data", "prepare", "midi_folder", f"path={root / 'midi'}", f"cache_dir={root / 'cache'}",
               "--tokenizer", tokenizer, "--quiet", "--json"])
    out, err = capsys.readouterr()
    assert rc in (0, 2), (rc, err[-2000:])
    assert "Traceback" not in err
    if rc == 0:
        summary = _json.loads(out)
        assert summary["pieces"] + len(summary["skipped"]) == 2, summary
        assert summary["pieces"] >= 1
    else:
        assert err.strip(), "exit 2 without a reason"


# --------------------------------------------------------------------------------------
# Issue 30, class 6: every limit has a hard ceiling, and `inf` means the same in every path
# --------------------------------------------------------------------------------------

_LIMIT_VALUES = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["inf", "INF", "infinity", "-inf", "nan", "1e15", "1e9", "1e3", "0", "-5", "7", "abc"]),
)


def _through_every_path(key: str, value) -> list:
    """The value of ``key`` (or "error") set through the env, a limits: mapping, configure and
    the command-line options."""
    import argparse

    from musicfw.cli.commands._output import add_limit_arguments, apply_limit_arguments

    text = value if isinstance(value, str) else repr(value)
    attempts = [
        lambda: Limits.from_env({L.ENV: f"{key}={text}"}),
        lambda: Limits.from_mapping({key: value}),
        lambda: L.configure({key: value}),
    ]
    option = "--" + key.replace("_", "-")
    parser = argparse.ArgumentParser()
    add_limit_arguments(parser)
    if option in parser._option_string_actions and key != "max_prompt_tokens":
        attempts.append(lambda: apply_limit_arguments(parser.parse_args([f"{option}={text}"])))
    out = []
    for attempt in attempts:
        try:
            out.append(getattr(attempt(), key))
        except ConfigError:
            out.append("error")
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(L.CEILINGS)), value=_LIMIT_VALUES)
def test_every_limit_has_a_hard_ceiling_and_inf_means_it_in_every_path(monkeypatch, key, value):
    monkeypatch.delenv(L.ENV, raising=False)  # the same for every input
    with L.using():
        got = _through_every_path(key, value)
    outcomes = set(got)
    if isinstance(value, str) or isinstance(value, float):  # a string and its float read the same way
        assert len(outcomes) == 1, (key, value, got)
    for result in got:
        if result != "error":
            assert 0 < result <= L.CEILINGS[key], (key, value, got)
    as_number = None
    try:
        as_number = float(value)
    except (TypeError, ValueError):
        pass
    if as_number is not None and as_number == float("inf"):
        assert got[0] == L.CEILINGS[key], (key, value, got)  # inf is the ceiling
    elif as_number is not None and as_number > L.CEILINGS[key]:
        assert outcomes == {"error"}, (key, value, got)  # above the ceiling: refused everywhere


def test_a_limit_above_its_ceiling_in_the_environment_is_one_clear_error(tmp_path):
    path = write(tmp_path, "m.mid", melody_bytes())
    proc = musicfw_cli("tokenize", str(path), "--tokenizer", "pianoroll",
                       env={L.ENV: "max_tokens=1e15,max_quarters=1e15"})
    assert_clean(proc, "tokenize", codes=(2,))
    said = " ".join(proc.stderr.split())
    assert "above its hard ceiling 2,000,000" in said and "max_quarters" in said
    both = musicfw_cli("tokenize", str(path), "--tokenizer", "pianoroll", "--max-quarters", "inf",
                       env={L.ENV: "max_quarters=inf"})
    assert_clean(both, "tokenize", codes=(0,))


# --------------------------------------------------------------------------------------
# Issue 30, class 7: generation sizes checked against the limits and the memory before use
# --------------------------------------------------------------------------------------


def test_generation_sizes_are_checked_before_anything_is_allocated():
    from musicfw.engine.generation import MAX_BATCH, MAX_SAMPLES, check_generation_size

    ok = dict(kind="categorical", vocab_size=300, available=8 * GIB)
    check_generation_size(8, 8, 512, **ok)
    with pytest.raises(ConfigError, match="limits.max_tokens"):
        check_generation_size(1, 1, 10**12, **ok)
    with pytest.raises(ConfigError, match=f"{MAX_SAMPLES:,}"):
        check_generation_size(10**9, 8, 512, **ok)
    with pytest.raises(ConfigError, match=f"{MAX_BATCH:,}"):
        check_generation_size(8, 10**9, 512, **ok)
    with pytest.raises(ConfigError, match="batch_size of at most 1,024"):  # 1 GiB / 2 / (64k tokens x 8 B)
        check_generation_size(4096, 4096, 65_536, kind="categorical", vocab_size=300, available=GIB)
    with pytest.raises(ConfigError, match="token buffers"):  # piano-roll frames are 128 wide
        check_generation_size(64, 64, 1_000_000, kind="multihot", vocab_size=128, available=8 * GIB)
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(ConfigError, match="whole number"):
            check_generation_size(bad, 8, 512, **ok)


def _tiny_lstm():
    import torch

    from musicfw.core.build import build, build_from_section

    tokenizer = build("tokenizer", "remi")
    torch.manual_seed(0)
    model = build_from_section("models", {"name": "lstm", "hidden_size": 16, "num_layers": 1, "embed_dim": 8},
                               tokenizer=tokenizer)
    return model, tokenizer


def test_generated_samples_go_to_the_sink_as_they_finish_and_long_batches_report_progress(monkeypatch):
    from musicfw.engine import generation
    from musicfw.engine.generation import build_sampler_chain, generate

    model, tokenizer = _tiny_lstm()
    sampler = build_sampler_chain({"name": "temperature", "temperature": 1.0})
    kept = generate(model, tokenizer, sampler, n=5, batch_size=2, max_tokens=40, seed=4, constraints=False)
    seen, steps, batches = [], [], []
    monkeypatch.setattr(generation, "STEP_PROGRESS_SECONDS", 0.0)

    def sink(score, tokens, reason):
        seen.append((tokens.tolist(), reason, score.note_num()))
        batches.append(len(steps))

    streamed = generate(model, tokenizer, sampler, n=5, batch_size=2, max_tokens=40, seed=4, constraints=False,
                        sink=sink, step_progress=lambda done, n, step, top: steps.append((done, n, step, top)))
    assert streamed.tokens == [] and streamed.scores == []  # nothing kept in memory
    assert [t for t, _, _ in seen] == [s.tolist() for s in kept.tokens]  # the same samples, in order
    assert [r for _, r, _ in seen] == kept.stop_reasons
    assert streamed.stats["notes"] == kept.stats["notes"] == sum(n for _, _, n in seen)
    assert streamed.stats["samples"] == 5
    assert batches[0] < batches[-1]  # the first batch was handed over before the last was drawn
    assert steps and all(s[3] == 40 and 0 < s[2] < 40 for s in steps)
    assert {s[0] for s in steps} >= {0, 2, 4}  # within every batch


# --------------------------------------------------------------------------------------
# Issue 30, class 9: scripts/test.sh makes a half-made .venv again instead of failing
# --------------------------------------------------------------------------------------


def test_the_test_script_remakes_a_venv_whose_creation_was_interrupted(tmp_path):
    """A .venv with a python but no pip (creation killed half-way) is made again; the stand-in
    python records what the script asks of it (no network, no real install)."""
    import shutil
    import stat

    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "test.sh", repo / "scripts" / "test.sh")
    log = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def script(path: Path, body: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/usr/bin/env bash\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)

    good_python = f'echo "venv-python $*" >> {log}\nexit 0\n'
    # the "python" that makes venvs: writes a .venv whose python has pip
    script(bin_dir / "maker", f'echo "maker $*" >> {log}\nmkdir -p .venv/bin\n'
                              f"cat > .venv/bin/python <<'X'\n#!/usr/bin/env bash\n{good_python}X\n"
                              "chmod +x .venv/bin/python\n")
    for tool in ("chromium", "fluidsynth", "apt-get"):  # the system-package step has nothing to do
        script(bin_dir / tool, "exit 0\n")
    script(repo / ".venv" / "bin" / "python",  # half-made: no pip
           'if [ "$1 $2" = "-m pip" ]; then echo "No module named pip" >&2; exit 1; fi\nexit 0\n')
    env = dict(os.environ, PYTHON=str(bin_dir / "maker"), PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(repo / "scripts" / "test.sh"), "-q"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "No module named pip" not in proc.stderr and ".venv is incomplete" in proc.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "maker -m venv .venv"  # made again
    assert any("pip install" in c and "torch" in c for c in calls) and calls[-1] == "venv-python -m pytest -q"
