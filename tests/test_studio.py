"""``musicfw studio``: the HTTP/JSON API through Starlette's TestClient on a tiny run (an
untrained 1-layer LSTM over REMI with chords, made by hand), and the generation loop's cancel
flag.  The browser test is tests/test_studio_browser.py."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import symusic

from conftest import TEST_MIDI, run_cli

TOKEN = "studio-test-token"


def make_run(root, use_chords=True, tokenizer=None, model=None):
    import torch

    import musicfw
    from musicfw.api import build_from_section
    from musicfw.engine.rundir import RunFolder

    config = musicfw.load_config({
        "name": "studio", "seed": 3,
        "data": {"name": "midi_folder", "path": str(root)},
        "tokenizer": tokenizer or {"name": "remi", "use_chords": use_chords},
        "model": model or {"name": "lstm", "hidden_size": 16, "num_layers": 1, "embed_dim": 8},
        "sampler": [{"name": "temperature", "temperature": 1.0}],
        "generate": {"n": 1, "max_tokens": 64, "render_audio": False},
    })
    run = RunFolder.create(root, config.name)
    run.save_config(config)
    tokenizer = build_from_section("tokenizers", config.tokenizer)
    tokenizer.save(run.tokenizer_path)
    torch.manual_seed(0)
    model = build_from_section("models", config.model, tokenizer=tokenizer)
    run.checkpoints.mkdir()
    for name in ("best", "last"):
        torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, run.checkpoints / f"{name}.ckpt")
    return run.path


def tune(bars=2) -> bytes:
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    t = symusic.Track(program=0)
    for i in range(bars * 4):
        t.notes.append(symusic.Note(i * 480, 480, 60 + (i * 2) % 12, 80))
    score.tracks.append(t)
    return bytes(score.dumps_midi())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("studio-run"))


@pytest.fixture
def client(run_dir, tmp_path):
    from starlette.testclient import TestClient

    from musicfw.core.plugins import load_registries
    from musicfw.plugins.studio.catalog import Catalog, run_entry
    from musicfw.plugins.studio.server import create_app

    catalog = Catalog(load_registries(), [run_entry(run_dir, id="tiny")])
    app = create_app(catalog, TOKEN, sessions_root=tmp_path / "sessions")
    with TestClient(app, base_url="http://127.0.0.1:8765", headers={"X-Studio-Token": TOKEN}) as c:
        c.studio = app
        yield c


def session(client) -> str:
    r = client.post("/api/sessions")
    assert r.status_code == 201
    return r.json()["session"]


def upload(client, sid, data=None, name="tune.mid"):
    return client.post(f"/api/sessions/{sid}/pieces?name={name}", content=data if data is not None else tune(),
                       headers={"Content-Type": "audio/midi"})


def events(response) -> list[dict]:
    out = []
    for block in response.text.split("\n\n"):
        if block.startswith("data: "):
            out.append(json.loads(block[6:]))
    return out


def test_every_route_needs_the_token(client):
    from starlette.testclient import TestClient

    bare = TestClient(client.studio, base_url="http://127.0.0.1:8765")
    for method, path in (("get", "/"), ("get", "/api/info"), ("post", "/api/sessions"), ("post", "/api/generate"),
                         ("post", "/api/models/tiny/load"), ("get", "/api/jobs/0123456789abcdef")):
        r = getattr(bare, method)(path)
        assert r.status_code == 403, path
        assert "token" in r.json()["error"]
    assert bare.get("/?token=wrong-token-x").status_code == 403
    page = bare.get(f"/?token={TOKEN}")
    assert page.status_code == 200 and "musicfw studio" in page.text
    assert "http://" not in page.text.replace("http://\"", "") and "https://" not in page.text  # nothing from the network


def test_a_foreign_host_is_refused(client):
    for host in ("evil.example.com", "attacker.localhost.example", "127.0.0.1.nip.io"):
        r = client.get("/api/info", headers={"Host": host})
        assert r.status_code == 400, host
        assert "host name" in r.json()["error"]
    assert client.get("/api/info", headers={"Host": "localhost:8765"}).status_code == 200
    assert client.get("/api/info", headers={"Host": "[::1]:8765"}).status_code == 200


def test_info_lists_the_model_actions_and_samplers(client):
    info = client.get("/api/info").json()
    assert [m["id"] for m in info["models"]] == ["tiny"]
    assert {"continue", "chords", "sample", "interpolate", "blend"} <= {a["name"] for a in info["actions"]}
    assert "top_p" in {s["name"] for s in info["samplers"]}
    loaded = client.post("/api/models/tiny/load").json()
    # an LSTM over REMI with chords: continue and follow chords, not the MusicVAE actions
    assert loaded["actions"] == ["continue", "chords"]
    assert loaded["sampler"] == [{"name": "temperature", "temperature": 1.0}]
    assert client.post("/api/models/nope/load").status_code == 404


def test_upload_bounds(client, shared_midi):
    from musicfw.music.limits import using

    sid = session(client)
    ok = upload(client, sid)
    assert ok.status_code == 201
    piece = ok.json()
    assert piece["notes_total"] == 8 and len(piece["notes"]) == 8 and piece["label"] == "tune.mid"
    # not MIDI, truncated, empty: the loader's reason
    assert "not a MIDI file" in upload(client, sid, b"hello, this is not midi").json()["error"]
    assert upload(client, sid, tune()[:30]).status_code == 422
    assert upload(client, sid, b"").status_code == 422
    for bad in sorted((shared_midi / "bad").glob("*.mid"))[:3]:
        assert upload(client, sid, bad.read_bytes()).status_code == 422, bad.name
    # larger than limits.max_file_bytes: 413 before it is read whole
    with using(max_file_bytes=1000):
        r = upload(client, sid, b"MThd" + b"\0" * 5000)
        assert r.status_code == 413 and "max_file_bytes" in r.json()["error"]
        # a file within the byte limit but over the note limit
    with using(max_notes=4):
        assert "max_notes" in upload(client, sid).json()["error"]
    # the file name is a label, never a path: nothing is written outside the session folder
    r = upload(client, sid, name="..%2F..%2Fescape.mid")
    assert r.status_code == 201 and r.json()["label"] == "escape.mid"
    s = client.studio.sessions.get(sid)
    client.get(f"/api/sessions/{sid}/pieces/{r.json()['id']}/midi")
    assert all(p.parent == s.folder for p in s.folder.rglob("*"))
    assert not list(s.folder.parent.parent.glob("escape*"))
    # unknown session / piece ids, and ids that try to be paths
    assert client.get(f"/api/sessions/{sid}/pieces/0123456789abcdef").status_code == 404
    assert client.get(f"/api/sessions/{sid}/pieces/..%2F..%2Fetc").status_code == 404
    assert upload(client, "0123456789abcdef").status_code == 404


def test_played_notes_and_json_bounds(client):
    sid = session(client)
    r = client.post(f"/api/sessions/{sid}/pieces", json={"notes": [[0, 0.5, 60, 90], [0.5, 0.5, 64, 90]], "qpm": 120})
    assert r.status_code == 201 and [n[2] for n in r.json()["notes"]] == [60, 64]
    for body, words in (({"notes": [[0, 0.5, 200, 90]]}, "pitch"), ({"notes": []}, "non-empty"),
                        ({"notes": [[0, 0.5, 60, 90]] * 5000}, "at most"), ({"notes": [[0, 0.5, 60]]}, "expected"),
                        ({"notes": [[0, 0.5, 60, 90]], "qpm": 1e9}, "qpm")):
        r = client.post(f"/api/sessions/{sid}/pieces", json=body)
        assert r.status_code in (400, 422) and words in r.json()["error"], (body, r.json())
    big = b'{"notes": [' + b"[0, 0.5, 60, 90]," * 20000 + b"[0, 0.5, 60, 90]]}"
    assert client.post(f"/api/sessions/{sid}/pieces", content=big, headers={"Content-Type": "application/json"}).status_code == 400
    deep = b"[" * 5000 + b"]" * 5000
    assert client.post("/api/generate", content=deep, headers={"Content-Type": "application/json"}).status_code == 400


def test_generate_round_trip_streams_notes_and_keeps_the_prompt(client):
    sid = session(client)
    prompt = upload(client, sid).json()
    req = {"session": sid, "model": "tiny", "action": "continue", "pieces": {"piece": prompt["id"]},
           "params": {"bars": 2, "max_tokens": 200}, "seed": 5, "stream": True}
    r = client.post("/api/generate", json=req)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    evs = events(r)
    assert evs[0]["type"] == "job" and evs[-1]["type"] == "done", evs[-1]
    notes = [e for e in evs if e["type"] == "notes"]
    done = evs[-1]
    result = done["piece"]
    generated = [n for n in result["notes"] if n[5]]
    kept = [n for n in result["notes"] if not n[5]]
    assert len(generated) == done["stats"]["notes"] > 0
    assert notes and notes[-1]["notes"] == generated  # the stream ended with what the result holds
    assert [n[:4] for n in kept] == [n[:4] for n in prompt["notes"]]  # the piece is unchanged
    assert done["stats"]["first_note_seconds"] is not None
    # the same seed draws the same continuation; the result downloads as MIDI
    again = client.post("/api/generate", json={**req, "stream": False}).json()
    assert [n for n in again["piece"]["notes"] if n[5]] == generated
    mid = client.get(f"/api/sessions/{sid}/pieces/{result['id']}/midi")
    assert mid.status_code == 200 and mid.content[:4] == b"MThd"
    assert symusic.Score.from_midi(mid.content).note_num() == len(result["notes"])


def test_follow_chords_places_the_chords(client):
    from musicfw.engine.rundir import load_run_config  # noqa: F401  (the run's tokenizer has chords)

    sid = session(client)
    prompt = upload(client, sid).json()
    r = client.post("/api/generate", json={"session": sid, "model": "tiny", "action": "chords", "pieces": {"piece": prompt["id"]},
                                           "params": {"chords": "Am F", "bars": 2, "max_tokens": 200}, "seed": 1})
    assert r.status_code == 200, r.text
    assert r.json()["stats"]["notes"] > 0
    bad = client.post("/api/generate", json={"session": sid, "model": "tiny", "action": "chords", "pieces": {"piece": prompt["id"]},
                                             "params": {"chords": "Hmaj13#"}})
    assert bad.status_code == 422 and "chord" in bad.json()["error"]


def test_mistakes_are_clear_4xx(client):
    sid = session(client)
    p = upload(client, sid).json()["id"]
    base = {"session": sid, "model": "tiny", "action": "continue", "pieces": {"piece": p}}
    for change, status, words in (
        ({"action": "fly"}, 422, "action must be one of"),
        ({"model": "other"}, 422, "model must be one of"),
        ({"action": "sample"}, 422, "cannot 'sample'"),
        ({"pieces": {}}, 422, "pieces.piece"),
        ({"params": {"bars": 0}}, 422, "from 1 to 64"),
        ({"params": {"wings": 2}}, 422, "no parameter 'wings'"),
        ({"sampler": [{"name": "top_k", "k": -1}]}, 422, "sampler"),
        ({"seed": -3}, 422, "seed"),
        ({"session": "0123456789abcdef"}, 404, "unknown session"),
    ):
        r = client.post("/api/generate", json={**base, **change})
        assert r.status_code == status and words in r.json()["error"], (change, r.json())


def test_cancel_frees_the_job_at_once(client):
    sid = session(client)
    p = upload(client, sid).json()["id"]
    req = {"session": sid, "model": "tiny", "action": "continue", "pieces": {"piece": p},
           "params": {"bars": 64, "max_tokens": 8192}, "seed": 2, "stream": True}
    jobs = client.studio.jobs
    seen: dict = {}

    def consume():
        with client.stream("POST", "/api/generate", json=req) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    ev = json.loads(line[6:])
                    seen.setdefault("first", ev)
                    seen["last"] = ev

    t = threading.Thread(target=consume)
    t.start()
    deadline = time.time() + 30
    while "first" not in seen and time.time() < deadline:
        time.sleep(0.01)
    job = jobs.get(seen["first"]["job"])
    while job.tokens == 0 and time.time() < deadline:
        time.sleep(0.01)
    t0 = time.perf_counter()
    r = client.post(f"/api/jobs/{job.id}/cancel")
    assert r.json()["state"] == "cancelled" and r.json()["alive"] is False
    assert time.perf_counter() - t0 < 1.0
    t.join(10)
    assert seen["last"]["type"] == "cancelled"
    assert 0 < job.tokens < 8192


def test_a_client_that_goes_away_cancels_its_job(client):
    sid = session(client)
    p = upload(client, sid).json()["id"]
    req = {"session": sid, "model": "tiny", "action": "continue", "pieces": {"piece": p},
           "params": {"bars": 64, "max_tokens": 8192}, "seed": 2, "stream": True}
    with client.stream("POST", "/api/generate", json=req) as r:
        lines = r.iter_lines()
        first = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        job = client.studio.jobs.get(first["job"])
        for line in lines:  # a few notes, then the client hangs up
            if line.startswith("data: ") and json.loads(line[6:])["type"] == "notes":
                break
    job.thread.join(5)
    assert not job.thread.is_alive() and job.state == "cancelled"
    assert job.tokens < 8192


def test_generation_loop_checks_the_cancel_flag():
    """The engine's loop itself: a set flag stops it before the next token (and in the prompt)."""
    from musicfw.api import build_model, build_sampler, build_tokenizer
    from musicfw.engine.generation import GenerationCancelled, generate

    tok = build_tokenizer("remi")
    model = build_model("lstm", tokenizer=tok, hidden_size=8, num_layers=1, embed_dim=4)
    flag = threading.Event()
    seen = []

    def on_tokens(tokens, kept):
        seen.append(int(tokens[0]))
        if len(seen) == 5:
            flag.set()

    with pytest.raises(GenerationCancelled):
        generate(model, tok, build_sampler("temperature"), n=1, batch_size=1, max_tokens=500, cancel=flag,
                 on_tokens=on_tokens, constraints=False)
    assert len(seen) == 5
    with pytest.raises(GenerationCancelled):  # set before: not one step, the prompt included
        generate(model, tok, build_sampler("temperature"), n=1, max_tokens=500, cancel=flag,
                 prompt=symusic.Score.from_midi(tune()))
    flag.clear()
    out = generate(model, tok, build_sampler("temperature"), n=1, batch_size=1, max_tokens=20, cancel=flag, constraints=False)
    assert len(out.tokens[0]) == 20


