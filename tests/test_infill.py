"""Bar infilling (issue 26 part 1): the MMM transform, the vocabulary, constrained decoding of
the filled bars, ``musicfw infill`` and its refusals, ``train.infill`` config errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import symusic

import musicfw
from conftest import TEST_MIDI, untrained_infill_run
from musicfw.core.errors import ConfigError, UserError
from musicfw.engine.infill import (
    MARKERS,
    InfillTokenizer,
    InfillTransform,
    bar_bounds,
    bar_ticks,
    fill_tokens,
    layout,
    prompt_for,
    reassemble,
)

SONG = TEST_MIDI / "one_track" / "POP909_008.mid"


def _chorale_like(n_bars: int = 8, seed: int = 0) -> symusic.Score:
    """A small 4/4 piece: two notes per beat (a chord tone and a melody note)."""
    rng = np.random.default_rng(seed)
    score = symusic.Score(480)
    track = symusic.Track("piano", 0, False)
    for b in range(n_bars):
        for beat in range(4):
            t = (b * 4 + beat) * 480
            track.notes.append(symusic.Note(t, 480, int(rng.integers(48, 60)), 80))
            track.notes.append(symusic.Note(t, 240, int(rng.integers(60, 80)), 90))
    score.tracks.append(track)
    return score


@pytest.fixture(scope="module", params=["spm", "mmm"])
def tok(request):
    return InfillTokenizer(musicfw.build_tokenizer("remi"), layout=request.param)


def _filled_bars(tok, filled, k):
    """The k bars of a fill (``bar End ... bar End`` in mmm, ``bar ... bar R`` in spm, R the
    opener that ends the last bar), each without its End (or R), after checking the markers."""
    filled = np.asarray(filled)
    assert not np.isin(filled, [tok.ids.fill, tok.ids.sep]).any()
    if tok.layout == "spm":
        assert (filled != tok.ids.end).all() and tok.is_bar[filled[-1]]
        filled = filled[:-1]
        ends = np.array([len(filled)])
    else:
        ends = np.flatnonzero(filled == tok.ids.end)
        assert len(ends) == k and ends[-1] == len(filled) - 1
    body = filled[filled != tok.ids.end]
    opens = np.flatnonzero(tok.is_bar[body])
    if tok.layout == "mmm":  # each End closes one bar, the next bar opens right after it
        assert list(opens) == [0] + [int(e) + 1 - i for i, e in enumerate(ends[:-1], start=1)]
    assert len(opens) == k and opens[0] == 0
    return np.split(body, opens[1:])


# -- the transform ---------------------------------------------------------------------------


def test_layout_moves_whole_bars_and_places_the_markers(tok):
    tokens = tok.encode(_chorale_like(8))
    bounds = bar_bounds(tokens, tok.is_bar)
    assert len(bounds) - 1 == 8
    ids = tok.ids
    seq, head = layout(tokens, bounds, 3, 2, ids, tok.layout)
    s, e = bounds[3], bounds[5]
    if tok.layout == "spm":  # Fill Fill right Sep left Sep bar_4 bar_5 Bar; scored from after bar_4's opener
        right = tokens[e:]
        assert list(seq[:2]) == [ids.fill, ids.fill]
        assert list(seq[2 : 2 + len(right)]) == list(right) and seq[2 + len(right)] == ids.sep
        assert list(seq[3 + len(right) : 3 + len(right) + s]) == list(tokens[:s])  # left
        assert seq[head - 2] == ids.sep and seq[head - 1] == tokens[s]  # the gap's start, then its first opener
        assert list(seq[head - 1 :]) == list(tokens[s : e + 1])  # the gap, then the right context's opener
        prompt = prompt_for(tokens, bounds, 3, 2, ids, "spm")
        assert list(prompt) == list(seq[: head - 1])
        assert list(reassemble(prompt, seq[head - 1 :], ids, "spm")) == list(tokens)
        return
    assert list(seq[:s]) == list(tokens[:s])  # left context untouched
    assert list(seq[s : s + 2]) == [ids.fill, ids.fill]
    right = tokens[e:]
    assert list(seq[s + 2 : s + 2 + len(right)]) == list(right)
    assert seq[head - 1] == ids.sep
    tail = seq[head:]
    ends = np.flatnonzero(tail == ids.end)
    assert len(ends) == 2 and ends[-1] == len(tail) - 1
    bars = np.split(tail, ends + 1)[:2]
    assert list(bars[0][:-1]) == list(tokens[bounds[3] : bounds[4]])
    assert list(bars[1][:-1]) == list(tokens[bounds[4] : bounds[5]])
    assert tok.is_bar[bars[0][0]] and tok.is_bar[bars[1][0]]
    # the prompt is the layout up to the separator; putting the bars back gives the piece
    assert list(prompt_for(tokens, bounds, 3, 2, ids, "mmm")) == list(seq[:head])
    assert list(reassemble(seq[:head], seq[head:], ids, "mmm")) == list(tokens)


class _TokenCost:
    """A stand-in model whose NLL of each scored token is a cost looked up by its id, so a
    test can see exactly which tokens a measure scores."""

    max_context = None

    def __init__(self, cost):
        self.cost = np.asarray(cost, dtype=np.float64)

    def loss(self, batch):
        import torch

        tokens, mask = batch["tokens"][0].numpy(), batch["mask"][0].numpy()
        return {"nll_sum": torch.tensor(float(self.cost[tokens[mask]].sum())), "n_targets": torch.tensor(int(mask.sum()))}


def test_gap_scoring_counts_the_same_decisions_in_both_layouts(tok):
    """Both sides vs left only scores each filled bar's tokens and where each bar ends: End in
    the MMM layout, the next bar's opener in the plain sequence; the opener that closes the
    bar before the gap is left context in both.  Scoring the gap's own tokens, End left out
    (the first measure), counted k bar endings in the plain sequence and none in the layout."""
    from musicfw.engine.infill import gap_nll, span_nll

    tokens = tok.encode(_chorale_like(8))
    bounds = bar_bounds(tokens, tok.is_bar)
    s, e = int(bounds[3]), int(bounds[5])
    notes = [t for t in tokens[s:e] if not tok.is_bar[t]]
    # a bar ending costs 1 whichever token makes it (End, or the next opener); each note token 0.5
    cost = np.full(tok.vocab_size, 0.5)
    cost[tok.is_bar.nonzero()[0]] = 1.0
    cost[tok.ids.end] = 1.0
    r = span_nll(_TokenCost(cost), tok, tokens, 3, 2)
    assert r["n"] == e - s and r["n_notes"] == len(notes)
    # plain: the inner opener and the opener after the gap; mmm: 2 End (+ the 2 openers after
    # Sep/End); spm: the inner opener and the opener after the gap (exactly the plain decisions)
    assert r["left"] == pytest.approx(0.5 * len(notes) + 2.0)
    assert r["both"] == pytest.approx(0.5 * len(notes) + 2.0 + (2.0 if tok.layout == "mmm" else 0.0))
    assert r["both_notes"] == r["left_notes"] == pytest.approx(0.5 * len(notes))
    # the held-out measure: the same gap (bars 4-5 of 8, in a window of bars 1-7), summed the same way
    g = gap_nll(_TokenCost(cost), tok, [tokens], k=2)
    assert g["pieces"] == 1 and g["gap_tokens"] == e - s
    assert g["ratio_both_over_left"] == pytest.approx(r["both"] / r["left"])
    assert g["nll_left_per_token"] == pytest.approx(r["left"] / (e - s))
    assert g["ratio_notes_both_over_left"] == pytest.approx(1.0)


class _BoundedCost(_TokenCost):
    """_TokenCost with a bounded context that records what it reads."""

    def __init__(self, cost, max_context):
        super().__init__(cost)
        self.max_context, self.read = max_context, []

    def loss(self, batch):
        self.read.append(batch["tokens"][0].numpy().copy())
        return super().loss(batch)


def test_gap_scoring_within_a_bounded_context_drops_the_farthest_bars(tok):
    """A layout longer than the model's context is not cut by a sliding window (which would
    drop its front: in spm the Fill markers and the right context) but read as fill_tokens
    reads a song, the bars farthest from the gap dropped; the left-only sequence reads the
    same left bars."""
    from musicfw.engine.infill import gap_nll

    tokens = tok.encode(_chorale_like(8))
    bounds = bar_bounds(tokens, tok.is_bar)
    cost = np.full(tok.vocab_size, 0.5)
    whole = gap_nll(_TokenCost(cost), tok, [tokens], k=2)
    assert whole["context_trimmed"] == 0
    lo, hi = whole["per_piece"][0]["window"]
    full = len(layout(tokens[bounds[lo] : bounds[hi]], bounds[lo : hi + 1] - bounds[lo], 3 - lo, 2, tok.ids, tok.layout)[0])
    model = _BoundedCost(cost, full - 1)
    g = gap_nll(model, tok, [tokens], k=2)
    assert g["context_trimmed"] == 1 and g["gap_tokens"] == whole["gap_tokens"]
    lo2, hi2 = g["per_piece"][0]["window"]
    assert (lo2, hi2) in ((lo + 1, hi), (lo, hi - 1))  # one bar fewer, the gap's bars kept
    assert g["per_piece"][0]["gap"] == whole["per_piece"][0]["gap"]
    assert all(len(x) <= model.max_context for x in model.read)  # no sliding window was needed
    both, plain = model.read[0], model.read[1]
    if tok.layout == "spm":
        assert list(both[:2]) == [tok.ids.fill] * 2
    assert int((both == tok.ids.fill).sum()) == 2 and int((both == tok.ids.sep).sum()) == (2 if tok.layout == "spm" else 1)
    # the left-only sequence starts where the layout's left context starts
    assert list(plain[: bounds[3] - bounds[lo2]]) == list(tokens[bounds[lo2] : bounds[3]])
    assert g["ratio_notes_both_over_left"] == pytest.approx(1.0)


def test_transform_treats_every_token_of_a_bar_alike(tok):
    """Bars are cut at bar openers only: tokens of any type after a Bar (control tokens a
    tokenizer option adds, chords, programs) travel with their bar."""
    remi = musicfw.build_tokenizer("remi", use_chords=True, use_programs=True)
    wrapped = InfillTokenizer(remi, layout=tok.layout)
    tokens = remi.encode(_chorale_like(6))
    transform = InfillTransform(wrapped.is_bar, wrapped.ids, 10_000, 1.0, 2, 2, tok.layout)
    out = transform(tokens, seed=7)
    assert (out == wrapped.ids.fill).sum() == 2 and (out == wrapped.ids.end).sum() == (2 if tok.layout == "mmm" else 0)
    assert (out == wrapped.ids.sep).sum() == (1 if tok.layout == "mmm" else 2)
    plain = out[out < remi.vocab_size]
    if tok.layout == "spm":  # the opener after the gap is there twice: ending the gap, opening the right context
        plain = np.delete(plain, int(np.flatnonzero(out[out < remi.vocab_size] == out[-1])[-1]))
    assert sorted(plain.tolist()) == sorted(tokens.tolist())  # nothing lost, nothing added
    if tok.layout == "mmm":
        head = int(np.flatnonzero(out == wrapped.ids.sep)[0]) + 1
    else:  # after the left context: the k filled bars are the last k openers' bars
        head = int(np.flatnonzero(out == wrapped.ids.sep)[1]) + 1
    assert list(reassemble(out[:head], out[head:], wrapped.ids, tok.layout)) == list(tokens)


def test_transform_probability_length_and_determinism(tok):
    tokens = tok.encode(_chorale_like(12))
    ids = tok.ids
    seq_len = 200
    window = tokens[:seq_len]
    t = InfillTransform(tok.is_bar, ids, seq_len, 0.5, 1, 3, tok.layout)
    kinds = []
    for seed in range(40):
        out = t(window, seed)
        assert len(out) <= seq_len
        assert np.array_equal(out, t(window, seed))  # the window's seed decides
        n_fill = int((out == ids.fill).sum())
        kinds.append(n_fill)
        if n_fill:
            n_end = n_fill if tok.layout == "mmm" else 0
            n_sep = 1 if tok.layout == "mmm" else 2
            assert 1 <= n_fill <= 3 and (out == ids.end).sum() == n_end and (out == ids.sep).sum() == n_sep
        else:
            assert np.array_equal(out, window)
    assert 0 < sum(k > 0 for k in kinds) < 40  # both kinds of examples
    never = InfillTransform(tok.is_bar, ids, seq_len, 0.0, 1, 3, tok.layout)
    assert all(np.array_equal(never(window, s), window) for s in range(10))


def test_vocabulary_ids_unchanged_and_default_off():
    remi = musicfw.build_tokenizer("remi")
    wrapped = InfillTokenizer(remi)
    assert wrapped.vocab[: remi.vocab_size] == remi.vocab
    assert wrapped.vocab[remi.vocab_size :] == list(MARKERS)
    score = _chorale_like(4)
    assert np.array_equal(wrapped.encode(score), remi.encode(score))
    cfg = musicfw.load_config({"data": {"name": "bach_chorales"}, "tokenizer": {"name": "remi"},
                               "model": {"name": "lstm", "hidden_size": 8, "num_layers": 1, "embed_dim": 4}})
    assert cfg.train.infill.enabled is False
    from musicfw.engine.assemble import build_experiment

    built = build_experiment(cfg, musicfw.get_registries())
    assert not isinstance(built.tokenizer, InfillTokenizer) and built.model.vocab_size == remi.vocab_size
    cfg.train.infill.enabled = True
    built = build_experiment(cfg, musicfw.get_registries())
    assert isinstance(built.tokenizer, InfillTokenizer) and built.model.vocab_size == remi.vocab_size + 3
    # plain generation with an infilling model never writes a marker
    g = built.tokenizer.grammar(2)
    assert not g.mask(None)[:, remi.vocab_size :].any()


# -- config errors ---------------------------------------------------------------------------


def _cfg(**infill):
    return {"data": {"name": "bach_chorales"}, "tokenizer": {"name": "remi"},
            "model": {"name": "lstm", "hidden_size": 8, "num_layers": 1, "embed_dim": 4},
            "train": {"infill": {"enabled": True, **infill}}}


@pytest.mark.parametrize("infill, key", [({"probability": 1.5}, "train.infill.probability"),
                                          ({"min_bars": 0}, "train.infill.min_bars"),
                                          ({"max_bars": -1}, "train.infill.max_bars"),
                                          ({"bars": 2}, "train.infill.bars"),
                                          ({"layout": "ilm"}, "train.infill.layout")])
def test_config_values_are_checked(infill, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        musicfw.load_config(_cfg(**infill))


def test_the_layout_is_read_back_from_tokenizer_json(tmp_path):
    """A run's tokenizer.json names its layout; the first infilling runs (all mmm) wrote
    ``format: mmm`` too; an unknown format is refused naming the file."""
    import json

    from musicfw.engine.infill import load_run_tokenizer

    remi = musicfw.build_tokenizer("remi")
    for kind in ("spm", "mmm"):
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(InfillTokenizer(remi, layout=kind).to_dict()))
        back = load_run_tokenizer(path)
        assert isinstance(back, InfillTokenizer) and back.layout == kind
    doc = InfillTokenizer(remi).to_dict()
    doc["infill"]["format"] = "anticipation"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"bad\.json.*format is 'anticipation'.*spm, mmm"):
        load_run_tokenizer(tmp_path / "bad.json")


def test_config_errors_found_by_the_build():
    from musicfw.engine.assemble import build_experiment

    reg = musicfw.get_registries()
    with pytest.raises(ConfigError, match=r"min_bars \(3\) must be <= train\.infill\.max_bars \(2\)"):
        build_experiment(musicfw.load_config(_cfg(min_bars=3, max_bars=2)), reg)
    melody = {**_cfg(), "tokenizer": {"name": "pianoroll"}, "sampler": {"name": "bernoulli"}}
    with pytest.raises(ConfigError, match="does not mark bars with tokens"):
        build_experiment(musicfw.load_config(melody), reg)
    markov = {**_cfg(), "model": {"name": "markov"}}
    with pytest.raises(ConfigError, match="fitted by counting"):
        build_experiment(musicfw.load_config(markov), reg)


# -- constrained decoding --------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tok):
    import torch

    torch.manual_seed(0)
    return musicfw.build_model("lstm", tokenizer=tok, hidden_size=16, num_layers=1, embed_dim=8).eval()


@pytest.mark.parametrize("k, budget", [(3, None), (3, 7), (2, 4), (1, 400)])
def test_exactly_k_complete_bars_come_back(tok, model, k, budget):
    """An untrained model (any token is likely) still writes exactly k bars, each opened by a
    bar token and closed where the grammar allows, within the budget (forced ends)."""
    sampler = musicfw.build_sampler("temperature", temperature=1.0)
    tokens = tok.encode(_chorale_like(8))
    bounds = bar_bounds(tokens, tok.is_bar)
    res = fill_tokens(model, tok, sampler, tokens, 2, k, n=4, max_tokens=budget, seed=1)
    for filled, seq in zip(res.filled, res.sequences):
        if budget is not None:
            assert len(filled) <= budget
        for bar in _filled_bars(tok, filled, k):
            assert tok.is_bar[bar[0]] and not tok.is_bar[bar[1:]].any()
        new_bounds = bar_bounds(seq, tok.is_bar)
        # every filled bar complete: nothing of the left context and the filled bars is dropped
        # (a time signature written in a filled bar may re-time the right context's tokens;
        # the written song keeps the input's own notes there)
        assert tok.count_invalid(seq[: new_bounds[2 + k]]) == 0
        assert len(new_bounds) == len(bounds)  # as many bars as the piece had
        assert list(seq[: bounds[2]]) == list(tokens[: bounds[2]])
        assert list(seq[new_bounds[2 + k] :]) == list(tokens[bounds[2 + k] :])


def test_a_bounded_context_reads_the_bars_nearest_the_gap(tok):
    import torch

    torch.manual_seed(0)
    tf = musicfw.build_model("transformer", tokenizer=tok, d_model=16, num_layers=1, num_heads=2, d_ff=32,
                             max_context=128).eval()
    tokens = tok.encode(_chorale_like(8))
    assert len(tokens) > 128
    bounds = bar_bounds(tokens, tok.is_bar)
    res = fill_tokens(tf, tok, musicfw.build_sampler("greedy"), tokens, 3, 1, n=2, seed=0)
    for filled, seq in zip(res.filled, res.sequences):
        assert len(_filled_bars(tok, filled, 1)) == 1
        nb = bar_bounds(seq, tok.is_bar)
        assert list(seq[: bounds[3]]) == list(tokens[: bounds[3]])  # the whole song comes back
        assert list(seq[nb[4] :]) == list(tokens[bounds[4] :])


def test_a_sampler_that_reads_the_history(tok, model):
    from musicfw.core.sampler import SamplerChain

    chain = SamplerChain([musicfw.build_sampler("repetition_penalty"), musicfw.build_sampler("temperature")])
    res = fill_tokens(model, tok, chain, tok.encode(_chorale_like(6)), 2, 2, n=2, seed=0)
    assert all(len(_filled_bars(tok, f, 2)) == 2 for f in res.filled)


def test_budget_too_small_is_a_clear_error(tok, model):
    tokens = tok.encode(_chorale_like(8))
    need = 6 if tok.layout == "mmm" else 4  # 3 bars: opener + End each, or 3 openers and one End
    with pytest.raises(UserError, match=f"need at least {need} more"):
        fill_tokens(model, tok, musicfw.build_sampler("greedy"), tokens, 2, 3, max_tokens=need - 1)


# -- musicfw infill ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {"infill": untrained_infill_run(root, "infill", {"name": "remi"}, infill=True),
            "plain": untrained_infill_run(root, "plain", {"name": "remi"}, infill=False)}


def _notes_outside(score: symusic.Score, t0: int, t1: int) -> list[tuple]:
    rows = []
    for tr in score.tracks:
        a = tr.notes.numpy()
        m = (a["time"] < t0) | (a["time"] >= t1)
        rows += [(tr.name, tr.program, *(int(a[k][j]) for k in ("time", "duration", "pitch", "velocity")))
                 for j in np.flatnonzero(m)]
    return sorted(rows)


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_infill_command_keeps_every_note_outside_the_bars(runs, tmp_path, tok):
    from musicfw.cli import main

    song = tmp_path / "song.mid"
    song.write_bytes(SONG.read_bytes())
    before = _digest(song)
    out = tmp_path / "out"
    assert main(["infill", "--run", str(runs["infill"]), str(song), "--bars", "5-6", "--n", "2",
                 "--seed", "3", "--out", str(out)]) == 0
    assert _digest(song) == before
    files = sorted(out.glob("*.mid"))
    assert [f.name for f in files] == ["song_infill_5-6_000.mid", "song_infill_5-6_001.mid"]
    original = symusic.Score(str(song))
    grid = tok.decode(tok.encode(original))
    ticks = bar_ticks(grid, 8) * original.ticks_per_quarter // grid.ticks_per_quarter
    t0, t1 = int(ticks[4]), int(ticks[6])
    inside_before = len(original.tracks[0].notes) - len(_notes_outside(original, t0, t1))
    changed = 0
    for f in files:
        filled = symusic.Score(str(f))
        assert _notes_outside(filled, t0, t1) == _notes_outside(original, t0, t1)
        inside = sum(len(t.notes) for t in filled.tracks) - len(_notes_outside(filled, t0, t1))
        changed += inside != inside_before
    assert (out / "infill.json").is_file()
    assert changed  # the bars were replaced by something else


def test_api_fills_a_score(runs):
    result = musicfw.infill(runs["infill"], _chorale_like(8), "4", n=2, seed=0)
    assert result.bars == (4, 4) and result.n_bars == 8 and len(result.scores) == 2 and result.paths == []


@pytest.mark.parametrize(
    "which, bars, song, message",
    [
        ("infill", "7-200", "song", "outside .*which has 140 bars"),
        ("infill", "8-5", "song", "empty range"),
        ("infill", "0-2", "song", "empty range"),
        ("infill", "x", "song", "give a bar or a range"),
        ("infill", "2-3", "drums", "cannot represent 16 of the 16 notes .*drum track"),
        ("infill", "2-3", "missing", "no such MIDI file"),
        ("plain", "2-3", "song", "not trained to infill"),
    ],
)
def test_bad_input_is_one_clear_error_before_any_output(runs, tmp_path, capsys, which, bars, song, message):
    from musicfw.cli import main

    path = tmp_path / "song.mid"
    if song == "song":
        path.write_bytes(SONG.read_bytes())
    elif song == "drums":
        s = symusic.Score(480)
        drums = symusic.Track("drums", 0, True)
        for i in range(16):
            drums.notes.append(symusic.Note(i * 480, 240, 36, 100))
        s.tracks.append(drums)
        s.dump_midi(str(path))
    before = _digest(path) if path.exists() else None
    out = tmp_path / "out"
    code = main(["infill", "--run", str(runs[which]), str(path), "--bars", bars, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    import re

    assert re.search(message, " ".join(err.split())), err
    assert not out.exists()
    assert not list((runs[which] / "samples").glob("infill-*")) if (runs[which] / "samples").exists() else True
    if before is not None:
        assert _digest(path) == before


def test_api_refuses_a_model_not_trained_to_infill(runs):
    with pytest.raises(UserError, match="not trained to infill"):
        musicfw.infill(runs["plain"], _chorale_like(4), "2")


# -- training through musicfw run --------------------------------------------------------------


def test_training_windows_mix_infilling_and_continuation(tmp_path):
    from musicfw.engine.assemble import build_experiment
    from musicfw.engine.data import build_datamodule

    cfg = musicfw.load_config({
        "data": {"name": "midi_folder", "path": str(TEST_MIDI / "one_track")},
        "tokenizer": {"name": "remi"},
        "model": {"name": "lstm", "hidden_size": 8, "num_layers": 1, "embed_dim": 4},
        "train": {"batch_size": 16, "seq_len": 256, "infill": {"enabled": True, "probability": 0.5, "max_bars": 2}},
    })
    built = build_experiment(cfg, musicfw.get_registries())
    dm = build_datamodule(cfg.data, built.tokenizer, train=cfg.train, seed=0, progress=False)
    batch = next(iter(dm.train_dataloader()))
    ids = built.tokenizer.ids
    rows = batch["tokens"]
    with_fill = (rows == ids.fill).any(dim=1)
    assert 0 < int(with_fill.sum()) < len(rows)
    # spm (the default): two Sep and no End per infilling example
    assert not (rows == ids.end).any()
    assert ((rows == ids.sep).sum(dim=1) == 2 * with_fill.long()).all()
    assert built.tokenizer.layout == "spm"
    # the plain pipeline's windows are unchanged: same draws with infilling off
    cfg.train.infill.enabled = False
    plain = build_datamodule(cfg.data, musicfw.build_tokenizer("remi"), train=cfg.train, seed=0, progress=False)
    plain_rows = next(iter(plain.train_dataloader()))["tokens"]
    assert bool((plain_rows[~with_fill] == rows[~with_fill]).all())


def test_run_trains_an_infilling_model_and_the_folder_loads_back(tmp_path):
    from musicfw.engine.training import load_model

    cfg = musicfw.load_config({
        "seed": 0, "output_dir": str(tmp_path),
        "data": {"name": "midi_folder", "path": str(TEST_MIDI / "one_track")},
        "tokenizer": {"name": "remi"},
        "model": {"name": "transformer", "d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32, "max_context": 128},
        "train": {"batch_size": 4, "seq_len": 128, "max_steps": 2, "max_epochs": 1, "infill": {"enabled": True}},
        "generate": {"n": 1, "max_tokens": 16, "render_audio": False},
        "evaluate": {"metrics": ["nll"]},
        "logger": {"name": "none"},
    })
    result = musicfw.run(cfg)
    import json

    training = json.loads((result.run_dir / "metrics.json").read_text())["training"]
    assert training["infill_gap_tokens"] > 0 and training["infill_nll_ratio"] > 0  # the held-out gaps, both sides vs left
    model, tokenizer = load_model(result.run_dir)
    assert isinstance(tokenizer, InfillTokenizer) and model.vocab_size == tokenizer.vocab_size
    out = musicfw.infill(result.run_dir, _chorale_like(6), "3-4", n=1, seed=0)
    assert out.bars == (3, 4)
    # an exported folder carries the markers: load_pretrained and infill --model use them
    folder = musicfw.export_run(result.run_dir, tmp_path / "exported")
    model2, tokenizer2 = musicfw.load_pretrained(folder)
    assert isinstance(tokenizer2, InfillTokenizer) and model2.vocab_size == tokenizer.vocab_size
    assert tokenizer.layout == tokenizer2.layout == "spm"  # the layout travels in tokenizer.json
    again = musicfw.infill(folder, _chorale_like(6), "3-4", n=1, seed=0)
    assert np.array_equal(again.scores[0].tracks[0].notes.numpy()["pitch"], out.scores[0].tracks[0].notes.numpy()["pitch"])
