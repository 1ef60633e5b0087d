"""Tunes: the melody line of a piece, hashed melody n-grams, near-duplicate groups, leakage.

One implementation for three uses: grouping the pieces of one tune into one split
(``data.split_by: tune``, applied by the engine before
:func:`musicfw.core.dataset.assign_splits`), the leakage a split reports (how many test pieces
share a long melody run with the training split), and how original generated music is (the
longest melody run a generated piece shares with the training pieces, its n-gram overlap).

* **Melody** (:func:`melody_steps`): the highest sounding note at each onset of the piece's
  pitched notes (drum tracks are left out), on the 16th-note grid.  The melody changes where
  that highest note changes pitch or is struck again; a held top note under moving lower voices
  is no change.  A *step* is one change to the next: the pitch interval (semitones) and the time
  to the next change (16ths), packed into one ``uint16`` (:func:`pack_step`).  Intervals make
  the line transposition-invariant; the grid makes it independent of the file's ticks per
  quarter and tempo.
* **Hashing** (:func:`ngram_hashes`): every run of ``n`` consecutive steps becomes one 64-bit
  hash (a polynomial hash built by doubling, then a splitmix64 finish), computed for all pieces
  at once over their concatenated steps.  Nothing is compared pairwise: finding which pieces
  share a run is sorting hashes, so 100k pieces take seconds (benchmarks/tunes.py).
* **Groups** (:func:`tune_groups`): union-find over pieces that share at least one
  ``n``-step run (and over pieces given the same name; the engine names each piece by its id), with
  vectorised hooking and pointer jumping.  A group is named by its smallest member group, so a
  piece that shares no run keeps its own group (and its split).
* **Leakage** (:func:`leakage`) and **originality** (:class:`MelodyIndex`,
  :meth:`MelodyIndex.longest_shared_run`, :meth:`MelodyIndex.longest_shared_runs` (many
  melodies at once, in lockstep), :meth:`MelodyIndex.overlap`; the ``originality`` metric
  plugin, plugins/metrics/originality.py).

Why ``DEFAULT_RUN = 16`` steps: measured on both bundled corpora (docs/data.md, "Why N = 16";
``python benchmarks/tunes.py --part runs``).  16 steps (about four bars of a chorale melody)
is the shortest run at which the largest group stays as small as a real family (10
re-harmonisations of one chorale, 9 variants of one folk tune): at 12 steps stock figures
(scales, cadence formulas) already chain 307 folk tunes into one group, at 8 steps 43% of the
corpus.  Grouped at 24 or 32 steps instead, 9-15 test chorales and 93-135 test folk tunes
still share a 16-step run (four bars) with the training split.

numpy only (no torch, no symusic import: a score is read through its ``tracks``/``notes``).
"""

from __future__ import annotations

import base64
from typing import Any, Iterable, Sequence

import numpy as np

#: grid positions per quarter note (the 16th-note grid)
GRID_PER_QUARTER = 4
#: the run length (in melody steps) that makes two pieces one tune; see the module docstring
DEFAULT_RUN = 16
#: n-gram sizes whose overlap a leakage report gives
OVERLAP_SIZES = (4, 8)
#: intervals and times are clipped into one uint16 step: interval in [-127, 127], time <= 255
MAX_STEP_TIME = 255

_U64 = np.uint64
_BASE = _U64(0x9E3779B97F4A7C15)  # odd: invertible modulo 2**64


# --------------------------------------------------------------------------------------------
# melody
# --------------------------------------------------------------------------------------------


def pack_step(interval: np.ndarray | int, time: np.ndarray | int) -> np.ndarray:
    """``(interval + 128) * 256 + time`` as uint16, interval clipped to [-127, 127] and time
    (16ths) to [0, 255]."""
    iv = np.clip(np.asarray(interval, dtype=np.int64), -127, 127) + 128
    tm = np.clip(np.asarray(time, dtype=np.int64), 0, MAX_STEP_TIME)
    return (iv * 256 + tm).astype(np.uint16)


