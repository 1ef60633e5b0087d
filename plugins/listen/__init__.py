"""Listening tests: ``musicfw listen create | serve | results``.

A built-in plugin written as a third-party one would be: it adds the ``listen`` verb through the
public ``musicfw_register_commands`` hook.  This module stays cheap to import (the CLI imports it
at start-up); the study builder (:mod:`.study`), the web app (:mod:`.server`, Starlette on
uvicorn), the database (:mod:`.db`, SQLite) and the statistics (:mod:`.stats`) are imported
when a sub-command runs.  See docs/listening.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from musicfw.core.command import Command
from musicfw.core.hookspecs import hookimpl


class Listen(Command):
    name = "listen"
    help = "listening tests: create a blinded MOS + A/B study, serve it in the browser, compute the results"
    description = (
        "Subjective evaluation. `listen create` cuts clips at bar lines from runs' generated samples and "
        "from reference pieces, renders them with one soundfont at -23 LUFS and writes a study folder; "
        "`listen serve` runs the rating page (blinded, per-rater shuffled MOS and A/B items; answers in "
        "SQLite); `listen results` computes MOS with bootstrap intervals, A/B win rates, Bradley-Terry "
        "strengths and inter-rater agreement, and writes them into each run's metrics.json."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="listen_command", metavar="{create,serve,results}")
        sub.required = True

        c = sub.add_parser("create", help="build a study folder from runs' samples and a reference",
                           description="Build a study folder (clips, audio, manifest.json) from the samples of "
                                       "each --run and from the reference pieces.")
        c.add_argument("--run", action="append", required=True, metavar="RUN",
                       help="a run folder whose samples/*.mid are one system (repeat for more systems)")
        c.add_argument("--reference", default="test", metavar="test|valid|train|DIR|none",
                       help="the reference system: a split of the first run's dataset (default test), a folder "
                            "of MIDI files, or none")
        c.add_argument("--clips", type=int, default=8, help="clips per system (default 8)")
        c.add_argument("--seconds", type=float, default=20.0, help="about how long a clip is; cut at bar lines (default 20)")
        c.add_argument("--anchors", type=int, default=None,
                       help="low-anchor clips (pitch-shuffled reference clips) for the attention check "
                            "(default 1 with a reference, 0 without)")
        c.add_argument("--pairs", type=int, default=None,
                       help="A/B pairs per pair of systems (default: --clips; 0 = MOS only)")
        c.add_argument("--min-play", type=float, default=10.0,
                       help="seconds a clip must play before it can be rated (default 10)")
        c.add_argument("--seed", type=int, default=0, help="seed of the clip choice (default 0)")
        c.add_argument("--soundfont", default=None, metavar="SF2",
                       help="General MIDI soundfont (default: $MUSICFW_SOUNDFONT or the Debian TimGM6mb)")
        c.add_argument("--no-expertise-question", action="store_true", help="do not ask raters about their musical background")
        c.add_argument("--out", required=True, metavar="STUDY", help="the new study folder (must not exist or be empty)")

        s = sub.add_parser("serve", help="serve a study's rating page",
                           description="Serve the study's rating page and collect answers into STUDY/ratings.sqlite.")
        s.add_argument("study", metavar="STUDY")
        s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
        s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
        s.add_argument("--token", default=None, help="require ?token=TOKEN in the rater link")

        r = sub.add_parser("results", help="compute a study's results and write them into the runs' metrics.json",
                           description="MOS with 95%% bootstrap intervals, A/B win rates, Bradley-Terry strengths, "
                                       "attention-check exclusions and Krippendorff's alpha; written into the "
                                       "`listening` section of each run's metrics.json (and report.html).")
        r.add_argument("study", metavar="STUDY")
        r.add_argument("--json", action="store_true", help="print the results as JSON")
        r.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
        r.add_argument("--no-write", action="store_true", help="do not update the runs' metrics.json and report.html")

    def run(self, args: argparse.Namespace, context: Any) -> int:
        from musicfw.core.errors import ConfigError

        cmd = args.listen_command
        if cmd == "create":
            from .study import create_study

            reference = None if str(args.reference).lower() == "none" else args.reference
            anchors = args.anchors if args.anchors is not None else (1 if reference else 0)
            out = create_study(
                args.run, args.out, reference=reference, clips=args.clips, seconds=args.seconds,
                anchors=anchors, pairs=args.pairs, seed=args.seed, min_play=args.min_play,
                soundfont=args.soundfont, ask_expertise=not args.no_expertise_question,
            )
            from .study import load_study

            study = load_study(out)
            n_mos = sum(1 for i in study.manifest["items"] if i["kind"] == "mos")
            print(f"wrote the study {out}: {len(study.manifest['clips'])} clips, {n_mos} MOS and "
                  f"{len(study.manifest['items']) - n_mos} A/B items per rater")
            print(f"serve it with: musicfw listen serve {out}")
            return 0
        if cmd == "serve":
            if not 0 < args.port < 65536:
                raise ConfigError(f"--port must be between 1 and 65535, got {args.port}.")
            if args.token is not None and (len(args.token) < 8 or not args.token.isascii() or not args.token.replace("-", "").replace("_", "").isalnum()):
                raise ConfigError("--token must be at least 8 characters of letters, digits, '-' or '_'.")
            from .server import serve
            from .study import load_study

            serve(load_study(args.study), host=args.host, port=args.port, token=args.token)
            return 0
        if cmd == "results":
            import json

            from .stats import format_results, study_results, write_listening
            from .study import load_study

            study = load_study(args.study, check_audio=False)
            results = study_results(study, seed=args.seed)
            if args.no_write:
                pass
            elif results["raters"]["included"] == 0:
                _stderr("note: no included rater has answered yet; the runs' metrics.json were left alone.")
            else:
                for path in write_listening(study, results, log=_stderr):
                    _stderr(f"wrote the listening section of {path}")
                    if _refresh_report(path.parent):
                        _stderr(f"updated {path.parent / 'report.html'}")
            print(json.dumps(results, indent=1) if args.json else format_results(results))
            return 0
        raise ConfigError(f"unknown listen command {cmd!r}; use create, serve or results.")  # pragma: no cover


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


def _refresh_report(run_dir: Any) -> bool:
    """Rewrite the run's report.html (when it has one) so that it shows the listening section."""
    from pathlib import Path

    if not (Path(run_dir) / "report.html").is_file():
        return False
    from musicfw.engine.report import write_report

    write_report(run_dir)
    return True


@hookimpl
def musicfw_register_commands(commands):
    commands.add(Listen)


@hookimpl
def musicfw_report_sections(report):
    from .report import report_sections

    return report_sections(report)
