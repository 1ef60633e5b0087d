"""Warnings about the data a run is about to measure itself on.

:func:`small_split_warnings`: a held-out split (valid, test) with fewer than
:data:`MIN_HELD_OUT` pieces makes the held-out loss the loss of one or two pieces, and a
reference set of one piece has no intra-set distances, so the set comparison's reference
numbers (OA, KL) are ``None``.  Own-data folders of a dozen files hit this with the default
fractions (0.8 / 0.1 / 0.1).  The runner prints these after the data stage.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

#: fewer held-out pieces than this is warned about
MIN_HELD_OUT = 5


def small_split_warnings(
    splits: Mapping[str, int], data_section: Any = None, reference_split: str = "test", min_pieces: int = MIN_HELD_OUT
) -> list[str]:
    """One warning per held-out split with fewer than ``min_pieces`` pieces (an empty valid
    split is left alone: ``valid_fraction: 0`` is a choice), saying what to change."""
    total = int(sum(splits.values()))
    section = dict(data_section) if data_section is not None else {}
    has_fractions = "valid_fraction" in section and "train_fraction" in section
    out = []
    for split in ("valid", "test"):
        n = int(splits.get(split, 0))
        if n >= min_pieces or (split == "valid" and n == 0) or total == 0:
            continue
        what = (
            "the held-out loss and the comparison with the samples are"
            if split == reference_split
            else "validation (the best checkpoint, early stopping) is"
        )
        on = "nothing" if n == 0 else f"{n} piece{'s' if n != 1 else ''}"
        msg = f"warning: the {split} split has only {n} piece{'s' if n != 1 else ''} (of {total}), so {what} measured on {on}."
        if split == reference_split and n < 2:
            msg += (
                " With fewer than 2 reference pieces there are no intra-set distances, so the comparison "
                "summary's reference OA/KL are None."
            )
        need = min_pieces / total
        if has_fractions and need <= 0.4:
            tf, vf = float(section["train_fraction"]), float(section["valid_fraction"])
            share = max(math.ceil(need * 20) / 20, 0.05)  # rounded up to 0.05
            if split == "test":
                tf = round(max(1.0 - vf - share, 0.05), 2)
            else:
                vf = share
                tf = round(min(tf, 1.0 - vf - max(1.0 - tf - float(section["valid_fraction"]), 0.0)), 2)
            msg += (
                f" Use a larger split, e.g. data.train_fraction={tf:g} data.valid_fraction={vf:g} "
                f"(the test split gets the rest), or add pieces."
            )
        elif has_fractions:
            msg += (
                f" {total} pieces are too few for a reliable held-out split: add pieces, or repeat the run "
                "with other seeds (seed=1, 2, ...: each seed draws another split) and average."
            )
        else:
            msg += " This dataset's split is fixed; add pieces if you can."
        out.append(msg)
    return out
