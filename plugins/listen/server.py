"""``musicfw listen serve``: the study as a local web app (Starlette on uvicorn).

Routes (every one needs ``?token=T`` or the header ``X-Study-Token: T`` when the study is
served with ``--token T``; 403 otherwise):

* ``GET /``: the page (``static/index.html``: plain HTML and JavaScript, no network).
* ``GET /api/study``: what the page needs to say (item counts per test, minimum play time, the
  questions to ask, the training examples' clip ids and labels); never the systems.
* ``POST /api/raters`` ``{"expertise": str|null, "environment": str|null}``: a new rater id
  (random) and their sequence: the MOS items, then the A/B items, then the MUSHRA items, each
  block shuffled, each A/B pair's sides swapped and each MUSHRA item's conditions shuffled by
  ``random.Random("<study seed>:<rater id>")``; stored in the database.
* ``GET /api/raters/<rater>/next``: the first item of the rater's sequence without a rating
  (so a rater who comes back resumes there), with opaque clip ids only (a MUSHRA item: ``ref``,
  the open reference, and the conditions); the time it is first shown is stored.
* ``POST /api/ratings`` ``{"rater", "item", "score": 1..5}`` (MOS), ``{"rater", "item",
  "choice": clip id | "none"}`` (A/B) or ``{"rater", "item", "scores": {clip: 0..100}}`` (MUSHRA,
  every condition of the item exactly once): one transaction.  Refused with 4xx: a malformed
  body (400), an unknown rater or item (404), an item outside the rater's sequence (403), a
  score out of range or a choice that is not one of the pair (422), an item not shown yet or
  answered sooner than the minimum play time after it was shown (409), a changed answer to an
  item already rated (409).  The identical answer sent again is acknowledged without a second row.
* ``GET /clip/<id>``: a clip's FLAC; only ids of the manifest, only files of the study's
  ``audio/`` folder (anything else, path tricks included, is 404); byte ranges (for seeking),
  no ``Last-Modified`` and no ``ETag`` (they would tell when each clip was rendered, and clips
  are rendered one system at a time).
* ``GET /progress`` and ``GET /api/progress``: answers per rater and per item and who finished,
  for the experimenter: they need the admin token (``--admin-token``, or a random one printed at
  start), never the raters' token.

Every request's ``Host`` header must name this server: an IP address, ``localhost``, a name given
with ``--allow-host``, or, when the study has a rater token, any name (a page of another site
that a DNS-rebinding attack points at this server sends its own name, and has no token); anything
else gets 400.  A JSON body is at most 4 KB and, nested too deep for the parser, is a 400.

The minimum play time is enforced twice: the page enables the answer buttons only after the
clip (each clip of an A/B pair or a MUSHRA item) has played that long (the summed ``played``
ranges of the audio element), and the server refuses an answer that comes sooner than that after
the item was first shown (the sum over the item's clips, which play one at a time; a clip shorter
than the minimum counts with its own length).
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

from .db import connect, fetch_progress, init_db
from .study import CLIP_ID, Study

STATIC = Path(__file__).parent / "static"
RATER_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_BODY = 4096
EXPERTISE = ("none", "amateur", "professional", "undisclosed")
ENVIRONMENT = ("headphones", "loudspeakers", "laptop or phone speakers", "undisclosed")
HOST = re.compile(r"^(?P<name>\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(:\d{1,5})?$")


def rater_sequence(study: Study, rater: str) -> list[tuple[str, str, str | None, list[str] | None]]:
    """``[(item, clip_a, clip_b, conditions)]``: the rater's blinded order (see the module
    docstring); a MUSHRA item's clip_a is its open reference, its conditions are shuffled."""
    rng = random.Random(f"{study.manifest['seed']}:{rater}")
    mos = [i for i in study.manifest["items"] if i["kind"] == "mos"]
    ab = [i for i in study.manifest["items"] if i["kind"] == "ab"]
    mushra = [i for i in study.manifest["items"] if i["kind"] == "mushra"]
    rng.shuffle(mos)
    rng.shuffle(ab)
    out: list[tuple[str, str, str | None, list[str] | None]] = [(i["id"], i["clip"], None, None) for i in mos]
    for i in ab:
        a, b = i["clips"]
        if rng.random() < 0.5:
            a, b = b, a
        out.append((i["id"], a, b, None))
    rng.shuffle(mushra)
    for i in mushra:
        conditions = list(i["clips"])
        rng.shuffle(conditions)
        out.append((i["id"], i["reference"], None, conditions))
    return out


