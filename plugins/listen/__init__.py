"""Listening tests: ``musicfw listen create | serve | results | export``.

A built-in plugin written as a third-party one would be: it adds the ``listen`` verb through the
public ``musicfw_register_commands`` hook.  This module stays cheap to import (the CLI imports it
at start-up); the study builder (:mod:`.study`), the web app (:mod:`.server`, Starlette on
uvicorn), the database (:mod:`.db`, SQLite), the statistics (:mod:`.stats`) and the CSV export
(:mod:`.export`) are imported when a sub-command runs.  See docs/listening.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from musicfw.core.command import Command
from musicfw.core.hookspecs import hookimpl


class Listen(Command):
    name = "listen"
    help = "listening tests: create a blinded MOS, A/B or MUSHRA study, serve it in the browser, compute the results"
    description = (
        "Subjective evaluation. `listen create` cuts clips at bar lines from runs' generated samples and "
        "from reference pieces, renders them with one soundfont at -23 LUFS and writes a study folder; "
        "`listen serve` runs the rating page (blinded, per-rater shuffled MOS, A/B and MUSHRA items; answers in "
        "SQLite; a token-protected progress page); `listen results` screens raters and computes MOS and MUSHRA "
        "means with bootstrap intervals, Wilcoxon tests with Holm's correction, exact win-rate intervals, "
        "Bradley-Terry strengths and inter-rater agreement, and writes them into each run's metrics.json; "
        "`listen export` writes every answer as CSV."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="listen_command", metavar="{create,serve,results,export}")
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
        c.add_argument("--tests", default="mos,ab", metavar="mos,ab,mushra",
                       help="which tests the study holds, comma-separated (default mos,ab; mushra needs a reference)")
        c.add_argument("--repeats", type=int, default=0,
                       help="MOS and MUSHRA items shown twice for a consistency score (default 0)")
        c.add_argument("--require-headphones", action="store_true",
                       help="exclude raters who say they did not listen with headphones")
        c.add_argument("--no-training", action="store_true", help="leave out the training page (examples before the test)")
        c.add_argument("--out", required=True, metavar="STUDY", help="the new study folder (must not exist or be empty)")

        s = sub.add_parser("serve", help="serve a study's rating page",
                           description="Serve the study's rating page and collect answers into STUDY/ratings.sqlite.")
        s.add_argument("study", metavar="STUDY")
        s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
        s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
        s.add_argument("--token", default=None, help="require ?token=TOKEN in the rater link")
        s.add_argument("--admin-token", default=None,
                       help="the token of the progress page /progress?token=ADMIN (default: a random one, printed)")
        s.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="a host name raters use in the address (the Host header); IP addresses and localhost "
                            "are always accepted, and any name when --token is set (repeatable)")

        r = sub.add_parser("results", help="compute a study's results and write them into the runs' metrics.json",
                           description="Rater screening (the MOS attention check, BS.1534-3 post-screening of MUSHRA, "
                                       "headphones when required; every exclusion with its reason), MOS and MUSHRA means "
                                       "with 95% bootstrap intervals, Wilcoxon signed-rank tests with Holm's correction, "
                                       "A/B win rates with exact intervals, Bradley-Terry strengths with bootstrap "
                                       "intervals, the consistency of repeated items and Krippendorff's alpha; written "
                                       "into the `listening` section of each run's metrics.json (and report.html).")
        r.add_argument("study", metavar="STUDY")
        r.add_argument("--json", action="store_true", help="print the results as JSON")
        r.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
        r.add_argument("--no-write", action="store_true", help="do not update the runs' metrics.json and report.html")

        e = sub.add_parser("export", help="write every answer of a study as CSV",
                           description="One row per answer (a MUSHRA item gives one row per condition): rater, "
                                       "item, system, test, value, time and more; see docs/listening.md.")
        e.add_argument("study", metavar="STUDY")
        e.add_argument("--csv", action="store_true", required=True, help="CSV (the only format)")
        e.add_argument("--out", default="-", metavar="FILE", help="write to FILE (default: standard output)")

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
                soundfont=args.soundfont, ask_expertise=not args.no_expertise_question, tests=args.tests,
                repeats=args.repeats, require_headphones=args.require_headphones, training=not args.no_training,
            )
            from .study import load_study

            study = load_study(out)
            kinds = [i["kind"] for i in study.manifest["items"]]
            print(f"wrote the study {out}: {len(study.manifest['clips'])} clips, {kinds.count('mos')} MOS, "
                  f"{kinds.count('ab')} A/B and {kinds.count('mushra')} MUSHRA items per rater")
            print(f"serve it with: musicfw listen serve {out}")
            return 0
        if cmd == "serve":
            if not 0 < args.port < 65536:
                raise ConfigError(f"--port must be between 1 and 65535, got {args.port}.")
            for flag, value in (("--token", args.token), ("--admin-token", args.admin_token)):
                if value is not None and (len(value) < 8 or not value.isascii() or not value.replace("-", "").replace("_", "").isalnum()):
                    raise ConfigError(f"{flag} must be at least 8 characters of letters, digits, '-' or '_'.")
            from .server import serve
            from .study import load_study

            serve(load_study(args.study), host=args.host, port=args.port, token=args.token,
                  admin_token=args.admin_token, allow_hosts=args.allow_host)
            return 0
        if cmd == "results":
            import json

            from .stats import format_results, study_results, write_listening
            from .study import load_study

            study = load_study(args.study)  # a missing or damaged clip is refused here as by serve
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
        if cmd == "export":
            from .export import export_csv
            from .study import load_study

            study = load_study(args.study)
            if args.out == "-":
                import sys

                export_csv(study, sys.stdout)
            else:
                with open(args.out, "w", newline="", encoding="utf-8") as fh:
                    export_csv(study, fh)
                _stderr(f"wrote {args.out}")
            return 0
        raise ConfigError(f"unknown listen command {cmd!r}; use create, serve, results or export.")  # pragma: no cover


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
