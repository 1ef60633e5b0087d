"""Corpus preparation at scale: musicfw's token shards against MidiTok's tokenizer and against
the parse floor (``symusic.Score(path)`` alone), on the same generated files, with the same
number of processes, side by side in one run.

1. A corpus of ``max(--sizes)`` MIDI files is generated into a temporary folder (never
   committed) from the shipped MIDI: tests/data/midi (one_track, multitrack), examples/midi and
   the Bach chorales and folk tunes shipped in plugins/datasets/data/music21_*.zip, each cut
   into ``--quarters``-long segments (8 bars of 4/4 by default) and transposed by -5..+6
   semitones; a seeded random sample of (segment, transposition) pairs, so that the first N
   files are a sample of the same mix for every N.
2. For each size N (the first N files by path) and each contender, a fresh Python process
   prepares the files and reports wall time, CPU time (user + system of the process and its
   workers: the steadier figure on a shared machine, where the wall time mostly says how much
   of the cores the other jobs left), files/s of both, and peak RSS (its own, and the largest
   of its worker processes, from ``getrusage``):

   * ``musicfw shards``: ``MusicDataModule`` with ``data.format: shards`` and ``--workers``
     processes: list, stat, read, tokenize (musicfw's ``remi``), write the Arrow shards with
     their sha256 and the manifest, then open them (every shard verified).
   * ``MidiTok REMI``: ``miditok.REMI`` (MidiTok's own settings made comparable to musicfw's
     remi: pitches 21..108, 4 positions per quarter, durations up to 8 quarters, 32
     velocities, 32 tempos 40..250, time signatures, one sequence per track) run over the same
     files by a ``multiprocessing.Pool`` of ``--workers`` processes (MidiTok has no parallel
     tokenizer of its own; ``tokenize_dataset`` is one process); MidiTok is imported and the
     tokenizer built before the clock starts (the forked workers inherit it), and each worker
     calls ``tokenizer.encode(path)`` and returns the token count.  The ids are not written
     anywhere, so MidiTok does less work than musicfw here.  musicfw's clock includes starting
     its worker processes.
   * ``parse only`` -- the floor: the same files, the same ``--workers`` processes (a
     ``multiprocessing.Pool``, as MidiTok's), each calling ``symusic.Score(path)`` and nothing
     else (no tokens, no checks, nothing written).  Listed before the clock starts.  Every
     contender's time is also printed as a multiple of this one: what is left above the
     floor is the tokenizer, the checks and the writing, not the reading.
   * ``musicfw cache`` (``--with-cache``): the one-array token cache (``data.format: cache``),
     one process holding every piece in memory: what ``format: auto`` picks below 2,000 files.

3. Streaming: training windows (``train.batch_size`` 32 x ``train.seq_len`` 256) read from
   the largest corpus's shards through ``train_dataloader()`` (one process, no DataLoader
   workers): batches/s and real (unpadded) tokens/s.

    OMP_NUM_THREADS=1 python benchmarks/data.py [--sizes 5000 20000] [--workers 2] [--with-cache]
    python benchmarks/data.py --profile 1500   # cProfile of musicfw's preparation, one process

MidiTok is a benchmark/test dependency (``pip install musicfw[bench]``).  Wall-clock times on
a shared machine are noisy: compare the ratios of one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# keep the script's own folder off the import path (its files are named like packages)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


# --------------------------------------------------------------------------------------------
# the generated corpus
# --------------------------------------------------------------------------------------------


def source_scores(corpora: tuple[str, ...] = ("bach_chorales", "folk_melodies")) -> list[tuple[str, object]]:
    import hashlib

    import symusic

    import musicfw

    out, seen = [], set()
    for folder in (REPO / "tests" / "data" / "midi" / "one_track", REPO / "tests" / "data" / "midi" / "multitrack",
                   REPO / "examples" / "midi"):
        for path in sorted(folder.rglob("*.mid")):
            digest = hashlib.sha1(path.read_bytes()).hexdigest()
            if digest in seen:  # tests/data holds copies of some examples
                continue
            seen.add(digest)
            out.append((path.stem, symusic.Score(str(path))))
    for corpus in corpora:  # shipped converted: seconds to load
        data = musicfw.load_data(corpus, seed=0, progress=False)
        out.extend((p.id.replace("/", "_").replace("#", "_"), p.score) for p in data.pieces())
    return out


def generate(folder: Path, n: int, quarters: int = 32, corpora: tuple[str, ...] = ("bach_chorales", "folk_melodies")) -> float:
    """Write ``n`` MIDI files: segments x transpositions, round-robin over the sources."""
    t0 = time.perf_counter()
    scores = source_scores(corpora)
    segments = []
    for name, score in scores:
        span = quarters * int(score.ticks_per_quarter)
        end = int(score.end())
        for k, start in enumerate(range(0, max(end - span // 2, 1), span)):
            seg = score.clip(start, start + span, clip_end=True)
            if start:
                seg = seg.shift_time(-start)
            if seg.note_num() >= 8:
                segments.append((f"{name}_{k:03d}", seg))
    import numpy as np

    shifts = (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6)
    if n > len(segments) * len(shifts):
        raise SystemExit(f"only {len(segments) * len(shifts)} segments x transpositions from the shipped MIDI; lower --sizes")
    # a seeded random sample of (segment, transposition), written in that order: the first N
    # files by path are a random sample of the whole corpus, for every N
    picks = np.random.default_rng(0).permutation(len(segments) * len(shifts))[:n]
    for written, pick in enumerate(picks.tolist()):
        (name, seg), shift = segments[pick // len(shifts)], shifts[pick % len(shifts)]
        sub = folder / f"{written // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        seg.shift_pitch(shift).dump_midi(str(sub / f"{written:06d}_{name}_t{shift:+d}.mid"))
    print(f"generated {n:,} files from {len(scores)} shipped pieces ({len(segments):,} segments) "
          f"in {time.perf_counter() - t0:.1f} s into {folder}", file=sys.stderr)
    return time.perf_counter() - t0


def first_files(corpus: Path, n: int) -> list[Path]:
    files = sorted((p for p in corpus.rglob("*") if p.suffix == ".mid"), key=lambda p: p.relative_to(corpus).as_posix())
    return files[:n]


# --------------------------------------------------------------------------------------------
# one measurement per fresh process
# --------------------------------------------------------------------------------------------


def _rss_now() -> float:
    """This process's resident memory now (MiB): the baseline of the imports."""
    with open("/proc/self/statm") as f:
        return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its finished worker processes."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _peak() -> dict[str, float]:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"rss_mib": round(me, 1), "worker_rss_mib": round(kids, 1)}


