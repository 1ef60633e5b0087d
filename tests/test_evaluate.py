"""Likelihood (exact NLL per token / note / second), evaluate_run's metrics.json, and
``musicfw evaluate`` on MIDI folders."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import symusic
import torch

from musicfw.core.model import Model
from omegaconf import OmegaConf

import musicfw
from musicfw.engine.evaluation import SCHEMA, compare_folders, evaluate_run, format_table
from musicfw.core.tokenizer import Tokenizer

from conftest import run_cli

torch.set_num_threads(1)


# -- a toy tokenizer and model that follow the protocols -----------------------------------


class PitchTokenizer(Tokenizer):
    """Token = pitch - 40 (vocab 48); every token one quarter note at 120 bpm (0.5 s)."""

    name = "toy_pitch"

    @dataclass
    class Config:
        pass

    @property
    def vocab(self):
        return [f"P{p}" for p in range(40, 88)]

    def encode(self, score):
        notes = score.tracks[0].notes.numpy()
        return (notes["pitch"].astype(np.int64) - 40)[np.argsort(notes["time"], kind="stable")]

    def decode(self, tokens):
        score = symusic.Score(480)
        track = symusic.Track()
        for i, t in enumerate(np.asarray(tokens)):
            track.notes.append(symusic.Note(i * 480, 480, int(t) + 40, 80))
        score.tracks.append(track)
        return score


class UniformModel(Model, torch.nn.Module):
    """Every token has probability 1/V: NLL per scored token is exactly log V."""

    token_kind = "categorical"
    trainable = False

    def __init__(self, vocab_size):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(vocab_size))

    def loss(self, batch):
        tokens, mask = batch["tokens"], batch["mask"]
        logp = torch.log_softmax(self.logits, -1)[tokens]
        nll = -(logp * mask).sum()
        n = mask.sum()
        return {"loss": nll / n, "nll_sum": nll, "n_targets": n}

    def init_state(self, batch_size, device=None):
        return None

    def step(self, x, state):
        return self.logits.expand(1, -1), state


def random_piece(rng, n):
    score = symusic.Score(480)
    track = symusic.Track()
    for i, p in enumerate(rng.integers(50, 80, n)):
        track.notes.append(symusic.Note(i * 240, 240, int(p), 80))
    score.tracks.append(track)
    return score


class ToyData:
    """What evaluation needs from a data module: test_dataloader() and pieces(split)."""

    def __init__(self, tokenizer, n_pieces=6, seed=0):
        rng = np.random.default_rng(seed)
        self.tokenizer = tokenizer
        self.scores = {f"piece_{i}.mid": random_piece(rng, int(rng.integers(8, 30))) for i in range(n_pieces)}

    def pieces(self, split):
        return list(self.scores.items()) if split == "test" else []

    def test_dataloader(self):
        seqs = [self.tokenizer.encode(s) for s in self.scores.values()]
        batches = []
        for i in range(0, len(seqs), 4):  # padded batches of up to 4
            chunk = seqs[i : i + 4]
            t = max(len(s) for s in chunk)
            tokens = torch.zeros(len(chunk), t, dtype=torch.long)
            mask = torch.zeros(len(chunk), t, dtype=torch.bool)
            for b, s in enumerate(chunk):
                tokens[b, : len(s)] = torch.as_tensor(s)
                mask[b, : len(s)] = True
            batches.append({"tokens": tokens, "mask": mask})
        return batches

    val_dataloader = test_dataloader


def test_nll_is_exact_per_token_note_and_second():
    tok = PitchTokenizer()
    data = ToyData(tok)
    result = musicfw.build_metric("nll").evaluate(UniformModel(tok.vocab_size), data, tok)
    n_tokens = sum(len(tok.encode(s)) for s in data.scores.values())
    log_v = math.log(tok.vocab_size)
    assert result["n_targets"] == n_tokens
    assert result["n_sequences"] == len(data.scores)
    assert result["nll_sum"] == pytest.approx(n_tokens * log_v, rel=1e-6)
    assert result["nll_per_token"] == pytest.approx(log_v, rel=1e-6)
    assert result["perplexity"] == pytest.approx(tok.vocab_size, rel=1e-5)
    # one note per token, half a second per note (decoded quarters at 120 bpm)
    assert result["n_notes"] == n_tokens
    assert result["nll_per_note"] == pytest.approx(log_v, rel=1e-6)
    assert result["seconds"] == pytest.approx(0.5 * n_tokens)
    assert result["nll_per_second"] == pytest.approx(2 * log_v, rel=1e-6)


def test_nll_restores_training_mode_and_respects_max_batches():
    tok = PitchTokenizer()
    model = UniformModel(tok.vocab_size)
    model.train()
    data = ToyData(tok, n_pieces=9)
    result = musicfw.build_metric("nll", max_batches=1, per_note=False).evaluate(model, data, tok)
    assert model.training
    assert result["n_sequences"] == 4 and "nll_per_note" not in result


def config(metrics=("nll", "yang_lerch", "muspy"), max_reference=100):
    return OmegaConf.create(
        {
            "evaluate": {
                "enabled": True,
                "metrics": [{"name": m} for m in metrics],
                "reference_split": "test",
                "max_reference": max_reference,
            }
        }
    )


def test_evaluate_run_writes_the_documented_schema(tmp_path):
    tok = PitchTokenizer()
    data = ToyData(tok)
    rng = np.random.default_rng(5)
    generated = [random_piece(rng, 20) for _ in range(4)]
    result = evaluate_run(
        config(max_reference=5).evaluate,
        tmp_path,
        model=UniformModel(tok.vocab_size),
        tokenizer=tok,
        datamodule=data,
        generated=generated,
        fit_metrics={"train_seconds": 1.5, "best_val_nll": np.float32(2.0)},
    )
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == result
    assert result["schema"] == SCHEMA
    assert [m["name"] for m in result["metrics"]] == ["nll", "yang_lerch", "muspy"]
    assert result["likelihood"]["nll"]["perplexity"] == pytest.approx(tok.vocab_size, rel=1e-5)
    assert result["training"] == {"train_seconds": 1.5, "best_val_nll": 2.0}
    assert result["sets"]["generated"]["n_pieces"] == 4
    assert result["sets"]["reference"]["n_pieces"] == 5  # max_reference
    assert list(result["features"]["generated"]) == [f"sample_{i:03d}.mid" for i in range(4)]
    assert list(result["features"]["reference"]) == [f"piece_{i}.mid" for i in range(5)]
    piece = result["features"]["reference"]["piece_0.mid"]
    assert len(piece["pitch_class_histogram"]) == 12 and isinstance(piece["note_count"], float)
    assert result["feature_info"]["groove_consistency"]["metric"] == "muspy"
    assert result["feature_info"]["pitch_class_transition_matrix"]["shape"] == [12, 12]
    row = result["comparison"]["features"]["pitch_count"]
    for key in ("intra_generated", "intra_reference", "inter"):
        assert set(row[key]) == {"mean", "std"}
    assert 0 <= row["oa_generated"] <= 1.0001
    assert set(result["kde"]["pitch_count"]) == {"x", "intra_generated", "intra_reference", "inter"}
    assert result["statistics"]["generated"]["note_count"]["mean"] == 20.0
    text = format_table(result)
    assert "perplexity" in text and "pitch_class_histogram" in text


def test_evaluate_run_without_model_reads_the_samples_folder(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "samples").mkdir()
    for i in range(3):
        random_piece(rng, 12).dump_midi(str(tmp_path / "samples" / f"sample_{i:03d}.mid"))
    result = evaluate_run(config().evaluate, tmp_path, datamodule=ToyData(PitchTokenizer()))
    assert result["likelihood"] == {}
    assert any("nll: skipped" in n for n in result["notes"])
    assert sorted(result["features"]["generated"]) == [f"sample_{i:03d}.mid" for i in range(3)]
    assert result["comparison"]["features"]["note_count"]["n_reference"] == 6


def test_compare_folders_and_cli(tmp_path, shared_midi):
    out = tmp_path / "m.json"
    proc = run_cli(
        "evaluate", "--generated", str(shared_midi / "one_track"), "--reference",
        str(shared_midi / "multitrack"), "--out", str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "pitch_class_histogram" in proc.stdout and "OA gen" in proc.stdout
    data = json.loads(out.read_text())
    assert data["sets"]["generated"]["n_pieces"] == len(list((shared_midi / "one_track").glob("*.mid")))
    assert "Maestro_1.mid" in data["features"]["generated"]
    assert set(data["comparison"]["features"]) >= {"pitch_count", "avg_ioi", "groove_consistency"}


def test_bad_files_are_skipped_with_reasons(tmp_path, shared_midi):
    import shutil

    # every bad file next to one good one: the folder is evaluated, the bad files are listed
    # with the midi_folder dataset's reasons (an empty MIDI is not a piece)
    shutil.copytree(shared_midi / "bad", tmp_path / "ref")
    good = sorted((shared_midi / "one_track").glob("*.mid"))[0]
    shutil.copy(good, tmp_path / "ref" / good.name)
    result = compare_folders(shared_midi / "one_track", tmp_path / "ref")
    assert result["sets"]["reference"]["n_pieces"] == 1
    skipped = {s["file"]: s["reason"] for s in result["sets"]["reference"]["skipped"]}
    assert set(skipped) == {p.name for p in (shared_midi / "bad").iterdir()}
    assert skipped["zero_bytes.mid"] == "empty file (0 bytes)"
    assert skipped["empty.mid"] == "no notes"
    assert skipped["not_a_midi.mid"].startswith("not a MIDI file")
    assert skipped["truncated.mid"].startswith("truncated")


def test_user_errors_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("evaluate", "--generated", str(empty), "--reference", str(empty))
    assert proc.returncode == 2
    assert "No loadable MIDI file" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("evaluate", "--generated", str(empty), "--reference", str(empty), "--metrics", "nll")
    assert proc.returncode == 2 and "trained model" in proc.stderr
