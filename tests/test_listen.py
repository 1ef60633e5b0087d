"""musicfw listen: study creation, the rating server, the database and the statistics.

The browser test (``test_two_raters_in_headless_chromium``) lives in test_listen_browser.py.
The server tests here start the real Starlette app on uvicorn in a thread on a free port and
talk HTTP to it (http.client, so that un-normalised paths reach the server as sent).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import socket
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import symusic

from conftest import TEST_MIDI, run_cli

from musicfw.plugins.listen.stats import compute_results, two_level_bootstrap
from musicfw.plugins.listen.study import bar_ticks, cut_clip, load_study, shuffle_pitches, ticks_to_seconds

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
SYSTEM_NAMES = ("runA", "runB", "reference", "anchor")


def piece(seed: int, n: int = 48, numerator: int = 4, qpm: float = 110.0) -> symusic.Score:
    rng = np.random.default_rng(seed)
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, qpm))
    score.time_signatures.append(symusic.TimeSignature(0, numerator, 4))
    track = symusic.Track(program=0)
    for i, p in enumerate(rng.integers(55, 80, n)):
        track.notes.append(symusic.Note(i * 240, int(rng.choice([240, 480])), int(p), 80))
    score.tracks.append(track)
    return score


def make_run(folder: Path, numerator: int, seed: int, n: int = 3) -> Path:
    """A fake run folder: config.yaml and samples/*.mid (no training needed)."""
    samples = folder / "samples"
    samples.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"name: {folder.name}\nseed: 0\n")
    for i in range(n):
        piece(seed + i, numerator=numerator).dump_midi(str(samples / f"sample_{i:03d}.mid"))
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    if not SOUNDFONT.is_file():
        pytest.fail(f"the listening tests render audio with {SOUNDFONT} (Debian: apt-get install timgm6mb-soundfont)")
    root = tmp_path_factory.mktemp("listen")
    run_a = make_run(root / "runA", 4, 10)
    run_b = make_run(root / "runB", 3, 20)
    out = root / "study"
    proc = run_cli("listen", "create", "--run", str(run_a), "--run", str(run_b), "--reference", str(TEST_MIDI / "one_track"),
                   "--clips", "2", "--seconds", "4", "--min-play", "1", "--anchors", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture
def study(base, tmp_path):
    """A fresh copy of the module's study (and its two runs) for a test that writes to it."""
    root = tmp_path / "copy"
    shutil.copytree(base, root)
    manifest = json.loads((root / "study" / "manifest.json").read_text())
    for system in manifest["systems"]:  # point the copy at the copied runs
        if system["run"]:
            system["run"] = str(root / Path(system["run"]).name)
    (root / "study" / "manifest.json").write_text(json.dumps(manifest))
    return root / "study"


# --------------------------------------------------------------------------------------
# the plugin and the CLI
# --------------------------------------------------------------------------------------


def test_listen_is_registered_through_the_commands_hook():
    from musicfw.core.plugins import get_plugin_manager, load_registries

    registries = load_registries(get_plugin_manager(autoload=False))
    assert "listen" in registries.commands
    info = next(i for i in registries.commands if i.name == "listen")
    assert info.provider == "musicfw" and info.cls.__module__ == "musicfw.plugins.listen"
    blocked = load_registries(get_plugin_manager(autoload=False, blocked={"musicfw.plugins.listen"}))
    assert "listen" not in blocked.commands  # a plugin like any other: it can be blocked
    proc = run_cli("listen", "--help")
    assert proc.returncode == 0 and "create" in proc.stdout and "results" in proc.stdout


# --------------------------------------------------------------------------------------
# clips
# --------------------------------------------------------------------------------------


def test_bar_lines_follow_time_signatures_and_seconds_follow_tempos():
    score = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    score.time_signatures.append(symusic.TimeSignature(1440 * 2, 6, 8))
    score.tempos.append(symusic.Tempo(0, 120))
    score.tempos.append(symusic.Tempo(960, 60))
    track = symusic.Track()
    for i in range(40):
        track.notes.append(symusic.Note(i * 240, 240, 60 + i % 12, 80))
    score.tracks.append(track)
    bars = bar_ticks(score)
    # two bars of 3/4 (1440 ticks), then 6/8 bars (6 eighths = 1440 ticks) up to the end (9600)
    assert bars[:4] == [0, 1440, 2880, 4320]
    assert bars[-1] >= score.end() and bars[-2] < score.end()
    # seconds through the tempo map agree with symusic's own tick -> second conversion
    seconds = score.to("second")
    ours = ticks_to_seconds(score, [n.time for n in track.notes])
    theirs = [n.time for n in seconds.tracks[0].notes]
    assert np.allclose(ours, theirs, atol=1e-4)


def test_clips_are_cut_at_bar_lines_to_about_the_length():
    score = piece(1, n=200, numerator=3, qpm=90)  # bars of 2 s
    rng = np.random.default_rng(0)
    for _ in range(10):
        clip, where = cut_clip(score, 7.0, rng)
        assert where["start_tick"] % 1440 == 0 and where["end_tick"] % 1440 == 0
        assert abs(where["seconds"] - 7.0) <= 1.0 + 1e-9  # the nearest bar line: within half a bar
        assert clip.end() <= where["end_tick"] - where["start_tick"]  # notes cut at the end bar line
        assert min(n.time for n in clip.tracks[0].notes) >= 0
    short = piece(2, n=8)
    clip, where = cut_clip(short, 20.0, rng)  # shorter than asked: the whole piece
    assert where["start_tick"] == 0 and len(clip.tracks[0].notes) == 8
    assert cut_clip(piece(3, n=3), 5.0, rng) is None  # too few notes


def test_low_anchor_keeps_rhythm_and_pitch_set():
    score = piece(4, n=30)
    anchor = shuffle_pitches(score, np.random.default_rng(0))
    a, b = score.tracks[0].notes.numpy(), anchor.tracks[0].notes.numpy()
    assert np.array_equal(a["time"], b["time"]) and np.array_equal(a["duration"], b["duration"])
    assert sorted(a["pitch"]) == sorted(b["pitch"]) and not np.array_equal(a["pitch"], b["pitch"])


def test_create_writes_a_complete_blinded_study(base):
    import pyloudnorm
    import soundfile as sf

    study = load_study(base / "study")
    m = study.manifest
    assert [s["name"] for s in m["systems"]] == list(SYSTEM_NAMES)
    assert [s["n_clips"] for s in m["systems"]] == [2, 2, 2, 1]
    assert m["audio"]["soundfont"] == str(SOUNDFONT) and m["audio"]["soundfont_sha256"]
    bar = {"runA": 1920, "runB": 1440}
    for clip in m["clips"]:
        assert clip["file"] == f"audio/{clip['id']}.flac" and len(clip["id"]) == 16
        src = clip["source"]
        if clip["system"] in bar:  # the fake runs' bars: 4/4 and 3/4 at 480 ticks per quarter
            assert src["start_tick"] % bar[clip["system"]] == 0 and src["end_tick"] % bar[clip["system"]] == 0
        audio, rate = sf.read(str(base / "study" / clip["file"]))
        loudness = pyloudnorm.Meter(rate).integrated_loudness(audio)
        assert abs(loudness - (-23.0)) < 0.1, (clip["id"], loudness)  # measured here, not taken from the manifest
        sounding = np.flatnonzero(np.abs(audio).max(axis=1) > 0)
        # the clip plus its 1 s release, then silence up to the study's common length (issue 29)
        assert (sounding[-1] + 1) / rate <= src["seconds"] + 1.0 + 0.01 and len(audio) / rate >= src["seconds"] + 1.0 - 0.01
    anchor = next(c for c in m["clips"] if c["system"] == "anchor")
    assert study.clips[anchor["source"]["anchor_of"]]["system"] == "reference"
    kinds = [i["kind"] for i in m["items"]]
    assert kinds.count("mos") == 7 and kinds.count("ab") == 3 * 2  # 3 pairs of systems x 2 clips; no anchor in A/B
    for item in m["items"]:
        if item["kind"] == "ab":
            a, b = (study.clips[c]["system"] for c in item["clips"])
            assert a != b and "anchor" not in (a, b)
    # the audio file names say nothing: only the ids of the manifest
    assert sorted(p.name for p in (base / "study" / "audio").iterdir()) == sorted(f"{c['id']}.flac" for c in m["clips"])


def test_create_refuses_bad_input_with_exit_2(base, tmp_path):
    run_a = base / "runA"
    cases = [
        ["--run", str(run_a), "--reference", "none", "--out", str(base / "study")],  # exists, not empty
        ["--run", str(tmp_path / "nope"), "--reference", "none", "--out", str(tmp_path / "s1")],
        ["--run", str(tmp_path), "--reference", "none", "--out", str(tmp_path / "s2")],  # no samples
        ["--run", str(run_a), "--reference", str(tmp_path / "no-such-dir"), "--out", str(tmp_path / "s3")],
        ["--run", str(run_a), "--reference", str(TEST_MIDI / "bad"), "--out", str(tmp_path / "s4")],  # nothing readable
        ["--run", str(run_a), "--reference", "none", "--anchors", "1", "--out", str(tmp_path / "s5")],
        ["--run", str(run_a), "--clips", "0", "--reference", "none", "--out", str(tmp_path / "s6")],
    ]
    for args in cases:
        proc = run_cli("listen", "create", "--seconds", "4", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and "error:" in proc.stderr
    # nothing half-written is left behind, under the final name or the temporary one
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_missing_or_half_written_study_is_refused(study, tmp_path):
    def both_refuse(folder, needle):
        for args in (["serve", str(folder), "--port", str(free_port())], ["results", str(folder)]):
            proc = run_cli("listen", *args, timeout=60)
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            assert needle in flat(proc.stderr) and "Traceback" not in proc.stderr

    both_refuse(tmp_path / "missing", "no such study folder")
    clip = load_study(study).manifest["clips"][0]
    audio = study / clip["file"]
    data = audio.read_bytes()
    audio.write_bytes(data[: len(data) // 2])  # a truncated clip
    proc = run_cli("listen", "serve", str(study), "--port", str(free_port()), timeout=60)
    assert proc.returncode == 2 and "does not match the manifest" in flat(proc.stderr)
    audio.unlink()  # a missing clip
    proc = run_cli("listen", "serve", str(study), "--port", str(free_port()), timeout=60)
    assert proc.returncode == 2 and "half-written" in flat(proc.stderr)
    (study / "manifest.json").write_text('{"format": "musicfw-listening-study", "vers')  # cut mid-write
    both_refuse(study, "not valid JSON")
    (study / "manifest.json").unlink()
    both_refuse(study, "has no manifest.json")


# --------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------


def flat(text: str) -> str:
    """The CLI wraps its one-paragraph errors at 100 columns."""
    return " ".join(text.split())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(study_path, **kwargs):
    """The real app on uvicorn, in a thread, on a free port."""
    import uvicorn

    from musicfw.plugins.listen.server import create_app

    app = create_app(load_study(study_path), **kwargs)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield Client(port)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class Client:
    def __init__(self, port: int, token: str | None = None):
        self.port = port
        self.token = token

    def raw(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def call(self, method: str, path: str, payload=None, token: str | None = None):
        headers = {"Content-Type": "application/json"}
        if token or self.token:
            headers["X-Study-Token"] = token or self.token
        body = None if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        status, data = self.raw(method, path, body, headers)
        try:
            return status, json.loads(data)
        except json.JSONDecodeError:
            return status, data


def db_rows(study_path):
    conn = sqlite3.connect(str(study_path / "ratings.sqlite"))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        return conn.execute("SELECT rater, item, kind, score, choice FROM ratings ORDER BY rater, item").fetchall()
    finally:
        conn.close()


def test_server_refuses_forged_and_malformed_answers(study):
    s = load_study(study)
    with live_server(study, min_play=0) as c:
        status, rater = c.call("POST", "/api/raters", {"expertise": "amateur"})
        assert status == 201
        rid = rater["rater"]
        status, first = c.call("GET", f"/api/raters/{rid}/next")
        assert status == 200 and first["position"] == 1 and first["item"]["kind"] == "mos"
        item = first["item"]["id"]
        bad = [
            ({"rater": rid, "item": item, "score": 0}, 422),
            ({"rater": rid, "item": item, "score": 6}, 422),
            ({"rater": rid, "item": item, "score": 3.5}, 422),
            ({"rater": rid, "item": item, "score": "4"}, 422),
            ({"rater": rid, "item": item, "score": True}, 422),
            ({"rater": rid, "item": item, "choice": "none"}, 422),
            ({"rater": rid, "item": "0123456789abcdef", "score": 3}, 404),  # unknown item
            ({"rater": "0123456789abcdef", "item": item, "score": 3}, 404),  # unknown rater
            ({"rater": "../../x", "item": item, "score": 3}, 404),
            ({"rater": rid, "item": item}, 422),
            ([rid, item, 3], 400),
            (b"{not json", 400),
            (b'{"rater": "' + b"x" * 5000 + b'"}', 400),
        ]
        for payload, expected in bad:
            status, body = c.call("POST", "/api/ratings", payload)
            assert status == expected, (payload, status, body)
            assert "error" in body
        # an item the rater has not been shown yet (the last of the sequence)
        conn = sqlite3.connect(str(study / "ratings.sqlite"))
        last_item, last_a, last_b = conn.execute(
            "SELECT item, clip_a, clip_b FROM sequence WHERE rater = ? ORDER BY pos DESC LIMIT 1", (rid,)).fetchone()
        conn.close()
        status, body = c.call("POST", "/api/ratings", {"rater": rid, "item": last_item, "choice": last_a})
        assert status == 409 and "not been shown" in body["error"]
        # a forged A/B answer naming a clip outside the pair
        outsider = next(c for c in s.clips if c not in (last_a, last_b))
        status, body = c.call("POST", "/api/ratings", {"rater": rid, "item": last_item, "choice": outsider})
        assert status == 422
        # the real answer, then replays: identical = acknowledged once, changed = refused
        assert c.call("POST", "/api/ratings", {"rater": rid, "item": item, "score": 4})[0] == 201
        assert c.call("POST", "/api/ratings", {"rater": rid, "item": item, "score": 4}) == (200, {"status": "already recorded"})
        status, body = c.call("POST", "/api/ratings", {"rater": rid, "item": item, "score": 2})
        assert status == 409 and "already answered" in body["error"]
        # the next item moved on
        assert c.call("GET", f"/api/raters/{rid}/next")[1]["position"] == 2
        # a second rater whose sequence lacks an item (as a study with per-rater subsets would)
        other = c.call("POST", "/api/raters", {})[1]["rater"]
        conn = sqlite3.connect(str(study / "ratings.sqlite"))
        with conn:
            conn.execute("UPDATE sequence SET shown_at = 0 WHERE rater = ?", (other,))
            conn.execute("DELETE FROM sequence WHERE rater = ? AND item = ?", (other, item))
        conn.close()
        status, body = c.call("POST", "/api/ratings", {"rater": other, "item": item, "score": 3})
        assert status == 403 and "not in this rater's sequence" in body["error"]
        assert c.call("GET", "/api/raters/0123456789abcdef/next")[0] == 404
        assert c.call("POST", "/api/raters", {"expertise": "<script>"})[0] == 422
        # clips: known ids only, only from audio/, nothing else of the study folder
        clip = first["item"]["clips"][0]
        status, data = c.raw("GET", f"/clip/{clip}")
        assert status == 200 and data == (study / "audio" / f"{clip}.flac").read_bytes()
        for path in ("/clip/0000000000000000", "/clip/xyz", "/clip/../manifest.json", "/clip/..%2fmanifest.json",
                     "/clip/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/clip/..%2F..%2Fstudy%2Fmanifest.json", "/../manifest.json",
                     "/manifest.json", "/ratings.sqlite", f"/audio/{clip}.flac", f"/clip/{clip}.flac",
                     f"/clip/{clip}%2f..%2f..%2fmanifest.json", "/clip/%00"):
            status, data = c.raw("GET", path)
            assert 400 <= status < 500, (path, status)
            assert b"musicfw-listening-study" not in data and b"SQLite" not in data
        # nothing a rater sees names a system
        for path in ("/", "/api/study", f"/api/raters/{rid}/next"):
            text = c.raw("GET", path)[1].decode()
            for name in SYSTEM_NAMES:
                assert not re.search(rf"\b{name}\b", text), (path, name)
    rows = db_rows(study)
    assert rows == [(rid, item, "mos", 4, None)]
    assert s.items[item]["kind"] == "mos"


def test_server_enforces_min_play_time_and_token(study):
    now = [1000.0]
    with live_server(study, token="secret-token", clock=lambda: now[0]) as c:  # the manifest's 1 s
        assert c.raw("GET", "/")[0] == 403
        assert c.raw("GET", "/?token=wrong-token")[0] == 403
        assert c.raw("GET", "/?token=secret-token")[0] == 200
        assert c.call("POST", "/api/raters", {})[0] == 403
        status, rater = c.call("POST", "/api/raters", {}, token="secret-token")
        rid = rater["rater"]
        c.token = "secret-token"
        item = c.call("GET", f"/api/raters/{rid}/next")[1]["item"]
        assert c.raw("GET", f"/clip/{item['clips'][0]}")[0] == 403
        assert c.raw("GET", f"/clip/{item['clips'][0]}?token=secret-token")[0] == 200
        now[0] += 0.5
        status, body = c.call("POST", "/api/ratings", {"rater": rid, "item": item["id"], "score": 3})
        assert status == 409 and "too soon" in body["error"]
        now[0] += 0.6
        assert c.call("POST", "/api/ratings", {"rater": rid, "item": item["id"], "score": 3})[0] == 201
    assert len(db_rows(study)) == 1
    # a minimum longer than the clip: the clip's own length is enough
    now = [5000.0]
    with live_server(study, min_play=100, clock=lambda: now[0]) as c:
        rid = c.call("POST", "/api/raters", {})[1]["rater"]
        item = c.call("GET", f"/api/raters/{rid}/next")[1]["item"]
        length = load_study(study).clips[item["clips"][0]]["audio_seconds"]
        assert length < 10
        now[0] += length - 0.5
        assert c.call("POST", "/api/ratings", {"rater": rid, "item": item["id"], "score": 3})[0] == 409
        now[0] += 0.5
        assert c.call("POST", "/api/ratings", {"rater": rid, "item": item["id"], "score": 3})[0] == 201


# --------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------


def test_two_level_bootstrap():
    x = np.full((4, 3), 3.0)
    m = np.ones_like(x, dtype=bool)
    assert two_level_bootstrap(x, m) == (3.0, 3.0)
    rng = np.random.default_rng(0)
    x = rng.integers(1, 6, (30, 10)).astype(float)
    lo, hi = two_level_bootstrap(x, m := np.ones_like(x, dtype=bool))
    assert lo < x.mean() < hi
    assert two_level_bootstrap(x, m) == (lo, hi)  # seeded
    lo2, hi2 = two_level_bootstrap(x[:5], m[:5])  # fewer raters: a wider interval
    assert hi2 - lo2 > hi - lo
    assert two_level_bootstrap(x, np.zeros_like(m)) is None


def answer_all(c, study, plan, expertise=None):
    """One rater answers every item: MOS = plan[system] (+1 on the second clip of a system),
    A/B = the system with the higher plan value, no preference on a tie.  Returns the rater id."""
    clips = study.clips
    rid = c.call("POST", "/api/raters", {"expertise": expertise})[1]["rater"]
    while True:
        status, nxt = c.call("GET", f"/api/raters/{rid}/next")
        if nxt["done"]:
            return rid
        item = nxt["item"]
        if item["kind"] == "mos":
            answer = {"score": planned_score(study, plan, item["clips"][0])}
        else:
            a, b = item["clips"]
            pa, pb = plan[clips[a]["system"]], plan[clips[b]["system"]]
            answer = {"choice": a if pa > pb else b if pb > pa else "none"}
        assert c.call("POST", "/api/ratings", {"rater": rid, "item": item["id"], **answer})[0] == 201


def planned_score(study, plan, clip):
    system = study.clips[clip]["system"]
    ids = [c["id"] for c in study.manifest["clips"] if c["system"] == system]
    return plan[system] + ids.index(clip)


def test_results_count_exclude_and_agree(study):
    import krippendorff

    s = load_study(study)
    plan = {"runA": 2, "runB": 3, "reference": 4, "anchor": 1}
    with live_server(study, min_play=0) as c:
        r1 = answer_all(c, s, plan, "amateur")
        r2 = answer_all(c, s, plan, "none")
        r3 = answer_all(c, s, {**plan, "anchor": 5})  # rates the low anchor 5: fails the attention check
        c.call("POST", "/api/raters", {})  # a rater who never answered is not counted
    proc = run_cli("listen", "results", str(study), "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["raters"]["answered"] == 3 and res["raters"]["included"] == 2 and res["raters"]["failed_attention"] == 1
    assert res["raters"]["expertise"] == {"amateur": 1, "none": 1}
    assert res["ratings"] == {"mos": 14, "ab": 12, "all_including_excluded": 39}
    for system, base_score in plan.items():
        m = res["mos"][system]
        expected = np.mean([base_score + k for k in range(m["n_clips"])])  # both raters gave the planned scores
        assert m["mos"] == pytest.approx(expected) and m["n_ratings"] == 2 * m["n_clips"]
        assert m["ci95"][0] <= expected <= m["ci95"][1]
    pairs = {(p["a"], p["b"]): p for p in res["ab"]["pairs"]}
    assert pairs[("runA", "runB")]["wins_b"] == 4 and pairs[("runA", "runB")]["wins_a"] == 0
    assert pairs[("runA", "runB")]["win_rate_a"] == 0.0
    assert pairs[("runB", "reference")]["wins_b"] == 4
    bt = res["bradley_terry"]["systems"]
    assert bt["reference"]["log_strength"] > bt["runB"]["log_strength"] > bt["runA"]["log_strength"]
    # agreement: the two included raters gave identical scores
    assert res["agreement"]["alpha"] == pytest.approx(1.0)
    assert r3 not in proc.stdout and {r1, r2}.isdisjoint(proc.stdout.split())
    # metrics.json of each run, and its report
    metrics = json.loads((study.parent / "runA" / "metrics.json").read_text())
    lis = metrics["listening"]
    assert lis["system"] == "runA" and lis["mos"] == pytest.approx(2.5) and lis["n_raters"] == 2
    assert lis["failed_attention"] == 1 and lis["reference_mos"] == pytest.approx(4.5)
    assert lis["ab_vs"]["runB"]["win_rate"] == 0.0
    from musicfw.engine.report import render_report

    page = render_report(study.parent / "runA")
    assert "Listening test" in page and "<td>2.50</td>" in page and "2 raters included" in page
    lo, hi = lis["mos_ci95"]
    assert f"[{lo:.2f}, {hi:.2f}]" in page and "<td>4.50</td>" in page


def test_results_disagreement_and_no_ratings(study):
    s = load_study(study)
    proc = run_cli("listen", "results", str(study))
    assert proc.returncode == 2 and "no rating was collected" in flat(proc.stderr)
    with live_server(study, min_play=0) as c:
        answer_all(c, s, {"runA": 4, "runB": 2, "reference": 1, "anchor": 1})
        answer_all(c, s, {"runA": 1, "runB": 4, "reference": 3, "anchor": 1})
    res = compute_results(s, *_ratings(study))
    import krippendorff

    rel = np.full((2, 6), np.nan)
    units = [c for c, info in s.clips.items() if info["system"] != "anchor" and "role" not in info]  # not the training copies
    for rater_i, plan in enumerate(({"runA": 4, "runB": 2, "reference": 1}, {"runA": 1, "runB": 4, "reference": 3})):
        for j, clip in enumerate(units):
            rel[rater_i, j] = planned_score(s, {**plan, "anchor": 1}, clip)
    expected = krippendorff.alpha(reliability_data=rel, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5])
    assert res["agreement"]["alpha"] == pytest.approx(expected, abs=1e-4) and expected < 0.5
    assert res["mos"]["runA"]["ci95"][1] - res["mos"]["runA"]["ci95"][0] > 0.5


def test_results_when_every_rater_fails_the_attention_check(study):
    s = load_study(study)
    anchor_item = next(i["id"] for i in s.manifest["items"] if i["kind"] == "mos" and s.clips[i["clip"]]["system"] == "anchor")
    ref_item = next(i["id"] for i in s.manifest["items"] if i["kind"] == "mos" and s.clips[i["clip"]]["system"] == "reference")
    ratings = [
        {"rater": r, "item": it, "kind": "mos", "score": score, "choice": None}
        for r in ("r1", "r2") for it, score in ((anchor_item, 5), (ref_item, 4))
    ]
    res = compute_results(s, ratings)
    assert res["raters"]["answered"] == 2 and res["raters"]["included"] == 0 and res["raters"]["failed_attention"] == 2
    assert res["mos"]["reference"] == {"mos": None, "ci95": None, "n_ratings": 0, "n_clips": 2, "n_raters": 0}
    assert res["agreement"]["alpha"] is None
    ratings[0]["score"] = 3  # r1 rates the anchor 3: passes, and counts
    res = compute_results(s, ratings)
    assert res["raters"]["included"] == 1 and res["mos"]["reference"]["mos"] == 4.0


def test_serve_refuses_a_port_in_use(base):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = run_cli("listen", "serve", str(base / "study"), "--port", str(busy.getsockname()[1]), timeout=60)
    assert proc.returncode == 2 and "cannot listen on" in flat(proc.stderr) and "Traceback" not in proc.stderr
    proc = run_cli("listen", "serve", str(base / "study"), "--token", "short", timeout=60)
    assert proc.returncode == 2 and "--token" in proc.stderr


def _ratings(study):
    from musicfw.plugins.listen.db import fetch_raters, fetch_ratings, open_existing

    conn = open_existing(study / "ratings.sqlite", load_study(study).manifest["study_id"])
    try:
        return fetch_ratings(conn), fetch_raters(conn)
    finally:
        conn.close()


@pytest.mark.slow
def test_reference_from_the_runs_test_split(tmp_path, monkeypatch):
    """--reference test: the held-out pieces of the run's own dataset, through its config.yaml."""
    midi = tmp_path / "midi"
    shutil.copytree(TEST_MIDI / "one_track", midi)
    run = make_run(tmp_path / "run", 4, 30)
    (run / "config.yaml").write_text(
        "name: tiny\nseed: 0\n"
        f"data: {{name: midi_folder, path: {midi}, train_fraction: 0.4, valid_fraction: 0.2}}\n"
        "tokenizer: {name: remi}\nmodel: {name: markov}\n"
    )
    monkeypatch.setenv("MUSICFW_CACHE_DIR", str(tmp_path / "cache"))  # the token cache, for run_cli too
    out = tmp_path / "study"
    proc = run_cli("listen", "create", "--run", str(run), "--reference", "test", "--clips", "2", "--seconds", "4",
                   "--anchors", "0", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    m = load_study(out).manifest
    ref = next(s for s in m["systems"] if s["name"] == "reference")
    assert ref["source"].startswith("the test split of the dataset of") and ref["run"] == str(run.resolve())
    from musicfw.api import build_from_section
    from musicfw.engine.data import build_datamodule
    from musicfw.engine.rundir import load_run_config

    config = load_run_config(run)
    dm = build_datamodule(
        config.data, build_from_section("tokenizers", config.tokenizer), train=config.train,
        seed=int(config.seed), run_dir=run, progress=False,
    )
    test_ids = {str(p.id) for p in dm.pieces("test")}
    train_ids = {str(p.id) for p in dm.pieces("train")}
    pieces = {c["source"]["piece"] for c in m["clips"] if c["system"] == "reference"}
    assert pieces and pieces <= test_ids and not pieces & train_ids
