"""Rendering generated music: piano-roll PNGs (matplotlib) and WAV audio (a General MIDI
soundfont played by a maintained synthesizer library).

Soundfonts are looked up in this order: the ``soundfont`` argument (a config's
``generate.soundfont``, the ``--soundfont`` option), the ``MUSICFW_SOUNDFONT`` environment
variable, then the usual Debian/Ubuntu paths (packages ``timgm6mb-soundfont`` and
``fluid-soundfont-gm``, and the ``default-GM.sf2`` alternative).  When none is found this is
said once per process, naming the packages and the config key, and no WAV is written;
everything else still is.

Synthesizers, tried in this order (a synthesizer that fails once is not tried again in the
process):

1. **symusic's Synthesizer** (the library that reads our MIDI).  It renders with symusic 0.5.9,
   but the symusic 0.6.0 wheel's ``Synthesizer.render`` fails with "Unable to convert function
   return value to a Python type" under numpy 2.4 *and* numpy 1.26 (measured here), and musicfw
   needs 0.6 (``Score.get_downbeats``; 0.5.9 also reads MIDI files with control numbers > 127
   that 0.6.0 refuses), so pinning 0.5.9 is not an option.  It is kept first so that a symusic
   release with a working synthesizer is used as soon as it is installed.
2. **FluidSynth**, the reference SoundFont synthesizer, through its ``fluidsynth`` program
   (Debian/Ubuntu: ``apt-get install fluidsynth``; ``scripts/test.sh`` installs it): one
   subprocess per sample, faster than real time (a 37 s excerpt rendered in 0.9 s wall here).

``tinysoundfont`` (a SoundFont synthesizer with wheels) was considered and left out:
``pip install tinysoundfont`` requires ``pyaudio``, which has no Linux wheel and fails to build
without PortAudio's headers (measured here).  musicfw once carried its own numpy SoundFont
player as the fallback; it was removed in favour of these maintained synthesizers.

Nothing is printed when rendering works.  When no synthesizer works, the reasons are said once,
whole, with what to install; no WAV is written.

matplotlib and symusic are imported inside the functions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from musicfw.core.errors import ConfigError

SOUNDFONT_ENV = "MUSICFW_SOUNDFONT"
SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
#: what to tell a user who has no soundfont
NO_SOUNDFONT_HINT = (
    "Install one (Debian/Ubuntu: apt-get install timgm6mb-soundfont, or fluid-soundfont-gm), or "
    "point generate.soundfont (the config key; --soundfont for musicfw generate) or "
    f"${SOUNDFONT_ENV} at an .sf2/.sf3 file."
)

_said: set[str] = set()
#: why symusic's synthesizer failed in this process (None: not tried or works)
_symusic_failed: str | None = None


def say_once(message: str, stream: Any = None) -> bool:
    """Print ``message`` on stderr the first time it is said in this process."""
    if message in _said:
        return False
    _said.add(message)
    print(f"musicfw: {message}", file=stream or sys.stderr, flush=True)
    return True


def _one_line(exc: BaseException) -> str:
    """An exception as one whole line (multi-line messages joined, not cut)."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return f"{type(exc).__name__}: {text}"


def find_soundfont(soundfont: str | Path | None = None) -> Path | None:
    """The soundfont to use: the given path (which must exist), ``$MUSICFW_SOUNDFONT``, or
    the first of :data:`SOUNDFONT_PATHS` that exists; None when there is none."""
    if soundfont:
        path = Path(soundfont).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"generate.soundfont: no soundfont file at {path} (give an .sf2/.sf3 file, or leave it "
                f"empty to use {SOUNDFONT_PATHS[0]} (Debian package timgm6mb-soundfont) and the other "
                "usual paths)."
            )
        return path
    env = os.environ.get(SOUNDFONT_ENV, "").strip()
    if env:
        path = Path(env).expanduser()
        if path.is_file():
            return path
        say_once(f"${SOUNDFONT_ENV}={env} is not a file; looking in the usual places.")
    for candidate in SOUNDFONT_PATHS:
        path = Path(candidate)
        if path.is_file():
            return path.resolve()
    return None


