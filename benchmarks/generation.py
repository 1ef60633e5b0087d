"""Generation speed: incremental decoding (the core loop, O(1) per token) side by side with
naive full-prefix recomputation, at batch 1 and batch 64, and the time per token at
position ~10 against position ~1000.

The model is the project's LSTM (``plugins/models/lstm``, Performance RNN's stacked LSTM) with
random weights (speed does not depend on the weights) over the REMI vocabulary; both sides
use the same sampler chain (temperature then top_p) and the same REMI constraints, so the
only difference is how the next logits are computed:

* incremental: ``musicfw.engine.generation.generate`` -> ``model.step(x, state)``, one token;
* naive: ``model(prefix)`` over the whole prefix generated so far, last position's logits
  (what a model without a recurrent state must do).

The same tables are made for the project's Transformer (``plugins/models/transformer``,
relative attention, KV cache: ``step`` computes one new position against the cached keys and
values), plus its throughput at position ~1000 against recomputing the whole 1000-token
prefix for the next token (the naive forward pass, run in micro-batches of 8 to bound its
memory; its time is the same as one batch of 64 would take).

A last table measures the dropped-token rate (tokens ``decode`` ignores, from the
tokenizers' ``count_invalid``) with and without constraints, for REMI and MIDI-like, from an
order-2 Markov chain counted on the external MIDI corpus (tests/data/midi/one_track, copied from ../shared/midi) and from
the untrained LSTM.

The bandwidth floor (``--floor``, for the Transformer): a step at position n must read every
weight it uses once (the blocks' and head's matrices, the relative table's first n rows per
layer, one embedding row per sequence) and the whole KV cache (2 x layers x batch x heads x n
x head_dim values), so ``bytes / read bandwidth`` is a lower bound on its time.  The read
bandwidth is this machine's, measured in the same run: the best of several sums of a 512 MB
float32 tensor on one thread.  Each ``model.step`` (alone: a cache filled to the position with
random keys and values, median of repeated steps; no sampler) and each generated token (the
whole loop, from the per-position table) is printed as a multiple of its floor.  With
``--baseline REV`` the same model from git revision REV's ``model.py`` (same weights) is
timed beside it, alternating, for a before/after in one run.  ``--repeat K`` measures the
floor table K times (the load of a shared machine moves both the bandwidth and the steps).

Run:  python benchmarks/generation.py [--tokens 128] [--hidden 512] [--layers 3] [--threads 1]
          [--models lstm transformer] [--tf-d 256] [--tf-layers 4] [--tf-heads 4] [--tf-position relative]
      python benchmarks/generation.py --models transformer --floor-only [--repeat 3] [--baseline bca1ef6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def build(args, which: str = "lstm"):
    import torch

    import musicfw
    from musicfw.engine.generation import build_sampler_chain

    torch.manual_seed(0)
    tokenizer = musicfw.build_tokenizer("remi")
    if which == "lstm":
        model = musicfw.build_model(
            "lstm", tokenizer=tokenizer, hidden_size=args.hidden, num_layers=args.layers, embed_dim=args.embed
        ).eval()
    else:
        model = musicfw.build_model(
            "transformer", tokenizer=tokenizer, d_model=args.tf_d, num_layers=args.tf_layers,
            num_heads=args.tf_heads, d_ff=4 * args.tf_d, max_context=2048, position=args.tf_position, dropout=0.0,
        ).eval()
    sampler = build_sampler_chain([{"name": "temperature", "temperature": 1.0}, {"name": "top_p", "p": 0.95}])
    return tokenizer, model, sampler


def full_prefix_seconds(model, batch: int, position: int, micro: int = 8, repeat: int = 2) -> float:
    """Seconds to get the next logits of ``batch`` sequences by recomputing the whole prefix
    of ``position`` tokens (in micro-batches of ``micro``), median of ``repeat``."""
    import torch

    g = torch.Generator().manual_seed(0)
    prefix = torch.randint(0, model.vocab_size, (batch, position + 1), generator=g)
    times = []
    with torch.no_grad():
        for _ in range(repeat):
            t0 = time.perf_counter()
            for i in range(0, batch, micro):
                model(prefix[i : i + micro])[:, -1]
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def incremental(model, tokenizer, sampler, batch: int, tokens: int) -> float:
    from musicfw.engine.generation import generate

    t0 = time.perf_counter()
    result = generate(model, tokenizer, sampler, n=batch, batch_size=batch, max_tokens=tokens, seed=0, cpu_threads=None)
    elapsed = time.perf_counter() - t0
    assert result.stats["invalid_tokens"] == 0
    return result.stats["tokens_generated"] / elapsed


def naive(model, tokenizer, sampler, batch: int, tokens: int) -> float:
    """The same loop, but each step recomputes the model over the whole prefix."""
    import torch

    from musicfw.core.constraints import grammar_for

    grammar = grammar_for(tokenizer, batch)
    gen = torch.Generator().manual_seed(0)
    prefix = torch.zeros(batch, 0, dtype=torch.long)
    t0 = time.perf_counter()
    with torch.no_grad():
        for t in range(tokens):
            # model(tokens) predicts every position from the one before; feeding the prefix plus
            # a placeholder makes its last position predict the next token
            logits = model(torch.cat([prefix, torch.zeros(batch, 1, dtype=torch.long)], 1))[:, -1]
            allowed = torch.from_numpy(grammar.mask(tokens - t))
            x = sampler(logits.masked_fill(~allowed, float("-inf")), gen, "categorical")
            grammar.update(x.numpy())
            prefix = torch.cat([prefix, x[:, None]], 1)
    elapsed = time.perf_counter() - t0
    return batch * tokens / elapsed


class Timed:
    """Wraps a model: records the time of every ``step`` call (one call per generated token,
    so consecutive differences are the whole per-token cost: step + constraints + sampler)."""

    def __init__(self, model):
        self.model, self.times = model, []
        self.token_kind = model.token_kind

    def __getattr__(self, name):
        return getattr(self.model, name)

    def init_state(self, batch_size, device=None):
        return self.model.init_state(batch_size, device=device)

    def step(self, x, state):
        self.times.append(time.perf_counter())
        return self.model.step(x, state)


def per_position(model, tokenizer, sampler, batch: int, positions=(10, 1000), window: int = 40) -> dict[int, float]:
    from musicfw.engine.generation import generate

    timed = Timed(model)
    last = max(positions) + window
    generate(timed, tokenizer, sampler, n=batch, batch_size=batch, max_tokens=last + 1, seed=1, cpu_threads=None)
    deltas = np.diff(np.array(timed.times))  # deltas[i]: token i+1 -> i+2
    out = {}
    for p in positions:
        lo = max(p - window // 2, 1)
        out[p] = statistics.median(deltas[lo : lo + window].tolist())
    return out


# --------------------------------------------------------------------------------------------
# the bandwidth floor
# --------------------------------------------------------------------------------------------


def read_bandwidth(mb: int = 512, repeat: int = 5) -> float:
    """Bytes per second one thread reads: the best of ``repeat`` rounds of two reads of an ``mb``
    MB float32 tensor -- its sum, and the dot product of its two halves (two streams, as the
    attention reads keys and values) -- after one warm-up, so the pages are mapped.  The best
    of all is the highest rate seen, so the floor it gives is the strictest."""
    import torch

    a = torch.ones(mb * 2**20 // 4)
    half = a.numel() // 2
    lo, hi = a[:half], a[half:]
    a.sum()
    best = min(min(_timed(a.sum), _timed(lambda: torch.dot(lo, hi))) for _ in range(repeat))
    return mb * 2**20 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def step_bytes(model, batch: int, position: int) -> int:
    """Bytes a Transformer step at ``position`` must read: the weights it uses (the relative
    tables' first ``position + 1`` rows, ``batch`` embedding rows) and the KV cache."""
    n = position + 1  # the filled slots after this step's own key and value
    total = 0
    for name, p in model.named_parameters():
        if name.endswith(".rel"):
            total += p[:, :n].numel() * p.element_size()
        elif name == "embed.weight":
            total += batch * p.shape[1] * p.element_size()
        elif name != "pos_embed.weight":
            total += p.numel() * p.element_size()
    kv = 2 * model.num_layers * batch * model.num_heads * n * model.head_dim * 4
    return total + kv


def step_seconds(model, batch: int, position: int, repeat: int = 9) -> float:
    """Median time of one ``model.step`` at ``position`` (a cache filled with random keys and
    values up to it: the speed does not depend on them), batch ``batch``, no sampler."""
    import torch

    g = torch.Generator().manual_seed(0)
    state = model.init_state(batch)
    while state.cap < min(position + 1, state.C):
        state.grow()
    for t in state.k + state.v:
        t.normal_(generator=g)
    x = torch.randint(0, model.vocab_size, (batch,), generator=g)

    def one():
        state.n = state.pos = position
        with torch.no_grad():
            model.step(x, state)

    one()
    return statistics.median(_timed(one) for _ in range(repeat))


def load_baseline(rev: str, model):
    """The Transformer of git revision ``rev``'s model.py with ``model``'s weights."""
    import importlib.util
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "show", f"{rev}:plugins/models/transformer/model.py"], cwd=repo,
                         capture_output=True, text=True, check=True).stdout
    name = "musicfw.plugins.models.transformer._baseline_model"
    spec = importlib.util.spec_from_loader(name, loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "musicfw.plugins.models.transformer"
    sys.modules[name] = mod
    exec(compile(src, f"{rev}:plugins/models/transformer/model.py", "exec"), mod.__dict__)
    old = mod.TransformerModel(
        model.vocab_size, model.token_kind, model.d_model, model.num_layers, model.num_heads,
        model.blocks[0].ff1.out_features, 0.0, model.max_context, model.position,
    ).eval()
    old.load_state_dict(model.state_dict())
    return old


def floor_table(args, model, tokenizer, sampler, per_token: dict, baseline=None) -> bool:
    """Each step (and token) as a multiple of its floor.  The bandwidth is measured before
    every row and the highest rate of the table is used for all of its floors (on a shared
    machine the load moves it; the highest is the strictest yardstick)."""
    import os

    rows, bws = [], []
    for batch in args.batches:
        for pos in (10, 1000):
            bws.append(read_bandwidth())
            if baseline is not None:  # alternate, so both see the same load
                b1, t1, b2, t2 = (step_seconds(baseline, batch, pos), step_seconds(model, batch, pos),
                                  step_seconds(baseline, batch, pos), step_seconds(model, batch, pos))
                rows.append((batch, pos, min(t1, t2), min(b1, b2)))
            else:
                rows.append((batch, pos, step_seconds(model, batch, pos), None))
    bw = max(bws)
    load = os.getloadavg()
    print(f"\nbandwidth floor: one thread reads {bw / 1e9:.1f} GB/s here (the best of {len(bws)} measurements, "
          f"{min(bws) / 1e9:.1f} the worst: sums of 512 MB, best of 5 each); load average {load[0]:.1f} / "
          f"{load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min), {os.cpu_count()} CPUs")
    head = f"{'batch':>5} | {'pos':>5} | {'reads MB':>8} | {'floor ms':>8} | {'step ms':>8} | {'x floor':>7}"
    if baseline is not None:
        head += f" | {'before ms':>9} | {'x floor':>7}"
    head += f" | {'token ms':>8} | {'x floor':>7}"
    print(head)
    print("-" * len(head))
    ok = True
    for batch, pos, t, before in rows:
        nbytes = step_bytes(model, batch, pos)
        floor = nbytes / bw
        row = f"{batch:>5} | {pos:>5} | {nbytes / 1e6:>8.1f} | {floor * 1e3:>8.2f} | {t * 1e3:>8.2f} | {t / floor:>6.2f}x"
        if baseline is not None:
            row += f" | {before * 1e3:>9.2f} | {before / floor:>6.2f}x"
        tok = per_token.get((batch, pos))
        row += f" | {tok * 1e3:>8.2f} | {tok / floor:>6.2f}x" if tok else f" | {'':>8} | {'':>7}"
        print(row, flush=True)
        if batch == 64 and pos == 1000:
            ok = t / floor <= 1.5
    for batch, pos, t, before in rows:
        if batch == 64 and pos == 1000:
            print(f"batch 64 at position 1000: step {t / (step_bytes(model, batch, pos) / bw):.2f}x its floor "
                  f"(target 1.5x)" + (f", before {before / (step_bytes(model, batch, pos) / bw):.2f}x" if before else ""))
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens per sequence for the tokens/s table")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--embed", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for step-by-step decoding on a busy machine)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--models", nargs="+", default=["lstm", "transformer"], choices=["lstm", "transformer"])
    parser.add_argument("--tf-d", type=int, default=256, help="transformer width (d_ff = 4x)")
    parser.add_argument("--tf-layers", type=int, default=4)
    parser.add_argument("--tf-heads", type=int, default=4)
    parser.add_argument("--tf-position", default="relative", choices=["relative", "rope", "absolute"])
    parser.add_argument("--skip-dropped", action="store_true", help="skip the dropped-token table")
    parser.add_argument("--floor-only", action="store_true",
                        help="Transformer: only the bandwidth-floor table (and batch 1 tokens/s)")
    parser.add_argument("--repeat", type=int, default=1, help="measure the floor table this many times")
    parser.add_argument("--baseline", metavar="REV", help="also time git revision REV's transformer model.py")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch

    torch.set_num_threads(args.threads)
    ok = True
    for which in args.models:
        tokenizer, model, sampler = build(args, which)
        if which == "transformer" and args.floor_only:
            baseline = load_baseline(args.baseline, model) if args.baseline else None
            print(f"\n== Transformer {args.tf_layers}x{args.tf_d} ({args.tf_heads} heads, {args.tf_position} positions), "
                  f"random weights, CPU threads {args.threads}")
            for _ in range(args.repeat):
                if 1 in args.batches:
                    incremental(model, tokenizer, sampler, 1, 8)
                    pairs = [(incremental(model, tokenizer, sampler, 1, args.tokens),
                              incremental(baseline, tokenizer, sampler, 1, args.tokens) if baseline else None)
                             for _ in range(2)]
                    now = max(p[0] for p in pairs)
                    line = f"batch 1, {args.tokens} tokens: {now:,.0f} tok/s"
                    if baseline is not None:
                        line += f" (before: {max(p[1] for p in pairs):,.0f} tok/s, alternating, best of 2)"
                    print(line)
                ok = floor_table(args, model, tokenizer, sampler, {}, baseline) and ok
            continue
        if which == "lstm":
            label = f"LSTM {args.layers}x{args.hidden} (embed {args.embed})"
            promise = 1.5
        else:
            label = (f"Transformer {args.tf_layers}x{args.tf_d} ({args.tf_heads} heads, d_ff {4 * args.tf_d}, "
                     f"{args.tf_position} positions, KV cache, max_context 2048)")
            promise = 2.0
        print(
            f"\n== {label}, REMI vocab {tokenizer.vocab_size}, sampler temperature->top_p, constraints on, "
            f"CPU threads {args.threads}, {args.tokens} tokens per sequence\n"
        )
        print(f"{'batch':>5} | {'incremental tok/s':>17} | {'naive tok/s':>11} | {'speed-up':>8}")
        print("-" * 52)
        for batch in args.batches:
            incremental(model, tokenizer, sampler, batch, 8)  # warm-up
            inc = incremental(model, tokenizer, sampler, batch, args.tokens)
            nai = naive(model, tokenizer, sampler, batch, args.tokens)
            print(f"{batch:>5} | {inc:>17,.0f} | {nai:>11,.0f} | {inc / nai:>7.1f}x", flush=True)

        print("\ntime per generated token (median of 40 tokens around the position), incremental decoding")
        print(f"{'batch':>5} | {'pos ~10 (ms)':>12} | {'pos ~1000 (ms)':>14} | {'ratio':>5}")
        print("-" * 47)
        worst = 0.0
        at1000, per_token = {}, {}
        for batch in args.batches:
            t = per_token[batch] = per_position(model, tokenizer, sampler, batch)
            ratio = t[1000] / t[10]
            worst = max(worst, ratio)
            at1000[batch] = t[1000]
            print(f"{batch:>5} | {t[10] * 1e3:>12.3f} | {t[1000] * 1e3:>14.3f} | {ratio:>5.2f}", flush=True)
        print(f"\nworst ratio position 1000 / position 10: {worst:.2f} (promise: within {promise}x; "
              f"for the Transformer at batch 64 the floor table below is the yardstick)")
        if which == "lstm":
            ok = ok and worst <= promise
        else:
            for _ in range(args.repeat):
                ok = floor_table(args, model, tokenizer, sampler, {(b, p): t for b in args.batches
                                                                   for p, t in per_token[b].items()}) and ok
        if which == "transformer":
            print("\nat position ~1000: KV-cached step vs recomputing the 1000-token prefix (tokens/s)")
            print(f"{'batch':>5} | {'KV cache tok/s':>14} | {'full prefix tok/s':>17} | {'speed-up':>8}")
            print("-" * 55)
            for batch in args.batches:
                full = full_prefix_seconds(model, batch, 1000)
                print(f"{batch:>5} | {batch / at1000[batch]:>14,.1f} | {batch / full:>17,.2f} | "
                      f"{full / at1000[batch]:>7.1f}x", flush=True)
                if batch == 64:
                    ok = ok and full / at1000[batch] >= 10
    if "lstm" in args.models and not args.skip_dropped:
        dropped_tokens(args)
    return 0 if ok else 1


