"""The studio in a real browser: Debian's headless chromium driven by Playwright.

The page loads, a MIDI file is uploaded, the model's actions are offered (continue and follow
chords for an LSTM over REMI with chords, nothing of MusicVAE's), Generate streams a
continuation that the page draws on the piano roll (the generated notes in their own colour)
and starts playing with its own synthesiser as the first note arrives; the page records the
time from the click to that first note (``studio.timing.latency``, docs/studio.md quotes it).
Then Keep, Regenerate, Undo, a played piece from the on-screen keyboard, and the download of the
MIDI, which must hold the piece and its continuation.

Skip rules exactly as tests/test_listen_browser.py: without chromium the test fails (CI installs
it) unless MUSICFW_SKIP_BROWSER_TESTS=1.  MUSICFW_STUDIO_SCREENSHOT=path.png keeps a screenshot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
import symusic

from test_listen import free_port
from test_listen_browser import CHROMIUM_ARGS, chromium
from test_studio import make_run, tune

TOKEN = "studio-browser-token"


def roll_colours(page) -> tuple[int, int]:
    """(pixels of the piece's colour, pixels of the generated colour) on the piano roll."""
    return tuple(page.evaluate("""() => {
        const c = document.getElementById('roll'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let a = 0, b = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i] === 0x5b && d[i+1] === 0x7f && d[i+2] === 0xb5) a++;
            if (d[i] === 0xe8 && d[i+1] === 0x89 && d[i+2] === 0x2b) b++;
        }
        return [a, b];
    }"""))


def start_studio(args: list[str], token: str) -> tuple[subprocess.Popen, str]:
    """``musicfw studio ARGS`` on a free port, once it answers: (the process, its address)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "musicfw.cli", "studio", *args, "--port", str(port), "--token", token],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read())
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/api/info", headers={"X-Studio-Token": token}), timeout=2):
                return proc, url
        except OSError:
            if time.time() > deadline:
                proc.terminate()
                raise AssertionError("the studio did not start") from None
            time.sleep(0.1)


@pytest.mark.slow
def test_studio_in_headless_chromium(tmp_path):
    exe = chromium()
    from playwright.sync_api import sync_playwright

    run = make_run(tmp_path / "runs")
    midi = tmp_path / "tune.mid"
    midi.write_bytes(tune(bars=4))
    proc, url = start_studio(["--run", str(run)], TOKEN)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS + ["--autoplay-policy=no-user-gesture-required"])
            try:
                page = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True,
                                           bypass_csp=True).new_page()  # the page's CSP forbids eval; Playwright's waits use it
                assert page.goto(url).status == 403  # no token, no page
                page.goto(f"{url}/?token={TOKEN}")
                page.wait_for_selector("body[data-ready='1']")
                offered = page.eval_on_selector_all("#action option", "os => os.map(o => o.value)")
                assert offered == ["continue", "chords"]
                assert page.is_disabled("#generate")  # nothing to continue yet
                page.set_input_files("#file", str(midi))
                page.wait_for_function("document.getElementById('generate').disabled === false")
                piece, generated = roll_colours(page)
                assert piece > 100 and generated == 0
                page.fill("#param-bars", "2")
                page.fill("#seed", "7")
                page.click("#generate")
                page.wait_for_function("document.getElementById('keep').disabled === false", timeout=20000)
                assert "done:" in page.inner_text("#status")
                piece, generated = roll_colours(page)
                assert piece > 100 and generated > 20
                timing = page.evaluate("window.studio.timing")
                assert timing.get("latency") is not None and timing["latency"] < 5000, timing
                print(f"\nclick to first note: {timing['latency']:.0f} ms")
                if os.environ.get("MUSICFW_STUDIO_SCREENSHOT"):
                    page.screenshot(path=os.environ["MUSICFW_STUDIO_SCREENSHOT"], full_page=True)
                first = page.evaluate("window.studio.pending.id")
                page.click("#regenerate")  # a new seed: another continuation of the same piece
                page.wait_for_function(f"window.studio.pending && window.studio.pending.id !== '{first}'", timeout=20000)
                page.click("#keep")
                assert page.evaluate("window.studio.history.length") == 2
                kept = page.evaluate("window.studio.history[1]")
                with page.expect_download() as dl:
                    page.click("#download")
                path = tmp_path / "download.mid"
                dl.value.save_as(str(path))
                score = symusic.Score(str(path))
                assert score.note_num() == len(kept["notes"]) > 16  # the 16 notes of the file and the continuation
                page.click("#undo")
                assert page.evaluate("window.studio.history.length") == 1
                # the on-screen keyboard: record three notes, use them as the piece
                page.click("#record")
                for pitch in (60, 64, 67):
                    key = page.locator(f".key[data-pitch='{pitch}']")
                    key.dispatch_event("pointerdown")
                    page.wait_for_timeout(80)
                    key.dispatch_event("pointerup")
                page.click("#use-played")
                page.wait_for_function("window.studio.history.length === 2")
                played = page.evaluate("window.studio.history[1].notes.map(n => n[2])")
                assert played == [60, 64, 67]
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