def test_prefill_reads_the_prompt_at_once_to_the_same_draw():
    """``generate(prefill=True)`` (the studio's): the LSTM's one-call prefill and the default
    (a step per token, here a Transformer's) continue a prompt exactly as the step loop does."""
    import torch

    from musicfw.api import build_model, build_sampler, build_tokenizer
    from musicfw.engine.generation import generate

    tok = build_tokenizer("remi")
    prompt = symusic.Score.from_midi(tune(bars=3))
    for name, params in (("lstm", {"hidden_size": 16, "num_layers": 2, "embed_dim": 8}),
                         ("transformer", {"d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32})):
        torch.manual_seed(0)
        model = build_model(name, tokenizer=tok, **params)
        draws = [generate(model, tok, build_sampler("temperature"), n=1, batch_size=1, max_tokens=24, prompt=prompt,
                          seed=4, prefill=p).tokens[0].tolist() for p in (False, True)]
        assert draws[0] == draws[1], name
    with torch.no_grad():
        xs = torch.tensor(np.asarray(tok.encode(prompt)))[None]
        lstm = build_model("lstm", tokenizer=tok, hidden_size=16, num_layers=2, embed_dim=8).eval()
        s0 = lstm.init_state(1)
        _, s0 = lstm.step(None, s0)
        fast, _ = lstm.prefill(xs, s0)
        slow = None
        for t in range(xs.shape[1]):
            slow, s0 = lstm.step(xs[:, t], s0)
        assert torch.allclose(fast, slow, atol=1e-5)


def test_the_action_registry_is_open(client, run_dir, tmp_path):
    """An action from elsewhere (as a later package's would be) shows for the models it supports."""
    from starlette.testclient import TestClient

    from musicfw.core.plugins import load_registries
    from musicfw.plugins.studio.actions import Action, ActionResult, Param, load_actions
    from musicfw.plugins.studio.catalog import Catalog, run_entry
    from musicfw.plugins.studio.server import create_app

    class Transpose(Action):
        name = "transpose"
        label = "Transpose"
        params = (Param("semitones", "int", 2, "", -12, 12),)

        @classmethod
        def supports(cls, loaded):
            return loaded.tokenizer.name == "remi"

        def run(self, ctx):
            score = ctx.pieces["piece"].score.shift_pitch(ctx.params["semitones"])
            return ActionResult(score, list(range(len(score.tracks))), "transposed")

    app = create_app(Catalog(load_registries(), [run_entry(run_dir, id="tiny")]), TOKEN,
                     actions=load_actions([Transpose]), sessions_root=tmp_path / "s")
    c = TestClient(app, base_url="http://127.0.0.1", headers={"X-Studio-Token": TOKEN})
    assert "transpose" in c.post("/api/models/tiny/load").json()["actions"]
    sid = c.post("/api/sessions").json()["session"]
    p = upload(c, sid).json()
    r = c.post("/api/generate", json={"session": sid, "model": "tiny", "action": "transpose", "pieces": {"piece": p["id"]},
                                      "params": {"semitones": 3}}).json()
    assert [n[2] for n in r["piece"]["notes"]] == [n[2] + 3 for n in p["notes"]]
    with pytest.raises(Exception, match="two studio actions"):
        load_actions([Transpose, Transpose])


def test_the_cli_needs_a_model_and_names_a_bad_one(tmp_path):
    proc = run_cli("studio")
    assert proc.returncode == 2 and "needs a model" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("studio", "--model", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "no such folder" in " ".join(proc.stderr.split())  # the message is wrapped where the path ends
    proc = run_cli("studio", "--run", str(TEST_MIDI))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_musicvae_sample_interpolate_and_blend(tmp_path):
    """A MusicVAE run offers sample, interpolate and blend (and not continue); each makes a piece
    whose every note is marked generated."""
    from starlette.testclient import TestClient

    from musicfw.core.plugins import load_registries
    from musicfw.plugins.studio.catalog import Catalog, run_entry
    from musicfw.plugins.studio.server import create_app

    run = make_run(tmp_path / "vae", tokenizer={"name": "melody", "min_pitch": 21, "max_pitch": 108},
                   model={"name": "musicvae", "z_size": 4, "enc_rnn_size": [8], "dec_rnn_size": [8], "max_seq_len": 32})
    app = create_app(Catalog(load_registries(), [run_entry(run, id="vae")]), TOKEN, sessions_root=tmp_path / "s")
    c = TestClient(app, base_url="http://127.0.0.1", headers={"X-Studio-Token": TOKEN})
    assert c.post("/api/models/vae/load").json()["actions"] == ["sample", "interpolate", "blend"]
    sid = c.post("/api/sessions").json()["session"]
    ids = [upload(c, sid, tune(bars=2 + i)).json()["id"] for i in range(4)]
    base = {"session": sid, "model": "vae", "seed": 0}
    sample = c.post("/api/generate", json={**base, "action": "sample", "params": {"temperature": 1.0}}).json()
    inter = c.post("/api/generate", json={**base, "action": "interpolate", "params": {"steps": 3},
                                           "pieces": {"piece": ids[0], "piece_b": ids[1]}}).json()
    blend = c.post("/api/generate", json={**base, "action": "blend", "params": {"x": 0.25, "y": 1.0},
                                           "pieces": dict(zip(("piece", "piece_b", "piece_c", "piece_d"), ids))}).json()
    assert sample["stats"]["tokens"] == 32 and inter["stats"]["tokens"] == 3 * 32 and blend["stats"]["tokens"] == 32
    for r in (sample, inter, blend):
        assert all(n[5] == 1 for n in r["piece"]["notes"])
    assert c.post("/api/generate", json={**base, "action": "continue", "pieces": {"piece": ids[0]}}).status_code == 422
    missing = c.post("/api/generate", json={**base, "action": "blend", "pieces": {"piece": ids[0], "piece_b": ids[1]}})
    assert missing.status_code == 422 and "piece_c" in missing.json()["error"]


def test_audio_is_rendered_with_the_soundfont_or_refused_without_one(client, tmp_path, monkeypatch):
    from starlette.testclient import TestClient

    import musicfw.music.render as render
    from musicfw.core.plugins import load_registries
    from musicfw.plugins.studio.catalog import Catalog
    from musicfw.plugins.studio.server import create_app

    sid = session(client)
    p = upload(client, sid).json()["id"]
    if render.find_soundfont() is None:
        pytest.fail("the studio tests render audio with a General MIDI soundfont (apt-get install timgm6mb-soundfont)")
    wav = client.get(f"/api/sessions/{sid}/pieces/{p}/audio")
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF" and len(wav.content) > 22050  # about 4 s of audio
    assert client.get("/api/info").json()["audio"] is True
    # without a soundfont: the page is told to play its own synthesiser, with the install command
    monkeypatch.setattr(render, "SOUNDFONT_PATHS", ())
    monkeypatch.delenv(render.SOUNDFONT_ENV, raising=False)
    app = create_app(Catalog(load_registries(), []), TOKEN, sessions_root=tmp_path / "s")
    c = TestClient(app, base_url="http://127.0.0.1", headers={"X-Studio-Token": TOKEN})
    assert c.get("/api/info").json()["audio"] is False
    sid2 = c.post("/api/sessions").json()["session"]
    p2 = upload(c, sid2).json()["id"]
    r = c.get(f"/api/sessions/{sid2}/pieces/{p2}/audio")
    assert r.status_code == 503 and "apt-get install" in r.json()["error"]
