"""``musicfw listen create``: a listening-study folder.

A study folder holds::

    STUDY/
      manifest.json     systems, clips (seeds, sources, loudness), items, settings
      audio/<id>.flac   one file per clip; the id is random and says nothing about the system
      ratings.sqlite    created by ``listen serve`` (WAL mode)

Clips.  Each system (a run's ``samples/*.mid``, the reference pieces, the low anchor) gets
``--clips N`` clips.  Pieces are visited in an order drawn from ``numpy.random.default_rng([seed,
system index])``; from each piece one clip is cut *at bar lines* (bars from the piece's time
signatures, 4/4 when it has none): a start bar drawn from the bars after which at least
``--seconds`` of music remain, and the end bar line whose time (through the tempo map) is
closest to start + ``--seconds``.  A piece shorter than that is taken whole.  Notes still
sounding at the end bar line are cut there.

Audio.  Every clip is rendered by :class:`musicfw.music.render.AudioRenderer` with one soundfont,
trimmed to the clip plus a one-second faded release, and normalised to -23 LUFS integrated
loudness (EBU R128) measured with pyloudnorm (ITU-R BS.1770-4), with one correction step (the
standard's absolute gate is not scale-invariant); a clip whose peak would then
exceed 0.98 full scale is scaled down to that peak and the loudness it ends at is recorded.

Low anchor.  ``--anchors K`` clips are copies of reference clips whose note pitches are shuffled
among the notes of each track (same rhythm, same pitch set, no melody or harmony): a rater who
rates an anchor 4 or 5 fails the attention check and is excluded by ``listen results``.

MUSHRA (``--tests ...,mushra``, ITU-R BS.1534-3).  One item per reference clip k (as many as the
system with the fewest clips has): the open reference (reference clip k), and on the same page
the hidden reference (a copy of it under another id), the low anchor (reference clip k with its
pitches shuffled, as above), the mid anchor (reference clip k with its beats shuffled, see
:func:`shuffle_beats`) and the k-th clip of every run.  BS.1534's anchors are low-pass filtered
signals, which say nothing about symbolic music; ours degrade the reference musically instead:
the low anchor keeps rhythm and pitch set but loses melody and harmony; the mid anchor keeps every
beat's chord, pitches and rhythm but loses the order of beats (voice leading, melody, phrase),
which is what a locally plausible, globally incoherent model (an n-gram or Markov chain) writes,
so it sits between the two ends.  Both are deterministic and need no trained model.

Blinding.  Every clip file of a study has the same sample rate (44.1 kHz), the same number of
samples (shorter clips are padded with silence) and the same byte size (each FLAC file gets a
PADDING metadata block up to the study's largest file + 4 bytes), and the same modification time,
so nothing a browser's developer tools show (size, duration, ``Last-Modified``, which the server
does not send either) tells systems apart.

Repeats and training.  ``--repeats N`` adds N MOS items and N MUSHRA items again (new item ids,
``repeat_of`` the original) for a consistency score; their answers are not used for the means.
With a reference, the study gets a training page: copies (new ids) of one reference clip and its
anchors, labelled, played before the test starts.

The folder is written under a temporary name next to ``--out`` and renamed when complete, so a
folder named STUDY is either whole or absent; :func:`load_study` still checks every clip file
(size and SHA-256) and refuses a half-written or damaged study with a :class:`DataError`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from musicfw.core.atomic import atomic_write
from musicfw.core.errors import ConfigError, DataError
from musicfw.core.version import musicfw_version

MANIFEST = "manifest.json"
AUDIO_DIR = "audio"
DB_NAME = "ratings.sqlite"
FORMAT = "musicfw-listening-study"
VERSION = 1
TARGET_LUFS = -23.0
PEAK_LIMIT = 0.98
RELEASE_SECONDS = 1.0
#: MIDI files larger than this are skipped (a hostile or broken file must not eat the memory)
MAX_MIDI_BYTES = 20_000_000
CLIP_ID = re.compile(r"^[0-9a-f]{16}$")
ITEM_ID = re.compile(r"^[0-9a-f]{16}$")
ANCHOR_THRESHOLD = 4
SPLITS = ("train", "valid", "test")
TESTS = ("mos", "ab", "mushra")
SAMPLE_RATE = 44100
#: BS.1534-3 post-screening: a rater who scores the hidden reference below 90 on more than 15% of
#: the MUSHRA items is excluded
HIDDEN_REFERENCE_MIN = 90
HIDDEN_REFERENCE_MAX_SHARE = 0.15
MUSHRA_ROLES = ("hidden_reference", "low_anchor", "mid_anchor")


def _new_id() -> str:
    return secrets.token_hex(8)


def _sha256(path: Path) -> str:
    from musicfw.engine.integrity import sha256_file

    return sha256_file(path)


# --------------------------------------------------------------------------------------
# bars, seconds and clips
# --------------------------------------------------------------------------------------


def bar_ticks(score: Any) -> list[int]:
    """Tick of every bar line from 0 up to and including the first one at or after the
    score's end, following its time signatures (4/4 before the first one, or without any)."""
    tpq = int(score.ticks_per_quarter)
    end = int(score.end())
    sigs = sorted(((int(ts.time), int(ts.numerator), int(ts.denominator)) for ts in score.time_signatures), key=lambda t: t[0])
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0, 4, 4))
    bars: list[int] = []
    for i, (time, num, den) in enumerate(sigs):
        if i + 1 < len(sigs) and sigs[i + 1][0] <= time:
            continue  # two signatures at one tick: the later one holds
        length = max(1, round(num * tpq * 4 / max(den, 1)))
        last = i + 1 == len(sigs)
        # a signature change inside a bar starts a new bar there
        stop = end if last else sigs[i + 1][0]
        t = time
        while t < stop:
            bars.append(t)
            t += length
            if len(bars) > 1_000_000:  # a hostile file: a tiny bar and a huge end
                raise DataError("a piece has more than a million bars; it cannot be clipped.")
        if last:
            bars.append(t)  # the first bar line at or after the end
    return bars


