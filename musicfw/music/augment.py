"""Data augmentation on ``symusic.Score`` objects (training split only).

Configured by the experiment's top-level ``augment:`` section
(:class:`~musicfw.engine.config.AugmentSection`); the data module draws a fresh augmentation
for every training sample in every epoch.

* **Transposition** by a whole number of semitones drawn uniformly from ``transpose: [lo,
  hi]``; drum tracks are never transposed.  Pitches never wrap around.  Notes pushed outside
  the tokenizer's pitch range are dropped (``out_of_range: drop``), or the draw is restricted
  to the shifts that keep every note of the piece in range (``out_of_range: refuse``; when
  no shift fits, the piece stays untransposed).
* **Time stretch** by a factor drawn from ``time_stretch``: every tempo is divided by the
  factor, so the piece lasts ``factor`` times as long in seconds (Magenta's Performance RNN
  stretched performances by 0.95-1.05).  Positions in ticks and beats, the notated rhythm,
  do not change; tokenizers that count time in beats see no difference.
* **Velocity jitter**: each note's velocity moves by an integer drawn uniformly from
  ``[-velocity_jitter, velocity_jitter]``, clipped to 1..127.

Everything runs on symusic's note arrays with numpy; no per-note Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from musicfw.core.errors import ConfigError

OUT_OF_RANGE = ("drop", "refuse")


def tokenizer_pitch_range(tokenizer: Any) -> tuple[int, int]:
    """The inclusive (lowest, highest) pitch a tokenizer can represent (0..127 if unknown).

    ``pitch_range`` may be a ``range`` (stop exclusive) or a ``(low, high)`` pair (inclusive).
    """
    pr = tokenizer.pitch_range if tokenizer is not None else None
    if pr is None:
        return 0, 127
    if isinstance(pr, range):
        return int(pr.start), int(pr.stop) - 1
    lo, hi = pr
    return int(lo), int(hi)


@dataclass(frozen=True)
class Augmenter:
    transpose: tuple[int, int] = (0, 0)
    time_stretch: tuple[float, ...] = (1.0,)
    velocity_jitter: int = 0
    out_of_range: str = "drop"
    pitch_range: tuple[int, int] = (0, 127)

    def __post_init__(self) -> None:
        lo, hi = self.transpose
        if lo > hi:
            raise ConfigError(f"augment.transpose: [{lo}, {hi}] is empty; give [lowest, highest].")
        if not self.time_stretch or any(f <= 0 for f in self.time_stretch):
            raise ConfigError(
                f"augment.time_stretch: {list(self.time_stretch)} must be a non-empty list of "
                "positive factors (e.g. [0.95, 1.0, 1.05])."
            )
        if self.velocity_jitter < 0:
            raise ConfigError(f"augment.velocity_jitter must be >= 0, got {self.velocity_jitter}.")
        if self.out_of_range not in OUT_OF_RANGE:
            raise ConfigError(
                f"augment.out_of_range: {self.out_of_range!r} is not allowed. "
                f"Allowed values: {', '.join(OUT_OF_RANGE)}."
            )

    @classmethod
    def from_section(cls, section: Any, tokenizer: Any = None) -> "Augmenter":
        """From the experiment's ``augment`` section (a DictConfig, dict or None)."""
        if section is None:
            return cls(pitch_range=tokenizer_pitch_range(tokenizer))
        get = section.get if hasattr(section, "get") else lambda k, d=None: getattr(section, k, d)
        transpose = _as_list(get("transpose", [0, 0]), "augment.transpose")
        if len(transpose) == 1:
            transpose = [transpose[0], transpose[0]]
        if len(transpose) != 2:
            raise ConfigError(
                f"augment.transpose: {transpose} must be [lowest, highest] semitones, e.g. [-5, 6]."
            )
        try:
            lo, hi = (int(v) for v in transpose)
            stretch = tuple(float(v) for v in _as_list(get("time_stretch", [1.0]), "augment.time_stretch"))
            jitter = int(get("velocity_jitter", 0) or 0)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"augment: {exc}") from None
        return cls(
            transpose=(lo, hi),
            time_stretch=stretch,
            velocity_jitter=jitter,
            out_of_range=str(get("out_of_range", "drop")),
            pitch_range=tokenizer_pitch_range(tokenizer),
        )

    @property
    def active(self) -> bool:
        """False when every draw would return the piece unchanged."""
        return (
            self.transpose != (0, 0)
            or any(f != 1.0 for f in self.time_stretch)
            or self.velocity_jitter > 0
        )

    # -- drawing ---------------------------------------------------------------------------
    def draw_shift(self, score: Any, rng: np.random.Generator) -> int:
        lo, hi = self.transpose
        if lo == hi:
            return lo
        if self.out_of_range == "refuse":
            pitches = [
                t.notes.numpy()["pitch"] for t in score.tracks if not t.is_drum and len(t.notes)
            ]
            if pitches:
                allp = np.concatenate(pitches)
                rlo, rhi = self.pitch_range
                lo, hi = max(lo, rlo - int(allp.min())), min(hi, rhi - int(allp.max()))
                if lo > hi:
                    return 0
        return int(rng.integers(lo, hi + 1))

    def __call__(self, score: Any, rng: np.random.Generator) -> Any:
        """A new, augmented Score (the input is not modified)."""
        shift = self.draw_shift(score, rng)
        factor = float(self.time_stretch[int(rng.integers(len(self.time_stretch)))])
        return self.apply(score, shift, factor, rng)

    def apply(self, score: Any, shift: int, factor: float, rng: np.random.Generator | None = None) -> Any:
        """Transpose by ``shift`` semitones, stretch by ``factor``, jitter velocities."""
        import symusic

        out = score.copy()
        jitter = self.velocity_jitter
        if shift or jitter:
            rlo, rhi = self.pitch_range
            for track in out.tracks:
                if not len(track.notes):
                    continue
                arr = track.notes.numpy()
                pitch = arr["pitch"].astype(np.int16)
                velocity = arr["velocity"].astype(np.int16)
                keep = slice(None)
                if shift and not track.is_drum:
                    pitch = pitch + shift
                    inside = (pitch >= rlo) & (pitch <= rhi) & (pitch >= 0) & (pitch <= 127)
                    if not inside.all():
                        keep = inside
                if jitter and rng is not None:
                    velocity = velocity + rng.integers(-jitter, jitter + 1, size=velocity.shape)
                    velocity = np.clip(velocity, 1, 127)
                track.notes = type(track.notes).from_numpy(
                    np.ascontiguousarray(arr["time"][keep], dtype=np.int32),
                    np.ascontiguousarray(arr["duration"][keep], dtype=np.int32),
                    np.ascontiguousarray(pitch[keep], dtype=np.int8),
                    np.ascontiguousarray(velocity[keep], dtype=np.int8),
                )
        if factor != 1.0:
            if len(out.tempos):
                for tempo in out.tempos:  # a deep copy: the input keeps its tempos
                    tempo.qpm = tempo.qpm / factor
            else:
                out.tempos.append(symusic.Tempo(0, 120.0 / factor))
        return out


def _as_list(value: Any, key: str) -> list:
    if value is None:
        return []
    if isinstance(value, (int, float)):
        return [value]
    try:
        from omegaconf import ListConfig, OmegaConf

        if isinstance(value, ListConfig):
            return list(OmegaConf.to_container(value))
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    raise ConfigError(f"{key}: {value!r} must be a list.")
