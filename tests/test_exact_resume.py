"""Exact resume (musicfw/engine/resume.py): a run stopped mid-epoch at a step that is no multiple
of the epoch length and resumed from its last checkpoint ends with the same weights (bit for bit)
and the same metrics (every digit) as the run that was never stopped, with random windows,
transposition / tempo / velocity augmentation and dropout on, and without Lightning's "not
resumable" warning.  An older checkpoint (no loader state) still resumes, with a note."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch
from omegaconf import OmegaConf

from musicfw.engine.loggers import read_history

torch.set_num_threads(1)

EVERY = 3  # train.checkpoint_every_n_steps


class Killed(Exception):
    """Stands for the kill: raised inside a training step, nothing saved on the way out."""


@pytest.fixture(scope="module")
def midi(tmp_path_factory) -> Path:
    """Ten short one-track pieces (a seeded random walk), enough for a few batches an epoch."""
    root = tmp_path_factory.mktemp("midi")
    rng = np.random.default_rng(7)
    for i in range(10):
        n = int(rng.integers(24, 60))
        score = symusic.Score(480)
        score.tempos.append(symusic.Tempo(0, 100.0))
        score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
        track = symusic.Track("melody", 0, False)
        pitch = 60 + np.cumsum(rng.integers(-3, 4, n)).clip(-12, 12)
        track.notes = symusic.core.NoteTickList.from_numpy(
            (np.arange(n) * 240).astype(np.int32),
            np.full(n, 240, np.int32),
            pitch.astype(np.int8),
            rng.integers(50, 100, n).astype(np.int8),
        )
        score.tracks.append(track)
        score.dump_midi(str(root / f"p{i}.mid"))
    return root


def _train_section(**kw):
    base = {"batch_size": 4, "seq_len": 16, "lr": 3e-3, "max_epochs": 3, "checkpoint_every_n_steps": EVERY}
    base.update(kw)
    return OmegaConf.create(base)


def _run(midi: Path, run_dir: Path, *, kill_at: int | None = None, resume: bool = False, noise: int = 0, **train):
    """One training run as ``musicfw run`` makes it (seed, then the model, then the data)."""
    from musicfw.api import get_registries
    from musicfw.core.build import build_from_section
    from musicfw.engine.assemble import seed_everything
    from musicfw.engine.data import build_datamodule
    from musicfw.engine.training import fit

    registries = get_registries()
    tokenizer = build_from_section("tokenizers", OmegaConf.create({"name": "melody"}), registries=registries)
    seed_everything(0)
    model = build_from_section(
        "models",
        OmegaConf.create({"name": "lstm", "hidden_size": 24, "num_layers": 2, "embed_dim": 8, "dropout": 0.3,
                          "input_dropout": 0.2}),
        registries=registries, tokenizer=tokenizer,
    )
    data = OmegaConf.create({"name": "midi_folder", "path": str(midi), "cache_dir": str(run_dir.parent / "cache")})
    augment = OmegaConf.create({"transpose": [-3, 3], "time_stretch": [0.9, 1.0, 1.1], "velocity_jitter": 5})
    dm = build_datamodule(data, tokenizer, train=_train_section(**train), augment=augment, seed=0, registries=registries,
                          progress=False)
    if noise:  # a resumed process's generators are wherever its own start left them
        torch.manual_seed(noise)
        np.random.seed(noise)
    if kill_at is not None:
        def die(step: int) -> None:
            if step == kill_at:
                raise Killed(step)

        model.on_train_step = die
    metrics = fit(model, dm, _train_section(**train), run_dir, logger=OmegaConf.create({"name": "none"}), resume=resume,
                  registries=registries)
    return metrics, model, dm


def _not_resumable(caught) -> list[str]:
    return [str(w.message) for w in caught if "not resumable" in str(w.message) or "no data-loader" in str(w.message)]


def _losses(folder: Path, after: int) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in read_history(folder) if "train/loss" in r and r["step"] > after}


def _uninterrupted(midi: Path, folder: Path, **train):
    """The run that was never stopped: its metrics, final weights, folder and batches per epoch."""
    metrics, model, dm = _run(midi, folder, **train)
    return metrics, model.state_dict(), folder, len(dm.train_dataloader())


@pytest.fixture(scope="module")
def whole(midi, tmp_path_factory):
    return _uninterrupted(midi, tmp_path_factory.mktemp("whole"))


def _kill_and_resume(midi, whole, run: Path, where: str, **train):
    metrics, weights, folder, per_epoch = whole
    assert per_epoch >= 3 and metrics["global_step"] == 3 * per_epoch
    if where == "mid-epoch":  # the first checkpoint past the first epoch that is no epoch end
        saved = next(s for s in range(EVERY, 3 * per_epoch, EVERY) if s > per_epoch and s % per_epoch)
    else:  # written after the validation that ends the second epoch (no step checkpoint there)
        saved = 2 * per_epoch
        assert saved % EVERY, "pick another EVERY: a step checkpoint would be the last one here"
    with pytest.raises(Killed):
        _run(midi, run, kill_at=saved + 1, **train)  # the kill comes one step after the checkpoint
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == saved

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed, again, _ = _run(midi, run, resume=True, noise=12345, **train)
    assert not _not_resumable(caught), _not_resumable(caught)
    for key in ("val_nll", "test_nll", "global_step", "epochs"):
        assert resumed[key] == metrics[key], key  # every digit
    mine = again.state_dict()
    assert all(torch.equal(weights[k], mine[k]) for k in weights)  # bit for bit
    # the training losses after the resume point are the uninterrupted run's, step by step
    assert _losses(folder, saved) and _losses(run, saved) == _losses(folder, saved)


@pytest.mark.parametrize("where", ["mid-epoch", "epoch end"])
def test_a_killed_run_resumes_to_the_same_digits(midi, whole, tmp_path, where):
    _kill_and_resume(midi, whole, tmp_path / "killed", where)


def test_exact_resume_with_loader_workers(midi, tmp_path):
    """Two worker processes (a persistent pool, whose iterator is made once, and evaluation
    pools that draw nothing from torch's generator), killed and resumed mid-epoch after a
    validation."""
    whole = _uninterrupted(midi, tmp_path / "whole", num_workers=2)
    _kill_and_resume(midi, whole, tmp_path / "killed", "mid-epoch", num_workers=2)


def test_an_older_checkpoint_resumes_with_a_note(midi, tmp_path):
    run = tmp_path / "old"
    with pytest.raises(Killed):
        _run(midi, run, kill_at=EVERY + 1)
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    # as a checkpoint from before exact resume: no loader state
    ckpt["loops"]["fit_loop"]["state_dict"].pop("combined_loader")
    torch.save(ckpt, last)
    from musicfw.engine.lightning import write_checksum

    write_checksum(last)
    with pytest.warns(UserWarning, match=r"holds no data-loader place or random state.*differ"):
        metrics, _, _ = _run(midi, run, resume=True)
    assert metrics["global_step"] > EVERY


def test_a_sampler_replays_its_order_from_any_item_also_per_rank(monkeypatch):
    """What the loader asks of a sampler on resume: the same order from item ``skip`` on, also
    for a DDP rank's share; an uninterrupted draw is unchanged."""
    from musicfw.engine import distributed
    from musicfw.engine.data import WindowSampler
    from musicfw.engine.resume import ShuffledSampler

    weights = [3.0, 1.0, 2.0, 5.0]
    for make in (lambda: WindowSampler(weights, 17, seed=5), lambda: ShuffledSampler(17, seed=5)):
        sampler = make()
        sampler.set_epoch(3)
        first, second = list(sampler), list(sampler)  # a second iteration in an epoch draws anew
        assert first != second and sampler.order == (3, 1)
        again = make()
        again.set_epoch(7)  # what Lightning set; the replay wins
        again.replay(3, 1, 6)
        assert list(again) == second[6:] and again.order == (3, 1)
        assert list(again) != second  # the replay is one-shot
    # the draw itself is the one before exact resume (README digits): a pinned value
    assert list(WindowSampler(weights, 3, seed=0))[0][0] == int(
        np.random.default_rng([0, 0, 0, 0x6D66]).choice(4, size=3, p=np.asarray(weights) / 11.0)[0]
    )
    for rank in range(2):
        monkeypatch.setattr(distributed, "_world", lambda rank=rank: (rank, 2))
        share = distributed.shard_sampler(WindowSampler(weights, 17, seed=5))
        full = list(share)
        share.replay(0, 0, 4)
        assert list(share) == full[4:] and share.order == (0, 0)


def test_a_malformed_loader_state_in_a_checkpoint_is_a_clear_error(midi, tmp_path):
    """A stranger's checkpoint (weights_only accepts it) with a broken loader state: a
    RunFolderError naming the file and the entry, before Lightning resumes; nothing trained."""
    import shutil

    from musicfw.core.errors import RunFolderError
    from musicfw.engine.lightning import write_checksum

    good = tmp_path / "good"
    with pytest.raises(Killed):
        _run(midi, good, kill_at=EVERY + 1)
    cases = {
        "rng is str": lambda s: s.update(rng="abc"),
        "batches is 'x'": lambda s: s.update(batches="x"),
        "epoch is -1": lambda s: s.update(epoch=-1),
        "rng.torch": lambda s: s["rng"].update(torch=torch.zeros(7, dtype=torch.uint8)),
        "rng.numpy.key": lambda s: s["rng"]["numpy"].update(key=torch.full((624,), 2**40)),
        "rng.python's words": lambda s: s["rng"].update(python=(3, (1, 2), None)),
    }
    for match, spoil in cases.items():
        run = tmp_path / "bad"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(good, run)
        last = run / "checkpoints" / "last.ckpt"
        ckpt = torch.load(last, weights_only=True)
        spoil(ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0])
        torch.save(ckpt, last)
        write_checksum(last)
        with pytest.raises(RunFolderError, match=rf"{last}.*malformed data-loader state.*combined_loader\[0\]: {match}"):
            _run(midi, run, resume=True)
        assert torch.load(last, weights_only=True)["global_step"] == EVERY  # untouched
