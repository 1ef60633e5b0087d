"""Studio latency of ``infill`` and ``harmonize``: from the Generate request to the first
generated note on the client, as benchmarks/studio_latency.py measures ``continue``.

The real studio app on uvicorn, the HTTP/JSON API as the page uses it (``POST /api/generate``,
``"stream": true``), default-size models at batch 1 on the CPU, untrained (the time per token
does not depend on the weights): an LSTM 3x512 and a Transformer 4x256 (their default configs)
over REMI with the infill markers (``train.infill.enabled``) filling bars 5-6 of the first
``--bars`` bars of tests/data/midi/one_track/POP909_008.mid, and the same two over the
``tracks`` tokenizer writing alto, tenor and bass under an 8-bar soprano line.  Infilling reads
the song's whole left and right context (the MMM layout) before its first filled token, one model
step per token (musicfw/engine/infill.py ``fill_tokens``), so its first note costs the context's
length; harmonisation reads one segment's given voice first.

Per request (``--repeats`` each, after one warm-up): ``first note`` (request sent -> the first
``notes`` event read), ``first event`` (-> the ``job`` event), the job thread's ``CPU ms`` to that
note (``time.thread_time``), and the context tokens read first.  The client hangs up after the
first note, which cancels the job.

    python benchmarks/studio_fill_latency.py [--repeats 5] [--seed 0] [--bars 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from studio_latency import PROMPT, call, first_note, make_run, serve  # noqa: E402  (the same client and server)

MODELS = {"lstm_3x512": {"name": "lstm"}, "transformer_4x256": {"name": "transformer"}}


def soprano(bars: int = 8) -> bytes:
    import symusic

    score = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("Soprano", 0, False)
    line = (72, 74, 76, 77, 79, 77, 76, 74)
    for i in range(bars * 4):
        track.notes.append(symusic.Note(i * 480, 480, line[i % len(line)], 80))
    score.tracks.append(track)
    return bytes(score.dumps_midi())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bars", type=int, default=16, help="bars of the song infilling reads (default 16)")
    args = ap.parse_args()

    import symusic

    from musicfw.api import build_tokenizer
    from musicfw.plugins.studio.actions import crop_to_bars
    from musicfw.plugins.studio.catalog import run_entry

    tmp = Path(tempfile.mkdtemp(prefix="studio-fill-bench-"))
    entries, cases = [], []
    for key, spec in MODELS.items():
        entries.append(run_entry(make_run(tmp / f"infill_{key}", spec, args.seed, {"name": "remi"}, infill=True), id=f"infill_{key}"))
        cases.append((f"infill_{key}", "infill", {"bars": "5-6"}, "song"))
        entries.append(run_entry(make_run(tmp / f"tracks_{key}", spec, args.seed, {"name": "tracks"}), id=f"tracks_{key}"))
        cases.append((f"tracks_{key}", "harmonize", {}, "melody"))
    server, thread, port, session = serve(entries)
    score = symusic.Score(str(PROMPT))
    downbeats = score.get_downbeats()
    song = score.clip(0, int(downbeats[args.bars]) if len(downbeats) > args.bars else int(score.end()) + 1)
    pieces = {"song": call(port, "POST", f"/api/sessions/{session}/pieces?name=song", bytes(song.dumps_midi()), "audio/midi"),
              "melody": call(port, "POST", f"/api/sessions/{session}/pieces?name=melody", soprano(), "audio/midi")}
    remi = build_tokenizer("remi")
    context = len(remi.encode(crop_to_bars(song, args.bars)[0]))
    print(f"infill: bars 5-6 of the first {args.bars} bars of {PROMPT.name} ({pieces['song']['notes_total']} notes, "
          f"{context} REMI tokens); harmonize: alto, tenor, bass under an 8-bar soprano")
    print(f"{'model':28s} {'action':>10s} {'first event ms':>15s} {'first note ms (median / max)':>30s} {'CPU ms (median / max)':>22s} {'tokens to it (median / max)':>28s}")
    for model, action, params, piece in cases:
        body = {"session": session, "model": model, "action": action, "pieces": {"piece": pieces[piece]["id"]},
                "params": params, "seed": args.seed}
        first_note(port, body)  # warm-up
        runs = [first_note(port, {**body, "seed": args.seed + 1 + i}) for i in range(args.repeats)]
        fn = [1000 * r["first_note"] for r in runs]
        fe = [1000 * r["first_event"] for r in runs]
        cpu = [1000 * r["cpu"] for r in runs]
        tk = [r["tokens"] for r in runs]
        print(f"{model:28s} {action:>10s} {statistics.median(fe):>15.1f} {statistics.median(fn):>18.1f} / {max(fn):>8.1f} "
              f"{statistics.median(cpu):>12.1f} / {max(cpu):>7.1f} {statistics.median(tk):>19.0f} / {max(tk):>6d}", flush=True)
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    server.should_exit = True
    thread.join(30)


if __name__ == "__main__":
    main()
