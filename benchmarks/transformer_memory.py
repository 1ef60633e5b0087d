"""Peak memory of Music Transformer's relative attention: the "skewing" (what the
``transformer`` model does) against the naive formulation, at L = 512 and 2048.

* skewed (Huang et al. 2018, section 3.4.1): ``S_rel = skew(Q E_r^T)`` from an [L, D_head]
  table per head; extra memory O(L * D) for the table plus L x L logits (which attention
  with a float mask holds anyway).
* naive (Shaw et al. 2018 as first written): gather one embedding per (query, key) pair,
  ``R = E_r[i - j]`` of shape [H, L, L, D_head], then ``q_i . R_ij``: O(L^2 * D) extra.

* none: the same attention with no relative term (a zero float bias + causal mask), the
  baseline: what any attention with a float mask holds anyway.

Each computes the whole relative attention of one layer (relative logits + causal mask +
``scaled_dot_product_attention``), forward only (no_grad), batch 1, float32.  There is no
GPU here, so memory is measured on the CPU as the rise of the process's peak resident set
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) above its resident set just before the
computation, each variant in a fresh subprocess (so one cannot reuse the other's pages);
next to it the analytic size of the largest intermediate tensors.

    python benchmarks/transformer_memory.py [--heads 1] [--head-dim 64] [--lengths 512 2048]

Defaults are per head (heads 1, D_head 64: one head of Music Transformer's 512 / 8); the
naive formulation at L = 2048 with all 8 heads would need 8.6 GB for R alone, more than this
shared machine should be asked for (``--heads 8`` measures it where memory allows).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys
sys.path.insert(0, {repo!r})
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
from musicfw.plugins.models.transformer.model import relative_logits_naive, skew

kind, L, H, Dh = {kind!r}, {L}, {H}, {Dh}
g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(1, H, L, Dh, generator=g) for _ in range(3))
table = torch.randn(H, L, Dh, generator=g) * 0.02

def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024

# warm up the kernels on a tiny input so their one-off allocations are not counted
with torch.no_grad():
    t = torch.randn(1, H, 4, Dh)
    F.scaled_dot_product_attention(t, t, t, attn_mask=torch.zeros(4, 4))
    skew(t @ table[:, :4].transpose(-1, -2)); relative_logits_naive(t, table[:, :4])
before = rss_kb()
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.no_grad():
    if kind == "skewed":
        rel = skew(torch.matmul(q, table.flip(1).transpose(-1, -2)))
    elif kind == "none":
        rel = torch.zeros(1, H, L, L)
    else:
        rel = relative_logits_naive(q, table)
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    bias = (rel / Dh ** 0.5).masked_fill(~causal, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"extra_kb": peak - before, "peak_before_kb": peak_before, "rss_before_kb": before,
                  "checksum": float(out[0, 0, -1].sum())}}))
"""


def measure(kind: str, L: int, H: int, Dh: int) -> dict:
    repo = str(Path(__file__).resolve().parents[1])
    code = CHILD.format(repo=repo, kind=kind, L=L, H=H, Dh=Dh)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def analytic_mb(kind: str, L: int, H: int, Dh: int) -> float:
    """Largest intermediates, float32: skewed = table [H, L, Dh] + Q E^T [H, L, L] + its padded
    copy [H, L, L+1]; naive = R [H, L, L, Dh] + the logits [H, L, L]."""
    if kind == "skewed":
        n = H * L * Dh + H * L * L + H * L * (L + 1)
    else:
        n = H * L * L * Dh + H * L * L
    return 4 * n / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048])
    args = parser.parse_args(argv)
    H, Dh = args.heads, args.head_dim
    print(f"relative attention, one layer, batch 1, {H} head(s) x D_head {Dh}, float32, forward (no_grad), CPU\n")
    print("| L | no relative term: measured (MB) | skewed: measured (MB) | naive: measured (MB) | naive / skewed | "
          "skewed - none (MB) | skewed: analytic (MB) | naive: analytic (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = {}
    for L in args.lengths:
        z = measure("none", L, H, Dh)["extra_kb"] / 1024
        s = measure("skewed", L, H, Dh)
        n = measure("naive", L, H, Dh)
        rows[L] = (s["extra_kb"] / 1024, n["extra_kb"] / 1024)
        print(f"| {L} | {z:.1f} | {rows[L][0]:.1f} | {rows[L][1]:.1f} | {rows[L][1] / max(rows[L][0], 1e-9):.1f}x | "
              f"{rows[L][0] - z:.1f} | {analytic_mb('skewed', L, H, Dh):.1f} | {analytic_mb('naive', L, H, Dh):.1f} |")
    if len(args.lengths) >= 2:
        a, b = args.lengths[0], args.lengths[-1]
        print(f"\ngrowth from L={a} to L={b} ({b / a:.0f}x longer): skewed {rows[b][0] / rows[a][0]:.1f}x, "
              f"naive {rows[b][1] / rows[a][1]:.1f}x (L^2 would be {(b / a) ** 2:.0f}x; both hold L x L "
              f"logits, the naive one also L x L x D_head)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
