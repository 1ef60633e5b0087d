"""The listening test in a real browser: Debian's headless chromium driven by Playwright.

Two raters answer every MOS and A/B item of a small study through the page, the server is
killed (SIGKILL) and restarted while the first rater is halfway, the first rater resumes (from
the page's address, in a fresh browser profile), and
``musicfw listen results`` must count every answer exactly once and give the MOS the answers
imply.

Playing: the page enables the answer buttons only after the clip has played for the study's
minimum play time (1 s here), measured from the audio element's ``played`` ranges.  Headless
chromium really plays the FLAC clips (muted with --mute-audio; the media clock advances in
real time), so the test waits that second for each clip exactly as a rater would; nothing is
faked.

Without chromium the test fails (CI installs it) unless MUSICFW_SKIP_BROWSER_TESTS=1.
Set MUSICFW_LISTEN_SCREENSHOT=path.png to keep the screenshot of a MOS page (docs/listening.png
was made that way), MUSICFW_MUSHRA_SCREENSHOT=path.png for the MUSHRA page (docs/mushra.png).

``test_mushra_study_in_headless_chromium`` drives a MUSHRA study (issue 29) the same way: the
training page, every condition played for the minimum time, seek and loop, the sliders; the
server is SIGKILLed after the first item and the rater resumes; a second rater scores the
hidden reference below 90 and must be excluded by BS.1534-3 post-screening, with the reason in
``listen results``; ``listen export --csv`` must hold every slider once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import TEST_MIDI, run_cli
from test_listen import SYSTEM_NAMES, free_port, make_run
from test_listen_mushra import mushra_scores

from musicfw.plugins.listen.study import load_study

TOKEN = "rater-link-token"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--mute-audio",
]
PLANS = [
    {"runA": 2, "runB": 3, "reference": 4, "anchor": 1},
    {"runA": 1, "runB": 3, "reference": 3, "anchor": 2},
]


def chromium() -> str:
    for name in (os.environ.get("MUSICFW_CHROMIUM", ""), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    if os.environ.get("MUSICFW_SKIP_BROWSER_TESTS") == "1":
        pytest.skip("no chromium and MUSICFW_SKIP_BROWSER_TESTS=1")
    pytest.fail("The listening browser test needs Debian's chromium (apt-get install -y chromium), "
                "or MUSICFW_SKIP_BROWSER_TESTS=1 to skip it.")


class Server:
    def __init__(self, study: Path, port: int):
        self.study, self.port, self.proc = study, port, None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "musicfw.cli", "listen", "serve", str(self.study), "--port", str(self.port), "--token", TOKEN],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                with urllib.request.urlopen(f"{self.url}/api/study?token={TOKEN}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the server did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)  # no shutdown handler runs: nothing may be lost
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str) -> dict:
        req = urllib.request.Request(f"{self.url}{path}", headers={"X-Study-Token": TOKEN})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())


def planned_score(study, plan, clip) -> int:
    system = study.clips[clip]["system"]
    ids = [c["id"] for c in study.manifest["clips"] if c["system"] == system]
    return plan[system] + ids.index(clip)


def no_system_named(page) -> None:
    html = page.content()
    for name in SYSTEM_NAMES:
        assert not re.search(rf"\b{name}\b", html), name


def answer(page, server, study, plan, count, screenshot=None) -> int:
    """Answer ``count`` items (or all that are left) on the page; returns how many."""
    done = 0
    while done < count:
        page.wait_for_selector("#progress, #done")
        if page.query_selector("#done"):
            break
        rater = page.evaluate("Object.entries(localStorage).find(([k]) => k.startsWith('musicfw-listen:'))[1]")
        nxt = server.api(f"/api/raters/{rater}/next")  # what the page shows: the same item, same order
        item = nxt["item"]
        position = nxt["position"]
        assert page.inner_text("#progress") == f"Item {position} of {nxt['total']}"
        no_system_named(page)
        if item["kind"] == "mos":
            buttons = page.locator("button.score")
            assert buttons.count() == 5 and all(buttons.nth(i).is_disabled() for i in range(5))
            t0 = time.time()
            page.click("button.play")
            score = planned_score(study, plan, item["clips"][0])
            target = page.locator(f"button.score[data-score='{score}']")
            target.wait_for(state="visible")
            page.wait_for_function("document.querySelector(\"button.score\").disabled === false", timeout=30000)
            assert time.time() - t0 >= 0.9  # enabled only after the minimum play time (1 s)
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
                screenshot = None
            target.click()
        else:
            a, b = item["clips"]
            pa, pb = plan[study.clips[a]["system"]], plan[study.clips[b]["system"]]
            key = "A" if pa > pb else "B" if pb > pa else "none"
            assert page.locator("button.choice").nth(0).is_disabled()
            page.click("button.play[data-label='A']")
            page.wait_for_function("document.querySelector('.heard').textContent === 'listened'", timeout=30000)
            assert page.locator("button.choice").nth(0).is_disabled()  # B not heard yet
            page.click("button.play[data-label='B']")
            page.click(f"button.choice[data-choice='{key}']")  # waits until enabled
        # the answer is stored when the page moves on
        page.wait_for_function(
            f"(document.querySelector('#progress') && document.querySelector('#progress').textContent !== 'Item {position} of {nxt['total']}') "
            "|| document.querySelector('#done') !== null", timeout=30000)
        done += 1
    return done


@pytest.mark.slow
def test_two_raters_in_headless_chromium(tmp_path):
    exe = chromium()
    from playwright.sync_api import sync_playwright

    run_a = make_run(tmp_path / "runA", 4, 10)
    run_b = make_run(tmp_path / "runB", 3, 20)
    out = tmp_path / "study"
    proc = run_cli("listen", "create", "--run", str(run_a), "--run", str(run_b), "--reference", str(TEST_MIDI / "one_track"),
                   "--clips", "2", "--seconds", "4", "--min-play", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    study = load_study(out)
    total = len(study.manifest["items"])
    assert total == 13
    server = Server(out, free_port())
    server.start()
    shot = tmp_path / "mos.png"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            try:
                # rater 1: half the items, the server killed, restarted, the rater resumes
                page = browser.new_context().new_page()
                page.goto(f"{server.url}/?token={TOKEN}")
                page.select_option("#expertise", "amateur")
                no_system_named(page)
                page.click("#start")
                page.click("#begin")  # the training page (a reference clip and its anchor)
                half = total // 2
                assert answer(page, server, study, PLANS[0], half) == half
                server.kill()
                server.start()
                # resume from the page's address in a fresh browser profile (no localStorage)
                address = page.url
                assert re.search(r"[?&]rater=[0-9a-f]{16}", address)
                page.context.close()
                page = browser.new_context().new_page()
                page.goto(address)
                assert page.inner_text("#start") == "Continue"
                page.click("#start")
                page.wait_for_selector("#progress")
                assert page.inner_text("#progress") == f"Item {half + 1} of {total}"
                assert answer(page, server, study, PLANS[0], total) == total - half
                page.wait_for_selector("#done")
                # rater 2: a fresh browser profile, everything
                page2 = browser.new_context().new_page()
                page2.goto(f"{server.url}/?token={TOKEN}")
                page2.click("#start")
                page2.click("#begin")
                assert answer(page2, server, study, PLANS[1], total, screenshot=shot) == total
                page2.wait_for_selector("#done")
                # a link without the token gets nothing
                bare = browser.new_context().new_page()
                assert bare.goto(server.url).status == 403
            finally:
                browser.close()
    finally:
        server.stop()

    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape[0] > 200 and img.std() > 5  # not blank
    if os.environ.get("MUSICFW_LISTEN_SCREENSHOT"):
        shutil.copy(shot, os.environ["MUSICFW_LISTEN_SCREENSHOT"])

    proc = run_cli("listen", "results", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["raters"] == {**res["raters"], "answered": 2, "included": 2, "failed_attention": 0}
    assert res["raters"]["expertise"] == {"amateur": 1, "not given": 1}
    n_mos = sum(1 for i in study.manifest["items"] if i["kind"] == "mos")
    assert res["ratings"] == {"mos": 2 * n_mos, "ab": 2 * (total - n_mos), "all_including_excluded": 2 * total}
    for system in SYSTEM_NAMES:
        clips = [c["id"] for c in study.manifest["clips"] if c["system"] == system and "role" not in c]  # not the training copies
        expected = np.mean([planned_score(study, plan, c) for plan in PLANS for c in clips])
        assert res["mos"][system]["mos"] == pytest.approx(expected, abs=1e-4), system
        assert res["mos"][system]["n_ratings"] == 2 * len(clips)
    # A/B: runB beats runA for both raters; runB vs reference is a win for reference, then a tie
    pairs = {(r["a"], r["b"]): r for r in res["ab"]["pairs"]}
    assert (pairs[("runA", "runB")]["wins_b"], pairs[("runA", "runB")]["n"]) == (4, 4)
    assert (pairs[("runB", "reference")]["wins_b"], pairs[("runB", "reference")]["ties"]) == (2, 2)
    metrics = json.loads((run_a / "metrics.json").read_text())
    assert metrics["listening"]["n_raters"] == 2


MUSHRA_PLANS = [
    {"reference": 95, "runA": 60, "runB": 40, "mid_anchor": 30, "anchor": 10},
    {"reference": 60, "runA": 50, "runB": 50, "mid_anchor": 50, "anchor": 50},  # careless: hidden reference at 60
]


def set_slider(page, index: int, value: int) -> None:
    page.evaluate("([i, v]) => { const s = document.querySelector(`input.mushra[data-index='${i}']`); "
                  "s.value = String(v); s.dispatchEvent(new Event('input', {bubbles: true})); }", [index, value])


def clock(page) -> float:
    return float(page.inner_text("#clock").split()[0])


def answer_mushra(page, server, study, plan, count, screenshot=None, transport=False) -> int:
    done = 0
    letters = "ABCDEFGHIJ"
    while done < count:
        page.wait_for_selector("#progress, #done")
        if page.query_selector("#done"):
            break
        rater = page.evaluate("Object.entries(localStorage).find(([k]) => k.startsWith('musicfw-listen:'))[1]")
        nxt = server.api(f"/api/raters/{rater}/next")
        item, position = nxt["item"], nxt["position"]
        assert item["kind"] == "mushra"
        page.wait_for_selector("#mushra")
        assert page.inner_text("#progress") == f"Item {position} of {nxt['total']}"
        no_system_named(page)
        for name in ("mid_anchor", "hidden_reference", "low_anchor"):
            assert name not in page.content()
        assert page.locator("input.mushra").count() == len(item["clips"]) == 5
        assert page.locator("#submit").is_disabled()
        if transport:  # seek and loop within a clip
            length = study.clips[item["clips"][0]]["audio_seconds"]
            page.click("button.play[data-label='A']")
            page.wait_for_function("parseFloat(document.querySelector('#clock').textContent) > 0.2", timeout=30000)
            page.evaluate("() => { const s = document.querySelector('#seek'); s.value = '500'; "
                          "s.dispatchEvent(new Event('input', {bubbles: true})); }")
            page.wait_for_timeout(300)
            assert length * 0.45 <= clock(page) <= length * 0.5 + 1.0, (clock(page), length)
            assert page.is_checked("#loop")
            page.evaluate("() => { const s = document.querySelector('#seek'); s.value = '960'; "
                          "s.dispatchEvent(new Event('input', {bubbles: true})); }")
            page.wait_for_timeout(1500)  # past the end: looping starts again from 0
            assert clock(page) < length * 0.5, clock(page)
            assert page.locator("button.play[data-label='A']").inner_text().startswith("❚❚")  # still playing
            page.click("button.play[data-label='A']")  # pause
        scores = mushra_scores(study, item, plan)
        for i, clip in enumerate(item["clips"]):
            page.click(f"button.play[data-label='{letters[i]}']")
            page.wait_for_function(f"document.querySelector(\".mushra-row[data-index='{i}'] .heard\").textContent === 'listened'",
                                   timeout=30000)
            set_slider(page, i, scores[clip])
        page.click("button.play[data-label='Reference']")  # the open reference plays too (optional)
        page.wait_for_function("document.querySelector('#submit').disabled === false", timeout=30000)
        if screenshot is not None:
            page.click("button.play[data-label='B']")
            page.wait_for_timeout(600)
            page.screenshot(path=str(screenshot), full_page=True)
            screenshot = None
        page.click("#submit")
        page.wait_for_function(
            f"(document.querySelector('#progress') && document.querySelector('#progress').textContent !== 'Item {position} of {nxt['total']}') "
            "|| document.querySelector('#done') !== null", timeout=30000)
        done += 1
    return done


@pytest.mark.slow
def test_mushra_study_in_headless_chromium(tmp_path):
    import csv
    import io

    exe = chromium()
    from playwright.sync_api import sync_playwright

    run_a = make_run(tmp_path / "runA", 4, 10)
    run_b = make_run(tmp_path / "runB", 3, 20)
    out = tmp_path / "study"
    proc = run_cli("listen", "create", "--run", str(run_a), "--run", str(run_b), "--reference", str(TEST_MIDI / "one_track"),
                   "--tests", "mushra", "--repeats", "1", "--clips", "2", "--seconds", "4", "--min-play", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    study = load_study(out)
    total = len(study.manifest["items"])
    assert total == 3 and {i["kind"] for i in study.manifest["items"]} == {"mushra"}
    server = Server(out, free_port())
    server.start()
    shot = tmp_path / "mushra.png"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 860, "height": 760}).new_page()
                page.goto(f"{server.url}/?token={TOKEN}")
                page.select_option("#environment", "headphones")
                page.click("#start")
                page.wait_for_selector("#training")
                assert page.locator("#training button.play").count() == 3
                no_system_named(page)
                page.click("#training button.play[data-training='1']")
                page.click("#begin")
                assert answer_mushra(page, server, study, MUSHRA_PLANS[0], 1, screenshot=shot, transport=True) == 1
                server.kill()
                server.start()
                address = page.url
                page.context.close()
                page = browser.new_context().new_page()
                page.goto(address)
                page.click("#start")  # "Continue"
                page.wait_for_selector("#progress")
                assert page.inner_text("#progress") == f"Item 2 of {total}"
                assert answer_mushra(page, server, study, MUSHRA_PLANS[0], total) == total - 1
                page.wait_for_selector("#done")
                page2 = browser.new_context().new_page()
                page2.goto(f"{server.url}/?token={TOKEN}")
                page2.select_option("#environment", "headphones")
                page2.click("#start")
                page2.click("#begin")
                assert answer_mushra(page2, server, study, MUSHRA_PLANS[1], total) == total
                page2.wait_for_selector("#done")
            finally:
                browser.close()
    finally:
        server.stop()

    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape[0] > 300 and img.std() > 5
    if os.environ.get("MUSICFW_MUSHRA_SCREENSHOT"):
        shutil.copy(shot, os.environ["MUSICFW_MUSHRA_SCREENSHOT"])

    proc = run_cli("listen", "results", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    r = res["raters"]
    assert (r["answered"], r["included"], r["excluded"]) == (2, 1, 1)
    assert r["exclusions"] == [{"rater": 2, "reasons": [
        "MUSHRA post-screening (BS.1534-3): scored the hidden reference below 90 on 2 of 2 items (100% > 15%)"]}]
    assert res["ratings"] == {**res["ratings"], "mushra": 2, "repeats": 1, "all_including_excluded": 2 * total}
    for name, v in MUSHRA_PLANS[0].items():  # rater 1's answers: plan + 2 x item index
        assert res["mushra"]["conditions"][name]["mean"] == pytest.approx(v + 1.0), name
    assert res["consistency"]["raters"][0]["mushra_mean_abs_diff"] == 0
    proc = run_cli("listen", "export", str(out), "--csv")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 2 * total * 5 and {r["excluded"] != "" for r in rows if r["rater"] == "2"} == {True}
    assert json.loads((run_a / "metrics.json").read_text())["listening"]["mushra"] == pytest.approx(61.0)