def dropped_tokens(args, n: int = 32, max_tokens: int = 512) -> None:
    """Dropped-token rate with and without constraints (Markov fitted on real music, and the
    untrained LSTM), n sequences of max_tokens each."""
    import symusic

    import musicfw
    from musicfw.engine.generation import build_sampler_chain, generate

    corpus = Path(__file__).resolve().parents[1] / "tests" / "data" / "midi" / "one_track"
    files = sorted(corpus.glob("*.mid"))
    sampler = build_sampler_chain({"name": "temperature", "temperature": 1.0})
    print(f"\ndropped tokens (decode ignores them), {n} samples x {max_tokens} tokens, sampler temperature 1.0")
    print(f"{'tokenizer':>9} | {'model':<28} | {'unconstrained':>13} | {'constrained':>11}")
    print("-" * 72)
    for name in ("remi", "midi_like"):
        tok = musicfw.build_tokenizer(name)
        models = []
        if files:
            markov = musicfw.build_model("markov", tokenizer=tok, order=2)
            markov.fit_sequences([tok.encode(symusic.Score(str(f))) for f in files])
            models.append((f"markov order 2 ({len(files)} pieces)", markov))
        else:
            print(f"(no corpus at {corpus}: Markov row skipped)")
        lstm = musicfw.build_model("lstm", tokenizer=tok, hidden_size=args.hidden, num_layers=args.layers, embed_dim=args.embed)
        models.append((f"lstm {args.layers}x{args.hidden} untrained", lstm))
        for label, model in models:
            rates = []
            for constraints in (False, True):
                r = generate(model, tok, sampler, n=n, batch_size=n, max_tokens=max_tokens, constraints=constraints, seed=0)
                rates.append(r.stats["invalid_rate"])
            print(f"{name:>9} | {label:<28} | {rates[0]:>12.2%} | {rates[1]:>10.2%}")


if __name__ == "__main__":
    sys.exit(main())
