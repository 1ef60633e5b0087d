"""Case preparations that run inside the hostile-corpus child (tests/hostile_driver.py), after an
earlier case made what they start from (a trained run, a prepared shard folder): each writes one
hostile input, reusing the generators of the tests that own the surface."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def checkpoint(runs: str, out: str, kind: str) -> None:
    """A checkpoint that ``weights_only`` loads but that is not this run's model's (class 2),
    written from the run's own ``last.ckpt`` as tests/test_training.py makes them."""
    import torch

    (run,) = Path(runs).iterdir()
    good = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    if kind == "empty_state_dict":
        bad = {**good, "state_dict": {}}
    elif kind == "state_dict_not_a_mapping":
        bad = {**good, "state_dict": "abc"}
    elif kind == "wrong_shapes":
        bad = {**good, "state_dict": {k: (torch.zeros(3, 3) if v.ndim == 2 else v) for k, v in good["state_dict"].items()}}
    elif kind == "no_lightning_version":
        bad = {"state_dict": {k.replace("model.", "model.other_"): v for k, v in good["state_dict"].items()}}
    else:  # pragma: no cover
        raise AssertionError(kind)
    torch.save(bad, out)


def damaged_shards(cache: str, target: str, outside: str, kind: str) -> None:
    """A copy of the prepared shard folder under ``target``, damaged as in tests/test_shards.py
    (``outside``: the folder a hostile manifest points into)."""
    from test_shards import _hostile

    (folder,) = (Path(cache) / "shards").iterdir()
    copy = Path(target) / "shards" / folder.name
    shutil.copytree(folder, copy)
    _hostile(kind, copy, Path(outside))


def miditok_file(path: str, params_json: str) -> None:
    """A MidiTok ``tokenizer.json`` with ``params`` written over its config (class 4)."""
    import miditok

    plain = Path(path).with_suffix(".plain.json")
    miditok.REMI().save(plain)
    saved = json.loads(plain.read_text())
    saved["config"].update(json.loads(params_json))
    Path(path).write_text(json.dumps(saved))
    plain.unlink()
