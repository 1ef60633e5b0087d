"""The generation loop: batching, seeding, stop conditions, prompts, constraints, writing."""

from __future__ import annotations

import numpy as np
import pytest
import symusic
import torch

from musicfw.core.model import Model

import musicfw
from musicfw.core.constraints import grammar_for, violations
from musicfw.plugins.tokenizers.structure import MIDILikeGrammar, REMIGrammar
from musicfw.core.errors import ConfigError, DataError
from musicfw.engine.generation import GenerationResult, build_sampler_chain, generate, write_samples

from conftest import TEST_MIDI

torch.set_num_threads(1)


class ToyGRU(Model, torch.nn.Module):
    """Embedding + GRU cell; random weights give a broad distribution over every id."""

    token_kind = "categorical"

    def __init__(self, vocab_size: int, hidden: int = 16, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.V = vocab_size
        self.embed = torch.nn.Embedding(vocab_size + 1, hidden)
        self.cell = torch.nn.GRUCell(hidden, hidden)
        self.head = torch.nn.Linear(hidden, vocab_size)
        self.calls: list[tuple | None] = []
        self.modes: list[bool] = []

    def init_state(self, batch_size, device=None):
        return torch.zeros(batch_size, self.cell.hidden_size, device=device)

    def step(self, x, h):
        self.calls.append(None if x is None else tuple(x.shape))
        self.modes.append(self.training and torch.is_grad_enabled())
        if x is None:
            x = torch.full((h.shape[0],), self.V, dtype=torch.long)
        h = self.cell(self.embed(x), h)
        return self.head(h), h

    def loss(self, batch):  # not used here
        raise AssertionError("generation never calls loss")


class Successor(Model, torch.nn.Module):
    """A fixed transition table: after id i the next id is (i + 1) mod V (start: ``first``)."""

    token_kind = "categorical"

    def __init__(self, vocab_size: int, first: int = 0):
        super().__init__()
        self.V, self.first = vocab_size, first

    def init_state(self, batch_size, device=None):
        return torch.zeros(batch_size, dtype=torch.long)

    def step(self, x, state):
        nxt = torch.full_like(state, self.first) if x is None else (x + 1) % self.V
        return torch.nn.functional.one_hot(nxt, self.V).float() * 20.0, state

    def loss(self, batch):
        raise AssertionError


class ToyFrames(Model, torch.nn.Module):
    """Per-key sigmoid logits for multi-hot frames."""

    token_kind = "multihot"

    def __init__(self, keys: int):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(keys, keys)
        self.K = keys

    def init_state(self, batch_size, device=None):
        return torch.zeros(batch_size, self.K)

    def step(self, x, state):
        inp = state if x is None else x
        return self.lin(inp) - 1.0, inp

    def loss(self, batch):
        raise AssertionError


@pytest.fixture(scope="module")
def remi():
    return musicfw.build_tokenizer("remi")


@pytest.fixture(scope="module")
def midi_like():
    return musicfw.build_tokenizer("midi_like")


def a_score() -> symusic.Score:
    score = symusic.Score(480)
    track = symusic.Track("piano", 0, False)
    n = 24
    track.notes = symusic.Note.from_numpy(
        (np.arange(n) * 240).astype(np.int32),
        np.full(n, 360, np.int32),
        (60 + np.arange(n) % 12).astype(np.int8),
        np.full(n, 80, np.int8),
    )
    score.tracks.append(track)
    return score


SAMPLER = build_sampler_chain({"name": "temperature", "temperature": 1.0})


# -- the loop ----------------------------------------------------------------------------


def test_n_samples_in_uneven_batches_with_tokens_and_scores(remi):
    result = generate(ToyGRU(remi.vocab_size), remi, SAMPLER, n=5, batch_size=2, max_tokens=40, seed=0)
    assert isinstance(result, GenerationResult)
    assert len(result.tokens) == len(result.scores) == 5
    assert all(t.dtype == np.int64 and 0 < len(t) <= 40 for t in result.tokens)
    assert all(isinstance(s, symusic.Score) for s in result.scores)
    assert result.stats["samples"] == 5
    assert result.stats["tokens_generated"] == sum(len(t) for t in result.tokens)
    assert result.stats["tokens_per_second"] > 0
    assert result.stop_reasons == ["max_tokens"] * 5


def test_one_step_per_token_with_one_token_of_input(remi):
    """Incremental decoding: the model sees one [B] token per step, never the prefix."""
    model = ToyGRU(remi.vocab_size)
    generate(model, remi, SAMPLER, n=3, batch_size=3, max_tokens=25, constraints=False, seed=0)
    assert model.calls[0] is None
    assert model.calls[1:] == [(3,)] * 24  # the 25th token needs no further step
    assert not any(model.modes)  # eval mode, no autograd while generating
    assert model.training  # and the model's mode is given back


def test_seeded_and_reproducible(remi):
    model = ToyGRU(remi.vocab_size)
    a = generate(model, remi, SAMPLER, n=4, max_tokens=30, seed=11)
    b = generate(model, remi, SAMPLER, n=4, max_tokens=30, seed=11)
    c = generate(model, remi, SAMPLER, n=4, max_tokens=30, seed=12)
    assert all(np.array_equal(x, y) for x, y in zip(a.tokens, b.tokens))
    assert not all(np.array_equal(x, y) for x, y in zip(a.tokens, c.tokens))


def test_batching_does_not_change_a_deterministic_sequence(midi_like):
    model = ToyGRU(midi_like.vocab_size)
    greedy = build_sampler_chain("greedy")
    one = generate(model, midi_like, greedy, n=3, batch_size=1, max_tokens=50)
    three = generate(model, midi_like, greedy, n=3, batch_size=3, max_tokens=50)
    for x, y in zip(one.tokens, three.tokens):
        assert np.array_equal(x, y)


def test_end_token_stops_and_is_not_kept():
    tok = musicfw.build_tokenizer("melody", min_pitch=60, max_pitch=71)
    model = Successor(tok.vocab_size, first=3)
    result = generate(model, tok, build_sampler_chain("greedy"), n=2, max_tokens=100, end_token=9)
    assert [t.tolist() for t in result.tokens] == [[3, 4, 5, 6, 7, 8]] * 2
    assert result.stop_reasons == ["end_token", "end_token"]


def test_prompt_is_fed_and_continued(tmp_path):
    tok = musicfw.build_tokenizer("melody", min_pitch=48, max_pitch=84)
    model = Successor(tok.vocab_size)
    path = tmp_path / "prompt.mid"
    a_score().dump_midi(str(path))
    prompt = tok.encode(symusic.Score(str(path)))
    result = generate(model, tok, build_sampler_chain("greedy"), n=2, max_tokens=5, prompt=path)
    for seq in result.tokens:
        assert np.array_equal(seq[: len(prompt)], prompt)
        expected = [(int(prompt[-1]) + k) % tok.vocab_size for k in range(1, 6)]
        assert seq[len(prompt):].tolist() == expected  # the model's state saw the prompt
    assert result.prompt_length == len(prompt) == result.stats["prompt_tokens"]
    assert result.stats["tokens_generated"] == 10
    # a Score works as a prompt too
    again = generate(model, tok, build_sampler_chain("greedy"), n=1, max_tokens=5, prompt=a_score())
    assert np.array_equal(again.tokens[0], result.tokens[0])


def test_prompt_mistakes_are_user_errors(tmp_path, remi):
    model = ToyGRU(remi.vocab_size)
    with pytest.raises(DataError, match="not found"):
        generate(model, remi, SAMPLER, n=1, prompt=tmp_path / "missing.mid")
    (tmp_path / "text.mid").write_text("hello")
    with pytest.raises(DataError, match=r"Cannot use the prompt .*text.mid: too short to be a MIDI file"):
        generate(model, remi, SAMPLER, n=1, prompt=tmp_path / "text.mid")
    with pytest.raises(DataError, match="no tokens"):
        generate(model, remi, SAMPLER, n=1, prompt=symusic.Score(480))
    from musicfw.music.limits import using

    long = symusic.Score(480)
    track = symusic.Track("t")
    for i in range(40):
        track.notes.append(symusic.Note(i * 240, 240, 60 + i % 12, 80))
    long.tracks.append(track)
    with using(max_prompt_tokens=20), pytest.raises(DataError, match="max_prompt_tokens"):
        generate(model, remi, SAMPLER, n=1, prompt=long)


def test_sampler_and_model_kinds_are_checked(remi):
    roll = musicfw.build_tokenizer("pianoroll", min_pitch=60, max_pitch=63)
    with pytest.raises(ConfigError, match="bernoulli"):
        generate(ToyFrames(4), roll, build_sampler_chain("top_p"), n=1)
    with pytest.raises(ConfigError, match="multihot"):
        generate(ToyFrames(remi.vocab_size), remi, SAMPLER, n=1)


def test_multihot_frames_with_bernoulli_and_max_bars():
    tok = musicfw.build_tokenizer("pianoroll", min_pitch=60, max_pitch=71, steps_per_quarter=4)
    result = generate(
        ToyFrames(tok.vocab_size), tok, build_sampler_chain({"name": "bernoulli", "temperature": 1.0}),
        n=3, max_tokens=500, max_bars=2, seed=0,
    )
    for frames in result.tokens:
        assert frames.shape == (32, 12) and frames.dtype == np.uint8  # 2 bars of 16 steps
        assert set(np.unique(frames).tolist()) <= {0, 1}
    assert result.stop_reasons == ["max_bars"] * 3
    assert result.stats["notes"] > 0


def test_remi_max_bars_stops_before_the_bar_too_many(remi):
    result = generate(ToyGRU(remi.vocab_size), remi, SAMPLER, n=4, max_tokens=3000, max_bars=3, seed=2)
    is_bar = remi.token_types == "Bar"
    for seq, why in zip(result.tokens, result.stop_reasons):
        assert why == "max_bars"
        assert int(is_bar[seq].sum()) == 3


def test_max_seconds_midi_like(midi_like):
    result = generate(ToyGRU(midi_like.vocab_size), midi_like, SAMPLER, n=3, max_tokens=5000, max_seconds=4.0, seed=0)
    shift = np.where(midi_like.token_types == "TimeShift", midi_like.token_values, 0) / 100.0
    for seq, why in zip(result.tokens, result.stop_reasons):
        assert why == "max_seconds"
        elapsed = np.cumsum(shift[seq])
        assert elapsed[-1] >= 4.0 and elapsed[-2] < 4.0  # stopped at the shift that crossed 4 s


def test_max_bars_needs_bars(midi_like):
    with pytest.raises(ConfigError, match="max_seconds"):
        generate(ToyGRU(midi_like.vocab_size), midi_like, SAMPLER, n=1, max_bars=2)


def test_bad_sizes_are_config_errors(remi):
    with pytest.raises(ConfigError):
        generate(ToyGRU(remi.vocab_size), remi, SAMPLER, n=0)
    with pytest.raises(ConfigError):
        generate(ToyGRU(remi.vocab_size), remi, SAMPLER, n=1, max_seconds=-1)


# -- constraints -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["remi", "midi_like"])
def test_constraints_remove_every_dropped_token(name):
    tok = musicfw.build_tokenizer(name)
    model = ToyGRU(tok.vocab_size, seed=1)
    free = generate(model, tok, SAMPLER, n=8, max_tokens=200, constraints=False, seed=0)
    assert free.stats["invalid_rate"] > 0.05  # a random model breaks the grammar often
    assert not free.stats["constrained"]
    for seed in range(3):
        held = generate(model, tok, SAMPLER, n=8, max_tokens=200, constraints=True, seed=seed)
        assert held.stats["constrained"]
        assert held.stats["invalid_tokens"] == 0
        assert all(tok.count_invalid(t) == 0 for t in held.tokens)
        assert held.stats["notes"] > 0


@pytest.mark.parametrize("name", ["remi", "midi_like"])
@pytest.mark.parametrize("budget", [1, 2, 3, 4, 5, 7])
def test_constraints_hold_at_tiny_budgets(name, budget):
    """A note is only started when it can be finished within max_tokens."""
    tok = musicfw.build_tokenizer(name)
    hot = build_sampler_chain({"name": "temperature", "temperature": 3.0})
    held = generate(ToyGRU(tok.vocab_size, seed=budget), tok, hot, n=16, max_tokens=budget, seed=budget)
    assert held.stats["invalid_tokens"] == 0


@pytest.mark.parametrize("name", ["remi", "midi_like"])
def test_constraints_hold_after_a_prompt(name):
    tok = musicfw.build_tokenizer(name)
    held = generate(ToyGRU(tok.vocab_size), tok, SAMPLER, n=4, max_tokens=60, prompt=a_score(), seed=0)
    assert held.stats["invalid_tokens"] == 0


def test_grammar_is_found_from_the_vocabulary(remi, midi_like):
    assert isinstance(grammar_for(remi, 2), REMIGrammar)
    assert isinstance(grammar_for(midi_like, 2), MIDILikeGrammar)
    assert grammar_for(musicfw.build_tokenizer("melody")) is None
    assert grammar_for(musicfw.build_tokenizer("pianoroll")) is None


def test_remi_grammar_rules(remi):
    g = grammar_for(remi, 1)
    ids = {name: i for i, name in enumerate(remi.vocab)}
    assert g.mask()[0].nonzero()[0].tolist() == [ids["Bar"]]  # a piece starts with a bar
    for name in ("Bar", "Position_4"):
        g.update(np.array([ids[name]]))
    allowed = g.mask()[0]
    assert not allowed[ids["Position_3"]] and not allowed[ids["Position_4"]] and allowed[ids["Position_5"]]
    assert not allowed[ids["Position_16"]]  # beyond a 4/4 bar of 16 positions
    velocity = next(i for i, n in enumerate(remi.vocab) if n.startswith("Velocity"))
    assert not allowed[ids["Duration_4"]] and not allowed[velocity]
    assert not allowed[[i for i, n in enumerate(remi.vocab) if n.startswith("TimeSig")]].any()
    assert allowed[ids["Pitch_60"]] and not g.mask(2)[0, ids["Pitch_60"]]  # a note needs 3 tokens
    g.update(np.array([ids["Pitch_60"]]))
    assert g.mask()[0].sum() == sum(n.startswith("Velocity") for n in remi.vocab)
    # after Bar a TimeSig may change the bar length; 3/4 has 12 positions
    g2 = grammar_for(remi, 1)
    for name in ("Bar", "TimeSig_3/4"):
        assert g2.mask()[0, ids[name]]
        g2.update(np.array([ids[name]]))
    assert g2.mask()[0, ids["Position_11"]] and not g2.mask()[0, ids["Position_12"]]


def test_midi_like_grammar_rules(midi_like):
    g = grammar_for(midi_like, 1)
    on, off = midi_like.token_id("NoteOn", 60), midi_like.token_id("NoteOff", 60)
    shift = midi_like.token_id("TimeShift", 10)
    assert not g.mask()[0, off]  # nothing sounds
    g.update(np.array([on]))
    assert not g.mask()[0, off] and not g.mask()[0, on]  # a zero-length note would be dropped
    assert g.mask(1)[0].nonzero()[0].tolist() == list(np.flatnonzero(midi_like.token_types == "TimeShift"))
    g.update(np.array([shift]))
    assert g.mask()[0, off] and g.mask()[0, on]


def _corpus_files():
    return sorted((TEST_MIDI / "one_track").glob("*.mid"))[:3]


@pytest.mark.parametrize("name, params", [("remi", {}), ("remi", {"use_chords": True, "use_programs": True}), ("midi_like", {})])
def test_every_encoded_piece_follows_the_grammar(name, params):
    """The grammar is not stricter than the tokenizer: real encodings break no rule."""
    tok = musicfw.build_tokenizer(name, **params)
    scores = [a_score()]
    files = _corpus_files()
    assert files, f"the test MIDI corpus is missing: {TEST_MIDI}"
    scores += [symusic.Score(str(f)) for f in files]
    for score in scores:
        ids = tok.encode(score)[:1500]
        assert violations(grammar_for(tok, 1), ids) == []


# -- writing -----------------------------------------------------------------------------


def test_write_samples_never_overwrites(tmp_path, remi, monkeypatch, capsys):
    from musicfw.music import render

    monkeypatch.setenv(render.SOUNDFONT_ENV, "")
    monkeypatch.setattr(render, "SOUNDFONT_PATHS", (str(tmp_path / "none.sf2"),))
    monkeypatch.setattr(render, "_said", set())
    result = generate(ToyGRU(remi.vocab_size), remi, SAMPLER, n=2, max_tokens=80, seed=0)
    first = write_samples(result, tmp_path / "s")
    second = write_samples(result, tmp_path / "s")
    names = sorted(p.name for p in first + second)
    assert names == [f"sample_{i:03d}.{ext}" for i in range(4) for ext in ("mid", "png")]
    assert all(p.stat().st_size > 0 for p in first + second)
    assert symusic.Score(str(first[0])).note_num() == result.scores[0].note_num()
    err = capsys.readouterr().err
    assert err.count("no General MIDI soundfont found") == 1  # said once


def test_write_samples_wav_when_a_soundfont_renders(tmp_path, remi):
    from musicfw.music.render import AudioRenderer

    renderer = AudioRenderer()
    if not renderer.available:
        pytest.skip("no General MIDI soundfont on this machine")
    assert renderer.render(a_score(), tmp_path / "probe.wav") is not None  # the pinned symusic renders
    result = generate(ToyGRU(remi.vocab_size), remi, SAMPLER, n=1, max_tokens=80, seed=0)
    paths = write_samples(result, tmp_path / "s")
    wav = [p for p in paths if p.suffix == ".wav"]
    assert len(wav) == 1 and wav[0].stat().st_size > 1000


def test_soundfont_path_that_does_not_exist_is_a_config_error(tmp_path):
    from musicfw.music.render import find_soundfont

    with pytest.raises(ConfigError, match="no soundfont file"):
        find_soundfont(tmp_path / "missing.sf2")


def test_piano_roll_png(tmp_path):
    from PIL import Image

    from musicfw.music.render import piano_roll_array, piano_roll_png

    roll, lo, spq = piano_roll_array(a_score())
    assert lo == 60 and roll.shape[0] == 12 and spq == 4
    assert roll[0, :3].tolist() == [1, 1, 1] and roll[0, 3] == 0  # C4: 360 ticks = 3 steps
    path = piano_roll_png(a_score(), tmp_path / "roll.png", title="x")
    with Image.open(path) as img:
        assert img.size[0] >= 600 and img.size[1] >= 300
    empty = piano_roll_png(symusic.Score(480), tmp_path / "empty.png")
    assert empty.stat().st_size > 0


def test_cpu_threads_are_set_while_decoding_and_restored(remi):
    seen = []

    class Spy(ToyGRU):
        def step(self, x, h):
            seen.append(torch.get_num_threads())
            return super().step(x, h)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        generate(Spy(remi.vocab_size), remi, SAMPLER, n=1, max_tokens=5, cpu_threads=1)
        assert set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        generate(Spy(remi.vocab_size), remi, SAMPLER, n=1, max_tokens=5, cpu_threads=None)
        assert set(seen) == {2}
    finally:
        torch.set_num_threads(before)


def test_sampling_mode_restores_threads_and_train_mode_even_when_decoding_fails():
    import torch

    from musicfw.engine.generation import sampling_mode

    model = torch.nn.Linear(2, 2)
    model.train()
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        with sampling_mode(model, None, seed=3, cpu_threads=1) as (device, gen):
            assert not model.training and not torch.is_grad_enabled()
            assert torch.get_num_threads() == 1 and device == torch.device("cpu")
            first = torch.rand(3, generator=gen)
            raise RuntimeError("boom")
    assert model.training and torch.is_grad_enabled() and torch.get_num_threads() == before
    with sampling_mode(model, None, seed=3) as (_, gen):  # the same seed draws the same numbers
        assert torch.equal(torch.rand(3, generator=gen), first)
