"""A small SoundFont 2 sample player in numpy: the fallback when symusic's synthesizer cannot
run (its ``render`` fails to return its buffer with symusic 0.6.0 on some builds).

It reads an ``.sf2`` file (RIFF: ``sdta/smpl`` 16-bit samples, ``pdta`` presets, instruments,
zones and sample headers) and plays each note with the zone that matches its key and velocity:
resampled to the note's pitch (root key, coarse/fine tune, sample pitch correction), looped
while held when the zone loops, shaped by the zone's volume envelope (attack, hold, decay,
sustain, release), scaled by velocity and initial attenuation, and panned.  Modulators,
filters, LFOs, chorus and reverb are not modelled, so it sounds plainer than FluidSynth; it
is meant for listening to samples, not for production.

Only numpy; one numpy pass per note (no per-sample Python loop).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# generator operators used here (SoundFont 2.04, section 8.1.2)
START_OFS, END_OFS, STARTLOOP_OFS, ENDLOOP_OFS, START_COARSE = 0, 1, 2, 3, 4
END_COARSE, PAN = 12, 17
ATTACK, HOLD, DECAY, SUSTAIN, RELEASE = 34, 35, 36, 37, 38
INSTRUMENT, KEY_RANGE, VEL_RANGE, STARTLOOP_COARSE = 41, 43, 44, 45
ATTENUATION, ENDLOOP_COARSE, COARSE_TUNE, FINE_TUNE = 48, 50, 51, 52
SAMPLE_ID, SAMPLE_MODES, SCALE_TUNING, ROOT_KEY = 53, 54, 56, 58
RANGES = (KEY_RANGE, VEL_RANGE)
DEFAULTS = {ATTACK: -12000, HOLD: -12000, DECAY: -12000, SUSTAIN: 0, RELEASE: -12000,
            SCALE_TUNING: 100, ROOT_KEY: -1}


class SoundFontError(ValueError):
    """The file is not a SoundFont 2 this reader understands."""


@dataclass
class Zone:
    gens: dict[int, int] = field(default_factory=dict)
    keys: tuple[int, int] = (0, 127)
    vels: tuple[int, int] = (0, 127)


def _chunks(data: bytes, start: int, end: int):
    pos = start
    while pos + 8 <= end:
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        yield cid, pos + 8, size
        pos += 8 + size + (size & 1)


def _zones(bags: list[tuple[int, int]], gens: list[tuple[int, int]], first: int, last: int, terminal: int) -> list[Zone]:
    """Zones of one preset/instrument; generator ``terminal`` (instrument / sampleID) marks
    a real zone; a first zone without it is the global zone, merged into the others."""
    zones, global_gens = [], {}
    for b in range(first, last):
        zone = Zone()
        for oper, amount in gens[bags[b][0] : bags[b + 1][0]]:
            if oper in RANGES:
                lo, hi = amount & 0xFF, (amount >> 8) & 0xFF
                if oper == KEY_RANGE:
                    zone.keys = (lo, hi)
                else:
                    zone.vels = (lo, hi)
                zone.gens[oper] = amount
            else:
                zone.gens[oper] = amount - 0x10000 if amount >= 0x8000 and oper not in (INSTRUMENT, SAMPLE_ID, SAMPLE_MODES) else amount
        if terminal in zone.gens:
            zones.append(zone)
        elif b == first:
            global_gens = zone.gens
    for zone in zones:
        merged = {k: v for k, v in global_gens.items()}
        merged.update(zone.gens)
        zone.gens = merged
        if KEY_RANGE in merged:
            zone.keys = (merged[KEY_RANGE] & 0xFF, (merged[KEY_RANGE] >> 8) & 0xFF)
        if VEL_RANGE in merged:
            zone.vels = (merged[VEL_RANGE] & 0xFF, (merged[VEL_RANGE] >> 8) & 0xFF)
    return zones


class SoundFont:
    """A parsed .sf2: ``voices(program, is_drum, key, velocity)`` -> what to play."""

    def __init__(self, path: str | Path):
        data = Path(path).read_bytes()
        if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
            raise SoundFontError(f"{path} is not a SoundFont 2 (.sf2) file")
        pdta: dict[bytes, tuple[int, int]] = {}
        self.samples = np.zeros(0, dtype=np.float32)
        for cid, start, size in _chunks(data, 12, len(data)):
            if cid != b"LIST":
                continue
            kind = data[start : start + 4]
            for sub, s2, n2 in _chunks(data, start + 4, start + size):
                if kind == b"sdta" and sub == b"smpl":
                    self.samples = np.frombuffer(data, dtype="<i2", count=n2 // 2, offset=s2).astype(np.float32) / 32768.0
                elif kind == b"pdta":
                    pdta[sub] = (s2, n2)
        need = (b"phdr", b"pbag", b"pgen", b"inst", b"ibag", b"igen", b"shdr")
        if any(k not in pdta for k in need) or not len(self.samples):
            raise SoundFontError(f"{path}: missing SoundFont chunks ({', '.join(k.decode() for k in need if k not in pdta)})")

        def records(name: bytes, fmt: str) -> list[tuple]:
            start, size = pdta[name]
            rec = struct.calcsize(fmt)
            return [struct.unpack_from(fmt, data, start + i * rec) for i in range(size // rec)]

        phdr = records(b"phdr", "<20sHHHIII")
        pbag = [(g, m) for g, m in records(b"pbag", "<HH")]
        pgen = records(b"pgen", "<HH")
        inst = records(b"inst", "<20sH")
        ibag = [(g, m) for g, m in records(b"ibag", "<HH")]
        igen = records(b"igen", "<HH")
        self.shdr = records(b"shdr", "<20sIIIIIBbHH")
        self.instruments = [
            _zones(ibag, igen, inst[i][1], inst[i + 1][1], SAMPLE_ID) for i in range(len(inst) - 1)
        ]
        self.presets: dict[tuple[int, int], list[Zone]] = {}
        for i in range(len(phdr) - 1):
            _, program, bank, bag, *_ = phdr[i]
            self.presets[(bank, program)] = _zones(pbag, pgen, bag, phdr[i + 1][3], INSTRUMENT)

    def preset(self, program: int, is_drum: bool) -> list[Zone]:
        if is_drum:
            return self.presets.get((128, program)) or self.presets.get((128, 0)) or []
        return self.presets.get((0, program)) or self.presets.get((0, 0)) or next(iter(self.presets.values()), [])

    def voices(self, program: int, is_drum: bool, key: int, vel: int) -> list[dict[str, int]]:
        """Generator values (instrument zone, preset offsets added) of every matching zone."""
        out = []
        for pz in self.preset(program, is_drum):
            if not (pz.keys[0] <= key <= pz.keys[1] and pz.vels[0] <= vel <= pz.vels[1]):
                continue
            idx = pz.gens[INSTRUMENT]
            if idx >= len(self.instruments):
                continue
            for iz in self.instruments[idx]:
                if not (iz.keys[0] <= key <= iz.keys[1] and iz.vels[0] <= vel <= iz.vels[1]):
                    continue
                gens = {**DEFAULTS, **iz.gens}
                for oper, value in pz.gens.items():  # preset generators are offsets
                    if oper not in (INSTRUMENT, KEY_RANGE, VEL_RANGE, SAMPLE_ID, SAMPLE_MODES, ROOT_KEY):
                        gens[oper] = gens.get(oper, 0) + value
                out.append(gens)
        return out


def _seconds(timecents: int) -> float:
    return float(2.0 ** (max(timecents, -12000) / 1200.0))


def _envelope(n_held: int, n_total: int, g: dict[int, int], sr: int) -> np.ndarray:
    """Volume envelope (amplitude) over ``n_total`` samples, released after ``n_held``."""
    t = np.arange(n_total)
    attack = max(int(_seconds(g[ATTACK]) * sr), 1)
    hold = int(_seconds(g[HOLD]) * sr)
    decay = max(int(_seconds(g[DECAY]) * sr), 1)
    sustain_db = -min(max(g[SUSTAIN], 0), 1440) / 10.0
    # attack: linear; decay: linear in dB to the sustain level
    db = np.where(t < attack + hold, 0.0, np.maximum(sustain_db, sustain_db * (t - attack - hold) / decay))
    amp = np.where(t < attack, t / attack, 10.0 ** (db / 20.0))
    release = max(int(_seconds(g[RELEASE]) * sr), 1)
    if n_held < n_total:
        level = amp[max(n_held - 1, 0)]
        tail = t[n_held:] - n_held
        # release: 96 dB down over the release time (linear in dB)
        amp[n_held:] = level * 10.0 ** (-96.0 * np.minimum(tail / release, 1.0) / 20.0)
    return amp


class SF2Synth:
    """Render a symusic Score to a stereo float32 buffer ``[2, samples]``."""

    def __init__(self, path: str | Path, sample_rate: int = 22050, max_release: float = 1.0):
        self.sf = SoundFont(path)
        self.sr = int(sample_rate)
        self.max_release = max_release

    def render(self, score: Any) -> np.ndarray:
        sec = score.to("second")
        end = max((float(sec.end()) if sec.end() else 0.0), 0.0) + self.max_release + 0.1
        out = np.zeros((2, int(end * self.sr) + 1), dtype=np.float32)
        for track in sec.tracks:
            arr = track.notes.numpy()
            for start, dur, key, vel in zip(arr["time"].tolist(), arr["duration"].tolist(),
                                            (arr["pitch"].astype(np.int64) & 0x7F).tolist(),
                                            (arr["velocity"].astype(np.int64) & 0x7F).tolist()):
                for gens in self.sf.voices(int(track.program), bool(track.is_drum), key, vel):
                    self._note(out, gens, start, max(dur, 0.01), key, vel)
        peak = float(np.abs(out).max())
        if peak > 0:
            out *= np.float32(0.9 / peak)  # normalized: quiet soundfont levels become audible
        return out

    def _note(self, out: np.ndarray, g: dict[int, int], start: float, dur: float, key: int, vel: int) -> None:
        sid = g.get(SAMPLE_ID, -1)
        if not 0 <= sid < len(self.sf.shdr):
            return
        _, s0, s1, l0, l1, rate, root, corr, _, stype = self.sf.shdr[sid]
        if stype & 0x8000:  # ROM samples are not in the file
            return
        s0 += g.get(START_OFS, 0) + 32768 * g.get(START_COARSE, 0)
        s1 += g.get(END_OFS, 0) + 32768 * g.get(END_COARSE, 0)
        l0 += g.get(STARTLOOP_OFS, 0) + 32768 * g.get(STARTLOOP_COARSE, 0)
        l1 += g.get(ENDLOOP_OFS, 0) + 32768 * g.get(ENDLOOP_COARSE, 0)
        data = self.sf.samples
        s0, s1 = max(s0, 0), min(s1, len(data))
        if s1 - s0 < 2:
            return
        root_key = g[ROOT_KEY] if g[ROOT_KEY] >= 0 else root
        cents = (key - root_key) * g[SCALE_TUNING] + 100 * g.get(COARSE_TUNE, 0) + g.get(FINE_TUNE, 0) + corr
        step = 2.0 ** (cents / 1200.0) * rate / self.sr
        release = min(_seconds(g[RELEASE]), self.max_release)
        n_held = int(dur * self.sr)
        n_total = n_held + int(release * self.sr)
        pos = np.arange(n_total) * step  # read position in the sample, relative to s0
        loops = g.get(SAMPLE_MODES, 0) & 1 and s0 <= l0 < l1 <= s1 and l1 - l0 > 1
        if loops:
            a, b = l0 - s0, l1 - s0
            beyond = pos >= b
            pos[beyond] = a + np.mod(pos[beyond] - a, b - a)
        else:
            n_total = min(n_total, int((s1 - s0 - 1) / step))
            pos = pos[:n_total]
            n_held = min(n_held, n_total)
        if n_total <= 0:
            return
        wave = np.interp(pos, np.arange(s1 - s0), data[s0:s1]).astype(np.float32)
        gain = (vel / 127.0) ** 2 * 10.0 ** (-max(g.get(ATTENUATION, 0), 0) / 200.0) * 0.3
        wave *= (_envelope(n_held, n_total, g, self.sr) * gain).astype(np.float32)
        pan = min(max(g.get(PAN, 0), -500), 500) / 1000.0 + 0.5  # 0 left .. 1 right
        i = int(start * self.sr)
        j = min(i + n_total, out.shape[1])
        if j <= i:
            return
        out[0, i:j] += wave[: j - i] * np.float32(np.cos(pan * np.pi / 2))
        out[1, i:j] += wave[: j - i] * np.float32(np.sin(pan * np.pi / 2))


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM WAV of a float buffer ``[channels, samples]`` (standard library ``wave``)."""
    import wave

    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").T.copy()
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return path
