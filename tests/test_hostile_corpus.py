"""Issue 30, "Done when": a generated hostile corpus covering every numbered class (1-7 and 9;
class 8, exact resume, has its own test) runs under a 4 GiB address-space cap with 0 tracebacks,
0 hangs and 0 files touched outside their folder.

Every input is generated here (nothing is committed as a file), with the generators of the tests
that own each surface.  All cases run in ONE child process (tests/hostile_driver.py: one torch
import for all), each as ``musicfw.cli.main(argv)`` with a SIGALRM timeout; the child's address
space is capped at 4 GiB (``RLIMIT_AS``), so an unbounded allocation is a MemoryError, caught
and reported as a failure of its case.  For each case: the exit status is the one expected (2 =
one clear error; 0 where the input is skipped with a reason, repaired, or the file reference it
names is dropped), the output holds no "Traceback", and the folders the case must not change
(a canary folder beside every case, the inputs, and the whole case folder where the command
must not write) have the same listing, sizes and mtimes after it."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, TEST_MIDI
from folder_factory import CLASS1_CASES, CLASS1_DROPPED, export_tiny
from test_hardening import huge_gaps, melody_bytes, many_tracks, tpq0
from test_pretrained import TINY_RUN
from test_shards import write_corpus

MEMORY_CAP = 4 * 2**30
#: per case; the cases take 0.05-5 s here (the tiny training run ~10 s on a loaded machine)
CASE_SECONDS = 120


def _cap_memory() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


class Corpus:
    def __init__(self, root: Path):
        self.root = root
        self.canary = root / "canary"
        self.cases: list[dict] = []
        self.expect: dict[str, set[int]] = {}

    def folder(self, name: str) -> Path:
        path = self.root / "cases" / name
        path.mkdir(parents=True)
        return path

    def add(self, name: str, argv: list, codes: set[int], unchanged: list[Path] = (), env: dict | None = None,
            setup: str | None = None, setup_args: list | None = None, timeout: int = CASE_SECONDS) -> None:
        assert name not in self.expect, name
        self.cases.append({
            "name": name, "argv": [str(a) for a in argv], "env": {k: str(v) for k, v in (env or {}).items()},
            "timeout": timeout, "unchanged": [str(self.canary), *map(str, unchanged)],
            "setup": setup, "setup_args": [str(a) for a in (setup_args or [])],
        })
        self.expect[name] = codes


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def build_corpus(root: Path) -> Corpus:
    corpus = Corpus(root)
    corpus.canary.mkdir()
    (corpus.canary / "keep.txt").write_text("untouched")
    (corpus.canary / "victim.arrow").write_bytes(b"not yours")
    (corpus.canary / "sub").mkdir()
    (corpus.canary / "sub" / "victim.json").write_text("{}")

    # -- class 1: exported model folders (generate --model) -----------------------------------
    bases = {m: export_tiny(root / "bases" / m, m) for m in ("lstm", "transformer", "markov")}
    for name, (model, edit, _) in sorted(CLASS1_CASES.items()):
        case = corpus.folder(f"1-{name}")
        folder, outside = case / "model", case / "outside"
        shutil.copytree(bases[model], folder)
        outside.mkdir()
        edit(folder, outside)
        corpus.add(f"1-{name}", ["generate", "--model", folder, "--seed", 1, "--no-audio", "--out", case / "out"],
                   {2}, unchanged=[case])
    for name, (model, edit) in sorted(CLASS1_DROPPED.items()):
        case = corpus.folder(f"1-{name}")
        folder, outside = case / "model", case / "outside"
        shutil.copytree(bases[model], folder)
        outside.mkdir()
        edit(folder, outside)
        corpus.add(f"1-{name}", ["generate", "--model", folder, "--seed", 1, "--no-audio", "--out", case / "out"],
                   {0}, unchanged=[folder, outside])

    # -- class 7: generation flags (on an exported folder) ------------------------------------
    flags = {"max_tokens_1e12": ["--max-tokens", 10**12], "n_and_batch_1e9": ["--n", 10**9, "--batch-size", 10**9],
             "max_tokens_1e8": ["--max-tokens", 10**8], "n_zero": ["--n", 0], "max_seconds_negative": ["--max-seconds", -1]}
    for name, extra in flags.items():
        case = corpus.folder(f"7-{name}")
        corpus.add(f"7-{name}", ["generate", "--model", bases["lstm"], "--no-audio", "--seed", 1, "--out", case / "out", *extra],
                   {2}, unchanged=[case, bases["lstm"]])

    # -- class 6: limits (tokenize; the environment and the flags) ----------------------------
    midi = corpus.folder("6-inputs")
    piece, gaps = _write(midi, "piece.mid", melody_bytes()), _write(midi, "gaps.mid", huge_gaps())
    limits = {
        "env_max_notes_1e15": ({"MUSICFW_LIMITS": "max_notes=1000000000000000"}, ["-t", "pianoroll", piece], {2}),
        "env_max_quarters_inf": ({"MUSICFW_LIMITS": "max_quarters=inf"}, ["-t", "pianoroll", "--limit", 4, piece], {0}),
        "flag_max_quarters_inf": ({}, ["-t", "pianoroll", "--max-quarters", "inf", "--limit", 4, piece], {0}),
        "flag_max_tokens_1e15": ({}, ["-t", "pianoroll", "--max-tokens", 10**15, gaps], {2}),
        "gaps_under_raised_limits": ({"MUSICFW_LIMITS": "max_quarters=inf,max_tokens=inf"}, ["-t", "pianoroll", gaps], {0, 2}),
    }
    for name, (env, argv, codes) in limits.items():
        corpus.add(f"6-{name}", ["tokenize", *argv], codes, unchanged=[midi], env=env)

    # -- class 4: the MidiTok plugin ----------------------------------------------------------
    tok = corpus.folder("4-inputs")
    many = _write(tok, "many_tracks.mid", many_tracks(2_000))
    zero = _write(tok, "tpq0.mid", tpq0())
    corpus.add("4-miditok_huge_gaps", ["tokenize", "-t", "miditok", "tokenizer=REMI", gaps], {0, 2}, unchanged=[midi, tok])
    corpus.add("4-miditok_tpq0", ["tokenize", "-t", "miditok", "tokenizer=REMI", zero], {0, 2}, unchanged=[midi, tok])
    corpus.add("4-miditok_many_tracks", ["tokenize", "--max-tracks", 16, "-t", "miditok", "tokenizer=REMI", many],
               {0, 2}, unchanged=[midi, tok])
    for name, params in {
        "beat_res_1e7": {"beat_res": {"0_4": 10**7}},
        "beat_res_negative": {"beat_res": {"0_4": -8}},
        "special_tokens_200k": {"special_tokens": [f"S{i}_None" for i in range(200_000)]},
        "num_velocities_1e6": {"num_velocities": 10**6},
    }.items():
        case = corpus.folder(f"4-miditok_file_{name}")
        path = case / "tokenizer.json"
        corpus.add(f"4-miditok_file_{name}", ["tokenize", "-t", "miditok", "tokenizer=REMI", f"config_file={path}", piece],
                   {2}, unchanged=[midi], setup="hostile_setups:miditok_file", setup_args=[path, json.dumps(params)])

    # -- class 3: score files (MusicXML / .mxl / ABC / Humdrum in midi_folder) ----------------
    scores = corpus.folder("3-scores")
    src = scores / "src"
    src.mkdir()
    with zipfile.ZipFile(src / "bomb.mxl", "w", zipfile.ZIP_DEFLATED) as zf:  # ~80 KB unpacking past 64 MiB
        zf.writestr("score.xml", b"\0" * (65 * 2**20))
    (src / "long.abc").write_text("X:1\nT:Long\nL:1/8\nK:C\nC2147483647 D|\n\nX:2\nT:Fine\nL:1/8\nK:C\nCDEF|\n")
    (src / "huge_length.abc").write_text("X:1\nT:Huge\nL:1/8\nK:C\nC99999999999999999999 D|\n")
    (src / "not_xml.musicxml").write_text("<score-partwise><part id='P1'><measure number='1'>")
    (src / "fine.mid").write_bytes(melody_bytes())
    corpus.add("3-score_files_skipped", ["data", "prepare", "midi_folder", f"path={src}", "--quiet", "--workers", 1], {0},
               unchanged=[src], env={"MUSICFW_CACHE_DIR": scores / "cache", "MUSICFW_CONVERSION_SECONDS": 20})

    # -- class 5: token shards (data repair follows no path out of its folder) ----------------
    shards_root = corpus.folder("5-shards")
    source = write_corpus(shards_root / "corpus", 12)
    cache = shards_root / "cache"
    corpus.add("5-prepare_shards", ["data", "prepare", "midi_folder", f"path={source}", "format=shards", "shard_files=4",
                                    "--tokenizer", "remi", "--workers", 1, "--quiet"], {0},
               unchanged=[source], env={"MUSICFW_CACHE_DIR": cache})
    for kind in ("absolute", "dotdot", "dropped", "length", "swapped", "json-garbled", "no-kind", "shards-5"):
        case = corpus.folder(f"5-{kind}")
        # absolute / dotdot: the manifest points at victim files in `outside` (a sibling of the case
        # folder, as ../../../<outside> from the shard folder): repair must not touch them
        outside = corpus.folder(f"5-{kind}-outside")
        corpus.add(f"5-repair_{kind}", ["data", "repair", "--workers", 1, "--quiet", f"{{ONLY:{case / 'shards'}}}"], {0},
                   unchanged=[source, outside], setup="hostile_setups:damaged_shards",
                   setup_args=[cache, case, outside, kind])

    # -- class 2: checkpoints that load under weights_only but are not musicfw's --------------
    run_case = corpus.folder("2-run")
    runs = run_case / "runs"
    corpus.add("2-train_tiny_run", ["run", REPO / "examples" / "quickstart.yaml", f"output_dir={runs}", *TINY_RUN,
                                    "evaluate.enabled=false", "train.max_steps=1", "generate.n=1"],
               {0}, env={"MUSICFW_CACHE_DIR": run_case / "cache", "WANDB_MODE": "disabled"})
    for kind in ("empty_state_dict", "state_dict_not_a_mapping", "wrong_shapes", "no_lightning_version"):
        case = corpus.folder(f"2-{kind}")
        ckpt = case / "bad.ckpt"
        corpus.add(f"2-generate_{kind}", ["generate", "--run", f"{{ONLY:{runs}}}", "--checkpoint", ckpt, "--n", 1,
                                          "--no-audio", "--seed", 1, "--out", case / "out"],
                   {2}, unchanged=[runs], setup="hostile_setups:checkpoint", setup_args=[runs, ckpt, kind])
        corpus.add(f"2-export_{kind}", ["export", "--run", f"{{ONLY:{runs}}}", "--checkpoint", ckpt, case / "exported"],
                   {2}, unchanged=[runs])

    # -- class 9: left from last round ---------------------------------------------------------
    case = corpus.folder("9-fsdp_on_cpu")
    corpus.add("9-fsdp_on_cpu", ["run", REPO / "examples" / "quickstart.yaml", f"output_dir={case / 'runs'}", *TINY_RUN,
                                 "train.strategy=fsdp"], {2}, unchanged=[case])
    return corpus


def test_the_hostile_corpus_runs_clean_under_a_4_gib_cap(tmp_path):
    corpus = build_corpus(tmp_path)
    cases, results = tmp_path / "cases.json", tmp_path / "results.jsonl"
    cases.write_text(json.dumps(corpus.cases))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled",
               MUSICFW_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO / "tests"))
    env.pop("MUSICFW_LIMITS", None)
    try:
        subprocess.run([sys.executable, str(REPO / "tests" / "hostile_driver.py"), str(cases), str(results)],
                       cwd=tmp_path, env=env, preexec_fn=_cap_memory, timeout=CASE_SECONDS * 8,
                       capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        pass  # the results so far name the case it hung in
    lines = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    done = {r["name"]: r for r in lines if "name" in r}
    started = [r["started"] for r in lines if "started" in r]
    problems = []
    for case in corpus.cases:
        name = case["name"]
        if name not in done:
            problems.append(f"{name}: no result (the child died or hung here)" if started and started[-1] == name
                            else f"{name}: never ran")
            continue
        r = done[name]
        out = r["output"]
        if r["timeout"]:
            problems.append(f"{name}: still running after {case['timeout']} s")
        if r["error"]:
            problems.append(f"{name}: raised\n{r['error'][-1500:]}")
        if r["rc"] not in corpus.expect[name]:
            problems.append(f"{name}: exit {r['rc']}, expected {sorted(corpus.expect[name])}\n{out[-1500:]}")
        if "Traceback" in out or "MemoryError" in out:
            problems.append(f"{name}: a traceback in the output\n{out[-1500:]}")
        if r["changed"]:
            problems.append(f"{name}: changed files it must not touch: {r['changed']}")
    assert not problems, "\n\n".join(problems)
    classes = {case["name"].split("-")[0] for case in corpus.cases}
    assert classes == {"1", "2", "3", "4", "5", "6", "7", "9"}
