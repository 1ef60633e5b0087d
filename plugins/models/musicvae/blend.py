"""Beat blender: a 2-D grid of latent points between four corner pieces (Magenta's Beat
Blender / Melody Mixer).

The four files are encoded (the posterior means), then cell ``(row, col)`` of an N x N grid is
``slerp(slerp(A, B, u), slerp(C, D, u), v)`` with ``u = col / (N - 1)``, ``v = row / (N - 1)``:
spherical interpolation along each axis, as Magenta's demos do, so the corners reconstruct A
(top left), B (top right), C (bottom left) and D (bottom right).  Every cell is decoded (greedy
by default) and written as MIDI (+ piano roll, + WAV with a soundfont), with ``walk.mid``, a
boustrophedon walk over the whole grid as one continuous piece, and ``blend.html``: the grid,
click a cell to hear it, click several to build a path and play it as one piece.  The page
plays notes with the browser's WebAudio (its own small synthesizer, so it needs no soundfont
and no network); the WAVs beside it are the soundfont renderings.

Python::

    from musicfw.plugins.models.musicvae.blend import blend
    result = blend(model, tokenizer, ["a.mid", "b.mid", "c.mid", "d.mid"], grid=5)
    result.scores[row][col]            # symusic.Score of each cell
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .tools import _generator, _require_vae, load_tokens


@dataclass
class BlendResult:
    grid: int
    tokens: list[list[np.ndarray]]  # [row][col]
    scores: list[list[Any]]  # [row][col] symusic.Score
    corners: list[str] = field(default_factory=list)


def blend_latents(corners: Any, grid: int) -> Any:
    """``[4, Z]`` corner latents (A, B, C, D) -> ``[grid * grid, Z]``, row-major."""
    from .model import slerp

    if grid < 2:
        raise ValueError(f"grid must be >= 2, got {grid}")
    a, b, c, d = corners
    steps = np.linspace(0.0, 1.0, grid)
    out = []
    for v in steps:
        for u in steps:
            top = slerp(a, b, float(u))
            bottom = slerp(c, d, float(u))
            out.append(slerp(top, bottom, float(v)))
    import torch

    return torch.stack(out)


def blend(
    model: Any,
    tokenizer: Any,
    corners: Sequence[str | Path],
    grid: int = 5,
    temperature: float = 0.0,
    length: int | None = None,
    seed: int | None = 0,
) -> BlendResult:
    """Decode the ``grid x grid`` blend of four MIDI files (see the module docstring)."""
    import torch

    _require_vae(model, "blend")
    if len(corners) != 4:
        raise ValueError(f"blend needs four corner files (A B C D), got {len(corners)}")
    length = int(length or model.config.max_seq_len)
    seqs = [load_tokens(p, tokenizer, length) for p in corners]
    model.eval()
    with torch.no_grad():
        mus = torch.stack([model.encode(model._as_tokens(s))[0][0] for s in seqs])
        zs = blend_latents(mus, grid)
        decoded = model.decode(zs, length, temperature=temperature, generator=_generator(seed)).cpu().numpy()
    tokens = [[decoded[r * grid + c] for c in range(grid)] for r in range(grid)]
    scores = [[tokenizer.decode(t) for t in row] for row in tokens]
    return BlendResult(grid=grid, tokens=tokens, scores=scores, corners=[str(p) for p in corners])


def walk_order(grid: int) -> list[tuple[int, int]]:
    """A boustrophedon walk: left to right on even rows, right to left on odd ones, so each
    step moves to a neighbouring cell."""
    return [(r, c if r % 2 == 0 else grid - 1 - c) for r in range(grid) for c in range(grid)]


def _notes(score: Any) -> list[list[float]]:
    """[start s, duration s, pitch, velocity, is_drum] of every note, for the page's synth."""
    sec = score.to("second")
    out = []
    for track in sec.tracks:
        arr = track.notes.numpy()
        for t, d, p, v in zip(arr["time"], arr["duration"], arr["pitch"], arr["velocity"]):
            out.append([round(float(t), 4), round(float(d), 4), int(p), int(v), int(bool(track.is_drum))])
    return out


