"""The music21 corpora: conversion into a cache (small subsets), reuse, grouped splits."""

from __future__ import annotations

from pathlib import Path

import pytest

import musicfw
from musicfw.core.errors import ConfigError
from musicfw.plugins.datasets import corpora, m21convert
from musicfw.core.dataset import MusicDataset, Piece

pytest.importorskip("music21")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MUSICFW_CACHE_DIR", str(tmp_path / "env-cache"))
    return tmp_path / "cache"


def test_bach_subset_converts_once_then_loads_from_the_cache(cache, monkeypatch):
    ds = musicfw.build_dataset("bach_chorales", max_count=4, cache_dir=str(cache), num_workers=2, shipped=False)
    data = musicfw.load_data(ds, seed=0, progress=False)
    assert len(data.pieces()) == 4 and not data.skipped
    for piece in data.pieces():
        assert piece.id.startswith("bach/bwv") and piece.group == piece.id
        names = [t.name for t in piece.score.tracks]
        assert names == ["Soprano", "Alto", "Tenor", "Bass"]
        assert piece.score.tpq == 480 and len(piece.score.time_signatures) >= 1
        assert piece.n_notes > 100
    store_dirs = list((cache / "corpora").glob("music21-*/bach"))
    assert len(store_dirs) == 1 and list(store_dirs[0].glob("shard-*.bin"))

    def no_conversion(unit):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(m21convert, "convert", no_conversion)
    again = musicfw.load_data(
        musicfw.build_dataset("bach_chorales", max_count=4, cache_dir=str(cache), shipped=False), seed=0, progress=False
    )
    assert [p.id for p in again.pieces()] == [p.id for p in data.pieces()]
    assert [p.score.note_num() for p in again.pieces()] == [p.score.note_num() for p in data.pieces()]
    # every part, not only the voices, when asked
    everything = musicfw.build_dataset("bach_chorales", max_count=4, cache_dir=str(cache), voices="all", shipped=False)
    parts = [len(p.score.tracks) for p in musicfw.load_data(everything, progress=False).pieces()]
    assert all(n >= 4 for n in parts)


def test_bach_units_are_the_chorales():
    units = corpora.BachChorales().units()
    ids = [u.id for u in units]
    assert 400 <= len(units) <= 415 and len(set(ids)) == len(ids)
    assert not any("bwv846" in i for i in ids)  # the WTC prelude is not a chorale
    stems = [i.rsplit(".", 1)[0] for i in ids]
    assert len(set(stems)) == len(stems)  # no chorale twice (MusicXML and Humdrum)


def test_max_count_picks_a_stable_growing_subset():
    units = corpora.FolkMelodies().units()
    assert len(units) > 12000
    small = {u.id for u in corpora.select(units, 50)}
    large = {u.id for u in corpora.select(units, 500)}
    assert len(small) == 50 and small < large
    collections = {i.split("/")[0] for i in large}
    assert collections == set(corpora.FOLK_COLLECTIONS)  # representative, not the first file


def test_folk_subset_keeps_tunes_of_one_file_together(cache):
    ds = musicfw.build_dataset(  # split_by=piece: by source file (the default, tune, is tested below)
        "folk_melodies", collections=["airdsAirs"], max_count=14, cache_dir=str(cache), num_workers=1,
        split_by="piece",
    )
    data = musicfw.load_data(ds, seed=0, progress=False)
    assert len(data.pieces()) + len(data.skipped) == 14
    by_group: dict[str, set] = {}
    for piece in data.pieces():
        assert piece.id.startswith("airdsAirs/book") and "#" in piece.id
        assert len(piece.score.tracks) == 1 and piece.n_notes > 5
        by_group.setdefault(piece.group, set()).add(piece.split)
    assert len(by_group) < len(data.pieces())  # several tunes per file
    assert all(len(splits) == 1 for splits in by_group.values())
    with pytest.raises(ConfigError, match="airdsAirs"):
        musicfw.build_dataset("folk_melodies", collections=["airds"])


def test_split_abc_keeps_header_fields_and_numbers():
    text = "%abc\nL:1/8\nfree text\n\nX:1\nT:One\nK:G\nGAB|\n\nX: 2\nT:Two\nK:D\nDEF|\n"
    header, tunes = corpora.split_abc(text)
    assert [n for n, _ in tunes] == ["1", "2"]
    assert corpora._header_fields(header) == "L:1/8\n"
    assert tunes[1][1].startswith("X: 2") and "DEF" in tunes[1][1]


