"""``musicfw listen export STUDY --csv``: every answer of a study, one CSV row per answer.

Columns::

    rater      the rater's number (1, 2, ... in the order they started; as in ``listen results``)
    rater_id   the rater's random id (as in ratings.sqlite and the progress page)
    item       the item id (manifest.json)
    repeat_of  the item this one repeats (``--repeats``), else empty
    test       mos | ab | mushra
    clip       the clip rated (MOS, MUSHRA) or chosen (A/B; "none" for no preference)
    system     its system: a run's name, reference, anchor (low anchor), mid_anchor
    role       hidden_reference, low_anchor or mid_anchor for a MUSHRA condition, else empty
    compared   A/B only: the pair's two systems, "a|b" in the manifest's order
    value      MOS 1-5, MUSHRA 0-100; A/B the chosen system's name or "none"
    time       when the answer was stored (UTC, ISO 8601)
    elapsed    seconds from the item first shown to the answer
    excluded   empty, or the reasons ``listen results`` excludes the rater for

A MUSHRA answer is one row per condition (the slider is the answer).  Rows come in the order
the answers were stored.
"""

from __future__ import annotations

import csv
import datetime as _dt
from typing import Any, TextIO

from .db import fetch_raters, fetch_ratings, open_existing
from .stats import screen_raters
from .study import Study

COLUMNS = ("rater", "rater_id", "item", "repeat_of", "test", "clip", "system", "role", "compared", "value",
           "time", "elapsed", "excluded")


def export_rows(study: Study) -> list[dict[str, Any]]:
    conn = open_existing(study.db_path, study.manifest["study_id"])
    try:
        ratings, raters = fetch_ratings(conn), fetch_raters(conn)
    finally:
        conn.close()
    items, clips = study.items, study.clips
    ratings = sorted((r for r in ratings if r["item"] in items), key=lambda r: (r["created"], r["rater"], r["item"]))
    number, exclusions = screen_raters(study, ratings, raters)
    why = {e["rater"]: "; ".join(e["reasons"]) for e in exclusions}
    rows = []
    for r in ratings:
        item = items[r["item"]]
        base = {
            "rater": number[r["rater"]], "rater_id": r["rater"], "item": r["item"], "repeat_of": item.get("repeat_of", ""),
            "test": r["kind"], "role": "", "compared": "",
            "time": _dt.datetime.fromtimestamp(r["created"], _dt.timezone.utc).isoformat(timespec="milliseconds"),
            "elapsed": round(float(r["elapsed"]), 3), "excluded": why.get(number[r["rater"]], ""),
        }
        if r["kind"] == "mos":
            rows.append({**base, "clip": item["clip"], "system": clips[item["clip"]]["system"], "value": r["score"]})
        elif r["kind"] == "ab":
            chosen = r["choice"]
            system = "none" if chosen == "none" else clips[chosen]["system"]
            rows.append({**base, "clip": chosen, "system": system, "value": system,
                         "compared": "|".join(clips[c]["system"] for c in item["clips"])})
        else:
            for clip in item["clips"]:
                if clip in r.get("scores", {}):
                    rows.append({**base, "clip": clip, "system": clips[clip]["system"],
                                 "role": clips[clip].get("role", ""), "value": r["scores"][clip]})
    return rows


def export_csv(study: Study, out: TextIO) -> int:
    """Write the rows of :func:`export_rows` to ``out``; returns how many."""
    rows = export_rows(study)
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return len(rows)
