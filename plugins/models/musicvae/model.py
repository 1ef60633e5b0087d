"""MusicVAE in PyTorch: a port of Magenta's ``music_vae`` (base_model.py, lstm_models.py,
lstm_utils.py), following it detail by detail.

* Encoder (``BidirectionalLstmEncoder``): stacked bidirectional LSTM over the one-hot input;
  the last layer's final forward and backward hidden states, concatenated, give
  ``mu = Dense(h)`` and ``sigma = softplus(Dense(h))`` (kernels ~ N(0, 0.001)).
* Loss (``MusicVAE._compute_model_loss``): reconstruction cross-entropy summed over time,
  averaged over the batch, plus ``beta * mean(max(KL - free_bits * ln 2, 0))`` with KL summed
  over the latent dimensions and ``beta = (1 - beta_rate ** step) * max_beta``.
* Flat decoder (``CategoricalLstmDecoder``): stacked LSTM whose initial state is
  ``tanh(Dense(z))`` (N(0, 0.001) kernel) and whose input at every step is the previous
  token, one-hot (zeros at t = 0), concatenated with z; a Dense output projection.
* Chord conditioning (``chord_conditioning: true`` with the ``melody_chords`` tokenizer, as
  Magenta's melody configs with ``chord_encoding=TriadChordOneHotEncoding()``): the chord of
  every step, one-hot over 49 classes, is one more part of the decoder's input at that step
  (Magenta's ``c_input``), in the flat decoder and in every bar of the hierarchical one (the
  conductor gets no chords); the encoder never sees the chords.  Ids then carry melody and
  chord (``id = chord * n_melody + melody``): the encoder reads and the decoder predicts the
  melody part, and :meth:`MusicVAEModel.step` returns logits over the whole vocabulary with
  -inf outside the ids of the step's given chord.
* Hierarchical decoder (``HierarchicalLstmDecoder`` with ``disable_autoregression=True``): a
  conductor LSTM, initial state ``tanh(Dense(z))``, fed zeros, one step per bar; each output
  initializes (``tanh(Dense(.))``) a categorical decoder that is reset at every bar and gets
  that output concatenated to every input.  The bar's first input is the last token of the
  previous bar (zeros for the first bar), as in Magenta's split of the shifted sequence.
* Scheduled sampling (``ScheduledOutputTrainingHelper`` + ``get_sampling_probability``):
  during training the input at t >= 1 is, with probability p, a sample from the model's own
  softmax at t - 1 instead of the true token; p follows a constant, inverse sigmoid
  ``1 - k / (k + exp(step / k))`` or exponential ``1 - rate ** step`` schedule.
* LSTM cells are Magenta's ``LSTMBlockCell``: forget-gate bias 1, glorot-uniform kernels,
  input dropout (``dropout_keep_prob``) on every layer while training.

One deliberate difference: in eval mode ``loss`` uses teacher forcing (Magenta's eval job
switches to sampling probability 1 when a schedule is set); the fully sampled accuracy is
measured separately by :func:`evaluate_vae`, which reports both, like the paper's Table 1.

``nll_sum`` in :meth:`MusicVAEModel.loss` is the negative ELBO (reconstruction NLL + KL, in
nats), an upper bound on the exact NLL: a VAE has no exact likelihood, and the
reconstruction term alone would let the encoder see the answer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicfw.core.model import Model

LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------
# Config checks
# --------------------------------------------------------------------------------------


def check_config(config: Any, vocab_size: int) -> None:
    """Reject values Magenta would reject (raises ConfigError, a user mistake): what one field's
    declared bounds cannot say (the sampling rate's range depends on the schedule; drum_roll on
    the vocabulary)."""
    from musicfw.core.errors import ConfigError

    def bad(msg: str) -> None:
        raise ConfigError(f"model (musicvae): {msg}.")

    schedule, rate = config.sampling_schedule, config.sampling_rate
    if schedule == "constant" and not 0.0 <= rate <= 1.0:
        bad(f"a constant sampling_rate is a probability in [0, 1], got {rate}")
    if schedule == "inverse_sigmoid" and rate < 1.0:
        bad(f"the inverse_sigmoid sampling_rate k must be >= 1, got {rate}")
    if schedule == "exponential" and not 0.0 < rate < 1.0:
        bad(f"the exponential sampling_rate must be in (0, 1), got {rate}")
    if config.encoder_input == "drum_roll" and (vocab_size < 2 or vocab_size & (vocab_size - 1)):
        bad(
            f"encoder_input=drum_roll needs a vocabulary of 2**k drum-hit combinations "
            f"(the drums tokenizer), got vocab_size {vocab_size}"
        )


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


def _glorot_uniform_(tensor: torch.Tensor, fan_in: int, fan_out: int) -> None:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        tensor.uniform_(-limit, limit)


def _dense(in_features: int, out_features: int, stddev: float | None = None) -> nn.Linear:
    """tf.layers.dense: glorot-uniform kernel (or N(0, stddev)), zero bias."""
    layer = nn.Linear(in_features, out_features)
    if stddev is None:
        _glorot_uniform_(layer.weight, in_features, out_features)
    else:
        with torch.no_grad():
            layer.weight.normal_(0.0, stddev)
    with torch.no_grad():
        layer.bias.zero_()
    return layer


def _init_lstm_(lstm: nn.LSTM) -> None:
    """LSTMBlockCell: one glorot-uniform kernel over [input, hidden] -> 4H; forget bias 1."""
    hidden = lstm.hidden_size
    for name, param in lstm.named_parameters():
        if name.startswith("weight_ih"):
            fan_in = param.shape[1] + hidden
            _glorot_uniform_(param, fan_in, 4 * hidden)
        elif name.startswith("weight_hh"):
            fan_in = lstm.input_size + hidden
            _glorot_uniform_(param, fan_in, 4 * hidden)
        elif name.startswith("bias"):
            with torch.no_grad():
                param.zero_()
                if name.startswith("bias_ih"):
                    param[hidden : 2 * hidden] = 1.0  # PyTorch gate order: i, f, g, o


State = list  # list of (h [1, B, H], c [1, B, H]) per layer


class LSTMStack(nn.Module):
    """Magenta's ``rnn_cell``: a stack of LSTM layers with input dropout on each layer.

    With ``bidirectional=True`` each layer is a forward and a backward LSTM whose outputs are
    concatenated as the next layer's input (``stack_bidirectional_dynamic_rnn``).
    """

    def __init__(
        self, input_size: int, sizes: list[int], keep_prob: float = 1.0, bidirectional: bool = False
    ):
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        self.drop = 1.0 - float(keep_prob)
        self.bidirectional = bidirectional
        layers = []
        in_size = input_size
        for hidden in self.sizes:
            lstm = nn.LSTM(in_size, hidden, batch_first=True, bidirectional=bidirectional)
            _init_lstm_(lstm)
            layers.append(lstm)
            in_size = hidden * (2 if bidirectional else 1)
        self.layers = nn.ModuleList(layers)

    @property
    def output_size(self) -> int:
        return self.sizes[-1] * (2 if self.bidirectional else 1)

    def _dropout(self, x: Any) -> Any:
        if self.drop <= 0.0 or not self.training:
            return x
        if isinstance(x, nn.utils.rnn.PackedSequence):
            return x._replace(data=F.dropout(x.data, self.drop, True))
        return F.dropout(x, self.drop, True)

    def forward(self, x: Any, state: State | None = None) -> tuple[Any, State]:
        new_state: State = []
        for i, lstm in enumerate(self.layers):
            x, (h, c) = lstm(self._dropout(x), None if state is None else state[i])
            new_state.append((h, c))
        return x, new_state


class InitialState(nn.Module):
    """``initial_cell_state_from_embedding``: tanh(Dense(e)) split into every layer's (c, h)."""

    def __init__(self, embedding_size: int, sizes: list[int]):
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        self.dense = _dense(embedding_size, 2 * sum(self.sizes), stddev=0.001)

    def forward(self, embedding: torch.Tensor) -> State:
        flat = torch.tanh(self.dense(embedding))
        parts = flat.split([s for size in self.sizes for s in (size, size)], dim=-1)
        # TF's LSTMStateTuple order is (c, h); torch wants (h, c) shaped [1, B, H]
        return [
            (parts[2 * i + 1].unsqueeze(0).contiguous(), parts[2 * i].unsqueeze(0).contiguous())
            for i in range(len(self.sizes))
        ]