def write_blend(
    result: BlendResult, out_dir: str | Path, *, render_audio: bool = True, soundfont: str | None = None
) -> dict[str, Any]:
    """Write every cell (``cell_rR_cC.mid`` + ``.png`` + ``.wav``), ``walk.mid`` (+ ``.wav``)
    and ``blend.html`` into ``out_dir``; returns ``{"cells": [...], "walk": path, "page": path}``."""
    import symusic

    from musicfw.music.render import AudioRenderer, piano_roll_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    renderer = AudioRenderer(soundfont) if render_audio else None
    g = result.grid
    cells, notes, durations = [], {}, {}
    for r in range(g):
        for c in range(g):
            score = result.scores[r][c]
            stem = f"cell_r{r}_c{c}"
            mid = out / f"{stem}.mid"
            score.dump_midi(str(mid))
            piano_roll_png(score, out / f"{stem}.png", title=stem)
            wav = renderer.render(score, out / f"{stem}.wav") if renderer is not None else None
            cells.append({"row": r, "col": c, "midi": mid.name, "png": f"{stem}.png", "wav": wav.name if wav else None})
            notes[stem] = _notes(score)
            durations[stem] = float(score.to("second").end())
    # the walk: the cells one after another, each taking its own length in ticks
    first = result.scores[0][0]
    walk = symusic.Score(first.ticks_per_quarter)
    offset = 0
    tracks: dict[tuple[int, bool], Any] = {}
    for r, c in walk_order(g):
        score = result.scores[r][c]
        score = score if score.ticks_per_quarter == first.ticks_per_quarter else score.resample(first.ticks_per_quarter)
        span = max(int(score.end()), 1)
        for track in score.tracks:
            key = (int(track.program), bool(track.is_drum))
            if key not in tracks:
                tracks[key] = symusic.Track(track.name, program=track.program, is_drum=track.is_drum)
                walk.tracks.append(tracks[key])
            tracks[key].notes.extend(track.shift_time(offset).notes)
        offset += span
    walk_path = out / "walk.mid"
    walk.dump_midi(str(walk_path))
    if renderer is not None:
        renderer.render(walk, out / "walk.wav")
    page = out / "blend.html"
    page.write_text(_page(result, cells, notes, durations))
    return {"cells": cells, "walk": walk_path, "page": page}


