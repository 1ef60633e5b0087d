"""Cold start of the README's first command: seconds from starting
``musicfw generate --model chorales-lstm --n 1 --max-bars 8 --seed 0`` in a new process to the
first ``.mid`` on disk, and to the command's end (its .png and .wav are rendered after the MIDI),
with the command's CPU time and the load average (issue 27's target: the first MIDI within 10 s
on a 2-core CPU).

    python benchmarks/first_midi.py [--repeat 3] [--musicfw PATH] [--model chorales-lstm]

Each run starts in a new empty folder (the samples land there); the model must be installed
(``pip install ./models``).  The folder is polled every 20 ms, so the first-MIDI time is at most
20 ms late.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(musicfw: str, model: str, folder: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen([musicfw, "generate", "--model", model, "--n", "1", "--max-bars", "8", "--seed", "0"],
                            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = None
    while proc.poll() is None:
        if first is None and any(folder.glob("samples/*/*.mid")):
            first = time.perf_counter() - t0
        time.sleep(0.02)
    end = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"musicfw generate failed (exit {proc.returncode}):\n{err}")
    if first is None:
        if not any(folder.glob("samples/*/*.mid")):
            raise SystemExit(f"musicfw generate wrote no .mid into {folder}")
        first = end
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"first_midi_s": first, "command_s": end, "cpu_s": cpu, "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--musicfw", default=shutil.which("musicfw") or "musicfw", help="the musicfw executable")
    ap.add_argument("--model", default="chorales-lstm")
    args = ap.parse_args(argv)
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="musicfw-first-midi-") as tmp:
            r = one_run(args.musicfw, args.model, Path(tmp))
        print(f"run {i + 1}: first MIDI {r['first_midi_s']:.2f} s, command {r['command_s']:.2f} s wall, "
              f"{r['cpu_s']:.2f} s CPU; load average {r['load']:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
