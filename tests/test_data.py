"""Data: splits, robust MIDI folders, the benchmark, augmentation, token cache, DataModule, CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import symusic
from hypothesis import given, settings
from hypothesis import strategies as st

import musicfw
from musicfw.core.errors import ConfigError, DataError
from musicfw.core.tokenizer import Tokenizer
from musicfw.core.dataset import assign_splits, split_value
from musicfw.music.midiload import check_midi_bytes, parse_score as parse_midi

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


# --------------------------------------------------------------------------------------
# helpers: a fake tokenizer and synthetic MIDI folders
# --------------------------------------------------------------------------------------


@dataclass
class FakeConfig:
    mode: str = "pitch"  # "pitch": one id per note (its pitch); "count": 0, 1, 2, ... per note


class FakeTokenizer(Tokenizer):
    """One token per note, in time order: its pitch, or its index (mode "count")."""

    name = "fake"
    Config = FakeConfig
    pitch_range = (21, 108)

    def __init__(self, config=None):
        super().__init__(config)
        self.calls = 0

    @property
    def vocab(self):
        return [f"t{i}" for i in range(4096)]

    def encode(self, score):
        self.calls += 1
        arrays = [t.notes.numpy() for t in score.tracks if len(t.notes)]
        if not arrays:
            return np.zeros(0, dtype=np.int64)
        time = np.concatenate([a["time"] for a in arrays])
        pitch = np.concatenate([a["pitch"] for a in arrays]).astype(np.int64)
        order = np.lexsort((pitch, time))
        if self.config.mode == "count":
            return np.arange(len(order), dtype=np.int64) % 4096
        return pitch[order]

    def decode(self, tokens):
        score = symusic.Score(480)
        track = symusic.Track("fake", 0, False)
        n = len(tokens)
        track.notes = symusic.core.NoteTickList.from_numpy(
            (np.arange(n) * 480).astype(np.int32),
            np.full(n, 480, np.int32),
            np.asarray(tokens, np.int8) % 128,
            np.full(n, 80, np.int8),
        )
        score.tracks.append(track)
        return score


def make_score(n_notes: int, lowest: int = 40, span: int = 40, seed: int = 0, drums: bool = False):
    rng = np.random.default_rng(seed)
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 100.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("piano", 0, False)
    track.notes = symusic.core.NoteTickList.from_numpy(
        (np.arange(n_notes) * 240).astype(np.int32),
        np.full(n_notes, 240, np.int32),
        rng.integers(lowest, lowest + span, n_notes).astype(np.int8),
        rng.integers(40, 100, n_notes).astype(np.int8),
    )
    score.tracks.append(track)
    if drums:
        kit = symusic.Track("drums", 0, True)
        kit.notes = symusic.core.NoteTickList.from_numpy(
            (np.arange(n_notes) * 240).astype(np.int32),
            np.full(n_notes, 120, np.int32),
            np.full(n_notes, 36, np.int8),
            np.full(n_notes, 100, np.int8),
        )
        score.tracks.append(kit)
    return score


@pytest.fixture
def midi_dir(tmp_path: Path) -> Path:
    """12 good files (in sub-folders) and 3 bad ones."""
    root = tmp_path / "midi"
    for i in range(12):
        sub = root / ("a" if i % 2 else "b") / ("deep" if i % 3 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        make_score(60 + 37 * i, seed=i).dump_midi(str(sub / f"piece{i:02d}.mid"))
    (root / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x03\x01\xe0MTrk\x00\x00\x10\x00abc")
    (root / "text.midi").write_text("hello, not a midi file")
    empty = symusic.Score(480)
    empty.dump_midi(str(root / "empty.mid"))
    (root / "notes.txt").write_text("ignored: not a MIDI suffix")
    return root


@pytest.fixture(autouse=True)
def cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("MUSICFW_CACHE_DIR", str(cache))
    return cache


def make_module(dataset, tokenizer=None, **kw):
    from musicfw.engine.data import MusicDataModule

    kw.setdefault("batch_size", 4)
    kw.setdefault("seq_len", 32)
    kw.setdefault("progress", False)
    return MusicDataModule(dataset, tokenizer or FakeTokenizer(), **kw).prepare()


# --------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------


def test_split_is_a_pure_function_of_identity_and_seed():
    # frozen values: identical on every machine and Python (SHA-256, not hash())
    import hashlib

    assert split_value("a/b.mid", 0) == pytest.approx(0.5062663574535732, abs=1e-15)
    digest = hashlib.sha256(b"musicfw-split\x007\x00x/y.mid").digest()
    assert split_value("x/y.mid", 7) == int.from_bytes(digest[:8], "big") / 2.0**64
    assert split_value("a/b.mid", 1) != split_value("a/b.mid", 0)
    groups = [f"piece{i}.mid" for i in range(5000)]
    table = assign_splits(groups, seed=3, train_fraction=0.7, valid_fraction=0.2)
    counts = {s: sum(v == s for v in table.values()) for s in ("train", "valid", "test")}
    assert counts == {"train": 3500, "valid": 1000, "test": 500}
    assert assign_splits(list(reversed(groups)), 3, 0.7, 0.2) == table  # order does not matter
    other_seed = assign_splits(groups, seed=4, train_fraction=0.7, valid_fraction=0.2)
    assert sum(other_seed[g] != table[g] for g in groups) > 1000
    # frozen: the same on every machine
    frozen = assign_splits([f"g{i}" for i in range(10)], 0, 0.6, 0.2)
    assert [frozen[f"g{i}"] for i in range(10)] == FROZEN_SPLIT


FROZEN_SPLIT = ["train", "train", "test", "valid", "valid", "train", "train", "test", "train", "train"]


def test_big_groups_stay_whole_and_fractions_hold_in_pieces():
    # 40 files of very different sizes (like the Essen collection's opus files)
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 600, size=40)
    pieces = [f"file{i}" for i, n in enumerate(sizes) for _ in range(n)]
    for seed in range(5):
        table = assign_splits(pieces, seed, 0.8, 0.1)
        n = {s: sum(table[p] == s for p in pieces) for s in ("train", "valid", "test")}
        for split, fraction in (("train", 0.8), ("valid", 0.1), ("test", 0.1)):
            assert abs(n[split] - fraction * len(pieces)) <= sizes.max()


def test_tiny_corpora_still_get_every_split():
    for seed in range(20):
        table = assign_splits(["a", "b", "c", "d"], seed, 0.8, 0.1)
        assert set(table.values()) == {"train", "valid", "test"}
    assert set(assign_splits(["a", "b", "c"], 0, 1.0, 0.0).values()) == {"train"}


@pytest.mark.parametrize("tf,vf", [(0.0, 0.1), (0.9, 0.2), (0.5, -0.1), (1.5, 0.0)])
def test_bad_fractions_are_config_errors(tf, vf):
    with pytest.raises(ConfigError, match="train_fraction"):
        assign_splits(["a"], 0, tf, vf)


# --------------------------------------------------------------------------------------
# midi_folder: robust loading
# --------------------------------------------------------------------------------------


def test_midi_folder_loads_good_files_and_skips_bad_ones_with_reasons(midi_dir):
    ds = musicfw.build_dataset("midi_folder", path=str(midi_dir))
    data = ds.load(seed=0)
    assert len(data.pieces()) == 12
    assert all(p.id.endswith(".mid") and not p.id.startswith("/") for p in data.pieces())
    reasons = {Path(path).name: reason for path, reason in data.skipped}
    assert set(reasons) == {"broken.mid", "text.midi", "empty.mid"}
    assert "truncated" in reasons["broken.mid"]
    assert "not a MIDI file" in reasons["text.midi"]
    assert reasons["empty.mid"] == "no notes"
    sizes = data.split_sizes()
    assert sum(sizes.values()) == 12 and min(sizes.values()) >= 1
    # the same split on a second load, a different one for another seed (for some piece)
    again = musicfw.build_dataset("midi_folder", path=str(midi_dir)).load(seed=0)
    assert [(p.id, p.split) for p in again.pieces()] == [(p.id, p.split) for p in data.pieces()]
    summary = data.summary()
    assert summary["pieces"] == 12 and summary["notes"] == sum(60 + 37 * i for i in range(12))
    assert summary["duration_s"] > 0 and len(summary["skipped"]) == 3


def test_midi_folder_on_the_shared_corpus(shared_midi):
    data = musicfw.build_dataset("midi_folder", path=str(shared_midi)).load()
    skipped = {Path(p).name for p, _ in data.skipped}
    bad = {p.name for p in (shared_midi / "bad").iterdir()}
    assert skipped == bad  # every bad file skipped, with a reason
    assert all(reason for _, reason in data.skipped)
    good = [p for p in shared_midi.rglob("*.mid") if p.parent.name != "bad"]
    assert len(data.pieces()) == len(good)


def test_midi_folder_user_errors(tmp_path, midi_dir):
    with pytest.raises(ConfigError, match="data.path"):
        musicfw.build_dataset("midi_folder")
    with pytest.raises(DataError, match="not found"):
        musicfw.build_dataset("midi_folder", path=str(tmp_path / "nope")).load()
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="No MIDI file"):
        musicfw.build_dataset("midi_folder", path=str(tmp_path / "none")).load()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.mid").write_bytes(b"")
    (bad / "y.mid").write_bytes(b"RIFF....")
    with pytest.raises(DataError, match="None of the 2 MIDI files"):
        musicfw.build_dataset("midi_folder", path=str(bad)).load()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_no_bytes_crash_the_reader(data):
    score, reason = parse_midi(data)
    assert (score is None) != (reason is None)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 10_000), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8))
def test_damaged_real_files_never_crash_the_reader(cut, flips):
    good = bytearray(make_score(200, seed=1).dumps_midi())
    for pos, value in flips:
        good[pos % len(good)] = value
    data = bytes(good[: max(cut % (len(good) + 1), 0)])
    score, reason = parse_midi(data)
    assert (score is None) != (reason is None)
    if check_midi_bytes(data) is not None:
        assert score is None


# --------------------------------------------------------------------------------------
# piano_roll_benchmark
# --------------------------------------------------------------------------------------


def test_benchmark_keeps_published_splits_and_frames_survive_the_score():
    from musicfw.plugins.datasets.piano_roll_benchmark import frames_to_score, to_frames

    ds = musicfw.build_dataset("piano_roll_benchmark", dataset="jsb_chorales")
    data = ds.load(seed=123)
    assert data.split_sizes() == {"train": 229, "valid": 76, "test": 77}
    test_frames = ds.frames("test")
    assert len(test_frames) == 77 and test_frames[0].shape[1] == 88
    assert sum(len(f) for f in test_frames) == 4725
    # frames -> score -> frames (one frame = one quarter note), trailing silence included
    seq = [[60, 64], [60, 64], [], [], [21, 108], [108], [], []]
    frames = to_frames(seq)
    score = frames_to_score(frames)
    notes = score.tracks[0].notes.numpy()
    assert list(notes["pitch"]) == [60, 64, 21, 108]
    assert list(notes["duration"] // 480) == [2, 2, 1, 2]
    assert score.end() == len(seq) * 480
    registries = musicfw.list_plugins()
    if "pianoroll" in registries["tokenizers"]:
        tok = musicfw.build_tokenizer("pianoroll", steps_per_quarter=1)
        for f, piece in zip(test_frames, data.pieces("test")):
            assert np.array_equal(tok.encode(piece.score), f)


def test_benchmark_rejects_unknown_names():
    with pytest.raises(ConfigError, match="jsb_chorales"):
        musicfw.build_dataset("piano_roll_benchmark", dataset="maestro")


# --------------------------------------------------------------------------------------
# augmentation
# --------------------------------------------------------------------------------------


def test_transpose_drop_never_wraps_and_leaves_drums_alone():
    from musicfw.music.augment import Augmenter

    score = make_score(300, lowest=90, span=19, drums=True)  # pitches 90..108
    aug = Augmenter(transpose=(5, 5), pitch_range=(21, 108))
    out = aug(score, np.random.default_rng(0))
    before = score.tracks[0].notes.numpy()["pitch"].astype(int)
    after = out.tracks[0].notes.numpy()["pitch"].astype(int)
    assert len(after) == int((before + 5 <= 108).sum())
    assert after.min() >= 95 and after.max() <= 108
    assert np.array_equal(out.tracks[1].notes.numpy()["pitch"], score.tracks[1].notes.numpy()["pitch"])
    assert score.tracks[0].notes.numpy()["pitch"].max() <= 108  # the input is untouched
    assert np.array_equal(score.tracks[0].notes.numpy()["pitch"], before)


def test_transpose_refuse_only_draws_shifts_that_fit():
    from musicfw.music.augment import Augmenter

    score = make_score(200, lowest=90, span=10)  # pitches 90..99: up to +9 fits in 21..108
    aug = Augmenter(transpose=(-6, 12), out_of_range="refuse", pitch_range=(21, 108))
    rng = np.random.default_rng(1)
    hi = int(score.tracks[0].notes.numpy()["pitch"].max())
    shifts = {aug.draw_shift(score, rng) for _ in range(400)}
    assert max(shifts) == 108 - hi and min(shifts) == -6
    out = aug(score, rng)
    assert out.note_num() == score.note_num()
    too_high = make_score(50, lowest=100, span=20)  # already beyond 108: no shift fits
    assert aug.draw_shift(too_high, rng) == 0


def test_time_stretch_scales_seconds_not_ticks_and_velocity_jitter_is_bounded():
    from musicfw.music.augment import Augmenter

    score = make_score(100)
    aug = Augmenter(time_stretch=(1.05,), velocity_jitter=5)
    out = aug(score, np.random.default_rng(0))
    assert out.end() == score.end()
    ratio = out.to("second").end() / score.to("second").end()
    assert ratio == pytest.approx(1.05, rel=1e-4)
    v0 = score.tracks[0].notes.numpy()["velocity"].astype(int)
    v1 = out.tracks[0].notes.numpy()["velocity"].astype(int)
    assert np.abs(v1 - v0).max() <= 5 and (v1 != v0).any() and v1.min() >= 1
    no_tempo = make_score(10)
    no_tempo.tempos.clear()
    assert Augmenter(time_stretch=(2.0,)).apply(no_tempo, 0, 2.0).tempos[0].qpm == pytest.approx(60.0)


def test_augment_section_validation():
    from omegaconf import OmegaConf

    from musicfw.music.augment import Augmenter

    aug = Augmenter.from_section(
        OmegaConf.create({"transpose": [-3, 4], "time_stretch": [0.95, 1.05], "velocity_jitter": 3}),
        FakeTokenizer(),
    )
    assert aug.transpose == (-3, 4) and aug.pitch_range == (21, 108) and aug.active
    assert not Augmenter.from_section(None).active
    for bad in ({"transpose": [4, -3]}, {"transpose": [1, 2, 3]}, {"time_stretch": [0.0]}, {"out_of_range": "wrap"}):
        with pytest.raises(ConfigError, match="augment"):
            Augmenter.from_section(OmegaConf.create(bad))


# --------------------------------------------------------------------------------------
# token cache
# --------------------------------------------------------------------------------------


def test_token_cache_is_built_once_and_keyed_by_data_and_tokenizer(midi_dir, cache_env):
    ds = musicfw.build_dataset("midi_folder", path=str(midi_dir))
    tok = FakeTokenizer()
    dm = make_module(ds, tok)
    assert tok.calls == 12
    assert isinstance(dm.store.tokens, np.memmap)
    assert Path(dm.store.path).is_relative_to(cache_env)
    # same data + same tokenizer config: reused, nothing encoded again
    tok2 = FakeTokenizer()
    dm2 = make_module(musicfw.build_dataset("midi_folder", path=str(midi_dir)), tok2)
    assert tok2.calls == 0 and dm2.store.path == dm.store.path
    # another tokenizer config: another cache
    tok3 = FakeTokenizer(FakeConfig(mode="count"))
    dm3 = make_module(musicfw.build_dataset("midi_folder", path=str(midi_dir)), tok3)
    assert tok3.calls == 12 and dm3.store.path != dm.store.path
    # changed data: another cache
    make_score(77, seed=99).dump_midi(str(midi_dir / "added.mid"))
    tok4 = FakeTokenizer()
    dm4 = make_module(musicfw.build_dataset("midi_folder", path=str(midi_dir)), tok4)
    assert tok4.calls == 13 and dm4.store.path != dm.store.path
    # the cached tokens are what the tokenizer produces
    piece = dm.pieces("train")[0]
    assert np.array_equal(dm.store.get(dm.store.position[piece.id]), FakeTokenizer().encode(piece.score))


def test_a_corrupted_token_cache_is_an_error_that_says_how_to_rebuild(midi_dir, cache_env):
    dm = make_module(musicfw.build_dataset("midi_folder", path=str(midi_dir)), FakeTokenizer())
    tokens = Path(dm.store.path) / "tokens.npy"
    data = bytearray(tokens.read_bytes())
    data[-1] ^= 0x04  # one flipped bit in the last token
    tokens.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"token cache .* is corrupted: tokens.npy .*Delete the folder"):
        make_module(musicfw.build_dataset("midi_folder", path=str(midi_dir)), FakeTokenizer())


def test_pieces_the_tokenizer_cannot_encode_are_skipped(midi_dir, tmp_path):
    class Picky(FakeTokenizer):
        def encode(self, score):
            if score.note_num() > 400:
                raise ValueError("too many notes for me")
            return super().encode(score)

    dm = make_module(musicfw.build_dataset("midi_folder", path=str(midi_dir)), Picky(), run_dir=tmp_path / "run")
    too_many = [p for p, r in dm.skipped if "too many notes" in r]
    assert len(too_many) == sum(60 + 37 * i > 400 for i in range(12))
    lines = (tmp_path / "run" / "skipped.txt").read_text().splitlines()
    assert len(lines) == 3 + len(too_many) and all(": " in line for line in lines)
    assert all(p.n_notes <= 400 for s in ("train", "valid", "test") for p in dm.pieces(s))


# --------------------------------------------------------------------------------------
# the DataModule
# --------------------------------------------------------------------------------------


def test_validation_covers_whole_pieces_exactly(midi_dir):
    dm = make_module(musicfw.build_dataset("midi_folder", path=str(midi_dir), train_fraction=0.5, valid_fraction=0.3), batch_size=3)
    for split, loader in (("valid", dm.val_dataloader()), ("test", dm.test_dataloader())):
        expected = sorted(p.n_notes for p in dm.pieces(split))
        seen = []
        for batch in loader:
            assert batch["tokens"].dtype == torch.long and batch["mask"].dtype == torch.bool
            assert batch["tokens"].shape == batch["mask"].shape
            seen += batch["mask"].sum(1).tolist()
            # mask is a prefix: real tokens first, padding after
            m = batch["mask"].int()
            assert (m[:, 1:] <= m[:, :-1]).all()
        assert sorted(seen) == expected
    pieces = list(dm.train_pieces_dataloader())
    assert sum(int(b["mask"].sum()) for b in pieces) == sum(p.n_notes for p in dm.pieces("train"))


def test_training_windows_are_fixed_length_aligned_and_fresh_each_epoch(midi_dir):
    ds = musicfw.build_dataset("midi_folder", path=str(midi_dir))
    dm = make_module(ds, FakeTokenizer(FakeConfig(mode="count")), seq_len=40, window_align=8, seed=5)
    loader = dm.train_dataloader()
    assert len(loader.sampler) == dm.windows_per_epoch()
    first = [b["tokens"].clone() for b in loader]
    for b in first:
        assert b.shape[1] == 40
        assert (b[:, 0] % 8 == 0).all()  # "count" tokens: the first id is the start offset
    second = [b["tokens"].clone() for b in loader]
    assert not all(torch.equal(a, b) for a, b in zip(first, second))
    # the same seed gives the same windows
    dm2 = make_module(musicfw.build_dataset("midi_folder", path=str(midi_dir)), FakeTokenizer(FakeConfig(mode="count")), seq_len=40, window_align=8, seed=5)
    again = [b["tokens"] for b in dm2.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_short_pieces_are_padded_with_mask(tmp_path):
    root = tmp_path / "short"
    root.mkdir()
    for i in range(6):
        make_score(5 + i, seed=i).dump_midi(str(root / f"s{i}.mid"))
    dm = make_module(musicfw.build_dataset("midi_folder", path=str(root), train_fraction=1.0, valid_fraction=0.0), seq_len=16)
    batch = next(iter(dm.train_dataloader()))
    assert batch["tokens"].shape[1] == 16
    lengths = batch["mask"].sum(1)
    assert (lengths >= 5).all() and (lengths <= 10).all()
    assert (batch["tokens"][~batch["mask"]] == 0).all()


def test_augmented_windows_come_from_transposed_pieces(midi_dir):
    from musicfw.music.augment import Augmenter

    ds = musicfw.build_dataset("midi_folder", path=str(midi_dir), train_fraction=1.0, valid_fraction=0.0)
    dm = make_module(ds, FakeTokenizer(), seq_len=64, augmenter=Augmenter(transpose=(12, 12), pitch_range=(0, 127)))
    train_pitches = set(np.concatenate([dm.store.get(r) for r in dm._rows["train"]]).tolist())
    batch = next(iter(dm.train_dataloader()))
    seen = set(batch["tokens"][batch["mask"]].tolist())
    assert seen and min(seen) >= 52 and max(train_pitches) + 12 >= max(seen)  # pitches 40..79 + 12
    assert dm.windows_per_epoch() > 0


def test_multihot_batches_and_unscored_first_frame():
    registries = musicfw.list_plugins()
    if "pianoroll" not in registries["tokenizers"]:
        pytest.skip("the pianoroll tokenizer is not installed")
    ds = musicfw.build_dataset("piano_roll_benchmark", dataset="jsb_chorales")
    tok = musicfw.build_tokenizer("pianoroll", steps_per_quarter=1)
    dm = make_module(ds, tok, batch_size=16, seq_len=24)
    batch = next(iter(dm.train_dataloader()))
    assert batch["tokens"].dtype == torch.float32 and batch["tokens"].shape[1:] == (24, 88)
    scored = sum(int(b["mask"].sum()) for b in dm.test_dataloader())
    assert scored == 4725 - 77  # the benchmark's convention: the first frame is not scored
    assert all(not b["mask"][:, 0].any() for b in dm.val_dataloader())
    assert dm.token_kind == "multihot"


def test_build_datamodule_from_an_experiment_config(midi_dir, tmp_path):
    from omegaconf import OmegaConf

    from musicfw.api import get_registries
    from musicfw.core.params import validate_plugin_section
    from musicfw.engine.config import Experiment
    from musicfw.engine.data import build_datamodule

    config = OmegaConf.merge(
        OmegaConf.structured(Experiment),
        {
            "seed": 1,
            "train": {"batch_size": 2, "seq_len": 16, "window_align": 4},
            "augment": {"transpose": [-2, 2], "time_stretch": [0.95, 1.05]},
        },
    )
    config = OmegaConf.create(OmegaConf.to_container(config))
    config.data = validate_plugin_section(
        OmegaConf.create({"name": "midi_folder", "path": str(midi_dir)}), "datasets", get_registries(), "data"
    )
    dm = build_datamodule(
        config.data, FakeTokenizer(), train=config.train, augment=config.augment, seed=config.seed,
        run_dir=tmp_path / "run", progress=False,
    )
    assert dm.window_align == 4 and dm.augmenter.transpose == (-2, 2) and dm.seed == 1
    assert dm.augmenter.time_stretch == (0.95, 1.05) and dm.augmenter.out_of_range == "drop"
    assert (tmp_path / "run" / "skipped.txt").read_text().count("\n") == 3
    summary = dm.summary()
    assert summary["pieces"] == 12 and sum(summary["splits"].values()) == 12
    assert summary["tokens"]["train"] > 0 and len(summary["skipped"]) == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch["tokens"].shape == (2, 16)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def test_cli_data_list_and_prepare(midi_dir, capsys):
    from musicfw.cli import main

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("bach_chorales", "folk_melodies", "midi_folder", "piano_roll_benchmark"):
        assert name in out
    assert main(["data", "prepare", "midi_folder", f"path={midi_dir}", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "12 pieces" in out and "skipped: 3 files" in out and "empty.mid: no notes" in out
    assert "splits (seed 0): train" in out
    assert main(["data", "prepare", "midi_folder", f"path={midi_dir / 'nope'}"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["data", "prepare", "midi_folder", "pathx=1"]) == 2
    assert main(["data", "prepare", "piano_roll_benchmark", "dataset=musedata", "--json", "--quiet"]) == 0
    assert '"train": 524' in capsys.readouterr().out


def test_data_preparation_reports_the_notes_the_tokenizer_drops(tmp_path, cache_env):
    """REMI drops drum notes by default: `data prepare` and the run's data stage say so."""
    import shutil

    from conftest import TEST_MIDI, run_cli

    folder = tmp_path / "songs"
    folder.mkdir()
    for path in sorted((TEST_MIDI / "multitrack").glob("*.mid"))[:2]:
        shutil.copy(path, folder / path.name)
    result = run_cli("data", "prepare", "midi_folder", f"path={folder}", "--tokenizer", "remi",
                     env={"MUSICFW_CACHE_DIR": str(cache_env)})
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(l for l in result.stdout.splitlines() if l.startswith("notes the tokenizer cannot represent"))
    dropped = int(line.split(":")[1].split("of")[0].replace(",", "").strip())
    assert dropped > 0 and "drum" in line.lower(), line