def _page(result: BlendResult, cells: list[dict], notes: dict, durations: dict) -> str:
    g = result.grid
    labels = ["A", "B", "C", "D"]
    corner_of = {(0, 0): 0, (0, g - 1): 1, (g - 1, 0): 2, (g - 1, g - 1): 3}
    rows = []
    for r in range(g):
        tds = []
        for c in range(g):
            cell = cells[r * g + c]
            stem = cell["midi"][:-4]
            corner = corner_of.get((r, c))
            title = (
                f"{labels[corner]}: {html.escape(Path(result.corners[corner]).name)}"
                if corner is not None and result.corners else f"row {r}, column {c}"
            )
            wav = f' data-wav="{html.escape(cell["wav"])}"' if cell["wav"] else ""
            tds.append(
                f'<td class="cell{" corner" if corner is not None else ""}" data-cell="{stem}"{wav} title="{title}">'
                f'<img src="{html.escape(cell["png"])}" alt="{stem}"><div class="lab">'
                f'{labels[corner] if corner is not None else f"{r},{c}"}</div></td>'
            )
        rows.append("<tr>" + "".join(tds) + "</tr>")
    data = json.dumps({"notes": notes, "durations": durations}).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>musicfw beat blender</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td.cell {{ border: 2px solid #ccc; padding: 2px; cursor: pointer; text-align: center; }}
td.cell img {{ width: 140px; height: 70px; object-fit: cover; display: block; }}
td.corner {{ border-color: #468; }}
td.playing {{ background: #fe8; }}
td.inpath {{ outline: 3px solid #c33; }}
.lab {{ font-size: 12px; color: #555; }}
button {{ margin: 0.5em 0.5em 0.5em 0; }}
</style></head><body>
<h1>Beat blender</h1>
<p>A {g}&times;{g} grid of latent points between four pieces (corners A, B, C, D), decoded by the
MusicVAE. Click a cell to hear it. <b>Path mode</b>: switch it on, click cells in the order you
want, then play the path as one continuous piece. <code>walk.mid</code> in this folder is the
whole grid walked row by row.</p>
<label><input type="checkbox" id="pathmode"> path mode</label>
<button id="playpath">play path</button><button id="clearpath">clear path</button>
<button id="stop">stop</button> <span id="status"></span>
<table id="grid">{''.join(rows)}</table>
<script id="blend-data" type="application/json">{data}</script>
<script>
const DATA = JSON.parse(document.getElementById('blend-data').textContent);
let ctx = null, voices = [], path = [], timers = [];
function audio() {{ if (!ctx) ctx = new (window.AudioContext || window.webkitAudioContext)(); return ctx; }}
function stop() {{
  voices.forEach(v => {{ try {{ v.stop(); }} catch (e) {{}} }}); voices = [];
  timers.forEach(clearTimeout); timers = [];
  document.querySelectorAll('td.playing').forEach(td => td.classList.remove('playing'));
}}
function playNotes(stem, at) {{
  const a = audio();
  for (const [t, d, p, v, drum] of DATA.notes[stem]) {{
    const start = at + t, g = a.createGain(), peak = 0.15 * v / 127;
    g.gain.setValueAtTime(0, start); g.gain.linearRampToValueAtTime(peak, start + 0.005);
    g.gain.exponentialRampToValueAtTime(0.0001, start + (drum ? 0.12 : Math.max(d, 0.05)));
    g.connect(a.destination);
    let src;
    if (drum) {{
      const n = Math.floor(a.sampleRate * 0.12), buf = a.createBuffer(1, n, a.sampleRate), ch = buf.getChannelData(0);
      for (let i = 0; i < n; i++) ch[i] = (Math.random() * 2 - 1) * (p < 40 ? 1 - i / n : 0.6);
      src = a.createBufferSource(); src.buffer = buf;
      const f = a.createBiquadFilter(); f.type = p < 40 ? 'lowpass' : 'highpass'; f.frequency.value = p < 40 ? 200 : 4000;
      src.connect(f); f.connect(g);
    }} else {{
      src = a.createOscillator(); src.type = 'triangle';
      src.frequency.value = 440 * Math.pow(2, (p - 69) / 12); src.connect(g);
    }}
    src.start(start); src.stop(start + (drum ? 0.13 : Math.max(d, 0.05) + 0.05)); voices.push(src);
  }}
}}
function mark(stem, at) {{
  const td = document.querySelector(`td[data-cell="${{stem}}"]`), a = audio();
  timers.push(setTimeout(() => td.classList.add('playing'), (at - a.currentTime) * 1000));
  timers.push(setTimeout(() => td.classList.remove('playing'), (at + DATA.durations[stem] - a.currentTime) * 1000));
}}
function play(stems) {{
  stop(); let at = audio().currentTime + 0.05;
  for (const s of stems) {{ playNotes(s, at); mark(s, at); at += Math.max(DATA.durations[s], 0.25); }}
  document.getElementById('status').textContent = `playing ${{stems.length}} cell(s)`;
}}
document.querySelectorAll('td.cell').forEach(td => td.addEventListener('click', () => {{
  const stem = td.dataset.cell;
  if (document.getElementById('pathmode').checked) {{ path.push(stem); td.classList.add('inpath'); }}
  else play([stem]);
}}));
document.getElementById('playpath').onclick = () => play(path);
document.getElementById('clearpath').onclick = () => {{ path = []; document.querySelectorAll('td.inpath').forEach(td => td.classList.remove('inpath')); }};
document.getElementById('stop').onclick = stop;
</script></body></html>
"""