def unpack_step(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(interval, time)`` of packed steps."""
    s = np.asarray(steps, dtype=np.int64)
    return s // 256 - 128, s % 256


def _range_max(n: int, lo: np.ndarray, hi: np.ndarray, value: np.ndarray) -> np.ndarray:
    """``out[i] = max(value[k] for k with lo[k] <= i < hi[k])`` (-1 where none), for ``n``
    positions: each range is written into the two power-of-two blocks that cover it, and the
    blocks are pushed down level by level (a sparse table in reverse; O((n + m) log n))."""
    out = np.full(n, -1, dtype=np.int16)
    if n == 0 or len(lo) == 0:
        return out
    length = hi - lo
    keep = length > 0
    lo, hi, length, value = lo[keep], hi[keep], length[keep], value[keep].astype(np.int16)
    if len(lo) == 0:
        return out
    level = np.floor(np.log2(length)).astype(np.int64)
    top = int(level.max())
    table = np.full((top + 1, n), -1, dtype=np.int16)
    np.maximum.at(table, (level, lo), value)
    np.maximum.at(table, (level, hi - (1 << level)), value)
    for k in range(top, 0, -1):
        half = 1 << (k - 1)
        block = table[k]
        np.maximum(table[k - 1], block, out=table[k - 1])
        np.maximum(table[k - 1][half:], block[: n - half], out=table[k - 1][half:])
    return table[0]


def melody_from_notes(
    onset: np.ndarray, end: np.ndarray, pitch: np.ndarray, ticks_per_quarter: int | np.ndarray,
    owner: np.ndarray | None = None, count: int | None = None,
) -> list[np.ndarray]:
    """The packed melody steps (uint16) of the notes of ``count`` pieces at once: note k has
    onset and end ticks, a pitch, and belongs to piece ``owner[k]`` (default: all to one piece),
    whose ticks per quarter is ``ticks_per_quarter`` (one number, or one per piece).
    Vectorised over the whole batch: the per-piece cost is a slice."""
    onset = np.asarray(onset, dtype=np.int64)
    owner = np.zeros(len(onset), dtype=np.int64) if owner is None else np.asarray(owner, dtype=np.int64)
    count = (int(owner.max()) + 1 if len(owner) else 1) if count is None else int(count)
    tpq = np.maximum(np.broadcast_to(np.asarray(ticks_per_quarter, dtype=np.int64), (count,)), 1)[owner]
    start = np.floor(onset * GRID_PER_QUARTER / tpq + 0.5).astype(np.int64)
    stop = np.floor(np.asarray(end, dtype=np.int64) * GRID_PER_QUARTER / tpq + 0.5).astype(np.int64)
    stop = np.maximum(stop, start + 1)  # a note shorter than a 16th still sounds at its onset
    pitch = np.asarray(pitch, dtype=np.int64)
    # one key per (piece, grid position): pieces never mix, a note's range stays in its piece
    shift = np.int64(1) << np.int64(40)
    start_key = owner * shift + np.clip(start, 0, shift - 1)
    stop_key = owner * shift + np.clip(stop, 0, shift - 1)
    order = np.argsort(start_key, kind="stable")
    ordered = start_key[order]
    new = np.ones(len(ordered), dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    grid = ordered[new]  # the onsets, piece by piece
    first = np.empty(len(start_key), dtype=np.int64)
    first[order] = np.cumsum(new) - 1
    n = len(grid)
    last = np.searchsorted(grid, stop_key, side="left")  # the onsets a note sounds over: [first, last)
    top = _range_max(n, first, last, pitch).astype(np.int64)  # highest sounding pitch at each onset
    struck = np.maximum.reduceat(pitch[order], np.flatnonzero(new)) if n else np.zeros(0, np.int64)  # highest struck
    piece = grid >> np.int64(40)
    change = np.ones(n, dtype=bool)
    change[1:] = (top[1:] != top[:-1]) | (struck[1:] == top[1:]) | (piece[1:] != piece[:-1])
    at = np.flatnonzero(change)
    # a step joins two changes of one piece
    same = piece[at[1:]] == piece[at[:-1]]
    steps = pack_step(np.diff(top[at])[same], np.diff(grid[at])[same])
    owners = piece[at[:-1]][same]
    bounds = np.searchsorted(owners, np.arange(count + 1))
    return [steps[bounds[i] : bounds[i + 1]] for i in range(count)]


def _notes(score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    onsets, ends, pitches = [], [], []
    for track in score.tracks:
        if track.is_drum or len(track.notes) == 0:
            continue
        arr = track.notes.numpy()
        t = arr["time"].astype(np.int64)
        onsets.append(t)
        ends.append(t + arr["duration"].astype(np.int64))
        pitches.append(arr["pitch"].astype(np.int64))
    if not onsets:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(onsets), np.concatenate(ends), np.concatenate(pitches)


#: notes per batch of :func:`melodies` (bounds its memory: ~0.5 GB at most)
BATCH_NOTES = 1_000_000


def melodies(scores: Sequence[Any]) -> list[np.ndarray]:
    """The melody steps of each ``symusic.Score`` (in ticks), computed in batches of about
    ``BATCH_NOTES`` notes."""
    out: list[np.ndarray] = []
    batch: list[Any] = []
    notes = 0
    for score in scores:
        batch.append(score)
        notes += int(score.note_num())
        if notes >= BATCH_NOTES:
            out.extend(_melody_batch(batch))
            batch, notes = [], 0
    if batch:
        out.extend(_melody_batch(batch))
    return out


def _melody_batch(scores: Sequence[Any]) -> list[np.ndarray]:
    notes = [_notes(s) for s in scores]
    counts = np.fromiter((len(n[0]) for n in notes), dtype=np.int64, count=len(notes))
    tpq = np.fromiter((int(s.ticks_per_quarter) for s in scores), dtype=np.int64, count=len(scores))
    owner = np.repeat(np.arange(len(scores), dtype=np.int64), counts)
    return melody_from_notes(
        np.concatenate([n[0] for n in notes]), np.concatenate([n[1] for n in notes]),
        np.concatenate([n[2] for n in notes]), tpq, owner, len(scores),
    )


def melody_steps(score: Any) -> np.ndarray:
    """The melody steps of one ``symusic.Score`` in ticks (see the module docstring)."""
    return melodies([score])[0]


def encode_steps(steps: np.ndarray) -> str:
    """Steps as compact text (base64 of little-endian uint16), for JSON manifests."""
    return base64.b64encode(np.asarray(steps, dtype="<u2").tobytes()).decode("ascii")


def decode_steps(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text.encode("ascii")), dtype="<u2").astype(np.uint16)


# --------------------------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------------------------


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finish: every input bit reaches every output bit."""
    h = h ^ (h >> _U64(30))
    h = h * _U64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> _U64(27))
    h = h * _U64(0x94D049BB133111EB)
    return h ^ (h >> _U64(31))


