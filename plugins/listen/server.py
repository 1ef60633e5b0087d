"""``musicfw listen serve``: the study as a local web app (Starlette on uvicorn).

Routes (every one needs ``?token=T`` or the header ``X-Study-Token: T`` when the study is
served with ``--token T``; 403 otherwise):

* ``GET /``: the page (``static/index.html``: plain HTML and JavaScript, no network).
* ``GET /api/study``: what the page needs to say (item count, minimum play time, whether to
  ask the expertise question); never the systems.
* ``POST /api/raters`` ``{"expertise": str|null}``: a new rater id (random) and their
  sequence: the MOS items, then the A/B items, each block shuffled and each A/B pair's sides
  swapped by ``random.Random("<study seed>:<rater id>")``; stored in the database.
* ``GET /api/raters/<rater>/next``: the first item of the rater's sequence without a rating
  (so a rater who comes back resumes there), with opaque clip ids only; the time it is first
  shown is stored.
* ``POST /api/ratings`` ``{"rater", "item", "score": 1..5}`` (MOS) or ``{"rater", "item",
  "choice": clip id | "none"}`` (A/B): one transaction.  Refused with 4xx: a malformed body
  (400), an unknown rater or item (404), an item outside the rater's sequence (403), a score
  outside 1-5 or a choice that is not one of the pair (422), an item not shown yet or answered
  sooner than the minimum play time after it was shown (409), a changed answer to an item
  already rated (409).  The identical answer sent again is acknowledged without a second row.
* ``GET /clip/<id>``: a clip's FLAC; only ids of the manifest, only files of the study's
  ``audio/`` folder (anything else, path tricks included, is 404).

The minimum play time is enforced twice: the page enables the answer buttons only after the
clip (each clip of an A/B pair) has played that long (the summed ``played`` ranges of the
audio element), and the server refuses an answer that comes sooner than that after the item was
first shown (twice that for an A/B pair, whose two clips play one at a time; a clip shorter than
the minimum counts with its own length).
"""

from __future__ import annotations

import hmac
import json
import random
import re
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from .db import connect, init_db
from .study import CLIP_ID, Study

STATIC = Path(__file__).parent / "static"
RATER_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_BODY = 4096
EXPERTISE = ("none", "amateur", "professional", "undisclosed")


def rater_sequence(study: Study, rater: str) -> list[tuple[str, str, str | None]]:
    """``[(item, clip_a, clip_b)]``: the rater's blinded order (see the module docstring)."""
    rng = random.Random(f"{study.manifest['seed']}:{rater}")
    mos = [i for i in study.manifest["items"] if i["kind"] == "mos"]
    ab = [i for i in study.manifest["items"] if i["kind"] == "ab"]
    rng.shuffle(mos)
    rng.shuffle(ab)
    out: list[tuple[str, str, str | None]] = [(i["id"], i["clip"], None) for i in mos]
    for i in ab:
        a, b = i["clips"]
        if rng.random() < 0.5:
            a, b = b, a
        out.append((i["id"], a, b))
    return out