def _musicfw(corpus: Path, n: int, workers: int, cache: Path, fmt: str) -> dict:
    from musicfw.core.build import build
    from musicfw.engine.data import MusicDataModule

    dataset = build("datasets", "midi_folder", path=str(corpus), max_files=n, format=fmt, num_workers=workers)
    tokenizer = build("tokenizer", "remi")
    import pyarrow  # noqa: F401  (imported before the clock starts, as MidiTok is)

    before = _rss_now()
    c0, t0 = _cpu(), time.perf_counter()
    dm = MusicDataModule(dataset, tokenizer, cache_dir=str(cache), progress=False, data_format=fmt,
                         workers=workers, batch_size=32, seq_len=256).prepare()
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"seconds": seconds, "cpu_seconds": cpu, "files": n, "pieces": len(dm.store.ids),
            "tokens": int(dm.store.lengths().sum()), "rss_before_mib": before}


_TOK = None


def _miditok_init() -> None:
    global _TOK
    import miditok

    config = miditok.TokenizerConfig(
        pitch_range=(21, 109), beat_res={(0, 8): 4}, num_velocities=32, use_tempos=True, num_tempos=32,
        tempo_range=(40, 250), use_time_signatures=True, use_programs=False, use_chords=False,
    )
    _TOK = miditok.REMI(config)


def _miditok_one(path: str) -> int:
    try:
        out = _TOK.encode(Path(path))
    except Exception:  # a file MidiTok cannot read counts as a file, with no tokens
        return -1
    seqs = out if isinstance(out, list) else [out]
    return sum(len(s.ids) for s in seqs)


