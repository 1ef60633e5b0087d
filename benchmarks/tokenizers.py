"""Tokenizer speed: musicfw's remi and midi_like against MidiTok's REMI and MIDILike, and
musicfw's ``miditok`` tokenizer plugin (MidiTok's REMI behind musicfw's Tokenizer API) next
to our remi (row ``remi|plugin``: the right-hand side is the plugin, ids as numpy arrays).

Both sides start from the same in-memory ``symusic.Score`` objects and use their default
configs.  For each corpus the table gives encode and decode throughput in each side's own
tokens per second (best of --repeat runs over the whole corpus), the ratio, and symusic's
bare parse time of the same files as the floor (what a tokenizer as fast as the MIDI parser
would take).  Corpora: tests/data/midi/one_track and multitrack (copies of ../shared/midi), and Bach
chorales from music21's corpus (converted to MIDI in a temporary folder first).

    python benchmarks/tokenizers.py [--bach 20] [--repeat 3]

MidiTok is a benchmark-only dependency (``pip install musicfw[bench]``).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# this file is named like HuggingFace's `tokenizers`, which MidiTok imports: keep the
# script's own folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
SHARED_MIDI = REPO / "tests" / "data" / "midi"  # copies of ../shared/midi


def bach_chorales(n: int, folder: Path) -> list[Path]:
    from music21 import corpus

    paths = []
    for i, name in enumerate(corpus.getComposer("bach")):
        if len(paths) >= n:
            break
        if "bwv" not in Path(name).name:
            continue
        try:
            stream = corpus.parse(name)
            out = folder / f"{i:03d}_{Path(name).stem}.mid"
            stream.write("midi", fp=str(out))
            paths.append(out)
        except Exception as exc:  # a corpus file music21 cannot convert: skip with a reason
            print(f"  skipped {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return paths


def count_tokens(x) -> int:
    """Tokens in a MidiTok result (a TokSequence or nested lists of them)."""
    if hasattr(x, "ids"):
        return len(x.ids)
    if hasattr(x, "ndim"):  # a musicfw tokenizer's id array
        return len(x)
    return sum(count_tokens(y) for y in x)


def best_time(fn, repeat: int, setup=None) -> tuple[float, object]:
    """Best wall time of ``fn()`` (or ``fn(setup())``, the setup not timed) over ``repeat`` runs."""
    best, out = float("inf"), None
    for _ in range(repeat):
        arg = setup() if setup is not None else None
        t = time.perf_counter()
        out = fn(arg) if setup is not None else fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bach", type=int, default=20, help="number of Bach chorales (0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is kept)")
    args = parser.parse_args(argv)

    from importlib import metadata

    import symusic

    try:
        import miditok
    except ImportError:
        print("miditok is not installed: pip install 'miditok>=3.0'", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")
    from musicfw.plugins.tokenizers.midi_like import MIDILike
    from musicfw.plugins.tokenizers.miditok_wrap import MidiTok, MidiTokConfig
    from musicfw.plugins.tokenizers.remi import REMI, REMIConfig

    corpora: dict[str, list[Path]] = {}
    for name in ("one_track", "multitrack"):
        files = sorted((SHARED_MIDI / name).glob("*.mid"))
        if files:
            corpora[name] = files
        else:
            print(f"(no {name} corpus at {SHARED_MIDI / name})", file=sys.stderr)
    tmp = tempfile.TemporaryDirectory()
    if args.bach > 0:
        t = time.perf_counter()
        corpora["bach"] = bach_chorales(args.bach, Path(tmp.name))
        print(f"converted {len(corpora['bach'])} Bach chorales to MIDI in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    pairs = [
        ("remi", REMI(), miditok.REMI()),
        ("remi+prog", REMI(REMIConfig(use_programs=True)), miditok.REMI()),
        ("midi_like", MIDILike(), miditok.MIDILike()),
        ("remi|plugin", REMI(), MidiTok(MidiTokConfig(tokenizer="REMI"))),
    ]
    header = (
        f"{'corpus':<11} {'files':>5} {'notes':>7} {'parse ms':>8} | {'tokenizer':<11} "
        f"{'tokens':>7} {'enc tok/s':>10} {'MidiTok':>10} {'ratio':>6} | "
        f"{'dec tok/s':>10} {'MidiTok':>10} {'ratio':>6} | {'floor tok/s':>11}"
    )
    print(header)
    print("-" * len(header))
    for corpus_name, files in corpora.items():
        blobs = [f.read_bytes() for f in files]
        parse_s, scores = best_time(lambda: [symusic.Score.from_midi(b) for b in blobs], args.repeat)
        n_notes = sum(s.note_num() for s in scores)
        for label, ours, theirs in pairs:
            enc_s, ids = best_time(lambda: [ours.encode(s) for s in scores], args.repeat)
            dec_s, _ = best_time(lambda: [ours.decode(x) for x in ids], args.repeat)
            n_ours = sum(len(x) for x in ids)
            m_enc_s, seqs = best_time(lambda: [theirs.encode(s) for s in scores], args.repeat)
            n_theirs = count_tokens(seqs)
            # MidiTok's decode modifies the TokSequences it is given: decode fresh copies
            m_dec_s, _ = best_time(
                lambda fresh: [theirs.decode(x) for x in fresh], args.repeat, setup=lambda: copy.deepcopy(seqs)
            )
            enc_tps, m_enc_tps = n_ours / enc_s, n_theirs / m_enc_s
            dec_tps, m_dec_tps = n_ours / dec_s, n_theirs / m_dec_s
            print(
                f"{corpus_name:<11} {len(files):>5} {n_notes:>7} {parse_s * 1e3:>8.1f} | {label:<11} "
                f"{n_ours:>7} {enc_tps:>10.3g} {m_enc_tps:>10.3g} {enc_tps / m_enc_tps:>5.1f}x | "
                f"{dec_tps:>10.3g} {m_dec_tps:>10.3g} {dec_tps / m_dec_tps:>5.1f}x | {n_ours / parse_s:>11.3g}"
            )
    print(
        "\ntok/s: each side's own tokens per second over the corpus (best of "
        f"{args.repeat}); MidiTok {metadata.version('miditok')} default REMI()/MIDILike() (one sequence per "
        "track, drums included); remi: pitched tracks merged, drums dropped; remi+prog: every track with "
        "Program tokens; remi|plugin: our remi against musicfw's miditok plugin wrapping MidiTok's REMI() "
        "(pitched tracks merged into one stream, drums dropped, as our remi does). floor: our tokens / "
        "symusic parse time of the same files."
    )
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