class AudioRenderer:
    """Renders Scores to WAV files with one soundfont (loaded once).

    ``render(score, path)`` returns the path written, or None when audio is unavailable
    (said once: no soundfont found, or no synthesizer worked).  Synthesizers are tried in the
    order of the module docstring: symusic's, then the ``fluidsynth`` program.
    """

    def __init__(self, soundfont: str | Path | None = None, sample_rate: int = 22050):
        self.sample_rate = int(sample_rate)
        self.soundfont = find_soundfont(soundfont)
        self._synth: Any = None
        if self.soundfont is None:
            say_once(
                f"no General MIDI soundfont found (looked in ${SOUNDFONT_ENV} and "
                f"{', '.join(SOUNDFONT_PATHS[:2])}, ...); writing samples without .wav audio. "
                + NO_SOUNDFONT_HINT
            )

    @property
    def available(self) -> bool:
        return self.soundfont is not None

    @property
    def backend(self) -> str | None:
        """The synthesizer in use: "symusic", "fluidsynth", or None (none works / not tried)."""
        if self.soundfont is None:
            return None
        if _symusic_failed is None:
            return "symusic"
        return "fluidsynth" if shutil.which("fluidsynth") else None

    def render(self, score: Any, path: str | Path) -> Path | None:
        if self.soundfont is None:
            return None
        global _symusic_failed
        path = Path(path)
        if _symusic_failed is None:
            try:
                self._render_symusic(score, path)
                return path
            except Exception as exc:  # the synthesizer is optional; the rest must still be written
                _symusic_failed = _one_line(exc)
                path.unlink(missing_ok=True)
        fluidsynth = shutil.which("fluidsynth")
        if fluidsynth is not None:
            error = self._render_fluidsynth(fluidsynth, score, path)
            if error is None:
                return path
            reason = f"and so did the fluidsynth program ({error})"
        else:
            reason = "and the fluidsynth program is not installed (apt-get install fluidsynth)"
        import importlib.metadata as md

        try:
            version = md.version("symusic")
        except md.PackageNotFoundError:  # pragma: no cover - symusic is a dependency
            version = "?"
        say_once(
            f"cannot render .wav audio: symusic {version}'s synthesizer failed ({_symusic_failed}) "
            f"{reason}; writing samples without .wav audio. Install FluidSynth (Debian/Ubuntu: "
            "apt-get install fluidsynth) to get audio."
        )
        return None

    def _render_symusic(self, score: Any, path: Path) -> None:
        import symusic

        if self._synth is None:
            self._synth = symusic.Synthesizer(str(self.soundfont), self.sample_rate, 0)
        audio = np.asarray(self._synth.render(score, True), dtype=np.float32)
        symusic.dump_wav(str(path), np.asfortranarray(audio), self.sample_rate, True)

    def _render_fluidsynth(self, exe: str, score: Any, path: Path) -> str | None:
        """None when ``path`` was written, else the reason."""
        mid = path.with_suffix(".render.mid")
        score.dump_midi(str(mid))
        try:
            proc = subprocess.run(
                [exe, "-ni", "-q", "-F", str(path), "-r", str(self.sample_rate), str(self.soundfont), str(mid)],
                capture_output=True,
                timeout=600,
            )
            if proc.returncode == 0 and path.is_file():
                return None
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            return f"exit {proc.returncode}" + (f": {err[-1]}" if err else "")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return _one_line(exc)
        finally:
            mid.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# piano rolls
# --------------------------------------------------------------------------------------


def piano_roll_array(score: Any, steps_per_quarter: int = 4, max_steps: int = 4096) -> tuple[np.ndarray, int, int]:
    """``(roll, lowest pitch, steps per quarter used)``: roll ``[pitches, steps]`` holds
    1 + the track index of the note sounding there (0 = silence), built without a per-note loop.
    Long pieces use a coarser grid so that the roll has at most ``max_steps`` columns."""
    tpq = int(score.ticks_per_quarter)
    starts, ends, pitches, tracks = [], [], [], []
    for i, track in enumerate(score.tracks):
        arr = track.notes.numpy()
        if len(arr["pitch"]) == 0:
            continue
        starts.append(arr["time"].astype(np.int64))
        ends.append(arr["time"].astype(np.int64) + np.maximum(arr["duration"].astype(np.int64), 1))
        pitches.append(arr["pitch"].astype(np.int64) & 0x7F)
        tracks.append(np.full(len(arr["pitch"]), i + 1, dtype=np.int64))
    if not pitches:
        return np.zeros((1, 1), dtype=np.int64), 60, steps_per_quarter
    start, end = np.concatenate(starts), np.concatenate(ends)
    pitch, track = np.concatenate(pitches), np.concatenate(tracks)
    spq = steps_per_quarter
    total_quarters = float(end.max()) / tpq
    while spq > 1 and total_quarters * spq > max_steps:
        spq //= 2
    s = np.floor(start * spq / tpq).astype(np.int64)
    e = np.maximum(np.ceil(end * spq / tpq).astype(np.int64), s + 1)
    T = int(e.max())
    if T > max_steps:  # still too long at one step per quarter: scale
        scale = max_steps / T
        s = np.floor(s * scale).astype(np.int64)
        e = np.maximum(np.ceil(e * scale).astype(np.int64), s + 1)
        T = int(e.max())
    lo, hi = int(pitch.min()), int(pitch.max())
    P = hi - lo + 1
    roll = np.zeros((P, T + 1), dtype=np.int64)
    # later tracks paint over earlier ones: one pass per track, vectorized inside
    for tr in np.unique(track):
        m = track == tr
        diff = np.zeros((P, T + 1), dtype=np.int64)
        np.add.at(diff, (pitch[m] - lo, s[m]), 1)
        np.add.at(diff, (pitch[m] - lo, e[m]), -1)
        on = np.cumsum(diff, axis=1) > 0
        roll[on] = tr
    return roll[:, :T], lo, spq


def piano_roll_png(score: Any, path: str | Path, title: str | None = None, dpi: int = 100) -> Path:
    """Draw a Score as a piano roll (time in bars of 4 quarters, pitch upwards) into a PNG."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    roll, lo, spq = piano_roll_array(score)
    P, T = roll.shape
    n_tracks = max(int(roll.max()), 1)
    base = colormaps["tab10"]
    colors = [(1, 1, 1, 1)] + [base(i % 10) for i in range(n_tracks)]
    width = min(max(6.0, T / 60.0), 20.0)
    fig = Figure(figsize=(width, 3.5), dpi=dpi)  # no pyplot: no global state, any backend
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(
        roll,
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        cmap=ListedColormap(colors),
        vmin=0,
        vmax=n_tracks,
        extent=(0, T / (4 * spq), lo - 0.5, lo + P - 0.5),
    )
    ax.set_xlabel("bar (4 quarters)")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
