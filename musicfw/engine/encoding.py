"""Tokens of one piece, checked: what the token cache (:mod:`musicfw.engine.data`) and the token
shards (:mod:`musicfw.engine.shards`) both store, and the identity of the tokenizer that made
them.  numpy and the standard library only (shard workers import it)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from musicfw.music.limits import PieceRejected

log = logging.getLogger("musicfw.data")

MULTIHOT = "multihot"


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    """What identifies a tokenizer's output: its class, config and vocabulary, and the
    distribution and version of the package that provides it (a re-versioned plugin may
    tokenize differently with the same config)."""
    from musicfw.core.registry import plugin_identity

    cls = type(tokenizer)
    return {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "plugin": plugin_identity(tokenizer),
        "spec": tokenizer.to_dict(),
    }


def dataset_fingerprint(dataset: Any) -> dict[str, Any]:
    """The dataset plugin's class and the distribution and version that provide it."""
    from musicfw.core.registry import plugin_identity

    cls = type(dataset)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "plugin": plugin_identity(dataset)}


def _check_tokens(tokens: Any, kind: str, vocab_size: int) -> tuple[np.ndarray | None, str | None]:
    arr = np.asarray(tokens)
    if kind == MULTIHOT:
        if arr.ndim != 2 or arr.shape[1] != vocab_size:
            return None, f"tokenizer returned shape {arr.shape}, expected [T, {vocab_size}]"
        return (arr > 0).astype(np.uint8), (None if len(arr) else "tokenizer returned no frames")
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        return None, f"tokenizer returned {arr.dtype} of shape {arr.shape}, expected int ids [T]"
    if len(arr) == 0:
        return None, "tokenizer returned no tokens"
    if arr.min() < 0 or arr.max() >= vocab_size:
        return None, f"tokenizer returned ids outside 0..{vocab_size - 1}"
    return arr, None


def encode_piece(
    tokenizer: Any, piece: Any, kind: str, vocab_size: int, coverage: dict[str, Any]
) -> tuple[np.ndarray | None, str | None]:
    """One piece's checked tokens (or None and why), adding what the tokenizer could not
    represent to ``coverage`` ({notes, dropped, reasons}).  Used by the token cache and by the
    shard workers (:mod:`musicfw.engine.shards`)."""
    try:
        arr, reason = _check_tokens(tokenizer.encode(piece.score), kind, vocab_size)
    except PieceRejected as exc:  # beyond the limits, or malformed: its own reason
        arr, reason = None, str(exc)
    except Exception as exc:  # a piece the tokenizer cannot handle is skipped, not fatal
        arr, reason = None, f"tokenizer failed: {type(exc).__name__}: {exc}"
    if reason is not None or arr is None:
        return None, reason or "tokenizer failed"
    try:  # which notes the tokenizer could not represent (drums in REMI, ...), and why
        cov = tokenizer.coverage(piece.score, arr)
    except Exception as exc:  # a third-party coverage that fails costs only the report
        log.warning("coverage of %s failed: %s", piece.id, exc)
        return arr, None
    coverage["notes"] += int(cov.get("notes", 0))
    coverage["dropped"] += int(cov.get("dropped", 0))
    for why, count in (cov.get("reasons") or {}).items():
        coverage["reasons"][why] = coverage["reasons"].get(why, 0) + int(count)
    return arr, None
