"""The ``tracks`` tokenizer's attribute controls at generation: what a user asks for, as levels per
segment and written voice, and the levels a score's voices have.

A request (``--controls``, ``controls=`` of :func:`musicfw.harmonize`, a YAML ``controls:``) is
:func:`musicfw.music.controls.parse_controls`'s: ``"density=high"`` (every written voice),
``"bass:pitch=low,alto:density=1"`` (per voice: ``voice:attribute=level``; a voice's own setting
wins over one for every voice), a mapping of the same keys, or several of them segment by segment
(``"density=0 | density=3"``, a list; repeated when the piece is longer).  Attributes a request
leaves out are the model's choice.

numpy only: cheap to import.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def control_plan(tokenizer: Any, controls: Any, voices: Sequence[str], where: str = "--controls") -> np.ndarray:
    """Levels ``[segments, len(voices), len(tokenizer.controls)]`` (-1: the model's choice) for
    the written ``voices``.  ConfigError, naming what is allowed, for a tokenizer without
    controls, an attribute it has no tokens for, a level out of range, a voice the model does
    not know or one that is not written."""
    from musicfw.core.errors import ConfigError
    from musicfw.music.controls import parse_controls, resolve_attribute, resolve_level

    voices = list(voices)
    try:
        parsed = parse_controls(controls)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        if not tokenizer.controls:
            raise ValueError(
                f"{where}: this model's tokenizer has no control tokens (tokenizer.controls is empty), so it "
                "cannot be given controls; train with e.g. tokenizer.controls: [density, pitch_range, duration]"
            )
        segments = parsed if isinstance(parsed, list) else [parsed]
        C, levels = len(tokenizer.controls), int(tokenizer.config.control_levels)
        plan = np.full((len(segments), len(voices), C), -1, dtype=np.int64)
        for s, request in enumerate(segments):
            own = []
            for key, value in request.items():
                voice, _, attr = str(key).rpartition(":")
                voice = voice.strip().lower()
                if voice:
                    _check_voice(tokenizer, voice, voices, where)
                a = resolve_attribute(attr, tokenizer.controls, where)
                level = resolve_level(value, levels, f"{where}: {key.strip()}")
                if voice:
                    own.append((voices.index(voice), tokenizer.controls.index(a), level))
                else:
                    plan[s, :, tokenizer.controls.index(a)] = level
            for v, k, level in own:  # a voice's own setting wins over one for every voice
                plan[s, v, k] = level
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return plan


def _check_voice(tokenizer: Any, voice: str, voices: list[str], where: str) -> None:
    if voice not in tokenizer.voices:
        raise ValueError(
            f"{where}: unknown voice {voice!r}; the model knows {', '.join(tokenizer.voices)} (its tokenizer.voices)"
        )
    if voice not in voices:
        raise ValueError(
            f"{where}: {voice} is not written here (it is given, or not asked for); controls apply to the written "
            f"voices: {', '.join(voices)}"
        )


def score_levels(tokenizer: Any, score: Any, tracks: dict[str, Sequence[int]] | None = None) -> dict[str, np.ndarray]:
    """The control levels ``[segments, len(tokenizer.controls)]`` of each voice ``score`` holds
    (``tracks``: which tracks make each voice, default by name), measured as encode measures
    them, over the score's own segments: what a harmonised voice did, or what a real one asks."""
    parts = tokenizer.parts(score, tracks=tracks)
    if not parts:
        return {}
    seg_start, seg_len = tokenizer.segments(score, parts)
    return {v: tokenizer.segment_levels(p, seg_start, seg_len) for v, p in parts.items()}
