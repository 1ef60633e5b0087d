"""MusicVAE (Roberts et al. 2018), a PyTorch port of Magenta's ``music_vae``.

This module is what registration imports: it holds only the ``Config`` dataclass and the
plugin class.  The torch implementation lives in :mod:`.model` and is imported inside
:meth:`MusicVAE.from_config`.

Defaults follow Magenta's ``cat-mel_2bar_small`` configuration; see the example YAMLs
(``examples/musicvae_*.yaml``) for ``cat-drums_2bar_small``-like and ``hierdec-mel_16bar``-like
settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

from musicfw.core.params import bounded

DECODERS = ("flat", "hierarchical")
SCHEDULES = ("constant", "inverse_sigmoid", "exponential")
ENCODER_INPUTS = ("onehot", "drum_roll")


@dataclass
class MusicVAEConfig:
    """Hyperparameters, named as in Magenta's HParams (``lstm_models.get_default_hparams``)."""

    z_size: int = bounded(256, ge=1, le=16384, help="size of the latent vector z")
    enc_rnn_size: List[int] = bounded(
        [512], ge=1, le=16384, min_items=1, help="bidirectional encoder: units per layer per direction"
    )
    dec_rnn_size: List[int] = bounded([256, 256], ge=1, le=16384, min_items=1, help="decoder (and conductor) LSTM: units per layer")
    decoder: str = field(
        default="flat",
        metadata={
            "help": "flat: stacked LSTM (CategoricalLstmDecoder); hierarchical: conductor + "
            "per-bar decoder (HierarchicalLstmDecoder, no autoregression in the conductor)",
            "choices": DECODERS,
        },
    )
    steps_per_bar: int = bounded(16, ge=1, le=4096, help="hierarchical decoder: steps per conductor step (one bar of 16ths)")
    max_seq_len: int = bounded(
        32, ge=1, le=1_048_576,
        help="segment length (32 = 2 bars): sample()/decode() length; longer "
        "sequences are scored as consecutive segments",
    )
    free_bits: float = bounded(0.0, ge=0, help="KL cost = max(KL - free_bits * ln 2, 0) (KL summed over z)")
    max_beta: float = bounded(0.2, ge=0, help="maximum KL weight")
    beta_rate: float = bounded(0.99999, ge=0, le=1, help="beta = (1 - beta_rate ** step) * max_beta")
    sampling_schedule: str = field(
        default="inverse_sigmoid",
        metadata={
            "help": "scheduled sampling: constant (sampling_rate = probability, 0 = teacher "
            "forcing), inverse_sigmoid (p = 1 - k / (k + exp(step / k)), k = sampling_rate), "
            "exponential (p = 1 - rate ** step)",
            "choices": SCHEDULES,
        },
    )
    sampling_rate: float = bounded(
        1000.0, ge=0, help="k of the inverse sigmoid (>= 1), or see sampling_schedule"
    )
    dropout_keep_prob: float = bounded(
        1.0, gt=0, le=1, help="input keep probability of every LSTM layer (training only)"
    )
    encoder_input: str = field(
        default="onehot",
        metadata={
            "help": "onehot: one-hot tokens; drum_roll: the bits of a drum id plus a "
            "'no hit' flag (Magenta's DrumsConverter roll_input)",
            "choices": ENCODER_INPUTS,
        },
    )
    chord_conditioning: bool = field(
        default=False,
        metadata={
            "help": "feed the chord of every step (one-hot, 49 triad classes) to the decoder, "
            "not the encoder, as Magenta's chord-conditioned configs do; needs the "
            "melody_chords tokenizer"
        },
    )
    sample_chords: str = field(
        default="C G Am F",
        metadata={
            "help": "chords, one per bar, that a model with chords decodes under when no "
            "progression is given (musicfw run's generate stage; sample without --chords)"
        },
    )


class MusicVAE:
    """MusicVAE: bidirectional-LSTM encoder, flat or hierarchical (conductor) LSTM decoder."""

    name = "musicvae"
    Config = MusicVAEConfig

    @classmethod
    def from_config(cls, config: Any, tokenizer: Any = None, **context: Any) -> Any:
        from musicfw.core.errors import PluginError

        if tokenizer is None:
            raise PluginError("model 'musicvae' needs a tokenizer (its vocabulary) to be built.")
        if getattr(tokenizer, "kind", "categorical") != "categorical":
            raise PluginError(
                f"model 'musicvae' needs a categorical tokenizer (melody, drums, ...); "
                f"{tokenizer.name!r} makes {tokenizer.kind} frames."
            )
        from .model import MusicVAEModel, check_config

        check_config(config, tokenizer.vocab_size)
        chord_classes = int(getattr(tokenizer, "chord_classes", 0) or 0)
        check_chords(config, tokenizer, chord_classes)
        return MusicVAEModel(config, vocab_size=tokenizer.vocab_size, chord_classes=chord_classes)


def check_chords(config: Any, tokenizer: Any, chord_classes: int) -> None:
    """``chord_conditioning`` needs a tokenizer with chords; ``sample_chords`` must parse."""
    from musicfw.core.errors import ConfigError

    if getattr(config, "chord_conditioning", False) and not chord_classes:
        raise ConfigError(
            f"model.chord_conditioning: true needs a tokenizer that gives the chord of every step "
            f"(tokenizer.name: melody_chords); {tokenizer.name!r} has no chords."
        )
    if chord_classes:
        from musicfw.music.chords import parse_triads

        try:
            parse_triads(config.sample_chords)
        except ValueError as exc:
            raise ConfigError(f"model.sample_chords: {config.sample_chords!r}: {exc}.") from None


def evaluate_vae(model: Any, dataloader: Any, **kwargs: Any) -> dict:
    """Held-out metrics (paper Table 1); see :func:`.model.evaluate_vae`."""
    from .model import evaluate_vae as _evaluate

    return _evaluate(model, dataloader, **kwargs)


__all__ = ["MusicVAE", "MusicVAEConfig", "evaluate_vae"]
