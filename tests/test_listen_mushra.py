"""musicfw listen, issue 29: MUSHRA, rater screening, exact and bootstrap statistics, export, the
progress page, and the five defects an independent browser script found (each test here failed
before its fix).

The browser half (a MUSHRA study end to end in headless chromium, with a server kill and a rater
excluded by screening) is in test_listen_browser.py.  Run this file as a script to print the
results table of the simulated study shown in README.md.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import symusic

sys.path.insert(0, str(Path(__file__).parent))

from conftest import TEST_MIDI, run_cli  # noqa: E402
from test_listen import SOUNDFONT, flat, live_server, make_run, piece  # noqa: E402

from musicfw.plugins.listen.stats import clopper_pearson, compute_results, format_results, holm  # noqa: E402
from musicfw.plugins.listen.study import Study, beat_ticks, load_study, pad_flac, shuffle_beats  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMES = ("runA", "runB", "reference", "anchor", "mid_anchor")


@pytest.fixture(scope="module")
def mbase(tmp_path_factory):
    """A study with all three tests, one repeat of each kind, 2 clips per system of 4 s."""
    if not SOUNDFONT.is_file():
        pytest.fail(f"the listening tests render audio with {SOUNDFONT} (Debian: apt-get install timgm6mb-soundfont)")
    root = tmp_path_factory.mktemp("mushra")
    run_a = make_run(root / "runA", 4, 10)
    run_b = make_run(root / "runB", 3, 20)
    proc = run_cli("listen", "create", "--run", str(run_a), "--run", str(run_b), "--reference", str(TEST_MIDI / "one_track"),
                   "--tests", "mos,ab,mushra", "--repeats", "1", "--clips", "2", "--seconds", "4", "--min-play", "1",
                   "--out", str(root / "study"))
    assert proc.returncode == 0, proc.stderr
    assert "2 MUSHRA items" not in proc.stdout and "3 MUSHRA items" in proc.stdout  # 2 + 1 repeat
    return root


@pytest.fixture
def mstudy(mbase, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(mbase, root)
    manifest = json.loads((root / "study" / "manifest.json").read_text())
    for system in manifest["systems"]:
        if system["run"]:
            system["run"] = str(root / Path(system["run"]).name)
    (root / "study" / "manifest.json").write_text(json.dumps(manifest))
    return root / "study"


# --------------------------------------------------------------------------------------
# the five defects
# --------------------------------------------------------------------------------------


def test_defect1_clips_do_not_reveal_their_system_by_date_size_or_length(mstudy):
    """Last-Modified (clips are rendered one system at a time), byte size and exact length."""
    import soundfile as sf

    s = load_study(mstudy)
    files = [mstudy / c["file"] for c in s.manifest["clips"]]
    infos = [sf.info(str(f)) for f in files]
    assert {i.samplerate for i in infos} == {44100}  # defect 5: it was 22,050 Hz
    assert len({i.frames for i in infos}) == 1 and len({f.stat().st_size for f in files}) == 1
    assert len({f.stat().st_mtime for f in files}) == 1
    # the padded FLAC files still decode (the test reads them all) and hold the music they held
    assert all(np.abs(sf.read(str(f))[0]).max() > 0.01 for f in files)
    with live_server(mstudy, min_play=0) as c:
        clip = s.manifest["clips"][0]["id"]
        conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=20)
        conn.request("GET", f"/clip/{clip}")
        r = conn.getresponse()
        body = r.read()
        headers = {k.lower() for k, _ in r.getheaders()}
        assert r.status == 200 and body == (mstudy / "audio" / f"{clip}.flac").read_bytes()
        assert "last-modified" not in headers and "etag" not in headers
        conn.request("GET", f"/clip/{clip}", headers={"Range": "bytes=100-199"})  # seeking in the browser
        r = conn.getresponse()
        assert r.status == 206 and r.read() == body[100:200]
        conn.close()


def test_pad_flac_reaches_the_size_exactly(tmp_path):
    import soundfile as sf

    audio = np.random.default_rng(0).normal(0, 0.1, (4410, 2)).astype(np.float32)
    path = tmp_path / "a.flac"
    sf.write(str(path), audio, 44100, format="FLAC", subtype="PCM_16")
    before, _ = sf.read(str(path), dtype="int16")
    pad_flac(path, path.stat().st_size + 1000)
    after, rate = sf.read(str(path), dtype="int16")
    assert path.stat().st_size == len(path.read_bytes()) and np.array_equal(before, after) and rate == 44100
    with pytest.raises(ValueError):
        pad_flac(path, path.stat().st_size + 2)  # a padding block needs 4 bytes of header


def test_defect2_deeply_nested_json_is_a_400_not_a_500(mstudy):
    deep = b"[" * 2000 + b"]" * 2000  # 4,000 bytes: under the 4 KB limit, too deep for json
    assert len(deep) <= 4096
    with live_server(mstudy, min_play=0) as c:
        for path in ("/api/ratings", "/api/raters"):
            status, body = c.call("POST", path, deep)
            assert status == 400, (path, status, body)
        deep_obj = b'{"rater": ' + b"[" * 1900 + b"]" * 1900 + b"}"
        assert c.call("POST", "/api/ratings", deep_obj)[0] == 400


def test_defect3_results_and_export_refuse_a_damaged_study(mstudy):
    s = load_study(mstudy)
    with live_server(mstudy, min_play=0) as c:
        answer_all(c, s, PLAN)
    assert run_cli("listen", "results", str(mstudy), "--no-write").returncode == 0
    clip = mstudy / s.manifest["clips"][3]["file"]
    clip.write_bytes(clip.read_bytes()[:1000])
    for verb in (["results", str(mstudy)], ["export", str(mstudy), "--csv"]):
        proc = run_cli("listen", *verb)
        assert proc.returncode == 2 and "does not match the manifest" in flat(proc.stderr), (verb, proc.stderr)
    clip.unlink()
    proc = run_cli("listen", "results", str(mstudy))
    assert proc.returncode == 2 and "half-written" in flat(proc.stderr)


def test_defect4_degenerate_win_rates_and_bradley_terry_are_flagged(mstudy):
    s = load_study(mstudy)
    ab = [i for i in s.manifest["items"] if i["kind"] == "ab"]
    system = {c: s.clips[c]["system"] for i in ab for c in i["clips"]}
    ratings = []
    for r in ("r1", "r2", "r3"):
        for item in ab:
            a, b = item["clips"]
            # the reference always wins; runB always beats runA
            win = a if (system[a] == "reference" or (system[a] == "runB" and system[b] == "runA")) else b
            ratings.append({"rater": r, "item": item["id"], "kind": "ab", "score": None, "choice": win})
    res = compute_results(s, ratings)
    pairs = {(p["a"], p["b"]): p for p in res["ab"]["pairs"]}
    ra_rb = pairs[("runA", "runB")]
    assert (ra_rb["wins_a"], ra_rb["wins_b"], ra_rb["n"]) == (0, 6, 6)
    assert ra_rb["win_rate_a"] == 0.0
    assert ra_rb["ci95"] == [0.0, 0.4593]  # exact: 1 - 0.025 ** (1 / 6); it was [0.00, 0.00]
    assert clopper_pearson(6, 6) == pytest.approx((0.025 ** (1 / 6), 1.0))
    from scipy.stats import binomtest

    assert ra_rb["p_value"] == pytest.approx(binomtest(0, 6).pvalue, abs=1e-4)
    bt = res["bradley_terry"]["systems"]
    assert bt["runA"]["wins"] == 0 and bt["runA"]["flag"].startswith("never won")
    assert bt["reference"]["losses"] == 0 and bt["reference"]["flag"].startswith("never lost")
    assert bt["runB"]["flag"] is None and bt["runB"]["ci95"][0] <= bt["runB"]["log_strength"] <= bt["runB"]["ci95"][1]
    text = format_results(res)
    assert "never won" in text and "never lost" in text and "[0.00, 0.46]" in text
    # the never-winning system's number is not printed as if it were an estimate
    assert f"{bt['runA']['log_strength']:+.3f}" not in text
    # an interval appears once the data allow one: some wins for runA
    mixed = [dict(r, choice=next(c for c in s.items[r["item"]]["clips"] if c != r["choice"]))
             if r["rater"] == "r1" and system[s.items[r["item"]]["clips"][0]] == "runA" else r for r in ratings]
    bt2 = compute_results(s, mixed)["bradley_terry"]["systems"]
    assert bt2["runA"]["flag"] is None and bt2["runA"]["ci95"][0] < bt2["runA"]["ci95"][1]


def test_defect5_host_header_is_checked(mstudy):
    with live_server(mstudy, min_play=0) as c:
        for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example", "", "a b"):
            status, body = c.raw("GET", "/api/study", headers={"Host": host})
            assert status == 400, (host, status)
        for host in (f"127.0.0.1:{c.port}", f"localhost:{c.port}", f"[::1]:{c.port}", "192.168.1.20:8000"):
            assert c.raw("GET", "/api/study", headers={"Host": host})[0] == 200, host
        assert c.raw("POST", "/api/raters", b"{}", headers={"Host": "evil.example", "Content-Type": "application/json"})[0] == 400
    with live_server(mstudy, min_play=0, allow_hosts=["study.lab.example"]) as c:
        assert c.raw("GET", "/api/study", headers={"Host": "study.lab.example:8000"})[0] == 200
        assert c.raw("GET", "/api/study", headers={"Host": "evil.example"})[0] == 400
    with live_server(mstudy, min_play=0, token="rater-token-1") as c:  # a token: any name, token still needed
        assert c.raw("GET", "/api/study", headers={"Host": "study.lab.example"})[0] == 403
        assert c.raw("GET", "/api/study?token=rater-token-1", headers={"Host": "study.lab.example"})[0] == 200


# --------------------------------------------------------------------------------------
# MUSHRA: anchors and the study
# --------------------------------------------------------------------------------------


def test_mid_anchor_shuffles_beats_and_keeps_each_beat():
    score = piece(7, n=64, numerator=4)
    beat = beat_ticks(score)
    assert beat == 480
    out = shuffle_beats(score, np.random.default_rng(1))

    def beats(s):
        content: dict[int, list] = {}
        for n in s.tracks[0].notes:
            b, off = divmod(n.time, beat)
            content.setdefault(b, []).append((off, min(n.duration, beat - off), n.pitch))
        return {b: sorted(v) for b, v in content.items()}

    a, b = beats(score), beats(out)
    assert sorted(map(tuple, a.values())) == sorted(map(tuple, b.values()))  # every beat kept whole
    assert [a[k] for k in sorted(a)] != [b[k] for k in sorted(b)]  # in another order
    assert all(n.time % beat + n.duration <= beat for n in out.tracks[0].notes)  # cut at its beat's end
    six_eight = piece(8, numerator=6)
    six_eight.time_signatures[0] = symusic.TimeSignature(0, 6, 8)
    assert beat_ticks(six_eight) == 720


def test_create_mushra_items(mbase):
    s = load_study(mbase / "study")
    m = s.manifest
    assert m["tests"] == ["mos", "ab", "mushra"] and m["audio"]["sample_rate"] == 44100
    mushra = [i for i in m["items"] if i["kind"] == "mushra"]
    originals = [i for i in mushra if "repeat_of" not in i]
    assert len(originals) == 2 and len(mushra) == 3
    for k, item in enumerate(originals):
        ref = s.clips[item["reference"]]
        assert ref["system"] == "reference" and "role" not in ref
        roles = {s.clips[c].get("role") or s.clips[c]["system"]: s.clips[c] for c in item["clips"]}
        assert set(roles) == {"hidden_reference", "low_anchor", "mid_anchor", "runA", "runB"}
        hidden = roles["hidden_reference"]
        assert hidden["id"] != ref["id"] and hidden["copy_of"] == ref["id"] and hidden["system"] == "reference"
        assert (mbase / "study" / hidden["file"]).read_bytes() == (mbase / "study" / ref["file"]).read_bytes()
        assert roles["low_anchor"]["source"]["anchor_of"] == ref["id"] and roles["low_anchor"]["system"] == "anchor"
        assert roles["mid_anchor"]["source"]["anchor_of"] == ref["id"] and roles["mid_anchor"]["system"] == "mid_anchor"
        by_system = [c["id"] for c in m["clips"] if c["system"] == "runA" and "role" not in c]
        assert roles["runA"]["id"] == by_system[k]
    repeat = next(i for i in mushra if "repeat_of" in i)
    assert {**repeat, "id": repeat["repeat_of"]} == {**s.items[repeat["repeat_of"]], "repeat_of": repeat["repeat_of"]}
    mos_repeat = [i for i in m["items"] if i["kind"] == "mos" and "repeat_of" in i]
    assert len(mos_repeat) == 1 and s.clips[mos_repeat[0]["clip"]]["system"] != "anchor"
    # training: copies (other ids) of a reference clip and its two anchors, never a clip of an item
    assert [t["label"].split(":")[0].split(" (")[0] for t in m["training"]][0] == "Real music"
    used = {c for i in m["items"] for c in ([i.get("clip")] + i.get("clips", []) + [i.get("reference")])}
    assert len(m["training"]) == 3 and not used & {t["clip"] for t in m["training"]}
    # MUSHRA without a reference, and a test that does not exist
    proc = run_cli("listen", "create", "--run", str(mbase / "runA"), "--reference", "none", "--tests", "mushra",
                   "--out", str(mbase / "x"))
    assert proc.returncode == 2 and "needs a reference" in flat(proc.stderr)
    proc = run_cli("listen", "create", "--run", str(mbase / "runA"), "--tests", "mos,mushra2", "--out", str(mbase / "y"))
    assert proc.returncode == 2 and "mushra2 is not a test" in flat(proc.stderr)


# --------------------------------------------------------------------------------------
# MUSHRA: the server
# --------------------------------------------------------------------------------------

PLAN = {"reference": 95, "runA": 60, "runB": 40, "mid_anchor": 30, "anchor": 10}
MOS_PLAN = {"runA": 2, "runB": 3, "reference": 4, "anchor": 1}


def mushra_scores(s: Study, item: dict, plan: dict, shift: int = 0) -> dict:
    """The planned score of each condition: plan[system] + 2 x the item's index + shift."""
    k = [i["id"] for i in s.manifest["items"] if i["kind"] == "mushra" and "repeat_of" not in i]
    base = s.items[item["id"]].get("repeat_of", item["id"])
    return {c: int(np.clip(plan[s.clips[c]["system"]] + 2 * k.index(base) + shift, 0, 100)) for c in item["clips"]}


