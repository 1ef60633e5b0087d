"""The corpora shipped already converted: the same pieces, splits and MIDI bytes as a fresh
music21 conversion, no conversion at all on a first load, local conversion of changed sources,
and music21's private scratch folder."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import musicfw
from musicfw.plugins.datasets import corpora, m21convert, shipped

pytest.importorskip("music21")

COLLECTIONS = ("bach", *corpora.FOLK_COLLECTIONS)


def _no_conversion(unit):
    raise AssertionError(f"{unit.id} was converted, but the shipped archive holds it")


def _same_music21(collection: str) -> None:
    archive = shipped.shipped(collection)
    assert archive is not None, f"musicfw ships no archive for {collection}"
    if archive.music21 != corpora.music21_version():
        pytest.skip(
            f"the {collection} archive was converted with music21 {archive.music21}, this is "
            f"{corpora.music21_version()}: a fresh conversion may differ (rebuild: scripts/ship_corpora.py)"
        )


def test_every_collection_is_shipped_and_covers_the_corpus():
    units = corpora.BachChorales().units() + corpora.FolkMelodies().units()
    for collection in COLLECTIONS:
        archive = shipped.shipped(collection)
        assert archive is not None, collection
        members = [u for u in units if u.id.split("/", 1)[0] == collection]
        assert set(archive.entries) == {u.id for u in members}
        sample = members[:: max(1, len(members) // 25)]
        assert len(archive.lookup(sample)) == len(sample)  # the installed sources match


@pytest.mark.parametrize(
    "name,params",
    [
        ("bach_chorales", {"max_count": 10}),
        ("folk_melodies", {"max_count": 40}),  # a representative subset: every collection
    ],
)
def test_shipped_pieces_equal_a_fresh_music21_conversion(name, params, tmp_path, monkeypatch):
    for collection in COLLECTIONS if name == "folk_melodies" else ("bach",):
        _same_music21(collection)
    fresh = musicfw.build_dataset(name, cache_dir=str(tmp_path / "fresh"), num_workers=1, shipped=False, **params)
    fresh_data = musicfw.load_data(fresh, seed=3, progress=False)
    monkeypatch.setattr(m21convert, "convert", _no_conversion)
    ship = musicfw.build_dataset(name, cache_dir=str(tmp_path / "empty"), **params)
    ship_data = musicfw.load_data(ship, seed=3, progress=False)
    assert not (tmp_path / "empty").exists()  # nothing converted, nothing cached
    assert [p.id for p in ship_data.pieces()] == [p.id for p in fresh_data.pieces()]
    assert [p.split for p in ship_data.pieces()] == [p.split for p in fresh_data.pieces()]
    assert [p.n_notes for p in ship_data.pieces()] == [p.n_notes for p in fresh_data.pieces()]
    assert [p.title for p in ship_data.pieces()] == [p.title for p in fresh_data.pieces()]
    assert ship_data.skipped == fresh_data.skipped
    assert ship_data.fingerprint() == fresh_data.fingerprint()  # byte-identical MIDI
    assert ship.identity() == fresh.identity()  # token caches are shared between the two


def test_a_changed_source_is_converted_locally(tmp_path, monkeypatch):
    units = corpora.select(corpora.FolkMelodies(corpora.FolkMelodiesConfig(collections=["airdsAirs"])).units(), 5)
    changed = units[2]
    text = changed.text.replace("\nK:", "\nT:a local edit\nK:", 1)
    assert text != changed.text
    edited = [u if u is not changed else m21convert.Unit(u.id, u.group, u.path, text) for u in units]
    monkeypatch.setattr(corpora.FolkMelodies, "units", lambda self: edited)
    converted = []
    real = m21convert.convert

    def spy(unit):
        converted.append(unit.id)
        return real(unit)

    monkeypatch.setattr(m21convert, "convert", spy)
    ds = musicfw.build_dataset("folk_melodies", collections=["airdsAirs"], cache_dir=str(tmp_path), num_workers=1)
    data = musicfw.load_data(ds, progress=False)
    assert converted == [changed.id]
    assert {p.id for p in data.pieces()} | {i for i, _ in data.skipped} == {u.id for u in units}


def test_build_archive_round_trip(tmp_path):
    units = corpora.BachChorales().units()[:3]
    path = corpora.build_archive("bach", units, tmp_path / "cache", tmp_path / "out", workers=1, progress=False)
    archive = shipped.ShippedCollection.read(path)
    assert archive.music21 == corpora.music21_version() and set(archive.entries) == {u.id for u in units}
    store = corpora.CorpusStore(tmp_path / "cache", "bach")
    manifest = store.manifest()
    found = archive.lookup(units)
    for unit in units:
        entry = manifest[unit.id]
        blob = (store.dir / entry["shard"]).read_bytes()[entry["offset"] : entry["offset"] + entry["length"]]
        assert found[unit.id][0] == blob and found[unit.id][1] == entry["title"]
    # an archive damaged on disk is ignored (the pieces are converted instead), not fatal
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / path.name).write_bytes(path.read_bytes()[:100])
    assert shipped.shipped("bach", bad) is None


def test_music21_scratch_is_private_and_no_pickle_is_read(tmp_path, monkeypatch):
    from music21 import environment

    root = tmp_path / "cache"
    scratch = root / m21convert.SCRATCH_NAME
    scratch.mkdir(parents=True)
    scratch.chmod(0o777)  # a scratch folder others could write to is made private again
    units = corpora.BachChorales().units()[:1]
    store = corpora.CorpusStore(root, "bach")
    assert store.ensure(units, workers=1, progress=False) == 1
    assert Path(environment.Environment().getRootTempDir()) == scratch
    assert stat.S_IMODE(scratch.stat().st_mode) == 0o700
    assert not list(scratch.rglob("*.p*")), "music21 wrote a pickle"  # forceSource: none read or written
    loaded = store.load([units[0].id])
    assert loaded[units[0].id][0] is not None