def _miditok(corpus: Path, n: int, workers: int) -> dict:
    import multiprocessing as mp

    files = [str(p) for p in first_files(corpus, n)]
    _miditok_init()  # import and build MidiTok before the clock starts; the workers inherit it
    before = _rss_now()
    c0, t0 = _cpu(), time.perf_counter()
    tokens = failed = 0
    if workers <= 1:
        counts = map(_miditok_one, files)
        for c in counts:
            tokens, failed = tokens + max(c, 0), failed + (c < 0)
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            for c in pool.imap_unordered(_miditok_one, files, chunksize=64):
                tokens, failed = tokens + max(c, 0), failed + (c < 0)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"seconds": seconds, "cpu_seconds": cpu, "files": n, "pieces": n - failed, "tokens": tokens,
            "rss_before_mib": before}


def _parse_one(path: str) -> None:
    import symusic

    symusic.Score(path)


def _parse(corpus: Path, n: int, workers: int) -> dict:
    """The floor: ``symusic.Score(path)`` over the same files in the same number of processes."""
    import multiprocessing as mp

    import symusic  # noqa: F401  (imported before the clock starts; the workers inherit it)

    files = [str(p) for p in first_files(corpus, n)]
    before = _rss_now()
    c0, t0 = _cpu(), time.perf_counter()
    if workers <= 1:
        for f in files:
            _parse_one(f)
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_parse_one, files, chunksize=64):
                pass
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"seconds": seconds, "cpu_seconds": cpu, "files": n, "pieces": n, "tokens": 0, "rss_before_mib": before}


def _stream(corpus: Path, n: int, cache: Path, batches: int) -> dict:
    import torch

    from musicfw.core.build import build
    from musicfw.engine.data import MusicDataModule

    torch.set_num_threads(1)
    dataset = build("datasets", "midi_folder", path=str(corpus), max_files=n, format="shards")
    tokenizer = build("tokenizer", "remi")
    t0 = time.perf_counter()
    dm = MusicDataModule(dataset, tokenizer, cache_dir=str(cache), progress=False, data_format="shards",
                         batch_size=32, seq_len=256).prepare()
    opened = time.perf_counter() - t0
    loader = dm.train_dataloader()
    done = real = 0
    t0 = time.perf_counter()
    while done < batches:
        for batch in loader:
            real += int(batch["mask"].sum())
            done += 1
            if done >= batches:
                break
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "open_seconds": opened, "batches": done, "tokens": real}


def profile(corpus: Path, n: int, top: int = 25) -> None:
    """musicfw's preparation of the first ``n`` files in this one process under cProfile (the
    parse-only time of the same files first, for scale)."""
    import cProfile
    import pstats

    import symusic

    from musicfw.core.build import build
    from musicfw.engine.data import MusicDataModule

    files = [str(p) for p in first_files(corpus, n)]
    t0 = time.perf_counter()
    for f in files:
        symusic.Score(f)
    parse = time.perf_counter() - t0
    dataset = build("datasets", "midi_folder", path=str(corpus), max_files=n, format="shards", num_workers=1)
    tokenizer = build("tokenizer", "remi")
    with tempfile.TemporaryDirectory(prefix="musicfw-bench-profile-") as cache:
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        MusicDataModule(dataset, tokenizer, cache_dir=cache, progress=False, data_format="shards", workers=1,
                        batch_size=32, seq_len=256).prepare()
        prof.disable()
        seconds = time.perf_counter() - t0
    print(f"{n:,} files, one process: parse only {parse:.2f} s, musicfw shards {seconds:.2f} s under cProfile")
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def child(args: argparse.Namespace) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    corpus, cache = Path(args.corpus), Path(args.cache)
    if args.child == "musicfw-shards":
        out = _musicfw(corpus, args.n, args.workers, cache, "shards")
    elif args.child == "musicfw-cache":
        out = _musicfw(corpus, args.n, 1, cache, "cache")
    elif args.child == "miditok":
        out = _miditok(corpus, args.n, args.workers)
    elif args.child == "parse":
        out = _parse(corpus, args.n, args.workers)
    else:
        out = _stream(corpus, args.n, cache, args.batches)
    out.update(_peak())
    print(json.dumps(out))


