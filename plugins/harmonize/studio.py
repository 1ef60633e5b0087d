"""The studio's ``harmonize`` action: write the missing voices of the piece (alto, tenor and bass
under a soprano melody, or whichever voices ``voices`` / ``given`` name) with a model trained on
the ``tracks`` tokenizer.

Registered as a third-party package would register it: through the entry point group
``musicfw.studio_actions`` (pyproject.toml), so the studio knows nothing of harmonisation.  The
decoding is :func:`.harmonize.harmonize`, unchanged; its model is watched
(:class:`musicfw.plugins.studio.actions.Watched`) so that the voices stream as they are written
(every token fed back is kept, and at most every ``EMIT_EVERY`` seconds the sequence so far is
decoded: any prefix decodes) and Cancel stops it before the next token.  The result is the piece
with the written voices added as tracks (marked generated); its own tracks unchanged.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from musicfw.plugins.studio.actions import EMIT_EVERY, Action, ActionContext, ActionResult, Param, Watched


class Harmonize(Action):
    name = "harmonize"
    label = "Harmonise"
    help = ("write the missing voices under (or over) the piece's own: by default the piece is the soprano and "
            "alto, tenor and bass are written; a model trained on the tracks tokenizer")
    params = (
        Param("voices", "str", "", "voices to write, e.g. alto,tenor,bass (empty: every voice not given)", max_length=80),
        Param("given", "str", "", "voices the piece holds, e.g. soprano (empty: from its track names, else the first)",
              max_length=80),
        Param("controls", "str", "", "attribute levels of the written voices, e.g. density=high or bass:pitch=low "
              "(a model trained with tokenizer.controls; empty: the model's choice)", max_length=200),
        Param("forbid_parallels", "bool", False, "no written note moves in parallel fifths or octaves with a voice "
              "already known at its onset (a decoding rule, as in musicfw harmonize --forbid-parallels)"),
        Param("pitch_temperature", "float", 1.0, "temperature on the choice among pitches only, their total "
              "probability kept, so the rhythm stays the model's (below 1: surer harmony; 1: off)", min=0.05, max=5.0),
    )
    uses_sampler = True
    streams = True

    @classmethod
    def supports(cls, loaded: Any) -> bool:
        return bool(loaded.supports.get("harmonize"))

    def run(self, ctx: ActionContext) -> ActionResult:
        from .harmonize import harmonize, resolve_voices

        tokenizer, piece = ctx.loaded.tokenizer, ctx.pieces["piece"]
        voices = ctx.params["voices"].strip() or None
        given = ctx.params["given"].strip() or None
        controls = ctx.params["controls"].strip() or None
        pitch_temperature = ctx.params["pitch_temperature"]
        _, write = resolve_voices(tokenizer, voices, given, piece.score)
        fed: list[int] = []
        state = {"last": 0.0, "sent": 0, "first_note": None}
        base = len(piece.score.tracks)
        tpq = int(piece.score.ticks_per_quarter)
        t0, c0 = time.perf_counter(), time.thread_time()

        def on_step(x: Any) -> None:
            fed.append(int(x.reshape(-1)[0]))
            now = time.perf_counter()
            if now - state["last"] < EMIT_EVERY:
                return
            state["last"] = now
            decoded, _, _ = tokenizer.decode_voices(np.asarray(fed, dtype=np.int64))
            out = piece.score.copy()
            for w in write:
                if w in decoded:
                    out.tracks.append(tokenizer.voice_track(w, decoded[w], tpq, 80))
            rows = [r for r in ctx.to_rows(out, list(range(base, len(out.tracks)))) if r[5]]
            if len(rows) > state["sent"]:
                if state["first_note"] is None:
                    state["first_note"] = now - t0
                state["sent"] = len(rows)
                ctx.emit({"type": "notes", "tokens": len(fed), "seconds": round(now - t0, 4),
                          "cpu_seconds": round(time.thread_time() - c0, 4), "notes": rows})

        out = harmonize(Watched(ctx.loaded.model, ctx.cancel, on_step), tokenizer, piece.score, voices=voices,
                        given=given, n=1, seed=ctx.seed, sampler=ctx.sampler, batch_size=1, source="this model",
                        controls=controls, forbid_parallels=ctx.params["forbid_parallels"],
                        pitch_temperature=pitch_temperature)[0]
        tracks = list(range(base, len(out.tracks)))
        rows = [r for r in ctx.to_rows(out, tracks) if r[5]]
        ctx.emit({"type": "notes", "tokens": len(fed), "seconds": round(time.perf_counter() - t0, 4),
                  "cpu_seconds": round(time.thread_time() - c0, 4), "notes": rows})
        stats = {"tokens": len(fed), "voices": list(write), "notes": len(rows), "seconds": round(time.perf_counter() - t0, 4),
                 "first_note_seconds": None if state["first_note"] is None else round(state["first_note"], 4)}
        return ActionResult(out, tracks, f"{piece.label} harmonised ({', '.join(write)})", stats)
