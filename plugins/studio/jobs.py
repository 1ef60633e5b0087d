"""Generation jobs: one thread each, a cancel flag, and a queue of events for the client.

A job runs an action in its own thread (torch at one thread, see
:func:`musicfw.engine.generation.generate`); the request that started it reads its events.  When
the client cancels (``POST /api/jobs/<id>/cancel``) or goes away (the stream's connection
closes), the job's flag is set, the generation loop stops before its next token and the thread
ends: nothing keeps running for a client that no longer listens.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from typing import Any, Callable

from musicfw.core.errors import ConfigError, DataError, PluginError, RunFolderError, UserError

#: jobs running at once at most (the CPU is shared; a third request is told to wait: 429)
MAX_RUNNING = 2
#: finished jobs remembered (for GET /api/jobs/<id>)
KEEP_FINISHED = 64
USER_ERRORS = (ConfigError, DataError, PluginError, RunFolderError, UserError)


class Job:
    def __init__(self, job_id: str, action: str):
        self.id = job_id
        self.action = action
        self.cancel = threading.Event()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.state = "running"  # running | done | cancelled | error
        self.error: str | None = None
        self.status = 200  # the HTTP status of the answer: 422 for a user's mistake, 500 for our bug
        self.result: dict[str, Any] | None = None
        self.thread: threading.Thread | None = None
        self.started = time.perf_counter()
        self.tokens = 0

    def emit(self, event: dict[str, Any]) -> None:
        if event.get("type") == "notes":
            self.tokens = int(event.get("tokens", self.tokens))
        self.events.put(event)

    def describe(self) -> dict[str, Any]:
        return {"job": self.id, "action": self.action, "state": self.state, "error": self.error,
                "tokens": self.tokens, "alive": bool(self.thread and self.thread.is_alive())}


class Jobs:
    def __init__(self, max_running: int = MAX_RUNNING):
        self.max_running = max_running
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def running(self) -> int:
        return sum(1 for j in self._jobs.values() if j.thread is not None and j.thread.is_alive())

    def start(self, job_id: str, action: str, work: Callable[[Job], dict[str, Any]]) -> Job | None:
        """A started job, or None when :attr:`max_running` jobs run already."""
        with self._lock:
            if self.running() >= self.max_running:
                return None
            job = Job(job_id, action)
            self._jobs[job_id] = job
            done = [k for k, j in self._jobs.items() if j.state != "running"]
            for k in done[: max(0, len(done) - KEEP_FINISHED)]:
                del self._jobs[k]
            job.thread = threading.Thread(target=self._run, args=(job, work), name=f"studio-job-{job_id}", daemon=True)
            job.thread.start()
            return job

    def _run(self, job: Job, work: Callable[[Job], dict[str, Any]]) -> None:
        from musicfw.engine.generation import GenerationCancelled

        try:
            job.result = work(job)
            if job.cancel.is_set():
                raise GenerationCancelled("cancelled")
            job.state = "done"
            job.events.put({"type": "done", **job.result})
        except GenerationCancelled:
            job.state = "cancelled"
            job.events.put({"type": "cancelled", "job": job.id})
        except USER_ERRORS as exc:
            job.state, job.error, job.status = "error", str(exc), 422
            job.events.put({"type": "error", "error": str(exc), "status": 422})
        except Exception as exc:  # our bug: keep the traceback (server log) and tell the client
            traceback.print_exc()
            job.state, job.error, job.status = "error", f"{type(exc).__name__}: {exc}", 500
            job.events.put({"type": "error", "error": job.error, "status": 500})

    def get(self, job_id: str) -> Job:
        with self._lock:
            return self._jobs[job_id]

    def cancel_all(self) -> None:
        with self._lock:
            for j in self._jobs.values():
                j.cancel.set()
