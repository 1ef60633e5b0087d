"""Why the chorale LSTM is worse than a uniform guess on pop songs before fine-tuning: how many
of the pop test split's remi tokens the chorales' training split never (or rarely) uses.

    python scripts/finetune_vocab.py           # the splits of examples/quickstart.yaml and examples/finetune.yaml

Prints the share of the pop test tokens whose id never occurs in the chorale training tokens,
and the share whose id is rarer there than 1 in 10,000.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    from musicfw.core.build import build_from_section
    from musicfw.engine.config import load_config
    from musicfw.engine.data import build_datamodule
    from musicfw.core.plugins import load_registries

    registries = load_registries()
    counts = {}
    for name in ("quickstart", "finetune"):
        config = load_config(REPO / "examples" / f"{name}.yaml")
        tokenizer = build_from_section("tokenizers", config.tokenizer, registries=registries, key="tokenizer")
        data = build_datamodule(config.data, tokenizer, train=config.train, seed=int(config.seed),
                                registries=registries, progress=False)
        split = "train" if name == "quickstart" else "test"
        tokens = np.concatenate([np.asarray(t) for t in data.tokens(split)])
        counts[name] = np.bincount(tokens, minlength=tokenizer.vocab_size)
    chorale, pop = counts["quickstart"], counts["finetune"]
    share = chorale / chorale.sum()
    never = pop[chorale == 0].sum() / pop.sum()
    rare = pop[share < 1e-4].sum() / pop.sum()
    print(f"vocabulary {len(pop)}; chorale train tokens {chorale.sum():,}; pop test tokens {pop.sum():,}")
    print(f"pop test tokens whose id never occurs in the chorale train split: {never:.1%} "
          f"({int((pop > 0)[chorale == 0].sum())} ids)")
    print(f"... whose id has a share < 1e-4 there: {rare:.1%}")


if __name__ == "__main__":
    main()