def answer_all(c, s, plan, mos_plan=MOS_PLAN, environment="headphones", repeat_shift=0):
    rid = c.call("POST", "/api/raters", {"environment": environment})[1]["rater"]
    while True:
        nxt = c.call("GET", f"/api/raters/{rid}/next")[1]
        if nxt["done"]:
            return rid
        item = nxt["item"]
        if item["kind"] == "mos":
            system = s.clips[item["clips"][0]]["system"]
            answer = {"score": mos_plan[system] + (repeat_shift if "repeat_of" in s.items[item["id"]] else 0)}
            answer["score"] = int(np.clip(answer["score"], 1, 5))
        elif item["kind"] == "ab":
            a, b = item["clips"]
            pa, pb = mos_plan[s.clips[a]["system"]], mos_plan[s.clips[b]["system"]]
            answer = {"choice": a if pa > pb else b if pb > pa else "none"}
        else:
            shift = repeat_shift if "repeat_of" in s.items[item["id"]] else 0
            answer = {"scores": mushra_scores(s, item, plan, shift)}
        status, body = c.call("POST", "/api/ratings", {"rater": rid, "item": item["id"], **answer})
        assert status == 201, body


def test_server_mushra_item(mstudy):
    s = load_study(mstudy)
    now = [100.0]
    with live_server(mstudy, clock=lambda: now[0]) as c:  # the manifest's 1 s per clip
        rid = c.call("POST", "/api/raters", {"environment": "headphones"})[1]["rater"]
        assert c.call("POST", "/api/raters", {"environment": "bathtub"})[0] == 422
        conn = sqlite3.connect(str(mstudy / "ratings.sqlite"))
        seq = conn.execute("SELECT item, conditions FROM sequence WHERE rater = ? ORDER BY pos", (rid,)).fetchall()
        kinds = [s.items[i]["kind"] for i, _ in seq]
        assert kinds == sorted(kinds, key=["mos", "ab", "mushra"].index)  # MOS, then A/B, then MUSHRA
        # jump to the first MUSHRA item: answer the rest in the database's back door
        first_mushra = kinds.index("mushra")
        with conn:
            for item, _ in seq[:first_mushra]:
                kind = s.items[item]["kind"]
                conn.execute("INSERT INTO ratings VALUES (?, ?, ?, ?, ?, 0, 0)", (rid, item, kind, 3 if kind == "mos" else None,
                                                                            None if kind == "mos" else "none"))
        conn.close()
        nxt = c.call("GET", f"/api/raters/{rid}/next")[1]
        item = nxt["item"]
        manifest_item = s.items[item["id"]]
        assert item["kind"] == "mushra" and item["ref"] == manifest_item["reference"]
        assert sorted(item["clips"]) == sorted(manifest_item["clips"]) and len(item["clips"]) == 5
        good = {cl: 50 for cl in item["clips"]}
        bad = [
            ({"scores": {**good, item["clips"][0]: 101}}, 422),
            ({"scores": {**good, item["clips"][0]: -1}}, 422),
            ({"scores": {**good, item["clips"][0]: 50.5}}, 422),
            ({"scores": {**good, item["clips"][0]: True}}, 422),
            ({"scores": {cl: 50 for cl in item["clips"][1:]}}, 422),  # a condition missing
            ({"scores": {**good, item["ref"]: 50}}, 422),  # the open reference is not a condition
            ({"scores": good, "score": 3}, 422),
            ({"score": 3}, 422),
        ]
        for payload, expected in bad:
            assert c.call("POST", "/api/ratings", {"rater": rid, "item": item["id"], **payload})[0] == expected, payload
        now[0] += 4.5  # five clips of at least 1 s each: 5 s
        status, body = c.call("POST", "/api/ratings", {"rater": rid, "item": item["id"], "scores": good})
        assert status == 409 and "too soon" in body["error"]
        now[0] += 0.6
        assert c.call("POST", "/api/ratings", {"rater": rid, "item": item["id"], "scores": good})[0] == 201
        assert c.call("POST", "/api/ratings", {"rater": rid, "item": item["id"], "scores": good})[0] == 200
        changed = {**good, item["clips"][0]: 51}
        assert c.call("POST", "/api/ratings", {"rater": rid, "item": item["id"], "scores": changed})[0] == 409
    conn = sqlite3.connect(str(mstudy / "ratings.sqlite"))
    rows = conn.execute("SELECT clip, score FROM mushra_scores WHERE rater = ? AND item = ?", (rid, item["id"])).fetchall()
    assert sorted(rows) == sorted(good.items())
    assert conn.execute("SELECT environment FROM raters WHERE id = ?", (rid,)).fetchone()[0] == "headphones"
    conn.close()