def _one_hot(ids: torch.Tensor, depth: int) -> torch.Tensor:
    """One-hot floats; id -1 is the all-zero start input."""
    return F.one_hot((ids + 1).clamp(min=0), depth + 1)[..., 1:].float()


class CategoricalDecoder(nn.Module):
    """``CategoricalLstmDecoder`` conditioned on an embedding (z, or a conductor output).

    With ``control_size`` > 0 every step's input also holds a control vector (the chord
    one-hot of that step, Magenta's ``c_input``): ``[previous token one-hot, control,
    embedding]``.  Magenta's ``BaseLstmDecoder`` concatenates ``[x_input, z, c_input]``; the
    order here differs only by a permutation of the first layer's input columns, which
    changes nothing the model can represent or learn (the kernel's init is the same for every
    column)."""

    def __init__(self, vocab_size: int, cond_size: int, sizes: list[int], keep_prob: float, control_size: int = 0):
        super().__init__()
        self.vocab_size = vocab_size
        self.control_size = int(control_size)
        self.initial_state = InitialState(cond_size, sizes)
        self.rnn = LSTMStack(vocab_size + self.control_size + cond_size, sizes, keep_prob)
        self.output_projection = _dense(self.rnn.output_size, vocab_size)

    def _inputs(self, ids: torch.Tensor, cond: torch.Tensor, control: torch.Tensor | None = None) -> torch.Tensor:
        onehot = _one_hot(ids, self.vocab_size)
        parts = [onehot]
        if self.control_size:
            if control is None or control.shape[:2] != ids.shape or control.shape[-1] != self.control_size:
                raise ValueError(
                    f"this decoder needs a control input [N, {ids.shape[1]}, {self.control_size}] "
                    f"(the chord of every step), got {None if control is None else tuple(control.shape)}"
                )
            parts.append(control.to(onehot.dtype))
        parts.append(cond.unsqueeze(1).expand(-1, ids.shape[1], -1))
        return torch.cat(parts, dim=-1)

    def forward(
        self,
        x_in: torch.Tensor,
        cond: torch.Tensor,
        sampling_probability: float = 0.0,
        generator: torch.Generator | None = None,
        control: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``[N, L, V]`` for inputs ``x_in [N, L]`` (ids; -1 = zero start input) and
        the control vectors ``[N, L, control_size]`` when the decoder has them.

        With ``sampling_probability`` p > 0 every input after the first is replaced, with
        probability p, by a sample from the model's output at the previous step.
        """
        state = self.initial_state(cond)
        n, length = x_in.shape
        select = None
        if sampling_probability > 0.0 and length > 1:
            select = torch.rand(n, length, generator=generator, device=x_in.device) < sampling_probability
            select[:, 0] = False
            if not bool(select.any()):
                select = None
        if select is None:
            out, _ = self.rnn(self._inputs(x_in, cond, control), state)
            return self.output_projection(out)
        # teacher forcing up to the first sampled input, then step by step
        t0 = int(select.any(dim=0).nonzero()[0])
        ctrl = (lambda a, b: None if control is None else control[:, a:b])
        out, state = self.rnn(self._inputs(x_in[:, :t0], cond, ctrl(0, t0)), state)
        pieces = [self.output_projection(out)]
        prev = pieces[0][:, -1]
        for t in range(t0, length):
            probs = torch.softmax(prev.detach().float(), dim=-1)
            sampled = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            ids = torch.where(select[:, t], sampled, x_in[:, t])
            out, state = self.rnn(self._inputs(ids.unsqueeze(1), cond, ctrl(t, t + 1)), state)
            prev = self.output_projection(out[:, 0])
            pieces.append(prev.unsqueeze(1))
        return torch.cat(pieces, dim=1)

    def step(
        self, ids: torch.Tensor, cond: torch.Tensor, state: State, control: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """One step: ``ids [N]``, ``control [N, control_size]`` (or None)."""
        ctrl = None if control is None else control.unsqueeze(1)
        out, state = self.rnn(self._inputs(ids.unsqueeze(1), cond, ctrl), state)
        return self.output_projection(out[:, 0]), state


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


def slerp(p0: torch.Tensor, p1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (Magenta's ``_slerp``); linear when the vectors are parallel."""
    p0f, p1f = p0.double(), p1.double()
    cos = torch.dot(p0f / p0f.norm(), p1f / p1f.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    so = torch.sin(omega)
    if float(so) < 1e-8:
        out = (1.0 - t) * p0f + t * p1f
    else:
        out = torch.sin((1.0 - t) * omega) / so * p0f + torch.sin(t * omega) / so * p1f
    return out.to(p0.dtype)


def segments(tokens: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``[B, T]`` sequences longer than ``length`` into consecutive segments
    ``[N, length]`` (the last one padded, mask False), dropping segments with no scored
    position.  Sequences of at most ``length`` tokens are returned as they are."""
    b, t = tokens.shape
    if t <= length:
        return tokens, mask
    n = -(-t // length)
    pad = n * length - t
    if pad:
        tokens = torch.cat([tokens, tokens.new_zeros(b, pad)], dim=1)
        mask = torch.cat([mask, mask.new_zeros(b, pad)], dim=1)
    tokens, mask = tokens.reshape(b * n, length), mask.reshape(b * n, length)
    keep = mask.any(dim=1)
    return tokens[keep], mask[keep]


def _lengths(mask: torch.Tensor) -> torch.Tensor:
    """Sequence lengths from a mask: last True position + 1 (at least 1)."""
    t = mask.shape[1]
    idx = torch.arange(1, t + 1, device=mask.device).expand_as(mask)
    return (idx * mask.long()).max(dim=1).values.clamp(min=1)


class MusicVAEModel(Model, nn.Module):
    """MusicVAE speaking musicfw's model protocol, plus encode/decode/sample/interpolate."""

    token_kind = "categorical"
    trainable = True
    #: generate from last.ckpt: with beta annealed from ~0, the held-out negative ELBO that picks
    #: best.ckpt favours early checkpoints (measured: best 0.759 vs last 0.954 accuracy)
    preferred_checkpoint = "last"
    #: nll_sum is the negative ELBO (reconstruction NLL + KL): a bound, so no perplexity
    loss_is_bound = True

    def __init__(self, config: Any, vocab_size: int, chord_classes: int = 0):
        super().__init__()
        self.config = config
        self.vocab_size = int(vocab_size)
        #: chord classes packed into the ids (``melody_chords``: id = chord * n_melody + melody);
        #: 0 for a plain melody or drums vocabulary
        self.chord_classes = int(chord_classes)
        if self.chord_classes and self.vocab_size % self.chord_classes:
            raise ValueError(f"vocab_size {vocab_size} is not a multiple of chord_classes {chord_classes}")
        #: what the encoder reads and the decoder predicts: the melody part of an id
        self.n_melody = self.vocab_size // self.chord_classes if self.chord_classes else self.vocab_size
        #: the chord one-hot of every step is a decoder input (Magenta's chord-conditioned configs)
        self.chord_conditioned = bool(getattr(config, "chord_conditioning", False))
        if self.chord_conditioned and not self.chord_classes:
            raise ValueError("chord_conditioning needs a vocabulary with chords (chord_classes > 0)")
        keep = float(config.dropout_keep_prob)
        self.hierarchical = config.decoder == "hierarchical"
        if config.encoder_input == "drum_roll":
            self.n_bits = int(round(math.log2(self.vocab_size)))
            enc_in = self.n_bits + 1
        else:
            self.n_bits = 0
            enc_in = self.n_melody
        self.encoder = LSTMStack(enc_in, list(config.enc_rnn_size), keep, bidirectional=True)
        self.mu = _dense(self.encoder.output_size, config.z_size, stddev=0.001)
        self.sigma = _dense(self.encoder.output_size, config.z_size, stddev=0.001)
        dec_sizes = list(config.dec_rnn_size)
        if self.hierarchical:
            self.conductor_initial_state = InitialState(config.z_size, dec_sizes)
            self.conductor = LSTMStack(1, dec_sizes, keep)
            cond_size = self.conductor.output_size
        else:
            cond_size = config.z_size
        control = self.chord_classes if self.chord_conditioned else 0
        self.decoder = CategoricalDecoder(self.n_melody, cond_size, dec_sizes, keep, control_size=control)
        self.global_step = 0

    # -- chords -------------------------------------------------------------------------
    def split(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ids -> (melody ids, chord classes per step or None without chords)."""
        if not self.chord_classes:
            return tokens, None
        return tokens % self.n_melody, tokens // self.n_melody

    def _chord_input(self, chords: torch.Tensor | None) -> torch.Tensor | None:
        """The decoder's control input: one-hot chord classes ``[B, T, chord_classes]``."""
        if not self.chord_conditioned:
            return None
        assert chords is not None
        return F.one_hot(chords.long(), self.chord_classes).float()

    def chord_track(
        self, chords: Any, batch_size: int, length: int | None = None, device: Any = None
    ) -> torch.Tensor | None:
        """Chord classes ``[batch_size, length]`` from ``chords``: None (the model's
        ``sample_chords`` progression, one chord per bar), a progression string, or an
        array ``[T]`` / ``[B, T]`` of per-step classes; repeated (or cut) to ``length``
        steps, or one period of it when ``length`` is None.  None for a model without
        chords."""
        if not self.chord_classes:
            return None
        if device is None:
            device = next(self.parameters()).device
        if chords is None or isinstance(chords, str):
            from musicfw.music.chords import parse_triads, progression_steps

            text = self.config.sample_chords if chords is None else chords
            bars = parse_triads(text)
            bar = int(self.config.steps_per_bar)
            chords = progression_steps(bars, bar, len(bars) * bar)
        if torch.is_tensor(chords):
            track = chords.to(device=device, dtype=torch.long)
        else:
            track = torch.as_tensor(np.asarray(chords), dtype=torch.long, device=device)
        if track.dim() == 1:
            track = track.unsqueeze(0)
        if track.shape[0] == 1 and batch_size > 1:
            track = track.expand(batch_size, -1)
        if track.shape[0] != batch_size or track.shape[1] < 1:
            raise ValueError(f"chords of shape {tuple(track.shape)} for {batch_size} sequences")
        if int(track.min()) < 0 or int(track.max()) >= self.chord_classes:
            raise ValueError(f"chord classes must be in [0, {self.chord_classes})")
        if length is None:
            return track.contiguous()
        if track.shape[1] < length:
            reps = -(-length // track.shape[1])
            track = track.repeat(1, reps)
        return track[:, :length].contiguous()

    def join(self, melody: torch.Tensor, chords: torch.Tensor | None) -> torch.Tensor:
        """(melody ids, chord classes) -> vocabulary ids."""
        if not self.chord_classes:
            return melody
        assert chords is not None
        return chords[:, : melody.shape[1]].to(melody.device) * self.n_melody + melody

    # -- schedules ----------------------------------------------------------------------
    def on_train_step(self, global_step: int) -> None:
        self.global_step = int(global_step)

    def beta(self, step: int | None = None) -> float:
        step = self.global_step if step is None else step
        return (1.0 - self.config.beta_rate ** float(step)) * self.config.max_beta

    def sampling_probability(self, step: int | None = None) -> float:
        step = self.global_step if step is None else step
        schedule, rate = self.config.sampling_schedule, float(self.config.sampling_rate)
        if schedule == "constant":
            return rate
        if schedule == "inverse_sigmoid":
            # 1 - k / (k + exp(step / k)), written without overflowing exp
            return 1.0 / (1.0 + rate * math.exp(-float(step) / rate))
        return 1.0 - rate ** float(step)

    # -- encoder ------------------------------------------------------------------------
    def _encoder_input(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.n_bits:
            bits = (tokens.unsqueeze(-1) >> torch.arange(self.n_bits, device=tokens.device)) & 1
            bits = bits.float()
            empty = (tokens == 0).float().unsqueeze(-1)  # roll_input's "no drums" flag
            return torch.cat([bits, empty], dim=-1)
        return _one_hot(tokens, self.n_melody)

    def encode(self, tokens: Any, mask: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens [B, T]`` (or ``[T]``) -> ``(mu, sigma)``, each ``[B, z_size]``.

        ``mask`` (True = real) gives each sequence's length (last True + 1); without it every
        sequence is full length.  The encoder reads the melody only, never the chords (as in
        Magenta, where the chord track is a decoder input alone).
        """
        tokens = self._as_tokens(tokens)
        x = self._encoder_input(self.split(tokens)[0])
        lengths = None if mask is None else _lengths(torch.as_tensor(mask, device=tokens.device).bool())
        if lengths is not None and bool((lengths < tokens.shape[1]).any()):
            x = nn.utils.rnn.pack_padded_sequence(
                x, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
        _, state = self.encoder(x)
        h_n = state[-1][0]  # [2, B, H]: last layer, forward and backward final h
        h = torch.cat([h_n[0], h_n[1]], dim=-1)
        return self.mu(h), F.softplus(self.sigma(h))

    # -- decoder ------------------------------------------------------------------------
    def _conductor_outputs(self, z: torch.Tensor, n_bars: int) -> torch.Tensor:
        state = self.conductor_initial_state(z)
        zeros = z.new_zeros(z.shape[0], n_bars, 1)
        out, _ = self.conductor(zeros, state)
        return out  # [B, n_bars, H]

    def decode_logits(
        self,
        tokens: torch.Tensor,
        z: torch.Tensor,
        sampling_probability: float = 0.0,
        generator: torch.Generator | None = None,
        chords: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``[B, T, n_melody]`` of every position given z, teacher-forced on the
        melody ids ``tokens`` (with scheduled sampling when ``sampling_probability`` > 0);
        ``chords [B, T]``: the chord class of every step (a chord-conditioned model's input)."""
        b, t = tokens.shape
        x_in = torch.cat([tokens.new_full((b, 1), -1), tokens[:, :-1]], dim=1)
        control = self._chord_input(chords)
        if not self.hierarchical:
            return self.decoder(x_in, z, sampling_probability, generator, control)
        bar = int(self.config.steps_per_bar)
        n_bars = -(-t // bar)
        if n_bars * bar != t:
            x_in = torch.cat([x_in, x_in.new_zeros(b, n_bars * bar - t)], dim=1)
            if control is not None:
                control = torch.cat([control, control.new_zeros(b, n_bars * bar - t, control.shape[-1])], dim=1)
        cond = self._conductor_outputs(z, n_bars).reshape(b * n_bars, -1)
        if control is not None:  # every bar's decoder gets its bar's chords (Magenta splits c_input per bar)
            control = control.reshape(b * n_bars, bar, -1)
        logits = self.decoder(x_in.reshape(b * n_bars, bar), cond, sampling_probability, generator, control)
        return logits.reshape(b, n_bars * bar, -1)[:, :t]

    # -- the musicfw protocol -----------------------------------------------------------
    def loss(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The MusicVAE objective of a batch; see the module docstring.

        A MusicVAE models ``max_seq_len``-step segments: longer sequences (whole held-out
        pieces in validation) are scored as consecutive segments, each encoded on its own
        (Magenta evaluates on the same slices it trains on).
        """
        tokens = batch["tokens"].long()
        mask = batch.get("mask")
        mask = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask.bool()
        tokens, mask = segments(tokens, mask, int(self.config.max_seq_len))
        b, t = tokens.shape
        mu, sigma = self.encode(tokens, mask)
        tokens, chords = self.split(tokens)
        z = mu + sigma * torch.randn_like(mu)
        # KL(N(mu, sigma) || N(0, I)) summed over the latent dimensions, nats, per sequence
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 1.0 - 2.0 * torch.log(sigma)).sum(dim=-1)
        p = self.sampling_probability() if self.training else 0.0
        logits = self.decode_logits(tokens, z, p, chords=chords)
        ce = F.cross_entropy(
            logits.reshape(b * t, -1).float(), tokens.reshape(-1), reduction="none"
        ).view(b, t)
        maskf = mask.float()
        r_loss = (ce * maskf).sum(dim=1)  # summed over time, per sequence
        free_nats = float(self.config.free_bits) * LN2
        kl_cost = torch.clamp(kl - free_nats, min=0.0)
        beta = self.beta()
        loss = r_loss.mean() + beta * kl_cost.mean()
        n_targets = mask.sum()
        with torch.no_grad():
            correct = ((logits.argmax(dim=-1) == tokens) & mask).sum()
            accuracy = correct.float() / n_targets.clamp(min=1).float()
        return {
            "loss": loss,
            "nll_sum": (r_loss.sum() + kl.sum()).detach(),
            "n_targets": n_targets,
            "recon_nll": r_loss.mean().detach(),
            "kl": kl.mean().detach(),
            "kl_bits": (kl.mean() / LN2).detach(),
            "kl_cost": kl_cost.mean().detach(),
            "beta": torch.tensor(beta),
            "sampling_probability": torch.tensor(float(p)),
            "accuracy": accuracy,
        }

    def state_from_z(self, z: torch.Tensor, chords: Any = None) -> dict[str, Any]:
        """A decoding state conditioned on ``z [B, z_size]`` and, for a model with chords, on
        ``chords`` (see :meth:`chord_track`; the track repeats when decoding runs past it)."""
        track = self.chord_track(chords, z.shape[0], None, z.device)
        if self.hierarchical:
            return {"z": z, "t": 0, "conductor": self.conductor_initial_state(z), "cond": None, "core": None,
                    "chords": track}
        return {"z": z, "t": 0, "cond": z, "core": self.decoder.initial_state(z), "chords": track}

    def init_state(
        self, batch_size: int, device: Any = None, z: torch.Tensor | None = None,
        generator: torch.Generator | None = None, chords: Any = None,
    ) -> dict[str, Any]:
        """A state for ``batch_size`` sequences with z drawn from the prior N(0, I)
        (or the given ``z``); ``chords`` as in :meth:`state_from_z` (default: the
        ``sample_chords`` progression)."""
        if z is None:
            if device is None:
                device = next(self.parameters()).device
            z = torch.randn(batch_size, self.config.z_size, generator=generator, device=device)
        return self.state_from_z(z, chords)

    def step_melody(self, ids: torch.Tensor | None, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """One decoding step on melody ids (None: the start): logits ``[B, n_melody]``."""
        z = state["z"]
        t = state["t"]
        state = dict(state)
        if self.hierarchical and t % int(self.config.steps_per_bar) == 0:
            out, state["conductor"] = self.conductor(z.new_zeros(z.shape[0], 1, 1), state["conductor"])
            state["cond"] = out[:, 0]
            state["core"] = self.decoder.initial_state(state["cond"])
        if ids is None:
            ids = torch.full((z.shape[0],), -1, dtype=torch.long, device=z.device)
        control = None
        if self.chord_conditioned:
            track = state["chords"]
            control = F.one_hot(track[:, t % track.shape[1]], self.chord_classes).float()
        logits, state["core"] = self.decoder.step(ids, state["cond"], state["core"], control)
        state["t"] = t + 1
        return logits, state

    def step(self, x: Any, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The musicfw protocol's step: ``x`` is a vocabulary id.  With chords in the
        vocabulary the logits cover the whole vocabulary, -inf outside the ids of this
        step's chord (from the state's chord track), so any sampler draws a melody token
        under the given chord."""
        z = state["z"]
        ids = None
        if x is not None:
            ids = torch.as_tensor(x, device=z.device).long().reshape(z.shape[0])
            ids = self.split(ids)[0]
        t = state["t"]
        logits, state = self.step_melody(ids, state)
        if not self.chord_classes:
            return logits, state
        track = state["chords"]
        chord = track[:, t % track.shape[1]]
        full = logits.new_full((logits.shape[0], self.vocab_size), float("-inf"))
        index = chord.unsqueeze(1) * self.n_melody + torch.arange(self.n_melody, device=logits.device)
        return full.scatter(1, index, logits), state

    # -- the VAE API --------------------------------------------------------------------
    def _as_tokens(self, tokens: Any) -> torch.Tensor:
        device = next(self.parameters()).device
        tokens = torch.as_tensor(np.asarray(tokens) if not torch.is_tensor(tokens) else tokens)
        tokens = tokens.to(device).long()
        if tokens.dim() == 1:
            tokens = tokens.unsqueeze(0)
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got {int(tokens.min())}..{int(tokens.max())}")
        return tokens

    @torch.no_grad()
    def decode(
        self,
        z: torch.Tensor,
        length: int | None = None,
        sampler: Any = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        chords: Any = None,
    ) -> torch.Tensor:
        """Decode ``z [B, z_size]`` into tokens ``[B, length]``.

        Each step draws with ``sampler`` (a musicfw sampler) if given, else from the softmax
        at ``temperature`` (0 = argmax).  For a model with chords, ``chords`` is the chord
        track (see :meth:`chord_track`; default the ``sample_chords`` progression): the
        condition of a chord-conditioned decoder, and the chords written into the ids.
        """
        length = int(length or self.config.max_seq_len)
        z = torch.as_tensor(z, dtype=torch.float32, device=next(self.parameters()).device)
        if z.dim() == 1:
            z = z.unsqueeze(0)
        track = self.chord_track(chords, z.shape[0], length, z.device)
        state = self.state_from_z(z, track)
        x = None
        out = []
        for _ in range(length):
            logits, state = self.step_melody(x, state)
            if sampler is not None:
                x = sampler(logits, generator, "categorical")
            elif temperature <= 0:
                x = logits.argmax(dim=-1)
            else:
                probs = torch.softmax(logits.float() / temperature, dim=-1)
                x = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            out.append(x)
        return self.join(torch.stack(out, dim=1), track)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        length: int | None = None,
        sampler: Any = None,
        generator: torch.Generator | None = None,
        chords: Any = None,
    ) -> torch.Tensor:
        """``n`` sequences decoded from z ~ N(0, I): tokens ``[n, length]`` (``chords``: see
        :meth:`decode`)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.z_size, generator=generator, device=device)
        return self.decode(z, length, sampler=sampler, temperature=temperature, generator=generator, chords=chords)

    @torch.no_grad()
    def interpolate(
        self,
        tokens_a: Any,
        tokens_b: Any,
        steps: int = 8,
        temperature: float = 0.0,
        length: int | None = None,
        sampler: Any = None,
        generator: torch.Generator | None = None,
        chords: Any = None,
    ) -> torch.Tensor:
        """Decode ``steps`` points on the great circle between the encodings (mu) of two
        sequences, endpoints included: tokens ``[steps, length]`` (greedy by default).

        For a model with chords, ``chords`` (see :meth:`chord_track`) holds for every step of
        the path; without it each point takes the chord track of the nearer endpoint (A's for
        the first half, B's for the second), as read from the inputs."""
        if steps < 2:
            raise ValueError(f"interpolate needs steps >= 2, got {steps}")
        a, b = self._as_tokens(tokens_a), self._as_tokens(tokens_b)
        mu_a, _ = self.encode(a)
        mu_b, _ = self.encode(b)
        ts = np.linspace(0.0, 1.0, steps)
        zs = torch.stack([slerp(mu_a[0], mu_b[0], float(t)) for t in ts])
        length = int(length or max(a.shape[1], b.shape[1]))
        track = None
        if self.chord_classes:
            if chords is not None:
                track = self.chord_track(chords, steps, length)
            else:
                ends = []
                for seq in (a, b):
                    c = self.split(seq)[1][0, :length]
                    ends.append(torch.cat([c, c.new_zeros(length - len(c))]))
                track = torch.stack([ends[0] if t < 0.5 else ends[1] for t in ts])
        return self.decode(zs, length, sampler=sampler, temperature=temperature, generator=generator, chords=track)


# --------------------------------------------------------------------------------------
# Held-out evaluation (the paper's Table 1)
# --------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_vae(
    model: MusicVAEModel,
    dataloader: Any,
    max_batches: int | None = None,
    temperature: float = 1.0,
    seed: int = 0,
) -> dict[str, float]:
    """Teacher-forced and fully sampled per-step accuracy, ELBO and KL on held-out batches.

    z is drawn from the posterior q(z|x) (as Magenta's eval does).  *Teacher-forced*: the
    decoder reads the true previous token.  *Sampled*: the decoder reads its own samples
    (softmax at ``temperature``, 1 as in Magenta's eval with sampling probability 1) at
    every step, bars included; *greedy*: it reads its own argmax.  Batches may hold whole
    pieces: sequences longer than ``max_seq_len`` are cut into segments as in ``loss``.  Accuracy is the argmax
    prediction against the true token over scored (mask) positions; for melody and drum
    tokens one position is one 16th-note step.  ``elbo`` is per sequence in nats
    (``-(recon_nll + kl)``).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    totals = {"tf": 0, "sampled": 0, "greedy": 0, "targets": 0, "seqs": 0}
    recon = kl_sum = 0.0
    try:
        for i, batch in enumerate(dataloader):
            if max_batches is not None and i >= max_batches:
                break
            tokens = batch["tokens"].to(device).long()
            mask = batch.get("mask")
            mask = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask.to(device).bool()
            tokens, mask = segments(tokens, mask, int(model.config.max_seq_len))
            b, t = tokens.shape
            mu, sigma = model.encode(tokens, mask)
            tokens, chords = model.split(tokens)  # accuracy is on the melody; chords are given
            z = mu + sigma * torch.randn(mu.shape, generator=gen, device=device)
            kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 1.0 - 2.0 * torch.log(sigma)).sum(-1)
            logits = model.decode_logits(tokens, z, chords=chords)
            ce = F.cross_entropy(logits.reshape(b * t, -1).float(), tokens.reshape(-1), reduction="none")
            recon += float((ce.view(b, t) * mask.float()).sum())
            kl_sum += float(kl.sum())
            totals["tf"] += int(((logits.argmax(-1) == tokens) & mask).sum())
            totals["targets"] += int(mask.sum())
            totals["seqs"] += b
            for mode in ("sampled", "greedy"):
                state = model.state_from_z(z, chords)
                x = None
                correct = 0
                for step in range(t):
                    step_logits, state = model.step_melody(x, state)
                    pred = step_logits.argmax(-1)
                    correct += int(((pred == tokens[:, step]) & mask[:, step]).sum())
                    if mode == "greedy":
                        x = pred
                    else:
                        probs = torch.softmax(step_logits.float() / temperature, dim=-1)
                        x = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
                totals[mode] += correct
    finally:
        model.train(was_training)
    n, seqs = max(totals["targets"], 1), max(totals["seqs"], 1)
    return {
        "teacher_forced_accuracy": totals["tf"] / n,
        "sampled_accuracy": totals["sampled"] / n,
        "greedy_accuracy": totals["greedy"] / n,
        "recon_nll": recon / seqs,
        "kl": kl_sum / seqs,
        "kl_bits": kl_sum / seqs / LN2,
        "elbo": -(recon + kl_sum) / seqs,
        "neg_elbo_per_step": (recon + kl_sum) / n,
        "n_sequences": totals["seqs"],
        "n_targets": totals["targets"],
    }
