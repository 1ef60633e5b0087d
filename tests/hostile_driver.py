"""The child process of tests/test_hostile_corpus.py: runs every case of a corpus in ONE Python
process (one torch import for all), each as ``musicfw.cli.main(argv)`` with a per-case SIGALRM
timeout, its output captured at the file-descriptor level, anything raised caught, and the
folders it must not change snapshotted before and after.  One JSON line per case goes to the
results file as soon as the case ends (a crash of the whole process still leaves the earlier
results and names the case it died in).

    python tests/hostile_driver.py CASES.json RESULTS.jsonl

Each case: ``{"name", "argv", "env": {}, "timeout": s, "unchanged": [folders], "setup":
"module:function" or null, "setup_args": [...]}``; ``setup`` (from tests/) prepares the case's
files first (a shard folder to damage, a checkpoint to write), inside the same timeout, before
the ``unchanged`` folders are snapshotted; an argument ``{ONLY:folder}`` is the one entry of
``folder`` when the case starts (a run folder an earlier case made).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path


class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case that runs past its timeout."""


def _alarm(signum, frame):  # noqa: ARG001
    raise CaseTimeout()


def snapshot(folder: str) -> dict[str, list]:
    """Every entry under ``folder``: relative path -> [kind, size, mtime_ns] (links not followed)."""
    out = {}
    root = Path(folder)
    if not root.exists():
        return {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            out[str(path.relative_to(root))] = [kind, st.st_size if kind == "file" else 0, st.st_mtime_ns]
    return out


def _resolve(arg: str) -> str:
    """``{ONLY:folder}``: the one entry of ``folder`` (a run or shard folder an earlier case made)."""
    if arg.startswith("{ONLY:") and arg.endswith("}"):
        (entry,) = Path(arg[6:-1]).iterdir()
        return str(entry)
    return arg


def _fresh_process_state() -> None:
    """What a new ``musicfw`` process starts with: the environment's limits, nothing configured."""
    from musicfw.music import limits

    limits._active = None
    limits._run = ({}, "limits")
    limits._command = ({}, "limits")


def run_case(case: dict) -> dict:
    from musicfw.cli import main

    watched: dict[str, dict] = {}
    saved_env = dict(os.environ)
    os.environ.update(case.get("env") or {})
    _fresh_process_state()
    capture = tempfile.TemporaryFile(mode="w+b")
    sys.stdout.flush()
    sys.stderr.flush()
    fd_out, fd_err = os.dup(1), os.dup(2)
    os.dup2(capture.fileno(), 1)
    os.dup2(capture.fileno(), 2)
    result = {"name": case["name"], "rc": None, "error": None, "timeout": False}
    start = time.monotonic()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(case.get("timeout", 60)))
    try:
        if case.get("setup"):
            module, _, func = case["setup"].partition(":")
            getattr(importlib.import_module(module), func)(*case.get("setup_args", []))
        watched.update({folder: snapshot(folder) for folder in case.get("unchanged", [])})
        result["rc"] = main([_resolve(arg) for arg in case["argv"]])
    except CaseTimeout:
        result["timeout"] = True
    except SystemExit as exc:  # argparse's own exit
        result["rc"] = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - everything is a finding
        result["error"] = traceback.format_exc()[-4000:]
    finally:
        signal.alarm(0)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os.dup2(fd_out, 1)
        os.dup2(fd_err, 2)
        os.close(fd_out)
        os.close(fd_err)
        os.environ.clear()
        os.environ.update(saved_env)
    result["seconds"] = round(time.monotonic() - start, 3)
    capture.seek(0)
    result["output"] = capture.read().decode("utf-8", "replace")[-6000:]
    capture.close()
    result["changed"] = {}
    for folder, before in watched.items():
        after = snapshot(folder)
        diff = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        if diff:
            result["changed"][folder] = diff[:20]
    return result


def main_driver(cases_path: str, results_path: str) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    cases = json.loads(Path(cases_path).read_text())
    with open(results_path, "a", encoding="utf-8") as results:
        for case in cases:
            results.write(json.dumps({"started": case["name"]}) + "\n")
            results.flush()
            results.write(json.dumps(run_case(case)) + "\n")
            results.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main_driver(sys.argv[1], sys.argv[2]))
