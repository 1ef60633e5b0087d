"""A CLI verb added by the plugin: ``musicfw pitches FILE.mid`` prints a file's tokens."""

from __future__ import annotations

from musicfw.core.command import Command
from musicfw.core.errors import DataError


class Pitches(Command):
    name = "pitches"
    help = "print a MIDI file as pitch_sequence tokens, one bar per line"

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE.mid")
        parser.add_argument("--notes-per-bar", type=int, default=8)

    def run(self, args, context):
        import symusic

        tokenizer = context.build("tokenizer", "pitch_sequence", notes_per_bar=args.notes_per_bar)
        try:
            score = symusic.Score(args.file)
        except Exception as exc:
            raise DataError(f"cannot read {args.file} as MIDI: {exc}") from None
        names = tokenizer.token_names(tokenizer.encode(score))
        line: list[str] = []
        for name in names:
            if name == "Bar" and line:
                print(" ".join(line))
                line = []
            line.append(name)
        if line:
            print(" ".join(line))
        return 0