def create_app(study: Study, token: str | None = None, min_play: float | None = None,
               clock: Callable[[], float] = time.time) -> Any:
    """The Starlette app of ``study``; ``min_play`` overrides the manifest's seconds."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    init_db(study.db_path, study.manifest["study_id"])
    clips = study.clips
    items = study.items
    audio_root = study.audio_dir.resolve()
    settings = study.settings
    play = float(settings["min_play_seconds"] if min_play is None else min_play)
    page = (STATIC / "index.html").read_text(encoding="utf-8")

    def err(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def authorised(request: Request) -> bool:
        if not token:
            return True
        given = request.query_params.get("token") or request.headers.get("x-study-token") or ""
        return hmac.compare_digest(given.encode(), token.encode())

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        def wrapper(request: Request) -> Any:
            if not authorised(request):
                return err(403, "This study needs its token: open the link you were given (…/?token=…).")
            try:
                return handler(request)
            except sqlite3.OperationalError as exc:  # e.g. the disk is full or locked for too long
                return err(503, f"the ratings database is busy or unavailable ({exc}); try again")

        return wrapper

    @guarded
    def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    @guarded
    def study_info(request: Request) -> Response:
        return JSONResponse({
            "study": study.manifest["study_id"],
            "items": len(study.manifest["items"]),
            "mos_items": sum(1 for i in study.manifest["items"] if i["kind"] == "mos"),
            "ab_items": sum(1 for i in study.manifest["items"] if i["kind"] == "ab"),
            "min_play_seconds": play,
            "ask_expertise": bool(settings.get("ask_expertise", True)),
            "expertise_options": list(EXPERTISE),
        })

    def read_json(body: bytes) -> dict[str, Any] | None:
        if len(body) > MAX_BODY:
            return None
        try:
            data = json.loads(body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    async def body_of(request: Request) -> dict[str, Any] | None:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return None
            chunks.append(chunk)
        return read_json(b"".join(chunks))

    async def new_rater(request: Request) -> Response:
        if not authorised(request):
            return err(403, "This study needs its token.")
        data = await body_of(request)
        if data is None:
            return err(400, "send a JSON object, e.g. {\"expertise\": \"amateur\"}")
        expertise = data.get("expertise")
        if expertise is not None and expertise not in EXPERTISE:
            return err(422, f"expertise must be one of {', '.join(EXPERTISE)} or null")
        rater = secrets.token_hex(8)
        seq = rater_sequence(study, rater)
        conn = connect(study.db_path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO raters VALUES (?, ?, ?)", (rater, clock(), expertise))
            conn.executemany(
                "INSERT INTO sequence (rater, pos, item, clip_a, clip_b) VALUES (?, ?, ?, ?, ?)",
                [(rater, pos, item, a, b) for pos, (item, a, b) in enumerate(seq)],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
        return JSONResponse({"rater": rater, "total": len(seq)}, status_code=201)

    @guarded
    def next_item(request: Request) -> Response:
        rater = request.path_params["rater"]
        if not RATER_ID.match(rater):
            return err(404, "unknown rater")
        conn = connect(study.db_path)
        try:
            total = conn.execute("SELECT COUNT(*) FROM sequence WHERE rater = ?", (rater,)).fetchone()[0]
            if total == 0:
                return err(404, "unknown rater")
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT s.pos, s.item, s.clip_a, s.clip_b, s.shown_at FROM sequence s "
                "LEFT JOIN ratings r ON r.rater = s.rater AND r.item = s.item "
                "WHERE s.rater = ? AND r.item IS NULL ORDER BY s.pos LIMIT 1",
                (rater,),
            ).fetchone()
            done = conn.execute("SELECT COUNT(*) FROM ratings WHERE rater = ?", (rater,)).fetchone()[0]
            if row is not None and row["shown_at"] is None:
                conn.execute("UPDATE sequence SET shown_at = ? WHERE rater = ? AND pos = ?", (clock(), rater, row["pos"]))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
        if row is None:
            return JSONResponse({"done": True, "answered": done, "total": total})
        kind = items[row["item"]]["kind"]
        shown = [row["clip_a"]] + ([row["clip_b"]] if row["clip_b"] else [])
        return JSONResponse({
            "done": False, "answered": done, "total": total, "position": done + 1,
            "item": {"id": row["item"], "kind": kind, "clips": shown},
        }, headers={"Cache-Control": "no-store"})

    async def rate(request: Request) -> Response:
        if not authorised(request):
            return err(403, "This study needs its token.")
        data = await body_of(request)
        if data is None:
            return err(400, "send one JSON object (at most 4 KB): {\"rater\", \"item\", \"score\" or \"choice\"}")
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(record, data)

    def record(data: dict[str, Any]) -> Response:
        rater, item_id = data.get("rater"), data.get("item")
        if not isinstance(rater, str) or not isinstance(item_id, str):
            return err(400, "\"rater\" and \"item\" must be strings")
        item = items.get(item_id)
        if item is None:
            return err(404, "unknown item")
        if not RATER_ID.match(rater):
            return err(404, "unknown rater")
        score = choice = None
        if item["kind"] == "mos":
            score = data.get("score")
            if "choice" in data or isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
                return err(422, "a MOS answer is {\"score\": an integer from 1 to 5}")
        else:
            choice = data.get("choice")
            if "score" in data or not isinstance(choice, str) or (choice != "none" and choice not in item["clips"]):
                return err(422, "an A/B answer is {\"choice\": one of the two clip ids of the pair, or \"none\"}")
        conn = connect(study.db_path)
        try:
            if conn.execute("SELECT 1 FROM raters WHERE id = ?", (rater,)).fetchone() is None:
                return err(404, "unknown rater")
            conn.execute("BEGIN IMMEDIATE")
            seq = conn.execute("SELECT shown_at FROM sequence WHERE rater = ? AND item = ?", (rater, item_id)).fetchone()
            if seq is None:
                conn.execute("ROLLBACK")
                return err(403, "this item is not in this rater's sequence")
            old = conn.execute("SELECT score, choice FROM ratings WHERE rater = ? AND item = ?", (rater, item_id)).fetchone()
            if old is not None:
                conn.execute("ROLLBACK")
                if old["score"] == score and old["choice"] == choice:
                    return JSONResponse({"status": "already recorded"}, status_code=200)
                return err(409, "this item was already answered; an answer cannot be changed")
            if seq["shown_at"] is None:
                conn.execute("ROLLBACK")
                return err(409, "this item has not been shown to this rater yet")
            now = clock()
            elapsed = now - float(seq["shown_at"])
            shown = [item["clip"]] if item["kind"] == "mos" else item["clips"]
            need = sum(min(play, float(clips[c].get("audio_seconds") or play)) for c in shown)
            if elapsed + 1e-6 < need:
                conn.execute("ROLLBACK")
                return err(409, f"answered too soon: listen for at least {need:g} s before answering")
            conn.execute(
                "INSERT INTO ratings (rater, item, kind, score, choice, created, elapsed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (rater, item_id, item["kind"], score, choice, now, elapsed),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
        return JSONResponse({"status": "recorded"}, status_code=201)

    @guarded
    def clip(request: Request) -> Response:
        cid = request.path_params["clip"]
        if not CLIP_ID.match(cid) or cid not in clips:
            return err(404, "unknown clip")
        path = (audio_root / f"{cid}.flac").resolve()
        if path.parent != audio_root or not path.is_file():
            return err(404, "unknown clip")
        return FileResponse(path, media_type="audio/flac", headers={"Cache-Control": "no-store"})

    async def not_found(request: Request, exc: Exception) -> Response:
        return err(404, "not found")

    routes = [
        Route("/", index),
        Route("/api/study", study_info),
        Route("/api/raters", new_rater, methods=["POST"]),
        Route("/api/raters/{rater}/next", next_item),
        Route("/api/ratings", rate, methods=["POST"]),
        Route("/clip/{clip}", clip),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found})


def serve(study: Study, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          min_play: float | None = None, log: Any = print) -> None:
    import socket

    import uvicorn

    from musicfw.core.errors import ConfigError

    try:  # a port in use or an address not of this machine is the user's to fix: say so, exit 2
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host.") from None
    app = create_app(study, token=token, min_play=min_play)
    shown_host = f"[{host}]" if ":" in host else host
    link = f"http://{shown_host}:{port}/" + (f"?token={token}" if token else "")
    log(f"serving the study {study.path} ({len(study.manifest['items'])} items per rater)")
    log(f"rater link: {link}")
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        log("warning: listening beyond this machine without --token: anyone who can reach it can rate.")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
