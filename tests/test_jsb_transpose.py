"""benchmarks/jsb.py --transpose: training pieces move, keep every note on the 88 keys; the
validation and test pieces are scored as published (never moved)."""

from __future__ import annotations

import numpy as np

from conftest import benchmark_module


def _jsb():
    return benchmark_module("jsb")


def _piece(keys: list[int], frames: int = 6) -> np.ndarray:
    x = np.zeros((frames, 88), np.float32)
    for t in range(frames):
        x[t, keys[t % len(keys)]] = 1
    return x


def test_shifts_stay_on_the_keyboard_and_cover_the_allowed_range():
    jsb = _jsb()
    low, high = _piece([2, 40]), _piece([50, 84])
    shift = jsb.transposer([low, high], 6, seed=0)
    seen = {id(low): set(), id(high): set()}
    for _ in range(300):
        for x in (low, high):
            y = shift(x)
            assert y.shape == x.shape and y.sum() == x.sum()  # no note lost
            k = int(np.flatnonzero(y[0])[0]) - int(np.flatnonzero(x[0])[0])
            np.testing.assert_array_equal(np.roll(x, k, axis=1), y)  # the same piece, moved
            seen[id(x)].add(k)
    assert seen[id(low)] == set(range(-2, 7))  # key 2 can go down 2 only
    assert seen[id(high)] == set(range(-6, 4))  # key 84 can go up 3 only (87 is the top)
    again = jsb.transposer([low, high], 6, seed=0)
    fresh = jsb.transposer([low, high], 6, seed=0)
    assert all(np.array_equal(again(low), fresh(low)) for _ in range(20))  # seeded


def test_only_training_batches_are_transposed():
    jsb = _jsb()
    frames = {s: [_piece([30, 37, 45], frames=5) for _ in range(4)] for s in ("train", "valid", "test")}
    dm = jsb.make_datamodule(frames, batch_size=4, seed=0, transpose=6)
    for split, loader in (("valid", dm.val_dataloader()), ("test", dm.test_dataloader())):
        batch = next(iter(loader))
        np.testing.assert_array_equal(batch["tokens"].numpy(), np.stack(frames[split]))
    moved = [not np.array_equal(next(iter(dm.train_dataloader()))["tokens"].numpy(), np.stack(frames["train"]))
             for _ in range(5)]
    assert any(moved)
