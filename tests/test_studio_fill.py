"""The studio's ``infill`` and ``harmonize`` actions through the HTTP/JSON API (Starlette's
TestClient) on tiny untrained runs: offered only for the models trained for them, streamed,
cancellable, and the result marked (the generated notes in their own tracks, the piece's own
notes outside the bars unchanged).  The browser test is tests/test_studio_browser.py."""

from __future__ import annotations

import re
import threading
import time

import pytest

from conftest import untrained_infill_run
from test_loading import soprano
from test_studio import TOKEN, events, make_run, tune, upload


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from starlette.testclient import TestClient

    from musicfw.core.plugins import load_registries
    from musicfw.plugins.studio.catalog import Catalog, run_entry
    from musicfw.plugins.studio.server import create_app

    root = tmp_path_factory.mktemp("studio-fill")
    entries = [run_entry(untrained_infill_run(root, "infill", {"name": "remi"}, infill=True), id="infill"),
               run_entry(untrained_infill_run(root, "plain", {"name": "remi"}, infill=False), id="plain"),
               run_entry(make_run(root / "tracks", tokenizer={"name": "tracks"}), id="tracks")]
    app = create_app(Catalog(load_registries(), entries), TOKEN, sessions_root=root / "sessions")
    with TestClient(app, base_url="http://127.0.0.1:8765", headers={"X-Studio-Token": TOKEN}) as c:
        c.studio = app
        yield c


def _piece(client, bars=4):
    sid = client.post("/api/sessions").json()["session"]
    return sid, upload(client, sid, tune(bars=bars)).json()


def test_each_action_is_offered_only_for_the_models_trained_for_it(client):
    info = {a["name"]: a for a in client.get("/api/info").json()["actions"]}
    assert info["infill"]["bar_range"] == "bars" and info["harmonize"]["bar_range"] is None
    assert info["infill"]["streams"] and info["harmonize"]["streams"]
    offered = {m: client.post(f"/api/models/{m}/load").json() for m in ("infill", "plain", "tracks")}
    assert offered["infill"]["actions"] == ["continue", "infill"] and offered["infill"]["supports"]["infill"]
    assert offered["plain"]["actions"] == ["continue"]
    assert offered["tracks"]["actions"] == ["continue", "harmonize"] and offered["tracks"]["supports"]["harmonize"]
    sid, p = _piece(client)
    for model, action in (("plain", "infill"), ("infill", "harmonize")):
        r = client.post("/api/generate", json={"session": sid, "model": model, "action": action, "pieces": {"piece": p["id"]}})
        assert r.status_code == 422 and f"cannot {action!r}" in r.json()["error"]


def test_infill_streams_and_keeps_the_notes_outside_the_bars(client):
    sid, p = _piece(client)
    assert p["bars"] == [0.0, 2.0, 4.0, 6.0]  # bar lines (seconds) for the page to draw and select
    r = client.post("/api/generate", json={"session": sid, "model": "infill", "action": "infill", "seed": 0,
                                           "pieces": {"piece": p["id"]}, "params": {"bars": "2-3"}, "stream": True})
    evs = events(r)
    kinds = [e["type"] for e in evs]
    assert kinds[0] == "job" and kinds[-1] == "done" and kinds.count("notes") >= 2, kinds
    done = evs[-1]
    piece = done["piece"]
    assert done["stats"]["bars"] == [2, 3] and done["stats"]["song_bars"] == 4
    generated = [n for n in piece["notes"] if n[5]]
    kept = [n for n in piece["notes"] if not n[5]]
    assert generated and all(2.0 <= n[0] < 6.0 for n in generated)
    original = p["notes"]
    assert [n[:4] for n in kept] == [n[:4] for n in original if not 2.0 <= n[0] < 6.0]
    assert [n[:4] for n in evs[-2]["notes"]] == [n[:4] for n in generated]  # the last stream event: the result's notes
    again = client.post("/api/generate", json={"session": sid, "model": "infill", "action": "infill", "seed": 0,
                                               "pieces": {"piece": p["id"]}, "params": {"bars": "2-3"}}).json()
    assert again["piece"]["notes"] == piece["notes"]  # one seed, one result
    for bars, message in (("5-6", "outside .*which has 4 bars"), ("3-2", "empty range")):
        r = client.post("/api/generate", json={"session": sid, "model": "infill", "action": "infill",
                                               "pieces": {"piece": p["id"]}, "params": {"bars": bars}})
        assert r.status_code == 422
        assert re.search(message, r.json()["error"]), r.json()


def test_harmonize_adds_the_voices_as_marked_tracks(client):
    sid = client.post("/api/sessions").json()["session"]
    p = upload(client, sid, soprano(), name="melody.mid").json()
    r = client.post("/api/generate", json={"session": sid, "model": "tracks", "action": "harmonize", "seed": 1,
                                           "pieces": {"piece": p["id"]}, "params": {"voices": "tenor,bass"},
                                           "stream": True})
    evs = events(r)
    assert evs[-1]["type"] == "done" and "notes" in [e["type"] for e in evs], evs[-1]
    piece = evs[-1]["piece"]
    assert piece["generated_tracks"] == [1, 2] and evs[-1]["stats"]["voices"] == ["tenor", "bass"]
    assert [n[:4] for n in piece["notes"] if not n[5]] == [n[:4] for n in p["notes"]]  # the melody unchanged
    assert any(n[5] for n in piece["notes"])
    bad = client.post("/api/generate", json={"session": sid, "model": "tracks", "action": "harmonize",
                                             "pieces": {"piece": p["id"]}, "params": {"voices": "descant"}})
    assert bad.status_code == 422 and "descant" in bad.json()["error"]
    # the controls reach harmonize: a model trained without them refuses them by name
    bad = client.post("/api/generate", json={"session": sid, "model": "tracks", "action": "harmonize",
                                             "pieces": {"piece": p["id"]}, "params": {"controls": "density=1"}})
    assert bad.status_code == 422 and "no control tokens" in bad.json()["error"]


