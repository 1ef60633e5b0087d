"""What ``musicfw sample`` and ``musicfw interpolate`` do, callable from Python too.

* :func:`sample_to_midi`: decode z ~ N(0, I) into MIDI files (+ a piano-roll strip image);
* :func:`interpolate_files`: encode two MIDI files, decode the spherical interpolation
  between their encodings, write every step, all steps in a row, and a strip image;
* :func:`render_strip`: piano-roll panels side by side (matplotlib, no display needed).

Imported only when those commands run (torch and matplotlib load inside).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np


#: decoding temperature of ``sample`` and ``interpolate`` by default: Magenta's
#: ``music_vae_generate`` default (0.5).  Greedy decoding (0) of an under-trained MusicVAE
#: collapses to its most frequent token, "no event": silence.
DEFAULT_TEMPERATURE = 0.5


@dataclass
class Written:
    """Files written by a command, and the token sequences behind them."""

    midi: list[Path] = field(default_factory=list)
    image: Path | None = None
    tokens: list[np.ndarray] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _require_vae(model: Any, command: str) -> None:
    from musicfw.core.errors import RunFolderError

    for attr in ("encode", "decode", "sample", "interpolate"):
        if not callable(getattr(model, attr, None)):
            raise RunFolderError(
                f"`musicfw {command}` needs a MusicVAE run; this run's model "
                f"({type(model).__name__}) has no latent space. Use `musicfw generate` instead."
            )


def _generator(seed: int | None) -> Any:
    import torch

    if seed is None:
        return None
    return torch.Generator().manual_seed(int(seed))


def sample_to_midi(
    model: Any,
    tokenizer: Any,
    out_dir: str | Path,
    n: int = 8,
    temperature: float = DEFAULT_TEMPERATURE,
    length: int | None = None,
    seed: int | None = 0,
    image: bool = True,
    chords: Any = None,
) -> Written:
    """Decode ``n`` latent vectors drawn from the prior into ``out_dir/sample_XXX.mid``
    (``chords``: a chord-conditioned model's progression, see ``MusicVAEModel.decode``)."""
    _require_vae(model, "sample")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    model.eval()
    kwargs = {} if chords is None else {"chords": chords}
    tokens = model.sample(n, temperature=temperature, length=length, generator=_generator(seed), **kwargs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = Written()
    notes = []
    for i, seq in enumerate(tokens.cpu().numpy()):
        path = out / f"sample_{i:03d}.mid"
        score = tokenizer.decode(seq)
        score.dump_midi(str(path))
        notes.append(_melody_notes(tokenizer, seq, score))
        written.midi.append(path)
        written.tokens.append(seq)
    written.extra = {"notes": notes, "temperature": float(temperature)}
    if image:
        written.image = render_strip(
            [tokenizer.decode(t) for t in written.tokens],
            out / "samples.png",
            labels=[f"sample {i}" for i in range(n)],
            steps=len(written.tokens[0]),
            tokenizer=tokenizer,
        )
    return written


def _melody_notes(tokenizer: Any, tokens: np.ndarray, score: Any) -> int:
    """Notes of a decoded sequence; with chords in the ids, the melody's only (the chord
    track is the condition, not generated notes)."""
    if getattr(tokenizer, "chord_classes", 0):
        return int(tokenizer.count_notes(tokens))
    return int(score.note_num())


def load_tokens(path: str | Path, tokenizer: Any, length: int) -> np.ndarray:
    """The first ``length`` tokens of a MIDI file (fewer if the file is shorter)."""
    import symusic

    from musicfw.core.errors import DataError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"MIDI file not found: {p}")
    try:
        score = symusic.Score(str(p))
    except Exception as exc:  # symusic raises plain RuntimeError/ValueError on bad files
        raise DataError(f"Cannot read {p} as MIDI: {exc}") from None
    tokens = np.asarray(tokenizer.encode(score))
    if tokens.ndim != 1 or len(tokens) == 0:
        raise DataError(f"{p} gives no {tokenizer.name} tokens (no usable notes?).")
    return tokens[:length]


def interpolate_files(
    model: Any,
    tokenizer: Any,
    path_a: str | Path,
    path_b: str | Path,
    out_dir: str | Path,
    steps: int = 8,
    temperature: float = DEFAULT_TEMPERATURE,
    length: int | None = None,
    seed: int | None = 0,
    image: bool = True,
    chords: Any = None,
) -> Written:
    """Interpolate between two MIDI files through the latent space (``chords``: a
    chord-conditioned model's progression for every step of the path).

    Writes ``step_XX.mid`` for every step (step 0 reconstructs A, the last B),
    ``interpolation.mid`` with all steps in a row, and ``interpolation.png``.  ``extra``
    holds the endpoint reconstruction accuracies.
    """
    _require_vae(model, "interpolate")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    length = int(length or model.config.max_seq_len)
    a = load_tokens(path_a, tokenizer, length)
    b = load_tokens(path_b, tokenizer, length)
    model.eval()
    kwargs = {} if chords is None else {"chords": chords}
    path = model.interpolate(
        a, b, steps=steps, temperature=temperature, length=max(len(a), len(b)),
        generator=_generator(seed), **kwargs,
    ).cpu().numpy()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = Written()
    notes = []
    for i, seq in enumerate(path):
        p = out / f"step_{i:02d}.mid"
        score = tokenizer.decode(seq)
        score.dump_midi(str(p))
        notes.append(_melody_notes(tokenizer, seq, score))
        written.midi.append(p)
        written.tokens.append(seq)
    row = out / "interpolation.mid"
    tokenizer.decode(np.concatenate(list(path))).dump_midi(str(row))
    written.midi.append(row)
    onset = min_onset_id(tokenizer)
    # accuracies on the melody (with chords in the ids, the chord part is the condition)
    mel = melody_part(tokenizer)
    pa, pb, ma, mb = mel(path[0][: len(a)]), mel(path[-1][: len(b)]), mel(a), mel(b)
    written.extra = {
        "reconstruction_accuracy_a": float(np.mean(pa == ma)),
        "reconstruction_accuracy_b": float(np.mean(pb == mb)),
        # the same, on the steps where the input starts a note only (most steps of a melody
        # are "no event", which an under-trained decoder gets right by staying silent)
        "onset_accuracy_a": _onset_accuracy(pa, ma, onset),
        "onset_accuracy_b": _onset_accuracy(pb, mb, onset),
        "length": int(path.shape[1]),
        "notes": notes,
        "temperature": float(temperature),
    }
    if image:
        written.image = render_strip(
            [tokenizer.decode(t) for t in path],
            out / "interpolation.png",
            labels=["A"] + [str(i) for i in range(1, steps - 1)] + ["B"],
            steps=int(path.shape[1]),
            tokenizer=tokenizer,
        )
    return written


def _onset_accuracy(decoded: np.ndarray, target: np.ndarray, onset_id: int) -> float | None:
    at = target >= onset_id
    return float(np.mean(decoded[at] == target[at])) if at.any() else None


def near_empty_warning(
    notes: Sequence[int], command: str, temperature: float, steps: int, steps_per_bar: int = 16
) -> str | None:
    """A warning when at least half of the outputs are empty or near-empty (fewer notes than
    bars; the folk tunes MusicVAE's examples train on have several notes per bar), with the
    likely cause and the fix; else None."""
    if not notes:
        return None
    bars = max(steps / max(int(steps_per_bar), 1), 1.0)
    least = max(1, int(np.ceil(bars)))
    few = [n for n in notes if n < least]
    if 2 * len(few) < len(notes):
        return None
    empty = sum(1 for n in notes if n == 0)
    how = "greedy decoding (--temperature 0)" if temperature <= 0 else f"--temperature {temperature:g}"
    if temperature < 0.5:
        also = " or decode with --temperature 0.5 to 1.0"
    elif temperature < 1.0:
        also = " or decode with a higher --temperature (up to 1.0)"
    else:
        also = ""
    return (
        f"musicfw {command}: warning: {len(few)} of {len(notes)} outputs are empty or nearly so "
        f"({empty} with no note, fewer than {least} note{'s' if least > 1 else ''} in {bars:g} bars). Likely "
        f"cause: an under-trained MusicVAE, whose most likely token at each step is 'no event', decoded "
        f"with {how}. Fix: train longer (train.max_steps; the README's 2-bar model used 4,000 steps){also}."
    )


def _step_ticks(score: Any, tokenizer: Any) -> float | None:
    """Ticks per token step, if the tokenizer says how many steps a quarter has."""
    cfg = getattr(tokenizer, "config", None)
    spq = getattr(cfg, "steps_per_quarter", None)
    if spq:
        return score.ticks_per_quarter / float(spq)
    spb = getattr(cfg, "steps_per_bar", None)
    if spb:
        return 4.0 * score.ticks_per_quarter / float(spb)
    return None


def render_strip(
    scores: Sequence[Any],
    path: str | Path,
    labels: Sequence[str] | None = None,
    steps: int | None = None,
    tokenizer: Any = None,
) -> Path:
    """Piano-roll panels of ``scores`` side by side, sharing one pitch axis, as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    n = len(scores)
    rolls = []
    lo, hi, width = 127, 0, 1.0
    for score in scores:
        tpq = float(score.ticks_per_quarter)
        boxes = []
        for track in score.tracks:
            arr = track.notes.numpy()
            if len(arr["time"]) == 0:
                continue
            start = arr["time"] / tpq
            end = (arr["time"] + arr["duration"]) / tpq
            pitch = arr["pitch"].astype(float)
            boxes.append(np.stack([start, end, pitch], axis=1))
            lo, hi = min(lo, int(pitch.min())), max(hi, int(pitch.max()))
            width = max(width, float(end.max()))
        rolls.append(np.concatenate(boxes) if boxes else np.zeros((0, 3)))
    if steps and scores:
        ticks = _step_ticks(scores[0], tokenizer)
        if ticks:
            width = steps * ticks / float(scores[0].ticks_per_quarter)
    if lo > hi:
        lo, hi = 60, 72
    fig, axes = plt.subplots(1, n, figsize=(max(2.0, 1.6 * n), 3.0), sharey=True, squeeze=False)
    for i, (ax, roll) in enumerate(zip(axes[0], rolls)):
        polys = [
            [(s, p - 0.4), (e, p - 0.4), (e, p + 0.4), (s, p + 0.4)] for s, e, p in roll
        ]
        ax.add_collection(PolyCollection(polys, facecolors="tab:blue", edgecolors="none"))
        ax.set_xlim(0, width)
        ax.set_ylim(lo - 2, hi + 2)
        ax.set_xticks([])
        if labels is not None:
            ax.set_title(labels[i], fontsize=8)
        if i:
            ax.tick_params(left=False)
    axes[0][0].set_ylabel("pitch")
    fig.tight_layout(pad=0.3, w_pad=0.1)
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def melody_part(tokenizer: Any):
    """ids -> the melody ids: ``id % n_melody`` for a tokenizer with chords in its ids
    (``melody_chords``), the ids themselves otherwise."""
    n = int(getattr(tokenizer, "n_melody", 0) or 0) if getattr(tokenizer, "chord_classes", 0) else 0
    if not n:
        return lambda ids: np.asarray(ids)
    return lambda ids: np.asarray(ids) % n


def heldout_windows(
    sequences: Sequence[np.ndarray],
    length: int = 32,
    hop: int = 16,
    min_onset_id: int = 2,
    dedupe: bool = True,
    melody: Any = None,
) -> np.ndarray:
    """Every bar-aligned window of ``length`` tokens (starting every ``hop`` steps) of the
    given token sequences that holds at least one onset (an id >= ``min_onset_id``: 2 for
    melody tokens, whose 0 and 1 are no-event and note-off; 1 for drums; tested on
    ``melody(ids)`` when given, see :func:`melody_part`), deduplicated as Magenta's
    converters do.  Returns ``[N, length]`` int64."""
    windows = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) < length:
            continue
        starts = np.arange(0, len(seq) - length + 1, hop)
        idx = starts[:, None] + np.arange(length)[None, :]
        w = seq[idx]
        notes = w if melody is None else melody(w)
        windows.append(w[(notes >= min_onset_id).any(axis=1)])
    if not windows:
        return np.zeros((0, length), dtype=np.int64)
    out = np.concatenate(windows)
    if dedupe and len(out):
        out = np.unique(out, axis=0)
    return out


def window_batches(windows: np.ndarray, batch_size: int = 256) -> list[dict]:
    """``{"tokens", "mask"}`` batches of full-length windows (for :func:`evaluate_vae`)."""
    import torch

    batches = []
    for i in range(0, len(windows), batch_size):
        tokens = torch.as_tensor(windows[i : i + batch_size], dtype=torch.long)
        batches.append({"tokens": tokens, "mask": torch.ones_like(tokens, dtype=torch.bool)})
    return batches


def min_onset_id(tokenizer: Any) -> int:
    """The lowest id that starts a note: the melody tokenizer's lowest note-on (its 0 and 1
    are no-event and note-off), 1 for drums (0 = no hit)."""
    if callable(getattr(tokenizer, "note_on_id", None)) and hasattr(tokenizer, "pitch_range"):
        return int(tokenizer.note_on_id(tokenizer.pitch_range[0]))
    return 1


def reconstruction_metrics(
    model: Any,
    tokenizer: Any,
    sequences: Sequence[np.ndarray],
    max_windows: int = 0,
    seed: int = 0,
    batch_size: int = 128,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Paper-Table-1 metrics of ``model`` on held-out token sequences: every bar-aligned
    ``max_seq_len`` window with an onset (:func:`heldout_windows`), a random subset of
    ``max_windows`` of them when there are more (0: all; the subset is drawn with numpy's
    ``default_rng(0)``), scored by :func:`~.model.evaluate_vae` (teacher-forced, sampled and
    greedy accuracy, ELBO, KL in nats and bits).  Used by ``benchmarks/musicvae.py`` and the
    ``musicvae_reconstruction`` metric."""
    from .model import evaluate_vae

    length = int(model.config.max_seq_len)
    hop = int(getattr(tokenizer, "steps_per_bar", 16) or 16)
    windows = heldout_windows(
        sequences, length=length, hop=hop, min_onset_id=min_onset_id(tokenizer), melody=melody_part(tokenizer)
    )
    if max_windows and len(windows) > max_windows:
        rng = np.random.default_rng(0)
        windows = windows[rng.choice(len(windows), max_windows, replace=False)]
    if len(windows) == 0:
        return {"n_windows": 0, "window_steps": length}
    metrics = evaluate_vae(model, window_batches(windows, batch_size), seed=int(seed), temperature=temperature)
    return {"n_windows": int(len(windows)), "window_steps": length, **metrics}
