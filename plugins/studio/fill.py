"""The studio's ``infill`` action: regenerate a range of bars of the piece, given the bars before
and after them, with a model trained to infill (``train.infill.enabled``; the decoding is
:mod:`musicfw.engine.infill`'s, unchanged).

The filled bars stream as they are written: after every drawn token the decoding loop hands
the bars so far to the action (``fill_tokens(on_filled=...)``), and the left context plus those
bars are decoded and their notes sent: before
the first note again once as long has passed as the last decode took, then at most every
:data:`~.actions.EMIT_EVERY` seconds.  The prompt (the song's whole left and right context)
is read in one ``Model.prefill`` pass, as the ``continue`` action reads its prompt.  Cancel stops
the loop before its next token (:class:`~.actions.Watched`).  The
result is the piece with the notes of the range replaced: the piece's own notes outside it
unchanged, the new ones in their own tracks (marked generated on the piano roll).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .actions import EMIT_EVERY, Action, ActionContext, ActionResult, Param, Watched, new_notes, place


class InfillBars(Action):
    name = "infill"
    label = "Infill bars"
    help = ("write bars FIRST-LAST of the piece again, given the bars before and after them (drag across the piano "
            "roll to choose them); a model trained with train.infill")
    params = (
        Param("bars", "str", "2-3", "bars to fill, 1-based inclusive: 5-8 or 5", max_length=24),
        Param("max_tokens", "int", None, "tokens the filled bars may take in all (default: 3x their length + 64)", 8, 8192),
    )
    uses_sampler = True
    streams = True
    bar_range = "bars"

    @classmethod
    def supports(cls, loaded: Any) -> bool:
        return bool(loaded.supports.get("infill"))

    def run(self, ctx: ActionContext) -> ActionResult:
        import symusic

        from musicfw.engine.infill import bar_bounds, fill_tokens, prepare_song, splice

        tokenizer, model = ctx.loaded.tokenizer, ctx.loaded.model
        piece = ctx.pieces["piece"]
        score, _, tokens, first, k, n_bars = prepare_song(tokenizer, piece.score, ctx.params["bars"])
        tpq = int(score.ticks_per_quarter)
        grid = tokenizer.decode(tokens)
        cleared = splice(score, symusic.Score(tpq), first, k, n_bars, grid)  # the piece without the range's notes
        bounds = bar_bounds(tokens, tokenizer.is_bar)
        left = tokens[: int(bounds[first])]
        ids = tokenizer.ids
        label = f"generated ({self.name})"
        state = {"last": 0.0, "decode": 0.0, "sent": 0, "first_note": None}
        t0, c0 = time.perf_counter(), time.thread_time()

        def notes_of(filled: np.ndarray) -> list[tuple]:
            middle = filled[filled != ids.end]
            decoded = tokenizer.decode(np.concatenate([left, middle]).astype(np.int64))
            return new_notes(splice(score, decoded, first, k, n_bars, grid), cleared)

        def on_filled(drawn: np.ndarray) -> None:
            now = time.perf_counter()
            # before the first note: decode again once as long has passed as the last decode took
            # (at most half the time goes to looking for it); then every EMIT_EVERY seconds
            if now - state["last"] < (EMIT_EVERY if state["sent"] else state["decode"]):
                return
            notes = notes_of(np.asarray(drawn, dtype=np.int64))
            state["last"], state["decode"] = now, time.perf_counter() - now
            if len(notes) > state["sent"]:
                if state["first_note"] is None:
                    state["first_note"] = now - t0
                state["sent"] = len(notes)
                out, tracks = place(cleared, notes, tpq, 0, label)
                ctx.emit({"type": "notes", "tokens": len(drawn), "seconds": round(now - t0, 4),
                          "cpu_seconds": round(time.thread_time() - c0, 4),
                          "notes": [r for r in ctx.to_rows(out, tracks) if r[5]]})

        max_tokens = ctx.params.get("max_tokens")
        result = fill_tokens(Watched(model, ctx.cancel), tokenizer, ctx.sampler, tokens, first, k, n=1,
                             max_tokens=max_tokens, seed=ctx.seed, prefill=True, on_filled=on_filled)
        full = splice(score, tokenizer.decode(result.sequences[0]), first, k, n_bars, grid)
        notes = new_notes(full, cleared)
        out, tracks = place(cleared, notes, tpq, 0, label)
        ctx.emit({"type": "notes", "tokens": int(len(result.filled[0])), "seconds": round(time.perf_counter() - t0, 4),
                  "cpu_seconds": round(time.thread_time() - c0, 4),
                  "notes": [r for r in ctx.to_rows(out, tracks) if r[5]]})
        stats = {"tokens": int(len(result.filled[0])), "bars": [first + 1, first + k], "song_bars": n_bars,
                 "notes": len(notes), "seconds": round(time.perf_counter() - t0, 4),
                 "first_note_seconds": None if state["first_note"] is None else round(state["first_note"], 4)}
        return ActionResult(out, tracks, f"{piece.label} + bars {first + 1}-{first + k} filled", stats)