@pytest.mark.parametrize("action, params", [("infill", {"bars": "1-4", "max_tokens": 8192}), ("harmonize", {})])
def test_cancel_stops_infill_and_harmonize_at_once(client, monkeypatch, action, params):
    """A slow model (each step sleeps) is cancelled mid-decoding: the job ends within a step."""
    from musicfw.plugins.studio import actions

    seen = []
    real_step = actions.Watched.step

    def slow_step(self, x, state):
        time.sleep(0.01)
        seen.append(1)
        return real_step(self, x, state)

    monkeypatch.setattr(actions.Watched, "step", slow_step)
    model = "infill" if action == "infill" else "tracks"
    sid, p = _piece(client, bars=4)
    result = {}

    def consume():
        result["r"] = client.post("/api/generate", json={"session": sid, "model": model, "action": action,
                                                         "pieces": {"piece": p["id"]}, "params": params})

    thread = threading.Thread(target=consume)
    thread.start()
    deadline = time.time() + 30
    while len(seen) < 20:
        assert time.time() < deadline, "the job did not start"
        time.sleep(0.01)
    job = next(j for j in client.studio.jobs._jobs.values() if j.action == action and j.state == "running")
    t0 = time.perf_counter()
    state = client.post(f"/api/jobs/{job.id}/cancel").json()
    thread.join(10)
    assert state["state"] == "cancelled" and not state["alive"] and time.perf_counter() - t0 < 2.0
    assert result["r"].status_code == 409
    steps = len(seen)
    time.sleep(0.1)
    assert len(seen) == steps  # nothing runs on


def test_fill_tokens_prefill_draws_what_the_step_loop_draws(tmp_path):
    """The studio reads an infilling prompt in one prefill pass; greedy decoding gives the same bars."""
    import numpy as np

    from musicfw.engine.generation import build_sampler_chain
    from musicfw.engine.infill import fill_tokens, prepare_song
    from musicfw.engine.loading import load

    loaded = load(run=untrained_infill_run(tmp_path, "infill", {"name": "remi"}, infill=True))
    _, _, tokens, first, k, _ = prepare_song(loaded.tokenizer, symusic_score(tune(bars=4)), "2-3")
    greedy = build_sampler_chain({"name": "greedy"})
    a, b = (fill_tokens(loaded.model, loaded.tokenizer, greedy, tokens, first, k, seed=0, prefill=p) for p in (False, True))
    np.testing.assert_array_equal(a.filled[0], b.filled[0])
    assert len(a.filled[0]) >= 2


def symusic_score(data: bytes):
    import symusic

    return symusic.Score.from_midi(data)


def test_harmonize_passes_forbid_parallels_and_pitch_temperature(client, monkeypatch):
    """The studio offers the two decoding options of ``musicfw harmonize`` (a checkbox and a
    number) and hands them to :func:`harmonize`; wrong types and out-of-range values are refused
    by name before anything runs."""
    from musicfw.plugins.harmonize import harmonize as module

    info = client.get("/api/info").json()
    params = {p["name"]: p for a in info["actions"] if a["name"] == "harmonize" for p in a["params"]}
    assert params["forbid_parallels"]["type"] == "bool" and params["forbid_parallels"]["default"] is False
    assert params["pitch_temperature"]["default"] == 1.0
    seen = []
    real = module.harmonize

    def spy(*args, **kwargs):
        seen.append({k: kwargs[k] for k in ("forbid_parallels", "pitch_temperature")})
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "harmonize", spy)
    sid = client.post("/api/sessions").json()["session"]
    p = upload(client, sid, soprano(), name="melody.mid").json()
    for params_sent, expect in (({}, {"forbid_parallels": False, "pitch_temperature": 1.0}),
                                ({"forbid_parallels": True, "pitch_temperature": 0.5},
                                 {"forbid_parallels": True, "pitch_temperature": 0.5})):
        r = client.post("/api/generate", json={"session": sid, "model": "tracks", "action": "harmonize", "seed": 1,
                                               "pieces": {"piece": p["id"]}, "params": params_sent, "stream": True})
        assert events(r)[-1]["type"] == "done"
        assert seen[-1] == expect
    for bad, message in (({"forbid_parallels": "yes"}, "forbid_parallels.*true or false"),
                         ({"pitch_temperature": 0}, "pitch_temperature.*from 0.05")):
        r = client.post("/api/generate", json={"session": sid, "model": "tracks", "action": "harmonize",
                                               "pieces": {"piece": p["id"]}, "params": bad})
        assert r.status_code == 422 and re.search(message, r.json()["error"]), r.json()
    assert len(seen) == 2