def measure(what: str, corpus: Path, n: int, workers: int, cache: Path, batches: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--corpus", str(corpus), "--n", str(n),
           "--workers", str(workers), "--cache", str(cache), "--batches", str(batches)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if res.returncode != 0:
        raise SystemExit(f"{what} failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"  {what} {n:,}: {json.dumps(out)}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    p.add_argument("--workers", type=int, default=2, help="processes on each side (default 2)")
    p.add_argument("--quarters", type=int, default=32, help="segment length in quarter notes")
    p.add_argument("--with-cache", action="store_true", help="also the one-process token cache")
    p.add_argument("--corpora", nargs="*", default=["bach_chorales", "folk_melodies"],
                   help="shipped corpora cut into the generated files besides the MIDI files (default both)")
    p.add_argument("--batches", type=int, default=300, help="training batches streamed")
    p.add_argument("--keep", metavar="DIR", help="generate into (or reuse) DIR instead of a temp folder")
    p.add_argument("--profile", type=int, metavar="N", help="only profile musicfw's preparation of N files in one process")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    from importlib import metadata

    from musicfw.core.version import musicfw_version

    with tempfile.TemporaryDirectory(prefix="musicfw-bench-data-") as tmp:
        corpus = Path(args.keep) if args.keep else Path(tmp) / "corpus"
        biggest = max(args.sizes) if not args.profile else args.profile
        if not (corpus.is_dir() and len(first_files(corpus, biggest)) >= biggest):
            generate(corpus, biggest, args.quarters, tuple(args.corpora))
        if args.profile:
            profile(corpus, args.profile)
            return
        rows = []
        for n in sorted(args.sizes):
            row = {"n": n}
            row["parse"] = measure("parse", corpus, n, args.workers, Path(tmp) / "unused")
            row["musicfw"] = measure("musicfw-shards", corpus, n, args.workers, Path(tmp) / f"cache-{n}")
            row["miditok"] = measure("miditok", corpus, n, args.workers, Path(tmp) / "unused")
            if args.with_cache:
                row["cache"] = measure("musicfw-cache", corpus, n, 1, Path(tmp) / f"cache1-{n}")
            rows.append(row)
        stream = measure("stream", corpus, biggest, 1, Path(tmp) / f"cache-{biggest}", args.batches)

    load = os.getloadavg()
    print(f"\nmusicfw {musicfw_version()}, MidiTok {metadata.version('miditok')}, symusic {metadata.version('symusic')}, "
          f"{args.workers} processes each, os.cpu_count()={os.cpu_count()}; OMP_NUM_THREADS=1; "
          f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)\n")
    print("| files | contender | processes | wall s | files/s (wall) | CPU s | files per CPU-second | tokens | RSS after imports (MiB) | peak RSS, main (MiB) | peak RSS, largest worker (MiB) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        for key, label, procs in (("parse", "parse only: symusic.Score(path) (the floor)", args.workers),
                                  ("musicfw", "musicfw shards (remi)", args.workers),
                                  ("miditok", "MidiTok REMI, Pool", args.workers),
                                  ("cache", "musicfw cache (remi)", 1)):
            if key not in row:
                continue
            r = row[key]
            print(f"| {row['n']:,} | {label} | {procs} | {r['seconds']:.1f} | {r['files'] / r['seconds']:,.0f} | "
                  f"{r['cpu_seconds']:.1f} | {r['files'] / r['cpu_seconds']:,.0f} | {r['tokens']:,} | {r['rss_before_mib']:,.0f} | {r['rss_mib']:,.0f} | {r['worker_rss_mib']:,.0f} |")
    print()
    for row in rows:
        m, t, f = row["musicfw"], row["miditok"], row["parse"]
        print(f"{row['n']:,} files: musicfw / MidiTok files/s = {(t['seconds'] / m['seconds']):.2f}x wall, "
              f"{(t['cpu_seconds'] / m['cpu_seconds']):.2f}x per CPU-second")
        for key, label in (("musicfw", "musicfw shards"), ("miditok", "MidiTok REMI"), ("cache", "musicfw cache")):
            if key in row:
                r = row[key]
                print(f"{row['n']:,} files: {label} / parse floor = {r['seconds'] / f['seconds']:.1f}x wall, "
                      f"{r['cpu_seconds'] / f['cpu_seconds']:.1f}x CPU seconds "
                      f"(floor: {1e3 * f['cpu_seconds'] / f['files']:.3f} ms of CPU per file)")
    print(f"\nstreaming from the {biggest:,}-file shards (opened and verified in {stream['open_seconds']:.1f} s): "
          f"{stream['batches'] / stream['seconds']:,.1f} batches/s of 32 x 256, "
          f"{stream['tokens'] / stream['seconds']:,.0f} real tokens/s, peak RSS {stream['rss_mib']:,.0f} MiB")


if __name__ == "__main__":
    main()
