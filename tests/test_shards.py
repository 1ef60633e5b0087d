"""Token shards (musicfw/engine/shards.py): the same batches as the token cache, parallel and resumable
preparation, damaged shards and changed folders detected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TEST_MIDI, run_cli

from musicfw.engine import shards
from musicfw.core.build import build
from musicfw.engine.data import MusicDataModule
from musicfw.core.errors import DataError


def write_corpus(folder: Path, n: int, seed: int = 0, notes: int = 24) -> Path:
    """``n`` small MIDI files in two sub-folders, plus three bad files."""
    import symusic

    rng = np.random.default_rng(seed)
    for i in range(n):
        score = symusic.Score(480)
        track = symusic.Track(program=0)
        pitch = int(rng.integers(48, 72))
        for k in range(notes + int(rng.integers(0, notes))):
            pitch = int(np.clip(pitch + rng.integers(-4, 5), 30, 96))
            track.notes.append(symusic.Note(k * 240, 240, pitch, int(rng.integers(40, 110))))
        score.tracks.append(track)
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        score.dump_midi(str(sub / f"piece_{i:04d}.mid"))
    for name in ("empty.mid", "not_a_midi.mid", "truncated.mid"):
        (folder / name).write_bytes((TEST_MIDI / "bad" / name).read_bytes())
    return folder


def datamodule(folder: Path, cache: Path, fmt: str, workers: int = 1, shard_files: int = 4, tokenizer: str = "remi",
               **kw) -> MusicDataModule:
    dataset = build("datasets", "midi_folder", path=str(folder), format=fmt, num_workers=workers)
    tokenizer = build("tokenizer", tokenizer)
    return MusicDataModule(
        dataset, tokenizer, seed=kw.pop("seed", 3), batch_size=4, seq_len=32, cache_dir=str(cache),
        progress=False, data_format=fmt, workers=workers, shard_files=shard_files, **kw,
    )


def shard_folder(cache: Path) -> Path:
    (folder,) = (cache / "shards").iterdir()
    return folder


def epoch_batches(dm: MusicDataModule, epochs: int = 2) -> list[dict[str, torch.Tensor]]:
    loader = dm.train_dataloader()
    out = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        out.extend(loader)
    return out


def test_shards_give_the_token_caches_batches(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 23)
    cache_dm = datamodule(corpus, tmp_path / "c1", "cache").prepare()
    shard_dm = datamodule(corpus, tmp_path / "c2", "shards", workers=2).prepare()
    assert shard_dm.store.format == "shards" and cache_dm.store.format == "cache"
    assert len(list(shard_folder(tmp_path / "c2").glob("shard-*.arrow"))) >= 3
    assert shard_dm.store.ids == cache_dm.store.ids
    for split in ("train", "valid", "test"):
        assert [p.id for p in shard_dm.pieces(split)] == [p.id for p in cache_dm.pieces(split)]
        for a, b in zip(shard_dm.tokens(split), cache_dm.tokens(split)):
            np.testing.assert_array_equal(a, b)
    a, b = epoch_batches(shard_dm), epoch_batches(cache_dm)
    assert len(a) == len(b) > 2
    for x, y in zip(a, b):
        assert torch.equal(x["tokens"], y["tokens"]) and torch.equal(x["mask"], y["mask"])
    # the two epochs differ (a fresh draw per epoch), and each is reproducible
    assert not all(torch.equal(x["tokens"], y["tokens"]) for x, y in zip(a[: len(a) // 2], a[len(a) // 2 :]))
    for x, y in zip(shard_dm.val_dataloader(), cache_dm.val_dataloader()):
        assert torch.equal(x["tokens"], y["tokens"]) and torch.equal(x["mask"], y["mask"])
    s1, s2 = shard_dm.summary(), cache_dm.summary()
    for key in ("pieces", "notes", "splits", "tokens", "skipped", "not_represented"):
        assert s1[key] == s2[key], key
    assert abs(s1["duration_s"] - s2["duration_s"]) < 0.5
    assert len(s1["skipped"]) == 3
    # a stored piece reads its score from its file when asked (evaluation, token rates)
    piece = shard_dm.pieces("train")[0]
    assert piece.score.note_num() == piece.n_notes > 0


def test_a_rank_reads_only_its_share(tmp_path):
    """Under DDP (rank r of W), the ranks' windows are disjoint positions of the one global
    draw: together they are the one-process batches."""
    from musicfw.engine.distributed import _sampler_classes

    corpus = write_corpus(tmp_path / "corpus", 15)
    dm = datamodule(corpus, tmp_path / "c", "shards").prepare()
    loader = dm.train_dataloader()
    sharded = _sampler_classes()[0]
    def draw(sampler):
        sampler.set_epoch(1)  # every rank draws epoch 1's global sequence
        return list(sampler)

    whole = draw(loader.sampler)
    ranks = [draw(sharded(loader.sampler, 2, r)) for r in range(2)]
    padded = whole + whole[: 2 * len(ranks[0]) - len(whole)]
    assert len(ranks[0]) == len(ranks[1]) == (len(whole) + 1) // 2
    assert ranks[0] == padded[0::2] and ranks[1] == padded[1::2]
    # each rank reads only the pieces of its own windows
    assert {j for j, _ in ranks[0]} != {j for j, _ in whole} or len(whole) < 4


def test_auto_picks_the_cache_for_a_small_folder_and_shards_for_a_large_one(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus", 6)
    assert datamodule(corpus, tmp_path / "c1", "auto").prepare().store.format == "cache"
    monkeypatch.setattr(shards, "AUTO_MIN_FILES", 5)
    assert datamodule(corpus, tmp_path / "c2", "auto").prepare().store.format == "shards"


def test_shards_need_a_dataset_read_file_by_file(tmp_path):
    from musicfw.core.errors import ConfigError

    class Whole:
        name = "whole"

        def sources(self):
            return None

    with pytest.raises(ConfigError, match="data.format=cache"):
        shards.resolve_format("shards", Whole())
    assert shards.resolve_format("auto", Whole()) == ("cache", None)


def test_an_interrupted_preparation_keeps_its_finished_shards(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", 20)
    cache = tmp_path / "c"
    dm = datamodule(corpus, cache, "shards")
    dataset, tokenizer = dm.dataset, dm.tokenizer
    entries = shards.stat_sources(dataset.sources())
    folder = cache / "shards" / "x"
    calls = []

    def dies_after_three(folder_, sid, chunk):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user's Ctrl-C in the middle of the corpus
        calls.append(sid)
        return shards.build_shard(folder_, sid, chunk)

    with pytest.raises(KeyboardInterrupt):
        shards.prepare_shards(folder, dataset, tokenizer, entries, workers=1, shard_files=4, progress=False, build=dies_after_three)
    assert not (folder / shards.MANIFEST).exists()
    done = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.arrow")}
    assert len(done) == 3
    redone = []

    def counting(folder_, sid, chunk):
        redone.append(sid)
        return shards.build_shard(folder_, sid, chunk)

    manifest = shards.prepare_shards(folder, dataset, tokenizer, entries, workers=1, shard_files=4, progress=True, build=counting)
    err = capsys.readouterr().err
    assert "3 of" in err and "already prepared and kept" in err
    assert not set(redone) & set(calls) and len(redone) == len(manifest["shards"]) - 3
    assert {name: (folder / name).stat().st_mtime_ns for name in done} == done  # not rewritten
    assert len(shards.ShardStore(folder).ids) == 20


def test_a_killed_preparation_resumes(tmp_path):
    """SIGKILL in the middle of `musicfw data prepare`, then the same command again."""
    corpus = write_corpus(tmp_path / "corpus", 160, notes=200)
    cache = tmp_path / "c"
    env = {**os.environ, "MUSICFW_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "musicfw.cli", "data", "prepare", "midi_folder", f"path={corpus}",
           "format=shards", "shard_files=2", "--workers", "1", "--tokenizer", "remi"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            metas = list(cache.glob("shards/*/shard-*.json"))
            if len(metas) >= 3 or proc.poll() is not None:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    folder = shard_folder(cache)
    assert not (folder / shards.MANIFEST).exists(), "the preparation finished before it could be killed"
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.json")}
    assert kept
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{len(kept)} of" in again.stderr and "already prepared and kept" in again.stderr
    assert "midi_folder: 160 pieces" in again.stdout
    for name, mtime in kept.items():
        assert (folder / name).stat().st_mtime_ns == mtime


@pytest.mark.parametrize("damage", ["truncate", "alter", "delete"])
def test_a_damaged_shard_is_named_with_the_command_that_rebuilds_it(tmp_path, damage):
    corpus = write_corpus(tmp_path / "corpus", 12)
    cache = tmp_path / "c"
    datamodule(corpus, cache, "shards").prepare()
    folder = shard_folder(cache)
    victim = sorted(folder.glob("shard-*.arrow"))[1]
    others = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.arrow") if p != victim}
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "alter":
        victim.write_bytes(data[:-9] + bytes([data[-9] ^ 0xFF]) + data[-8:])
    else:
        victim.unlink()
    with pytest.raises(DataError) as err:
        datamodule(corpus, cache, "shards").prepare()
    message = str(err.value)
    assert victim.name in message and f"musicfw data repair '{folder}'" in message
    assert {"truncate": "truncated", "alter": "sha256", "delete": "missing"}[damage] in message
    if damage == "truncate":  # the CLI (once: it is slow to start): one paragraph, exit 2, no traceback
        env = {"MUSICFW_CACHE_DIR": str(cache)}
        res = run_cli("data", "prepare", "midi_folder", f"path={corpus}", "format=shards", "shard_files=4",
                      "--tokenizer", "remi", "--workers", "1", env=env)
        assert res.returncode == 2 and victim.name in res.stderr and "Traceback" not in res.stderr
        assert "musicfw data repair" in res.stderr
        fixed = run_cli("data", "repair", str(folder), "--workers", "1", env=env)
        assert fixed.returncode == 0, fixed.stderr
        assert "rebuilt 1 shard(s)" in fixed.stdout and victim.name in fixed.stdout
    else:
        assert shards.repair(folder, workers=1, progress=False) == [victim.name]
    assert shards.repair(folder, workers=1, progress=False) == []  # nothing left to do
    assert victim.read_bytes() == data
    assert {name: (folder / name).stat().st_mtime_ns for name in others} == others
    assert len(datamodule(corpus, cache, "shards").prepare().store.ids) == 12


def test_a_changed_corpus_folder_is_noticed(tmp_path, capsys):
    import shutil

    corpus = write_corpus(tmp_path / "corpus", 30)
    cache = tmp_path / "c"
    first = datamodule(corpus, cache, "shards").prepare()
    folder = shard_folder(cache)
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.arrow")}
    (corpus / "a" / "piece_0001.mid").unlink()
    shutil.copy(corpus / "b" / "piece_0000.mid", corpus / "b" / "piece_0000_copy.mid")
    modified = corpus / "b" / "piece_0002.mid"
    write_corpus(tmp_path / "other", 1, seed=9)
    modified.write_bytes((tmp_path / "other" / "b" / "piece_0000.mid").read_bytes())
    dm = datamodule(corpus, cache, "shards")
    dm.progress = True
    dm.prepare()
    err = capsys.readouterr().err
    assert "The corpus folder changed" in err
    assert "1 added (b/piece_0000_copy.mid)" in err and "1 removed (a/piece_0001.mid)" in err
    assert "1 modified (b/piece_0002.mid)" in err
    assert "a/piece_0001.mid" not in dm.store.ids and "b/piece_0000_copy.mid" in dm.store.ids
    assert len(dm.store.ids) == len(first.store.ids)
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.arrow")}
    kept = {n for n in before if after.get(n) == before[n]}
    assert kept and len(kept) < len(before)  # unchanged shards kept, changed ones redone
    manifest = json.loads((folder / shards.MANIFEST).read_text())
    assert {f["name"] for f in manifest["files"]} >= {"b/piece_0000_copy.mid", "b/piece_0002.mid"}
    # the same folder again: nothing said, nothing redone
    datamodule(corpus, cache, "shards").prepare()
    assert "changed" not in capsys.readouterr().err


def test_plan_cuts_depend_on_names_only():
    entries = [{"name": f"f{i:05d}.mid", "size": i, "mtime_ns": 0} for i in range(2000)]
    plan = shards.plan_shards(entries, 100)
    sizes = [len(c) for c in plan]
    assert sum(sizes) == 2000 and max(sizes) <= 200 and min(sizes[:-1]) >= 50
    inserted = entries[:1000] + [{"name": "f00999x.mid", "size": 1, "mtime_ns": 0}] + entries[1000:]
    ids = {shards.shard_id(c) for c in plan}
    changed = [c for c in shards.plan_shards(inserted, 100) if shards.shard_id(c) not in ids]
    assert 1 <= len(changed) <= 2


def test_data_format_is_validated(tmp_path):
    res = run_cli("data", "prepare", "midi_folder", f"path={TEST_MIDI}", "format=zip", "--tokenizer", "remi")
    assert res.returncode == 2 and "format" in res.stderr and "shards" in res.stderr and "Traceback" not in res.stderr


def test_a_run_trains_generates_and_evaluates_from_shards(tmp_path):
    """`musicfw run` end to end on token shards, with augmentation (scores read from the files
    when a sample needs them) and feature metrics (reference pieces read the same way)."""
    corpus = write_corpus(tmp_path / "corpus", 16)
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"name: sharded\noutput_dir: {tmp_path / 'runs'}\n"
        f"data: {{name: midi_folder, path: {corpus}, format: shards, shard_files: 4, num_workers: 2}}\n"
        "tokenizer: {name: remi}\n"
        "model: {name: lstm, hidden_size: 16, num_layers: 1, embed_dim: 8}\n"
        "train: {max_steps: 4, batch_size: 2, seq_len: 32, lr: 0.01}\n"
        "augment: {transpose: [-2, 2]}\n"
        "generate: {n: 2, max_tokens: 32, render_audio: false}\n"
        "evaluate: {metrics: [nll, muspy]}\nlogger: {name: none}\n"
    )
    res = run_cli("run", str(exp), env={"MUSICFW_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["likelihood"]["nll"] and metrics["features"]
    assert json.loads((run / "token_rates.json").read_text())["tokens_per_second"] > 0
    assert len(list((tmp_path / "cache" / "shards").glob("*/shard-*.arrow"))) >= 3
    assert "corpus/empty.mid" in (run / "skipped.txt").read_text()


def test_two_processes_preparing_the_same_shards_at_once(tmp_path):
    """torchrun / srun start every rank at once, and every rank prepares the data: two
    preparations of the same folder at the same time both succeed, with the same shards."""
    corpus = write_corpus(tmp_path / "corpus", 40)
    cache = tmp_path / "c"
    env = {**os.environ, "MUSICFW_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "musicfw.cli", "data", "prepare", "midi_folder", f"path={corpus}",
           "format=shards", "shard_files=2", "--workers", "1", "--tokenizer", "remi", "--quiet"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert "midi_folder: 40 pieces" in out
    folder = shard_folder(cache)
    manifest = json.loads((folder / shards.MANIFEST).read_text())
    assert sorted(p.name for p in folder.glob("shard-*.arrow")) == sorted(s["file"] for s in manifest["shards"])
    assert len(shards.ShardStore(folder).ids) == 40


def test_loader_worker_processes_reopen_the_shards(tmp_path):
    """DataLoader workers get the store without its memory maps and open the shards
    themselves: the same batches as in the main process."""
    corpus = write_corpus(tmp_path / "corpus", 12)
    main = datamodule(corpus, tmp_path / "c", "shards").prepare()
    workers = datamodule(corpus, tmp_path / "c", "shards", num_workers=2).prepare()
    main.store.get(0)  # a map opened in the parent is not what the workers use
    a, b = epoch_batches(main, 1), epoch_batches(workers, 1)
    assert len(a) == len(b) > 1
    for x, y in zip(a, b):
        assert torch.equal(x["tokens"], y["tokens"])


def test_multihot_frames_round_trip_through_the_shards(tmp_path):
    """pianoroll frames [T, K] are stored flat and come back with their shape: the same
    batches as the token cache."""
    corpus = write_corpus(tmp_path / "corpus", 9)
    a = datamodule(corpus, tmp_path / "c1", "cache", tokenizer="pianoroll").prepare()
    b = datamodule(corpus, tmp_path / "c2", "shards", tokenizer="pianoroll").prepare()
    assert b.store.kind == "multihot" and b.store.get(0).ndim == 2
    for x, y in zip(b.tokens("train"), a.tokens("train")):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(epoch_batches(b, 1), epoch_batches(a, 1)):
        assert x["tokens"].dtype == torch.float32 and x["tokens"].ndim == 3
        assert torch.equal(x["tokens"], y["tokens"]) and torch.equal(x["mask"], y["mask"])


def test_the_default_read_source_reads_one_midi_piece_through_the_one_loader(tmp_path):
    """A dataset of plain MIDI files needs only `sources()`: its `read_source` says None by
    default, and the engine reads each file as one piece through the one loader, skipping a
    broken one with the loader's reason."""
    from musicfw.core.dataset import MusicDataset, SplitConfig
    from musicfw.music.midiload import read_midi_source

    class Listed(MusicDataset):
        name = "listed"
        Config = SplitConfig

        def collect(self, progress=True):  # pragma: no cover - not used here
            raise AssertionError

    good = sorted((TEST_MIDI / "one_track").glob("*.mid"))[0]
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")
    ds = Listed()
    assert ds.read_source(str(good), "a/good.mid") is None
    pieces, skipped = read_midi_source(ds, str(good), "a/good.mid")
    assert [(p.id, p.group, p.source) for p in pieces] == [("a/good.mid", "a/good.mid", str(good))]
    assert pieces[0].score.note_num() > 0 and not skipped
    pieces, skipped = read_midi_source(ds, str(bad), "broken.mid")
    assert pieces == [] and skipped[0][0] == str(bad) and skipped[0][1]