def _window_hashes(values: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash of every window of ``n`` consecutive values (``len - n + 1`` of them),
    built by doubling: h_{a+b}(i) = h_a(i) * B^b + h_b(i + a)  (mod 2**64)."""
    total = len(values)
    if n < 1 or total < n:
        return np.zeros(0, dtype=_U64)
    with np.errstate(over="ignore"):
        unit = values.astype(_U64) + _U64(1)
        acc, acc_len = None, 0
        block, block_len = unit, 1
        remaining = n
        while True:
            if remaining & 1:
                if acc is None:
                    acc, acc_len = block, block_len
                else:
                    count = total - (acc_len + block_len) + 1
                    acc = acc[:count] * (_BASE ** _U64(block_len)) + block[acc_len : acc_len + count]
                    acc_len += block_len
            remaining >>= 1
            if not remaining:
                break
            count = total - 2 * block_len + 1
            block = block[:count] * (_BASE ** _U64(block_len)) + block[block_len : block_len + count]
            block_len *= 2
        assert acc is not None and acc_len == n
        return _mix(acc[: total - n + 1] ^ _U64(n))


def ngram_hashes(steps: np.ndarray, n: int) -> np.ndarray:
    """The hash of every run of ``n`` consecutive steps of one melody, in order (uint64)."""
    return _window_hashes(np.asarray(steps, dtype=np.uint16), int(n))


def window_hashes(melodies: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes, owner)``: the hash of every ``n``-step run of every melody (uint64), in
    order, and the index of the melody it belongs to, computed over all melodies at once."""
    lengths = np.fromiter((len(m) for m in melodies), dtype=np.int64, count=len(melodies))
    if len(melodies) == 0 or lengths.max(initial=0) < n:
        return np.zeros(0, dtype=_U64), np.zeros(0, dtype=np.int64)
    values = np.concatenate([np.asarray(m, dtype=np.uint16) for m in melodies])
    owner_of = np.repeat(np.arange(len(melodies), dtype=np.int64), lengths)
    hashes = _window_hashes(values, int(n))
    # a window belongs to one melody when its first and last step do
    inside = owner_of[: len(hashes)] == owner_of[n - 1 :]
    return hashes[inside], owner_of[: len(inside)][inside]


def corpus_hashes(melodies: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`window_hashes` sorted by hash (one sort of all runs of all melodies: the pieces
    holding one run stand together)."""
    hashes, owner = window_hashes(melodies, n)
    order = np.argsort(hashes)
    return hashes[order], owner[order]


# --------------------------------------------------------------------------------------------
# groups
# --------------------------------------------------------------------------------------------


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union-find over ``n`` nodes and the edges ``a[k] -- b[k]``: each node's root, the
    smallest node of its component (vectorised: hook roots onto smaller roots, then jump
    pointers until every node points at its root)."""
    parent = np.arange(n, dtype=np.int64)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    while len(a):
        pa, pb = parent[a], parent[b]
        differ = pa != pb
        if not differ.any():
            break
        a, b, pa, pb = a[differ], b[differ], pa[differ], pb[differ]
        lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
        np.minimum.at(parent, hi, lo)  # hi is a root: it now points at a smaller root
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return parent


def shared_run_edges(melodies: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(a, b)`` joining melodies that share an ``n``-step run (each to the first
    melody holding that run: enough for the components, no pairwise comparison)."""
    h, o = corpus_hashes(melodies, n)  # sorted by hash
    if len(h) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.ones(len(h), dtype=bool)
    starts[1:] = h[1:] != h[:-1]
    head = np.maximum.accumulate(np.where(starts, np.arange(len(h)), 0))
    linked = ~starts
    return o[head[linked]], o[linked]


def tune_groups(melodies: Sequence[np.ndarray], groups: Sequence[str], n: int = DEFAULT_RUN) -> list[str]:
    """The tune group of each piece: pieces sharing an ``n``-step melody run, or already
    sharing a group, are one tune, named by its smallest group (so a piece that shares no run
    keeps its group).  Deterministic: independent of the order of the pieces."""
    count = len(melodies)
    if count != len(groups):
        raise ValueError(f"{count} melodies but {len(groups)} groups")
    if count == 0:
        return []
    # nodes numbered in (group, melody content) order: the smallest node carries the smallest group
    names = np.array([str(g) for g in groups], dtype=object)
    order = sorted(range(count), key=lambda i: names[i])
    rank = np.empty(count, dtype=np.int64)
    rank[np.asarray(order, dtype=np.int64)] = np.arange(count)
    a, b = shared_run_edges(melodies, n)
    a, b = rank[a], rank[b]
    sorted_names = names[order]
    same = np.flatnonzero(sorted_names[1:] == sorted_names[:-1])  # one group: one tune
    a = np.concatenate([a, same])
    b = np.concatenate([b, same + 1])
    root = components(count, a, b)
    return [str(sorted_names[root[rank[i]]]) for i in range(count)]


# --------------------------------------------------------------------------------------------
# a reference set: leakage and originality
# --------------------------------------------------------------------------------------------


class MelodyIndex:
    """The melody runs of a reference set (e.g. the training pieces), hashed once per run
    length and kept sorted, to ask how much of other melodies it holds."""

    def __init__(self, melodies: Iterable[np.ndarray]):
        self.melodies = [np.asarray(m, dtype=np.uint16) for m in melodies]
        self._sets: dict[int, np.ndarray] = {}
        self._ref: _Windows | None = None
        self._seeds: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def hashes(self, n: int) -> np.ndarray:
        """Every distinct ``n``-step run of the reference set, sorted."""
        n = int(n)
        if n not in self._sets:
            hashes = np.sort(self._windows().all_windows(n)[0])  # = window_hashes(self.melodies, n)
            distinct = np.ones(len(hashes), dtype=bool)
            distinct[1:] = hashes[1:] != hashes[:-1]
            self._sets[n] = hashes[distinct]
        return self._sets[n]

    def _contains(self, query: np.ndarray, n: int) -> np.ndarray:
        return _member(self.hashes(n), query)

    def found(self, steps: np.ndarray, n: int) -> np.ndarray:
        """For each ``n``-step run of ``steps`` (in order): is it in the reference set?"""
        return self._contains(ngram_hashes(steps, n), n)

    def sharing(self, melodies: Sequence[np.ndarray], n: int) -> np.ndarray:
        """For each melody: does it share a run of at least ``n`` steps with the reference set?
        (All melodies hashed at once.)"""
        hashes, owner = window_hashes(melodies, n)
        out = np.zeros(len(melodies), dtype=bool)
        out[owner[self._contains(hashes, n)]] = True
        return out

    def shares_run(self, steps: np.ndarray, n: int) -> bool:
        """Does ``steps`` share a run of at least ``n`` steps with the reference set?"""
        return bool(self.found(steps, n).any())

    def longest_shared_run(self, steps: np.ndarray, limit: int | None = None) -> int:
        """The length of the longest run of ``steps`` found in the reference set (binary search
        over the length: a shared run of n steps holds shared runs of every shorter length)."""
        steps = np.asarray(steps, dtype=np.uint16)
        lo, hi = 0, len(steps) if limit is None else min(len(steps), int(limit))
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.shares_run(steps, mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def longest_shared_runs(self, melodies: Sequence[np.ndarray], seed: int = 8) -> np.ndarray:
        """:meth:`longest_shared_run` of many melodies at once (int64, one per melody).

        All melodies are searched in lockstep over one range ``[0, longest melody]``, so their
        binary searches probe few distinct lengths.  A length up to ``seed`` is looked up in the
        reference set's full hash set (:meth:`hashes`); a longer shared run starts with a shared
        ``seed``-step run, so a longer length is looked up among the reference windows that
        start where a ``seed``-step run the queries hold starts (a small set: no full hash set
        and sort per length)."""
        queries = [np.asarray(m, dtype=np.uint16) for m in melodies]
        count = len(queries)
        lengths = np.fromiter((len(q) for q in queries), dtype=np.int64, count=count)
        out = np.zeros(count, dtype=np.int64)
        if count == 0 or lengths.max(initial=0) == 0 or not self.melodies:
            return out
        ref = self._windows()
        qry = _Windows(queries)
        seed = max(int(seed), 1)
        # the query positions where a seed-step run the reference holds starts: a longer shared
        # run can start nowhere else
        q_hash, q_pos = qry.all_windows(seed)
        q_keep = self._contains_seed(q_hash, seed)
        q_hash, q_pos = q_hash[q_keep], q_pos[q_keep]
        q_owner = qry.owner[q_pos]
        lo = np.zeros(count, dtype=np.int64)  # a shared run of lo steps is known
        hi = np.full(count, int(lengths.max()), dtype=np.int64)  # one range for all: few lengths probed
        while True:
            active = np.flatnonzero(lo < hi)
            if len(active) == 0:
                break
            mid = (lo[active] + hi[active] + 1) // 2
            found = np.zeros(len(active), dtype=bool)  # longer than the melody: not shared
            for n in np.unique(mid[mid <= lengths[active]]):
                pick = np.flatnonzero(mid == n)
                who = active[pick]
                n = int(n)
                if n <= seed:
                    ref_set = self.hashes(n)
                    hashes, owner = qry.windows_of(who, n)
                else:
                    mine = np.isin(q_owner, who)
                    pos = q_pos[mine]
                    inside = pos + n <= qry.end[pos]
                    pos = pos[inside]
                    hashes, owner = qry.windows_at(pos, n), qry.owner[pos]
                    # the reference windows of n steps starting with one of these seed runs
                    ref_set = np.sort(ref.windows_at(self._starts_of(np.unique(q_hash[mine][inside]), seed), n))
                found[pick] = np.isin(who, owner[_member(ref_set, hashes)])
            lo[active[found]] = mid[found]
            hi[active[~found]] = mid[~found] - 1
        return lo

    def _windows(self) -> "_Windows":
        if self._ref is None:
            self._ref = _Windows(self.melodies)
        return self._ref

    def _seed(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Every ``n``-step run of the reference set: ``(hashes sorted, their start positions)``."""
        if n not in self._seeds:
            h, start = self._windows().all_windows(n)
            order = np.argsort(h, kind="stable")
            self._seeds[n] = (h[order], start[order])
        return self._seeds[n]

    def _contains_seed(self, hashes: np.ndarray, n: int) -> np.ndarray:
        return _member(self._seed(n)[0], hashes)

    def _starts_of(self, hashes: np.ndarray, n: int) -> np.ndarray:
        """The reference positions where an ``n``-step run with one of ``hashes`` starts."""
        ordered, start = self._seed(n)
        left = np.searchsorted(ordered, hashes, side="left")
        right = np.searchsorted(ordered, hashes, side="right")
        counts = right - left
        first = np.repeat(left, counts)
        offset = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        return start[first + offset]

    def overlap(self, melodies: Iterable[np.ndarray], n: int) -> tuple[int, int]:
        """``(found, total)``: of all ``n``-step runs (occurrences) of ``melodies``, how many
        are in the reference set."""
        hashes, _ = window_hashes(list(melodies), n)
        return int(self._contains(hashes, n).sum()), len(hashes)


def _member(ordered: np.ndarray, query: np.ndarray) -> np.ndarray:
    """For each of ``query``: is it in the sorted array ``ordered``?  The queries are looked up
    in sorted order (numpy's binary search then walks the table forward: several times faster
    on big tables than random order)."""
    out = np.zeros(len(query), dtype=bool)
    if len(query) == 0 or len(ordered) == 0:
        return out
    order = np.argsort(query)
    q = query[order]
    at = np.minimum(np.searchsorted(ordered, q), len(ordered) - 1)
    out[order] = ordered[at] == q
    return out


class _Windows:
    """Hashes of arbitrary windows of concatenated melodies in O(1) each: with
    ``C[m] = sum_{k<m} (v_k + 1) * B^-k`` (B is odd, so invertible modulo 2**64), the window of
    ``n`` values at ``i`` hashes to ``B^(i+n-1) * (C[i+n] - C[i])``, the polynomial
    :func:`_window_hashes` builds by doubling (and the same splitmix64 finish), so both agree."""

    def __init__(self, melodies: Sequence[np.ndarray]):
        lengths = np.fromiter((len(m) for m in melodies), dtype=np.int64, count=len(melodies))
        self.start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.lengths = lengths
        values = np.concatenate([np.asarray(m, dtype=np.uint16) for m in melodies]) if len(melodies) else np.zeros(0, np.uint16)
        total = len(values)
        with np.errstate(over="ignore"):
            inv = _inverse(_BASE)
            inv_pow = np.empty(total, dtype=_U64)
            pow_ = np.empty(total + 1, dtype=_U64)
            if total:
                inv_pow[0] = _U64(1)
                inv_pow[1:] = inv
                inv_pow = np.cumprod(inv_pow, dtype=_U64)
            pow_[0] = _U64(1)
            pow_[1:] = _BASE
            self.pow = np.cumprod(pow_, dtype=_U64)
            self.cum = np.zeros(total + 1, dtype=_U64)
            if total:
                self.cum[1:] = np.cumsum((values.astype(_U64) + _U64(1)) * inv_pow, dtype=_U64)
        self.owner = np.repeat(np.arange(len(melodies), dtype=np.int64), lengths)
        self.end = np.repeat(self.start[1:], lengths)  # where each position's melody ends

    def windows_at(self, positions: np.ndarray, n: int) -> np.ndarray:
        """Hashes of the ``n``-value windows starting at ``positions`` that stay inside their
        melody (the others are left out)."""
        positions = np.asarray(positions, dtype=np.int64)
        positions = positions[positions + n <= self.end[positions]] if len(positions) else positions
        with np.errstate(over="ignore"):
            poly = self.pow[positions + n - 1] * (self.cum[positions + n] - self.cum[positions])
            return _mix(poly ^ _U64(n))

    def all_windows(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(hashes, start positions)`` of every ``n``-value window inside a melody."""
        positions = np.arange(len(self.owner), dtype=np.int64)
        positions = positions[positions + n <= self.end] if len(positions) else positions
        return self.windows_at(positions, n), positions

    def windows_of(self, which: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(hashes, owner)`` of every ``n``-value window of the melodies ``which``."""
        which = np.asarray(which, dtype=np.int64)
        counts = np.maximum(self.lengths[which] - n + 1, 0)
        owner = np.repeat(which, counts)
        first = np.repeat(self.start[which], counts)
        offset = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        return self.windows_at(first + offset, n), owner


def _inverse(x: np.uint64) -> np.uint64:
    """The inverse of an odd number modulo 2**64 (Newton's iteration)."""
    with np.errstate(over="ignore"):
        y = x  # correct to 3 bits for odd x
        for _ in range(6):
            y = y * (_U64(2) - x * y)
    return y


def leakage(
    train: Sequence[np.ndarray],
    test: Sequence[np.ndarray],
    n: int = DEFAULT_RUN,
    sizes: Sequence[int] = OVERLAP_SIZES,
) -> dict[str, Any]:
    """How much of the ``test`` melodies the ``train`` melodies hold: the pieces sharing an
    ``n``-step run, and the share of test n-grams (occurrences) found in the training split."""
    index = MelodyIndex(train)
    sharing = int(index.sharing(test, n).sum())
    overlap = {}
    for size in sizes:
        found, total = index.overlap(test, size)
        overlap[str(int(size))] = round(found / total, 4) if total else None
    return {
        "run_steps": int(n),
        "test_pieces": len(test),
        "test_sharing_run": int(sharing),
        "test_sharing_run_share": round(sharing / len(test), 4) if len(test) else None,
        "ngram_overlap": overlap,
    }
