"""The one generation loop, for every model: ``init_state`` then ``step`` per token, batched.

>>> chain = build_sampler_chain([{"name": "temperature", "temperature": 0.9}, {"name": "top_p", "p": 0.9}])
>>> result = generate(model, tokenizer, chain, n=8, max_tokens=512, seed=0)   # doctest: +SKIP
>>> paths = write_samples(result, "runs/demo/samples")                          # doctest: +SKIP

Each step costs the same whatever the position (the model keeps its recurrent state; nothing
is recomputed over the prefix).  Sequences stop at ``max_tokens`` new tokens, at an end token
(a tokenizer's ``end_id`` attribute, or ``end_token=``), or after ``max_bars`` bars /
``max_seconds`` seconds of new music.  With a ``prompt`` (a MIDI path or a Score) the prompt is
encoded, fed through the model, and continued; the returned tokens and scores hold the prompt
followed by its continuation, and the limits count the continuation only.

With ``constraints=True`` (the default) the tokenizer's grammar (``Tokenizer.grammar``, see
:mod:`musicfw.core.constraints`) masks the ids that cannot follow, so that every sequence
decodes with no dropped token; ``stats["invalid_rate"]`` measures it either way (for
tokenizers that can count invalid tokens).  Bars and seconds are counted by the tokenizer's
clock (``Tokenizer.clock``, :mod:`musicfw.core.clock`).

With ``chords`` (a progression such as ``"C G Am F"``, one chord per bar) the tokenizer's chord
grammar (``Tokenizer.chord_grammar``) replaces its grammar: it also forces the given Chord
tokens at the start of each bar of the continuation, the model generating the rest.

For live use (``musicfw studio``): ``on_tokens(tokens, kept)`` is given each step's tokens
(a ``[B]`` or ``[B, K]`` array) and which sequences kept them (a ``[B]`` bool array: a
finished sequence keeps none) while any sequence is still going, and ``cancel`` (anything
with ``is_set()``, e.g. a ``threading.Event``) is checked before every step, the prompt's
included: once it is set the loop stops and raises :class:`GenerationCancelled`, freeing its
buffers at once.
With ``controls`` (``"density=4,pitch_range=high"``, a mapping, or one per bar) the grammar is
extended by ``Tokenizer.controls_grammar``: after every Bar of the continuation the requested
attribute-control tokens are forced (REMI with ``controls``); attributes not given are sampled.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from musicfw.core.errors import ConfigError, DataError


class GenerationCancelled(Exception):
    """A generation stopped because its ``cancel`` flag was set (not an error of anyone's)."""


# --------------------------------------------------------------------------------------
# samplers from config
# --------------------------------------------------------------------------------------


def build_sampler_chain(section: Any, registries: Any = None) -> Any:
    """A sampler from ``config.sampler``: one section ``{name, params}`` (or a bare name),
    or a list of sections applied in order (a :class:`~musicfw.core.sampler.SamplerChain`).

    Sections are validated against each sampler's Config (once: a section of a config that
    ``load_config`` validated is used as it is); mistakes are ConfigError / PluginError
    naming ``sampler`` or ``sampler[i]``.
    """
    from omegaconf import ListConfig

    from musicfw.core.build import build_from_section
    from musicfw.core.plugins import load_registries
    from musicfw.core.sampler import SamplerChain

    registries = registries if registries is not None else load_registries()
    if section is None:
        from musicfw.engine.config import DEFAULT_SAMPLER

        section = dict(DEFAULT_SAMPLER)
    if isinstance(section, (list, tuple, ListConfig)):
        items = list(section)
        if not items:
            raise ConfigError("sampler: an empty list; give at least one sampler (e.g. {name: top_p}).")
        samplers = [
            build_from_section("samplers", item, registries=registries, key=f"sampler[{i}]")
            for i, item in enumerate(items)
        ]
        return samplers[0] if len(samplers) == 1 else SamplerChain(samplers)
    return build_from_section("samplers", section, registries=registries, key="sampler")


def clock_for(tokenizer: Any, batch_size: int) -> Any:
    """The tokenizer's own clock, or the decoding clock for a tokenizer that has none."""
    from musicfw.core.clock import DecodeClock

    clock = tokenizer.clock(batch_size)
    return clock if clock is not None else DecodeClock(batch_size, tokenizer)


# --------------------------------------------------------------------------------------
# how much one call may ask for
# --------------------------------------------------------------------------------------

#: samples per call at most (each is decoded and handed to ``sink`` as its batch finishes)
MAX_SAMPLES = 1_000_000
#: sequences decoded together at most
MAX_BATCH = 65_536
#: a line about the tokens of a long batch at most this often (seconds)
STEP_PROGRESS_SECONDS = 5.0


def _available_bytes() -> int:
    """The memory free now (Linux: physical pages available), else 4 GiB."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not Linux
        return 4 * 2**30


def check_generation_size(
    n: int, batch_size: int, max_tokens: int, *, kind: str, vocab_size: int, needs_history: bool = False,
    prompt_tokens: int = 0, available: int | None = None,
) -> None:
    """Refuse, before anything is allocated, a generation beyond the ceilings: ``max_tokens``
    above ``limits.max_tokens`` (a generated piece is bounded like an encoded one), ``n``
    above :data:`MAX_SAMPLES`, ``batch_size`` above :data:`MAX_BATCH`, or a batch whose
    token buffers need more than half the memory available now."""
    from musicfw.music.limits import ENV, current

    limits = current()
    for key, value in (("n", n), ("batch_size", batch_size), ("max_tokens", max_tokens)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"generate.{key} must be a whole number >= 1, got {value!r}.")
    if max_tokens > limits.max_tokens:
        raise ConfigError(
            f"generate.max_tokens={max_tokens:,} is above limits.max_tokens={limits.max_tokens:,} (a "
            f"generated piece is bounded like an encoded one); lower it, or raise limits.max_tokens "
            f"({ENV}=max_tokens=N) up to its ceiling."
        )
    if n > MAX_SAMPLES:
        raise ConfigError(f"generate.n={n:,} is above {MAX_SAMPLES:,} samples per call; call generate again.")
    if batch_size > MAX_BATCH:
        raise ConfigError(f"generate.batch_size={batch_size:,} is above {MAX_BATCH:,}.")
    B = min(batch_size, n)
    width = int(vocab_size) if kind == "multihot" else 1
    per = max_tokens * width * (1 if kind == "multihot" else 8)
    if needs_history:
        per += (prompt_tokens + max_tokens) * width * 8
    budget = (available if available is not None else _available_bytes()) // 2
    if B * per > budget:
        fits = max(budget // max(per, 1), 0)
        raise ConfigError(
            f"generate: a batch of {B:,} samples of {max_tokens:,} tokens needs {B * per / 2**20:,.0f} MiB "
            f"of token buffers, more than half the memory available now ({budget / 2**20:,.0f} MiB); "
            + (f"use a batch_size of at most {fits:,}" if fits >= 1 else "lower max_tokens")
            + " (--batch-size / --max-tokens, or generate.batch_size / generate.max_tokens)."
        )


# --------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------


@dataclass
class GenerationResult:
    """What :func:`generate` made: token arrays (prompt included), decoded Scores, numbers."""

    tokens: list[np.ndarray]
    scores: list[Any]
    stats: dict[str, Any] = field(default_factory=dict)
    #: why each sequence stopped: "max_tokens", "end_token", "max_bars", "max_seconds"
    stop_reasons: list[str] = field(default_factory=list)
    prompt_length: int = 0

    def __len__(self) -> int:
        return len(self.tokens)


def _load_prompt(prompt: Any, tokenizer: Any) -> np.ndarray:
    from musicfw.music.limits import PieceRejected, check_prompt_tokens

    if isinstance(prompt, (str, Path)):
        from musicfw.music.midiload import load_score

        path = Path(prompt)
        if not path.is_file():
            raise DataError(f"Prompt file not found: {path}")
        score, reason = load_score(path, min_notes=0, check_limits=False)
        if reason is not None:
            raise DataError(f"Cannot use the prompt {path}: {reason}")
        where = str(path)
    else:
        score, where = prompt, "the prompt score"
    try:
        tokens = np.asarray(tokenizer.encode(score))
        check_prompt_tokens(len(tokens))
    except PieceRejected as exc:
        raise DataError(f"Cannot use {where} as a prompt: {exc}") from None
    if len(tokens) == 0:
        raise DataError(
            f"{where} encodes to no tokens with the {tokenizer.name!r} tokenizer "
            "(no notes in its pitch range?); nothing to continue."
        )
    return tokens


def chords_setting(value: Any) -> Any:
    """``generate.chords`` as plain Python: None, a string, or a list of bar strings."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (ListConfig, DictConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise ConfigError(f"generate.chords: expected a string like \"C G Am F\" or a list of bars, got {value!r}.")