def ticks_to_seconds(score: Any, ticks: Sequence[int]) -> list[float]:
    """Seconds at the given ticks through the score's tempo map (120 qpm before the first tempo)."""
    tpq = float(score.ticks_per_quarter)
    tempos = sorted(((int(t.time), float(t.mspq)) for t in score.tempos), key=lambda t: t[0])
    if not tempos or tempos[0][0] > 0:
        tempos.insert(0, (0, 500_000.0))
    starts = [t for t, _ in tempos]
    acc = [0.0]
    for (t0, m0), (t1, _) in zip(tempos, tempos[1:]):
        acc.append(acc[-1] + (t1 - t0) * m0 / 1e6 / tpq)
    import bisect

    out = []
    for tick in ticks:
        i = max(0, bisect.bisect_right(starts, int(tick)) - 1)
        out.append(acc[i] + (int(tick) - tempos[i][0]) * tempos[i][1] / 1e6 / tpq)
    return out


def _n_notes(score: Any) -> int:
    return sum(len(t.notes) for t in score.tracks)


def cut_clip(score: Any, seconds: float, rng: Any, min_notes: int = 4) -> tuple[Any, dict[str, Any]] | None:
    """A clip of ``score`` from one bar line to another, about ``seconds`` long (see the module
    docstring), shifted to start at 0; None when the piece has fewer than ``min_notes`` notes
    in every candidate.  Returns ``(clip, where)`` with the bars, ticks and seconds cut."""
    if _n_notes(score) < min_notes:
        return None
    bars = bar_ticks(score)
    secs = ticks_to_seconds(score, bars)
    total = secs[-1]
    whole = total <= seconds * 1.1 or len(bars) < 3
    if whole:
        candidates = [0]
    else:
        candidates = [i for i, s in enumerate(secs[:-1]) if s + seconds <= total + 1e-9] or [0]
    order = list(rng.permutation(len(candidates)))[:16]
    for k in order:
        b = candidates[int(k)]
        if whole:
            e = len(bars) - 1
        else:
            later = range(b + 1, len(bars))
            e = min(later, key=lambda j: (abs(secs[j] - secs[b] - seconds), j))
        start, end = bars[b], bars[e]
        clip = score.clip(start, end, clip_end=False)
        for track in clip.tracks:
            for note in track.notes:
                if note.time + note.duration > end:
                    note.duration = max(1, end - note.time)
        clip = clip.shift_time(-start)
        if _n_notes(clip) < min_notes:
            continue
        return clip, {
            "start_bar": b,
            "end_bar": e,
            "start_tick": int(start),
            "end_tick": int(end),
            "start_seconds": round(secs[b], 4),
            "end_seconds": round(secs[e], 4),
            "seconds": round(secs[e] - secs[b], 4),
        }
    return None


def shuffle_pitches(score: Any, rng: Any) -> Any:
    """A copy of ``score`` whose note pitches are permuted among the notes of each track."""
    out = score.copy()
    for track in out.tracks:
        notes = list(track.notes)
        if len(notes) < 2:
            continue
        pitches = [n.pitch for n in notes]
        perm = rng.permutation(len(pitches))
        for note, j in zip(notes, perm):
            note.pitch = pitches[int(j)]
    return out


