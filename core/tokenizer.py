"""The tokenizer protocol shared by every tokenizer plugin.

Two token kinds exist:

* ``categorical``: ``encode`` returns int ids of shape ``[T]`` (REMI, MIDI-like, melody, drums);
* ``multihot``: ``encode`` returns frames of shape ``[T, K]`` with 0/1 entries (piano-roll).

``vocab`` names every id (categorical) or every key (multihot), so a sequence can be printed
and read.  The config is saved as JSON next to a model and restored with
:func:`load_tokenizer`.

Optional parts of the contract, with their defaults here:

* ``grammar(batch_size)``: a :class:`musicfw.core.constraints.Grammar` that masks the ids
  that cannot come next, for constrained decoding (default None: unconstrained);
* ``chord_grammar(progression, batch_size)``: a grammar that also places the chords of a
  progression given by the user (``generate.chords``, ``musicfw generate --chords``) into the
  token stream (default None: the tokenizer cannot be conditioned on chords); it raises
  ConfigError for a chord name it does not know;
* ``controls_grammar(controls, grammar)``: ``grammar`` extended to force attribute controls
  (``generate.controls``, ``musicfw generate --controls density=4``) after every bar (default
  None: the tokenizer has no controls); it raises ConfigError for an attribute or a level the
  tokenizer was not built with;
* ``clock(batch_size)``: a :class:`musicfw.core.clock.Clock` that counts the bars and seconds
  of generated sequences, for ``generate.max_bars`` / ``max_seconds`` (default None: core
  decodes the sequences to measure them);
* ``count_invalid(tokens)``: how many tokens of a sequence decode would drop (default None:
  not measurable), reported as the generation's ``invalid_rate``;
* ``end_id``: an id that ends a sequence (default None);
* ``pitch_range``: ``(lowest, highest)`` MIDI pitch the tokenizer represents, which bounds
  transposition augmentation (default None: no bound known);
* ``fit(scores)``: learn what the tokenizer takes from data (REMI's ``control_binning: fit``)
  from the training split's scores, in place, before the data stage encodes anything; True
  when something was fitted (default: nothing to fit, ``scores`` not read).
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import symusic

CATEGORICAL = "categorical"
MULTIHOT = "multihot"


class Tokenizer(ABC):
    """Base class: subclasses set ``name``, ``Config``, ``kind`` and implement the methods."""

    name: ClassVar[str]
    Config: ClassVar[type]
    kind: ClassVar[str] = CATEGORICAL
    #: the validated parameters (an instance of ``Config``)
    config: Any
    #: an id that ends a sequence, or None
    end_id: int | None = None
    #: (lowest, highest) MIDI pitch represented, or None
    pitch_range: tuple[int, int] | None = None
    #: True: a note ``decode`` returns never changes when more tokens follow, and the tokens from
    #: a bar-opening token on (``Clock.would_open_bar``) decode alone to that bar's notes at tick
    #: 0, so a live stream plays each note once decoded; False: once its bar is over
    streams_notes: bool = False

    def __init__(self, config: Any = None):
        from musicfw.core.params import check_params

        self.config = config if config is not None else self.Config()
        check_params(self.config, getattr(self, "name", type(self).__name__))  # the Config's declared choices and bounds

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> "Tokenizer":
        return cls(config)

    # -- the protocol ---------------------------------------------------------------------
    @property
    @abstractmethod
    def vocab(self) -> list[str]:
        """A readable name for every id (categorical) or every key (multihot)."""

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @abstractmethod
    def encode(self, score: "symusic.Score") -> np.ndarray:
        """Score -> ids ``[T]`` (categorical) or frames ``[T, K]`` (multihot)."""

    @abstractmethod
    def decode(self, tokens: np.ndarray) -> "symusic.Score":
        """Tokens -> Score. Any in-range sequence decodes; an out-of-range id is a ValueError."""

    # -- optional: structure for generation ---------------------------------------------
    def grammar(self, batch_size: int) -> Any:
        """A Grammar over ``batch_size`` sequences (constrained decoding), or None."""
        return None

    def chord_grammar(self, progression: "str | list[str]", batch_size: int) -> Any:
        """A Grammar over ``batch_size`` sequences that also places ``progression``'s chords
        (chord-conditioned generation), or None when this tokenizer has no chord tokens."""
        return None

    def controls_grammar(self, controls: Any, grammar: Any) -> Any:
        """``grammar`` extended to force the attribute ``controls`` ({attribute: level}, or a
        list of them bar by bar), or None when this tokenizer has no control tokens."""
        return None

    def fit(self, scores: Any) -> bool:
        """Fit what this tokenizer learns from data to ``scores`` (an iterable of the training
        split's ``symusic.Score``), in place, before any piece is encoded; its config then holds
        the result, so ``save`` stores it.  True when something was fitted; the default has
        nothing to fit and does not read ``scores``."""
        return False

    def clock(self, batch_size: int) -> Any:
        """A Clock over ``batch_size`` sequences (bar and second limits), or None."""
        return None

    def count_invalid(self, tokens: np.ndarray) -> int | None:
        """How many tokens of ``tokens`` decode would drop; None when not measurable."""
        return None

    # -- helpers every tokenizer gets -----------------------------------------------------
    def token_names(self, tokens: np.ndarray) -> list[str]:
        """The names of a categorical sequence's ids, for a person to read."""
        vocab = self.vocab
        if self.kind == MULTIHOT:
            return [
                "[" + " ".join(vocab[k] for k in np.flatnonzero(frame)) + "]" for frame in tokens
            ]
        return [vocab[int(t)] for t in tokens]

    def count_notes(self, tokens: np.ndarray) -> int:
        """Number of notes a token sequence stands for (for NLL per note)."""
        score = self.decode(tokens)
        return int(sum(len(track.notes) for track in score.tracks))

    def coverage(self, score: "symusic.Score", tokens: np.ndarray | None = None) -> dict[str, Any]:
        """How many of the score's notes the encoding represents, and why the others are not:
        ``{"notes": N, "represented": R, "dropped": N - R, "reasons": {reason: count},
        "altered": {what: count}}`` (``altered``: notes kept but changed, e.g. tracks merged).

        ``tokens``: ``encode(score)`` when the caller has it already.  This default counts the
        notes of ``decode(encode(score))`` and cannot say why; tokenizers override it with
        reasons.  Raises what ``encode`` raises for a piece beyond the limits."""
        total = int(score.note_num())
        tokens = self.encode(score) if tokens is None else tokens
        kept = min(int(self.count_notes(tokens)), total)
        dropped = total - kept
        return {
            "notes": total,
            "represented": kept,
            "dropped": dropped,
            "reasons": {"not represented by the tokenizer": dropped} if dropped else {},
            "altered": {},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "config": dataclasses.asdict(self.config),
            "vocab_size": self.vocab_size,
            "vocab": self.vocab,
        }

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON to ``path``, atomically (a killed run never leaves
        half a tokenizer.json for a resume or ``generate --run`` to read)."""
        from musicfw.core.atomic import atomic_write

        atomic_write(path, json.dumps(self.to_dict(), indent=1) + "\n")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def load_tokenizer(path: str | Path, registries: Any = None) -> Tokenizer:
    """Rebuild a tokenizer from the JSON written by :meth:`Tokenizer.save`."""
    from musicfw.core.build import build

    data = json.loads(Path(path).read_text())
    return build("tokenizer", data["name"], registries=registries, key=str(path), **data["config"])
