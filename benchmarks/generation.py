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

Run:  python benchmarks/generation.py [--tokens 128] [--hidden 512] [--layers 3] [--threads 1]
          [--models lstm transformer] [--tf-d 256] [--tf-layers 4] [--tf-heads 4] [--tf-position relative]
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
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch

    torch.set_num_threads(args.threads)
    ok = True
    for which in args.models:
        tokenizer, model, sampler = build(args, which)
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
        at1000 = {}
        for batch in args.batches:
            t = per_position(model, tokenizer, sampler, batch)
            ratio = t[1000] / t[10]
            worst = max(worst, ratio)
            at1000[batch] = t[1000]
            print(f"{batch:>5} | {t[10] * 1e3:>12.3f} | {t[1000] * 1e3:>14.3f} | {ratio:>5.2f}", flush=True)
        print(f"\nworst ratio position 1000 / position 10: {worst:.2f} (promise: within {promise}x)")
        ok = ok and worst <= promise
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
