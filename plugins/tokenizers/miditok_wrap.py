"""``miditok``: any MidiTok tokenizer (REMI, TSD, MIDILike, Structured, PerTok, MMM, ...) as a
musicfw tokenizer, including a vocabulary trained with BPE, Unigram or WordPiece.

::

    tokenizer: {name: miditok, tokenizer: TSD, params: {use_programs: true, num_velocities: 16}}
    tokenizer: {name: miditok, tokenizer: REMI, config_file: my_bpe/tokenizer.json}

``params`` are :class:`miditok.TokenizerConfig` keyword arguments (``beat_res`` keys may be
written ``"0_4"`` as in MidiTok's own JSON); ``config_file`` is a ``tokenizer.json`` written by
MidiTok's ``tokenizer.save(...)`` (after ``tokenizer.train(...)`` it holds the learned
vocabulary).  The file is embedded (gzip + base64, in ``state``) when the tokenizer is saved,
so run folders and exported models do not depend on it.

The ids are MidiTok's own ids (learned ids included, ``len(tokenizer)``); ``vocab`` names
them (a learned id is named by the base tokens it stands for, joined with ``+``).  MidiTok
works on ``symusic.Score`` objects, as musicfw does, so encode/decode are MidiTok's own.

One sequence per piece: a MidiTok configuration that makes one sequence per track
(``one_token_stream`` false, e.g. the default ``use_programs: false``) gets the piece's
pitched tracks merged into one track first, and drum tracks dropped (what musicfw's own
``remi`` does without programs); with ``use_programs: true`` MidiTok writes every track into
one stream with Program tokens.  Tokenizers with several vocabularies per step (CPWord,
Octuple, MuMIDI) do not fit a model that predicts one id per step and are refused.

MidiTok is an optional dependency (``pip install miditok`` or ``musicfw[miditok]``); it is
imported when the tokenizer is built, never at plugin discovery.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from musicfw.core.errors import ConfigError
from musicfw.core.tokenizer import Tokenizer

#: MidiTok tokenizers with several vocabularies (one id per vocabulary per step)
MULTI_VOCAB = ("CPWord", "Octuple", "MuMIDI")
#: a MidiTok tokenizer.json larger than this is refused before parsing (a trained 30,000-id
#: BPE vocabulary is a few MB; parsing 16 MiB of nested ``[]`` stays under ~0.5 GB)
MAX_CONFIG_BYTES = 16 * 1024 * 1024
#: bounds on a MidiTok configuration (``params`` or a tokenizer.json's ``config``), checked
#: before MidiTok allocates anything from it (its vocabulary grows with each of them)
MAX_SPECIAL_TOKENS = 1_000
MAX_BEATS = 1_024  #: the end of a beat_res range, in beats
MAX_STEPS_PER_BEAT = 1_024  #: a beat_res resolution
MAX_BEAT_STEPS = 100_000  #: sum over the ranges of beats x resolution (Position/Duration tokens)
MAX_LIST_ITEMS = 10_000
MAX_STRING_CHARS = 200_000
MAX_INT = 1_000_000
BOUNDED_COUNTS = {  # setting: (low, high)
    "num_velocities": (1, 128), "num_tempos": (1, 10_000), "control_change_n_bins": (1, 1_024),
    "max_pitch_interval": (0, 128), "max_bar_embedding": (1, 10_000), "ac_polyphony_max": (0, 1_024),
    "ac_note_density_track_max": (0, 1_024), "ac_note_density_bar_max": (0, 1_024),
    "ac_repetition_track_num_bins": (1, 1_024), "ac_repetition_track_num_consec_bars": (1, 1_024),
}


def check_params(params: Any, where: str) -> None:
    """Refuse a MidiTok configuration beyond the bounds above (a :class:`ConfigError` naming
    ``where`` and the key), before MidiTok sees it."""

    def walk(value: Any, path: str, depth: int) -> None:
        if depth > 8:
            raise ConfigError(f"{where}.{path}: nested more than 8 levels deep.")
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int):
            if abs(value) > MAX_INT and not path.startswith("pitch_bend_range"):
                raise ConfigError(f"{where}.{path}={value:,}: larger than {MAX_INT:,}.")
        elif isinstance(value, float):
            if value != value or abs(value) > MAX_INT:
                raise ConfigError(f"{where}.{path}={value!r}: not a number within +-{MAX_INT:,}.")
        elif isinstance(value, str):
            if len(value) > MAX_STRING_CHARS:
                raise ConfigError(f"{where}.{path}: a text of {len(value):,} characters (at most {MAX_STRING_CHARS:,}).")
        elif isinstance(value, (list, tuple)):
            if len(value) > MAX_LIST_ITEMS:
                raise ConfigError(f"{where}.{path}: {len(value):,} items (at most {MAX_LIST_ITEMS:,}).")
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]", depth + 1)
        elif isinstance(value, dict):
            if len(value) > MAX_LIST_ITEMS:
                raise ConfigError(f"{where}.{path}: {len(value):,} entries (at most {MAX_LIST_ITEMS:,}).")
            for k, item in value.items():
                walk(item, f"{path}.{k}" if path else str(k), depth + 1)

    if params is None:
        return
    if not isinstance(params, dict):
        raise ConfigError(f"{where} must be a mapping of MidiTok settings, not {type(params).__name__}.")
    walk(params, "", 0)
    flat = dict(params)
    flat.update(params.get("additional_params") or {} if isinstance(params.get("additional_params"), dict) else {})
    special = flat.get("special_tokens")
    if isinstance(special, (list, tuple)) and len(special) > MAX_SPECIAL_TOKENS:
        raise ConfigError(f"{where}.special_tokens: {len(special):,} special tokens (at most {MAX_SPECIAL_TOKENS:,}).")
    for key in ("beat_res", "beat_res_rest"):
        value = flat.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{where}.{key} must map beat ranges \"START_END\" to steps per beat, got {value!r:.80}.")
        steps = 0
        for k, v in value.items():
            try:
                a, b = (int(x) for x in k.split("_")) if isinstance(k, str) else (int(k[0]), int(k[1]))
            except (TypeError, ValueError, IndexError):
                raise ConfigError(
                    f"{where}.{key}: keys are beat ranges written as quoted strings 'START_END' (e.g. \"0_4\"; "
                    f"YAML reads an unquoted 0_4 as the number 4), got {k!r}."
                ) from None
            if not (0 <= a < b <= MAX_BEATS):
                raise ConfigError(f"{where}.{key}: the range {k!r} must have 0 <= START < END <= {MAX_BEATS:,}.")
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_STEPS_PER_BEAT:
                raise ConfigError(
                    f"{where}.{key}.{k}={v!r}: steps per beat must be a whole number from 1 to {MAX_STEPS_PER_BEAT:,}."
                )
            steps += (b - a) * v
        if steps > MAX_BEAT_STEPS:
            raise ConfigError(f"{where}.{key}: {steps:,} time steps in all (beats x steps per beat; at most {MAX_BEAT_STEPS:,}).")
    for key, (lo, hi) in BOUNDED_COUNTS.items():
        value = flat.get(key)
        if value is None or isinstance(value, bool):
            continue
        if not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(f"{where}.{key}={value!r}: must be a whole number from {lo:,} to {hi:,}.")
    for key in ("pitch_range", "drums_pitch_range"):
        value = flat.get(key)
        if value is not None and not (
            isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 127 for x in value)
        ):
            raise ConfigError(f"{where}.{key}={value!r}: must be [LOW, HIGH] with MIDI pitches 0..127.")


@dataclass
class MidiTokConfig:
    tokenizer: str = field(
        default="REMI",
        metadata={"help": "MidiTok tokenizer class: REMI, TSD, MIDILike, Structured, PerTok, MMM, ..."},
    )
    params: Optional[Dict[str, Any]] = field(
        default=None, metadata={"help": "miditok.TokenizerConfig keyword arguments (default: MidiTok's defaults)"}
    )
    config_file: Optional[str] = field(
        default=None,
        metadata={"help": "a MidiTok tokenizer.json (tokenizer.save); a trained BPE/Unigram vocabulary included",
                  "file": True},
    )
    state: Optional[str] = field(
        default=None,
        metadata={"help": "written by musicfw: the config_file's contents embedded (gzip+base64)"},
    )


def _import_miditok() -> Any:
    try:
        import miditok
    except ImportError:
        raise ConfigError(
            "The miditok tokenizer needs the MidiTok package: pip install miditok "
            "(or pip install 'musicfw[miditok]')."
        ) from None
    return miditok


def _pack(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode("utf-8"), mtime=0)).decode("ascii")


def _unpack(state: str) -> str:
    try:
        raw = base64.b64decode(state.encode("ascii"), validate=True)
        # bounded: a hostile state cannot inflate past the limit
        with gzip.GzipFile(fileobj=__import__("io").BytesIO(raw)) as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except (ValueError, OSError, EOFError) as exc:
        raise ConfigError(f"tokenizer.state: not a musicfw-embedded MidiTok tokenizer ({exc}).") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"tokenizer.state: the embedded MidiTok tokenizer is larger than {MAX_CONFIG_BYTES:,} bytes.")
    return data.decode("utf-8")


def _tokenizer_config(miditok: Any, params: dict[str, Any]) -> Any:
    """``miditok.TokenizerConfig(**params)`` with JSON-friendly spellings accepted."""
    import inspect

    check_params(params, "tokenizer.params")
    params = dict(params)
    for key in ("beat_res", "beat_res_rest"):
        value = params.get(key)
        if isinstance(value, dict):
            converted = {}
            for k, v in value.items():
                try:
                    a, b = (int(x) for x in k.split("_")) if isinstance(k, str) else k
                    converted[(int(a), int(b))] = int(v)
                except (TypeError, ValueError):
                    raise ConfigError(
                        f"tokenizer.params.{key}: keys are beat ranges written as quoted strings "
                        f"'START_END' (e.g. \"0_4\"; YAML reads an unquoted 0_4 as the number 4), "
                        f"got {k!r}."
                    ) from None
            params[key] = converted
    for key in ("pitch_range",):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    allowed = set(inspect.signature(miditok.TokenizerConfig.__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(params) - allowed - {"additional_params"})
    if unknown:
        raise ConfigError(
            f"tokenizer.params: unknown MidiTok setting(s) {', '.join(unknown)}. "
            f"miditok.TokenizerConfig takes: {', '.join(sorted(allowed))}; settings of one "
            "tokenizer class (e.g. MMM's base_tokenizer) go under params.additional_params."
        )
    extra = params.pop("additional_params", None) or {}
    if not isinstance(extra, dict):
        raise ConfigError("tokenizer.params.additional_params must be a mapping.")
    try:
        return miditok.TokenizerConfig(**params, **extra)
    except TypeError as exc:
        raise ConfigError(
            f"tokenizer.params: {exc}. miditok.TokenizerConfig takes: {', '.join(sorted(allowed))}."
        ) from None
    except (ValueError, AssertionError) as exc:
        raise ConfigError(f"tokenizer.params: MidiTok refuses this configuration: {exc}.") from None


class MidiTok(Tokenizer):
    """A MidiTok tokenizer by class name, with its config or a saved (trained) tokenizer.json."""

    name = "miditok"
    Config = MidiTokConfig

    def __init__(self, config: MidiTokConfig | None = None):
        super().__init__(config)
        miditok = _import_miditok()
        cfg = self.config
        cls = getattr(miditok, str(cfg.tokenizer), None)
        if not (isinstance(cls, type) and issubclass(cls, miditok.MusicTokenizer)) or cls is miditok.MusicTokenizer:
            known = sorted(
                n for n in dir(miditok)
                if isinstance(getattr(miditok, n), type)
                and issubclass(getattr(miditok, n), miditok.MusicTokenizer)
                and n != "MusicTokenizer"
            )
            raise ConfigError(f"tokenizer.tokenizer: MidiTok has no tokenizer {cfg.tokenizer!r}; known: {', '.join(known)}.")
        if cfg.tokenizer in MULTI_VOCAB:
            raise ConfigError(
                f"tokenizer.tokenizer: {cfg.tokenizer} writes several ids per step (one per vocabulary); "
                "musicfw's models predict one id per step. Use REMI, TSD, MIDILike, Structured, PerTok or MMM."
            )
        if cfg.state is not None:
            text = _unpack(cfg.state)
        elif cfg.config_file:
            path = Path(cfg.config_file).expanduser()
            if not path.is_file():
                raise ConfigError(f"tokenizer.config_file: no such file: {path}.")
            if path.stat().st_size > MAX_CONFIG_BYTES:
                raise ConfigError(f"tokenizer.config_file: {path} is larger than {MAX_CONFIG_BYTES:,} bytes.")
            text = path.read_text(encoding="utf-8")
        else:
            text = None
        if text is not None:
            if cfg.params:
                raise ConfigError("tokenizer: give either params or config_file, not both.")
            try:
                saved = json.loads(text)
            except RecursionError:
                raise ConfigError("tokenizer.config_file: not a MidiTok tokenizer.json (nested too deeply).") from None
            except ValueError as exc:
                raise ConfigError(f"tokenizer.config_file: not a MidiTok tokenizer.json ({exc}).") from None
            if not isinstance(saved, dict) or "config" not in saved:
                raise ConfigError("tokenizer.config_file: not a MidiTok tokenizer.json (it has no `config`).")
            check_params(saved["config"], "tokenizer.config_file: config")
            saved_cls = saved.get("tokenization")
            if saved_cls and saved_cls != cfg.tokenizer:
                raise ConfigError(
                    f"tokenizer.config_file was saved by a MidiTok {saved_cls} tokenizer, but "
                    f"tokenizer.tokenizer is {cfg.tokenizer}; set tokenizer: {saved_cls}."
                )
            self._state_text = text
            self._tok = self._load_saved(cls, text)
        else:
            self._state_text = None
            tok_config = _tokenizer_config(miditok, cfg.params or {})
            try:
                self._tok = cls(tokenizer_config=tok_config)
            except (KeyError, TypeError, AssertionError) as exc:  # ValueError: build() names it
                raise ConfigError(
                    f"tokenizer.params: MidiTok could not build {cfg.tokenizer} with them: "
                    f"{type(exc).__name__}: {exc} (some tokenizers need entries under "
                    "params.additional_params, see MidiTok's documentation)."
                ) from None
        if self._tok.is_multi_voc:
            raise ConfigError(f"tokenizer: this {cfg.tokenizer} configuration has several vocabularies; musicfw needs one.")
        self._vocab = self._names()

    @staticmethod
    def _load_saved(cls: type, text: str) -> Any:
        # MidiTok loads a saved tokenizer from a file only
        fd, tmp = tempfile.mkstemp(suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            return cls(params=tmp)
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            raise ConfigError(f"tokenizer.config_file: MidiTok could not load it: {type(exc).__name__}: {exc}.") from None
        finally:
            os.unlink(tmp)

    # -- the vocabulary ------------------------------------------------------------------
    def _names(self) -> list[str]:
        tok = self._tok
        base = {i: t for t, i in tok.vocab.items()}
        if not tok.is_trained:
            return [base[i] for i in range(len(base))]
        learned = tok.vocab_model  # byte string -> id
        names = [""] * len(tok)
        for byte, i in learned.items():
            parts = tok._vocab_learned_bytes_to_tokens.get(byte)
            names[i] = "+".join(parts) if parts else repr(byte)
        for i, t in base.items():  # special tokens keep their own names
            if i < len(names) and not names[i]:
                names[i] = t
        return [n or f"<id {i}>" for i, n in enumerate(names)]

    @property
    def vocab(self) -> list[str]:
        return self._vocab

    @property
    def pitch_range(self) -> tuple[int, int]:
        """Lowest and highest pitch, inclusive (MidiTok's ``pitch_range`` includes both ends)."""
        lo, hi = self._tok.config.pitch_range
        return int(lo), int(hi)

    @property
    def miditok(self) -> Any:
        """The wrapped MidiTok tokenizer."""
        return self._tok

    # -- encode / decode -----------------------------------------------------------------
    def _one_stream_score(self, score: Any) -> Any:
        """A copy of ``score`` with its pitched tracks merged into one (drums dropped)."""
        import symusic

        out = score.copy()
        pitched = [t for t in score.tracks if not t.is_drum]
        merged = symusic.Track("merged", 0, False)
        for t in pitched:
            merged.notes.extend(t.notes)
            merged.pedals.extend(t.pedals)
        merged.notes.sort()
        out.tracks = [merged] if len(merged.notes) else []
        return out

    def encode(self, score: Any) -> np.ndarray:
        """MidiTok's ids, within musicfw's limits (:mod:`musicfw.music.limits`): the piece is
        checked (notes, tracks, length, time signatures; cut with ``on_exceed: cut``) before
        MidiTok sees it, a piece with more notes than ``max_tokens`` is refused before
        encoding (each note is at least one token) and the ids after it."""
        from musicfw.music.limits import check_piece, check_tokens

        tok = self._tok
        score = check_piece(score)
        check_tokens(int(score.note_num()), "tokens (at least one per note)", self.name)
        if score.note_num() == 0:
            return np.zeros(0, dtype=np.int64)
        if not tok.one_token_stream:
            score = self._one_stream_score(score)
            if not score.tracks:
                return np.zeros(0, dtype=np.int64)
        seq = tok.encode(score)
        if isinstance(seq, list):
            if not seq:
                return np.zeros(0, dtype=np.int64)
            seq = seq[0]
        check_tokens(len(seq.ids), "tokens", self.name)
        return np.asarray(seq.ids, dtype=np.int64)

    def decode(self, tokens: np.ndarray) -> Any:
        import symusic

        ids = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self._vocab)):
            bad = int(ids[(ids < 0) | (ids >= len(self._vocab))][0])
            raise ValueError(f"token id {bad} is out of range for the miditok vocabulary ({len(self._vocab)} ids)")
        if ids.size == 0:
            return symusic.Score(self._tok.time_division)
        seq = ids.tolist()
        return self._tok.decode(seq if self._tok.one_token_stream else [seq])

    # -- saving --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        from importlib import metadata

        config = {
            "tokenizer": self.config.tokenizer,
            "params": self.config.params,
            "config_file": None,
            "state": _pack(self._state_text) if self._state_text is not None else None,
        }
        return {
            "name": self.name,
            "kind": self.kind,
            "config": config,
            "vocab_size": self.vocab_size,
            "vocab": self.vocab,
            "miditok_version": metadata.version("miditok"),
        }

    def __repr__(self) -> str:
        source = "trained" if self._tok.is_trained else "base"
        return f"MidiTok({self.config.tokenizer}, {len(self._vocab)} ids, {source} vocabulary)"
