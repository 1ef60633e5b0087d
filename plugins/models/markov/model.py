"""Order-n Markov chain over tokens or piano-roll frames, fitted by counting.

States
    Categorical tokens: the token ids ``0..V-1``.  Piano-roll frames: every distinct frame seen
    at least ``min_frame_count`` times in training is one state (``0..F-1``); all other frames
    (rare or never seen) share the unknown-frame state ``F``.  The symbol ``BOS`` (= number of
    states) fills the context before the first position, so the first token is predicted too.

Probabilities (``p_j`` is the order-j estimate, ``h_j`` the last j symbols)
    * base: ``p_0(w) = (c(w) + k) / (N + k S)`` (add-k unigram, S states): never zero.
    * ``witten_bell``: ``p_j(w | h) = (c(h, w) + T(h) p_{j-1}(w | h')) / (c(h) + T(h))``
      where ``T(h)`` is the number of distinct successors of h; an unseen context falls back
      to ``p_{j-1}`` (interpolation with back-off to lower orders).
    * ``add_k``: ``p(w | h) = (c(h, w) + k) / (c(h) + k S)`` on the order-n table alone.
    An unknown frame ``x`` costs ``-log p(UNK | h) - log q(x | unseen)`` where ``q`` is a
    per-key Bernoulli model of the rare training frames, renormalised over the frames that
    are not states, so the frame model is a proper distribution and every NLL is finite.

Everything is vectorised: counting is ``np.unique`` over context keys, lookups are
``np.searchsorted`` into sorted key arrays (a CSR table per order).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from musicfw.core.model import Model

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (uint64 in, uint64 out; wraps modulo 2**64)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def _hash_rows(rows: np.ndarray) -> np.ndarray:
    """One int64 key per row of non-negative ints (hash; equality is checked by callers
    where it matters)."""
    h = np.full(rows.shape[0], _GOLDEN, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in range(rows.shape[1]):
            h = _mix64(h ^ (rows[:, col].astype(np.uint64) + _GOLDEN))
    return h.view(np.int64)


def _frame_words(frames: np.ndarray) -> np.ndarray:
    """Frames ``[N, K]`` (0/1) -> packed bits as uint64 words ``[N, W]`` (exact identity)."""
    packed = np.packbits(np.asarray(frames) > 0.5, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def _lookup(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of every query in the sorted ``keys`` and whether it is there."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=np.int64), np.zeros(len(query), dtype=bool)
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, len(keys) - 1)
    return pos, keys[pos] == query


class MarkovModel(Model, nn.Module):
    """See the module docstring.  ``fit`` counts; ``loss``/``init_state``/``step`` as every model."""

    trainable = False

    def __init__(
        self,
        vocab_size: int,
        token_kind: str = "categorical",
        order: int = 2,
        smoothing: str = "witten_bell",
        k: float = 0.01,
        min_frame_count: int = 2,
    ):
        super().__init__()
        if token_kind not in ("categorical", "multihot"):
            raise ValueError(f"unknown token kind {token_kind!r}")
        self.vocab_size = int(vocab_size)  # ids (categorical) or keys (multihot)
        self.token_kind = token_kind
        self.order = int(order)
        self.smoothing = smoothing
        self.k = float(k)
        self.min_frame_count = int(min_frame_count)
        self.fitted = False
        self._arrays: dict[str, np.ndarray] = {}
        self._n_states = self.vocab_size if token_kind == "categorical" else 0

    # ---------------------------------------------------------------------------------------
    # states
    # ---------------------------------------------------------------------------------------
    @property
    def n_states(self) -> int:
        """Number of predicted states: V (categorical) or distinct frames + 1 (multihot)."""
        return self._n_states

    @property
    def bos(self) -> int:
        return self._n_states

    def _exact_keys(self, j: int) -> bool:
        return (self._n_states + 1) ** j < 2**62

    def _context_keys(self, ctx: np.ndarray) -> np.ndarray:
        """``ctx [N, j]`` symbols -> int64 keys (exact mixed-radix when it fits, else a hash)."""
        j = ctx.shape[1]
        if self._exact_keys(j):
            base = self._n_states + 1
            weights = np.array([base ** (j - 1 - i) for i in range(j)], dtype=np.int64)
            return ctx.astype(np.int64) @ weights
        return _hash_rows(ctx)

    def _frame_symbols(self, frames: np.ndarray) -> np.ndarray:
        """Frames ``[..., K]`` -> state ids ``[...]`` (unknown frames -> the UNK state)."""
        shape = frames.shape[:-1]
        flat = frames.reshape(-1, frames.shape[-1])
        words = _frame_words(flat)
        keys = _hash_rows(words)
        pos, found = _lookup(self._arrays["frame_keys"], keys)
        if found.any():
            found &= (self._arrays["frame_words"][pos] == words).all(axis=1)
        unk = self._n_states - 1
        return np.where(found, pos, unk).reshape(shape)

    def _symbols(self, tokens: np.ndarray) -> np.ndarray:
        if self.token_kind == "categorical":
            sym = np.asarray(tokens, dtype=np.int64)
            if sym.size and (sym.min() < 0 or sym.max() >= self.vocab_size):
                bad = sym[(sym < 0) | (sym >= self.vocab_size)][0]
                raise ValueError(f"token id {bad} is out of range for a vocabulary of {self.vocab_size}")
            return sym
        return self._frame_symbols(np.asarray(tokens))

    def _unk_log_q(self, frames: np.ndarray) -> np.ndarray:
        """log q(x | unseen) for frames ``[N, K]`` that are not states."""
        x = np.asarray(frames, dtype=np.float64) > 0.5
        a = self._arrays
        return np.where(x, a["unk_log_q"], a["unk_log_1mq"]).sum(axis=1) - a["unk_log_norm"][0]

    # ---------------------------------------------------------------------------------------
    # fitting
    # ---------------------------------------------------------------------------------------
    def fit(self, data: Any) -> "MarkovModel":
        """Count from a datamodule (its whole training pieces when it offers them, else its
        training batches) or from an iterable of batch dicts ``{"tokens", "mask"}``."""
        sequences, masks = [], []
        for batch in _training_batches(data):
            tokens = _to_numpy(batch["tokens"])
            mask = _to_numpy(batch["mask"]).astype(bool)
            for row in range(tokens.shape[0]):
                real = np.flatnonzero(mask[row])
                if len(real) == 0:
                    continue
                end = real[-1] + 1  # keep unscored positions before the end as context
                sequences.append(tokens[row, :end])
                masks.append(mask[row, :end])
        return self.fit_sequences(sequences, masks)

    def fit_sequences(
        self, sequences: Iterable[np.ndarray], masks: Iterable[np.ndarray] | None = None
    ) -> "MarkovModel":
        """Count n-grams over whole sequences (``[T]`` ids or ``[T, K]`` frames); ``masks``
        (bool ``[T]``) say which positions are targets (all by default)."""
        sequences = [np.asarray(s) for s in sequences]
        masks = [np.ones(len(s), dtype=bool) for s in sequences] if masks is None else [np.asarray(m, bool) for m in masks]
        if not sequences or sum(int(m.sum()) for m in masks) == 0:
            raise ValueError("the markov model needs at least one training token to count")
        self._arrays = {}
        if self.token_kind == "multihot":
            self._fit_frames(sequences, masks)
        else:
            self._n_states = self.vocab_size
        n = self.order
        ctx_parts, tgt_parts = [], []
        for seq, mask in zip(sequences, masks):
            sym = self._symbols(seq)
            windows = self._windows(sym[None])[0]  # [T, n]
            ctx_parts.append(windows[mask])
            tgt_parts.append(sym[mask])
        ctx = np.concatenate(ctx_parts).astype(np.int64)
        tgt = np.concatenate(tgt_parts).astype(np.int64)
        S = self._n_states
        self._arrays["unigram"] = np.bincount(tgt, minlength=S).astype(np.int64)
        for j in range(1, n + 1):
            keys = self._context_keys(ctx[:, n - j :])
            ukeys, inverse = np.unique(keys, return_inverse=True)
            pairs = inverse.astype(np.int64) * S + tgt
            upairs, pair_counts = np.unique(pairs, return_counts=True)
            pair_ctx = upairs // S
            self._arrays[f"o{j}_keys"] = ukeys
            self._arrays[f"o{j}_total"] = np.bincount(inverse, minlength=len(ukeys)).astype(np.int64)
            self._arrays[f"o{j}_types"] = np.bincount(pair_ctx, minlength=len(ukeys)).astype(np.int64)
            self._arrays[f"o{j}_pairs"] = upairs.astype(np.int64)
            self._arrays[f"o{j}_counts"] = pair_counts.astype(np.int64)
            self._arrays[f"o{j}_ptr"] = np.concatenate(
                [[0], np.cumsum(np.bincount(pair_ctx, minlength=len(ukeys)))]
            ).astype(np.int64)
        self.fitted = True
        return self

    def _fit_frames(self, sequences: list[np.ndarray], masks: list[np.ndarray]) -> None:
        frames = np.concatenate([s[m] for s, m in zip(sequences, masks)]) > 0.5
        K = frames.shape[1]
        if K != self.vocab_size:
            raise ValueError(f"frames have {K} keys, the tokenizer {self.vocab_size}")
        words = _frame_words(frames)
        uwords, inverse, counts = np.unique(words, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        keep = counts >= self.min_frame_count
        kept_words = uwords[keep]
        keys = _hash_rows(kept_words)
        order = np.argsort(keys, kind="stable")
        keys, kept_words = keys[order], kept_words[order]
        if len(np.unique(keys)) != len(keys):  # a 64-bit collision: astronomically unlikely
            raise RuntimeError("frame hash collision; cannot build the frame table")
        kept_frames = np.unpackbits(kept_words.view(np.uint8), axis=1)[:, :K].astype(np.float64)
        self._arrays["frame_keys"] = keys
        self._arrays["frame_words"] = kept_words
        self._arrays["frames"] = kept_frames
        self._n_states = len(keys) + 1  # + the unknown-frame state
        # the unknown-frame emission: per-key Bernoulli fitted on the rare frames (add-1/2)
        rare = ~keep[inverse]
        source = frames[rare] if rare.any() else frames
        q = (source.sum(axis=0) + 0.5) / (len(source) + 1.0)
        log_q, log_1mq = np.log(q), np.log1p(-q)
        log_p_seen = kept_frames @ (log_q - log_1mq) + log_1mq.sum()
        p_seen = np.exp(log_p_seen)
        z_seen = float(p_seen.sum())
        norm = max(1.0 - z_seen, 1e-12)
        self._arrays["unk_log_q"] = log_q
        self._arrays["unk_log_1mq"] = log_1mq
        self._arrays["unk_log_norm"] = np.array([math.log(norm)])
        marg = (q - p_seen @ kept_frames) / norm
        self._arrays["unk_marginal"] = np.clip(marg, 1e-6, 1 - 1e-6)

    def _windows(self, sym: np.ndarray) -> np.ndarray:
        """``sym [B, T]`` -> contexts ``[B, T, n]``: the n symbols before each position."""
        B = sym.shape[0]
        padded = np.concatenate([np.full((B, self.order), self.bos, dtype=np.int64), sym], axis=1)
        return np.lib.stride_tricks.sliding_window_view(padded, self.order, axis=1)[:, : sym.shape[1]]

    # ---------------------------------------------------------------------------------------
    # probabilities
    # ---------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("the markov model is not fitted yet: call fit(datamodule) first")

    def _log_prob(self, ctx: np.ndarray, tgt: np.ndarray) -> np.ndarray:
        """log p(tgt | ctx) for ``ctx [N, n]``, ``tgt [N]`` (symbols)."""
        a, S, n, k = self._arrays, self._n_states, self.order, self.k
        uni = a["unigram"]
        p = (uni[tgt] + k) / (uni.sum() + k * S)
        orders = range(1, n + 1) if self.smoothing == "witten_bell" else (n,)
        for j in orders:
            idx, found = _lookup(a[f"o{j}_keys"], self._context_keys(ctx[:, n - j :]))
            total = np.where(found, a[f"o{j}_total"][idx], 0)
            types = np.where(found, a[f"o{j}_types"][idx], 0)
            pos, hit = _lookup(a[f"o{j}_pairs"], idx * S + tgt)
            c_hw = np.where(found & hit, a[f"o{j}_counts"][pos], 0)
            if self.smoothing == "witten_bell":
                p = np.where(found, (c_hw + types * p) / np.maximum(total + types, 1), p)
            else:
                p = (c_hw + k) / (total + k * S)
        return np.log(p)

    def _distribution(self, ctx: np.ndarray) -> np.ndarray:
        """p(. | ctx) over all states for ``ctx [B, n]`` -> ``[B, S]``."""
        a, S, n, k = self._arrays, self._n_states, self.order, self.k
        B = ctx.shape[0]
        uni = a["unigram"]
        p = np.broadcast_to((uni + k) / (uni.sum() + k * S), (B, S))
        orders = range(1, n + 1) if self.smoothing == "witten_bell" else (n,)
        for j in orders:
            idx, found = _lookup(a[f"o{j}_keys"], self._context_keys(ctx[:, n - j :]))
            ptr = a[f"o{j}_ptr"]
            starts = np.where(found, ptr[idx], 0)
            lengths = np.where(found, ptr[np.minimum(idx + 1, len(ptr) - 1)] - ptr[idx], 0)
            counts = np.zeros((B, S))
            if lengths.sum():
                rows = np.repeat(np.arange(B), lengths)
                offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
                flat = np.repeat(starts, lengths) + offsets
                counts[rows, a[f"o{j}_pairs"][flat] % S] = a[f"o{j}_counts"][flat]
            total = np.where(found, a[f"o{j}_total"][idx], 0)[:, None]
            types = np.where(found, a[f"o{j}_types"][idx], 0)[:, None]
            if self.smoothing == "witten_bell":
                p = np.where(found[:, None], (counts + types * p) / np.maximum(total + types, 1), p)
            else:
                p = (counts + k) / (total + k * S)
        return p

    # ---------------------------------------------------------------------------------------
    # the model protocol
    # ---------------------------------------------------------------------------------------
    def token_nll(self, tokens: Any, mask: Any) -> np.ndarray:
        """NLL in nats of every position ``[B, T]`` (0 where ``mask`` is False)."""
        self._check_fitted()
        tokens, mask = _to_numpy(tokens), _to_numpy(mask).astype(bool)
        sym = self._symbols(tokens)
        windows = self._windows(sym)
        nll = np.zeros(mask.shape)
        nll[mask] = -self._log_prob(windows[mask], sym[mask])
        if self.token_kind == "multihot":
            unk = mask & (sym == self._n_states - 1)
            if unk.any():
                nll[unk] -= self._unk_log_q(tokens[unk])
        return nll

    def loss(self, batch: dict[str, Any]) -> dict[str, Any]:
        mask = _to_numpy(batch["mask"]).astype(bool)
        nll = self.token_nll(batch["tokens"], mask)
        n = int(mask.sum())
        nll_sum = torch.tensor(float(nll.sum()), dtype=torch.float64)
        return {
            "loss": nll_sum / max(n, 1),
            "nll_sum": nll_sum,
            "n_targets": torch.tensor(n, dtype=torch.int64),
        }

    def init_state(self, batch_size: int, device: Any = None) -> torch.Tensor:
        self._check_fitted()
        return torch.full((batch_size, self.order), self.bos, dtype=torch.int64)

    def step(self, x: Any, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the next token (``log p``, ``[B, V]``) or, for frames, the exact per-key
        marginal log-odds ``[B, K]`` of the next frame; the state is the last n symbols."""
        self._check_fitted()
        ctx = state.cpu().numpy()
        device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
        if x is not None:
            sym = self._symbols(_to_numpy(x))
            ctx = np.concatenate([ctx[:, 1:], sym.reshape(-1, 1)], axis=1)
        p = self._distribution(ctx)
        if self.token_kind == "categorical":
            logits = np.log(p)
        else:
            F = self._n_states - 1
            marg = p[:, :F] @ self._arrays["frames"] + p[:, F:] * self._arrays["unk_marginal"]
            marg = np.clip(marg, 1e-7, 1 - 1e-7)
            logits = np.log(marg) - np.log1p(-marg)
        return torch.from_numpy(logits.astype(np.float32)).to(device), torch.from_numpy(ctx.copy())

    # ---------------------------------------------------------------------------------------
    # saving: the counts travel in the state dict (``_extra_state``)
    # ---------------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "fitted": self.fitted,
            "n_states": self._n_states,
            "settings": {
                "vocab_size": self.vocab_size,
                "token_kind": self.token_kind,
                "order": self.order,
                "smoothing": self.smoothing,
            },
            "arrays": {
                name: torch.from_numpy(arr.view(np.int64) if arr.dtype == np.uint64 else arr)
                for name, arr in self._arrays.items()
            },
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the counts, after checking them (they may come from a stranger's file):
        every table present with the length the others imply, counts >= 0, keys sorted, the
        CSR pointers consistent, the number of states the one the settings and tables imply.
        A table that does not fit is a ValueError naming it."""
        if not isinstance(state, dict) or not isinstance(state.get("settings"), dict) or not isinstance(state.get("arrays"), dict):
            raise ValueError("markov state: needs `settings` and `arrays` mappings")
        settings = state["settings"]
        for key in ("vocab_size", "token_kind", "order", "smoothing"):
            if settings.get(key) != getattr(self, key):
                raise ValueError(
                    f"checkpoint has {key}={settings.get(key)!r}, this model {getattr(self, key)!r}"
                )
        fitted, n_states = state.get("fitted"), state.get("n_states")
        if not isinstance(fitted, bool):
            raise ValueError(f"markov state: `fitted` must be true or false, got {fitted!r}")
        if isinstance(n_states, bool) or not isinstance(n_states, int):
            raise ValueError(f"markov state: `n_states` must be a whole number, got {n_states!r}")
        arrays = {}
        for name, t in state["arrays"].items():
            if not isinstance(t, (torch.Tensor, np.ndarray)):
                raise ValueError(f"markov state: arrays/{name} is not an array")
            arrays[name] = t.numpy() if isinstance(t, torch.Tensor) else t
        _check_tables(arrays, fitted, n_states, self.vocab_size, self.token_kind, self.order)
        self.fitted = fitted
        self._n_states = n_states
        self._arrays = arrays
        if "frame_words" in self._arrays:
            self._arrays["frame_words"] = self._arrays["frame_words"].view(np.uint64)

    def extra_repr(self) -> str:
        return (
            f"order={self.order}, smoothing={self.smoothing}, k={self.k}, "
            f"token_kind={self.token_kind}, states={self._n_states}"
        )


def _check_tables(arrays: dict[str, np.ndarray], fitted: bool, n_states: int, vocab_size: int, kind: str, order: int) -> None:
    """The consistency :meth:`MarkovModel.set_extra_state` requires (see there)."""

    def need(name: str, shape: tuple, dtype: str) -> np.ndarray:
        a = arrays.get(name)
        if a is None:
            raise ValueError(f"markov state: the table {name} is missing")
        if a.dtype.kind != dtype or a.ndim != len(shape) or any(s is not None and d != s for d, s in zip(a.shape, shape)):
            want = "x".join("*" if s is None else str(s) for s in shape)
            raise ValueError(f"markov state: {name} has shape {list(a.shape)} ({a.dtype}), expected {want} ({dtype})")
        return a

    def nonnegative(name: str, a: np.ndarray) -> None:
        if a.size and a.min() < 0:
            raise ValueError(f"markov state: {name} holds negative counts")

    def increasing(name: str, a: np.ndarray) -> None:
        if a.size > 1 and not bool((a[1:] > a[:-1]).all()):
            raise ValueError(f"markov state: {name} is not sorted (strictly increasing)")

    if not fitted:
        if arrays:
            raise ValueError("markov state: an unfitted model holds no tables")
        return
    expected = {"unigram"} | {f"o{j}_{t}" for j in range(1, order + 1)
                              for t in ("keys", "total", "types", "pairs", "counts", "ptr")}
    if kind == "multihot":
        frame_keys = need("frame_keys", (None,), "i")
        F, K = len(frame_keys), vocab_size
        if n_states != F + 1:
            raise ValueError(f"markov state: n_states is {n_states}, the frame table has {F} frames (+1 unknown)")
        increasing("frame_keys", frame_keys)
        need("frame_words", (F, -(-K // 64)), "i")
        frames = need("frames", (F, K), "f")
        if frames.size and not bool(((frames == 0) | (frames == 1)).all()):
            raise ValueError("markov state: frames holds values other than 0 and 1")
        for name in ("unk_log_q", "unk_log_1mq", "unk_marginal"):
            need(name, (K,), "f")
        need("unk_log_norm", (1,), "f")
        expected |= {"frame_keys", "frame_words", "frames", "unk_log_q", "unk_log_1mq", "unk_marginal", "unk_log_norm"}
    elif n_states != vocab_size:
        raise ValueError(f"markov state: n_states is {n_states}, the vocabulary has {vocab_size} tokens")
    extra = sorted(set(arrays) - expected)
    if extra:
        raise ValueError(f"markov state: unknown table {extra[0]}")
    S = n_states
    nonnegative("unigram", need("unigram", (S,), "i"))
    for j in range(1, order + 1):
        keys = need(f"o{j}_keys", (None,), "i")
        U = len(keys)
        increasing(f"o{j}_keys", keys)
        for t in ("total", "types"):
            nonnegative(f"o{j}_{t}", need(f"o{j}_{t}", (U,), "i"))
        pairs = need(f"o{j}_pairs", (None,), "i")
        P = len(pairs)
        nonnegative(f"o{j}_counts", need(f"o{j}_counts", (P,), "i"))
        increasing(f"o{j}_pairs", pairs)
        if P and (pairs[0] < 0 or pairs[-1] >= U * S):
            raise ValueError(f"markov state: o{j}_pairs points outside its {U} contexts x {S} states")
        ptr = need(f"o{j}_ptr", (U + 1,), "i")
        if ptr[0] != 0 or ptr[-1] != P or bool((np.diff(ptr) < 0).any()):
            raise ValueError(f"markov state: o{j}_ptr is not a pointer table over its {P} pairs")


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _training_batches(data: Any) -> Iterable[dict[str, Any]]:
    """Whole training pieces from a datamodule when it has them, else its training batches;
    an iterable of batch dicts is used as it is."""
    if hasattr(data, "train_dataloader"):
        for name in ("train_pieces_dataloader", "full_train_dataloader"):
            method = getattr(data, name, None)
            if callable(method):
                return method()
        return data.train_dataloader()
    return data
