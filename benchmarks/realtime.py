"""Real-time factor of ``musicfw play``: for each default model at batch 1 on one CPU thread,
seconds of music generated per second of wall time, the latency to the first note, tokens/s,
and tokens/s as a share of the memory-bandwidth limit; and the timing of a long stream
(scheduled vs sent time of every MIDI message, on a recording port).

No named (zoo) models exist in this branch (`musicfw models` is absent), so the models are the
defaults the chorale examples use: an LSTM 3x512 and a Transformer 4x256 (relative attention,
KV cache) over REMI, untrained: the time per token does not depend on the weights.  What does
depend on them is how much music a token carries, so the real-time factor is given two ways:

* ``RTF chorales``: tokens/s divided by the REMI tokens per second of music of the Bach
  chorales (the bundled ``bach_chorales`` dataset, all 409 pieces, at their own tempo): what a
  model trained on the chorales, which writes chorale-like token streams, achieves;
* ``RTF stream``: music seconds / generation seconds of an actual ``play`` stream of the
  untrained model (random music: usually sparser than a chorale, so an optimistic number).

Bandwidth limit: one step must read every weight once (and, for the Transformer, its KV cache
up to the current position); ``limit tok/s = bandwidth / bytes per step``, bandwidth measured in
the same run as a numpy copy of a 512 MB array (bytes read + written per second).

    python benchmarks/realtime.py --seed 0 [--stream-minutes 5] [--tokens 512]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

MODELS = {"lstm 3x512": ("lstm", {}), "transformer 4x256": ("transformer", {})}


def bandwidth(mb: int = 512, repeats: int = 5) -> float:
    a = np.ones(mb * 2**20 // 8)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best


def chorale_tokens_per_second(tokenizer) -> float:
    from musicfw.api import build_dataset, load_data

    data = load_data(build_dataset("bach_chorales"), progress=False)
    tokens = seconds = 0.0
    for piece in data.all_pieces:
        tokens += len(tokenizer.encode(piece.score))
        seconds += float(piece.score.to("second").end())
    return tokens / seconds


def weight_bytes(model) -> int:
    return int(sum(p.numel() * p.element_size() for p in model.parameters()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokens", type=int, default=512, help="tokens per tokens/s measurement")
    ap.add_argument("--stream-minutes", type=float, default=5.0, help="length of the timing stream (0: skip)")
    ap.add_argument("--bars", type=int, default=8, help="bars of the play streams for RTF and first note")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    from musicfw.api import build_model, build_sampler, build_tokenizer
    from musicfw.engine.generation import generate
    from musicfw.plugins.live.player import LATE_SECONDS, Scheduler, stream_generation

    torch.set_num_threads(1)

    class Null:
        def send(self, msg):
            pass

    tok = build_tokenizer("remi")
    sampler = build_sampler("temperature")
    bw = bandwidth()
    dens = chorale_tokens_per_second(tok)
    load0 = os.getloadavg()[0]
    print(f"bandwidth (numpy copy of 512 MB, read+write): {bw / 1e9:.2f} GB/s; chorales: {dens:.1f} REMI tokens per second of music")
    rows = []
    stream_model = None
    for label, (name, params) in MODELS.items():
        torch.manual_seed(args.seed)
        model = build_model(name, tokenizer=tok, **params).eval()
        wb = weight_bytes(model)
        step_bytes = wb
        if name == "transformer":  # the KV cache read per step at the mean position
            step_bytes += int(2 * model.num_layers * model.d_model * 4 * args.tokens / 2)
        tps = []
        for r in range(args.repeats):
            out = generate(model, tok, sampler, n=1, batch_size=1, max_tokens=args.tokens, seed=args.seed + r,
                           constraints=True, end_token=-1)
            tps.append(out.stats["tokens_per_second"])
        tok_s = float(np.median(tps))
        limit = bw / step_bytes
        firsts, rtfs = {1.0: [], 0.0: []}, []
        for r in range(args.repeats):
            for ahead in firsts:  # the default look-ahead (1 bar) and none (play as notes are final)
                sched = Scheduler(Null())
                st = stream_generation(model, tok, sampler, sched, bars=args.bars, bpm=100, seed=args.seed + r,
                                       lookahead_bars=ahead, say=lambda s: None, wait=False)
                sched.stop()
                firsts[ahead].append(st.first_note_seconds)
                if ahead:
                    rtfs.append(st.realtime_factor)
        rows.append((label, wb / 1e6, tok_s, limit, tok_s / limit, tok_s / dens, float(np.median(rtfs)),
                     1000 * float(np.median(firsts[1.0])), 1000 * float(np.median(firsts[0.0]))))
        if name == "transformer":
            stream_model = model
        print(f"  measured {label}", file=sys.stderr, flush=True)

    print()
    print(f"{'model':20s} {'weights MB':>10s} {'tok/s':>8s} {'limit tok/s':>11s} {'share':>6s} {'RTF chorales':>12s} "
          f"{'RTF stream':>10s} {'first note ms (1 bar ahead / 0)':>32s}")
    for label, mb, tok_s, limit, share, rtf_c, rtf_s, f_med, f_max in rows:
        print(f"{label:20s} {mb:10.1f} {tok_s:8.0f} {limit:11.0f} {share:6.1%} {rtf_c:11.1f}x {rtf_s:9.1f}x "
              f"{f_med:18.0f} / {f_max:6.0f}")
    if args.stream_minutes > 0:
        # a long stream: the Transformer (the slower model) at 100 BPM, scheduled vs sent time of
        # every message; generation continues bar after bar until the minutes are played
        bars = int(args.stream_minutes * 60 / (4 * 60 / 100)) + 1
        sched = Scheduler(Null())
        said = []
        st = stream_generation(stream_model, tok, sampler, sched, bars=bars, bpm=100, seed=args.seed,
                               say=said.append, max_tokens=400 * bars)
        sched.stop()
        late = sched.lateness() * 1000
        print()
        print(f"stream: transformer 4x256, {st.music_seconds / 60:.1f} min of music ({bars} bars at 100 BPM), "
              f"{st.messages} messages, {st.notes} notes, {st.tokens} tokens")
        print(f"  lateness ms (sent - scheduled): median {np.median(late):.2f}, p99 {np.percentile(late, 99):.2f}, "
              f"max {late.max():.2f}; late > {LATE_SECONDS * 1000:.0f} ms: {st.late}; underruns: {st.underruns} "
              f"({st.underrun_seconds * 1000:.0f} ms paused)")
    print(f"load average: {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} CPUs; seed {args.seed}")


if __name__ == "__main__":
    main()
