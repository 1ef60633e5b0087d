"""Tunes (musicfw/music/tunes.py): melody line, hashed runs, tune groups; splits by tune and
the leakage report (musicfw/engine/splits.py) on both data paths, the CLI and metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import musicfw
from conftest import run_cli
from musicfw.core.dataset import MusicDataset, Piece, SplitConfig
from musicfw.core.errors import ConfigError, UserError
from musicfw.music import tunes


def make_score(notes, tpq=480, drums=()):
    """notes: [(onset_16ths, length_16ths, pitch)] in one track (+ an optional drum track)."""
    import symusic

    score = symusic.Score(tpq)
    track = symusic.Track("melody", 0, False)
    q = tpq // 4
    for on, length, pitch in notes:
        track.notes.append(symusic.Note(on * q, length * q, pitch, 80))
    score.tracks.append(track)
    if drums:
        drum = symusic.Track("drums", 0, True)
        for on, length, pitch in drums:
            drum.notes.append(symusic.Note(on * q, length * q, pitch, 80))
        score.tracks.append(drum)
    return score


def steps_of(score):
    interval, time = tunes.unpack_step(tunes.melody_steps(score))
    return list(zip(interval.tolist(), time.tolist()))


# ------------------------------------------------------------------------------------------
# the melody line
# ------------------------------------------------------------------------------------------


def test_melody_is_the_highest_sounding_note_and_ignores_held_notes_and_drums():
    # a top voice C5 held over two quarters while a lower voice moves; then D5, D5 again, A4
    notes = [(0, 8, 72), (0, 4, 60), (4, 4, 62), (8, 4, 74), (12, 2, 74), (14, 2, 69), (14, 2, 50)]
    score = make_score(notes, drums=[(2, 1, 100), (6, 1, 100)])
    # C5 -> D5 after 8 16ths (the moving lower voice is no change), D5 struck again after 4,
    # then A4 (down a fourth) after 2; the drums are no melody
    assert steps_of(score) == [(2, 8), (0, 4), (-5, 2)]
    # when the top note ends, the highest note still sounding takes over at the next onset
    held = make_score([(0, 4, 67), (0, 8, 60), (4, 4, 64)])
    assert steps_of(held) == [(-3, 4)]


def test_melody_is_transposition_and_resolution_invariant():
    line = [(0, 2, 60), (2, 2, 64), (4, 4, 67), (8, 2, 65), (10, 6, 64)]
    base = tunes.melody_steps(make_score(line))
    up = tunes.melody_steps(make_score([(o, n, p + 7) for o, n, p in line]))
    finer = tunes.melody_steps(make_score(line, tpq=96))
    assert len(base) == 4
    np.testing.assert_array_equal(base, up)
    np.testing.assert_array_equal(base, finer)
    assert tunes.melody_steps(make_score([(0, 4, 60)])).size == 0


def test_melodies_in_one_batch_equal_one_by_one():
    rng = np.random.default_rng(0)
    scores = []
    for _ in range(30):
        n = int(rng.integers(0, 40))
        notes = [(int(o), int(rng.integers(1, 9)), int(rng.integers(40, 90))) for o in rng.integers(0, 64, n)]
        scores.append(make_score(notes))
    batch = tunes.melodies(scores)
    for score, steps in zip(scores, batch):
        np.testing.assert_array_equal(steps, tunes.melody_steps(score))
    assert any(len(s) for s in batch)


def test_steps_round_trip_through_text():
    steps = tunes.pack_step(np.array([-200, -3, 0, 5, 127]), np.array([1, 0, 4, 300, 255]))
    assert tunes.unpack_step(steps)[0].tolist() == [-127, -3, 0, 5, 127]
    assert tunes.unpack_step(steps)[1].tolist() == [1, 0, 4, 255, 255]
    np.testing.assert_array_equal(tunes.decode_steps(tunes.encode_steps(steps)), steps)


# ------------------------------------------------------------------------------------------
# hashing, groups, index
# ------------------------------------------------------------------------------------------


def test_runs_hash_alike_wherever_they_stand_and_never_across_pieces():
    rng = np.random.default_rng(1)
    run = rng.integers(0, 65536, 10).astype(np.uint16)
    a = np.concatenate([rng.integers(0, 65536, 5), run]).astype(np.uint16)
    b = np.concatenate([run, rng.integers(0, 65536, 7)]).astype(np.uint16)
    ha, hb = tunes.ngram_hashes(a, 10), tunes.ngram_hashes(b, 10)
    assert len(ha) == 6 and len(hb) == 8
    assert ha[5] == hb[0] and len(set(ha.tolist()) & set(hb.tolist())) == 1
    hashes, owner = tunes.corpus_hashes([a, b], 10)
    assert len(hashes) == 6 + 8  # no window across the two melodies
    assert set(hashes[owner == 0].tolist()) == set(ha.tolist())


def test_components_match_a_plain_union_find():
    rng = np.random.default_rng(2)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        m = int(rng.integers(0, 80))
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        parent = list(range(n))

        def find(x):
            while parent[x] != x:
                x = parent[x]
            return x

        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = find(x), find(y)
            parent[max(rx, ry)] = min(rx, ry)
        expected = [find(x) for x in range(n)]
        assert tunes.components(n, a, b).tolist() == expected


def test_tune_groups_join_pieces_sharing_a_long_run_transitively():
    rng = np.random.default_rng(3)
    n = 8
    x, y = rng.integers(0, 65536, n), rng.integers(0, 65536, n)
    filler = lambda k: rng.integers(0, 65536, k)  # noqa: E731
    melodies = [
        np.concatenate([filler(3), x, filler(4)]),  # p0: run x
        np.concatenate([x, filler(2), y]),  # p1: runs x and y
        np.concatenate([filler(6), y]),  # p2: run y (joined to p0 through p1)
        np.concatenate([filler(2), x[:-1], filler(5)]),  # p3: only n-1 steps of x
        filler(20),  # p4: nothing shared
    ]
    melodies = [m.astype(np.uint16) for m in melodies]
    names = ["p4", "p0", "p1", "p2", "p3"]
    groups = tunes.tune_groups(melodies, names, n)
    assert groups == ["p0", "p0", "p0", "p2", "p3"]  # named by the smallest member
    # independent of the order of the pieces
    order = [3, 1, 4, 0, 2]
    again = tunes.tune_groups([melodies[i] for i in order], [names[i] for i in order], n)
    assert again == [groups[i] for i in order]
    # pieces that share a name (a group of the dataset) are one tune too
    assert tunes.tune_groups(melodies, ["a", "b", "c", "d", "a"], n)[4] == "a"


def test_the_index_finds_the_longest_shared_run_and_the_overlap():
    rng = np.random.default_rng(4)
    train = [rng.integers(0, 50, 60).astype(np.uint16) for _ in range(5)]
    query = np.concatenate([rng.integers(100, 150, 3), train[2][10:23], rng.integers(100, 150, 4)]).astype(np.uint16)
    index = tunes.MelodyIndex(train)
    assert index.longest_shared_run(query) == 13
    assert index.shares_run(query, 13) and not index.shares_run(query, 14)
    found, total = index.overlap([query], 4)
    assert (found, total) == (10, len(query) - 3)
    report = tunes.leakage(train, [query, rng.integers(100, 150, 30).astype(np.uint16)], n=12)
    assert report["test_sharing_run"] == 1 and report["test_pieces"] == 2


# ------------------------------------------------------------------------------------------
# splits by tune
# ------------------------------------------------------------------------------------------


def _runs(melody: np.ndarray, n: int) -> set:
    return {tuple(melody[i : i + n].tolist()) for i in range(len(melody) - n + 1)}


@pytest.mark.parametrize("name", ["bach_chorales", "folk_melodies"])
def test_no_test_piece_of_a_bundled_corpus_shares_a_long_run_with_training(name):
    """The default split of both bundled corpora (by tune): no test piece shares a run of
    DEFAULT_RUN or more melody steps with a training piece (checked with plain tuples, not
    the hashes); split by piece, the same corpus does leak."""
    n = tunes.DEFAULT_RUN
    for split_by in ("tune", "piece"):
        params = {} if split_by == "tune" else {"split_by": "piece"}
        data = musicfw.load_data(musicfw.build_dataset(name, **params), seed=0, progress=False)
        melodies = dict(zip((p.id for p in data.pieces()), tunes.melodies([p.score for p in data.pieces()])))
        train = set().union(*(_runs(melodies[p.id], n) for p in data.pieces("train")))
        sharing = [p.id for p in data.pieces("test") if _runs(melodies[p.id], n) & train]
        leak = data.split_report["leakage"]
        assert leak["test_sharing_run"] == len(sharing) and leak["run_steps"] == n
        if split_by == "tune":
            assert sharing == [], sharing[:5]
            assert data.split_report["split_by"] == "tune" and data.split_report["tunes"]["shared"] > 10
            sizes = data.split_sizes()
            assert sizes["test"] >= 0.09 * len(data.pieces())  # fractions still hold
        else:
            assert len(sharing) >= 10


class Tunes(MusicDataset):
    """Pieces of which some are transposed copies of others."""

    name = "tunes_test"
    Config = SplitConfig

    def collect(self, progress=True):
        rng = np.random.default_rng(5)
        pieces = []
        for i in range(60):
            line = [(2 * k, 2, int(p)) for k, p in enumerate(rng.integers(55, 80, 30))]
            pieces.append(Piece(id=f"t{i:02d}", score=make_score(line)))
            if i % 3 == 0:  # a copy, transposed and under another name
                pieces.append(Piece(id=f"z{i:02d}", score=make_score([(o, n, p + 2) for o, n, p in line])))
        return pieces, []


def test_split_by_tune_keeps_copies_together_and_the_kernel_asks_for_the_grouping():
    with pytest.raises(UserError, match="load_data"):
        Tunes(SplitConfig(split_by="tune")).load(seed=0)
    with pytest.raises(ConfigError, match="data.split_by: 'song' is not allowed. Allowed values: piece, tune"):
        Tunes(SplitConfig(split_by="song"))
    for seed in range(4):
        data = musicfw.load_data(Tunes(SplitConfig(split_by="tune")), seed=seed, progress=False)
        split = {p.id: p.split for p in data.pieces()}
        assert all(split[f"z{i:02d}"] == split[f"t{i:02d}"] for i in range(0, 60, 3))
        assert data.split_report["tunes"] == {"units": 60, "shared": 20, "pieces_in_shared": 40, "largest": 2}
        assert data.split_report["leakage"]["test_sharing_run"] == 0
    by_piece = [musicfw.load_data(Tunes(), seed=s, progress=False).split_report["leakage"] for s in range(4)]
    assert any(leak["test_sharing_run"] > 0 for leak in by_piece)  # split by piece, copies leak
    assert by_piece[0]["ngram_overlap"]["4"] is not None


def test_piano_roll_benchmarks_keep_their_published_split_and_report_its_leakage():
    ds = musicfw.build_dataset("piano_roll_benchmark", dataset="jsb_chorales")
    data = musicfw.load_data(ds, progress=False)
    assert data.split_report["split_by"] == "published" and "tunes" not in data.split_report
    assert data.split_sizes() == {"train": 229, "valid": 76, "test": 77}
    assert data.split_report["leakage"]["test_pieces"] == 77


def _write_folder(folder: Path) -> Path:
    rng = np.random.default_rng(6)
    folder.mkdir(parents=True)
    for i in range(24):
        line = [(2 * k, 2, int(p)) for k, p in enumerate(rng.integers(55, 80, 30))]
        make_score(line).dump_midi(str(folder / f"piece_{i:02d}.mid"))
        if i % 2 == 0:
            make_score([(o, n, p - 5) for o, n, p in line]).dump_midi(str(folder / f"copy_{i:02d}.mid"))
    return folder


def test_token_shards_split_by_tune_like_the_token_cache(tmp_path):
    from musicfw.core.build import build
    from musicfw.engine.data import MusicDataModule

    folder = _write_folder(tmp_path / "midi")
    modules = {}
    for fmt in ("cache", "shards"):
        dataset = build("datasets", "midi_folder", path=str(folder), format=fmt, num_workers=1, split_by="tune")
        modules[fmt] = MusicDataModule(
            dataset, build("tokenizer", "remi"), seed=1, batch_size=4, seq_len=32, cache_dir=str(tmp_path / fmt),
            progress=False, data_format=fmt, workers=1, shard_files=4,
        ).prepare()
    assert modules["shards"].store.format == "shards"
    for split in ("train", "valid", "test"):
        assert [p.id for p in modules["shards"].pieces(split)] == [p.id for p in modules["cache"].pieces(split)]
    split = {p.id: s for s in ("train", "valid", "test") for p in modules["cache"].pieces(s)}
    assert all(split[f"copy_{i:02d}.mid"] == split[f"piece_{i:02d}.mid"] for i in range(0, 24, 2))
    assert modules["shards"].summary()["split"] == modules["cache"].summary()["split"]
    assert modules["cache"].summary()["split"]["tunes"]["shared"] == 12


def test_data_prepare_prints_the_leakage_and_a_run_records_it(tmp_path):
    out = run_cli("data", "prepare", "bach_chorales", "max_count=40", "--json")
    summary = json.loads(out.stdout)
    assert summary["split"]["split_by"] == "tune" and "leakage" in summary["split"]
    text = run_cli("data", "prepare", "bach_chorales", "max_count=40", "split_by=piece").stdout
    assert "split by piece; leakage:" in text and "test pieces share a 16-step melody run" in text

    from musicfw.engine.evaluation import evaluate_run
    from omegaconf import OmegaConf

    data = musicfw.load_data(musicfw.build_dataset("bach_chorales", max_count=40), progress=False)

    class Module:  # what evaluate_run reads of a data module for the split
        pass

    module = Module()
    module.data = data
    result = evaluate_run(OmegaConf.create({"metrics": [], "reference_split": "test", "max_reference": 0}),
                          tmp_path, datamodule=module)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["split"] == result["split"] == json.loads(json.dumps(data.split_report))
    assert written["split"]["leakage"]["test_pieces"] == len(data.pieces("test"))
