"""How faithful is a drums beat blender grid: each corner cell against its corner file, and how
many distinct beats the grid holds.

    python scripts/blend_corners.py RUN_DIR/samples/blend A.mid B.mid C.mid D.mid

Per corner: the share of the 32 16th-note steps whose drum-class id (the drums tokenizer's)
equals the input's, over all steps and over the steps where either has a hit (silence agreeing
with silence is easy).  Both are padded with silence to 32 steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("blend_dir")
    ap.add_argument("corners", nargs=4)
    ap.add_argument("--steps", type=int, default=32)
    args = ap.parse_args()
    import symusic

    import musicfw

    tok = musicfw.build_tokenizer("drums")

    def ids(path: Path) -> np.ndarray:
        out = np.zeros(args.steps, dtype=np.int64)
        t = np.asarray(tok.encode(symusic.Score(str(path))))[: args.steps]
        out[: len(t)] = t
        return out

    blend = Path(args.blend_dir)
    cells = sorted(blend.glob("cell_r*_c*.mid"))
    g = int(round(len(cells) ** 0.5))
    corner_cells = [(0, 0), (0, g - 1), (g - 1, 0), (g - 1, g - 1)]
    for label, path, (r, c) in zip("ABCD", args.corners, corner_cells):
        x, y = ids(Path(path)), ids(blend / f"cell_r{r}_c{c}.mid")
        hit = (x > 0) | (y > 0)
        print(f"{label} {Path(path).name}: steps equal {np.mean(x == y):.3f}, on steps with a hit {np.mean(x[hit] == y[hit]):.3f}")
    distinct = {tuple(ids(p)) for p in cells}
    print(f"distinct beats in the {g}x{g} grid: {len(distinct)} of {len(cells)}")


if __name__ == "__main__":
    main()
