"""report.html: self-contained, opened in a real headless browser (Debian's chromium).

The browser test loads a byte-for-byte copy of the report with one probe script appended
that records, after the page has loaded, every image's decoded size and every audio
player's decoded duration; ``--dump-dom`` returns the page with the probe's JSON.

Without chromium the browser tests fail (CI installs it) unless MUSICFW_SKIP_BROWSER_TESTS=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import symusic

from musicfw.engine.evaluation import compare_folders, write_metrics
from musicfw.engine.report import render_report, write_report

PROBE = """
<script>
window.addEventListener('load', async () => {
  const imgs = [...document.querySelectorAll('img')].map(i => {
    const r = i.getBoundingClientRect();
    return {alt: i.alt, natural: [i.naturalWidth, i.naturalHeight], box: [r.width, r.height]};
  });
  const audios = await Promise.all([...document.querySelectorAll('audio')].map(a =>
    new Promise(resolve => {
      const done = () => resolve({duration: a.duration, error: a.error ? a.error.code : null,
                                  box: [a.getBoundingClientRect().width, a.getBoundingClientRect().height]});
      if (a.readyState >= 1) done();
      a.addEventListener('loadedmetadata', done);
      a.addEventListener('error', done);
      a.load();
    })));
  const pre = document.createElement('pre');
  pre.id = 'musicfw-probe';
  pre.textContent = JSON.stringify({imgs, audios});
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str:
    for name in (os.environ.get("MUSICFW_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    if os.environ.get("MUSICFW_SKIP_BROWSER_TESTS") == "1":
        pytest.skip("no chromium and MUSICFW_SKIP_BROWSER_TESTS=1")
    pytest.fail(
        "The report browser test needs Debian's chromium (apt-get install -y chromium) or "
        "MUSICFW_CHROMIUM=/path/to/chrome; set MUSICFW_SKIP_BROWSER_TESTS=1 to skip it."
    )


def browser(*args, tmp_path, timeout=180):
    exe = chromium()
    cmd = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--mute-audio", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def piece(seed, n=24):
    rng = np.random.default_rng(seed)
    score = symusic.Score(480)
    track = symusic.Track(name="melody")
    for i, p in enumerate(rng.integers(55, 80, n)):
        track.notes.append(symusic.Note(i * 240, int(rng.choice([120, 240, 480])), int(p), 80))
    score.tracks.append(track)
    return score


def sine_wav(path, seconds=1.0, rate=22050):
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)


@pytest.fixture
def full_run(tmp_path):
    """A run folder with everything: config, history, metrics, samples (png, wav, neither)."""
    run = tmp_path / "run"
    samples = run / "samples"
    samples.mkdir(parents=True)
    ref = tmp_path / "ref"
    ref.mkdir()
    for i in range(6):
        piece(100 + i).dump_midi(str(ref / f"ref_{i}.mid"))
    for i in range(3):
        piece(i).dump_midi(str(samples / f"sample_{i:03d}.mid"))
    (run / "config.yaml").write_text("name: report-test\nseed: 0\nmodel: {name: lstm, hidden_size: 64}\n")
    with open(run / "history.jsonl", "w") as f:
        for step in range(0, 100, 10):
            f.write(json.dumps({"step": step, "epoch": step // 50, "train_loss": 3.0 / (1 + step)}) + "\n")
        f.write(json.dumps({"step": 99, "epoch": 1, "val_loss": 1.2, "val_perplexity": 3.3}) + "\n")
        f.write("{not json\n")  # a torn last line must not break the report
    metrics = compare_folders(samples, ref)
    metrics["training"] = {"train_seconds": 12.5}
    metrics["likelihood"] = {"nll": {"split": "test", "nll_per_token": 1.2, "perplexity": 3.32}}
    write_metrics(metrics, run / "metrics.json")
    # sample 0 has its own piano roll png; samples 0 and 1 have audio; 2 has neither
    from PIL import Image

    Image.new("RGB", (300, 100), (200, 220, 255)).save(samples / "sample_000.png")
    sine_wav(samples / "sample_000.wav", 1.0)
    sine_wav(samples / "sample_001.wav", 2.0)
    return run


def test_report_is_self_contained(full_run):
    path = write_report(full_run)
    assert path == full_run / "report.html"
    page = path.read_text()
    # every src is embedded data: nothing to fetch; an href is an in-page anchor or a link to
    # a sample file next to the page (samples/*.mid, *.wav: downloads, not page resources)
    srcs = re.findall(r'src\s*=\s*"([^"]*)"', page)
    assert srcs and all(r.startswith("data:") for r in srcs), [r[:40] for r in srcs]
    hrefs = re.findall(r'href\s*=\s*"([^"]*)"', page)
    files = [h for h in hrefs if not h.startswith(("data:", "#"))]
    assert all(h.startswith("samples/") and (full_run / h).is_file() for h in files), files
    assert "samples/sample_000.mid" in files and "samples/sample_001.wav" in files
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "report-test" in page and "hidden_size: 64" in page  # the config
    assert page.count("<audio") == 2
    assert "No audio for this sample." in page
    assert "train_seconds" in page and "pitch_class_histogram" in page and "perplexity" in page


def test_report_says_what_is_missing(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "config.yaml").write_text("name: bare\n")
    page = write_report(run).read_text()
    assert "No training curves" in page
    assert "metrics.json was not found" in page
    assert "No samples folder" in page
    samples = run / "samples"
    samples.mkdir()
    piece(0).dump_midi(str(samples / "sample_000.mid"))
    page = render_report(run)
    assert "No audio was rendered" in page and page.count("<img") == 1


def test_report_in_headless_chromium(full_run, tmp_path):
    chromium()  # fail early with the install hint
    page = write_report(full_run).read_text()
    probe = full_run / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    proc = browser("--virtual-time-budget=20000", "--dump-dom", probe.as_uri(), tmp_path=tmp_path)
    match = re.search(r'<pre id="musicfw-probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"the probe did not run: rc={proc.returncode} stderr={proc.stderr[-2000:]}"
    result = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    imgs = result["imgs"]
    # curves, value densities, distance densities, three piano rolls
    assert len(imgs) == 6, imgs
    for img in imgs:
        assert img["natural"][0] > 0 and img["natural"][1] > 0, img  # the data URI decoded
        assert img["box"][0] > 0 and img["box"][1] > 0, img  # and it is laid out visibly
    audios = result["audios"]
    assert len(audios) == 2
    assert [round(a["duration"], 1) for a in audios] == [1.0, 2.0], audios
    assert all(a["error"] is None and a["box"][0] > 0 for a in audios)


def test_report_screenshot_is_not_blank(full_run, tmp_path):
    chromium()
    path = write_report(full_run)
    shot = tmp_path / "shot.png"
    proc = browser("--window-size=1200,2400", f"--screenshot={shot}", path.as_uri(), tmp_path=tmp_path)
    assert shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape[0] >= 2000 and pixels.std() > 10  # text, tables and figures drawn
