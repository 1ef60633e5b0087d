"""Real-time factor of ``musicfw play`` with the shipped models (``musicfw models``): for each at
batch 1 on one torch thread, tokens/s and its share of the memory-bandwidth limit, seconds of
music per second of generation in a ``play`` stream, the latency to the first note (warm, and
from a cold start in a fresh interpreter); and the timing of a long stream of each chorale model
(scheduled vs sent time of every MIDI message, on a recording port).

* ``tok/s``: ``--tokens`` tokens with the grammar constraints and the model's own sampler.
* ``limit tok/s`` = bandwidth / bytes one step must read (every weight once; for the Transformer
  also its KV cache at the mean position); bandwidth measured in the same run as a numpy copy of
  a 512 MB array (bytes read + written per second).  ``share`` = tok/s / limit.
* ``RTF``: music seconds / generation seconds of ``play`` streams of ``--bars`` bars at 100 BPM
  (median of ``--repeats``), the model's own music: it is trained.
* ``first note``: from the call of ``stream_generation`` (model loaded and warmed up: what
  ``musicfw play`` does before it starts the clock) to the first note's due time; playback starts
  ``--buffer`` (0.05 s) after the opening onset's notes are all out.  ``cold``: from starting a
  new Python process to the first note's due time (imports, loading the model, warm-up
  included), one run.
* The long stream: ``--stream-minutes`` of music at 100 BPM, every message's (due, sent) time;
  late = sent more than 20 ms after due.  ``--mode process`` (the ``play`` default on Linux)
  generates in a forked process niced by 5; ``thread`` in the sender's process.

    python benchmarks/realtime.py --seed 0 [--models chorales-lstm,chorales-transformer,jsb-nade]
        [--stream-minutes 5] [--stream-models chorales-transformer,chorales-lstm] [--mode process|thread]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def bandwidth(mb: int = 512, repeats: int = 5) -> float:
    a = np.ones(mb * 2**20 // 8)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best


def weight_bytes(model) -> int:
    return int(sum(p.numel() * p.element_size() for p in model.parameters()))


def step_bytes(model, tokens: int) -> int:
    """Bytes one generation step reads: the weights, plus a Transformer's KV cache (keys and
    values of every layer, fp32) at the mean position of a ``tokens``-token generation (the
    cache rolls at ``max_context``)."""
    b = weight_bytes(model)
    if hasattr(model, "d_model") and hasattr(model, "num_layers"):
        C = model.max_context or tokens
        mean_pos = np.mean(np.minimum(np.arange(tokens), C))
        b += int(2 * model.num_layers * model.d_model * 4 * mean_pos)
    return b


def load(name: str):
    from musicfw.engine.generation import build_sampler_chain
    from musicfw.engine.pretrained import generation_defaults, load_pretrained
    from musicfw.engine.zoo import resolve

    path = resolve(name)
    model, tok = load_pretrained(path)
    return model.eval(), tok, build_sampler_chain(generation_defaults(path, None).sampler)


class Null:
    """An output port that only takes the messages (the scheduler logs their times)."""

    def send(self, msg):
        pass


COLD = r"""
import sys, time, json
from musicfw.engine.generation import build_sampler_chain
from musicfw.engine.pretrained import generation_defaults, load_pretrained
from musicfw.engine.zoo import resolve
from musicfw.plugins.live.player import GeneratorProcess, Scheduler, stream_generation, warm_up
import torch
torch.set_num_threads(1)
t_import = time.monotonic()
path = resolve(sys.argv[1]); model, tok = load_pretrained(path); model.eval()
sampler = build_sampler_chain(generation_defaults(path, None).sampler)
t_load = time.monotonic()
warm_up(model, tok, sampler)
worker = GeneratorProcess(model, tok, sampler) if sys.argv[2] == "process" else False
t_warm = time.monotonic()
class Null:
    def send(self, msg): pass
sched = Scheduler(Null())
st = stream_generation(model, tok, sampler, sched, bars=1, bpm=100, seed=0, say=lambda s: None, wait=False,
                       process=worker)