# --------------------------------------------------------------------------------------------
# hostile shard folders (issue 30, class 5): every path confined, every record cross-checked
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepared shard folder of 12 pieces (copied per test) and its corpus."""
    base = tmp_path_factory.mktemp("prepared")
    corpus = write_corpus(base / "corpus", 12)
    datamodule(corpus, base / "c", "shards").prepare()
    folder = shard_folder(base / "c")
    return corpus, folder, {p.name: p.read_bytes() for p in folder.iterdir()}


def _copy(prepared, tmp_path) -> tuple[Path, Path]:
    corpus, folder, files = prepared
    target = tmp_path / "cache" / "shards" / folder.name
    target.mkdir(parents=True)
    for name, data in files.items():
        (target / name).write_bytes(data)
    return corpus, target


def _tokens(folder: Path) -> dict[str, list]:
    store = shards.ShardStore(folder)
    return {i: store.get(k).tolist() for k, i in enumerate(store.ids)}


def _manifest(folder: Path) -> dict:
    return json.loads((folder / shards.MANIFEST).read_text())


def _put(path: Path, data) -> None:
    path.write_text(json.dumps(data))


def _hostile(name: str, folder: Path, outside: Path) -> None:
    m = _manifest(folder)
    arrows = [s["file"] for s in m["shards"]]
    if name in ("absolute", "dotdot"):
        (outside / "victim.arrow").write_bytes(b"not yours")
        (outside / "victim.json").write_text("{}")
        path = str(outside / "victim.arrow") if name == "absolute" else f"../../../{outside.name}/victim.arrow"
        m["shards"][0]["file"] = path
        _put(folder / shards.MANIFEST, m)
    elif name == "dropped":
        del m["shards"][1]
        _put(folder / shards.MANIFEST, m)
    elif name == "length":
        meta_path = (folder / arrows[0]).with_suffix(".json")
        meta = json.loads(meta_path.read_text())
        next(r for r in meta["pieces"] if "row" in r)["length"] = 10**9
        _put(meta_path, meta)
    elif name == "swapped":
        a, b = folder / arrows[0], folder / arrows[1]
        da, db = a.read_bytes(), b.read_bytes()
        a.write_bytes(db)
        b.write_bytes(da)
        for k in ("sha256", "bytes"):
            m["shards"][0][k], m["shards"][1][k] = m["shards"][1][k], m["shards"][0][k]
        _put(folder / shards.MANIFEST, m)
    elif name == "json-missing":
        (folder / arrows[2]).with_suffix(".json").unlink()
    elif name == "json-garbled":
        (folder / arrows[2]).with_suffix(".json").write_text('{"id": [[[')
    elif name == "no-kind":
        del m["kind"]
        _put(folder / shards.MANIFEST, m)
    elif name == "shards-5":
        m["shards"] = 5
        _put(folder / shards.MANIFEST, m)
    else:  # pragma: no cover
        raise AssertionError(name)


HOSTILE = {  # case: (file the error names, words of what is wrong)
    "absolute": ("manifest.json", "no other path is allowed"),
    "dotdot": ("manifest.json", "no other path is allowed"),
    "dropped": ("manifest.json", "does not match its list of files"),
    "length": ("shard-", "1,000,000,000"),
    "swapped": ("shard-", "the manifest records"),
    "json-missing": (".json", "missing"),
    "json-garbled": (".json", "unreadable"),
    "no-kind": ("manifest.json", "'kind'"),
    "shards-5": ("manifest.json", "'shards' must be a list"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_shard_folder_is_a_clear_error_and_repair_rebuilds_it_inside_its_folder(prepared, tmp_path, case):
    corpus, folder = _copy(prepared, tmp_path)
    want = _tokens(folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    _hostile(case, folder, outside)
    before_outside = {p.name: p.read_bytes() for p in outside.iterdir()}
    where, what = HOSTILE[case]
    with pytest.raises(DataError) as err:
        shards.ShardStore(folder)
    message = str(err.value)
    assert where in message and what in message and "musicfw data repair" in message, message
    with pytest.raises(DataError):  # the way a run meets it: the same clear error
        datamodule(corpus, tmp_path / "cache", "shards").prepare()
    rebuilt = shards.repair(folder, workers=1, progress=False)
    assert rebuilt, case
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before_outside  # nothing touched outside
    assert _tokens(folder) == want
    assert shards.repair(folder, workers=1, progress=False) == []


def test_a_manifest_that_cannot_say_how_it_was_made_is_refused_by_repair(prepared, tmp_path):
    corpus, folder = _copy(prepared, tmp_path)
    m = _manifest(folder)
    m["dataset"] = "x"
    _put(folder / shards.MANIFEST, m)
    with pytest.raises(DataError, match="Delete the folder"):
        shards.repair(folder, workers=1, progress=False)
    with pytest.raises(DataError, match="'dataset' must be an object"):
        shards.ShardStore(folder)


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8),
    st.just("../../etc/passwd"), st.just("/tmp/x.arrow"), st.lists(st.integers(), max_size=3), st.just({}),
)


def _paths(data, prefix=()):
    if isinstance(data, dict):
        for k, v in data.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data[:4]):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(which=st.integers(0, 10**6), spot=st.integers(0, 10**6), value=_JSON_VALUES, drop=st.booleans())
def test_any_mutation_of_a_manifest_or_shard_json_gives_the_same_tokens_or_a_data_error(prepared, tmp_path_factory,
                                                                                       which, spot, value, drop):
    corpus, folder, files = prepared
    target = tmp_path_factory.mktemp("mut")
    for name, data in files.items():
        (target / name).write_bytes(data)
    want = _tokens(target)
    names = sorted(n for n in files if n.endswith(".json"))
    name = names[which % len(names)]
    data = json.loads(files[name])
    paths = [p for p in _paths(data) if not (p and p[0] == "files" and len(p) > 2)]
    path = paths[spot % len(paths)]
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    (target / name).write_text(json.dumps(data))
    try:
        got = _tokens(target)
    except DataError:
        return
    assert got == want  # a harmless change (a title, a skipped reason): the same tokens