def beat_ticks(score: Any) -> int:
    """Ticks of one beat of the score's first time signature (a quarter in 4/4 or 3/4, a dotted
    quarter in 6/8, 9/8 or 12/8, the denominator's note otherwise; a quarter without one)."""
    tpq = int(score.ticks_per_quarter)
    sigs = sorted(((int(ts.time), int(ts.numerator), int(ts.denominator)) for ts in score.time_signatures), key=lambda t: t[0])
    if not sigs:
        return tpq
    _, num, den = sigs[0]
    den = max(den, 1)
    if den == 8 and num in (6, 9, 12):
        return max(1, tpq * 3 // 2)
    return max(1, tpq * 4 // den)


def shuffle_beats(score: Any, rng: Any) -> Any:
    """The mid anchor: a copy of ``score`` cut into beats (:func:`beat_ticks`) whose order is
    permuted (one permutation for all tracks, so each beat's chord stays whole); a note is cut
    at the end of the beat it starts in.  Every beat keeps its pitches and rhythm; melody, voice
    leading and phrase are lost."""
    out = score.copy()
    beat = beat_ticks(score)
    n_beats = max(1, -(-int(score.end()) // beat))
    if n_beats > 100_000:
        raise DataError("a clip has more than 100,000 beats; it cannot be an anchor.")
    perm = rng.permutation(n_beats)
    where = {int(old): new for new, old in enumerate(perm)}
    for track in out.tracks:
        for note in track.notes:
            b, offset = divmod(int(note.time), beat)
            note.duration = max(1, min(int(note.duration), beat - offset))
            note.time = where[b] * beat + offset
        track.notes.sort(key=lambda n: (n.time, n.pitch))
    return out


# --------------------------------------------------------------------------------------
# audio
# --------------------------------------------------------------------------------------


def loudness_normalise(audio: Any, rate: int, target: float = TARGET_LUFS) -> tuple[Any, dict[str, Any]] | None:
    """``audio`` scaled to ``target`` LUFS (None when it is silent); see the module docstring."""
    import numpy as np
    import pyloudnorm

    meter = pyloudnorm.Meter(rate)
    before = float(meter.integrated_loudness(audio))
    if not np.isfinite(before) or before < -70.0:
        return None
    gain = 10.0 ** ((target - before) / 20.0)
    # BS.1770's absolute gate (-70 LUFS) is not scale-invariant: quiet blocks (the release, rests)
    # move across it when the gain is applied, so one correction step follows
    after = float(meter.integrated_loudness(audio * gain))
    if np.isfinite(after):
        gain *= 10.0 ** ((target - after) / 20.0)
    out = audio * gain
    peak = float(np.max(np.abs(out)))
    limited = peak > PEAK_LIMIT
    if limited:
        out = out * (PEAK_LIMIT / peak)
    after = float(meter.integrated_loudness(out))
    return out.astype(np.float32), {
        "loudness_before_lufs": round(before, 2),
        "gain_db": round(20 * np.log10(gain), 2),
        "loudness_lufs": round(after, 2),
        "peak": round(min(peak, PEAK_LIMIT), 4),
        "peak_limited": bool(limited),
    }


class ClipRenderer:
    """Score -> normalised FLAC file, through core's AudioRenderer (its public interface only)."""

    def __init__(self, soundfont: str | None, tmp: Path):
        from musicfw.music.render import AudioRenderer

        self.renderer = AudioRenderer(soundfont, sample_rate=SAMPLE_RATE)
        self.soundfont = getattr(self.renderer, "soundfont", soundfont)
        self.tmp = tmp

    def render(self, score: Any, seconds: float, path: Path) -> dict[str, Any] | None:
        import numpy as np
        import soundfile as sf

        wav = self.tmp / f"render-{secrets.token_hex(4)}.wav"
        try:
            written = self.renderer.render(score, wav)
            if written is None or not Path(written).is_file():
                raise DataError(
                    "No audio could be rendered (no General MIDI soundfont was found, or no synthesizer "
                    "worked). Install one (Debian: apt-get install timgm6mb-soundfont) or pass --soundfont FILE.sf2."
                )
            audio, rate = sf.read(str(written), dtype="float32", always_2d=True)
        finally:
            wav.unlink(missing_ok=True)
        keep = min(len(audio), int(round((seconds + RELEASE_SECONDS) * rate)))
        audio = audio[:keep].copy()
        fade_from = int(round(seconds * rate))
        if keep > fade_from:
            ramp = np.linspace(1.0, 0.0, keep - fade_from, dtype=np.float32)
            audio[fade_from:] *= ramp[:, None]
        norm = loudness_normalise(audio, rate)
        if norm is None:
            return None
        audio, info = norm
        sf.write(str(path), audio, rate, format="FLAC", subtype="PCM_16")
        info.update({"sample_rate": int(rate), "channels": int(audio.shape[1]), "audio_seconds": round(len(audio) / rate, 3)})
        return info


# --------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------


@dataclass
class Source:
    """One system's pieces: a list of (name, loader) so that files are read lazily."""

    name: str
    kind: str  # "run" | "reference"
    description: str
    run: str | None
    items: list[tuple[str, Any]]  # (name, Path or Score)
    skipped: list[dict[str, str]]


def _midi_files(folder: Path, recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in (".mid", ".midi"))


def run_source(run: Path, name: str) -> Source:
    if not run.is_dir():
        raise ConfigError(f"--run {run}: no such folder (give a musicfw run folder with samples/*.mid).")
    samples = run / "samples"
    files = _midi_files(samples, recursive=False) if samples.is_dir() else []
    if not files:
        raise ConfigError(
            f"--run {run}: the run has no generated samples (no {samples}/*.mid); generate some first "
            "(`musicfw generate --run RUN`) or point --run at another run folder."
        )
    return Source(name, "run", f"{samples}/*.mid", str(run.resolve()), [(p.name, p) for p in files], [])


def dir_source(folder: Path) -> Source:
    files = _midi_files(folder, recursive=True)
    if not files:
        raise ConfigError(f"--reference {folder}: the folder holds no .mid/.midi file.")
    return Source("reference", "reference", f"MIDI files under {folder.resolve()}", None,
                  [(str(p.relative_to(folder)), p) for p in files], [])


def split_source(run: Path, split: str) -> Source:
    """The held-out pieces of a run's dataset split, through the run's config (public API)."""
    from musicfw.core.build import build_from_section
    from musicfw.engine.data import build_datamodule
    from musicfw.engine.rundir import load_run_config

    config = load_run_config(run)
    tokenizer = build_from_section("tokenizers", config.tokenizer)
    datamodule = build_datamodule(
        config.data, tokenizer, train=config.train, augment=config.get("augment"), seed=int(config.seed),
        run_dir=run, progress=False,
    )
    pieces = datamodule.pieces(split)
    if not pieces:
        raise DataError(f"--reference {split}: the {split} split of {run}'s dataset holds no piece.")
    items = []
    for i, piece in enumerate(pieces):
        label = next((getattr(piece, a) for a in ("id", "name", "path") if getattr(piece, a, None)), f"{split}_{i:03d}")
        items.append((str(label), piece.score))
    return Source("reference", "reference", f"the {split} split of the dataset of {run.resolve()} ({config.data.name})",
                  str(run.resolve()), items, [])


def _load(item: Any) -> Any:
    if not isinstance(item, Path):
        return item
    import symusic

    size = item.stat().st_size
    if size > MAX_MIDI_BYTES:
        raise ValueError(f"{size} bytes is more than the {MAX_MIDI_BYTES} allowed")
    return symusic.Score(str(item))


# --------------------------------------------------------------------------------------
# create
# --------------------------------------------------------------------------------------


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}-{k + 1}")
    return out


def pad_flac(path: Path, size: int) -> None:
    """Grow the FLAC file ``path`` to exactly ``size`` bytes with a PADDING metadata block
    (FLAC format: after b"fLaC", metadata blocks of a 4-byte header, bit 7 of the first byte
    marking the last one; block type 1 is padding, which decoders skip)."""
    data = path.read_bytes()
    if data[:4] != b"fLaC":
        raise DataError(f"{path} is not a FLAC file.")
    pos = 4
    while True:
        if pos + 4 > len(data):
            raise DataError(f"{path}: a FLAC metadata block runs past the end of the file.")
        last = data[pos] & 0x80
        end = pos + 4 + int.from_bytes(data[pos + 1:pos + 4], "big")
        if last:
            break
        pos = end
    fill = size - len(data) - 4
    if not 0 <= fill < 1 << 24:
        raise ValueError(f"cannot pad {path} ({len(data)} bytes) to {size} bytes")
    padded = (data[:pos] + bytes([data[pos] & 0x7F]) + data[pos + 1:end]
              + bytes([0x81]) + fill.to_bytes(3, "big") + bytes(fill) + data[end:])
    path.write_bytes(padded)


def equalise_audio(folder: Path, clips: list[dict[str, Any]], mtime: float) -> None:
    """Give every clip file of the study the same number of samples (silence appended), the
    same byte size (:func:`pad_flac`) and the same modification time (see the module docstring)."""
    import numpy as np
    import soundfile as sf

    frames = max(sf.info(str(folder / c["file"])).frames for c in clips)
    for clip in clips:
        path = folder / clip["file"]
        audio, rate = sf.read(str(path), dtype="int16", always_2d=True)
        if len(audio) < frames:
            audio = np.concatenate([audio, np.zeros((frames - len(audio), audio.shape[1]), dtype=audio.dtype)])
            sf.write(str(path), audio, rate, format="FLAC", subtype="PCM_16")
        clip["audio_seconds"] = round(frames / rate, 3)
    size = max((folder / c["file"]).stat().st_size for c in clips) + 4
    for clip in clips:
        path = folder / clip["file"]
        pad_flac(path, size)
        os.utime(path, (mtime, mtime))


def _parse_tests(tests: str | Sequence[str]) -> list[str]:
    names = [t.strip().lower() for t in (tests.split(",") if isinstance(tests, str) else tests) if t.strip()]
    bad = [t for t in names if t not in TESTS]
    if bad or not names:
        raise ConfigError(f"--tests {','.join(names) or tests!r}: {', '.join(bad) or 'nothing'} is not a test; "
                          f"give a comma-separated list of {', '.join(TESTS)}.")
    return [t for t in TESTS if t in names]


def create_study(
    runs: Sequence[str],
    out: str,
    reference: str | None = "test",
    clips: int = 8,
    seconds: float = 20.0,
    anchors: int = 1,
    pairs: int | None = None,
    seed: int = 0,
    min_play: float = 10.0,
    soundfont: str | None = None,
    ask_expertise: bool = True,
    tests: str | Sequence[str] = ("mos", "ab"),
    repeats: int = 0,
    require_headphones: bool = False,
    training: bool = True,
    log: Any = print,
) -> Path:
    """Build the study folder ``out`` (see the module docstring) and return its path."""
    import numpy as np

    tests = _parse_tests(tests)
    if clips < 1:
        raise ConfigError(f"--clips must be >= 1, got {clips}.")
    if not (1.0 <= seconds <= 600.0):
        raise ConfigError(f"--seconds must be between 1 and 600, got {seconds}.")
    if anchors < 0:
        raise ConfigError(f"--anchors must be >= 0, got {anchors}.")
    if repeats < 0:
        raise ConfigError(f"--repeats must be >= 0, got {repeats}.")
    if min_play < 0:
        raise ConfigError(f"--min-play must be >= 0 seconds, got {min_play}.")
    if not runs:
        raise ConfigError("give at least one --run RUN folder (its samples/*.mid are the system's pieces).")
    out_path = Path(out)
    if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
        raise ConfigError(f"--out {out_path}: it exists and is not empty; a study is never overwritten, choose a new folder.")
    if "mos" not in tests:
        anchors = 0
    if "ab" not in tests:
        pairs = 0

    run_paths = [Path(r) for r in runs]
    names = _unique(p.resolve().name for p in run_paths)
    sources = [run_source(p, n) for p, n in zip(run_paths, names)]
    if anchors and not reference:
        raise ConfigError("--anchors needs a reference (--reference test|DIR): the anchor is a shuffled reference clip.")
    if "mushra" in tests and not reference:
        raise ConfigError("--tests mushra needs a reference (--reference test|valid|train|DIR): MUSHRA rates every "
                          "system against a reference clip, with the hidden reference and the anchors made from it.")
    if reference:
        if reference in SPLITS:
            sources.append(split_source(run_paths[0], reference))
        else:
            folder = Path(reference)
            if not folder.is_dir():
                raise ConfigError(f"--reference {reference}: not a folder of MIDI files, nor a split name ({', '.join(SPLITS)}).")
            sources.append(dir_source(folder))
    if len(sources) < 2 and (pairs or 0) > 0:
        raise ConfigError("A/B pairs need at least two systems (two --run, or a --run and a --reference).")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.partial-", dir=out_path.parent))
    try:
        audio_dir = partial / AUDIO_DIR
        audio_dir.mkdir()
        renderer = ClipRenderer(soundfont, partial)
        systems: list[dict[str, Any]] = []
        all_clips: list[dict[str, Any]] = []
        clip_scores: dict[str, Any] = {}
        for index, source in enumerate(sources):
            rng = np.random.default_rng([seed, index])
            got: list[dict[str, Any]] = []
            order = list(rng.permutation(len(source.items)))
            attempts = 0
            used: set[tuple[str, int]] = set()
            while len(got) < clips and attempts < 4 * clips + len(order):
                name, item = source.items[int(order[attempts % len(order)])]
                attempts += 1
                try:
                    score = _load(item)
                except Exception as exc:  # a broken file is skipped with its reason
                    if not any(s["file"] == name for s in source.skipped):
                        source.skipped.append({"file": name, "reason": f"{type(exc).__name__}: {exc}"[:300]})
                    continue
                cut = cut_clip(score, seconds, rng)
                if cut is None:
                    if not any(s["file"] == name for s in source.skipped):
                        source.skipped.append({"file": name, "reason": "fewer than 4 notes in every clip"})
                    continue
                clip, where = cut
                if (name, where["start_tick"]) in used:
                    continue
                used.add((name, where["start_tick"]))
                cid = _new_id()
                path = audio_dir / f"{cid}.flac"
                info = renderer.render(clip, where["seconds"], path)
                if info is None:
                    source.skipped.append({"file": name, "reason": f"silent clip at bar {where['start_bar']}"})
                    continue
                record = {"id": cid, "system": source.name, "file": f"{AUDIO_DIR}/{cid}.flac",
                          "source": {"piece": name, **where}, **info, "n_notes": _n_notes(clip)}
                got.append(record)
                clip_scores[cid] = clip
                log(f"  {source.name}: clip {len(got)}/{clips} from {name} bars {where['start_bar']}-{where['end_bar']} "
                    f"({where['seconds']:.1f} s, {info['loudness_lufs']:.1f} LUFS)")
            if 0 < len(got) < clips:
                log(f"  note: {source.name}: only {len(got)} of {clips} clips could be cut "
                    f"({len(source.items)} pieces, {len(source.skipped)} skipped)")
            if not got:
                raise DataError(f"{source.description}: no clip could be cut (every piece was unreadable, silent or had < 4 notes).")
            systems.append({
                "name": source.name, "kind": source.kind, "run": source.run, "source": source.description,
                "rng": f"numpy.random.default_rng([{seed}, {index}])", "n_pieces": len(source.items),
                "n_clips": len(got), "skipped": source.skipped,
            })
            all_clips.extend(got)
        refs = [c for c in all_clips if c["system"] == "reference"]

        def derived(ref: dict[str, Any], score: Any, system: str, transform: str, **extra: Any) -> dict[str, Any] | None:
            cid = _new_id()
            info = renderer.render(score, ref["source"]["seconds"], audio_dir / f"{cid}.flac")
            if info is None:
                return None
            return {"id": cid, "system": system, "file": f"{AUDIO_DIR}/{cid}.flac",
                    "source": {**ref["source"], "anchor_of": ref["id"], "transform": transform},
                    **info, "n_notes": ref["n_notes"], **extra}

        def copy_of(clip: dict[str, Any], **extra: Any) -> dict[str, Any]:
            cid = _new_id()
            shutil.copyfile(partial / clip["file"], audio_dir / f"{cid}.flac")
            return {**clip, "id": cid, "file": f"{AUDIO_DIR}/{cid}.flac", "copy_of": clip["id"], **extra}

        if anchors:
            rng = np.random.default_rng([seed, len(sources)])
            picks = [refs[int(i)] for i in rng.permutation(len(refs))[:anchors]]
            got = [c for c in (derived(ref, shuffle_pitches(clip_scores[ref["id"]], rng), "anchor",
                                       "pitches shuffled within each track") for ref in picks) if c is not None]
            systems.append({"name": "anchor", "kind": "anchor", "run": None,
                            "source": "reference clips with their pitches shuffled (low anchor, attention check)",
                            "rng": f"numpy.random.default_rng([{seed}, {len(sources)}])", "n_pieces": len(picks),
                            "n_clips": len(got), "skipped": []})
            all_clips.extend(got)
        base_clips = list(all_clips)

        items: list[dict[str, Any]] = []
        if "mos" in tests:
            items += [{"id": _new_id(), "kind": "mos", "clip": c["id"]} for c in base_clips]
        by_system = {s["name"]: [c["id"] for c in base_clips if c["system"] == s["name"]] for s in systems}
        compared = [s["name"] for s in systems if s["kind"] != "anchor"]
        n_pairs = clips if pairs is None else pairs
        for i, a in enumerate(compared):
            for b in compared[i + 1:]:
                for k in range(min(n_pairs, len(by_system[a]), len(by_system[b]))):
                    items.append({"id": _new_id(), "kind": "ab", "clips": [by_system[a][k], by_system[b][k]]})

        mushra_anchors: dict[str, dict[str, Any]] = {}
        if "mushra" in tests:
            rng = np.random.default_rng([seed, len(sources) + 1])
            run_names = [s.name for s in sources if s.kind == "run"]
            trials = min(len(by_system[n]) for n in run_names + ["reference"])
            for k in range(trials):
                ref = next(c for c in refs if c["id"] == by_system["reference"][k])
                low = derived(ref, shuffle_pitches(clip_scores[ref["id"]], rng), "anchor",
                              "pitches shuffled within each track", role="low_anchor")
                mid = derived(ref, shuffle_beats(clip_scores[ref["id"]], rng), "mid_anchor",
                              "beats shuffled (one permutation for all tracks)", role="mid_anchor")
                if low is None or mid is None:
                    log(f"  note: MUSHRA item {k + 1}: an anchor of reference clip {ref['id']} was silent; item left out")
                    continue
                hidden = copy_of(ref, role="hidden_reference")
                all_clips += [hidden, low, mid]
                mushra_anchors[ref["id"]] = {"low": low, "mid": mid}
                items.append({"id": _new_id(), "kind": "mushra", "reference": ref["id"],
                              "clips": [hidden["id"], low["id"], mid["id"]] + [by_system[n][k] for n in run_names]})
            if not any(s["name"] == "anchor" for s in systems):
                systems.append({"name": "anchor", "kind": "anchor", "run": None,
                                "source": "reference clips with their pitches shuffled (MUSHRA low anchor)",
                                "rng": f"numpy.random.default_rng([{seed}, {len(sources) + 1}])",
                                "n_pieces": len(mushra_anchors), "n_clips": len(mushra_anchors), "skipped": []})
            systems.append({"name": "mid_anchor", "kind": "anchor", "run": None,
                            "source": "reference clips with their beats shuffled (MUSHRA mid anchor)",
                            "rng": f"numpy.random.default_rng([{seed}, {len(sources) + 1}])",
                            "n_pieces": len(mushra_anchors), "n_clips": len(mushra_anchors), "skipped": []})
            if not any(i["kind"] == "mushra" for i in items):
                raise DataError("no MUSHRA item could be made (every anchor was silent).")

        rng = np.random.default_rng([seed, len(sources) + 2])
        for kind in ("mos", "mushra"):
            pool = [i for i in items if i["kind"] == kind and not (kind == "mos" and by_system.get("anchor") and i["clip"] in by_system["anchor"])]
            for j in rng.permutation(len(pool))[:repeats]:
                items.append({**pool[int(j)], "id": _new_id(), "repeat_of": pool[int(j)]["id"]})

        train: list[dict[str, Any]] = []
        if training and refs:
            ref = refs[0]
            examples = [(ref, "Real music: what the Reference excerpts sound like")]
            anchor_ids = by_system.get("anchor") or []
            if ref["id"] in mushra_anchors:
                examples.append((mushra_anchors[ref["id"]]["mid"], "A deliberately flawed version of it (its beats reordered)"))
                examples.append((mushra_anchors[ref["id"]]["low"], "A deliberately poor version of it (its pitches scrambled)"))
            elif anchor_ids:
                low = next(c for c in all_clips if c["id"] == anchor_ids[0])
                ref = next(c for c in all_clips if c["id"] == low["source"]["anchor_of"])
                examples = [(ref, "Real music: what the Reference excerpts sound like"),
                            (low, "A deliberately poor version of it (its pitches scrambled)")]
            for clip, label in examples:
                copy = copy_of(clip, role="training")
                all_clips.append(copy)
                train.append({"clip": copy["id"], "label": label})

        created = _dt.datetime.now(_dt.timezone.utc)
        equalise_audio(partial, all_clips, created.timestamp())
        for clip in all_clips:
            p = partial / clip["file"]
            clip["bytes"] = p.stat().st_size
            clip["sha256"] = _sha256(p)
        sf_path = renderer.soundfont
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "study_id": _new_id(),
            "created": created.isoformat(timespec="seconds"),
            "musicfw_version": musicfw_version(),
            "seed": int(seed),
            "tests": tests,
            "settings": {
                "clips_per_system": clips, "seconds": seconds, "anchors": anchors, "pairs_per_system_pair": n_pairs,
                "min_play_seconds": float(min_play), "ask_expertise": bool(ask_expertise), "repeats": repeats,
                "require_headphones": bool(require_headphones),
            },
            "cutting": "at bar lines (time signatures; 4/4 when none), end bar line closest to start + seconds; "
                       "notes sounding at the end are cut there",
            "audio": {
                "renderer": "musicfw.music.render.AudioRenderer",
                "soundfont": str(sf_path) if sf_path else None,
                "soundfont_sha256": _sha256(Path(sf_path)) if sf_path and Path(sf_path).is_file() else None,
                "loudness": f"integrated loudness {TARGET_LUFS} LUFS (pyloudnorm, ITU-R BS.1770-4); peak limited to {PEAK_LIMIT}",
                "release_seconds": RELEASE_SECONDS,
                "sample_rate": SAMPLE_RATE,
                "format": "FLAC PCM_16; every file of the study has the same length (silence appended), byte size "
                          "(a FLAC PADDING block) and modification time",
            },
            "attention": {"rule": f"a rater who rates any anchor clip {ANCHOR_THRESHOLD} or higher fails and is excluded",
                          "threshold": ANCHOR_THRESHOLD},
            "screening": {
                "rule": f"BS.1534-3 post-screening: a rater who scores the hidden reference below {HIDDEN_REFERENCE_MIN} "
                        f"on more than {HIDDEN_REFERENCE_MAX_SHARE:.0%} of the MUSHRA items is excluded",
                "hidden_reference_min": HIDDEN_REFERENCE_MIN, "max_share": HIDDEN_REFERENCE_MAX_SHARE,
            },
            "systems": systems,
            "clips": all_clips,
            "items": items,
            "training": train,
        }
        atomic_write(partial / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        if out_path.exists():
            out_path.rmdir()  # empty (checked above)
        os.rename(partial, out_path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out_path


# --------------------------------------------------------------------------------------
# reading a study back
# --------------------------------------------------------------------------------------


@dataclass
class Study:
    path: Path
    manifest: dict[str, Any]

    @property
    def audio_dir(self) -> Path:
        return self.path / AUDIO_DIR

    @property
    def db_path(self) -> Path:
        return self.path / DB_NAME

    @property
    def clips(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.manifest["clips"]}

    @property
    def items(self) -> dict[str, dict[str, Any]]:
        return {i["id"]: i for i in self.manifest["items"]}

    @property
    def settings(self) -> dict[str, Any]:
        return self.manifest["settings"]


def load_study(path: str | Path, check_audio: bool = True) -> Study:
    """The study in ``path``; a missing, half-written or damaged study is a :class:`DataError`."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such study folder (create one with `musicfw listen create ... --out {folder}`).")
    mf = folder / MANIFEST
    if not mf.is_file():
        raise DataError(
            f"{folder} has no {MANIFEST}: it is not a study folder, or `listen create` did not finish "
            "writing it. Create the study again into a new folder."
        )
    try:
        manifest = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{mf} is not valid JSON ({exc}); the study is damaged, create it again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{mf} is not a musicfw listening-study manifest (no \"format\": \"{FORMAT}\").")
    if manifest.get("version") != VERSION:
        raise DataError(f"{mf} has version {manifest.get('version')!r}; this musicfw reads version {VERSION}.")
    for key in ("study_id", "settings", "systems", "clips", "items"):
        if key not in manifest:
            raise DataError(f"{mf} lacks the key {key!r}; the study is damaged, create it again.")
    clip_ids = set()
    for clip in manifest["clips"]:
        cid = clip.get("id", "")
        if not CLIP_ID.match(str(cid)) or clip.get("file") != f"{AUDIO_DIR}/{cid}.flac":
            raise DataError(f"{mf}: clip entry {str(cid)[:40]!r} has a bad id or file name; the study is damaged.")
        clip_ids.add(cid)
        if check_audio:
            f = folder / clip["file"]
            if not f.is_file():
                raise DataError(f"{folder} is half-written or damaged: the clip file {clip['file']} is missing.")
            if f.stat().st_size != clip.get("bytes") or _sha256(f) != clip.get("sha256"):
                raise DataError(f"{folder}: the clip file {clip['file']} does not match the manifest (size or SHA-256); the study is damaged.")
    item_ids = set()
    for item in manifest["items"]:
        kind = item.get("kind")
        refs = [item.get("clip")] if kind == "mos" else list(item.get("clips") or [])
        if kind == "mushra":
            refs.append(item.get("reference"))
        size_ok = (kind == "ab" and len(refs) == 2) or (kind == "mos" and len(refs) == 1) or (kind == "mushra" and 3 <= len(refs) <= 32)
        if (not ITEM_ID.match(str(item.get("id", ""))) or kind not in TESTS or not size_ok or any(r not in clip_ids for r in refs)
                or len(set(refs)) != len(refs) or ("repeat_of" in item and item["repeat_of"] not in item_ids)):
            raise DataError(f"{mf}: item {str(item.get('id'))[:40]!r} is malformed or names an unknown clip; the study is damaged.")
        item_ids.add(item["id"])
    for example in manifest.get("training") or []:
        if not isinstance(example, dict) or example.get("clip") not in clip_ids:
            raise DataError(f"{mf}: a training example names an unknown clip; the study is damaged.")
    return Study(folder, manifest)
