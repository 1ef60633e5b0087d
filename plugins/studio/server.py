"""``musicfw studio``: the web app (Starlette on uvicorn) and its HTTP/JSON API.

docs/studio.md documents every route; in short (every request needs the token, as ``?token=T``
or the header ``X-Studio-Token: T``; 403 otherwise):

* ``GET /``: the page (``static/index.html``: plain HTML and JavaScript, nothing from the network);
* ``GET /api/info``: models, actions, samplers (with their parameters), whether audio renders;
* ``POST /api/models/<id>/load``: build a model; the actions it supports, its default sampler;
* ``POST /api/sessions``: a new session (a temporary folder for its pieces);
* ``POST /api/sessions/<s>/pieces``: a MIDI file (body: the file's bytes) or played notes (JSON);
* ``GET /api/sessions/<s>/pieces/<p>`` (notes), ``.../midi`` (download), ``.../audio`` (WAV);
* ``POST /api/generate``: run an action; with ``"stream": true`` the answer is Server-Sent Events
  (``job``, ``notes`` while tokens arrive, then ``done``, ``cancelled`` or ``error``); closing the
  connection cancels the job;
* ``POST /api/jobs/<j>/cancel``, ``GET /api/jobs/<j>``.

Safety, as ``musicfw listen serve``: 127.0.0.1 by default; a token always (random unless given);
the ``Host`` header must be an IP address, ``localhost`` or a name given with ``--allow-host``
(a DNS-rebinding page sends its own name: 400); JSON bodies at most :data:`MAX_JSON` bytes; an
upload at most ``limits.max_file_bytes`` (see :mod:`.pieces` for the rest).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets
import threading
from pathlib import Path
from typing import Any

from .actions import ActionContext, load_actions
from .catalog import Catalog
from .jobs import USER_ERRORS, Jobs
from .pieces import Piece, Sessions, parse_upload, played_score

STATIC = Path(__file__).parent / "static"
MAX_JSON = 256 * 1024
ID = re.compile(r"^[0-9a-f]{16}$")
#: seconds a streaming answer waits between looks at the job's events
POLL = 0.005


def create_app(catalog: Catalog, token: str, allow_hosts: Any = (), soundfont: Any = None,
               actions: Any = None, sessions_root: Any = None) -> Any:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from musicfw.engine.generation import build_sampler_chain
    from musicfw.music.limits import current
    from musicfw.music.render import AudioRenderer
    from musicfw.plugins.listen.server import host_allowed

    if not token:
        raise ValueError("the studio always has a token")
    allowed = {h.strip().lower().rstrip(".") for h in allow_hosts}
    actions = actions if actions is not None else load_actions()
    sessions = Sessions(sessions_root)
    jobs = Jobs()
    renderer = AudioRenderer(soundfont)
    render_lock = threading.Lock()
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    registries = catalog.registries

    def err(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def authorised(request: Request) -> bool:
        given = request.query_params.get("token") or request.headers.get("x-studio-token") or ""
        return hmac.compare_digest(given.encode(), token.encode())

    def guarded(handler: Any) -> Any:
        async def wrapper(request: Request) -> Any:
            if not authorised(request):
                return err(403, "The studio needs its token: open the link `musicfw studio` printed (…/?token=…).")
            try:
                return await handler(request)
            except USER_ERRORS as exc:
                return err(422, str(exc))

        return wrapper

    async def read_body(request: Request, limit: int) -> bytes | None:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def json_body(request: Request) -> dict[str, Any] | None:
        body = await read_body(request, MAX_JSON)
        if body is None:
            return None
        try:
            data = json.loads(body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return None
        return data if isinstance(data, dict) else None

    def session_of(request: Request) -> Any:
        sid = request.path_params["session"]
        if not ID.match(sid):
            return None
        try:
            return sessions.get(sid)
        except KeyError:
            return None

    def piece_of(session: Any, pid: Any) -> Piece | None:
        if not isinstance(pid, str) or not ID.match(pid):
            return None
        try:
            return session.get(pid)
        except KeyError:
            return None

    @guarded
    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                                           "Content-Security-Policy": "default-src 'self' 'unsafe-inline' blob:; connect-src 'self'"})

    @guarded
    async def info(request: Request) -> Response:
        samplers = [{"name": i.name, "help": i.description, "params": i.config_fields()} for i in registries["samplers"]]
        return JSONResponse({
            "models": catalog.describe(),
            "actions": [a.describe() for a in actions.values()],
            "samplers": json.loads(json.dumps(samplers, default=str)),
            "audio": renderer.available,
            "max_upload_bytes": int(current().max_file_bytes),
        })

    @guarded
    async def load_model(request: Request) -> Response:
        model_id = request.path_params["model"]
        if model_id not in catalog.entries:
            return err(404, f"no model {model_id!r}; the studio has: {', '.join(catalog.entries) or 'none'}")
        loaded = await run_in_threadpool(catalog.get, model_id)
        from omegaconf import OmegaConf

        sampler = loaded.sampler
        if sampler is not None and not isinstance(sampler, (list, dict, str)):
            sampler = OmegaConf.to_container(sampler, resolve=True)
        return JSONResponse({
            "model": model_id, "tokenizer": loaded.tokenizer.name, "token_kind": loaded.tokenizer.kind,
            "actions": [name for name, a in actions.items() if a.supports(loaded)],
            "supports": dict(loaded.supports),
            "sampler": sampler if isinstance(sampler, list) else ([sampler] if sampler else []),
        })

    @guarded
    async def new_session(request: Request) -> Response:
        session = sessions.new()
        return JSONResponse({"session": session.id}, status_code=201)

    @guarded
    async def add_piece(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return err(404, "unknown session")
        label = request.query_params.get("name", "")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            data = await json_body(request)
            if data is None:
                return err(400, f"send one JSON object of at most {MAX_JSON // 1024} KB: {{\"notes\": [[start s, duration s, pitch, velocity], ...], \"qpm\": 120}}")
            score = played_score(data.get("notes"), data.get("qpm", 120.0), data.get("program", 0))
            piece = session.add(score, label or "played", origin="played")
        else:
            limit = int(current().max_file_bytes)
            data = await read_body(request, limit)
            if data is None:
                return err(413, f"the file is larger than limits.max_file_bytes={limit:,} bytes")
            score = await run_in_threadpool(parse_upload, data)
            piece = session.add(score, label or "upload", origin="upload")
        return JSONResponse(piece.describe(), status_code=201)

    @guarded
    async def get_piece(request: Request) -> Response:
        session = session_of(request)
        piece = piece_of(session, request.path_params["piece"]) if session else None
        if piece is None:
            return err(404, "unknown session or piece")
        return JSONResponse(piece.describe())

    @guarded
    async def piece_midi(request: Request) -> Response:
        session = session_of(request)
        piece = piece_of(session, request.path_params["piece"]) if session else None
        if piece is None:
            return err(404, "unknown session or piece")
        path = await run_in_threadpool(session.midi_path, piece)
        name = re.sub(r"[^A-Za-z0-9_.+-]+", "_", piece.label)[:60].strip("._") or "piece"
        return FileResponse(path, media_type="audio/midi", filename=f"{name}.mid")

    @guarded
    async def piece_audio(request: Request) -> Response:
        session = session_of(request)
        piece = piece_of(session, request.path_params["piece"]) if session else None
        if piece is None:
            return err(404, "unknown session or piece")
        if not renderer.available:
            return err(503, "no soundfont: the page plays its own synthesiser (install one: apt-get install timgm6mb-soundfont)")

        def render() -> Path | None:
            path = session.folder / f"{piece.id}.wav"
            if path.is_file():
                return path
            with render_lock:
                return renderer.render(piece.score, path)

        path = await run_in_threadpool(render)
        if path is None:
            return err(503, "audio rendering failed (see the server's output); the page plays its own synthesiser")
        return FileResponse(path, media_type="audio/wav")

    def to_rows(score: Any, tracks: list[int]) -> list[list[float]]:
        return Piece("", score, "", tracks).notes()

    @guarded
    async def generate(request: Request) -> Response:
        data = await json_body(request)
        if data is None:
            return err(400, f"send one JSON object of at most {MAX_JSON // 1024} KB (see docs/studio.md)")
        sid = data.get("session")
        try:
            session = sessions.get(sid) if isinstance(sid, str) and ID.match(sid) else None
        except KeyError:
            session = None
        if session is None:
            return err(404, "unknown session: POST /api/sessions first")
        action_name = data.get("action")
        if action_name not in actions:
            return err(422, f"action must be one of {', '.join(actions)}, got {action_name!r}")
        action = actions[action_name]
        model_id = data.get("model")
        if model_id not in catalog.entries:
            return err(422, f"model must be one of {', '.join(catalog.entries) or '(none)'}, got {model_id!r}")
        params = action.check_params(data.get("params"))
        given = data.get("pieces") or {}
        if not isinstance(given, dict):
            return err(422, "pieces must be an object {input name: piece id}")
        pieces = {}
        for name in action.inputs:
            piece = piece_of(session, given.get(name))
            if piece is None:
                return err(422, f"{action_name!r} needs pieces.{name}: the id of a piece of this session")
            pieces[name] = piece
        seed = data.get("seed")
        if seed is None:
            seed = secrets.randbelow(2_000_000_000)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            return err(422, f"seed must be a whole number >= 0, got {seed!r}")
        loaded = await run_in_threadpool(catalog.get, model_id)
        if not action.supports(loaded):
            return err(422, f"the model {model_id!r} cannot {action_name!r}; it supports: "
                            f"{', '.join(n for n, a in actions.items() if a.supports(loaded)) or 'nothing here'}")
        sampler_section = data.get("sampler") or loaded.sampler
        sampler = build_sampler_chain(sampler_section, registries=registries) if action.uses_sampler else None
        stream = bool(data.get("stream", False))
        job_id = secrets.token_hex(8)

        def work(job: Any) -> dict[str, Any]:
            while not loaded.lock.acquire(timeout=0.05):  # one generation per model at a time
                if job.cancel.is_set():
                    from musicfw.engine.generation import GenerationCancelled

                    raise GenerationCancelled("cancelled while waiting")
            try:
                ctx = ActionContext(loaded, sampler, params, pieces, int(seed), job.cancel, job.emit, to_rows)
                result = action().run(ctx)
            finally:
                loaded.lock.release()
            piece = session.add(result.score, result.label, result.generated, origin=action_name)
            stats = dict(result.stats)
            return {"job": job.id, "seed": int(seed), "piece": piece.describe(), "stats": stats}

        job = jobs.start(job_id, action_name, work)
        if job is None:
            return err(429, f"{jobs.max_running} generations are running; cancel one or try again in a moment")

        if not stream:
            try:
                while job.thread.is_alive():
                    if await request.is_disconnected():
                        job.cancel.set()
                        break
                    await asyncio.sleep(0.02)
            finally:
                if job.thread.is_alive():
                    job.cancel.set()
            await run_in_threadpool(job.thread.join)
            if job.state == "done":
                return JSONResponse(job.result)
            if job.state == "cancelled":
                return err(409, "cancelled")
            return err(job.status, job.error or "failed")

        async def events() -> Any:
            finished = False
            try:
                yield f"data: {json.dumps({'type': 'job', 'job': job.id, 'seed': int(seed)})}\n\n"
                while True:
                    try:
                        event = job.events.get_nowait()
                    except Exception:
                        await asyncio.sleep(POLL)
                        continue
                    yield f"data: {json.dumps(event)}\n\n"
                    if event["type"] in ("done", "cancelled", "error"):
                        finished = True
                        return
            finally:
                if not finished:  # the client went away: free the work at once
                    job.cancel.set()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", "X-Job": job.id})

    @guarded
    async def cancel(request: Request) -> Response:
        try:
            job = jobs.get(request.path_params["job"])
        except KeyError:
            return err(404, "unknown job")
        job.cancel.set()
        await run_in_threadpool(job.thread.join, 5.0)
        return JSONResponse(job.describe())

    @guarded
    async def job_status(request: Request) -> Response:
        try:
            job = jobs.get(request.path_params["job"])
        except KeyError:
            return err(404, "unknown job")
        return JSONResponse(job.describe())

    async def not_found(request: Request, exc: Exception) -> Response:
        return err(404, "not found")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return err(405, "method not allowed")

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/models/{model:str}/load", load_model, methods=["POST"]),
        Route("/api/sessions", new_session, methods=["POST"]),
        Route("/api/sessions/{session}/pieces", add_piece, methods=["POST"]),
        Route("/api/sessions/{session}/pieces/{piece}", get_piece),
        Route("/api/sessions/{session}/pieces/{piece}/midi", piece_midi),
        Route("/api/sessions/{session}/pieces/{piece}/audio", piece_audio),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/jobs/{job}/cancel", cancel, methods=["POST"]),
        Route("/api/jobs/{job}", job_status),
    ]
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        try:
            yield
        finally:  # stop every job and remove every session folder
            jobs.cancel_all()
            sessions.close()

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed}, lifespan=lifespan)

    async def checked(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
            if not host_allowed(host, allowed, False):
                await JSONResponse({"error": "this server does not answer to that host name (see --allow-host)"},
                                   status_code=400)(scope, receive, send)
                return
        await app(scope, receive, send)

    checked.jobs = jobs  # for tests and embedding: the running jobs
    checked.sessions = sessions
    checked.app = app
    return checked


def serve(catalog: Catalog, first: str | None, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          allow_hosts: Any = (), soundfont: Any = None, log: Any = print) -> None:
    import socket

    import uvicorn

    from musicfw.core.errors import ConfigError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port.") from None
    token = token or secrets.token_urlsafe(16)
    if first is not None:  # built before the first click, so the first generation starts at once
        log(f"loading {first} ...")
        catalog.get(first)
    app = create_app(catalog, token, allow_hosts=allow_hosts, soundfont=soundfont)
    shown = f"[{host}]" if ":" in host else host
    log(f"musicfw studio: http://{shown}:{port}/?token={token}")
    log("(this machine only; the token keeps other pages and users out. Ctrl-C stops it.)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