def test_a_schema_1_database_is_upgraded_in_place(mstudy):
    """A ratings.sqlite from before issue 29 (no environment, conditions or MUSHRA table) keeps its rows."""
    s = load_study(mstudy)
    conn = sqlite3.connect(str(mstudy / "ratings.sqlite"))
    with conn:
        conn.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE raters (id TEXT PRIMARY KEY, created REAL NOT NULL, expertise TEXT);"
            "CREATE TABLE sequence (rater TEXT NOT NULL, pos INTEGER NOT NULL, item TEXT NOT NULL, clip_a TEXT NOT NULL, "
            "clip_b TEXT, shown_at REAL, PRIMARY KEY (rater, pos), UNIQUE (rater, item));"
            "CREATE TABLE ratings (rater TEXT NOT NULL, item TEXT NOT NULL, kind TEXT NOT NULL, score INTEGER, choice TEXT, "
            "created REAL NOT NULL, elapsed REAL NOT NULL, UNIQUE (rater, item));")
        conn.execute("INSERT INTO meta VALUES ('study_id', ?), ('schema', '1')", (s.manifest["study_id"],))
        conn.execute("INSERT INTO raters VALUES ('00000000000000aa', 1.0, 'amateur')")
    conn.close()
    with live_server(mstudy, min_play=0) as c:
        answer_all(c, s, PLAN)
    proc = run_cli("listen", "results", str(mstudy), "--json", "--no-write")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["raters"]["answered"] == 1