def host_allowed(host: str, allow: set[str], token: bool) -> bool:
    """Whether a request's Host header names this server (see the module docstring)."""
    import ipaddress

    m = HOST.match(host or "")
    if not m:
        return False
    name = m.group("name").strip("[]").lower().rstrip(".")
    if token or name == "localhost" or name in allow:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def create_app(study: Study, token: str | None = None, min_play: float | None = None,
               clock: Callable[[], float] = time.time, admin_token: str | None = None,
               allow_hosts: Any = ()) -> Any:
    """The Starlette app of ``study``; ``min_play`` overrides the manifest's seconds.  Without
    ``admin_token`` the progress page is not served."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    class BlindFileResponse(FileResponse):
        """A file with its length only: no Last-Modified, no ETag (see the module docstring)."""

        def set_stat_headers(self, stat_result: Any) -> None:
            self.headers.setdefault("content-length", str(stat_result.st_size))

    allowed = {h.strip().lower().rstrip(".") for h in allow_hosts}

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
        kinds = [i["kind"] for i in study.manifest["items"]]
        return JSONResponse({
            "study": study.manifest["study_id"],
            "items": len(kinds),
            "mos_items": kinds.count("mos"),
            "ab_items": kinds.count("ab"),
            "mushra_items": kinds.count("mushra"),
            "min_play_seconds": play,
            "ask_expertise": bool(settings.get("ask_expertise", True)),
            "expertise_options": list(EXPERTISE),
            "environment_options": list(ENVIRONMENT),
            "require_headphones": bool(settings.get("require_headphones", False)),
            "training": [{"clip": t["clip"], "label": t["label"]} for t in study.manifest.get("training") or []],
        })

    def read_json(body: bytes) -> dict[str, Any] | None:
        if len(body) > MAX_BODY:
            return None
        try:
            data = json.loads(body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # [[[[...]]]] under 4 KB
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
        environment = data.get("environment")
        if environment is not None and environment not in ENVIRONMENT:
            return err(422, f"environment must be one of {', '.join(ENVIRONMENT)} or null")
        rater = secrets.token_hex(8)
        seq = rater_sequence(study, rater)
        conn = connect(study.db_path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO raters (id, created, expertise, environment) VALUES (?, ?, ?, ?)",
                         (rater, clock(), expertise, environment))
            conn.executemany(
                "INSERT INTO sequence (rater, pos, item, clip_a, clip_b, conditions) VALUES (?, ?, ?, ?, ?, ?)",
                [(rater, pos, item, a, b, None if cond is None else json.dumps(cond)) for pos, (item, a, b, cond) in enumerate(seq)],
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
                "SELECT s.pos, s.item, s.clip_a, s.clip_b, s.shown_at, s.conditions FROM sequence s "
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
        if kind == "mushra":
            shown = json.loads(row["conditions"])
            extra = {"ref": row["clip_a"]}  # the open reference
        else:
            shown = [row["clip_a"]] + ([row["clip_b"]] if row["clip_b"] else [])
            extra = {}
        return JSONResponse({
            "done": False, "answered": done, "total": total, "position": done + 1,
            "item": {"id": row["item"], "kind": kind, "clips": shown, **extra},
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
        scores: dict[str, int] | None = None
        if item["kind"] == "mushra":
            scores = data.get("scores")
            if ("score" in data or "choice" in data or not isinstance(scores, dict) or set(scores) != set(item["clips"])
                    or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 100 for v in scores.values())):
                return err(422, "a MUSHRA answer is {\"scores\": {clip id: an integer from 0 to 100}} for every clip of the item")
        elif item["kind"] == "mos":
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
                old_scores = {r["clip"]: r["score"] for r in conn.execute(
                    "SELECT clip, score FROM mushra_scores WHERE rater = ? AND item = ?", (rater, item_id))} if scores is not None else None
                conn.execute("ROLLBACK")
                if old["score"] == score and old["choice"] == choice and old_scores == scores:
                    return JSONResponse({"status": "already recorded"}, status_code=200)
                return err(409, "this item was already answered; an answer cannot be changed")
            if seq["shown_at"] is None:
                conn.execute("ROLLBACK")
                return err(409, "this item has not been shown to this rater yet")
            now = clock()
            elapsed = now - float(seq["shown_at"])
            shown = [item["clip"]] if item["kind"] == "mos" else item["clips"]  # MUSHRA: the open reference is optional
            need = sum(min(play, float(clips[c].get("audio_seconds") or play)) for c in shown)
            if elapsed + 1e-6 < need:
                conn.execute("ROLLBACK")
                return err(409, f"answered too soon: listen for at least {need:g} s before answering")
            conn.execute(
                "INSERT INTO ratings (rater, item, kind, score, choice, created, elapsed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (rater, item_id, item["kind"], score, choice, now, elapsed),
            )
            if scores is not None:
                conn.executemany("INSERT INTO mushra_scores (rater, item, clip, score) VALUES (?, ?, ?, ?)",
                                 [(rater, item_id, c, v) for c, v in sorted(scores.items())])
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
        return BlindFileResponse(path, media_type="audio/flac", headers={"Cache-Control": "no-store"})

    def admin(request: Request) -> bool:
        given = request.query_params.get("token") or request.headers.get("x-admin-token") or ""
        return bool(admin_token) and hmac.compare_digest(given.encode(), admin_token.encode())

    def progress_data() -> dict[str, Any]:
        conn = connect(study.db_path)
        try:
            raters, per_item = fetch_progress(conn)
        finally:
            conn.close()
        rows = [{"rater": n, "id": r["id"], "started": r["created"], "expertise": r["expertise"],
                 "environment": r["environment"], "answered": r["answered"], "total": r["total"],
                 "finished": r["total"] > 0 and r["answered"] >= r["total"], "last_answer": r["last"]}
                for n, r in enumerate(raters, 1)]
        kinds = {i["id"]: i["kind"] for i in study.manifest["items"]}
        return {
            "raters": rows,
            "finished": sum(1 for r in rows if r["finished"]),
            "answers": sum(r["answered"] for r in rows),
            "items": [{"item": i, "kind": kinds[i], "answers": per_item.get(i, 0)} for i in kinds],
        }

    def progress_json(request: Request) -> Response:
        if not admin(request):
            return err(403, "the progress page needs the admin token (printed by `listen serve`)")
        return JSONResponse(progress_data(), headers={"Cache-Control": "no-store"})

    def progress_page(request: Request) -> Response:
        import datetime as dt
        import html

        if not admin(request):
            return err(403, "the progress page needs the admin token (printed by `listen serve`)")
        data = progress_data()

        def when(t: float | None) -> str:
            return "-" if t is None else dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

        rater_rows = "".join(
            f"<tr><td>{r['rater']}</td><td><code>{html.escape(r['id'])}</code></td><td>{when(r['started'])}</td>"
            f"<td>{html.escape(str(r['environment'] or '-'))}</td><td>{html.escape(str(r['expertise'] or '-'))}</td>"
            f"<td>{r['answered']} / {r['total']}</td><td>{'yes' if r['finished'] else 'no'}</td><td>{when(r['last_answer'])}</td></tr>"
            for r in data["raters"])
        item_rows = "".join(f"<tr><td><code>{i['item']}</code></td><td>{i['kind']}</td><td>{i['answers']}</td></tr>" for i in data["items"])
        body = (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Study progress</title>"
            "<meta http-equiv='refresh' content='30'><style>body{font-family:system-ui,sans-serif;margin:1.5em}"
            "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}</style>"
            f"</head><body><h1>Study progress</h1><p id='summary'>{len(data['raters'])} raters started, {data['finished']} finished, "
            f"{data['answers']} answers (refreshes every 30 s).</p>"
            "<h2>Raters</h2><table id='raters'><tr><th>#</th><th>rater</th><th>started</th><th>listening on</th><th>background</th>"
            f"<th>answered</th><th>finished</th><th>last answer</th></tr>{rater_rows}</table>"
            f"<h2>Items</h2><table id='items'><tr><th>item</th><th>test</th><th>answers</th></tr>{item_rows}</table></body></html>"
        )
        return HTMLResponse(body, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def not_found(request: Request, exc: Exception) -> Response:
        return err(404, "not found")

    routes = [
        Route("/", index),
        Route("/api/study", study_info),
        Route("/api/raters", new_rater, methods=["POST"]),
        Route("/api/raters/{rater}/next", next_item),
        Route("/api/ratings", rate, methods=["POST"]),
        Route("/clip/{clip}", clip),
        Route("/progress", progress_page),
        Route("/api/progress", progress_json),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found})

    async def checked(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
            if not host_allowed(host, allowed, bool(token)):
                await JSONResponse({"error": "this server does not answer to that host name (see --allow-host)"},
                                   status_code=400)(scope, receive, send)
                return
        await app(scope, receive, send)

    return checked


def serve(study: Study, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          min_play: float | None = None, log: Any = print, admin_token: str | None = None,
          allow_hosts: Any = ()) -> None:
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
    admin_token = admin_token or secrets.token_urlsafe(12)
    app = create_app(study, token=token, min_play=min_play, admin_token=admin_token, allow_hosts=allow_hosts)
    shown_host = f"[{host}]" if ":" in host else host
    link = f"http://{shown_host}:{port}/" + (f"?token={token}" if token else "")
    log(f"serving the study {study.path} ({len(study.manifest['items'])} items per rater)")
    log(f"rater link: {link}")
    log(f"progress (for you, not the raters): http://{shown_host}:{port}/progress?token={admin_token}")
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        log("warning: listening beyond this machine without --token: anyone who can reach it can rate.")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