def test_grouped_split_through_load():
    class Grouped(MusicDataset):
        name = "grouped"
        from musicfw.core.dataset import SplitConfig as Config

        def collect(self, progress=True):
            import symusic

            score = symusic.Score(480)
            return [Piece(id=f"f{i % 40}#{i}", score=score, group=f"f{i % 40}") for i in range(400)], []

    data = Grouped().load(seed=2)
    splits: dict[str, set] = {}
    for piece in data.pieces():
        splits.setdefault(piece.group, set()).add(piece.split)
    assert all(len(s) == 1 for s in splits.values())
    assert set().union(*splits.values()) == {"train", "valid", "test"}


def test_conversion_failures_are_reasons_not_crashes(tmp_path):
    unit = m21convert.Unit(id="x/bad.abc#1", group="x/bad.abc", path=str(tmp_path / "bad.abc"), text="X:1\nK:G\n")
    unit_id, blob, _title, reason = m21convert.convert(unit)
    assert unit_id == unit.id and blob is None and reason
    missing = m21convert.Unit(id="x/none.mxl", group="x/none.mxl", path=str(tmp_path / "none.mxl"))
    assert m21convert.convert(missing)[3]


def test_a_damaged_conversion_cache_is_named_not_blamed_on_the_sources(cache):
    from musicfw.core.errors import DataError

    ds = musicfw.build_dataset("bach_chorales", max_count=2, cache_dir=str(cache), num_workers=1, shipped=False)
    assert len(musicfw.load_data(ds, seed=0, progress=False).pieces()) == 2
    store = corpora.CorpusStore(cache, "bach")
    (shard,) = store.dir.glob("shard-*.bin")
    assert store.shard_digests()[shard.name]  # recorded when written
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    shard.write_bytes(bytes(data))
    again = musicfw.build_dataset("bach_chorales", max_count=2, cache_dir=str(cache), shipped=False)
    with pytest.raises(DataError, match="damaged") as err:
        musicfw.load_data(again, seed=0, progress=False)
    assert shard.name in str(err.value) and "Delete the folder" in str(err.value)
    shard.write_bytes(bytes(data[:100]))  # truncated
    with pytest.raises(DataError, match="sha256"):
        musicfw.load_data(again, seed=0, progress=False)
    # the recovery the message names works
    import shutil

    shutil.rmtree(store.dir)
    assert len(musicfw.load_data(again, seed=0, progress=False).pieces()) == 2


def test_a_hostile_conversion_manifest_reads_nothing_outside_and_unchecked_pieces_are_converted_again(cache, tmp_path):
    """Issue 30, class 9: a manifest entry naming a path outside the store, a shard without a
    recorded sha256 (an old cache) or a bad slice is not read: that piece is converted anew."""
    import json

    ds = musicfw.build_dataset("bach_chorales", max_count=2, cache_dir=str(cache), num_workers=1, shipped=False)
    good = {p.id: p.score.note_num() for p in musicfw.load_data(ds, seed=0, progress=False).pieces()}
    store = corpora.CorpusStore(cache, "bach")
    head = json.loads(store.manifest_path.read_text())
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret bytes that are not the store's")
    first, second = sorted(good)
    hostile = dict(head)
    hostile["entries"] = dict(head["entries"])
    hostile["entries"][first] = dict(head["entries"][first], shard=str(outside), offset=0, length=10)
    hostile["entries"][second] = dict(head["entries"][second], offset=-5)
    store.manifest_path.write_text(json.dumps(hostile))
    assert first not in store.manifest() and second not in store.manifest()
    assert store.load([first, second]) == {}
    unchecked = dict(head, shards={})  # written before checksums were recorded
    store.manifest_path.write_text(json.dumps(unchecked))
    assert store.manifest() == {}
    again = musicfw.build_dataset("bach_chorales", max_count=2, cache_dir=str(cache), num_workers=1, shipped=False)
    assert {p.id: p.score.note_num() for p in musicfw.load_data(again, seed=0, progress=False).pieces()} == good
    assert set(corpora.CorpusStore(cache, "bach").manifest()) >= set(good)  # converted again, checksummed