# --------------------------------------------------------------------------------------
# results: screening, MUSHRA statistics, consistency
# --------------------------------------------------------------------------------------


def test_mushra_results_screening_and_consistency(mstudy):
    from scipy.stats import wilcoxon

    s = load_study(mstudy)
    with live_server(mstudy, min_play=0) as c:
        r1 = answer_all(c, s, PLAN, repeat_shift=0)
        r2 = answer_all(c, s, {**PLAN, "runA": 70}, repeat_shift=1, environment="loudspeakers")
        # r3 scores the hidden reference 70 on every item: BS.1534-3 post-screening excludes them
        r3 = answer_all(c, s, {**PLAN, "reference": 70})
        # r4 fails the MOS attention check as well
        r4 = answer_all(c, s, {**PLAN, "reference": 60}, mos_plan={**MOS_PLAN, "anchor": 5})
    proc = run_cli("listen", "results", str(mstudy), "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    r = res["raters"]
    assert (r["answered"], r["included"], r["excluded"], r["failed_attention"]) == (4, 2, 2, 1)
    assert r["environment"] == {"headphones": 1, "loudspeakers": 1}
    ex = {e["rater"]: e["reasons"] for e in r["exclusions"]}
    assert set(ex) == {3, 4}
    assert len(ex[3]) == 1 and ex[3][0].startswith("MUSHRA post-screening (BS.1534-3): scored the hidden reference below 90 on 2 of 2 items")
    assert len(ex[4]) == 2 and ex[4][0].startswith("attention check: rated the low anchor 5")
    for rid in (r1, r2, r3, r4):
        assert rid not in proc.stdout  # raters are numbered, never named, in the results
    mu = res["mushra"]
    assert mu["n_items"] == 2
    expected = {name: np.mean([v + 2 * k for k in range(2)] + [(v if name != "runA" else 70) + 2 * k for k in range(2)])
                for name, v in PLAN.items()}
    for name, v in expected.items():
        cond = mu["conditions"][name]
        assert cond["mean"] == pytest.approx(v) and cond["n_scores"] == 4 and cond["ci95"][0] <= v <= cond["ci95"][1]
    assert mu["conditions"]["reference"]["role"] == "hidden reference" and mu["conditions"]["anchor"]["role"] == "low anchor"
    assert list(mu["conditions"]) == ["reference", "runA", "runB", "mid_anchor", "anchor"]
    # Wilcoxon and Holm against scipy on the same pairs
    tests = {(t["a"], t["b"]): t for t in mu["wilcoxon"]}
    assert len(tests) == 10
    ra = np.array([62, 64, 72, 74], dtype=float)
    rb = np.array([42, 44, 42, 44], dtype=float)
    t = tests[("runA", "runB")]
    assert t["p_value"] == pytest.approx(wilcoxon(ra, rb).pvalue, abs=1e-6) and t["mean_difference"] == pytest.approx(25.0)
    raw = [x["p_value"] for x in mu["wilcoxon"]]
    assert [x["p_holm"] for x in mu["wilcoxon"]] == pytest.approx(holm(raw), abs=1e-6)
    # consistency: r2 answered each repeat 1 point off (MOS: 1 on the 1-5 scale, MUSHRA: 1 on 0-100)
    con = {x["rater"]: x for x in res["consistency"]["raters"]}
    assert con[1]["mos_mean_abs_diff"] == 0 and con[1]["mushra_mean_abs_diff"] == 0
    assert con[2]["mos_mean_abs_diff"] == 1 and con[2]["mushra_mean_abs_diff"] == 1
    assert res["ratings"]["repeats"] == 4 and res["ratings"]["mushra"] == 4
    # the MOS part still works beside MUSHRA and ignores the repeat
    assert res["mos"]["runA"]["n_ratings"] == 4
    # metrics.json of runA
    lis = json.loads((mstudy.parent / "runA" / "metrics.json").read_text())["listening"]
    assert lis["mushra"] == pytest.approx(expected["runA"]) and lis["excluded_raters"] == 2
    assert lis["mushra_vs"]["runB"]["mean_difference"] == pytest.approx(25.0)
    # ... and its report: the MUSHRA mean, the hidden reference and the paired comparison
    from musicfw.engine.report import render_report

    page = render_report(mstudy.parent / "runA")
    assert "2 excluded (1 by the attention check)" in page
    assert f"<td>{lis['mushra']:.1f}</td>" in page and f"<td>{lis['hidden_reference_mushra']:.1f}</td>" in page
    assert "<th>MUSHRA against</th>" in page and "<td>25.0</td>" in page
    # the printed table lists every exclusion with its reason
    text = run_cli("listen", "results", str(mstudy), "--no-write").stdout
    assert "excluded rater 3: MUSHRA post-screening" in text and "excluded rater 4: attention check" in text
    # headphones required: r2 (loudspeakers) is excluded too
    manifest = json.loads((mstudy / "manifest.json").read_text())
    manifest["settings"]["require_headphones"] = True
    (mstudy / "manifest.json").write_text(json.dumps(manifest))
    res = json.loads(run_cli("listen", "results", str(mstudy), "--json", "--no-write").stdout)
    assert {e["rater"]: e["reasons"] for e in res["raters"]["exclusions"]}[2] == [
        "listening environment: loudspeakers, the study requires headphones"]


def test_holm():
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([0.5, 0.9]) == [1.0, 1.0]


# --------------------------------------------------------------------------------------
# export and progress
# --------------------------------------------------------------------------------------


def test_export_csv_one_row_per_answer(mstudy, tmp_path):
    s = load_study(mstudy)
    with live_server(mstudy, min_play=0) as c:
        r1 = answer_all(c, s, PLAN)
        answer_all(c, s, {**PLAN, "reference": 70})  # excluded by screening
    proc = run_cli("listen", "export", str(mstudy), "--csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    kinds = [i["kind"] for i in s.manifest["items"]]
    per_rater = kinds.count("mos") + kinds.count("ab") + 5 * kinds.count("mushra")
    assert len(rows) == 2 * per_rater
    assert list(rows[0]) == ["rater", "rater_id", "item", "repeat_of", "test", "clip", "system", "role", "compared",
                             "value", "time", "elapsed", "excluded"]
    mine = [r for r in rows if r["rater_id"] == r1]
    assert {r["rater"] for r in mine} == {"1"} and all(r["excluded"] == "" for r in mine)
    assert all(r["excluded"].startswith("MUSHRA post-screening") for r in rows if r["rater"] == "2")
    for r in mine:
        if r["test"] == "mushra":
            item = s.items[r["item"]]
            assert int(r["value"]) == mushra_scores(s, {"id": r["item"], "clips": item["clips"]}, PLAN)[r["clip"]]
            assert r["system"] == s.clips[r["clip"]]["system"] and (r["role"] == (s.clips[r["clip"]].get("role") or ""))
        elif r["test"] == "mos":
            assert int(r["value"]) == MOS_PLAN[r["system"]] and r["system"] == s.clips[r["clip"]]["system"]
        else:
            a, b = r["compared"].split("|")
            assert r["value"] == (a if MOS_PLAN[a] > MOS_PLAN[b] else b)
        assert r["time"].endswith("+00:00")
    out = tmp_path / "answers.csv"
    assert run_cli("listen", "export", str(mstudy), "--csv", "--out", str(out)).returncode == 0
    assert out.read_text() == proc.stdout
    assert run_cli("listen", "export", str(mstudy)).returncode == 2  # --csv is required


def test_progress_page_needs_the_admin_token(mstudy):
    s = load_study(mstudy)
    with live_server(mstudy, min_play=0, token="rater-token-1", admin_token="admin-token-1") as c:
        c.token = "rater-token-1"
        rid = answer_all(c, s, PLAN)
        other = c.call("POST", "/api/raters", {})[1]["rater"]
        for path in ("/progress", "/api/progress", "/progress?token=rater-token-1", "/api/progress?token=wrong"):
            assert c.raw("GET", path)[0] == 403, path
        status, data = c.call("GET", "/api/progress?token=admin-token-1")
        assert status == 200
        rows = {r["id"]: r for r in data["raters"]}
        total = len(s.manifest["items"])
        assert rows[rid]["answered"] == total and rows[rid]["finished"] and rows[rid]["rater"] == 1
        assert rows[other]["answered"] == 0 and not rows[other]["finished"]
        assert data["finished"] == 1 and data["answers"] == total
        assert {i["item"]: i["answers"] for i in data["items"]} == {i["id"]: 1 for i in s.manifest["items"]}
        status, page = c.raw("GET", "/progress?token=admin-token-1")
        assert status == 200 and b"2 raters started, 1 finished" in page and rid.encode() in page
    with live_server(mstudy, min_play=0) as c:  # no admin token: no progress page at all
        assert c.raw("GET", "/api/progress")[0] == 403 and c.raw("GET", "/api/progress?token=")[0] == 403


# --------------------------------------------------------------------------------------
# the simulated study of README.md
# --------------------------------------------------------------------------------------

SIM_TRUE = {"reference": 95.0, "lstm": 58.0, "markov": 54.0, "mid_anchor": 35.0, "anchor": 12.0}


def simulated_study(n_raters: int = 12, n_items: int = 8, seed: int = 29) -> tuple[Study, list[dict]]:
    """A MUSHRA study of two runs (lstm, markov) with known answers: score = true mean of the
    condition + rater effect (sd 5) + item effect (sd 6) + noise (sd 10), rounded and clipped to
    0-100; the hidden reference scores 100 minus |noise| (sd 4); rater 12 is careless (hidden
    reference near 70) and must be excluded by BS.1534-3 post-screening."""
    rng = np.random.default_rng(seed)
    clips, items = [], []
    for k in range(n_items):
        ids = {}
        for name in SIM_TRUE:
            cid = f"{len(clips):016x}"
            role = {"reference": "hidden_reference", "anchor": "low_anchor", "mid_anchor": "mid_anchor"}.get(name)
            clips.append({"id": cid, "system": name, "file": f"audio/{cid}.flac", **({"role": role} if role else {})})
            ids[name] = cid
        open_ref = f"{len(clips):016x}"
        clips.append({"id": open_ref, "system": "reference", "file": f"audio/{open_ref}.flac"})
        items.append({"id": f"{0xa000 + k:016x}", "kind": "mushra", "reference": open_ref, "clips": list(ids.values())})
    manifest = {"study_id": "0" * 16, "seed": 0, "settings": {}, "clips": clips, "items": items,
                "systems": [{"name": "lstm", "kind": "run"}, {"name": "markov", "kind": "run"},
                            {"name": "reference", "kind": "reference"}, {"name": "anchor", "kind": "anchor"},
                            {"name": "mid_anchor", "kind": "anchor"}]}
    study = Study(Path("simulated-study"), manifest)
    rater_fx = rng.normal(0, 5, n_raters)
    item_fx = rng.normal(0, 6, n_items)
    ratings = []
    for r in range(n_raters):
        for k, item in enumerate(items):
            scores = {}
            for cid in item["clips"]:
                name = study.clips[cid]["system"]
                if name == "reference":
                    v = 100 - abs(rng.normal(0, 4)) - (30 if r == n_raters - 1 else 0)
                else:
                    v = SIM_TRUE[name] + rater_fx[r] + item_fx[k] + rng.normal(0, 10)
                scores[cid] = int(np.clip(round(v), 0, 100))
            ratings.append({"rater": f"rater{r:02d}", "item": item["id"], "kind": "mushra", "score": None, "choice": None,
                            "created": float(r * 100 + k), "scores": scores})
    raters = [{"id": f"rater{r:02d}", "created": float(r), "expertise": None, "environment": "headphones"} for r in range(n_raters)]
    return study, [ratings, raters]


def simulated_table() -> str:
    study, (ratings, raters) = simulated_study()
    text = format_results(compute_results(study, ratings, raters, seed=0))
    return "\n".join(text.splitlines()[1:-1])  # without the study's path and the method line


def test_readme_shows_the_simulated_study():
    study, (ratings, raters) = simulated_study()
    res = compute_results(study, ratings, raters, seed=0)
    assert res["raters"]["excluded"] == 1 and res["raters"]["exclusions"][0]["rater"] == 12
    cond = res["mushra"]["conditions"]
    # the known answers: every condition's interval holds its true mean, the ranking is the true one
    for name, true in SIM_TRUE.items():
        if name != "reference":
            assert cond[name]["ci95"][0] <= true <= cond[name]["ci95"][1], name
    assert [n for n, _ in sorted(cond.items(), key=lambda kv: -kv[1]["mean"])] == list(SIM_TRUE)
    table = simulated_table()
    readme = (REPO / "README.md").read_text()
    assert table in readme, "README.md's simulated MUSHRA table is stale; run `python tests/test_listen_mushra.py`:\n" + table
    assert table in (REPO / "docs" / "listening.md").read_text()


if __name__ == "__main__":
    print(simulated_table())