def check_chords(tokenizer: Any, chords: Any, constraints: bool) -> None:
    """A chord progression can be placed: ConfigError otherwise (before anything runs)."""
    if not constraints:
        raise ConfigError(
            "generate.chords places the chords by constrained decoding; it cannot be combined "
            "with generate.constraints: false (--constraints off)."
        )
    if tokenizer.kind != "categorical" or tokenizer.chord_grammar(chords, 1) is None:
        raise ConfigError(
            f"generate.chords / --chords: the {tokenizer.name!r} tokenizer has no chord tokens, so its "
            "models cannot be given a chord progression; use tokenizer remi with use_chords: true."
        )


def controls_setting(value: Any, where: str = "generate.controls") -> Any:
    """``generate.controls`` / ``--controls`` as plain Python (None, one ``{attribute: level}``
    mapping, or a list of them bar by bar); ConfigError for text that is not
    ``attribute=level,...``."""
    if value is None:
        return None
    from omegaconf import DictConfig, ListConfig, OmegaConf

    from musicfw.music.controls import parse_controls

    if isinstance(value, (ListConfig, DictConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    try:
        return parse_controls(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_controls(tokenizer: Any, controls: Any, constraints: bool) -> None:
    """Controls can be forced: ConfigError otherwise (before anything runs), naming the
    attributes and levels the tokenizer allows."""
    if not constraints:
        raise ConfigError(
            "generate.controls forces the control tokens by constrained decoding; it cannot be combined "
            "with generate.constraints: false (--constraints off)."
        )
    grammar = tokenizer.grammar(1) if tokenizer.kind == "categorical" else None
    if grammar is None or tokenizer.controls_grammar(controls, grammar) is None:
        raise ConfigError(
            f"generate.controls / --controls: the {tokenizer.name!r} tokenizer has no control tokens that "
            "generation can force, so its models cannot be given controls here; use tokenizer remi with "
            "controls: [density, pitch_range, ...] (a tracks model trained with controls takes them in "
            "musicfw harmonize --controls)."
        )


def _model_device(model: Any) -> Any:
    import torch

    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@contextmanager
def sampling_mode(model: Any, device: Any = None, seed: int = 0, cpu_threads: int | None = None) -> Iterator[tuple]:
    """What every decoding loop runs under: ``model`` moved to ``device`` (None: where it is)
    and in eval mode, gradients off, a torch generator seeded with ``seed`` on its device, and
    on a CPU ``cpu_threads`` torch threads (None: as they are).  Yields ``(device, generator)``;
    on the way out the thread count and the model's train/eval mode are restored."""
    import torch

    if device is not None:
        model.to(device)
    device = _model_device(model)
    was_training = bool(model.training)
    model.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    threads_before = torch.get_num_threads()
    if cpu_threads is not None and torch.device(device).type == "cpu":
        torch.set_num_threads(max(int(cpu_threads), 1))
    try:
        with torch.no_grad():
            yield device, generator
    finally:
        torch.set_num_threads(threads_before)
        model.train(was_training)


def _as_input(x: Any, kind: str) -> Any:
    return x.float() if kind == "multihot" else x.long()


def generate(
    model: Any,
    tokenizer: Any,
    sampler: Any,
    *,
    n: int = 8,
    batch_size: int = 8,
    max_tokens: int = 512,
    max_bars: int | None = None,
    max_seconds: float | None = None,
    prompt: Any = None,
    constraints: bool = True,
    seed: int = 0,
    device: Any = None,
    end_token: int | None = None,
    progress: Any = None,
    cpu_threads: int | None = 1,
    chords: Any = None,
    sink: Any = None,
    step_progress: Any = None,
    cancel: Any = None,
    on_tokens: Any = None,
    prefill: bool = False,
    controls: Any = None,
) -> GenerationResult:
    """Sample ``n`` sequences from ``model`` in batches of ``batch_size``.

    ``sampler``: a Sampler (or SamplerChain, see :func:`build_sampler_chain`).
    ``max_tokens`` new tokens at most per sequence; ``max_bars`` / ``max_seconds`` stop a
    sequence once it holds that much new music (a REMI sequence stops before the Bar token
    that would open one bar too many).  ``end_token`` (default: the tokenizer's ``end_id``,
    if it has one) ends a sequence and is not kept.  ``prompt``: a MIDI path or a Score to
    continue.  ``constraints``: mask ids the tokenizer's grammar forbids (REMI, MIDI-like).
    ``seed`` makes the draw reproducible; ``device`` moves the model (default: where it is).
    ``progress``: optional callable ``progress(done, total)`` after each batch.
    ``cpu_threads``: torch's intra-op threads while decoding on the CPU (restored after).
    One step is a few small matrix products, so more threads mostly add synchronisation:
    on a busy 2-core machine 2 threads made a small LSTM's decoding 10-40x slower than 1.
    None leaves torch's setting alone.
    ``chords``: a chord progression (a string or a list of bars, in the tokenizer's chord
    names) placed into every sequence by constrained decoding, from the first bar of the
    continuation on (it repeats when the piece is longer); needs ``constraints`` and a
    tokenizer with ``chord_grammar`` (REMI with ``use_chords``).
    ``controls``: attribute controls forced after every bar of the continuation
    (``"density=4,pitch_range=high"``, ``{"density": 4}``, or a list of them bar by bar,
    repeated when the piece is longer; levels by number or low/mid/high); needs
    ``constraints`` and a tokenizer with ``controls_grammar`` (REMI with ``controls``).
    ``sink``: optional callable ``sink(score, tokens, reason)`` given each sample as its batch
    finishes; the result then keeps no tokens or scores (memory flat in ``n``), only the
    statistics.  ``step_progress``: optional callable ``step_progress(samples_done, n, step,
    max_tokens)`` at most every few seconds within a batch (a long generation says it is alive).
    ``n``, ``batch_size`` and ``max_tokens`` are checked by :func:`check_generation_size`
    before anything is allocated.  ``cancel`` / ``on_tokens``: see the module docstring.
    ``prefill``: read the prompt with one ``Model.prefill`` call (an LSTM reads it in one
    layer call, ~10x faster than a step per token) instead of a step per token; the same
    state up to float rounding, so off by default (a seeded draw stays what it was).
    """
    kind = tokenizer.kind
    check_generation_size(n, batch_size, max_tokens, kind=kind, vocab_size=int(tokenizer.vocab_size),
                          needs_history=bool(getattr(sampler, "needs_history", False)))
    if max_bars is not None and max_bars <= 0:
        raise ConfigError(f"generate.max_bars must be > 0, got {max_bars}.")
    if max_seconds is not None and max_seconds <= 0:
        raise ConfigError(f"generate.max_seconds must be > 0, got {max_seconds}.")
    kinds = sampler.token_kinds
    if kind not in kinds:
        raise ConfigError(
            f"The sampler {sampler!r} cannot draw {kind} tokens (tokenizer {tokenizer.name!r}); "
            + ("use bernoulli or greedy for piano-roll frames." if kind == "multihot" else "use greedy, temperature, top_k or top_p.")
        )
    model_kind = model.token_kind
    if model_kind != kind:
        raise ConfigError(f"The model predicts {model_kind} tokens but the tokenizer {tokenizer.name!r} makes {kind} ones.")
    if end_token is None:
        end_token = tokenizer.end_id
    if max_bars is not None and not clock_for(tokenizer, 1).has_bars:
        raise ConfigError(
            f"generate.max_bars: the {tokenizer.name!r} tokenizer has no bars (it counts time in "
            "seconds); use generate.max_seconds instead."
        )
    if chords is not None:
        check_chords(tokenizer, chords, constraints)
    if controls is not None:
        controls = controls_setting(controls)
        check_controls(tokenizer, controls, constraints)
    prompt_tokens = _load_prompt(prompt, tokenizer) if prompt is not None else None
    if prompt_tokens is not None and model.max_context is not None and len(prompt_tokens) > model.max_context:
        raise ConfigError(
            f"The prompt is {len(prompt_tokens)} {tokenizer.name} tokens, longer than the model's "
            f"max_context ({model.max_context}); use a shorter prompt or a model with a longer context."
        )
    if prompt_tokens is not None:
        check_generation_size(n, batch_size, max_tokens, kind=kind, vocab_size=int(tokenizer.vocab_size),
                              needs_history=bool(getattr(sampler, "needs_history", False)),
                              prompt_tokens=len(prompt_tokens))

    tokens: list[np.ndarray] = []
    scores: list[Any] = []
    reasons: list[str] = []
    lengths: list[int] = []
    n_new = notes = invalid = 0
    counted = True
    constrained = False
    t0 = time.perf_counter()
    decode_seconds = 0.0
    with sampling_mode(model, device, seed, cpu_threads) as (device, generator):
        done_n = 0
        while done_n < n:
            B = min(batch_size, n - done_n)
            tick = None
            if step_progress is not None:
                tick = _StepTicker(step_progress, done_n, n, max_tokens)
            seqs, why, used_grammar = _generate_batch(
                model, tokenizer, sampler, kind, B, max_tokens, max_bars, max_seconds,
                prompt_tokens, constraints, end_token, generator, device, chords, tick,
                cancel, on_tokens, prefill, controls,
            )
            constrained = constrained or used_grammar
            t_dec = time.perf_counter()
            for s, r in zip(seqs, why):
                n_new += len(s) - (0 if prompt_tokens is None else len(prompt_tokens))
                reasons.append(r)
                lengths.append(len(s))
                score = tokenizer.decode(s)
                notes += int(sum(len(t.notes) for t in score.tracks))
                bad = tokenizer.count_invalid(s)
                counted = counted and bad is not None
                invalid += int(bad or 0)
                if sink is not None:
                    sink(score, s, r)
                else:
                    tokens.append(s)
                    scores.append(score)
            decode_seconds += time.perf_counter() - t_dec
            done_n += B
            if progress is not None:
                progress(done_n, n)
    elapsed = time.perf_counter() - t0 - decode_seconds

    stats: dict[str, Any] = {
        "samples": len(lengths),
        "tokens_generated": int(n_new),
        "prompt_tokens": 0 if prompt_tokens is None else int(len(prompt_tokens)),
        "mean_length": float(np.mean(lengths)),
        "seconds": float(elapsed),
        "tokens_per_second": float(n_new / elapsed) if elapsed > 0 else float("inf"),
        "constrained": bool(constrained),
        "stop_reasons": {r: reasons.count(r) for r in sorted(set(reasons))},
        "notes": int(notes),
    }
    if counted:
        total = int(sum(lengths))
        stats["invalid_tokens"] = invalid
        stats["invalid_rate"] = invalid / total if total else 0.0
    return GenerationResult(
        tokens=tokens,
        scores=scores,
        stats=stats,
        stop_reasons=reasons,
        prompt_length=0 if prompt_tokens is None else int(len(prompt_tokens)),
    )


class _StepTicker:
    """Calls ``step_progress(samples_done, n, step, max_tokens)`` at most every
    :data:`STEP_PROGRESS_SECONDS` within a batch."""

    def __init__(self, callback: Any, done: int, n: int, max_tokens: int):
        self.callback, self.done, self.n, self.max_tokens = callback, done, n, max_tokens
        self.last = time.perf_counter()

    def __call__(self, step: int) -> None:
        now = time.perf_counter()
        if now - self.last >= STEP_PROGRESS_SECONDS:
            self.last = now
            self.callback(self.done, self.n, step, self.max_tokens)


def _generate_batch(
    model: Any,
    tokenizer: Any,
    sampler: Any,
    kind: str,
    B: int,
    max_tokens: int,
    max_bars: int | None,
    max_seconds: float | None,
    prompt_tokens: np.ndarray | None,
    constraints: bool,
    end_token: int | None,
    generator: Any,
    device: Any,
    chords: Any = None,
    tick: Any = None,
    cancel: Any = None,
    on_tokens: Any = None,
    prefill: bool = False,
    controls: Any = None,
) -> tuple[list[np.ndarray], list[str], bool]:
    import torch

    from musicfw.core.constraints import grammar_for

    if chords is not None:
        grammar = tokenizer.chord_grammar(chords, B)
    else:
        grammar = grammar_for(tokenizer, B) if constraints and kind == "categorical" else None
    if controls is not None and grammar is not None:
        grammar = tokenizer.controls_grammar(controls, grammar)
    clock = clock_for(tokenizer, B) if (max_bars is not None or max_seconds is not None) else None
    # ids that plain generation never writes, grammar or not (an infilling model's markers)
    banned = getattr(tokenizer, "marker_ids", None) if kind == "categorical" else None

    state = model.init_state(B, device=device)
    logits, state = model.step(None, state)
    if prompt_tokens is not None:
        for tok in prompt_tokens:
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("cancelled while reading the prompt")
            row = np.broadcast_to(tok, (B,) + np.shape(tok))
            if grammar is not None:
                grammar.update(row)
            if clock is not None:
                clock.update(row)
            if not prefill:
                x = _as_input(torch.tensor(np.array(row), device=device), kind)
                logits, state = model.step(x, state)
        if prefill and len(prompt_tokens):
            xs = np.broadcast_to(np.asarray(prompt_tokens), (B,) + np.shape(prompt_tokens))
            logits, state = model.prefill(_as_input(torch.tensor(np.array(xs), device=device), kind), state)
        if clock is not None:
            clock.mark()
    if grammar is not None:
        grammar.start()

    if kind == "multihot":
        out = np.zeros((B, max_tokens, int(tokenizer.vocab_size)), dtype=np.uint8)
    else:
        out = np.zeros((B, max_tokens), dtype=np.int64)
    # the tokens so far (prompt included), for samplers that ask for them
    history = None
    n_prompt = 0 if prompt_tokens is None else len(prompt_tokens)
    if sampler.needs_history:
        shape = (B, n_prompt + max_tokens) + ((int(tokenizer.vocab_size),) if kind == "multihot" else ())
        history = torch.zeros(shape, dtype=torch.long, device=device)
        if n_prompt:
            history[:, :n_prompt] = torch.as_tensor(np.asarray(prompt_tokens), dtype=torch.long, device=device)
    length = np.zeros(B, dtype=np.int64)
    done = np.zeros(B, dtype=bool)
    why = np.array(["max_tokens"] * B, dtype=object)
    neg_inf = float("-inf")
    for t in range(max_tokens):
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled(f"cancelled after {t} tokens")
        if grammar is not None:
            allowed = grammar.mask(max_tokens - t)
            empty = ~allowed.any(axis=1)
            if empty.any():  # no budget left to finish a structure: fall back to the bare grammar
                allowed[empty] = grammar.mask(None)[empty]
            logits = logits.masked_fill(~torch.from_numpy(allowed).to(logits.device), neg_inf)
        elif banned is not None:
            logits = logits.clone()
            logits[:, torch.as_tensor(banned, device=logits.device)] = neg_inf
        x = model.draw(logits, sampler, generator, None if history is None else history[:, : n_prompt + t])
        if history is not None:
            history[:, n_prompt + t] = x.long()
        x_np = x.detach().cpu().numpy()
        if kind == "multihot":
            x_np = (x_np > 0.5).astype(np.uint8)
        else:
            x_np = x_np.astype(np.int64)
        live = ~done
        stop_before = np.zeros(B, dtype=bool)
        if end_token is not None and kind == "categorical":
            hit = live & (x_np == end_token)
            why[hit] = "end_token"
            stop_before |= hit
        if clock is not None and max_bars is not None:
            over = live & ~stop_before & clock.would_open_bar(x_np) & (clock.new_bars() >= max_bars)
            why[over] = "max_bars"
            stop_before |= over
        done |= stop_before
        keep = ~done
        out[keep, t] = x_np[keep]
        length[keep] += 1
        if on_tokens is not None and keep.any():
            on_tokens(x_np, keep)
        if grammar is not None:
            grammar.update(x_np)
        if clock is not None:
            clock.update(x_np)
            if max_bars is not None and not clock.bar_tokens:
                full = keep & ~done & (clock.new_bars() >= max_bars)
                why[full] = "max_bars"
                done |= full
            if max_seconds is not None:
                late = keep & ~done & (clock.new_seconds() >= max_seconds)
                why[late] = "max_seconds"
                done |= late
        if done.all() or t == max_tokens - 1:
            break
        if tick is not None:
            tick(t + 1)
        logits, state = model.step(_as_input(x, kind), state)

    prefix = prompt_tokens if prompt_tokens is not None else None
    seqs = []
    for b in range(B):
        s = out[b, : length[b]]
        if prefix is not None:
            s = np.concatenate([np.asarray(prefix, dtype=s.dtype), s], axis=0)
        seqs.append(s.copy())
    return seqs, [str(w) for w in why], grammar is not None


# --------------------------------------------------------------------------------------
# writing samples
# --------------------------------------------------------------------------------------


def _first_free_index(out_dir: Path, stem: str) -> int:
    taken = []
    for p in out_dir.glob(f"{stem}_*.*"):
        tail = p.stem[len(stem) + 1 :]
        if tail.isdigit():
            taken.append(int(tail))
    return max(taken) + 1 if taken else 0


def write_samples(
    result: GenerationResult | Sequence[Any],
    out_dir: str | Path,
    *,
    render_audio: bool = True,
    soundfont: str | Path | None = None,
    stem: str = "sample",
    piano_roll: bool = True,
    progress: Any = None,
) -> list[Path]:
    """Write ``<stem>_000.mid`` (+ ``.png`` piano roll, + ``.wav`` when a General MIDI
    soundfont is found) per sample into ``out_dir``; returns the paths written.

    Existing samples are never overwritten: numbering continues after the highest index
    already in the folder.  ``result`` may also be a list of Scores.  ``progress``: optional
    callable ``progress(done, total)`` after each sample.
    """
    scores = result.scores if isinstance(result, GenerationResult) else list(result)
    writer = SampleWriter(out_dir, render_audio=render_audio, soundfont=soundfont, stem=stem,
                          piano_roll=piano_roll, expected=len(scores))
    for i, score in enumerate(scores):
        writer(score)
        if progress is not None:
            progress(i + 1, len(scores))
    return writer.written


class SampleWriter:
    """Writes samples one at a time as :func:`write_samples` does (the ``sink`` of
    :func:`generate`: each sample is on disk as soon as its batch finishes, none is kept in
    memory).  ``expected``: how many will come (sizes the zero padding of the numbers)."""

    def __init__(self, out_dir: str | Path, *, render_audio: bool = True, soundfont: str | Path | None = None,
                 stem: str = "sample", piano_roll: bool = True, expected: int = 1, progress: Any = None):
        from musicfw.music.render import AudioRenderer

        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.stem, self.piano_roll, self.progress, self.expected = stem, piano_roll, progress, int(expected)
        self.start = _first_free_index(self.out, stem)
        self.width = max(3, len(str(self.start + max(self.expected, 1) - 1)))
        self.renderer = AudioRenderer(soundfont) if render_audio else None
        self.written: list[Path] = []
        self.count = 0

    def __call__(self, score: Any, tokens: Any = None, reason: str | None = None) -> None:
        from musicfw.music.render import piano_roll_png

        base = self.out / f"{self.stem}_{self.start + self.count:0{self.width}d}"
        mid = base.with_suffix(".mid")
        score.dump_midi(str(mid))
        self.written.append(mid)
        if self.piano_roll:
            self.written.append(piano_roll_png(score, base.with_suffix(".png"), title=mid.name))
        if self.renderer is not None:
            wav = self.renderer.render(score, base.with_suffix(".wav"))
            if wav is not None:
                self.written.append(wav)
        self.count += 1
        if self.progress is not None:
            self.progress(self.count, self.expected)
