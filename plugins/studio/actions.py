"""What the studio can do with a model: the action registry.

Each action declares what it needs and which models support it, so the page offers the chosen
model's actions only and a new action plugs in without touching the page:

* ``name``, ``label``, ``help``: what the API calls it and what the page says;
* ``inputs``: the pieces it takes (``"piece"``: the current one; more names, e.g. ``"piece_b"``,
  are other pieces of the session that the page lets the musician choose);
* ``params``: its settings (:class:`Param`: type, default, bounds), drawn by the page as inputs
  and checked by the server;
* ``uses_sampler``: whether the page's sampler settings apply;
* ``streams``: whether it sends notes while it generates (an LM continuation does; a MusicVAE
  decodes its few bars at once);
* ``bar_range``: the name of a ``str`` parameter holding a bar range ("2-3"), which the page also
  fills when the musician drags across the piano roll (``infill``'s ``bars``);
* ``supports(loaded) -> bool``: whether this model can do it;
* ``run(ctx) -> ActionResult``.

Built in: ``continue`` and ``chords`` (language models; ``chords`` needs a tokenizer with chord
tokens, REMI with ``use_chords``), ``sample``, ``interpolate`` and ``blend`` (MusicVAE).  More come
from the entry point group ``musicfw.studio_actions`` (each entry point an :class:`Action`
subclass), as a third party's would: musicfw's own pyproject.toml registers ``infill`` (a model
trained with ``train.infill``: :mod:`.fill`) and ``harmonize`` (the harmonize plugin:
:mod:`musicfw.plugins.harmonize.studio`) this way.
What a model supports is the one loader's answer (:func:`musicfw.engine.loading.capabilities`,
``loaded.supports``).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from musicfw.core.errors import ConfigError, DataError

ENTRY_POINT_GROUP = "musicfw.studio_actions"
#: at most this often (seconds) a streaming action decodes its tokens so far into notes, once it
#: has sent its first note (before that: after every token, so the first note leaves at once)
EMIT_EVERY = 0.05


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "int" | "float" | "str" | "bool"
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    max_length: int = 200  # "str"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "default": self.default, "help": self.help,
                "min": self.min, "max": self.max}

    def check(self, value: Any, action: str) -> Any:
        where = f"params.{self.name} of {action!r}"
        if value is None:
            return self.default
        if self.type == "str":
            if not isinstance(value, str) or len(value) > self.max_length:
                raise ConfigError(f"{where} must be a string of at most {self.max_length} characters.")
            return value
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}.")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.type == "int" and int(value) != value):
            raise ConfigError(f"{where} must be {'an integer' if self.type == 'int' else 'a number'}, got {value!r}.")
        value = int(value) if self.type == "int" else float(value)
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max) or value != value:
            raise ConfigError(f"{where} must be from {self.min:g} to {self.max:g}, got {value!r}.")
        return value


@dataclass
class ActionResult:
    score: Any
    generated: list[int]
    label: str
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class ActionContext:
    """What an action runs with.  ``emit(event)`` sends a streaming event (a dict with ``type``);
    ``cancel.is_set()`` says the client cancelled or went away: stop at once."""

    loaded: Any
    sampler: Any
    params: dict[str, Any]
    pieces: dict[str, Any]  # input name -> Piece
    seed: int
    cancel: Any
    emit: Callable[[dict[str, Any]], None]
    to_rows: Callable[[Any, list[int]], list[list[float]]]  # (score, generated tracks) -> note rows


class Action(abc.ABC):
    """One thing the studio can do with a model; a subclass declares its inputs and parameters
    and implements ``supports`` and ``run`` (an abstract method: a subclass without them cannot
    be made)."""

    name: ClassVar[str]
    label: ClassVar[str]
    help: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ("piece",)
    params: ClassVar[tuple[Param, ...]] = ()
    uses_sampler: ClassVar[bool] = False
    streams: ClassVar[bool] = False
    #: a ``str`` parameter that takes a bar range ("2-3"): the page fills it by a drag across the piano roll
    bar_range: ClassVar[str | None] = None

    @classmethod
    @abc.abstractmethod
    def supports(cls, loaded: Any) -> bool:
        """Whether this action can run with ``loaded`` (the page offers only those that can)."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {"name": cls.name, "label": cls.label, "help": cls.help, "inputs": list(cls.inputs),
                "params": [p.describe() for p in cls.params], "uses_sampler": cls.uses_sampler, "streams": cls.streams,
                "bar_range": cls.bar_range}

    @classmethod
    def check_params(cls, given: Any) -> dict[str, Any]:
        if given is None:
            given = {}
        if not isinstance(given, dict):
            raise ConfigError("params must be a JSON object.")
        known = {p.name: p for p in cls.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ConfigError(f"{cls.name!r} has no parameter {unknown[0]!r}; it takes: {', '.join(known) or 'none'}.")
        return {name: p.check(given.get(name), cls.name) for name, p in known.items()}

    @abc.abstractmethod
    def run(self, ctx: ActionContext) -> ActionResult:
        """Do the action on ``ctx``'s pieces and return the result."""


# --------------------------------------------------------------------------------------
# language models: continue, follow chords
# --------------------------------------------------------------------------------------


def is_vae(model: Any) -> bool:
    from musicfw.engine.loading import is_latent

    return is_latent(model)


class Watched:
    """``model`` seen step by step: every ``step(x, state)`` (and ``prefill(xs, state)``, column
    by column) first checks ``cancel`` (raising
    :class:`~musicfw.engine.generation.GenerationCancelled`) and hands ``x`` (the tokens fed
    back: the prompt's, then the drawn ones) to ``on_step``.  Lets an action stream and cancel
    a decoding loop that takes a model (bar infilling, harmonisation) without that loop knowing
    the studio; every other attribute is the model's own."""

    def __init__(self, model: Any, cancel: Any, on_step: Callable[[Any], None] | None = None):
        self._model, self._cancel, self._on_step = model, cancel, on_step

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def step(self, x: Any, state: Any) -> Any:
        if self._cancel is not None and self._cancel.is_set():
            from musicfw.engine.generation import GenerationCancelled

            raise GenerationCancelled("cancelled")
        if x is not None and self._on_step is not None:
            self._on_step(x)
        return self._model.step(x, state)

    def prefill(self, xs: Any, state: Any) -> Any:
        """The model's one-pass read of ``xs`` (``[B, T]``), each column handed to ``on_step``."""
        if self._cancel is not None and self._cancel.is_set():
            from musicfw.engine.generation import GenerationCancelled

            raise GenerationCancelled("cancelled")
        if self._on_step is not None:
            for t in range(xs.shape[1]):
                self._on_step(xs[:, t])
        return self._model.prefill(xs, state)


def crop_to_bars(score: Any, bars: int) -> tuple[Any, int]:
    """The last ``bars`` bars of ``score`` (from a bar line), shifted to start at 0, and the tick
    the crop starts at."""
    downbeats = np.asarray(score.get_downbeats(), dtype=np.int64)
    end = int(score.end())
    downbeats = downbeats[downbeats < max(end, 1)]
    start = int(downbeats[max(len(downbeats) - bars, 0)]) if len(downbeats) else 0
    if start <= 0:
        return score, 0
    return score.clip(start, end + 1, clip_end=False).shift_time(-start), start


def _note_keys(score: Any) -> list[tuple]:
    keys = []
    for t in score.tracks:
        if len(t.notes):
            a = t.notes.numpy()
            keys.extend(zip([int(t.program)] * len(a["time"]), [bool(t.is_drum)] * len(a["time"]),
                            a["time"].tolist(), a["duration"].tolist(), a["pitch"].tolist(), a["velocity"].tolist()))
    return keys


def new_notes(full: Any, prefix: Any) -> list[tuple]:
    """The notes of ``full`` not in ``prefix`` (counted as multisets): what a continuation added."""
    from collections import Counter

    left = Counter(_note_keys(prefix))
    out = []
    for k in _note_keys(full):
        if left[k]:
            left[k] -= 1
        else:
            out.append(k)
    return out


def place(piece_score: Any, notes: list[tuple], from_tpq: int, offset: int, label: str) -> tuple[Any, list[int]]:
    """``piece_score`` with ``notes`` (in ``from_tpq`` ticks, from ``offset`` ticks of the piece)
    added as new tracks, one per (program, drum): the result and the new tracks' indices."""
    import symusic

    score = piece_score.copy()
    tpq = int(score.ticks_per_quarter)
    groups: dict[tuple[int, bool], list[tuple]] = {}
    for k in notes:
        groups.setdefault((k[0], k[1]), []).append(k)
    new = []
    for (program, drum), ns in sorted(groups.items()):
        track = symusic.Track(program=int(program), is_drum=bool(drum), name=label)
        for _, _, time_, dur, pitch, vel in ns:
            track.notes.append(symusic.Note(offset + int(round(time_ * tpq / from_tpq)),
                                            max(1, int(round(dur * tpq / from_tpq))), int(pitch), int(vel)))
        new.append(len(score.tracks))
        score.tracks.append(track)
    return score, new


class Continue(Action):
    name = "continue"
    label = "Continue"
    help = "continue the piece from its last bars (the model reads the last context_bars bars)"
    params = (
        Param("bars", "int", 4, "new bars", 1, 64),
        Param("context_bars", "int", 8, "bars of the piece the model reads first (fewer: faster start)", 1, 256),
        Param("max_tokens", "int", 1024, "new tokens at most", 8, 8192),
    )
    uses_sampler = True
    streams = True

    @classmethod
    def supports(cls, loaded: Any) -> bool:
        return loaded.tokenizer.kind == "categorical" and not is_vae(loaded.model)

    def chords(self, ctx: ActionContext) -> Any:
        return None

    def run(self, ctx: ActionContext) -> ActionResult:
        from musicfw.engine.generation import clock_for, generate

        tokenizer, model = ctx.loaded.tokenizer, ctx.loaded.model
        piece = ctx.pieces["piece"]
        prompt, offset = crop_to_bars(piece.score, int(ctx.params["context_bars"]))
        prompt_tokens = np.asarray(tokenizer.encode(prompt))
        if len(prompt_tokens) == 0:
            raise DataError(f"the piece gives no {tokenizer.name} tokens (no notes this model can read?); nothing to continue.")
        prefix = tokenizer.decode(prompt_tokens)
        tpq = int(prefix.ticks_per_quarter)
        new: list[int] = []
        state = {"last": 0.0, "sent": 0, "first_note": None, "first_note_cpu": None}
        t0, c0 = time.perf_counter(), time.thread_time()
        label = f"generated ({self.name})"

        def on_tokens(tokens: np.ndarray, kept: np.ndarray) -> None:
            new.append(int(tokens[0]))
            now = time.perf_counter()
            if state["sent"] and now - state["last"] < EMIT_EVERY:
                return
            state["last"] = now
            notes = new_notes(tokenizer.decode(np.concatenate([prompt_tokens, np.asarray(new, dtype=prompt_tokens.dtype)])), prefix)
            if len(notes) > state["sent"]:
                if state["first_note"] is None:
                    state["first_note"], state["first_note_cpu"] = now - t0, time.thread_time() - c0
                state["sent"] = len(notes)
                score, tracks = place(piece.score, notes, tpq, offset, label)
                ctx.emit({"type": "notes", "tokens": len(new), "seconds": round(now - t0, 4),
                          "cpu_seconds": round(time.thread_time() - c0, 4),
                          "notes": [r for r in ctx.to_rows(score, tracks) if r[5]]})

        # bars where the tokenizer counts them; else two seconds a bar
        bars = int(ctx.params["bars"])
        limit = {"max_bars": bars} if clock_for(tokenizer, 1).has_bars else {"max_seconds": 2.0 * bars}
        result = generate(
            model, tokenizer, ctx.sampler, n=1, batch_size=1, max_tokens=int(ctx.params["max_tokens"]),
            prompt=prompt, **limit, seed=ctx.seed, chords=self.chords(ctx),
            cancel=ctx.cancel, on_tokens=on_tokens, prefill=True,
        )
        tokens = result.tokens[0]
        notes = new_notes(tokenizer.decode(tokens), prefix)
        score, tracks = place(piece.score, notes, tpq, offset, label)
        if len(notes) != state["sent"]:  # the stream ends with every note the result holds
            ctx.emit({"type": "notes", "tokens": len(new), "seconds": round(time.perf_counter() - t0, 4),
                      "cpu_seconds": round(time.thread_time() - c0, 4), "notes": [r for r in ctx.to_rows(score, tracks) if r[5]]})
        stats = {"tokens": int(result.stats["tokens_generated"]), "prompt_tokens": int(len(prompt_tokens)),
                 "seconds": round(time.perf_counter() - t0, 4), "notes": len(notes),
                 "first_note_seconds": None if state["first_note"] is None else round(state["first_note"], 4),
                 "first_note_cpu_seconds": None if state["first_note_cpu"] is None else round(state["first_note_cpu"], 4),
                 "stop_reason": result.stop_reasons[0]}
        return ActionResult(score, tracks, f"{piece.label} + {self.name}", stats)


class FollowChords(Continue):
    name = "chords"
    label = "Follow chords"
    help = "continue the piece over a chord progression, one chord per bar (e.g. C G Am F; 'C G | Am' = two chords in bar 1)"
    params = (Param("chords", "str", "C G Am F", "chords, one per bar"),) + Continue.params

    @classmethod
    def supports(cls, loaded: Any) -> bool:
        return Continue.supports(loaded) and bool(loaded.supports.get("chords"))

    def chords(self, ctx: ActionContext) -> Any:
        text = ctx.params["chords"].strip()
        if not text:
            raise ConfigError("params.chords: give at least one chord (e.g. C G Am F).")
        return text


# --------------------------------------------------------------------------------------
# MusicVAE: sample, interpolate, blend
# --------------------------------------------------------------------------------------


def _vae_generator(seed: int) -> Any:
    import torch

    return torch.Generator().manual_seed(int(seed))


def _vae_tokens(loaded: Any, piece: Any) -> np.ndarray:
    length = int(loaded.model.config.max_seq_len)
    tokens = np.asarray(loaded.tokenizer.encode(piece.score))
    if tokens.ndim != 1 or len(tokens) == 0:
        raise DataError(f"{piece.label!r} gives no {loaded.tokenizer.name} tokens (no notes this model can read?).")
    return tokens[:length]


def _new_piece(loaded: Any, tokens: np.ndarray) -> tuple[Any, list[int]]:
    score = loaded.tokenizer.decode(np.asarray(tokens))
    return score, list(range(len(score.tracks)))


class VaeSample(Action):
    name = "sample"
    label = "Sample (MusicVAE)"
    help = "a new piece decoded from a random point of the latent space"
    inputs = ()
    params = (Param("temperature", "float", 0.5, "softmax temperature (0 = argmax)", 0.0, 3.0),)

    @classmethod
    def supports(cls, loaded: Any) -> bool:
        return is_vae(loaded.model)

    def run(self, ctx: ActionContext) -> ActionResult:
        model = ctx.loaded.model
        t0 = time.perf_counter()
        tokens = model.sample(1, temperature=ctx.params["temperature"], generator=_vae_generator(ctx.seed))[0].cpu().numpy()
        score, tracks = _new_piece(ctx.loaded, tokens)
        return ActionResult(score, tracks, "sample", {"tokens": int(len(tokens)), "seconds": round(time.perf_counter() - t0, 4)})


class VaeInterpolate(Action):
    name = "interpolate"
    label = "Interpolate (MusicVAE)"
    help = "the path through the latent space from this piece to another, every step in a row"
    inputs = ("piece", "piece_b")
    params = (Param("steps", "int", 5, "steps, both ends included", 2, 16),
              Param("temperature", "float", 0.0, "softmax temperature (0 = argmax)", 0.0, 3.0))

    @classmethod
    def supports(cls, loaded: Any) -> bool:
        return is_vae(loaded.model)

    def run(self, ctx: ActionContext) -> ActionResult:
        t0 = time.perf_counter()
        a, b = _vae_tokens(ctx.loaded, ctx.pieces["piece"]), _vae_tokens(ctx.loaded, ctx.pieces["piece_b"])
        path = ctx.loaded.model.interpolate(a, b, steps=int(ctx.params["steps"]), temperature=ctx.params["temperature"],
                                            length=max(len(a), len(b)), generator=_vae_generator(ctx.seed)).cpu().numpy()
        score, tracks = _new_piece(ctx.loaded, np.concatenate(list(path)))
        return ActionResult(score, tracks, f"{ctx.pieces['piece'].label} to {ctx.pieces['piece_b'].label}",
                            {"tokens": int(path.size), "seconds": round(time.perf_counter() - t0, 4)})


class Blend(Action):
    name = "blend"
    label = "Blend four (MusicVAE)"
    help = "the point (x, y) of the square whose corners are four pieces (this one top left): beat blending"
    inputs = ("piece", "piece_b", "piece_c", "piece_d")
    params = (Param("x", "float", 0.5, "0 = left (this piece, piece_c), 1 = right (piece_b, piece_d)", 0.0, 1.0),
              Param("y", "float", 0.5, "0 = top (this piece, piece_b), 1 = bottom (piece_c, piece_d)", 0.0, 1.0),
              Param("temperature", "float", 0.0, "softmax temperature (0 = argmax)", 0.0, 3.0))

    @classmethod
    def supports(cls, loaded: Any) -> bool:
        return is_vae(loaded.model)

    def run(self, ctx: ActionContext) -> ActionResult:
        import torch

        from musicfw.plugins.models.musicvae.model import slerp

        t0 = time.perf_counter()
        model = ctx.loaded.model
        seqs = [_vae_tokens(ctx.loaded, ctx.pieces[k]) for k in self.inputs]
        length = max(len(s) for s in seqs)
        with torch.no_grad():
            a, b, c, d = (model.encode(model._as_tokens(s))[0][0] for s in seqs)
            x, y = float(ctx.params["x"]), float(ctx.params["y"])
            z = slerp(slerp(a, b, x), slerp(c, d, x), y)
            tokens = model.decode(z.unsqueeze(0), length, temperature=ctx.params["temperature"],
                                  generator=_vae_generator(ctx.seed))[0].cpu().numpy()
        score, tracks = _new_piece(ctx.loaded, tokens)
        return ActionResult(score, tracks, f"blend ({x:g}, {y:g})", {"tokens": int(len(tokens)), "seconds": round(time.perf_counter() - t0, 4)})


BUILTIN: tuple[type[Action], ...] = (Continue, FollowChords, VaeSample, VaeInterpolate, Blend)


def load_actions(extra: Any = ()) -> dict[str, type[Action]]:
    """The built-in actions, those of the entry point group, and ``extra``; a name twice is a
    PluginError naming both."""
    from importlib.metadata import entry_points

    from musicfw.core.errors import PluginError

    found: dict[str, type[Action]] = {}
    where: dict[str, str] = {}

    def add(cls: Any, origin: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Action)) or not isinstance(getattr(cls, "name", None), str):
            raise PluginError(f"{origin}: a studio action must subclass musicfw.plugins.studio.actions.Action and have a name.")
        if cls.name in found:
            raise PluginError(f"two studio actions are named {cls.name!r}: {where[cls.name]} and {origin}.")
        found[cls.name], where[cls.name] = cls, origin

    for cls in BUILTIN:
        add(cls, "musicfw (built in)")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        add(ep.load(), f"entry point {ep.name} ({ep.value})")
    for cls in extra:
        add(cls, f"{cls.__module__}.{cls.__qualname__}")
    return found
