"""Infill and harmonise in the studio page, in Debian's headless chromium driven by Playwright
(skip rules as tests/test_studio_browser.py).

The studio serves two tiny untrained runs: one trained to infill (REMI with the infill markers)
and one on the ``tracks`` tokenizer.  With the infill model the page offers continue and infill
(not harmonise); a drag across the piano roll selects bars 2-3 (shaded, and the ``bars`` field
says so); Generate streams the filled bars, drawn in the generated colour, and the result keeps
the piece's notes outside the bars.  With the tracks model the page offers harmonise (not
infill), and Generate adds the written voices, marked generated.
"""

from __future__ import annotations

import pytest

from conftest import untrained_infill_run
from test_listen_browser import CHROMIUM_ARGS, chromium
from test_studio import make_run, tune
from test_studio_browser import roll_colours, start_studio

TOKEN = "studio-fill-browser-token"


def shaded(page) -> int:
    """Pixels of the selected bars' shade on the piano roll."""
    return page.evaluate("""() => {
        const c = document.getElementById('roll'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] === 0xfb && d[i+1] === 0xe3 && d[i+2] === 0xc8) n++;
        return n;
    }""")


@pytest.mark.slow
def test_infill_and_harmonize_in_headless_chromium(tmp_path):
    exe = chromium()
    from playwright.sync_api import sync_playwright

    runs = tmp_path / "runs"
    infill = untrained_infill_run(runs, "infill", {"name": "remi"}, infill=True)
    tracks = make_run(tmp_path / "other", tokenizer={"name": "tracks"})
    midi = tmp_path / "tune.mid"
    midi.write_bytes(tune(bars=4))
    melody = tmp_path / "melody.mid"
    melody.write_bytes(tune(bars=2))
    proc, url = start_studio(["--run", str(infill), "--runs", str(tracks.parent)], TOKEN)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS + ["--autoplay-policy=no-user-gesture-required"])
            try:
                page = browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True).new_page()
                page.goto(f"{url}/?token={TOKEN}")
                page.wait_for_selector("body[data-ready='1']")
                assert page.eval_on_selector_all("#action option", "os => os.map(o => o.value)") == ["continue", "infill"]
                page.select_option("#action", "infill")
                page.set_input_files("#file", str(midi))
                page.wait_for_function("document.getElementById('generate').disabled === false")
                before = page.evaluate("window.studio.history[window.studio.history.length - 1].notes")
                # drag from inside bar 2 to inside bar 3 (the piece is 4 bars of 2 s)
                box = page.locator("#roll").bounding_box()
                y = box["y"] + box["height"] / 2
                page.mouse.move(box["x"] + 0.3 * box["width"], y)
                page.mouse.down()
                page.mouse.move(box["x"] + 0.55 * box["width"], y, steps=4)
                page.mouse.move(box["x"] + 0.7 * box["width"], y, steps=4)
                page.mouse.up()
                assert page.input_value("#param-bars") == "2-3"
                assert shaded(page) > 1000
                page.fill("#seed", "1")  # an untrained model: this seed writes notes (3 draws two empty bars)
                page.click("#generate")
                try:
                    page.wait_for_function("document.getElementById('keep').disabled === false", timeout=30000)
                except Exception:
                    raise AssertionError(page.inner_text("#status"))
                assert "done:" in page.inner_text("#status")
                piece, generated = roll_colours(page)
                assert piece > 50 and generated > 10
                result = page.evaluate("window.studio.pending")
                assert result["label"].endswith("bars 2-3 filled")
                assert all(2.0 <= n[0] < 6.0 for n in result["notes"] if n[5])
                assert [n[:4] for n in result["notes"] if not n[5]] == [n[:4] for n in before if not 2.0 <= n[0] < 6.0]
                page.click("#keep")
                # the tracks model: harmonise is offered, infill is not
                page.select_option("#model", f"run:{tracks.name}")
                page.wait_for_function("Array.from(document.querySelectorAll('#action option')).some(o => o.value === 'harmonize')")
                offered = page.eval_on_selector_all("#action option", "os => os.map(o => o.value)")
                assert "infill" not in offered
                page.select_option("#action", "harmonize")
                assert shaded(page) == 0  # no bar range for this action
                page.set_input_files("#file", str(melody))  # a one-track melody: the soprano
                page.wait_for_function("window.studio.history.length === 3")
                page.click("#generate")
                try:
                    page.wait_for_function("window.studio.pending && window.studio.pending.label.includes('harmonised')",
                                           timeout=30000)
                except Exception:
                    raise AssertionError(page.inner_text("#status"))
                harmonised = page.evaluate("window.studio.pending")
                assert len(harmonised["generated_tracks"]) == 3 and any(n[5] for n in harmonised["notes"])
                assert roll_colours(page)[1] > 10
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