sched.stop()
print(json.dumps({"import": t_import, "load": t_load, "warm": t_warm, "first_due": t_warm + st.first_note_seconds}))
"""


def cold_start(name: str, mode: str) -> dict:
    t0 = time.monotonic()  # CLOCK_MONOTONIC: the same clock in the child
    out = subprocess.run([sys.executable, "-c", COLD, name, mode], capture_output=True, text=True, check=True)
    t = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: v - t0 for k, v in t.items()}


def diagnose(name: str, minutes: float, seed: int, buffer: float) -> None:
    """Where late messages come from: the same stream of ``name`` (``minutes`` of music at 100
    BPM) sent four ways on this machine as it is: (a) generated in the sender's process, garbage
    collector as is (the previous ``play``); (b) the same with ``gc.freeze``; (c) generated in a
    forked, niced process of its own session (``play``'s default); (d) no generation at all: the
    notes of (c) replayed by the scheduler alone (what the OS's scheduling costs by itself)."""
    import gc

    import musicfw.plugins.live.player as player
    from musicfw.plugins.live.player import Scheduler, Streamer, lateness_summary, stream_generation

    model, tok, sampler = load(name)
    player.warm_up(model, tok, sampler)
    t = time.perf_counter()
    gc.collect()
    print(f"a full gc.collect() with torch and {name} loaded: {1000 * (time.perf_counter() - t):.1f} ms, "
          f"{len(gc.get_objects())} objects tracked", flush=True)
    bars = int(minutes * 60 / (4 * 60 / 100)) + 1
    print(f"diagnosis: {name}, {bars} bars at 100 BPM per run")
    print(f"{'run':44s} {'messages':>8s} {'late':>5s} {'median':>7s} {'p99':>7s} {'p99.9':>7s} {'max ms':>7s} {'load':>5s}")
    played = None
    for label, freeze, process in (("a thread, gc as is", False, False), ("b thread, gc.freeze", True, False),
                                   ("c process (nice 5, own session), gc.freeze", True, True)):
        player.FREEZE_GC = freeze
        sched = Scheduler(Null())
        st = stream_generation(model, tok, sampler, sched, bars=bars, bpm=100, seed=seed, buffer=buffer,
                               say=lambda s: None, max_tokens=400 * bars, process=process)
        sched.stop()
        s = st.extra["lateness"]
        print(f"{label:44s} {s['messages']:8d} {s['late']:5d} {s['median_ms']:7.2f} {s['p99_ms']:7.2f} "
              f"{s['p999_ms']:7.2f} {s['max_ms']:7.2f} {os.getloadavg()[0]:5.1f}  underruns {st.underruns}", flush=True)
        played = [(d, m) for d, _, m in sched.log if m.type in ("note_on", "note_off")]
    player.FREEZE_GC = True
    sched = Scheduler(Null())
    t0 = played[0][0]
    start = time.monotonic() + 0.5
    for d, m in played:
        sched.schedule(start + d - t0, m)
    sched.drain(timeout=minutes * 60 + 120)
    sched.stop()
    s = lateness_summary([e for e in sched.log if e[2].type in ("note_on", "note_off")])
    print(f"{'d scheduler alone (no generation)':44s} {s['messages']:8d} {s['late']:5d} {s['median_ms']:7.2f} "
          f"{s['p99_ms']:7.2f} {s['p999_ms']:7.2f} {s['max_ms']:7.2f} {os.getloadavg()[0]:5.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="chorales-lstm,chorales-transformer,jsb-nade,folk-2bar,drums-2bar")
    ap.add_argument("--tokens", type=int, default=512, help="tokens per tokens/s measurement")
    ap.add_argument("--bars", type=int, default=8, help="bars of the play streams for RTF and first note")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--buffer", type=float, default=None, help="seconds (default: play's, 0.05)")
    ap.add_argument("--mode", choices=("process", "thread"), default="process")
    ap.add_argument("--stream-minutes", type=float, default=5.0, help="length of the timing streams (0: skip)")
    ap.add_argument("--stream-models", default="chorales-transformer,chorales-lstm")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start measurement")
    ap.add_argument("--diagnose", type=float, default=0, metavar="MINUTES",
                    help="only the diagnosis of late messages, runs of this many minutes (see diagnose())")
    args = ap.parse_args()

    import torch

    from musicfw.engine.generation import generate
    from musicfw.plugins.live.player import BUFFER_SECONDS, GeneratorProcess, Scheduler, stream_generation, warm_up

    torch.set_num_threads(1)
    buffer = BUFFER_SECONDS if args.buffer is None else args.buffer
    if args.diagnose:
        diagnose(args.stream_models.split(",")[-1], args.diagnose, args.seed, buffer)
        return
    process = args.mode == "process"
    bw = bandwidth()
    load0 = os.getloadavg()[0]
    print(f"bandwidth (numpy copy of 512 MB, read+write): {bw / 1e9:.2f} GB/s; mode {args.mode}; buffer {buffer:g} s; "
          f"seed {args.seed}", flush=True)
    rows, loaded, notes = [], {}, []
    for name in args.models.split(","):
        try:
            model, tok, sampler = load(name)
            warm_up(model, tok, sampler)
        except Exception as exc:  # noqa: BLE001 - a model that cannot stream is reported, not fatal
            notes.append(f"{name}: no stream ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
            continue
        worker = GeneratorProcess(model, tok, sampler) if process else False  # started before the clock, as play does
        loaded[name] = (model, tok, sampler, worker)
        tps = []
        for r in range(args.repeats):
            out = generate(model, tok, sampler, n=1, batch_size=1, max_tokens=args.tokens, seed=args.seed + r,
                           constraints=True, end_token=-1)
            tps.append(out.stats["tokens_per_second"])
        tok_s = float(np.median(tps))
        limit = bw / step_bytes(model, args.tokens)
        firsts, rtfs, under = [], [], 0
        for r in range(args.repeats):
            sched = Scheduler(Null())
            st = stream_generation(model, tok, sampler, sched, bars=args.bars, bpm=100, seed=args.seed + r,
                                   buffer=buffer, say=lambda s: None, wait=False, process=worker)
            sched.stop()
            firsts.append(1000 * st.first_note_seconds)
            rtfs.append(st.realtime_factor)
            under += st.underruns
        cold = None if args.no_cold else cold_start(name, args.mode)
        rows.append((name, type(model).__name__, tok.name, weight_bytes(model) / 1e6, tok_s, limit, tok_s / limit,
                     float(np.median(rtfs)), float(np.min(rtfs)), float(np.median(firsts)), float(np.max(firsts)),
                     None if cold is None else 1000 * cold["first_due"], None if cold is None else cold["load"], under))
        print(f"  measured {name}", file=sys.stderr, flush=True)

    print()
    print(f"{'model':21s} {'kind':28s} {'MB':>5s} {'tok/s':>6s} {'limit':>7s} {'share':>6s} {'RTF med/min':>12s} "
          f"{'first note ms med/max':>21s} {'cold ms (load s)':>17s} {'underruns':>9s}")
    for name, cls, tk, mb, tok_s, limit, share, rtf, rtf_min, f_med, f_max, cold_ms, cold_load, under in rows:
        cold_cell = "-" if cold_ms is None else f"{cold_ms:.0f} ({cold_load:.1f})"
        print(f"{name:21s} {cls + ' / ' + tk:28s} {mb:5.1f} {tok_s:6.0f} {limit:7.0f} {share:6.1%} "
              f"{rtf:6.1f}/{rtf_min:4.1f}x {f_med:11.0f} / {f_max:6.0f} {cold_cell:>17s} {under:9d}")
    for line in notes:
        print(line)
    if args.stream_minutes > 0:
        bars = int(args.stream_minutes * 60 / (4 * 60 / 100)) + 1
        for name in args.stream_models.split(","):
            if name not in loaded:
                continue
            model, tok, sampler, worker = loaded[name]
            sched = Scheduler(Null())
            said: list[str] = []
            la = os.getloadavg()[0]
            t_stream = time.monotonic()
            st = stream_generation(model, tok, sampler, sched, bars=bars, bpm=100, seed=args.seed, buffer=buffer,
                                   say=said.append, max_tokens=400 * bars, process=worker)
            sched.stop()
            s = st.extra["lateness"]
            end = st.extra["generated_at"]
            late_gen = sum(1 for d, t, _ in sched.log if t - d > 0.020 and t <= end)
            print()
            print(f"stream: {name}, {st.music_seconds / 60:.1f} min of music ({bars} bars at 100 BPM), {st.messages} "
                  f"messages, {st.notes} notes, {st.tokens} tokens, generated at {st.realtime_factor:.1f}x real time; "
                  f"first note {1000 * st.first_note_seconds:.0f} ms")
            print(f"  lateness ms (sent - scheduled): median {s['median_ms']:.2f}, p99 {s['p99_ms']:.2f}, "
                  f"p99.9 {s['p999_ms']:.2f}, max {s['max_ms']:.2f}; late > 20 ms: {s['late']} ({late_gen} while "
                  f"generating, {s['late'] - late_gen} after the generation had ended {end - t_stream:.0f} s in); underruns: "
                  f"{st.underruns} ({st.underrun_seconds * 1000:.0f} ms paused); look-ahead at hand-over: min "
                  f"{1000 * st.extra.get('headroom_min_s', 0):.0f} ms, median {st.extra.get('headroom_median_s', 0):.1f} s; "
                  f"load average {la:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"load average: {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} CPUs; "
          f"seed {args.seed}")


if __name__ == "__main__":
    main()
