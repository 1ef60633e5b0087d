"""music21 -> symusic conversion, run once per corpus piece in worker processes.

Only imported by the conversion in :mod:`.corpora` (music21 is imported inside the functions,
so this module stays cheap too).

A music21 score becomes a ``symusic.Score`` at 480 ticks per quarter:

* one track per part, named after the part (``Part N`` where the part has no name);
* tied notes merged (``stripTies``), grace notes and chord symbols dropped, chords kept as
  simultaneous notes, velocity 80;
* tempo marks, time signatures and key signatures of the first part;
* a pickup (anacrusis) bar is padded at the front so that bar lines fall where the time
  signature puts them (tick 0 is the start of the incomplete first bar).

music21's scratch folder: music21 keeps temporary files, and reads and writes parsed scores as
pickles, in its scratch folder, by default the world-writable ``/tmp/music21`` -- where any other
user of the machine could plant a pickle that music21 would then load.  Every conversion here
first points music21's (in-memory, not saved) ``directoryScratch`` setting to a private folder
``<musicfw cache>/music21-scratch`` (mode 0700, owned by the current user; see
:func:`use_private_scratch`) and parses with ``forceSource=True`` (no pickle read or written).
"""

from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TPQ = 480
VELOCITY = 80


@dataclass(frozen=True)
class Unit:
    """One piece to convert: a corpus file, or one tune of a multi-tune ABC file."""

    id: str  #: stable identity, e.g. "bach/bwv1.6.mxl" or "essenFolksong/altdeu10.abc#12"
    group: str  #: the source file (tunes of one file share a split)
    path: str  #: absolute path of the corpus file
    text: str | None = None  #: the tune's ABC text (file header included) for ABC tunes


def to_score(m21: Any) -> Any:
    """A music21 Score (or Part/Stream) -> ``symusic.Score``."""
    import symusic
    from music21 import harmony, key, meter, stream

    parts = list(m21.parts) if hasattr(m21, "parts") and len(m21.parts) else [m21]
    shift = 0.0
    first_measure = parts[0].getElementsByClass(stream.Measure).first()
    if first_measure is not None and first_measure.paddingLeft:
        shift = float(first_measure.paddingLeft)

    def tick(offset: float) -> int:
        return 0 if offset <= 0 else int(round((float(offset) + shift) * TPQ))

    score = symusic.Score(TPQ)
    last = None
    for start, _end, mark in m21.metronomeMarkBoundaries():
        qpm = mark.getQuarterBPM() if mark is not None else None
        if qpm and qpm > 0 and (tick(start), round(qpm, 3)) != last:
            last = (tick(start), round(qpm, 3))
            score.tempos.append(symusic.Tempo(last[0], float(qpm)))
    flat0 = parts[0].flatten()
    last = None
    for ts in flat0.getElementsByClass(meter.TimeSignature):
        item = (tick(ts.offset), int(ts.numerator), int(ts.denominator))
        if item != last and item[1] > 0 and item[2] > 0:
            score.time_signatures.append(symusic.TimeSignature(*item))
            last = item
    last = None
    for ks in flat0.getElementsByClass(key.KeySignature):
        mode = getattr(ks, "mode", "major")
        item = (tick(ks.offset), int(ks.sharps), 1 if mode == "minor" else 0)
        if item != last and -7 <= item[1] <= 7:
            score.key_signatures.append(symusic.KeySignature(*item))
            last = item

    for i, part in enumerate(parts):
        times, durations, pitches = [], [], []
        for n in part.flatten().stripTies().notes:
            if isinstance(n, harmony.Harmony) or n.duration.isGrace:
                continue
            ql = float(n.quarterLength)
            if ql <= 0:
                continue
            for p in getattr(n, "pitches", ()):
                times.append(float(n.offset))
                durations.append(ql)
                pitches.append(int(p.midi))
        if not times:
            continue
        t = np.rint((np.asarray(times) + shift) * TPQ).astype(np.int32)
        d = np.maximum(np.rint(np.asarray(durations) * TPQ), 1).astype(np.int32)
        p = np.clip(np.asarray(pitches), 0, 127).astype(np.int8)
        order = np.lexsort((p, t))
        name = (getattr(part, "partName", None) or "").strip() or f"Part {i + 1}"
        track = symusic.Track(name, 0, False)
        track.notes = type(track.notes).from_numpy(
            t[order], d[order], p[order], np.full(len(t), VELOCITY, dtype=np.int8)
        )
        score.tracks.append(track)
    return score


def title_of(m21: Any) -> str:
    md = getattr(m21, "metadata", None)
    if md is None:
        return ""
    for attr in ("title", "movementName"):
        try:
            value = getattr(md, attr, None)
        except Exception:
            value = None
        if value:
            return str(value).strip()
    return ""


SCRATCH_NAME = "music21-scratch"
_scratch: dict[str, str] = {}


def private_scratch_dir(cache_root: str | os.PathLike) -> Path:
    """``<cache_root>/music21-scratch``, created with mode 0700; refuses a folder that another
    user owns or that others can write to (a planted pickle there would be loaded)."""
    from musicfw.core.errors import DataError

    path = Path(cache_root).expanduser() / SCRATCH_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise DataError(f"{path} should be music21's private scratch folder but is not a folder; remove it.")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise DataError(
            f"{path} (music21's scratch folder) belongs to another user; remove it or choose another "
            "cache folder (data.cache_dir or $MUSICFW_CACHE_DIR)."
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def use_private_scratch(scratch_dir: str | os.PathLike) -> None:
    """Point music21's ``directoryScratch`` at ``scratch_dir`` in this process (in memory only:
    the user's ~/.music21rc is not written).  Also the initializer of the worker processes."""
    from music21 import environment

    scratch = str(Path(scratch_dir))
    environment.Environment()["directoryScratch"] = scratch
    _scratch["dir"] = scratch


def convert(unit: Unit) -> tuple[str, bytes | None, str, str | None]:
    """``(id, midi_bytes, title, None)`` or ``(id, None, "", reason)``; never raises.

    The corpus store calls :func:`use_private_scratch` in every worker first; a process that did
    not gets the private folder under the default cache root, before music21 parses anything."""
    warnings.simplefilter("ignore")
    if "dir" not in _scratch:
        from musicfw.core.dataset import cache_root

        use_private_scratch(private_scratch_dir(cache_root()))
    try:
        from music21 import converter, stream

        if unit.text is not None:
            parsed = converter.parseData(unit.text, format="abc")
        else:
            parsed = converter.parse(unit.path, forceSource=True, storePickle=False)
        if isinstance(parsed, stream.Opus):
            scores = list(parsed.scores)
            if not scores:
                return unit.id, None, "", "music21 found no tune"
            parsed = scores[0]
        score = to_score(parsed)
        if score.note_num() == 0:
            return unit.id, None, title_of(parsed), "no notes"
        return unit.id, score.dumps_midi(), title_of(parsed), None
    except Exception as exc:  # any piece music21 cannot read is skipped with its reason
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return unit.id, None, "", f"music21 could not convert it: {type(exc).__name__}: {message}"[:300]
