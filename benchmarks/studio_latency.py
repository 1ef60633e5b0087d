"""Studio latency: from the Generate request to the first generated note on the client.

The real studio app on uvicorn (127.0.0.1, a free port), the HTTP/JSON API as the page uses it
(``POST /api/generate`` with ``"stream": true``), for the default-size models at batch 1 on the
CPU: an LSTM 3x512 and a Transformer 4x256 (their default configs) over REMI, untrained (the
time per token does not depend on the weights; REMI's grammar makes every note take at most a
Position, Pitch, Velocity and Duration token, so an untrained model reaches its first note as
soon as a trained one would, give or take a Bar token).  The prompt is a real piece
(tests/data/midi/one_track/POP909_008.mid, 8 bars of context, the page's default), so the
time includes reading the prompt through the model.

Measured per request (``--repeats`` each, after one warm-up):
* ``first note``: request sent -> the first ``notes`` event read by the client (the page then
  schedules it 20 ms ahead in its synthesiser: add 20 ms for the audible note);
* ``first event``: request sent -> the ``job`` event (HTTP and job start);
* ``tokens``: the tokens generated up to that first note;
* ``CPU ms``: the job thread's own CPU time from the job's start to that note
  (``time.thread_time``): what the first note costs, whatever else the machine runs.  On a
  machine shared with other work the wall-clock numbers are larger by the share of the CPU the
  studio does not get; on an idle machine they approach ``first event + CPU``.

The client hangs up after the first note, which cancels the job (the studio's disconnect rule);
the next request waits for nothing.

    python benchmarks/studio_latency.py [--repeats 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import http.client
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
PROMPT = REPO / "tests" / "data" / "midi" / "one_track" / "POP909_008.mid"
MODELS = {
    "lstm 3x512": {"name": "lstm"},
    "transformer 4x256": {"name": "transformer"},
}
TOKEN = "benchmark-token"


def make_run(root: Path, model: dict, seed: int, tokenizer: dict | None = None, infill: bool = False) -> Path:
    """A run folder holding an untrained ``model`` over ``tokenizer`` (REMI by default; with the
    infill markers when ``infill``)."""
    import torch

    import musicfw
    from musicfw.api import build_from_section
    from musicfw.engine.infill import InfillTokenizer
    from musicfw.engine.rundir import RunFolder

    config = musicfw.load_config({"name": model["name"], "seed": seed, "data": {"name": "midi_folder", "path": str(root)},
                                  "tokenizer": tokenizer or {"name": "remi"}, "model": model,
                                  "train": {"infill": {"enabled": infill}},
                                  "sampler": [{"name": "temperature", "temperature": 1.0}, {"name": "top_p", "p": 0.95}]})
    run = RunFolder.create(root, config.name)
    run.save_config(config)
    tok = build_from_section("tokenizers", config.tokenizer)
    if infill:
        tok = InfillTokenizer(tok)
    tok.save(run.tokenizer_path)
    torch.manual_seed(seed)
    net = build_from_section("models", config.model, tokenizer=tok)
    run.checkpoints.mkdir()
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, run.checkpoints / "best.ckpt")
    return run.path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, method: str, path: str, body: bytes | None = None, kind: str = "application/json") -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request(method, path, body=body, headers={"X-Studio-Token": TOKEN, "Content-Type": kind})
    r = c.getresponse()
    out = json.loads(r.read())
    c.close()
    return out


def one(port: int, session: str, model: str, piece: str, seed: int) -> dict:
    return first_note(port, {"session": session, "model": model, "action": "continue", "pieces": {"piece": piece},
                             "params": {"bars": 2}, "seed": seed})


def first_note(port: int, request: dict) -> dict:
    """``POST /api/generate`` with ``request`` (streamed) until the first ``notes`` event:
    ``first_event`` and ``first_note`` (seconds from sending), ``tokens`` and ``cpu`` (the job
    thread's CPU seconds) at that note."""
    body = json.dumps({**request, "stream": True}).encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    t0 = time.perf_counter()
    c.request("POST", "/api/generate", body=body, headers={"X-Studio-Token": TOKEN, "Content-Type": "application/json"})
    r = c.getresponse()
    out: dict = {}
    buf = b""
    while True:
        line = r.readline()
        if not line:
            break
        buf += line
        if line != b"\n":
            continue
        ev = json.loads(buf.decode().strip()[6:])
        buf = b""
        now = time.perf_counter() - t0
        if ev["type"] == "job":
            out["first_event"] = now
        elif ev["type"] == "notes":
            out["first_note"] = now
            out["tokens"] = ev["tokens"]
            out["cpu"] = ev["cpu_seconds"]  # the job thread's CPU seconds from its start to this note
            break  # measured: hang up, which cancels the job (the rest of an untrained model's bars is noise)
        elif ev["type"] in ("done", "error", "cancelled"):
            raise SystemExit(f"the generation ended without a note: {ev}")
    c.close()
    return out


def serve(entries: list) -> tuple:
    """The studio app on uvicorn (a free port, a thread) with ``entries``, each model built
    before the first request as `musicfw studio` does for its model: (server, thread, port,
    a new session's id)."""
    import uvicorn

    from musicfw.core.plugins import load_registries
    from musicfw.plugins.studio.catalog import Catalog
    from musicfw.plugins.studio.server import create_app

    catalog = Catalog(load_registries(), entries)
    for e in entries:
        catalog.get(e.id)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(catalog, TOKEN), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, port, call(port, "POST", "/api/sessions")["session"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from musicfw.plugins.studio.catalog import run_entry

    tmp = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    entries = [run_entry(make_run(tmp / key.replace(" ", "_"), spec, args.seed), id=key.replace(" ", "_"))
               for key, spec in MODELS.items()]
    server, thread, port, session = serve(entries)
    piece = call(port, "POST", f"/api/sessions/{session}/pieces?name=prompt", PROMPT.read_bytes(), "audio/midi")
    print(f"prompt: {PROMPT.name}, {piece['notes_total']} notes; torch threads for decoding: 1 (of {torch.get_num_threads()})")
    from musicfw.api import build_tokenizer
    from musicfw.plugins.studio.actions import crop_to_bars
    import symusic

    prompt_tokens = len(build_tokenizer("remi").encode(crop_to_bars(symusic.Score(str(PROMPT)), 8)[0]))
    print(f"{'model':20s} {'prompt tok':>10s} {'first event ms':>15s} {'first note ms (median / max)':>30s} {'tokens to it':>13s} {'CPU ms (median / max)':>22s}")
    for e in entries:
        one(port, session, e.id, piece["id"], args.seed)  # warm-up
        runs = [one(port, session, e.id, piece["id"], args.seed + 1 + i) for i in range(args.repeats)]
        fn = [1000 * r["first_note"] for r in runs if "first_note" in r]
        fe = [1000 * r["first_event"] for r in runs]
        tk = [r["tokens"] for r in runs]
        cpu = [1000 * r["cpu"] for r in runs]
        print(f"{e.id:20s} {prompt_tokens:>10d} {statistics.median(fe):>15.1f} "
              f"{statistics.median(fn):>18.1f} / {max(fn):>8.1f} {statistics.median(tk):>13.0f} {statistics.median(cpu):>12.1f} / {max(cpu):>7.1f}", flush=True)
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    server.should_exit = True
    thread.join(30)  # a clean stop (a daemon thread killed at exit aborts torch's threads)


if __name__ == "__main__":
    main()
